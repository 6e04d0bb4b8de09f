"""Network specs: a human-editable TOML file (large integer arrays in an ``.npz`` beside it).

The layout is documented in ``docs/spec.md``.  Each ``[[layers]]`` table has a ``kind`` (a key
of ``KINDS``) and exactly the fields of that layer class: a QFormat is an inline table
``{bits = 8, frac = 0, signed = true}``; an array is a key of the ``.npz`` or an inline
list; modes are their names.  The same description, as JSON, is the config every vector file
carries (``network_config``), with each array replaced by its shape and SHA-256.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import json
import os
import stat
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

import numpy as np

from refmodel.checks import integer_in, is_integer, must_be_integer
from refmodel.encode import ENCODINGS, SEED_MAX
from refmodel.errors import LayerError, RefmodelError, ResourceError, SpecError
from refmodel.files import AtomicOutput
from refmodel.fixed import FixedPointError, QFormat
from refmodel.layers import KINDS
from refmodel.limits import MAX_BATCH, MAX_SPEC_BYTES, MAX_TIMESTEPS, check_memory, elements
from refmodel.network import Network

__all__ = ["KINDS", "SpecError", "Spec", "StimulusSpec", "load_spec", "kind_of", "network_config", "layer_config",
           "network_from_config", "array_digest", "spec_text", "save_spec",
           "parse_setting", "setting_value", "apply_settings"]


def kind_of(layer) -> str:
    """The spec kind of ``layer``."""
    return layer.kind


def _array_field(f: dataclasses.Field) -> bool:
    return "ndarray" in str(f.type)


def _layer_fields(cls):
    return [f for f in dataclasses.fields(cls) if f.init]


def _from_toml(layer, f, value, arrays):
    """A TOML value of field ``f`` as the layer class takes it."""
    if isinstance(value, dict):
        try:
            return QFormat.from_dict(value)
        except (FixedPointError, TypeError) as err:
            raise LayerError(layer, f.name, value, f"is not a QFormat: {err}") from None
    if isinstance(value, str) and _array_field(f):
        if value not in arrays:
            raise LayerError(layer, f.name, value, "names no array of the spec's .npz")
        return arrays[value]
    if isinstance(value, list) and _array_field(f):
        try:
            return np.array(value)
        except (ValueError, RecursionError):  # ragged, or nested too deep
            raise LayerError(layer, f.name, "[...]", "is not a rectangular array: its rows differ in length, or it "
                                                     "nests deeper than 64 dimensions") from None
    if isinstance(value, list):
        return tuple(value)
    return value


def layer_from_dict(entry: dict, arrays) -> object:
    """The layer an ``[[layers]]`` table describes."""
    entry = dict(entry)
    name = entry.get("name", "?")
    kind = entry.pop("kind", None)
    if not isinstance(kind, str) or kind not in KINDS:
        raise LayerError(name, "kind", kind, f"must be one of {', '.join(KINDS)}")
    cls = KINDS[kind]
    fields = {f.name: f for f in _layer_fields(cls)}
    unknown = sorted(set(entry) - set(fields))
    if unknown:
        raise LayerError(name, unknown[0], entry[unknown[0]], f"is not a field of {kind}; fields: {', '.join(fields)}")
    kwargs = {key: _from_toml(name, fields[key], value, arrays) for key, value in entry.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a missing required field
        raise LayerError(name, "fields", sorted(entry), str(err)) from None


_DIGEST_TYPES = tuple(np.dtype(f"<i{n}") for n in (1, 2, 4, 8))


def array_digest(values, wide=False) -> dict:
    """How a config names an integer array: ``{"shape": [...], "sha256": hex}``, the SHA-256 of
    its values in row-major order as little-endian two's complement integers of the narrowest
    of 8, 16, 32 and 64 bits that holds them all (the shape fixes the byte count, so the width
    is never ambiguous).  ``wide``: always 64 bits, the digest of vector-file versions 1 to 3."""
    data = np.asarray(values)
    if wide or data.size == 0:
        dtype = _DIGEST_TYPES[-1 if wide else 0]
    else:
        lo, hi = int(data.min()), int(data.max())
        dtype = next(t for t in _DIGEST_TYPES if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
    data = np.ascontiguousarray(data, dtype=dtype)
    return {"shape": list(data.shape), "sha256": hashlib.sha256(data).hexdigest()}  # (hashes the buffer, no copy)


def _is_digest(value) -> bool:
    return isinstance(value, dict) and set(value) == {"shape", "sha256"}


def _to_json(value):
    if isinstance(value, QFormat):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.ndarray):
        return array_digest(value)
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def layer_config(layer) -> dict:
    """The JSON-able description of ``layer``: kind and every field (arrays by ``array_digest``);
    ``inputs`` only when the layer names them (left out, it reads the previous layer, as in a
    spec)."""
    out = {"kind": layer.kind}
    for f in _layer_fields(type(layer)):
        if f.name != "inputs" or layer.inputs is not None:
            out[f.name] = _to_json(getattr(layer, f.name))
    return out


def network_config(network: Network) -> dict:
    """The JSON-able description of ``network``: name, input shape and format, and every layer's
    ``layer_config``."""
    return {
        "name": network.name,
        "input_shape": list(network.input_shape),
        "input_format": network.input_format.to_dict(),
        "layers": [layer_config(layer) for layer in network.layers],
    }


def array_fields(config: dict) -> list[tuple[str, str]]:
    """(layer, field) of every array a ``network_config`` names by its digest, in layer order."""
    return [(entry["name"], key) for entry in config["layers"] for key, value in entry.items() if _is_digest(value)]


def network_from_config(config: dict, arrays: dict) -> Network:
    """The network a ``network_config`` describes, its arrays taken from ``arrays`` (keys
    ``"<layer>.<field>"``); SpecError unless the rebuilt network has exactly this config (so
    every array matches its shape and SHA-256)."""
    keys = ("name", "input_shape", "input_format", "layers")
    if not isinstance(config, dict) or sorted(config) != sorted(keys):
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise SpecError("config", "network", got, f"must be a table of exactly {', '.join(keys)}")
    layers = []
    for entry in config["layers"]:
        name = entry.get("name", "?")
        toml = {key: f"{name}.{key}" if _is_digest(value) else value for key, value in entry.items()}
        layer = layer_from_dict(toml, arrays)
        rebuilt = json.loads(json.dumps(layer_config(layer)))
        for key in entry:
            if rebuilt.get(key) != entry[key]:
                raise LayerError(name, key, rebuilt.get(key), f"differs from the config's {entry[key]!r}")
        layers.append(layer)
    return Network(layers, tuple(config["input_shape"]), QFormat.from_dict(config["input_format"]), name=config["name"])


@dataclass(frozen=True)
class StimulusSpec:
    """What ``refmodel gen`` feeds a network: ``encoding`` of the pixel ``source`` ("random":
    uniform codes from the seed, or a key of the spec's .npz) over ``timesteps`` and ``batch``.
    For "rate"/"random" encodings ``format`` is the pixel format (the network input is spikes)
    and ``full_scale`` the encoder's full scale (None: the code of 1.0, 2**format.frac).
    ``range`` ``(lo, hi)``: the codes a "random" source draws from (None: all codes of the
    format; ``input_format`` checks that they lie within it).

    Checked on construction: SpecError naming the field and the value (place "[stimulus]")."""

    encoding: str = "analog"
    source: str = "random"
    batch: int = 1
    timesteps: int = 8
    seed: int = 0
    format: QFormat | None = None
    full_scale: int | None = None
    range: tuple[int, int] | None = None

    def __post_init__(self):
        checks = (
            ("encoding", self.encoding in ENCODINGS, f"must be one of {', '.join(ENCODINGS)}"),
            ("source", isinstance(self.source, str) and self.source != "", "must be 'random' or a key of the .npz"),
            ("batch", integer_in(self.batch, 1, MAX_BATCH), must_be_integer(1, MAX_BATCH)),
            ("timesteps", integer_in(self.timesteps, 1, MAX_TIMESTEPS), must_be_integer(1, MAX_TIMESTEPS)),
            ("seed", integer_in(self.seed, 0, SEED_MAX), must_be_integer(0, SEED_MAX)),
            ("format", self.format is None or isinstance(self.format, QFormat), "must be a QFormat table"),
            ("full_scale", self.full_scale is None or integer_in(self.full_scale, 1), must_be_integer(1)),
            ("range", self.range is None or _code_range(self.range), "must be two integers [lo, hi] with lo <= hi"),
            ("range", self.range is None or self.source == "random",
             f"is set, but the source is {self.source!r}: a range applies only to a 'random' source"),
        )  # fmt: skip
        for name, ok, problem in checks:
            if not ok:
                raise SpecError("[stimulus]", name, getattr(self, name), problem)
        if self.range is not None:
            object.__setattr__(self, "range", tuple(int(code) for code in self.range))

    def to_dict(self) -> dict:
        """The JSON-able fields; ``range`` only when set (so that configs without it keep their hash)."""
        out = {k: _to_json(v) for k, v in dataclasses.asdict(self).items()} | (
            {"format": self.format.to_dict()} if self.format else {}
        )
        if self.range is None:
            del out["range"]
        return out


def _code_range(value) -> bool:
    """Whether ``value`` is a pair ``[lo, hi]`` of integers with ``lo <= hi``."""
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(map(is_integer, value)) and value[0] <= value[1]


@dataclass(frozen=True, eq=False)
class Spec:
    network: Network
    stimulus: StimulusSpec
    arrays: dict = field(repr=False)
    path: Path | None = None

    @property
    def where(self) -> str:
        """How errors name the spec: its file, else its network's name."""
        return str(self.path) if self.path else self.network.name


_TOP = ("name", "input_shape", "input_format", "arrays", "stimulus", "layers")


def _qformat(where, key, value) -> QFormat:
    try:
        return QFormat.from_dict(value)
    except (FixedPointError, TypeError, AttributeError) as err:
        raise SpecError(where, key, value, f"is not a QFormat table ({err})") from None


def stimulus_spec(values: dict, where: str) -> StimulusSpec:
    """The StimulusSpec of a ``[stimulus]`` table (its format a QFormat table); errors name
    ``where`` (the spec) and the field as ``stimulus.<key>``."""
    fields = {f.name for f in dataclasses.fields(StimulusSpec)}
    if not isinstance(values, dict):
        raise SpecError(where, "stimulus", values, "must be a table")
    if set(values) - fields:
        bad = sorted(set(values) - fields)[0]
        raise SpecError(where, f"stimulus.{bad}", values[bad], f"is not a stimulus key; keys: {', '.join(sorted(fields))}")
    values = dict(values)
    if values.get("format") is not None:
        values["format"] = _qformat(where, "stimulus.format", values["format"])
    try:
        return StimulusSpec(**values)
    except SpecError as err:
        raise SpecError(where, f"stimulus.{err.field}", err.value, err.problem) from None


def spec_from_dict(d: dict, arrays: dict, path: Path | None = None) -> Spec:
    where = str(path) if path else d.get("name", "spec")
    unknown = sorted(set(d) - set(_TOP))
    if unknown:
        raise SpecError(where, unknown[0], d[unknown[0]], f"is not a spec key; keys: {', '.join(_TOP)}")
    for key in ("input_shape", "input_format", "layers"):
        if key not in d:
            raise SpecError(where, key, None, "is required")
    name = d.get("name", "network")
    if not isinstance(name, str):
        raise SpecError(where, "name", name, "must be a string")
    shape = d["input_shape"]
    if not (isinstance(shape, list) and shape and all(integer_in(n, 1) for n in shape)):
        raise SpecError(where, "input_shape", shape, "must be a list of integers >= 1, e.g. [1, 8, 8]")
    input_format = _qformat(where, "input_format", d["input_format"])
    if not (isinstance(d["layers"], list) and all(isinstance(entry, dict) for entry in d["layers"])):
        raise SpecError(where, "layers", d["layers"], "must be an array of [[layers]] tables")
    layers = [layer_from_dict(entry, arrays) for entry in d["layers"]]
    network = Network(layers, tuple(shape), input_format, name=name)
    stimulus = stimulus_spec(d.get("stimulus", {}), where)
    if stimulus.source != "random" and stimulus.source not in arrays:
        raise SpecError(where, "stimulus.source", stimulus.source, "is neither 'random' nor an array of the .npz")
    return Spec(network, stimulus, arrays, path)


class NpzArrays(Mapping):
    """The arrays of a spec's ``.npz``, each read when first asked for: its ``.npy`` header
    (shape, dtype) is checked against the memory limit before its data is read, and members
    the spec never names are never read.  Errors are SpecErrors naming the spec and the key."""

    def __init__(self, path: Path, value: str, where: str, field: str):
        """``value``: the spec's text for ``path``, as messages show it."""
        self.path, self.value, self.where, self.field = path, value, where, field
        with self._archive() as archive:
            self._members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
        self._cache = {}

    def _fail(self, key, problem):
        raise SpecError(self.where, self.field if key is None else f"{self.field}[{key!r}]", self.value, problem)

    def _archive(self):
        try:
            return zipfile.ZipFile(self.path)
        except FileNotFoundError:
            self._fail(None, "does not exist")
        except IsADirectoryError:
            self._fail(None, "is a directory, not an .npz file")
        except OSError as err:
            self._fail(None, f"cannot be read ({err.strerror or err})")
        except zipfile.BadZipFile:
            self._fail(None, "is not an .npz archive (not a zip file, or a truncated one)")

    def __getitem__(self, key):
        if key not in self._cache:
            if key not in self._members:
                raise KeyError(key)
            self._cache[key] = self._read(key)
        return self._cache[key]

    def _read(self, key):
        fmt = np.lib.format
        try:
            with self._archive() as archive, archive.open(self._members[key]) as member:
                version = fmt.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    self._fail(key, f"is an .npy of version {version}; refmodel reads versions 1.0 and 2.0")
                read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, fortran, dtype = read_header(member)
                if dtype.hasobject:
                    self._fail(key, "holds Python objects (pickled data); integer arrays only")
                check_memory(self.where, f"{self.field}[{key!r}]", shape,
                             {"the array": elements(shape) * dtype.itemsize}, SpecError)
                member.seek(0)
                return fmt.read_array(member, allow_pickle=False)
        except RefmodelError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            self._fail(key, f"cannot be read: the .npz is damaged or truncated ({err})")

    def __iter__(self):
        return iter(self._members)

    def __len__(self):
        return len(self._members)


def _arrays_path(spec_path: Path, value, where: str) -> Path:
    """The .npz of the spec's ``arrays`` key: relative to the spec's directory and inside its
    tree (no ``..`` above it), or an absolute path, written so on purpose."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise SpecError(where, "arrays", value, "must be the file name of an .npz")
    if os.path.isabs(value):
        return Path(value)
    relative = os.path.normpath(value)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise SpecError(where, "arrays", value, "leaves the spec's directory; give an absolute path to use a file "
                                               "elsewhere")
    return spec_path.parent / relative


def _spec_text(path: Path, where: str) -> str:
    """The spec's text: a regular file of at most MAX_SPEC_BYTES, UTF-8."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise SpecError(where, "file", where, "is a directory, not a spec")
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(where, "file", where, "is not a regular file")
        if st.st_size > MAX_SPEC_BYTES:
            raise ResourceError(SpecError(where, "file", where, f"has {st.st_size} bytes, more than a spec's "
                                                                f"{MAX_SPEC_BYTES} (large arrays belong in its .npz)"))
        with open(path, "rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError(where, "file", where, f"cannot be read: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(where, "file", where, f"is not UTF-8 text (byte {data[err.start]:#04x} at offset "
                                              f"{err.start}); a spec is a TOML file") from None


def setting_value(text: str):
    """The value of a ``FIELD=VALUE`` setting: ``VALUE`` read as a TOML value (``8000``,
    ``true``, ``{bits = 12}``, ``[0, 255]``, ``"SAT"``), else the text itself (``SAT``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_setting(text: str, where: str = "--set") -> tuple:
    """(field, value) of ``FIELD=VALUE``; a SpecError when there is no ``=`` or no field."""
    field_, equals, value = text.partition("=")
    if not equals or not field_.strip() or not value.strip():
        raise SpecError(where, "setting", text, "must be FIELD=VALUE, e.g. if1.threshold=8000 or stimulus.batch=4")
    return field_.strip(), setting_value(value.strip())


def apply_settings(d: dict, settings, where: str) -> dict:
    """The spec table ``d`` (a copy) with each (field, value) of ``settings`` set: a field is
    ``LAYER.KEY`` (a key of the ``[[layers]]`` table named LAYER), ``stimulus.KEY``, or either
    followed by keys of an inline table (``conv1.acc_format.bits``).  The spec is validated
    afterwards as if written so; a field naming no layer, or a path through a value that is not
    a table, is a SpecError."""
    d = copy.deepcopy(d)
    layers = {entry.get("name"): entry for entry in d.get("layers", []) if isinstance(entry, dict)}
    for name, value in settings:
        head, *keys = name.split(".")
        if not keys or not all(keys):
            raise SpecError(where, name, value, "must be LAYER.FIELD or stimulus.FIELD")
        if head == "stimulus":
            table = d.setdefault("stimulus", {})
        elif head in layers:
            table = layers[head]
        else:
            raise SpecError(where, name, value, f"names no layer; layers: {', '.join(map(str, layers))}, or stimulus")
        for i, key in enumerate(keys[:-1]):
            if not isinstance(table.get(key), dict):
                raise SpecError(where, ".".join([head, *keys[:i + 1]]), table.get(key),
                                f"is not an inline table, so {name} cannot be set")
            table = table[key]
        table[keys[-1]] = value
    return d


def load_spec(path, settings=()) -> Spec:
    """Read a TOML spec (and the ``.npz`` its ``arrays`` key names, relative to the spec and
    inside its directory tree, or absolute), with ``settings`` ((field, value) pairs, see
    ``apply_settings``) applied; every problem is a SpecError (or ResourceError) naming the
    spec, the field and the value."""
    path = Path(path)
    where = str(path)
    text = _spec_text(path, where)
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(where, "file", where, f"is not valid TOML: {err}") from None
    except RecursionError:
        raise SpecError(where, "file", where, "nests arrays or tables too deep to parse") from None
    if settings:
        d = apply_settings(d, settings, where)
    arrays = NpzArrays(_arrays_path(path, d["arrays"], where), d["arrays"], where, "arrays") if "arrays" in d else {}
    try:
        return spec_from_dict(d, arrays, path)
    except RecursionError:
        raise SpecError(where, "file", where, "nests arrays or tables too deep") from None


# --------------------------------------------------------------------------- writing
def _toml(value) -> str:
    """A TOML value for what a spec holds: bools, ints, strings, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def spec_text(network: Network, stimulus: StimulusSpec | None = None, arrays_file: str | None = None):
    """(TOML text, arrays) of a spec for ``network`` (and ``stimulus``), the layout ``load_spec``
    reads (docs/spec.md); fields left None are omitted (their default).  Layer arrays are
    inline lists, or, with ``arrays_file`` (an .npz name), keys ``"<layer>.<field>"`` of the
    returned arrays, which belong in that file."""
    arrays = {}
    lines = [f"name = {_toml(network.name)}", f"input_shape = {_toml(list(network.input_shape))}",
             f"input_format = {_toml(network.input_format.to_dict())}"]  # fmt: skip
    if arrays_file is not None:
        lines.append(f"arrays = {_toml(arrays_file)}")
    if stimulus is not None:
        lines += ["", "[stimulus]"] + [f"{k} = {_toml(v)}" for k, v in stimulus.to_dict().items() if v is not None]
    for layer in network.layers:
        lines += ["", "[[layers]]"]
        for key, value in layer_config(layer).items():  # "kind", then the fields
            raw = getattr(layer, key, None)
            if isinstance(raw, np.ndarray):
                if arrays_file is None:
                    value = raw.tolist()
                else:
                    value = f"{layer.name}.{key}"
                    arrays[value] = raw
            if value is not None:
                lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n", arrays


def save_spec(spec: Spec, path) -> None:
    """Write ``spec`` as the TOML file ``path`` and its arrays (the layers' and ``spec.arrays``)
    as the ``.npz`` beside it."""
    path = Path(path)
    npz = path.with_suffix(".npz")
    text, arrays = spec_text(spec.network, spec.stimulus, npz.name)
    with AtomicOutput(npz) as out, open(out.tmp, "wb") as fh:
        np.savez_compressed(fh, **{**spec.arrays, **arrays})  # a layer's array over the one it was read from
    with AtomicOutput(path) as out, open(out.tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
