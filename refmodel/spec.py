"""Network specs: a human-editable TOML file (large integer arrays in an ``.npz`` beside it).

The layout is documented in ``docs/spec.md``.  Each ``[[layers]]`` table has a ``kind`` (a key
of ``KINDS``) and exactly the fields of that layer class: a QFormat is an inline table
``{bits = 8, frac = 0, signed = true}``; an array is a key of the ``.npz`` or an inline
list; modes are their names.  The same description, as JSON, is the config every vector file
carries (``network_config``), with each array replaced by its shape and SHA-256.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refmodel.fixed import FixedPointError, QFormat
from refmodel.layers import (
    IF,
    LIF,
    AvgPool,
    Conv2d,
    CountGatePool,
    DualThreshold,
    Flatten,
    LayerError,
    Linear,
    LoihiLIF,
    OrPool,
    PooledNeuronPool,
    SumPool,
    WinnerSpikePool,
)
from refmodel.network import Network

__all__ = ["KINDS", "SpecError", "Spec", "StimulusSpec", "load_spec", "kind_of", "network_config", "layer_config"]

KINDS = {
    "conv2d": Conv2d,
    "linear": Linear,
    "flatten": Flatten,
    "if": IF,
    "lif": LIF,
    "dual_threshold": DualThreshold,
    "loihi_lif": LoihiLIF,
    "winner_spike": WinnerSpikePool,
    "pooled_neuron": PooledNeuronPool,
    "count_gate": CountGatePool,
    "or": OrPool,
    "sum": SumPool,
    "avg": AvgPool,
}
ENCODINGS = ("analog", "rate", "random")


class SpecError(LayerError):
    """A spec file is invalid: names the file or layer, the field and the value."""


def kind_of(layer) -> str:
    for kind, cls in KINDS.items():
        if type(layer) is cls:
            return kind
    raise SpecError(getattr(layer, "name", "?"), "kind", type(layer).__name__, "has no spec kind")


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
            raise SpecError(layer, f.name, value, f"is not a QFormat: {err}") from None
    if isinstance(value, str) and _array_field(f):
        if value not in arrays:
            raise SpecError(layer, f.name, value, "names no array of the spec's .npz")
        return arrays[value]
    if isinstance(value, list):
        return np.array(value) if _array_field(f) else tuple(value)
    return value


def layer_from_dict(entry: dict, arrays) -> object:
    """The layer an ``[[layers]]`` table describes."""
    entry = dict(entry)
    name = entry.get("name", "?")
    kind = entry.pop("kind", None)
    if kind not in KINDS:
        raise SpecError(name, "kind", kind, f"must be one of {', '.join(KINDS)}")
    cls = KINDS[kind]
    fields = {f.name: f for f in _layer_fields(cls)}
    unknown = sorted(set(entry) - set(fields))
    if unknown:
        raise SpecError(name, unknown[0], entry[unknown[0]], f"is not a field of {kind}; fields: {', '.join(fields)}")
    kwargs = {key: _from_toml(name, fields[key], value, arrays) for key, value in entry.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a missing required field
        raise SpecError(name, "fields", sorted(entry), str(err)) from None


def _to_json(value):
    if isinstance(value, QFormat):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value, dtype=np.int64)
        return {"shape": list(data.shape), "sha256": hashlib.sha256(data.tobytes()).hexdigest()}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def layer_config(layer) -> dict:
    """The JSON-able description of ``layer``: kind and every field (arrays by shape and SHA-256
    of their int64 little-endian bytes)."""
    out = {"kind": kind_of(layer)}
    for f in _layer_fields(type(layer)):
        out[f.name] = _to_json(getattr(layer, f.name))
    return out


def network_config(network: Network) -> dict:
    return {
        "name": network.name,
        "input_shape": list(network.input_shape),
        "input_format": network.input_format.to_dict(),
        "layers": [layer_config(layer) for layer in network.layers],
    }


@dataclass(frozen=True)
class StimulusSpec:
    """What ``refmodel gen`` feeds a network: ``encoding`` of the pixel ``source`` ("random":
    uniform codes from the seed, or a key of the spec's .npz) over ``timesteps`` and ``batch``.
    For "rate"/"random" encodings ``format`` is the pixel format (the network input is spikes)
    and ``full_scale`` the encoder's full scale (None: the code of 1.0, 2**format.frac)."""

    encoding: str = "analog"
    source: str = "random"
    batch: int = 1
    timesteps: int = 8
    seed: int = 0
    format: QFormat | None = None
    full_scale: int | None = None

    def to_dict(self) -> dict:
        return {k: _to_json(v) for k, v in dataclasses.asdict(self).items()} | (
            {"format": self.format.to_dict()} if self.format else {}
        )


@dataclass(frozen=True, eq=False)
class Spec:
    network: Network
    stimulus: StimulusSpec
    arrays: dict = field(repr=False)
    path: Path | None = None


_TOP = ("name", "input_shape", "input_format", "arrays", "stimulus", "layers")


def spec_from_dict(d: dict, arrays: dict, path: Path | None = None) -> Spec:
    where = str(path) if path else d.get("name", "spec")
    unknown = sorted(set(d) - set(_TOP))
    if unknown:
        raise SpecError(where, unknown[0], d[unknown[0]], f"is not a spec key; keys: {', '.join(_TOP)}")
    for key in ("input_shape", "input_format", "layers"):
        if key not in d:
            raise SpecError(where, key, None, "is required")
    try:
        input_format = QFormat.from_dict(d["input_format"])
    except (FixedPointError, TypeError, AttributeError) as err:
        raise SpecError(where, "input_format", d["input_format"], str(err)) from None
    layers = [layer_from_dict(entry, arrays) for entry in d["layers"]]
    network = Network(layers, tuple(d["input_shape"]), input_format, name=d.get("name", "network"))
    stim = dict(d.get("stimulus", {}))
    fields = {f.name for f in dataclasses.fields(StimulusSpec)}
    if set(stim) - fields:
        bad = sorted(set(stim) - fields)[0]
        raise SpecError(where, f"stimulus.{bad}", stim[bad], f"is not a stimulus key; keys: {', '.join(sorted(fields))}")
    if "format" in stim:
        stim["format"] = QFormat.from_dict(stim["format"])
    stimulus = StimulusSpec(**stim)
    if stimulus.encoding not in ENCODINGS:
        raise SpecError(where, "stimulus.encoding", stimulus.encoding, f"must be one of {ENCODINGS}")
    if stimulus.source != "random" and stimulus.source not in arrays:
        raise SpecError(where, "stimulus.source", stimulus.source, "is neither 'random' nor an array of the .npz")
    return Spec(network, stimulus, arrays, path)


def load_spec(path) -> Spec:
    """Read a TOML spec (and the ``.npz`` its ``arrays`` key names, relative to the spec)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            d = tomllib.load(fh)
    except OSError as err:
        raise SpecError(str(path), "file", str(path), f"cannot be read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(str(path), "file", str(path), f"is not valid TOML: {err}") from None
    arrays = {}
    if "arrays" in d:
        npz = path.parent / d["arrays"]
        try:
            with np.load(npz, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise SpecError(str(path), "arrays", d["arrays"], f"cannot be loaded: {err}") from None
    return spec_from_dict(d, arrays, path)
