"""refmodel.fixed against its twin tests/oracle/fixed.py, bit for bit, plus edge values."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refmodel import QFormat
from refmodel.fixed import (
    FixedOverflowError,
    FixedPointError,
    Overflow,
    Rounding,
    cast,
    quantize,
    shift_right,
)
from tests.modes import OVERFLOWS, ROUNDINGS
from tests.oracle import fixed as oracle

INT64 = st.integers(-(2**63), 2**63 - 1)
DATAPATH_FORMATS = st.one_of(
    st.builds(QFormat, st.integers(1, 64), st.integers(-70, 70), st.just(True)),
    st.builds(QFormat, st.integers(1, 63), st.integers(-70, 70), st.just(False)),
)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)


def twin(fn, values, *args):
    """The twin applied to every element, or ("raise", index, value) for the first (row-major)
    element that does not fit under ERROR."""
    try:
        return oracle.elementwise(fn, values.tolist(), *args)
    except oracle.OracleOverflowAt as e:
        return ("raise", e.index, e.value)


def kernel(fn, values, *args):
    """``fn(values, *args)`` as nested lists, or ("raise", index, value) from its FixedOverflowError."""
    try:
        return fn(values, *args).tolist()
    except FixedOverflowError as e:
        return ("raise", tuple(int(i) for i in e.index), e.value)


# ------------------------------------------------------------------ twin equality
@given(st.lists(INT64, min_size=1, max_size=20), st.integers(0, 130), ROUNDINGS)
def test_shift_right_equals_twin(xs, n, rounding):
    assert shift_right(np.array(xs, np.int64), n, rounding).tolist() == [
        oracle.shift_right(x, n, rounding) for x in xs
    ]


@given(hnp.arrays(np.int64, SHAPES), st.integers(0, 63))
def test_trn_is_the_arithmetic_shift(x, n):
    """§2: TRN is the plain arithmetic shift x >> n (numpy's >> on int64)."""
    assert shift_right(x, n, "TRN").tolist() == (x >> n).tolist()


@given(hnp.arrays(np.int64, SHAPES, elements=INT64), DATAPATH_FORMATS, OVERFLOWS)
def test_cast_equals_twin(x, fmt, overflow):
    """Values, and under ERROR the first offending index (row-major) and value."""
    assert kernel(cast, x, fmt, overflow) == twin(oracle.cast, x, fmt, overflow)


FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-300, 300),
    st.integers(-(2**70), 2**70).map(lambda i: i / 4),  # exact ties
)


@given(hnp.arrays(np.float64, SHAPES, elements=FLOATS), DATAPATH_FORMATS, ROUNDINGS, OVERFLOWS)
def test_quantize_equals_twin(x, fmt, rounding, overflow):
    """Codes, and under ERROR the first offending index (row-major) and the real input there."""
    assert kernel(quantize, x, fmt, rounding, overflow) == twin(oracle.quantize, x, fmt, rounding, overflow)


@given(INT64, DATAPATH_FORMATS)
def test_wrap_is_modular(x, fmt):
    """WRAP keeps x modulo 2**bits: the result differs from x by a multiple of 2**bits, in range."""
    y = int(cast(np.array([x]), fmt, "WRAP")[0])
    assert (x - y) % 2**fmt.bits == 0 and fmt.min_int <= y <= fmt.max_int


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=8), st.integers(1, 20), st.booleans(),
       st.randoms(use_true_random=False))
def test_wrap_after_every_addition_equals_wrap_once(terms, bits, signed, random):
    """§3: wrapping after every addition of a sum, in any order, equals wrapping once at the end."""
    fmt = QFormat(bits, signed=signed)

    def wrap(v):
        return int(cast(np.array([v]), fmt, "WRAP")[0])

    random.shuffle(terms)
    each = 0
    for t in terms:
        each = wrap(each + t)
    assert each == wrap(sum(terms))


