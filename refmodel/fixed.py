"""Fixed-point formats, rounding and overflow modes, named as in ap_fixed.

Every value in the golden path is an integer ``q``; a ``QFormat(bits, frac, signed)``
says that ``q`` stands for the real number ``q * 2**-frac`` and that ``q`` lies in
``[min_int, max_int]``.  The operations here are specified in ``docs/arithmetic.md``:

* ``quantize(x, fmt, rounding, overflow)``  float -> integer of ``fmt``
* ``shift_right(x, n, rounding)``           integer ``x / 2**n`` rounded
* ``cast(x, fmt, overflow)``                integer into the range of ``fmt``

The scalar ``*_int`` / ``quantize_float`` functions are Numba-compiled and take the
modes as integer codes (``int(Rounding.RND)``), for use inside kernels.  Kernels cannot
raise with the offending value, so in ``ERROR`` mode the scalar cast returns ``x``
unchanged and the caller checks ``in_range_int`` itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numba
import numpy as np

from refmodel.checks import first_outside, integer_in, is_integer, must_be_integer
from refmodel.errors import RefmodelError

__all__ = [
    "FixedPointError",
    "FixedOverflowError",
    "Rounding",
    "Overflow",
    "QFormat",
    "quantize",
    "shift_right",
    "cast",
    "shift_right_int",
    "cast_int",
    "in_range_int",
    "int_min",
    "int_max",
    "quantize_float",
]


class FixedPointError(RefmodelError):
    """Invalid fixed-point input: a bad format, mode, dtype or value."""


class FixedOverflowError(FixedPointError):
    """A value left its format under ``Overflow.ERROR``; ``index`` and ``value`` say where."""

    def __init__(self, message, index=None, value=None):
        super().__init__(message)
        self.index = index
        self.value = value


class _Mode(enum.IntEnum):
    @classmethod
    def of(cls, mode):
        """The member for an enum member or its name (any case); FixedPointError otherwise."""
        if isinstance(mode, cls):
            return mode
        if isinstance(mode, str):
            try:
                return cls[mode.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(m.name for m in cls)
        raise FixedPointError(f"unknown {cls.__name__} mode {mode!r}; expected one of {names}")


class Rounding(_Mode):
    """How a value between two integers becomes one of them (ap_fixed names).

    TRN: toward minus infinity (floor).  TRN_ZERO: toward zero.
    The RND* modes round to the nearest integer and differ only on ties (a fraction of
    exactly 1/2): RND up (toward +inf), RND_ZERO toward zero, RND_MIN_INF toward -inf,
    RND_INF away from zero, RND_CONV to the even integer.
    """

    TRN = 0
    TRN_ZERO = 1
    RND = 2
    RND_ZERO = 3
    RND_MIN_INF = 4
    RND_INF = 5
    RND_CONV = 6


class Overflow(_Mode):
    """What happens to an integer outside a format's range.

    WRAP: two's complement wrap (keep the low ``bits`` bits).  SAT: clamp to
    [min_int, max_int].  SAT_SYM: clamp to [-max_int, max_int] for signed formats (the
    most negative code is never produced), as SAT for unsigned.  ERROR: raise
    FixedOverflowError naming the first offending index and value.
    """

    WRAP = 0
    SAT = 1
    SAT_SYM = 2
    ERROR = 3


@dataclass(frozen=True)
class QFormat:
    """A fixed-point format: integer ``q`` in ``bits`` bits stands for ``q * 2**-frac``.

    Signed: ``q`` in [-2**(bits-1), 2**(bits-1) - 1]; unsigned: ``q`` in [0, 2**bits - 1].
    ``bits`` is 1..64 (an unsigned 64-bit format is describable but does not fit the
    int64 datapath); ``frac`` is -1000..1000 (2**frac must be a normal float64), negative included.
    """

    bits: int
    frac: int = 0
    signed: bool = True

    def __post_init__(self):
        for name in ("bits", "frac"):
            value = getattr(self, name)
            if not is_integer(value):
                raise FixedPointError(f"QFormat.{name} {must_be_integer()}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.signed, (bool, np.bool_)):
            raise FixedPointError(f"QFormat.signed must be a bool, got {self.signed!r}")
        object.__setattr__(self, "signed", bool(self.signed))
        if not 1 <= self.bits <= 64:
            raise FixedPointError(f"QFormat.bits must be in 1..64, got {self.bits}")
        if not -1000 <= self.frac <= 1000:
            raise FixedPointError(f"QFormat.frac must be in -1000..1000, got {self.frac}")

    @property
    def min_int(self) -> int:
        """Smallest integer code."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        """Largest integer code."""
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def min(self) -> float:
        """Smallest representable real value, ``min_int * 2**-frac``."""
        return self.min_int * 2.0**-self.frac

    @property
    def max(self) -> float:
        """Largest representable real value, ``max_int * 2**-frac``."""
        return self.max_int * 2.0**-self.frac

    def bounds(self, overflow="SAT") -> tuple[int, int]:
        """The integer range values end up in under ``overflow`` (SAT_SYM drops min_int)."""
        if Overflow.of(overflow) == Overflow.SAT_SYM and self.signed:
            return -self.max_int, self.max_int
        return self.min_int, self.max_int

    def check_datapath(self):
        """Raise unless every code of this format fits an int64."""
        if self.bits == 64 and not self.signed:
            raise FixedPointError(f"{self} does not fit the int64 datapath (max 2**64 - 1)")

    def check(self, values, what="value"):
        """Raise FixedOverflowError naming ``what``, the first index and value outside the range."""
        arr = np.asarray(values)
        if arr.dtype.kind not in "iub":
            raise FixedPointError(f"{what} must be integers, got dtype {arr.dtype}")
        outside = first_outside(arr, self.min_int, self.max_int)
        if outside:
            index, value = outside
            raise FixedOverflowError(
                f"{_at(what, index)} = {value} does not fit {self} (range {self.min_int}..{self.max_int})",
                index=index,
                value=value,
            )

    def to_dict(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed}

    @classmethod
    def from_dict(cls, d) -> QFormat:
        unknown = set(d) - {"bits", "frac", "signed"}
        if unknown:
            raise FixedPointError(f"unknown QFormat keys {sorted(unknown)}")
        return cls(**d)

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}.{self.frac}"


# --------------------------------------------------------------------------- scalar core
_TRN, _TRN_ZERO, _RND, _RND_ZERO, _RND_MIN_INF, _RND_INF, _RND_CONV = range(7)
_WRAP, _SAT, _SAT_SYM, _ERROR = range(4)


@numba.njit(cache=True, inline="always")
def int_min(bits, signed):
    """Smallest code of a ``bits``-wide format (bits <= 64 signed, <= 63 unsigned)."""
    if not signed:
        return np.int64(0)
    return np.int64(-1) << np.int64(bits - 1)


@numba.njit(cache=True, inline="always")
def int_max(bits, signed):
    """Largest code of a ``bits``-wide format (bits <= 64 signed, <= 63 unsigned)."""
    n = np.int64(bits - 1) if signed else np.int64(bits)
    return ~(np.int64(-1) << n)


@numba.njit(cache=True, inline="always")
def int_bounds(bits, signed, overflow):
    """(lo, hi): the values ``cast_int`` leaves unchanged are lo..hi."""
    hi = int_max(bits, signed)
    lo = -hi if overflow == _SAT_SYM and signed else int_min(bits, signed)
    return lo, hi


@numba.njit(cache=True, inline="always")
def in_range_int(x, bits, signed, overflow):
    """True when ``x`` is a value ``cast_int`` leaves unchanged."""
    lo, hi = int_bounds(bits, signed, overflow)
    return lo <= x <= hi


@numba.njit(cache=True, inline="always")
def cast_int(x, bits, signed, overflow):
    """``x`` (int64) into a ``bits``-wide format: WRAP, SAT, SAT_SYM; ERROR returns ``x``."""
    x = np.int64(x)
    if in_range_int(x, bits, signed, overflow):
        return x
    if overflow == _WRAP:
        if signed:
            s = np.int64(64 - bits)
            return (x << s) >> s
        return x & int_max(bits, False)
    if overflow == _SAT or overflow == _SAT_SYM:
        hi = int_max(bits, signed)
        if x > hi:
            return hi
        if overflow == _SAT_SYM and signed:
            return -hi
        return int_min(bits, signed)
    return x


@numba.njit(cache=True, inline="always")
def _round_tie(floor_q, above_half, tie, negative, rounding):
    """Pick floor_q or floor_q + 1 given the discarded fraction (see shift_right_int)."""
    if above_half:
        return floor_q + 1
    if not tie:
        return floor_q
    if rounding == _RND:
        return floor_q + 1
    if rounding == _RND_ZERO:
        return floor_q + 1 if negative else floor_q
    if rounding == _RND_MIN_INF:
        return floor_q
    if rounding == _RND_INF:
        return floor_q if negative else floor_q + 1
    # RND_CONV: to the even neighbour
    return floor_q + (floor_q & 1)


@numba.njit(cache=True)
def shift_right_int(x, n, rounding):
    """``x / 2**n`` rounded by ``rounding`` (a Rounding code); ``n >= 0``, any size."""
    x = np.int64(x)
    if n == 0:
        return x
    negative = x < 0
    if n >= 64:
        # |x / 2**n| <= 1/2, with equality only for x = -2**63, n = 64.
        floor_q = np.int64(-1) if negative else np.int64(0)
        if rounding == _TRN:
            return floor_q
        if rounding == _TRN_ZERO:
            return np.int64(0)
        tie = n == 64 and x == int_min(64, True)
        return _round_tie(floor_q, False, tie, negative, rounding) if tie else np.int64(0)
    s = np.int64(n)
    floor_q = x >> s
    rem = x & ~(np.int64(-1) << s)  # x - floor_q * 2**n, in [0, 2**n)
    if rem == 0:
        return floor_q
    if rounding == _TRN:
        return floor_q
    if rounding == _TRN_ZERO:
        return floor_q + 1 if negative else floor_q
    half = np.int64(1) << (s - 1)
    return _round_tie(floor_q, rem > half, rem == half, negative, rounding)


_TWO63 = 9223372036854775808.0


@numba.njit(cache=True)
def quantize_float(v, bits, frac, signed, rounding, overflow):
    """Finite float ``v`` -> ``round(v * 2**frac)`` cast into the format (ERROR returns a
    value outside the range only when the rounded value itself is; callers check)."""
    y = v * 2.0**frac  # exact unless it under- or overflows, handled below
    if y == 0.0 and v < 0.0 and rounding == _TRN:
        return cast_int(np.int64(-1), bits, signed, overflow)  # underflowed tiny negative
    f = np.floor(y)
    d = y - f  # exact: f and y share the exponent range
    if d == 0.0:
        r = f
    elif rounding == _TRN:
        r = f
    elif rounding == _TRN_ZERO:
        r = f + 1.0 if y < 0 else f
    else:
        r = f + 1.0 if d > 0.5 else f
        if d == 0.5:
            if rounding == _RND:
                r = f + 1.0
            elif rounding == _RND_ZERO:
                r = f + 1.0 if y < 0 else f
            elif rounding == _RND_MIN_INF:
                r = f
            elif rounding == _RND_INF:
                r = f if y < 0 else f + 1.0
            else:
                r = f + 1.0 if np.fmod(f, 2.0) != 0.0 else f
    # r is an integer-valued float; bring it into int64 without undefined conversions.
    if r >= _TWO63 or r < -_TWO63:
        if overflow != _WRAP:  # SAT, SAT_SYM; under ERROR the caller checks the float itself
            if r > 0:
                return int_max(bits, signed)
            if overflow == _SAT_SYM and signed:
                return -int_max(bits, signed)
            return int_min(bits, signed)
        if np.isinf(r):
            return np.int64(0)  # |y| >= 2**1024 is a multiple of 2**64 (its ulp is >= 2**971)
        r = np.fmod(r, 18446744073709551616.0)  # exact; WRAP only needs r mod 2**64
        if r >= _TWO63:
            r -= 18446744073709551616.0
        elif r < -_TWO63:
            r += 18446744073709551616.0
    return cast_int(np.int64(r), bits, signed, overflow)


@numba.njit(cache=True)
def _quantize_array(x, bits, frac, signed, rounding, overflow, out):
    for i in range(x.size):
        out[i] = quantize_float(x[i], bits, frac, signed, rounding, overflow)


@numba.njit(cache=True)
def _shift_right_array(x, n, rounding, out):
    for i in range(x.size):
        out[i] = shift_right_int(x[i], n, rounding)


@numba.njit(cache=True)
def _cast_array(x, bits, signed, overflow, out):
    for i in range(x.size):
        out[i] = cast_int(x[i], bits, signed, overflow)


# --------------------------------------------------------------------------- array API
def _at(what, index):
    """``what[i, j]``; ``what[]`` for a 0-d array (where ``checks.index_text`` writes nothing)."""
    return f"{what}[{', '.join(map(str, index))}]"


def _as_int64(x, what):
    """Integers ``x`` as an int64 array; refuses other dtypes and uint64 values beyond int64."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        raise FixedPointError(f"{what} must be integers, got dtype {arr.dtype}")
    outside = first_outside(arr, None, np.iinfo(np.int64).max) if arr.dtype == np.uint64 else None
    if outside:
        index, value = outside
        raise FixedPointError(f"{_at(what, index)} = {value} exceeds int64")
    return arr.astype(np.int64)


