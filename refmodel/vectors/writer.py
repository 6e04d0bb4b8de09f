"""Streaming writer of vector files: one timestep at a time, atomic, byte-deterministic.

Chunks are compressed (and hashed) in worker threads (``refmodel.vectors.chunks``) while the
simulation goes on, and written in the order they were handed over; the datasets' digests are
stored when the file closes.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from refmodel.encode import SEED_MAX
from refmodel.files import AtomicOutput, write_error
from refmodel.fixed import QFormat
from refmodel.checks import integer_in
from refmodel.layers.base import SPIKE
from refmodel.vectors.chunks import TINY, ChunkWriter, Compression, compression as compression_of
from refmodel.vectors.schema import (
    COUNT_FORMAT,
    COVERAGE_ATTRS,
    COVERAGE_INPUT,
    DIGEST_ATTR,
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_DIGEST_ATTR,
    SPIKE_COUNT,
    TRACE_AXES,
    VectorFileError,
    as_codes,
    canonical_json,
    check_name,
    default_axes,
    format_attrs,
    is_streamed,
    layer_key,
    attr_json,
    metadata_digest,
    metadata_sha256,
    sha256_hex,
    steps_digest,
    storage_dtype,
    values_digest,
    walk,
)

_LAYER_ATTRS = ("name", "kind", "index", "input_shape", "output_shape")
_INT64_MAX = (1 << 63) - 1


def _check_int(value, what, lo=0, hi=_INT64_MAX) -> int:
    if not integer_in(value, lo, hi):
        raise VectorFileError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _check_shape(shape, what) -> tuple:
    try:
        dims = tuple(shape)
    except TypeError:
        raise VectorFileError(f"{what} must be a tuple of sizes, got {shape!r}") from None
    for i, d in enumerate(dims):
        _check_int(d, f"{what}[{i}]")
    return dims


def _attr_value(value, what):
    """An attribute value h5py stores portably: int64, str, or a 1-D int64 array; never a float."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return np.uint8(value)
    if isinstance(value, (int, np.integer)):
        return np.int64(_check_int(value, what, -_INT64_MAX - 1))
    if isinstance(value, (tuple, list)) and value:
        return np.array([_check_int(v, f"{what}[{i}]", -_INT64_MAX - 1) for i, v in enumerate(value)], np.int64)
    raise VectorFileError(f"{what} = {value!r}: attributes must be integers, strings or non-empty integer lists")


class _TempFile:
    """The temporary file as HDF5 writes it, through h5py's file-object driver.

    The first failed write (a full disk) is kept in ``error`` and every later write is
    dropped: HDF5 itself never sees a failure, since after one the library can crash when the
    file is closed.  The writer checks ``error`` before each operation and abandons the file.
    """

    def __init__(self, path):
        self._file = open(path, "r+b", buffering=0)
        self.error = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        try:
            while self.error is None and view:
                view = view[self._file.write(view):]
        except OSError as exc:
            self.error = exc
        return size

    def truncate(self, size=None):
        try:
            return self._file.truncate(size)
        except OSError as exc:
            self.error = self.error or exc
            return size

    def read(self, size=-1):
        return self._file.read(size)

    def readinto(self, buffer):
        return self._file.readinto(buffer)

    def seek(self, *args):
        return self._file.seek(*args)

    def tell(self):
        return self._file.tell()

    def flush(self):
        pass  # unbuffered

    def close(self):
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or exc


def _untimed(kind):
    """A creation property list of ``kind`` (file or group) that stores no timestamps and keeps
    up to 64 attributes in the object header (HDF5 moves more than 8 to a heap and a B-tree by
    default)."""
    plist = h5py.h5p.create(kind)
    plist.set_obj_track_times(False)
    plist.set_attr_phase_change(64, 48)
    return plist


_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)
_TYPES = {}  # numpy dtype -> HDF5 type
_GROUP_CREATE = _untimed(h5py.h5p.GROUP_CREATE)