# ------------------------------------------------------------------ edge values
@pytest.mark.parametrize(
    "rounding, expected",
    [
        ("TRN", [0, -1, 1, -2]),
        ("TRN_ZERO", [0, 0, 1, -1]),
        ("RND", [1, 0, 2, -1]),
        ("RND_ZERO", [0, 0, 1, -1]),
        ("RND_MIN_INF", [0, -1, 1, -2]),
        ("RND_INF", [1, -1, 2, -2]),
        ("RND_CONV", [0, 0, 2, -2]),
    ],
)
def test_ties_at_plus_minus_half(rounding, expected):
    """+-0.5 and +-1.5, both as shifts of odd integers and as float quantization."""
    assert shift_right(np.array([1, -1, 3, -3]), 1, rounding).tolist() == expected
    assert quantize(np.array([0.5, -0.5, 1.5, -1.5]), QFormat(8), rounding).tolist() == expected


def test_shift_by_zero_is_identity():
    x = np.array([-(2**63), -1, 0, 1, 2**63 - 1], np.int64)
    for rounding in Rounding:
        assert shift_right(x, 0, rounding).tolist() == x.tolist()


def test_shift_by_width_and_more():
    x = np.array([-(2**63), -1, 1, 2**63 - 1], np.int64)
    # x / 2**64 is -1/2 (a tie), -2**-64, 2**-64 and just under 1/2
    assert shift_right(x, 64, "TRN").tolist() == [-1, -1, 0, 0]
    assert shift_right(x, 64, "RND").tolist() == [0, 0, 0, 0]
    assert shift_right(x, 64, "RND_MIN_INF").tolist() == [-1, 0, 0, 0]
    assert shift_right(x, 64, "RND_INF").tolist() == [-1, 0, 0, 0]
    assert shift_right(x, 64, "RND_CONV").tolist() == [0, 0, 0, 0]
    assert shift_right(x, 63, "TRN").tolist() == [-1, -1, 0, 0]
    assert shift_right(x, 63, "RND").tolist() == [-1, 0, 0, 1]
    assert shift_right(x, 200, "TRN_ZERO").tolist() == [0, 0, 0, 0]


def test_most_negative_value():
    fmt = QFormat(8)
    assert (fmt.min_int, fmt.max_int) == (-128, 127)
    assert cast(np.array([-128]), fmt, "SAT").tolist() == [-128]
    assert cast(np.array([-128, -129, 128]), fmt, "SAT_SYM").tolist() == [-127, -127, 127]
    assert cast(np.array([-129]), fmt, "WRAP").tolist() == [127]
    assert quantize(np.array([-128.0, -200.0]), fmt, "TRN", "SAT_SYM").tolist() == [-127, -127]
    assert cast(np.array([-(2**63)]), QFormat(64), "SAT_SYM").tolist() == [-(2**63 - 1)]
    assert cast(np.array([-128]), fmt, "ERROR").tolist() == [-128]
    with pytest.raises(FixedOverflowError):
        cast(np.array([-129]), fmt, "ERROR")


def test_unsigned_and_one_bit_formats():
    assert (QFormat(1).min_int, QFormat(1).max_int) == (-1, 0)
    assert (QFormat(1, signed=False).min_int, QFormat(1, signed=False).max_int) == (0, 1)
    assert cast(np.array([-1, 2, 3]), QFormat(2, signed=False), "WRAP").tolist() == [3, 2, 3]
    assert cast(np.array([-1, 5]), QFormat(2, signed=False), "SAT_SYM").tolist() == [0, 3]
    assert QFormat(64, signed=False).max_int == 2**64 - 1  # describable, refused by the operations


def test_real_range_and_name():
    fmt = QFormat(8, frac=4)
    assert (fmt.min, fmt.max) == (-8.0, 127 / 16)
    assert QFormat(4, frac=-2, signed=False).max == 60.0  # codes 0..15 count multiples of 4
    assert (str(fmt), str(QFormat(16, signed=False))) == ("s8.4", "u16.0")
    assert (QFormat(8, 1000).frac, QFormat(8, -1000).frac) == (1000, -1000)  # the ends of the frac range


