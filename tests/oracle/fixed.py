"""Twin of refmodel.fixed: exact rational arithmetic on Python ints, from docs/arithmetic.md §1-3."""

from fractions import Fraction
from math import floor

ROUNDINGS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOWS = ("WRAP", "SAT", "SAT_SYM", "ERROR")


class OracleOverflow(Exception):
    """The twin's ERROR mode: the value does not fit."""


class OracleOverflowAt(OracleOverflow):
    """ERROR mode in an array: the first element (row-major) at ``index`` had ``value``."""

    def __init__(self, index, value):
        super().__init__(f"{index}: {value}")
        self.index = index
        self.value = value


def code_range(bits, signed):
    """[min, max] of a bits-wide two's complement (signed) or plain binary code."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def mode_name(mode) -> str:
    """A mode given as an enum member or its name."""
    return getattr(mode, "name", mode).upper()


def round_rational(q: Fraction, rounding) -> int:
    """The integer ``q`` becomes under ``rounding`` (§2)."""
    rounding = mode_name(rounding)
    f = floor(q)
    d = q - f
    if d == 0:
        return f
    if rounding == "TRN":
        return f
    if rounding == "TRN_ZERO":
        return f if q > 0 else f + 1
    if d > Fraction(1, 2):
        return f + 1
    if d < Fraction(1, 2):
        return f
    # a tie: q is exactly halfway between f and f + 1
    up = {
        "RND": True,
        "RND_ZERO": q < 0,
        "RND_MIN_INF": False,
        "RND_INF": q > 0,
        "RND_CONV": f % 2 == 1,
    }[rounding]
    return f + 1 if up else f


def shift_right(x: int, n: int, rounding) -> int:
    """x / 2**n rounded."""
    return round_rational(Fraction(x, 2**n), rounding)


def cast(x: int, fmt, overflow) -> int:
    """x into the code range of ``fmt`` (anything with ``bits`` and ``signed``), §3."""
    bits, signed, overflow = fmt.bits, fmt.signed, mode_name(overflow)
    lo, hi = code_range(bits, signed)
    if overflow == "SAT_SYM" and signed:
        lo = -hi
    if lo <= x <= hi:
        return x
    if overflow == "WRAP":
        y = x % 2**bits
        return y - 2**bits if signed and y >= 2 ** (bits - 1) else y
    if overflow in ("SAT", "SAT_SYM"):
        return hi if x > hi else lo
    raise OracleOverflow(x)


def quantize(v: float, fmt, rounding, overflow) -> int:
    """cast(round(v * 2**frac)), computed exactly."""
    return cast(round_rational(Fraction(v) * Fraction(2) ** fmt.frac, rounding), fmt, overflow)


def elementwise(fn, x, *args, index=()):
    """``fn(v, *args)`` for every element v of the nested list ``x``, in row-major order;
    the first OracleOverflow becomes OracleOverflowAt(its index, v)."""
    if isinstance(x, list):
        return [elementwise(fn, v, *args, index=index + (i,)) for i, v in enumerate(x)]
    try:
        return fn(x, *args)
    except OracleOverflow:
        raise OracleOverflowAt(index, x) from None