def _hdf5_type(dtype):
    """The HDF5 type h5py gives a numpy integer ``dtype``."""
    return _TYPES.get(dtype) or _TYPES.setdefault(dtype, h5py.h5t.py_create(dtype, logical=True))


def _string_type(size: int):
    """The HDF5 type of a fixed-length UTF-8 string of ``size`` bytes, padded with nulls."""
    htype = h5py.h5t.C_S1.copy()
    htype.set_size(size)
    htype.set_cset(h5py.h5t.CSET_UTF8)
    htype.set_strpad(h5py.h5t.STR_NULLPAD)
    return htype


def _create_attr(obj, name: str, value) -> None:
    """Create attribute ``name`` of ``obj`` holding ``value`` (a str, a numpy integer or a 1-D
    integer array, as ``_attr_value`` makes them): a str as a fixed-length UTF-8 string (its
    bytes in the attribute itself, under HDF5's metadata checksums: a variable-length string
    lives in the global heap, which has none, and a flipped bit there crashed HDF5 1.12), an
    integer in its own type; through HDF5's attribute calls directly, about half the time of
    h5py's ``attrs``, which checks and converts any value."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
        data = np.array(raw, dtype=f"S{max(1, len(raw))}")
        htype = _string_type(data.itemsize)
    else:
        data = np.asarray(value)
        htype = _hdf5_type(data.dtype)
    space = _SCALAR if data.ndim == 0 else h5py.h5s.create_simple(data.shape)
    h5py.h5a.create(obj.id, name.encode(), htype, space).write(data, mtype=htype)


def _create_dataset(group, name: str, shape: tuple, dtype, chunks, level) -> h5py.Dataset:
    """A new dataset ``name`` of ``group``, filled with zeros, as h5py's ``create_dataset`` makes
    it (same property lists, so the same bytes) with ``track_times=False``: chunked by
    ``chunks`` (None: contiguous), with shuffle + deflate at ``level`` (None: no filter);
    through HDF5's calls directly, a third of h5py's time."""
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if chunks is not None:
        plist.set_chunk(chunks)
    if level is not None:
        plist.set_shuffle()
        plist.set_deflate(level)
    plist.set_fill_value(np.zeros((), dtype))
    plist.set_obj_track_times(False)
    plist.set_attr_creation_order(0)
    space = h5py.h5s.create_simple(shape)
    return h5py.Dataset(h5py.h5d.create(group.id, name.encode(), _hdf5_type(dtype), space, dcpl=plist))


def _new_file(fileobj) -> h5py.File:
    """A new HDF5 file on ``fileobj`` in the HDF5 1.10 format (its metadata checksummed by
    HDF5), with no timestamps on the root group: made from property lists, because older h5py
    (before 3.10) cannot ask that of ``h5py.File`` (nor of ``create_group``)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fapl.set_fileobj_driver(h5py.h5fd.fileobj_driver, fileobj)
    return h5py.File(h5py.h5f.create(b"refmodel-vectors", h5py.h5f.ACC_TRUNC, fapl=fapl,
                                     fcpl=_untimed(h5py.h5p.FILE_CREATE)))


