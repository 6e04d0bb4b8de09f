"""Constants and helpers of the HDF5 vector format, version 3 (specified in docs/vectors.md)."""

from __future__ import annotations

import hashlib
import json
import re

import h5py
import numba
import numpy as np

from refmodel.errors import RefmodelError
from refmodel.fixed import FixedPointError, QFormat

FORMAT_NAME = "refmodel-vectors"
#: The version this writer writes; version 2 added the content and metadata digests, version 3
#: the coverage group, version 4 narrow array digests in the config and cost tables (§11).
FORMAT_VERSION = 4
#: The versions this reader reads (version 1 files have no digests, versions 1 and 2 no coverage).
READABLE_VERSIONS = (1, 2, 3, 4)
#: Dataset attribute: SHA-256 of its values (``values_digest``, ``steps_digest`` when stepped).
DIGEST_ATTR = "sha256"
#: Root attribute: SHA-256 of every object's attributes but this one (``metadata_digest``).
METADATA_DIGEST_ATTR = "metadata_sha256"

#: Members allowed at the root; ``cost`` and ``coverage`` are optional.
ROOT_MEMBERS = ("layers", "stimulus", "traces", "outputs", "counts", "cost", "coverage")
#: The first version that may hold each root member added after version 1.
MEMBER_SINCE = {"coverage": 3}
#: The group of the network input's coverage bins in ``coverage/`` (beside the layer keys).
COVERAGE_INPUT = "input"
#: The attributes of a ``coverage/<layer>`` group besides its bins (whose names they cannot take).
COVERAGE_ATTRS = ("bins", "kind", "unreachable")
#: Default axis names of traces and of spike stimuli, (T, N, C, Y, X).
TRACE_AXES = ("t", "n", "c", "y", "x")
#: Format of a per-timestep event count (non-negative, int64 storage).
COUNT_FORMAT = QFormat(64, 0, True)
#: Name of the per-layer count that is not per timestep: a layer's outputs summed over T, (N, ...).
SPIKE_COUNT = "spike_count"
#: Digits of the layer index in group names (``layers/000_conv1``): names sort in layer order.
INDEX_DIGITS = 3

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class VectorFileError(RefmodelError):
    """A vector file (or a request to write one) is invalid; the message names path and problem."""