def test_quantize_defaults_to_rnd_conv_and_error():
    """Ties at +-0.5, 1.5, 2.5 go to the even neighbour by default: 0, 2, 2 (RND would give 1, 2, 3)."""
    ties = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    assert quantize(ties, QFormat(8)).tolist() == [0, 2, 2, 0, -2, -2]
    assert quantize(ties, QFormat(8), "RND").tolist() == [1, 2, 3, 0, -1, -2]
    with pytest.raises(FixedOverflowError):
        quantize(np.array([127.5]), QFormat(8))  # rounds to 128 (even), outside s8


def test_error_names_first_index_and_value():
    with pytest.raises(FixedOverflowError, match=r"x\[1, 0\] = 300 overflows s8.0") as info:
        cast(np.array([[1, 2], [300, -300]]), QFormat(8), "ERROR")
    assert info.value.index == (1, 0) and info.value.value == 300
    with pytest.raises(FixedOverflowError, match=r"x\[2\] = 8.0 overflows s4.0"):
        quantize(np.array([1.0, 2.0, 8.0]), QFormat(4))


def test_huge_floats():
    fmt = QFormat(16)
    big = np.array([1e300, -1e300, 2.0**80 + 2.0**20])
    assert quantize(big, fmt, "TRN", "SAT").tolist() == [32767, -32768, 32767]
    assert quantize(big, fmt, "TRN", "WRAP").tolist() == [0, 0, 0]
    assert quantize(np.array([1e300]), QFormat(8, frac=1000), "TRN", "WRAP").tolist() == [0]
    assert quantize(np.array([-5e-324]), QFormat(8, frac=-1000), "TRN", "WRAP").tolist() == [-1]


def test_modes_by_name_or_enum():
    x = np.array([7])
    assert shift_right(x, 1, Rounding.RND_CONV).tolist() == shift_right(x, 1, "rnd_conv").tolist() == [4]
    assert Overflow.of("sat_sym") is Overflow.SAT_SYM
    with pytest.raises(FixedPointError, match="unknown Rounding mode 'NEAREST'.*RND_CONV"):
        shift_right(x, 1, "NEAREST")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: QFormat(0), "bits must be in 1..64, got 0"),
        (lambda: QFormat(65), "bits must be in 1..64, got 65"),
        (lambda: QFormat(8, 1.5), "frac must be an integer, got 1.5"),
        (lambda: QFormat(8, 1001), "frac must be in -1000..1000, got 1001"),
        (lambda: QFormat(8, -1001), "frac must be in -1000..1000, got -1001"),
        (lambda: QFormat(8, signed=1), "signed must be a bool"),
        (lambda: cast(np.array([1.5]), QFormat(8)), "must be integers, got dtype float64"),
        (lambda: shift_right(np.array([1]), -1, "TRN"), "shift must be an integer >= 0, got -1"),
        (lambda: quantize(np.array([1.0, math.nan]), QFormat(8)), r"x\[1\] = nan is not finite"),
        (lambda: quantize(np.array([[0.0], [math.inf]]), QFormat(8), overflow="SAT"), r"x\[1, 0\] = inf is not finite"),
        (lambda: quantize(np.array([-math.inf]), QFormat(8), overflow="WRAP"), r"x\[0\] = -inf is not finite"),
        (lambda: quantize(np.array([1.0]), QFormat(64, signed=False)), "does not fit the int64 datapath"),
        (lambda: cast(np.array([1]), QFormat(64, signed=False)), "does not fit the int64 datapath"),
        (lambda: cast(np.array([2**63], np.uint64), QFormat(8)), "exceeds int64"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(FixedPointError, match=message):
        call()


def test_qformat_round_trips_through_dict():
    fmt = QFormat(12, frac=-3, signed=False)
    assert QFormat.from_dict(fmt.to_dict()) == fmt
    with pytest.raises(FixedPointError, match="unknown QFormat keys"):
        QFormat.from_dict({"bits": 8, "width": 3})


@given(st.integers(2, 32), st.booleans(), INT64)
def test_check_agrees_with_range(bits, signed, x):
    fmt = QFormat(bits, signed=signed)
    inside = fmt.min_int <= x <= fmt.max_int
    if inside:
        fmt.check(np.array([x]))
    else:
        with pytest.raises(FixedOverflowError):
            fmt.check(np.array([x]))
