"""The small checks every module makes of user input, each written once."""

from __future__ import annotations

import numpy as np

__all__ = ["is_integer", "integer_in", "must_be_integer", "checked_integer", "first_outside", "index_text"]


def is_integer(value) -> bool:
    """An int or a numpy integer; a bool is not (true/false in a spec is a mistake)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer_in(value, lo=None, hi=None) -> bool:
    """An integer in ``lo..hi`` (a bound left None is open)."""
    return is_integer(value) and (lo is None or value >= lo) and (hi is None or value <= hi)


def must_be_integer(lo=None, hi=None) -> str:
    """The problem an error states for a value that is not ``integer_in(value, lo, hi)``."""
    if lo is not None and hi is not None:
        return f"must be an integer in {lo}..{hi}"
    return f"must be an integer >= {lo}" if lo is not None else f"must be an integer <= {hi}" if hi is not None \
        else "must be an integer"


def checked_integer(value, lo, hi, error, name: str, field: str) -> int:
    """``int(value)``, or ``error(name, field, value, problem)`` (a PlacedError class) raised
    unless ``integer_in(value, lo, hi)``."""
    if not integer_in(value, lo, hi):
        raise error(name, field, value, must_be_integer(lo, hi))
    return int(value)


def first_outside(values: np.ndarray, lo, hi) -> tuple[tuple, int] | None:
    """(index, value) of the first element of ``values`` in row-major order outside ``lo..hi``
    (a bound left None is open), or None when every element lies inside."""
    if not values.size:
        return None
    below = lo is not None and int(values.min()) < lo
    above = hi is not None and int(values.max()) > hi
    if not (below or above):
        return None
    bad = (values < lo) if below else np.zeros(values.shape, bool)
    if above:
        bad |= values > hi
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), values.shape))
    return index, int(values[index])


def index_text(index) -> str:
    """``[i, j, ...]`` for an index tuple (empty for a scalar)."""
    return f"[{', '.join(map(str, index))}]" if len(index) else ""
