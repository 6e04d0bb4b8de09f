"""Helpers for users' own bit-exact tests of a design against the golden model."""

from __future__ import annotations

from refmodel.vectors.compare import first_mismatch
from refmodel.vectors.schema import TRACE_AXES

__all__ = ["assert_bit_exact"]


def assert_bit_exact(expected, actual, *, layer=None, signal=None, axes=TRACE_AXES):
    """Raise AssertionError with the first-mismatch report unless the integer arrays are equal.

    Dtypes may differ (equal values are equal); ``axes`` names the dimensions in the report
    (default t, n, c, y, x).  Non-integer arrays are refused with ValueError.
    """
    mismatch = first_mismatch(expected, actual, axes, layer=layer, signal=signal)
    if mismatch is not None:
        raise AssertionError(str(mismatch))