def check_name(name, what) -> str:
    """``name`` if it is a valid layer/signal/parameter name, else VectorFileError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise VectorFileError(
            f"{what} {name!r} is not a valid name (a letter, then up to 63 letters, digits, '_', '.', '-')"
        )
    return name


def root_members(version: int) -> tuple:
    """The members allowed at the root of a file of format ``version``."""
    return tuple(m for m in ROOT_MEMBERS if version >= MEMBER_SINCE.get(m, 1))


def layer_key(index: int, name: str) -> str:
    """Group name of layer ``index``: zero-padded index, underscore, name."""
    return f"{index:0{INDEX_DIGITS}d}_{name}"


def canonical_json(config) -> str:
    """The canonical JSON text of ``config``: sorted keys, no whitespace, ASCII, no NaN."""
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise VectorFileError(f"config is not JSON-serializable: {exc}") from None


def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``text``, lowercase hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def storage_dtype(fmt: QFormat) -> np.dtype:
    """Smallest numpy integer dtype holding every code of ``fmt`` (int8..int64, uint8..uint64)."""
    for size in (8, 16, 32, 64):
        if fmt.bits <= size:
            return np.dtype(f"{'int' if fmt.signed else 'uint'}{size}")
    raise AssertionError(fmt)  # QFormat guarantees bits <= 64


def format_attrs(fmt: QFormat, axes) -> dict:
    """Attributes describing an integer dataset: its QFormat and axis names."""
    return {"bits": np.int32(fmt.bits), "frac": np.int32(fmt.frac), "signed": np.uint8(fmt.signed),
            "axes": " ".join(axes)}


def format_of(attrs, where) -> QFormat:
    """The QFormat stored in a dataset's attributes (VectorFileError when absent or invalid)."""
    try:
        return QFormat(int(attrs["bits"]), int(attrs["frac"]), bool(attrs["signed"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise VectorFileError(f"{where}: missing or invalid format attributes (bits, frac, signed): {exc}") from None


def default_axes(ndim: int, leading=TRACE_AXES) -> tuple:
    """``leading`` cut to ``ndim`` names, extended by ``d5``, ``d6``, ... when longer."""
    return tuple(leading[:ndim]) + tuple(f"d{i}" for i in range(len(leading), ndim))


#: Arrays of at least this many values are checked and narrowed by ``_narrowed`` in one pass.
NARROW_MIN_SIZE = 1 << 16


@numba.njit(cache=True, nogil=True)
def _narrowed(values, out):
    """out[i] = values[i] (cast) for the flat arrays ``values`` and ``out``; (min, max) of
    ``values``: a cast and the range check's reductions in one pass, without branches."""
    low = high = values[0]
    for i in range(values.size):
        v = values[i]
        low = min(low, v)
        high = max(high, v)
        out[i] = v
    return low, high


def _one_pass(arr: np.ndarray, fmt: QFormat) -> bool:
    """Whether ``_narrowed`` can take ``arr``: large, contiguous, its values and the format's
    bounds all int64 (so that the compares are exact)."""
    return (arr.size >= NARROW_MIN_SIZE and arr.flags.c_contiguous and arr.dtype.kind in "iu"
            and arr.dtype.itemsize <= (8 if arr.dtype.kind == "i" else 4) and fmt.max_int < 1 << 63)


def as_codes(values, fmt: QFormat, what: str) -> np.ndarray:
    """``values`` as a new array of ``fmt``'s storage dtype; refuses floats and out-of-range values."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iub":
        raise VectorFileError(f"{what} must be an integer array, got dtype {arr.dtype} (never store floats)")
    if _one_pass(arr, fmt):
        out = np.empty(arr.shape, storage_dtype(fmt))
        low, high = _narrowed(arr.reshape(-1), out.reshape(-1))
        if fmt.min_int <= low and high <= fmt.max_int:
            return out
    try:  # (a value out of range: the check names the first)
        fmt.check(arr, what)
    except FixedPointError as exc:
        raise VectorFileError(str(exc)) from None
    return arr.astype(storage_dtype(fmt))


def is_streamed(path: str) -> bool:
    """Whether the dataset at ``path`` is written a timestep at a time: the traces and the
    stimulus spikes (their digest is ``steps_digest``)."""
    return path.startswith("traces/") or path == "stimulus/spikes"


def values_digest(values: np.ndarray) -> bytes:
    """SHA-256 of an array's values in its storage dtype, little-endian, row-major."""
    arr = np.ascontiguousarray(values)
    return hashlib.sha256(arr.astype(arr.dtype.newbyteorder("<"), copy=False).data).digest()


def steps_digest(step_digests) -> str:
    """The digest of a stepped dataset (axis 0 the timestep): SHA-256 of the concatenated
    ``values_digest`` of its timesteps, lowercase hex."""
    return hashlib.sha256(b"".join(step_digests)).hexdigest()


def walk(group, path=""):
    """Every ``(path, object)`` below ``group`` in sorted order, depth first; VectorFileError
    at the first link that is not a hard link, or an object with more than one."""
    for name in sorted(group):
        child = f"{path}/{name}" if path else name
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise VectorFileError(f"/{child} is a {type(link).__name__}; a vector file holds hard links only")
        obj = group[name]
        if h5py.h5o.get_info(obj.id).rc != 1:
            raise VectorFileError(f"/{child} has more than one name (hard links); a vector file names each object once")
        if not isinstance(obj, (h5py.Group, h5py.Dataset)):
            raise VectorFileError(f"/{child} is a {type(obj).__name__}, neither a group nor a dataset")
        yield child, obj
        if isinstance(obj, h5py.Group):
            yield from walk(obj, child)


def attr_json(value, where):
    """An attribute's value as the metadata digest sees it: a string, an int or a list of ints."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, (str, int)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        return [int(v) for v in value.ravel()]
    if isinstance(value, np.integer):
        return int(value)
    raise VectorFileError(f"{where} is a {type(value).__name__}; vector file attributes are integers and strings")


def metadata_sha256(table) -> str:
    """SHA-256 (hex) of the canonical JSON of ``{object path: {attribute: attr_json(value)}}``."""
    return sha256_hex(canonical_json(table))


def metadata_digest(root, objects) -> str:
    """``metadata_sha256`` of the root (path ``""``) and ``objects`` (``walk(root)``), less the
    root's own ``metadata_sha256``."""
    table = {path: {name: attr_json(value, f"/{path} attribute {name!r}") for name, value in obj.attrs.items()
                    if (path, name) != ("", METADATA_DIGEST_ATTR)}
             for path, obj in [("", root), *objects]}
    return metadata_sha256(table)