class VectorWriter:
    """Write one vector file; use as a context manager.

    ``path`` is checked first (``refmodel.files``: an existing target must be a regular file,
    a symbolic link is written through only with ``force``).  The file is written to a
    temporary file beside ``path`` and renamed into place by ``close()`` (on leaving the
    ``with`` block), after checking that every declared trace has all its timesteps; an
    exception, a full disk included, removes the temporary file and leaves ``path`` alone.
    """

    def __init__(self, path, *, config, seed, timesteps, batch, threads=2, force=False, compression="fast"):
        """``threads``: worker threads that compress chunks (the file does not depend on it).
        ``compression``: ``fast``, ``small`` or ``none`` (or a ``chunks.Compression``), recorded
        in the root attribute ``compression``."""
        from refmodel import __version__

        self.path = os.fspath(path)
        self.timesteps = _check_int(timesteps, "timesteps", 1)
        self.batch = _check_int(batch, "batch", 1)
        seed = _check_int(seed, "seed", 0, SEED_MAX)
        config_json = canonical_json(config)
        _check_int(threads, "threads", 1, 64)
        how = compression if isinstance(compression, Compression) else compression_of(compression)
        self._layers = {}  # name -> key
        self._pending = {}  # dataset path -> bool array of written timesteps
        self._step_datasets = {}  # dataset path -> (dataset, QFormat) of the per-timestep datasets
        self._step_digests = {}  # dataset path -> {t: values_digest} of the empty per-timestep datasets
        self._digests = {}  # dataset path -> values_digest (or its future) of a dataset written at once
        self._datasets = {}  # path -> every dataset, open until the file closes: HDF5 then never closes
        # one at a moment that depends on when its last chunk was written
        self._groups = {}  # path -> every group
        self._stimulus = False
        self._h5 = self._io = None
        self._metadata = {"": {}}  # what metadata_digest reads back: {object path: {attribute: value}}
        self._out = AtomicOutput(self.path, force=force)
        self._chunks = ChunkWriter(how, threads)
        try:
            self._io = _TempFile(self._out.tmp)
            self._h5 = _new_file(self._io)
            root = {"format": FORMAT_NAME, "format_version": np.int64(FORMAT_VERSION), "refmodel_version": __version__,
                    "seed": np.int64(seed), "timesteps": np.int64(self.timesteps), "batch": np.int64(self.batch),
                    "config_json": config_json, "config_sha256": sha256_hex(config_json),
                    "compression": how.describe()}  # fmt: skip
            self._groups[""] = self._h5
            self._set_attrs("", root)
            for group in ("layers", "traces", "outputs", "counts"):
                self._create_group(group)
        except OSError as exc:
            self.abort()
            raise write_error(self.path, exc) from None
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def abort(self):
        """Discard everything written: close and delete the temporary file (never raises)."""
        h5, self._h5 = self._h5, None
        try:
            self._chunks.close(discard=True)
            if h5 is not None:
                h5.close()
        except Exception:  # noqa: BLE001 - the temporary file goes in any case, below
            pass
        finally:
            if self._io is not None:
                self._io.close()
            self._out.discard()

    def close(self):
        """Check completeness, store the digests, then move the finished file to ``path``
        (VectorFileError if incomplete, OutputError if it could not be written)."""
        try:
            if not self._stimulus:
                raise VectorFileError(f"{self.path}: no stimulus was written")
            for name, done in self._pending.items():
                if not done.all():
                    missing = np.flatnonzero(~done)
                    raise VectorFileError(
                        f"{self.path}: {name} misses {missing.size} of {done.size} timesteps (first t={missing[0]})"
                    )
            h5 = self._file
            self._chunks.close()
            for path in self._datasets:  # in creation order
                if path in self._step_datasets:
                    digests = self._step_digests.get(path) or {t: self._chunks.digests[(path, t)]
                                                                for t in range(self.timesteps)}
                    digest = steps_digest(digests[t] for t in range(self.timesteps))
                else:
                    digest = self._digests[path]
                    digest = (digest if isinstance(digest, bytes) else digest.result()).hex()
                self._set_attrs(path, {DIGEST_ATTR: digest})
            self._set_attrs("", {METADATA_DIGEST_ATTR: metadata_sha256(self._metadata)}, digested=False)
            self._h5 = None
            h5.close()
            self._io.close()
            if self._io.error is not None:
                raise write_error(self.path, self._io.error)
            self._out.commit()
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------------ helpers
    @property
    def _file(self):
        """The open file (VectorFileError once closed, OutputError after a failed write).  Chunks
        are written at points that depend only on what was submitted (``ChunkWriter``): HDF5
        sees the same sequence of operations whatever the threads' timing, so the file's bytes
        do not depend on it."""
        if self._h5 is None:
            raise VectorFileError(f"{self.path}: the writer is closed")
        if self._io.error is not None:
            raise write_error(self.path, self._io.error)
        return self._h5

    def _exists(self, path) -> bool:
        """Whether the writer made a group or dataset at ``path``."""
        return self._file is not None and path in self._metadata

    def _create_group(self, path):
        """The group at ``path``, made (with the groups on the way to it) if it is new."""
        h5 = self._file
        if path in self._groups:
            return self._groups[path]
        parent, _, name = path.rpartition("/")
        under = self._create_group(parent) if parent else h5
        group = h5py.Group(h5py.h5g.create(under.id, name.encode(), gcpl=_GROUP_CREATE))
        self._metadata[path] = {}
        self._groups[path] = group
        return group

    def _set_attrs(self, path, attrs: dict, digested=True):
        """Store the attributes ``{name: value}`` of the object at ``path``, in this order, and
        note them for the metadata digest (unless not ``digested``)."""
        obj = self._groups[path] if path in self._groups else self._datasets[path]
        noted = self._metadata[path]
        for name, value in attrs.items():
            _create_attr(obj, name, value)
            if digested:
                noted[name] = attr_json(value, f"/{path} attribute {name!r}")

    def _create(self, path, codes, fmt, axes, chunks):
        """Integer dataset at ``path`` holding ``codes`` (new storage-dtype codes, which the
        chunk writer takes over), or an empty one of shape ``codes``.  ``codes`` of fewer than
        ``TINY`` bytes are written here, contiguous and unfiltered; another non-empty dataset is
        chunked (``chunks``, else one chunk up to 256 MiB, else h5py's choice), with the shuffle
        + deflate filters unless the compression is ``none`` or they do not shrink ``codes``
        (``Compression.shrinks``).  Its digest is stored on closing."""
        data = codes if isinstance(codes, np.ndarray) else None
        shape = data.shape if data is not None else codes
        axes = default_axes(len(shape)) if axes is None else tuple(axes)
        if len(axes) != len(shape) or not all(isinstance(a, str) and a.isidentifier() for a in axes):
            raise VectorFileError(f"{path}: axes {axes!r} must be {len(shape)} identifiers, one per dimension")
        dtype = storage_dtype(fmt)
        here = data is not None and data.nbytes < TINY
        chunked = len(shape) > 0 and int(np.prod(shape)) > 0 and not here
        if chunked and chunks is None:
            chunks = tuple(shape) if int(np.prod(shape)) * dtype.itemsize <= 256 << 20 else True
        if chunks is True:
            chunks = h5py.filters.guess_chunk(shape, None, dtype.itemsize)
        how = self._chunks.how if data is None or self._chunks.how.shrinks(data) else compression_of("none")
        parent = self._create_group(path.rpartition("/")[0])
        dset = _create_dataset(parent, path.rpartition("/")[2], shape, dtype, chunks if chunked else None,
                               how.level if chunked and how.filtered else None)
        self._metadata[path] = {}
        self._datasets[path] = dset
        self._set_attrs(path, format_attrs(fmt, axes))
        if here:
            if data.size:
                dset.id.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(data))
            self._digests[path] = values_digest(data)
        elif data is not None:
            self._digests[path] = self._chunks.hash(data)
            self._chunks.submit_array(dset, data, chunks, how)
        elif chunked:
            self._chunks.declare(dset, chunks)
        return dset

    def _layer(self, layer):
        if layer not in self._layers:
            raise VectorFileError(f"unknown layer {layer!r}; add_layer() it first (known: {sorted(self._layers)})")
        return self._layers[layer]

    def _declare_steps(self, path, per_step, fmt, axes):
        shape = (self.timesteps, self.batch) + per_step
        if self._exists(path):
            raise VectorFileError(f"{path} is already declared")
        dset = self._create(path, shape, fmt, axes, chunks=(1,) + tuple(max(d, 1) for d in shape[1:]))
        self._pending[path] = np.zeros(self.timesteps, bool)
        self._step_datasets[path] = (dset, fmt, shape[1:], dset.chunks)

    def _write_step(self, path, t, values):
        if path not in self._pending:
            raise VectorFileError(f"{path} was not declared")
        done = self._pending[path]
        t = _check_int(t, f"{path}: timestep", 0, self.timesteps - 1)
        if done[t]:
            raise VectorFileError(f"{path}: timestep {t} is already written")
        dset, fmt, step_shape, chunks = self._step_datasets[path]  # (h5py asks HDF5 for a dataset's shape)
        arr = np.asarray(values)
        if arr.shape != step_shape:
            raise VectorFileError(f"{path}[t={t}]: shape {arr.shape} differs from the declared {step_shape}")
        codes = as_codes(arr, fmt, f"{path}[t={t}]")
        if chunks is not None:
            self._chunks.submit(dset, (t,) + (0,) * arr.ndim, codes.reshape(chunks), key=(path, t))
        else:  # an empty trace has no chunks
            self._step_digests.setdefault(path, {})[t] = values_digest(codes)
        done[t] = True

    # ------------------------------------------------------------------ public API
    def add_layer(self, name, kind, *, input_shape, output_shape, attrs=None) -> int:
        """Append a layer (shapes per sample, without T and N); returns its index."""
        check_name(name, "layer name")
        check_name(kind, f"layer {name!r}: kind")
        if name in self._layers:
            raise VectorFileError(f"layer {name!r} is already added")
        index = len(self._layers)
        if index >= 10**3:
            raise VectorFileError(f"layer {name!r}: at most 1000 layers per file")
        values = {"name": name, "kind": kind, "index": index,
                  "input_shape": _check_shape(input_shape, f"layer {name!r}: input_shape"),
                  "output_shape": _check_shape(output_shape, f"layer {name!r}: output_shape")}
        for key, value in (attrs or {}).items():
            check_name(key, f"layer {name!r}: attribute")
            if key in _LAYER_ATTRS:
                raise VectorFileError(f"layer {name!r}: attribute {key!r} is reserved")
            values[key] = value
        key = layer_key(index, name)
        checked = {attr: _attr_value(value, f"layer {name!r}: attribute {attr!r}")
                   for attr, value in sorted(values.items())}  # sorted: the bytes do not depend on dict order
        self._create_group(f"layers/{key}")
        self._create_group(f"layers/{key}/params")
        self._set_attrs(f"layers/{key}", checked)
        self._layers[name] = key
        return index

    def write_param(self, layer, name, values, fmt: QFormat, axes=None):
        """Store parameter ``name`` of ``layer``: integers that fit ``fmt`` (floats are refused)."""
        path = f"layers/{self._layer(layer)}/params/{check_name(name, 'parameter name')}"
        if self._exists(path):
            raise VectorFileError(f"{path} is already written")
        codes = as_codes(values, fmt, f"layer {layer!r} parameter {name!r}")
        self._create(path, codes, fmt, axes if axes is not None else default_axes(codes.ndim, ()), None)

    def write_stimulus(self, encoder):
        """Store the encoder's integer input and settings; spike encodings then need
        ``write_stimulus_step`` for every timestep (the encoder's ``step()`` output)."""
        if self._stimulus:
            raise VectorFileError("the stimulus is already written")
        x = np.asarray(encoder.x)
        if x.ndim < 1 or x.shape[0] != self.batch:
            raise VectorFileError(f"stimulus input shape {x.shape} must start with the batch size {self.batch}")
        self._create_group("stimulus")
        self._create("stimulus/input", as_codes(x, encoder.fmt, "stimulus input"), encoder.fmt,
                     default_axes(x.ndim, TRACE_AXES[1:]), None)
        self._set_attrs("stimulus", {"encoding": encoder.name, **{
            key: _attr_value(value, f"stimulus attribute {key!r}") for key, value in sorted(encoder.params.items())}})
        if encoder.spiking:
            self._declare_steps("stimulus/spikes", x.shape[1:], SPIKE, None)
        self._stimulus = True

    def write_stimulus_step(self, t, spikes):
        """Store the input spikes (N, ...) of timestep ``t``."""
        self._write_step("stimulus/spikes", t, spikes)

    def declare_trace(self, layer, signal, shape, fmt: QFormat, axes=None):
        """Create ``traces/<layer>/<signal>`` of shape (T, N, *shape); fill it with ``write_step``."""
        key = self._layer(layer)
        check_name(signal, f"layer {layer!r}: signal")
        shape = _check_shape(shape, f"trace {layer}/{signal}: shape")
        self._declare_steps(f"traces/{key}/{signal}", shape, fmt, axes)

    def write_step(self, layer, signal, t, values):
        """Store timestep ``t`` (an (N, ...) integer array that fits the declared format)."""
        self._write_step(f"traces/{self._layer(layer)}/{signal}", t, values)

    def write_output(self, name, values, fmt: QFormat, axes=None):
        """Store output ``name`` (integers of ``fmt``; default axes n, c, y, x)."""
        path = f"outputs/{check_name(name, 'output name')}"
        if self._exists(path):
            raise VectorFileError(f"{path} is already written")
        codes = as_codes(values, fmt, f"output {name!r}")
        self._create(path, codes, fmt, axes if axes is not None else default_axes(codes.ndim, TRACE_AXES[1:]), None)

    def write_counts(self, layer, event, counts):
        """Store the per-timestep count (T,) of ``event`` (e.g. ``overflow``) in ``layer``."""
        if event == SPIKE_COUNT:
            raise VectorFileError(f"layer {layer!r}: the count name {SPIKE_COUNT!r} is reserved for write_spike_count")
        path = f"counts/{self._layer(layer)}/{check_name(event, 'count name')}"
        if self._exists(path):
            raise VectorFileError(f"{path} is already written")
        arr = np.asarray(counts)
        if arr.shape != (self.timesteps,):
            raise VectorFileError(f"{path}: counts must have shape ({self.timesteps},), got {arr.shape}")
        if arr.dtype.kind in "iu" and arr.size and arr.min() < 0:
            raise VectorFileError(f"{path}[{int(np.argmin(arr))}] = {int(arr.min())}: counts cannot be negative")
        self._create(path, as_codes(arr, COUNT_FORMAT, path), COUNT_FORMAT, ("t",), None)

    def write_spike_count(self, layer, counts, fmt: QFormat):
        """Store ``counts/<layer>/spike_count``: the (N, ...) outputs of ``layer`` summed over the
        T timesteps, integers of ``fmt`` (default axes n, c, y, x)."""
        path = f"counts/{self._layer(layer)}/{SPIKE_COUNT}"
        if self._exists(path):
            raise VectorFileError(f"{path} is already written")
        codes = as_codes(counts, fmt, path)
        if codes.ndim < 1 or codes.shape[0] != self.batch:
            raise VectorFileError(f"{path}: shape {codes.shape} must start with the batch size {self.batch}")
        self._create(path, codes, fmt, default_axes(codes.ndim, TRACE_AXES[1:]), None)

    def write_cost(self, sections):
        """Store cost figures ``{section: {layer: {quantity: int}}}`` (``refmodel.cost.Cost.sections()``,
        every layer of a section with the same quantities) as the group ``cost/<section>``: its
        attribute ``layers`` (the layer keys, space-separated, in layer order) and one int64[L]
        attribute per quantity, its figures in that order; sections and quantities sorted by name."""
        if self._exists("cost"):
            raise VectorFileError("the cost is already written")
        checked = {}  # everything is checked before anything is written
        for section, rows in sections.items():
            where = f"cost/{check_name(section, 'cost section')}"
            keys = sorted(self._layer(layer) for layer in rows)
            names = {self._layers[layer]: layer for layer in rows}
            quantities = sorted({quantity for figures in rows.values() for quantity in figures})
            attrs = {"layers": " ".join(keys)}
            for quantity in quantities:
                if check_name(quantity, f"{where}: quantity") == "layers":
                    raise VectorFileError(f"{where}: the quantity name 'layers' is reserved")
                missing = [names[key] for key in keys if quantity not in rows[names[key]]]
                if missing:
                    raise VectorFileError(f"{where}: layer {missing[0]!r} has no {quantity!r} (every layer of a "
                                          f"section has the same quantities)")
                attrs[quantity] = np.array([_check_int(rows[names[key]][quantity], f"{where}/{names[key]}: {quantity}",
                                                       -_INT64_MAX - 1) for key in keys], np.int64)
            checked[where] = attrs
        self._create_group("cost")
        for path in sorted(checked):
            self._create_group(path)
            self._set_attrs(path, checked[path])

    def write_coverage(self, coverage):
        """Store a ``refmodel.coverage.Coverage`` (one run's: its per-bin ``runs`` are not stored)
        as ``coverage/<layer key>`` groups (``coverage/input`` for the network input), each with
        the attributes ``kind``, ``bins`` (the bin names in report order, space-separated),
        ``unreachable`` (canonical JSON of {bin: reason}) and one int64 array attribute per bin,
        its hits per channel; groups and attributes created in sorted name order."""
        if self._exists("coverage"):
            raise VectorFileError("the coverage is already written")
        checked = {}  # everything is checked before anything is written
        for layer, cov in coverage.layers.items():
            key = COVERAGE_INPUT if layer == COVERAGE_INPUT else self._layer(layer)
            where = f"coverage/{key}"
            attrs = {"kind": check_name(cov.kind, f"{where}: kind")}
            if layer == COVERAGE_INPUT and cov.kind != COVERAGE_INPUT:
                raise VectorFileError(f"{where}: kind {cov.kind!r}; the network input's coverage has kind 'input'")
            for name, counts in cov.hits.items():
                check_name(name, f"{where}: bin")
                if name in COVERAGE_ATTRS:
                    raise VectorFileError(f"{where}: bin name {name!r} is reserved (attributes {COVERAGE_ATTRS})")
                arr = np.asarray(counts)
                if arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.size == 0:
                    raise VectorFileError(f"{where}: bin {name!r} must be a non-empty 1-D integer array of hits per "
                                          f"channel, got dtype {arr.dtype} shape {arr.shape}")
                low, high = int(arr.min()), int(arr.max())
                if low < 0 or high > _INT64_MAX:
                    bad = int(np.argmin(arr)) if low < 0 else int(np.argmax(arr))
                    raise VectorFileError(f"{where}: bin {name!r} channel {bad} = {int(arr[bad])}: hits must be in "
                                          f"0..{_INT64_MAX}")
                attrs[name] = arr.astype(np.int64)
            unreachable = dict(cov.unreachable)
            for name, reason in unreachable.items():
                if name not in cov.hits or not isinstance(reason, str):
                    raise VectorFileError(f"{where}: unreachable bin {name!r} = {reason!r} must be one of its bins "
                                          f"{list(cov.hits)} with a reason (a string)")
            attrs["bins"] = " ".join(cov.hits)
            attrs["unreachable"] = canonical_json(unreachable)
            checked[key] = attrs
        self._create_group("coverage")
        for key in sorted(checked):
            self._create_group(f"coverage/{key}")
            self._set_attrs(f"coverage/{key}", dict(sorted(checked[key].items())))


def reseal(path) -> None:
    """Recompute, in place, every digest of a vector file edited on purpose with h5py (a test
    of a checker with a deliberately wrong value, say), so that it reads as that edit and not as
    damage: each dataset's ``sha256`` (per timestep for traces and stimulus spikes), then the
    root's ``metadata_sha256``.  Never use it to make a damaged file readable."""
    with h5py.File(os.fspath(path), "r+") as h5:
        for name, obj in walk(h5):
            if isinstance(obj, h5py.Dataset):
                values = obj[()]
                digest = steps_digest(map(values_digest, values)) if is_streamed(name) else values_digest(values).hex()
                obj.attrs[DIGEST_ATTR] = digest
        h5.attrs[METADATA_DIGEST_ATTR] = metadata_digest(h5, walk(h5))
