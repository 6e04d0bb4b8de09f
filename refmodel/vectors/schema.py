"""Constants and helpers of the HDF5 vector format, version 1 (specified in docs/vectors.md)."""

from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np

from refmodel.fixed import FixedPointError, QFormat

FORMAT_NAME = "refmodel-vectors"
FORMAT_VERSION = 1

#: Members allowed at the root; ``cost`` is optional.
ROOT_MEMBERS = ("layers", "stimulus", "traces", "outputs", "counts", "cost")
#: Default axis names of traces and of spike stimuli, (T, N, C, Y, X).
TRACE_AXES = ("t", "n", "c", "y", "x")
#: Format of a per-timestep event count (non-negative, int64 storage).
COUNT_FORMAT = QFormat(64, 0, True)
#: Name of the per-layer count that is not per timestep: a layer's outputs summed over T, (N, ...).
SPIKE_COUNT = "spike_count"
#: Digits of the layer index in group names (``layers/000_conv1``): names sort in layer order.
INDEX_DIGITS = 3
GZIP_LEVEL = 1  # fastest deflate: half the time of level 4 for ~3% larger trace files

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class VectorFileError(ValueError):
    """A vector file (or a request to write one) is invalid; the message names path and problem."""


def check_name(name, what) -> str:
    """``name`` if it is a valid layer/signal/parameter name, else VectorFileError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise VectorFileError(
            f"{what} {name!r} is not a valid name (a letter, then up to 63 letters, digits, '_', '.', '-')"
        )
    return name


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


def as_codes(values, fmt: QFormat, what: str) -> np.ndarray:
    """``values`` as an array of ``fmt``'s storage dtype; refuses floats and out-of-range values."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iub":
        raise VectorFileError(f"{what} must be an integer array, got dtype {arr.dtype} (never store floats)")
    try:
        fmt.check(arr, what)
    except FixedPointError as exc:
        raise VectorFileError(str(exc)) from None
    return arr.astype(storage_dtype(fmt))


def chmod_default(path, mode):
    """Give ``path`` the permissions ``mode`` less the umask (temporary files are private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)