def quantize(x, fmt: QFormat, rounding="RND_CONV", overflow="ERROR"):
    """Floats -> int64 codes of ``fmt``: ``cast(round(x * 2**fmt.frac))``.

    NaN and infinities are always refused.  Under ERROR the offending index and value
    (the real input) are named.
    """
    fmt.check_datapath()
    rounding, overflow = Rounding.of(rounding), Overflow.of(overflow)
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise FixedPointError(f"quantize needs real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        index = np.unravel_index(int(np.argmin(finite)), arr.shape)
        raise FixedPointError(f"{_at('quantize: x', index)} = {arr[index]} is not finite")
    out = np.empty(arr.size, np.int64)
    _quantize_array(arr.ravel(), fmt.bits, fmt.frac, fmt.signed, int(rounding), int(overflow), out)
    out = out.reshape(arr.shape)
    if overflow == Overflow.ERROR:
        lo, hi = fmt.bounds(overflow)
        with np.errstate(over="ignore"):
            scaled = arr * 2.0**fmt.frac
        bad = (out < lo) | (out > hi) | (scaled >= _TWO63) | (scaled < -_TWO63)
        if bad.any():
            index = np.unravel_index(int(np.argmax(bad)), arr.shape)
            raise FixedOverflowError(
                f"{_at('quantize: x', index)} = {float(arr[index])!r} overflows {fmt} "
                f"(range {fmt.min}..{fmt.max}) under Overflow.ERROR",
                index=index,
                value=float(arr[index]),
            )
    return out


def shift_right(x, n, rounding):
    """Integers ``x / 2**n`` rounded by ``rounding``; ``n >= 0`` (shifts of 64 and more allowed)."""
    rounding = Rounding.of(rounding)
    if not integer_in(n, 0):
        raise FixedPointError(f"shift_right: the shift {must_be_integer(0)}, got {n!r}")
    arr = _as_int64(x, "shift_right: x")
    out = np.empty(arr.size, np.int64)
    # every shift beyond 65 gives what 65 gives (|x| / 2**n < 1/2: no tie), and fits the kernel's int64
    _shift_right_array(arr.ravel(), min(int(n), 65), int(rounding), out)
    return out.reshape(arr.shape)


def cast(x, fmt: QFormat, overflow="ERROR"):
    """Integers into the range of ``fmt`` by ``overflow`` (the binary point is not moved)."""
    fmt.check_datapath()
    overflow = Overflow.of(overflow)
    arr = _as_int64(x, "cast: x")
    out = np.empty(arr.size, np.int64)
    _cast_array(arr.ravel(), fmt.bits, fmt.signed, int(overflow), out)
    out = out.reshape(arr.shape)
    if overflow == Overflow.ERROR:
        lo, hi = fmt.bounds(overflow)
        outside = first_outside(arr, lo, hi)
        if outside:
            index, value = outside
            raise FixedOverflowError(
                f"{_at('cast: x', index)} = {value} overflows {fmt} (range {lo}..{hi}) under Overflow.ERROR",
                index=index,
                value=value,
            )
    return out
