"""What every layer description shares: the error that names the place, and field checks."""

from __future__ import annotations

import numpy as np

from refmodel.errors import PlacedError
from refmodel.fixed import FixedOverflowError, QFormat


#: The format of a spike: one unsigned bit.
SPIKE = QFormat(1, 0, signed=False)


class LayerError(PlacedError, ValueError):
    """A layer description is invalid: names the layer, the field and the value.

    The message reads ``<place> '<name>': <field> = <value> <problem>``; ``place`` is "layer"
    unless a subclass (or the caller) names another kind of place ("network", "spec").
    """

    place = "layer"

    @property
    def layer(self) -> str:
        return self.name


def check_name(name, place: str = "layer") -> None:
    """A layer's (or network's) name: non-empty ASCII letters, digits and ``_``."""
    if not isinstance(name, str) or not name.isascii() or not name.replace("_", "").isalnum():
        raise LayerError(str(name), "name", name, "must be a non-empty name of ASCII letters, digits and _",
                         place=place)


def int_array(layer: str, field: str, value, fmt: QFormat | None, ndim: int | None = None) -> np.ndarray:
    """``value`` as a read-only int64 array whose codes fit ``fmt`` (when given)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":  # (booleans are not codes: true/false in a spec is a mistake)
        raise LayerError(layer, field, value, f"must be integer codes, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise LayerError(layer, field, arr, f"must have {ndim} dimensions, got {arr.ndim}")
    if fmt is not None:
        if not isinstance(fmt, QFormat):
            raise LayerError(layer, f"{field}_format", fmt, "must be a QFormat")
        fmt.check_datapath()
        try:
            fmt.check(arr, field)
        except FixedOverflowError as err:
            index = f"[{', '.join(map(str, err.index))}]" if err.index else ""
            raise LayerError(layer, field, arr, f"has {field}{index} = {err.value}, which does not fit {fmt} "
                                                f"(range {fmt.min_int}..{fmt.max_int})") from None
    arr = arr.astype(np.int64)
    arr.setflags(write=False)
    return arr


def positive_pair(layer: str, field: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= ``minimum``."""
    if isinstance(value, (int, np.integer)):
        pair = (value, value)
    elif isinstance(value, (tuple, list)):
        pair = tuple(value)
    else:
        raise LayerError(layer, field, value, "must be an integer or a pair of integers")
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise LayerError(layer, field, value, "must be an integer or a pair of integers")
    if min(pair) < minimum:
        raise LayerError(layer, field, value, f"must be >= {minimum}")
    return int(pair[0]), int(pair[1])
