"""Validating reader of vector files (versions 1, 2 and 3): the container's structure, its
digests, and for a file of ``refmodel gen`` (a run config) everything its config describes."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import stat
from dataclasses import dataclass

import h5py
import numpy as np

from refmodel.encode import ENCODINGS
from refmodel.fixed import FixedPointError, QFormat
from refmodel.layers.base import SPIKE, LayerError
from refmodel.spec import array_digest, array_fields, network_from_config, stimulus_spec
from refmodel.stimulus import encoder_of
from refmodel.vectors.layout import run_layout
from refmodel.errors import RefmodelError
from refmodel.vectors.schema import (
    COUNT_FORMAT,
    COVERAGE_ATTRS,
    COVERAGE_INPUT,
    DIGEST_ATTR,
    FORMAT_NAME,
    METADATA_DIGEST_ATTR,
    READABLE_VERSIONS,
    ROOT_MEMBERS,
    SPIKE_COUNT,
    VectorFileError,
    canonical_json,
    check_name,
    format_of,
    layer_key,
    metadata_digest,
    root_members,
    sha256_hex,
    steps_digest,
    storage_dtype,
    values_digest,
    walk,
)

#: The keys of a run config (what refmodel gen stores in config_json).
RUN_CONFIG_KEYS = ("network", "record", "stimulus")
_CONFIG_ERRORS = (LayerError, FixedPointError, KeyError, TypeError, AttributeError, ValueError)

#: What h5py raises, or what reading a damaged object's contents can give (an attribute of an
#: unexpected type, a name that does not decode): each becomes a VectorFileError.
_H5_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


@dataclass(frozen=True)
class DatasetInfo:
    """One integer dataset: where it is, what it belongs to, its shape, format and axis names.

    ``kind`` is ``param``, ``input`` (the stimulus input), ``spikes`` (encoded stimulus),
    ``trace``, ``output``, ``count`` (per timestep) or ``spike_count`` (a layer's outputs summed
    over T); ``stepped`` when axis 0 is the timestep, ``streamed`` when it was also written one
    timestep at a time (its digest is then made of the timesteps' digests); ``digest`` the
    stored SHA-256 (hex; None in a version-1 file).
    """

    path: str
    kind: str
    layer: str | None
    name: str
    shape: tuple
    fmt: QFormat
    axes: tuple
    digest: str | None = None

    @property
    def stepped(self) -> bool:
        return self.kind in ("spikes", "trace", "count")

    @property
    def streamed(self) -> bool:
        return self.kind in ("spikes", "trace")


@dataclass(frozen=True)
class LayerInfo:
    """A layer's attributes, the names of its parameters, trace signals and per-timestep
    counts, and whether it has a spike count."""

    name: str
    kind: str
    index: int
    key: str
    input_shape: tuple
    output_shape: tuple
    attrs: dict
    params: tuple
    signals: tuple
    counts: tuple
    spike_count: bool = False


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


class VectorFile:
    """Open and validate a vector file: ``with VectorFile(path) as vf: ...``.

    Every problem (missing, not HDF5, truncated or damaged, foreign, other version,
    missing or malformed member, config hash mismatch) raises VectorFileError naming the
    path and what is wrong.  When ``config`` is a run config (keys network, record,
    stimulus: every file of ``refmodel gen``) the file must also be exactly what that run
    writes (``refmodel.vectors.layout``); ``network``, ``stimulus_spec`` and ``record`` then
    describe the run (else they are None), and ``config`` names the arrays by today's
    ``array_digest`` whatever the file's version (versions 1 to 3 digested int64 values: their
    ``config_json`` and ``config_sha256`` stay as stored).  ``verify()`` reads every value.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._h5 = None
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            raise VectorFileError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise VectorFileError(f"{self.path}: cannot be read ({exc.strerror})") from None
        if stat.S_ISDIR(mode):
            raise VectorFileError(f"{self.path}: is a directory, not a vector file")
        if not stat.S_ISREG(mode):
            raise VectorFileError(f"{self.path}: is not a regular file")
        try:
            if not h5py.is_hdf5(self.path):
                raise VectorFileError(f"{self.path}: not an HDF5 file (no HDF5 signature)")
            self._h5 = h5py.File(self.path, "r")
        except _H5_ERRORS as exc:
            raise VectorFileError(f"{self.path}: damaged or truncated HDF5 file ({exc})") from None
        try:
            with self._damage("its structure"):
                self._validate()
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _damage(self, what):
        """Turn what h5py raises while reading ``what`` into a VectorFileError naming the file."""
        try:
            yield
        except RefmodelError:
            raise
        except _H5_ERRORS as exc:
            raise VectorFileError(f"{self.path}: cannot read {what}, the file is damaged ({type(exc).__name__}: {exc})") \
                from None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if getattr(self, "_h5", None) is not None:
            self._h5.close()
            self._h5 = None

    # ------------------------------------------------------------------ validation
    def _fail(self, what):
        raise VectorFileError(f"{self.path}: {what}")

    def _root_attr(self, name, kind):
        attrs = self._h5.attrs
        if name not in attrs:
            self._fail(f"missing root attribute {name!r}")
        value = _text(attrs[name])
        ok = isinstance(value, str) if kind is str else isinstance(value, (int, np.integer)) and value >= 0
        if not ok:
            self._fail(f"root attribute {name!r} = {value!r} is not {'a string' if kind is str else 'an integer >= 0'}")
        return value if kind is str else int(value)

    def _group(self, path):
        obj = self._h5.get(path)
        if not isinstance(obj, h5py.Group):
            self._fail(f"missing group /{path}")
        return obj

    def _info(self, path, kind, layer, name, shape=None):
        """Validate the dataset at ``path`` and describe it."""
        dset = self._h5.get(path)
        if not isinstance(dset, h5py.Dataset):
            self._fail(f"missing dataset /{path}")
        if dset.external or dset.is_virtual:
            self._fail(f"/{path} keeps its values outside this file (external or virtual storage)")
        digest = None
        if self.format_version >= 2:
            digest = _text(dset.attrs.get(DIGEST_ATTR))
            if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= set("0123456789abcdef")):
                self._fail(f"/{path} attribute {DIGEST_ATTR!r} = {digest!r} is not a SHA-256 digest")
        fmt = format_of(dset.attrs, f"{self.path}: /{path}")
        if dset.dtype != storage_dtype(fmt):
            self._fail(f"/{path} has dtype {dset.dtype}, but format {fmt} is stored as {storage_dtype(fmt)}")
        axes = tuple(_text(dset.attrs.get("axes", "")).split())
        if len(axes) != dset.ndim:
            self._fail(f"/{path}: axes attribute {axes!r} does not name its {dset.ndim} dimensions")
        if shape is not None and dset.shape != shape:
            self._fail(f"/{path} has shape {dset.shape}, expected {shape}")
        return DatasetInfo(path, kind, layer, name, dset.shape, fmt, axes, digest)

    def _validate(self):
        fmt_name = _text(self._h5.attrs.get("format"))
        if fmt_name != FORMAT_NAME:
            self._fail(f"not a refmodel vector file (root attribute 'format' is {fmt_name!r}, "
                       f"expected {FORMAT_NAME!r})")
        version = self._root_attr("format_version", int)
        if version not in READABLE_VERSIONS:
            self._fail(f"format version {version} is not supported (this reader reads versions "
                       f"{', '.join(map(str, READABLE_VERSIONS))})")
        self.format_version = version
        objects = dict(walk(self._h5))  # (refuses links other than single hard links)
        if version >= 2:
            stored = self._root_attr(METADATA_DIGEST_ATTR, str)
            if metadata_digest(self._h5, objects.items()) != stored:
                self._fail(f"{METADATA_DIGEST_ATTR} does not match the file's attributes: the file is damaged")
        self.refmodel_version = self._root_attr("refmodel_version", str)
        self.compression = self._root_attr("compression", str) if "compression" in self._h5.attrs else None
        self.seed = self._root_attr("seed", int)
        self.timesteps = self._root_attr("timesteps", int)
        self.batch = self._root_attr("batch", int)
        self.config_json = self._root_attr("config_json", str)
        self.config_sha256 = self._root_attr("config_sha256", str)
        if sha256_hex(self.config_json) != self.config_sha256:
            self._fail(f"config_sha256 {self.config_sha256} does not match the stored config "
                       f"(SHA-256 {sha256_hex(self.config_json)})")
        try:
            self.config = json.loads(self.config_json)
        except ValueError as exc:
            self._fail(f"config_json is not valid JSON ({exc})")
        allowed = root_members(version)
        unknown = sorted(set(self._h5) - set(allowed))
        if unknown:
            late = [m for m in unknown if m in ROOT_MEMBERS]
            self._fail(f"unknown root members {unknown} (allowed: {', '.join(allowed)}"
                       + (f"; {', '.join(late)} only from a later format version" if late else "") + ")")
        T, N = self.timesteps, self.batch
        self._datasets = []

        stim = self._group("stimulus")
        encoding = _text(stim.attrs.get("encoding"))
        if encoding not in ENCODINGS:
            self._fail(f"/stimulus attribute 'encoding' is {encoding!r}, expected one of {ENCODINGS}")
        self.encoding = encoding
        self.encoding_params = {k: _text(v).item() if isinstance(v, np.generic) else _text(v)
                                for k, v in stim.attrs.items() if k != "encoding"}
        info = self._info("stimulus/input", "input", None, "input")
        if info.shape[:1] != (N,):
            self._fail(f"/stimulus/input has shape {info.shape}; its first axis must be the batch size {N}")
        self._datasets.append(info)
        if encoding != "analog":
            spikes = self._info("stimulus/spikes", "spikes", None, "spikes", (T,) + info.shape)
            if spikes.fmt != SPIKE:
                self._fail(f"/stimulus/spikes has format {spikes.fmt}, expected {SPIKE}")
            self._datasets.append(spikes)

        layers_group, traces, counts = self._group("layers"), self._group("traces"), self._group("counts")
        layers = []
        for index, key in enumerate(layers_group):
            group = self._group(f"layers/{key}")
            attrs = {k: _text(v) for k, v in group.attrs.items()}
            for attr in ("name", "kind", "index", "input_shape", "output_shape"):
                if attr not in attrs:
                    self._fail(f"/layers/{key} misses attribute {attr!r}")
            if attrs["index"] != index or layer_key(index, attrs["name"]) != key:
                self._fail(f"/layers/{key}: name {attrs['name']!r} and index {attrs['index']} do not match "
                           f"its place {index} (expected group {layer_key(index, attrs['name'])!r})")
            name = attrs.pop("name")
            params = tuple(self._group(f"layers/{key}/params"))
            signals = tuple(traces[key]) if key in traces else ()
            events = tuple(counts[key]) if key in counts else ()
            self._datasets += [self._info(f"layers/{key}/params/{p}", "param", name, p) for p in params]
            for s in signals:
                info = self._info(f"traces/{key}/{s}", "trace", name, s)
                if info.shape[:2] != (T, N):
                    self._fail(f"/traces/{key}/{s} has shape {info.shape}; it must start with (T, N) = {(T, N)}")
                self._datasets.append(info)
            for e in events:
                if e == SPIKE_COUNT:
                    info = self._info(f"counts/{key}/{e}", "spike_count", name, e)
                    if info.shape[:1] != (N,):
                        self._fail(f"/counts/{key}/{e} has shape {info.shape}; its first axis must be the batch size {N}")
                else:
                    info = self._info(f"counts/{key}/{e}", "count", name, e, (T,))
                    if info.fmt != COUNT_FORMAT:
                        self._fail(f"/counts/{key}/{e} has format {info.fmt}, expected {COUNT_FORMAT}")
                self._datasets.append(info)
            layers.append(LayerInfo(
                name, attrs.pop("kind"), int(attrs.pop("index")), key,
                tuple(int(d) for d in attrs.pop("input_shape")), tuple(int(d) for d in attrs.pop("output_shape")),
                {k: v.tolist() if isinstance(v, np.ndarray) else v.item() if isinstance(v, np.generic) else v
                 for k, v in attrs.items()},
                params, signals, tuple(e for e in events if e != SPIKE_COUNT), SPIKE_COUNT in events))
        self.layers = tuple(layers)
        keys = {layer.key for layer in layers}
        for group in (traces, counts):
            stray = sorted(set(group) - keys)
            if stray:
                self._fail(f"/{group.name.strip('/')} has groups {stray} that are not layers")
        self.outputs = tuple(self._group("outputs"))
        self._datasets += [self._info(f"outputs/{o}", "output", None, o) for o in self.outputs]
        self._check_objects(objects)
        self.network = self.stimulus_spec = self.record = None
        if isinstance(self.config, dict) and "network" in self.config:
            self._validate_run()

    def _check_objects(self, objects):
        """No object the schema does not name: the groups of §1, the datasets found above."""
        keys = [la.key for la in self.layers]
        groups = {*ROOT_MEMBERS, *(f"layers/{k}" for k in keys), *(f"layers/{k}/params" for k in keys),
                  *(f"traces/{k}" for k in keys), *(f"counts/{k}" for k in keys)}
        cost = objects.get("cost")
        if isinstance(cost, h5py.Group):
            groups |= {f"cost/{s}" for s in cost}
            if self.format_version < 4:  # one group per layer in each section
                groups |= {f"cost/{s}/{k}" for s in cost for k in keys}
        if isinstance(objects.get("coverage"), h5py.Group):
            groups |= {f"coverage/{k}" for k in (COVERAGE_INPUT, *keys)}
        datasets = {info.path for info in self._datasets}
        for path, obj in objects.items():
            if path not in (datasets if isinstance(obj, h5py.Dataset) else groups):
                self._fail(f"unexpected {'dataset' if isinstance(obj, h5py.Dataset) else 'group'} /{path}: the "
                           f"schema names no such object")

    def _validate_run(self):
        """The file against the run its config describes: the layers, every dataset (no more,
        no fewer) with its shape, format and axes, the parameters' values, the stimulus."""
        config = self.config
        if sorted(config) != list(RUN_CONFIG_KEYS):
            self._fail(f"config_json has keys {sorted(config)}; a run config has exactly {', '.join(RUN_CONFIG_KEYS)}")
        try:
            stim = stimulus_spec(config["stimulus"], "config_json")
            names = [(entry["name"], entry["kind"]) for entry in config["network"]["layers"]]
            if names != [(la.name, la.kind) for la in self.layers]:
                self._fail(f"the layers {[(la.name, la.kind) for la in self.layers]} differ from the config's {names}")
            arrays, described = self._config_arrays(config["network"])
            self.config = config = {**config, "network": described}
            network = network_from_config(described, arrays)
            record = network.resolve_record(config["record"])
            layout = run_layout(network, stim, record, "config_json", described["layers"])
        except VectorFileError:
            raise
        except _CONFIG_ERRORS as exc:
            self._fail(f"config_json does not describe a valid run: {exc}")
        if [f"{layer}.{signal}" for layer, signal in record] != config["record"]:
            self._fail(f"config record {config['record']} is not in recording order")
        for attr in ("timesteps", "batch", "seed"):
            if getattr(self, attr) != getattr(stim, attr):
                self._fail(f"root attribute {attr!r} = {getattr(self, attr)} differs from the config's "
                           f"stimulus.{attr} = {getattr(stim, attr)}")
        self._check_layout(layout, arrays)
        if self.encoding != stim.encoding:
            self._fail(f"/stimulus encoding {self.encoding!r} differs from the config's {stim.encoding!r}")
        try:
            encoder = encoder_of(stim, *self.stimulus())
        except FixedPointError as exc:
            self._fail(f"/stimulus/input does not fit the config's encoder: {exc}")
        if encoder.params != self.encoding_params:
            self._fail(f"/stimulus attributes {self.encoding_params} differ from the config's encoder {encoder.params}")
        cost = self._h5.get("cost")
        if not isinstance(cost, h5py.Group) or sorted(cost) != ["measured", "memory", "static"]:
            self._fail("/cost must hold the groups measured, memory and static (cost() checks their contents)")
        self.network, self.stimulus_spec, self.record = network, stim, tuple(record)

    def _config_arrays(self, network_config) -> tuple[dict, dict]:
        """(``{"<layer>.<field>": values}`` of every array the config names by its digest, read
        from the parameter datasets, each checked against its shape and SHA-256; the network
        config with the digests ``array_digest`` gives today: before version 4 they were of
        int64 values)."""
        wide = self.format_version < 4
        present = {info.path for info in self._datasets}
        described = copy.deepcopy(network_config) if wide else network_config
        entries = {entry["name"]: entry for entry in described["layers"]}
        arrays = {}
        for layer, field in array_fields(network_config):
            path = f"layers/{self.layer(layer).key}/params/{field}"
            if path not in present:
                self._fail(f"missing dataset /{path}: the config's layer {layer!r} has the array {field!r}")
            arrays[f"{layer}.{field}"] = values = self.read(path)
            digest = array_digest(values, wide=wide)
            if digest != entries[layer][field]:
                self._fail(f"/{path} does not match the config: {digest} instead of {entries[layer][field]}")
            entries[layer][field] = array_digest(values)
        return arrays, described

    def _check_layout(self, layout, arrays):
        """Layer groups and datasets exactly as ``layout`` has them; parameter values equal
        (the arrays named by digest were checked against the config already)."""
        for group, la in zip(layout.layers, self.layers):
            got = {"input_shape": la.input_shape, "output_shape": la.output_shape, **la.attrs}
            want = {"input_shape": group.input_shape, "output_shape": group.output_shape, **group.attrs}
            for attr in sorted(set(got) | set(want)):
                if got.get(attr) != want.get(attr):
                    self._fail(f"/layers/{la.key} attribute {attr!r} = {got.get(attr)!r}, the config gives "
                               f"{want.get(attr)!r}")
        present = {info.path: info for info in self._datasets}
        expected = {d.path: d for d in layout.datasets()}
        for path, d in expected.items():
            if path not in present:
                self._fail(f"missing dataset /{path} ({d.what}, which the config describes)")
            info = present[path]
            if (info.shape, info.fmt, info.axes) != (d.shape, d.fmt, d.axes):
                self._fail(f"/{path} is {info.shape} {info.fmt} [{' '.join(info.axes)}]; the config describes "
                           f"{d.shape} {d.fmt} [{' '.join(d.axes)}]")
        for path in present:
            if path not in expected:
                self._fail(f"unexpected dataset /{path}: the config describes no such dataset")
        for group in layout.layers:
            for name, d in group.params.items():
                if f"{group.name}.{name}" not in arrays and not np.array_equal(self.read(d.path), d.values):
                    self._fail(f"/{d.path} = {self.read(d.path).tolist()} differs from the config's {d.values.tolist()}")

    # ------------------------------------------------------------------ accessors
    @property
    def config_digest(self) -> str:
        """SHA-256 of the canonical JSON of ``config``: ``config_sha256`` but for a run file of
        versions 1 to 3, whose config names its arrays by their int64 digests."""
        return sha256_hex(canonical_json(self.config))

    def layer(self, name) -> LayerInfo:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise VectorFileError(f"{self.path}: no layer {name!r} (layers: {[la.name for la in self.layers]})")

    def datasets(self):
        """Every integer dataset, in canonical order: stimulus, then per layer params, traces,
        counts, then outputs."""
        return tuple(self._datasets)

    def info(self, path) -> DatasetInfo:
        """The dataset at ``path`` (e.g. ``traces/000_conv1/v_pre``)."""
        for info in self._datasets:
            if info.path == path:
                return info
        raise VectorFileError(f"{self.path}: no dataset /{path}")

    def read(self, path, t=None) -> np.ndarray:
        """The dataset at ``path`` (stored dtype), checked against its digest, or its timestep
        ``t`` only (whose chunk must be present; ``steps`` checks the digest of them all)."""
        info = self.info(path)
        if t is not None and not (info.stepped and 0 <= t < self.timesteps):
            raise VectorFileError(f"{self.path}: /{path} has no timestep {t!r}")
        with self._damage(f"/{path}"):
            dset = self._h5[path]
            if t is None:
                values = dset[()]
                self._check_digest(info, values)
                return values
            if dset.chunks is not None and dset.id.get_chunk_info_by_coord((t,) + (0,) * (dset.ndim - 1)).size == 0:
                self._fail(f"/{path} has no chunk for timestep {t}: the file is damaged")
            return dset[t]

    def steps(self, path):
        """The timesteps of the stepped dataset at ``path``, one (N, ...) array after the other;
        after the last, its digest is checked (VectorFileError when it does not match)."""
        info = self.info(path)
        if not info.stepped:
            raise VectorFileError(f"{self.path}: /{path} has no timesteps")
        if not info.streamed:  # (one chunk: read whole)
            yield from self.read(path)
            return
        digests = []
        for t in range(self.timesteps):
            values = self.read(path, t)
            digests.append(values_digest(values))
            yield values
        self._check_digest(info, step_digests=digests)

    def _check_digest(self, info, values=None, step_digests=None):
        """Compare the digest of ``values`` (a streamed dataset's: of its timesteps, or of their
        ``step_digests``) with the stored one (version 2 files)."""
        if info.digest is None:
            return
        if info.streamed:
            got = steps_digest(step_digests if step_digests is not None else map(values_digest, values))
        else:
            got = values_digest(values).hex()
        if got != info.digest:
            self._fail(f"/{info.path}: its values do not match their SHA-256 digest: the file is damaged")

    def _check_chunks(self, info):
        """Every chunk of the dataset present once, at its place on the chunk grid (an absent
        chunk would read as zeros)."""
        dset = self._h5[info.path]
        if dset.chunks is None:
            return
        grid = [range(0, n, c) for n, c in zip(dset.shape, dset.chunks)]
        expected = int(np.prod([len(axis) for axis in grid]))
        count = dset.id.get_num_chunks()
        offsets = {dset.id.get_chunk_info(i).chunk_offset for i in range(min(count, expected))}
        aligned = all(o in axis for offset in offsets for o, axis in zip(offset, grid))
        if count != expected or len(offsets) != expected or not aligned:
            self._fail(f"/{info.path} has {count} chunks ({len(offsets)} distinct), its shape {dset.shape} in chunks "
                       f"of {dset.chunks} needs {expected}: the file is damaged")

    def param(self, layer, name):
        """``(values, fmt)`` of parameter ``name`` of ``layer``."""
        info = self.info(f"layers/{self.layer(layer).key}/params/{name}")
        return self.read(info.path), info.fmt

    def stimulus(self):
        """``(input values, fmt)``: the integer input before encoding."""
        info = self.info("stimulus/input")
        return self.read(info.path), info.fmt

    def stimulus_spikes(self, t=None) -> np.ndarray:
        """Encoded input spikes (T, N, ...) or of timestep ``t`` (N, ...); spike encodings only."""
        return self.read("stimulus/spikes", t)

    def trace_info(self, layer, signal) -> DatasetInfo:
        return self.info(f"traces/{self.layer(layer).key}/{signal}")

    def trace_steps(self, layer, signal):
        """The timesteps of trace ``signal`` of ``layer``, one (N, ...) array after the other,
        its digest checked after the last (``steps``)."""
        return self.steps(self.trace_info(layer, signal).path)

    def trace(self, layer, signal, t=None) -> np.ndarray:
        """Trace (T, N, ...) of ``signal`` in ``layer``, or its timestep ``t`` (N, ...)."""
        return self.read(self.trace_info(layer, signal).path, t)

    def output(self, name):
        """``(values, fmt)`` of output ``name``."""
        info = self.info(f"outputs/{name}")
        return self.read(info.path), info.fmt

    def counts(self, layer) -> dict:
        """``{event: (T,) int64 counts}`` of ``layer``."""
        la = self.layer(layer)
        return {e: self.read(f"counts/{la.key}/{e}") for e in la.counts}

    def spike_count(self, layer):
        """``(values, fmt)``: the (N, ...) outputs of ``layer`` summed over the T timesteps."""
        info = self.info(f"counts/{self.layer(layer).key}/{SPIKE_COUNT}")
        return self.read(info.path), info.fmt

    def verify(self) -> int:
        """Check every dataset's chunks (each present, at its place) and read every value
        (streamed datasets a timestep at a time), so that each chunk is inflated and its
        Adler-32 checksum checked, each value lies in its dataset's format and each dataset
        matches its digest; returns the number of values read.  Also reads the cost figures and
        the coverage."""
        self.cost()
        self.coverage()
        total = 0
        for info in self._datasets:
            with self._damage(f"the chunk index of /{info.path}"):
                self._check_chunks(info)
            arrays = enumerate(self.steps(info.path)) if info.streamed else ((None, self.read(info.path)),)
            for t, values in arrays:
                if values.size and (int(values.min()) < info.fmt.min_int or int(values.max()) > info.fmt.max_int):
                    self._fail(f"/{info.path}{'' if t is None else f' (t={t})'} holds values outside its format "
                               f"{info.fmt}")
                total += values.size
        return total

    def cost(self) -> dict:
        """``{section: {layer: {quantity: int}}}`` of the ``cost`` group (``{}`` when the file has none)."""
        with self._damage("/cost"):
            return self._cost()

    def _cost(self) -> dict:
        if "cost" not in self._h5:
            return {}
        names = {la.key: la.name for la in self.layers}
        out = {}
        for section, group in self._h5["cost"].items():
            if not isinstance(group, h5py.Group):
                self._fail(f"/cost/{section} is not a group")
            out[section] = self._cost_section(f"/cost/{section}", group, names)
        return out

    def _cost_section(self, where, group, names) -> dict:
        """``{layer: {quantity: int}}`` of a section: its ``layers`` and one int64[L] attribute
        per quantity (version 4); before, one group per layer with an int64 per quantity."""
        if self.format_version < 4:
            out = {}
            for key, rows in group.items():
                if key not in names or not isinstance(rows, h5py.Group):
                    self._fail(f"{where}/{key} is not the group of a layer")
                values = dict(sorted(rows.attrs.items()))
                for quantity, value in values.items():
                    if not isinstance(value, np.integer):
                        self._fail(f"{where}/{key} attribute {quantity!r} = {value} is not an integer")
                out[names[key]] = {q: int(v) for q, v in values.items()}
            return out
        if len(group):
            self._fail(f"{where} holds {sorted(group)}; a cost section has attributes only")
        layers = _text(group.attrs.get("layers"))
        keys = layers.split() if isinstance(layers, str) else [None]
        if any(key not in names for key in keys) or len(set(keys)) != len(keys):
            self._fail(f"{where} attribute 'layers' = {layers!r} must name distinct layer groups, space-separated")
        out = {names[key]: {} for key in keys}
        for quantity, values in sorted(group.attrs.items()):
            if quantity == "layers":
                continue
            if not (isinstance(values, np.ndarray) and values.dtype == np.int64 and values.shape == (len(keys),)):
                self._fail(f"{where} attribute {quantity!r} must be an int64 array of {len(keys)} figures, one per "
                           f"layer, got {values!r}")
            for key, value in zip(keys, values):
                out[names[key]][quantity] = int(value)
        return out

    def coverage(self):
        """The run's functional coverage (``refmodel.coverage.Coverage``, runs = 1): the network
        input's bins under ``"input"`` first, then each layer's, in layer order; None for a file
        without the ``coverage`` group (versions 1 and 2, or written without coverage)."""
        with self._damage("/coverage"):
            return self._coverage()

    def _coverage(self):
        from refmodel.coverage import Coverage, LayerCoverage

        if "coverage" not in self._h5:
            return None
        group = self._h5["coverage"]
        if not isinstance(group, h5py.Group):
            self._fail("/coverage is not a group")
        layers = {la.key: la for la in self.layers}
        for key in group:
            if key != COVERAGE_INPUT and key not in layers:
                self._fail(f"/coverage/{key} is neither the network input ({COVERAGE_INPUT!r}) nor a layer group")
        out = {}
        for key in [k for k in (COVERAGE_INPUT, *layers) if k in group]:
            where = f"/coverage/{key}"
            obj = group[key]
            if not isinstance(obj, h5py.Group) or len(obj):
                self._fail(f"{where} must be a group without members (its bins are attributes)")
            attrs = dict(obj.attrs.items())
            texts = {}
            for name in COVERAGE_ATTRS:
                value = _text(attrs.get(name))
                if not isinstance(value, str):
                    self._fail(f"{where} attribute {name!r} = {value!r} is not a string")
                texts[name] = value
            kind = texts["kind"]
            want = COVERAGE_INPUT if key == COVERAGE_INPUT else layers[key].kind
            if kind != want:
                what = "network input" if key == COVERAGE_INPUT else "layer"
                self._fail(f"{where} attribute 'kind' = {kind!r}; the {what} is {want!r}")
            bins = texts["bins"].split()
            if " ".join(bins) != texts["bins"] or len(set(bins)) != len(bins):
                self._fail(f"{where} attribute 'bins' = {texts['bins']!r} is not distinct names separated by one space")
            for name in bins:
                try:
                    check_name(name, "bin")
                except VectorFileError as exc:
                    self._fail(f"{where} attribute 'bins': {exc}")
                if name in COVERAGE_ATTRS:
                    self._fail(f"{where} attribute 'bins' names the reserved attribute {name!r}")
            stray = sorted(set(attrs) - set(COVERAGE_ATTRS) - set(bins))
            missing = [name for name in bins if name not in attrs]
            if stray or missing:
                self._fail(f"{where}: " + "; ".join(filter(None, [
                    f"attributes {stray} are not bins named by 'bins'" if stray else "",
                    f"bins {missing} of 'bins' have no attribute" if missing else ""])))
            hits = {}
            for name in bins:
                value = attrs[name]
                if not (isinstance(value, np.ndarray) and value.dtype == np.int64 and value.ndim == 1 and value.size):
                    self._fail(f"{where} attribute {name!r} = {value!r} is not a non-empty int64 array of hits per "
                               f"channel")
                if int(value.min()) < 0:
                    self._fail(f"{where} attribute {name!r} holds a negative count {int(value.min())}")
                hits[name] = value.astype(np.int64)
            try:
                unreachable = json.loads(texts["unreachable"])
            except ValueError as exc:
                self._fail(f"{where} attribute 'unreachable' is not JSON ({exc})")
            if not (isinstance(unreachable, dict) and all(isinstance(v, str) for v in unreachable.values())
                    and set(unreachable) <= set(bins) and canonical_json(unreachable) == texts["unreachable"]):
                self._fail(f"{where} attribute 'unreachable' = {texts['unreachable']!r} is not the canonical JSON of "
                           f"{{bin: reason}} over its bins")
            name = COVERAGE_INPUT if key == COVERAGE_INPUT else layers[key].name
            unreachable = {b: unreachable[b] for b in bins if b in unreachable}  # in report order
            out[name] = LayerCoverage(kind, hits, unreachable, {b: int(np.any(c)) for b, c in hits.items()})
        return Coverage(out, 1)
