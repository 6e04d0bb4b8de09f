"""conv2d / linear against the twin (tests/oracle/conv.py), bit for bit; docs/arithmetic.md §4."""

import contextlib

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refmodel.fixed import FixedOverflowError, FixedPointError, QFormat
from refmodel.kernels import Weights, conv2d, linear
from refmodel.kernels import _conv_kernels, _conv_simd
from refmodel.kernels import conv as conv_module
from refmodel.kernels.conv import ShapeError
from tests import modes
from tests.oracle import conv as oracle

OVERFLOWS = ("WRAP", "SAT", "SAT_SYM", "ERROR")
METHODS = ("dense", "event", "auto")


# --------------------------------------------------------------------------- helpers
def run_both(x, w, b, method, *, stride=1, padding=0, groups=1, acc=None, overflow="WRAP", acc_apply="each"):
    """(kernel result, twin result); each is (out, n_overflows) or ("raise", index, value)."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    try:
        got = conv2d(
            x, w, b, stride=stride, padding=padding, groups=groups, acc=acc, overflow=overflow,
            acc_apply=acc_apply, method=method, return_overflows=True,
        )
        got = (got[0].tolist(), got[1])
    except FixedOverflowError as e:
        got = ("raise", e.index, e.value)
    try:
        want = oracle.conv2d(
            x.tolist(), w.tolist(), None if b is None else b.tolist(), pair(stride), pair(padding), groups,
            acc, overflow, acc_apply,
        )
    except oracle.ConvOverflow as e:
        want = ("raise", e.index, e.value)
    return got, want


MAGNITUDES = (1, 3, 127, 255, 32767, 2**20)


@st.composite
def conv_cases(draw):
    """A random small layer: geometry, operands, accumulator and modes."""
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 3))
    Cg = 1 if depthwise else draw(st.integers(1, 3))
    Kg = draw(st.integers(1, 2 if depthwise else 3))
    N, H, W = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    kh, kw = draw(st.integers(1, H + 2 * ph)), draw(st.integers(1, W + 2 * pw))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spikes = draw(st.booleans())
    shape_x = (N, Cg * groups, H, W)
    if spikes:
        x = (rng.random(shape_x) < draw(st.sampled_from([0.05, 0.3, 0.8]))).astype(draw(st.sampled_from([np.uint8, np.bool_, np.int8])))
    else:
        xm = draw(st.sampled_from(MAGNITUDES))
        lo = 0 if draw(st.booleans()) else -xm
        x = rng.integers(lo, xm + 1, shape_x).astype(np.int64)
        x[rng.random(shape_x) < 0.5] = 0
    wm = draw(st.sampled_from(MAGNITUDES))
    w = rng.integers(-wm, wm + 1, (Kg * groups, Cg, kh, kw))
    acc_kind = draw(st.sampled_from(["none", "narrow", "wide"]))
    acc = None
    if acc_kind != "none":
        bits = draw(st.integers(2, 8) if acc_kind == "narrow" else st.integers(9, 32))
        acc = QFormat(bits, draw(st.integers(-2, 4)), draw(st.booleans()))
    overflow = draw(st.sampled_from(OVERFLOWS))
    acc_apply = draw(st.sampled_from(["each", "once"]))
    bias = None
    if draw(st.booleans()):
        blo, bhi = acc.bounds(overflow) if acc is not None and acc_apply == "each" else (-(2**20), 2**20)
        bias = rng.integers(blo, bhi + 1, Kg * groups)
    return dict(
        x=x, w=w, b=bias, stride=(sh, sw), padding=(ph, pw), groups=groups, acc=acc, overflow=overflow,
        acc_apply=acc_apply,
    )


# --------------------------------------------------------------------------- properties
@given(conv_cases(), st.sampled_from(METHODS))
def test_conv2d_equals_twin(case, method):
    got, want = run_both(method=method, **case)
    assert got == want


@given(conv_cases())
def test_event_equals_dense(case):
    dense, _ = run_both(method="dense", **case)
    event, _ = run_both(method="event", **case)
    assert event == dense


@given(conv_cases(), st.sampled_from(METHODS))
def test_prepared_weights_equal_arrays(case, method):
    """A Weights, prepared once and used for two inputs, gives what the arrays give."""
    x, w, b, groups = case.pop("x"), case.pop("w"), case.pop("b"), case.pop("groups")
    prepared = Weights(w, b, groups=groups)
    for xi in (x, x[::-1].copy()):
        want, _ = run_both(xi, w, b, method, groups=groups, **case)
        try:
            got = conv2d(xi, prepared, method=method, return_overflows=True, **case)
            got = (got[0].tolist(), got[1])
        except FixedOverflowError as e:
            got = ("raise", e.index, e.value)
        assert got == want


@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 6),
       st.sampled_from(MAGNITUDES + (2**40,)), st.integers(-(2**20), 0), st.integers(0, 2**20))
def test_partial_sum_range_bounds_every_partial_sum(seed, K, F, wm, xmin, xmax):
    """[lo, hi] = [min_k, max_k] of b_k + Σ_f min/max(w·xmin, w·xmax), by Python ints term by term."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-wm, wm + 1, (K, F))
    b = rng.integers(-1000, 1001, K)
    rows_lo = [int(b[k]) + sum(min(int(v) * xmin, int(v) * xmax) for v in w[k]) for k in range(K)]
    rows_hi = [int(b[k]) + sum(max(int(v) * xmin, int(v) * xmax) for v in w[k]) for k in range(K)]
    assert Weights.linear(w, b).partial_sum_range(xmin, xmax) == (min(rows_lo), max(rows_hi))


def test_prepared_weights_bring_bias_and_groups():
    w = np.ones((2, 1, 1, 1), np.int8)
    prepared = Weights(w, np.array([5, 6]), groups=2)
    x = np.ones((1, 2, 1, 1), np.uint8)
    assert conv2d(x, prepared).ravel().tolist() == [6, 7]
    for kwargs in (dict(bias=np.zeros(2, int)), dict(groups=2)):
        with pytest.raises(FixedPointError, match="a Weights brings its bias and groups"):
            conv2d(x, prepared, **kwargs)
    with pytest.raises(ShapeError, match="linear: the Weights must be of a"):
        linear(np.ones((1, 1), int), prepared)
    assert linear(np.ones((1, 3), int), Weights.linear(np.ones((2, 3), int), np.array([1, 2]))).tolist() == [[4, 5]]


ACCUMULATORS = st.none() | st.builds(QFormat, st.integers(2, 32), st.integers(-2, 4), st.booleans())


@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.integers(1, 6), modes.OVERFLOWS,
       st.sampled_from(["each", "once"]), ACCUMULATORS, st.sampled_from(["multi-bit", "uint8", "bool"]),
       st.booleans(), st.sampled_from(METHODS))
def test_linear_equals_twin(seed, F, K, overflow, acc_apply, acc, inputs, with_bias, method):
    """Against the twin's own loop: exact or narrow accumulators, multi-bit or 0/1 inputs, with
    or without a bias.  A result without a counted overflow is the exact sum (nothing left the range)."""
    rng = np.random.default_rng(seed)
    if inputs == "multi-bit":
        x = rng.integers(-100, 101, (3, F))
    else:
        x = (rng.random((3, F)) < 0.4).astype(np.uint8 if inputs == "uint8" else np.bool_)
    w = rng.integers(-100, 101, (K, F))
    b = None
    if with_bias:
        lo, hi = acc.bounds(overflow) if acc is not None and acc_apply == "each" else (-1000, 1000)
        b = rng.integers(max(lo, -1000), min(hi, 1000) + 1, K)
    try:
        got = linear(x, w, b, acc=acc, overflow=overflow, acc_apply=acc_apply, method=method, return_overflows=True)
        got = (got[0].tolist(), got[1])
    except FixedOverflowError as e:
        got = ("raise", e.index, e.value)
    try:
        want = oracle.linear(x.tolist(), w.tolist(), None if b is None else b.tolist(), acc, overflow, acc_apply)
    except oracle.ConvOverflow as e:
        want = ("raise", e.index, e.value)
    assert got == want
    if got[0] != "raise" and got[1] == 0:
        exact = x.astype(np.int64) @ w.T + (0 if b is None else b)
        assert got[0] == exact.tolist()


def record_kernel_calls(monkeypatch):
    """Wrap the kernels behind conv2d / linear so that each call appends "dense" or "event"."""
    calls = []
    for module, name, path in ((conv_module, "_dense_simd", "dense"), (_conv_kernels, "dense_ordered", "dense"),
                               (_conv_simd, "event_spikes", "event"), (_conv_kernels, "event_ordered", "event")):
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _kernel=kernel, _path=path: (calls.append(_path), _kernel(*args))[1])
    return calls


def test_auto_takes_the_event_path_for_sparse_spikes(monkeypatch):
    """§4: method="auto" is event-driven for 0/1 inputs with at most EVENT_DENSITY_THRESHOLDS[the dense
    kernel] ones (here the first kernel of DENSE_KERNELS this machine has: 8-bit operands, a linear layer)."""
    calls = record_kernel_calls(monkeypatch)
    size = 40
    dense = next(k for k in conv_module.DENSE_KERNELS if conv_module.dense_kernel_available(k))
    most = int(conv_module.EVENT_DENSITY_THRESHOLDS[dense] * size)  # the largest number of ones that is still sparse
    w = np.arange(3 * 10).reshape(3, 10) - 15

    def path(x, method="auto"):
        calls.clear()
        out = linear(x.reshape(4, 10), w, method=method)
        assert out.tolist() == (x.reshape(4, 10).astype(np.int64) @ w.T).tolist()
        return calls[0] if len(calls) == 1 else calls

    spikes = np.zeros(size, np.uint8)
    assert path(spikes) == "event"  # no ones at all
    spikes[:most] = 1
    assert path(spikes) == path(spikes.astype(bool)) == path(spikes.astype(np.int16)) == "event"
    assert path(spikes, "dense") == "dense"
    multi_bit = spikes.copy()
    multi_bit[0] = 2
    assert path(multi_bit) == "dense" and path(multi_bit, "event") == "event"
    negative = spikes.astype(np.int8)
    negative[-1] = -1
    assert path(negative) == "dense"
    spikes[most] = 1  # one more than the threshold allows
    assert path(spikes) == "dense"


@pytest.mark.parametrize("method", METHODS)
def test_zero_terms_are_never_counted(method):
    """§4: zero terms (zero weight, zero input, padding) leave an in-range accumulator alone and
    are not counted.  s3 (max 3) starts at the bias 3 and every term is 0: out 3, no overflow."""
    x = np.array([[1, 0, 1]], np.uint8)
    w = np.array([[0, 5, 0]])  # 0·1, 5·0, 0·1
    for overflow in ("WRAP", "SAT", "SAT_SYM", "ERROR"):
        out, n = linear(x, w, np.array([3]), acc=QFormat(3), overflow=overflow, method=method, return_overflows=True)
        assert (out.tolist(), n) == ([[3]], 0)
        # a 1×1 image, padding 1: the 8 taps of weight 5 lie in the padding, the centre weight is 0
        w3 = np.full((1, 1, 3, 3), 5)
        w3[0, 0, 1, 1] = 0
        out, n = conv2d(np.ones((1, 1, 1, 1), np.uint8), w3, np.array([3]), padding=1, acc=QFormat(3),
                        overflow=overflow, method=method, return_overflows=True)
        assert (out.ravel().tolist(), n) == ([3], 0)
    # a nonzero term is counted: 3 + 5 = 8 saturates to 3
    out, n = linear(np.ones((1, 3), np.uint8), w, np.array([3]), acc=QFormat(3), overflow="SAT", method=method,
                    return_overflows=True)
    assert (out.tolist(), n) == ([[3]], 1)


@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.sampled_from([np.int8, np.uint8, np.int16]))
def test_fast_int32_path_equals_twin(seed, stride, C, K, dtype):
    """Dense, exact, int16-range operands: the int32 (vpdpwssd) kernel; also with padding and groups."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (2, 2 * C, 6, 7)).astype(dtype)
    w = rng.integers(-128, 128, (2 * K, C, 3, 2)).astype(np.int8)
    b = rng.integers(-1000, 1000, 2 * K)
    got, want = run_both(x, w, b, "dense", stride=stride, padding=(1, 2), groups=2)
    assert got == want


@pytest.mark.parametrize("method", ["dense", "event"])
@pytest.mark.parametrize("wmax", [127, 40000])
def test_fast_paths_many_channels(method, wmax):
    """Kg = 65 output channels per group: channel blocks of 64 + 1 in the SIMD kernels."""
    rng = np.random.default_rng(7)
    x = (rng.random((2, 4, 5, 6)) < 0.4).astype(np.uint8)
    w = rng.integers(-wmax, wmax + 1, (130, 2, 3, 2))
    b = rng.integers(-1000, 1000, 130)
    got, want = run_both(x, w, b, method, stride=(2, 1), padding=1, groups=2)
    assert got == want


@pytest.mark.parametrize("method", ["dense", "event"])
def test_fast_paths_more_than_64_input_channels(method):
    """C/groups = 130: three 64-bit spike masks per pixel in the event kernel."""
    rng = np.random.default_rng(8)
    x = (rng.random((2, 130, 4, 3)) < 0.3).astype(np.uint8)
    w = rng.integers(-128, 128, (5, 130, 2, 3))
    got, want = run_both(x, w, rng.integers(-9, 9, 5), method, padding=(0, 1))
    assert got == want


# --------------------------------------------------------------------------- every dense kernel
_MISSING = {
    "dense_amx": "no AMX-INT8, or the OS did not grant the tile data (arch_prctl)",
    "dense_vnni": "no AVX-512 VNNI / AVX-VNNI for numba's target",
    "dense_simd": "no AVX-512BW / AVX2 for numba's target",
}


def skip_unless_available(kernel):
    """Skip, naming what is missing, unless this machine runs the dense ``kernel``."""
    if not conv_module.dense_kernel_available(kernel):
        pytest.skip(f"{kernel}: {_MISSING[kernel]}")


@contextlib.contextmanager
def dense_kernel_forced(kernel):
    """conv2d takes ``kernel`` where it fits (conv.DENSE_KERNEL); yields the list of dense kernels run."""
    ran = []
    choose = conv_module._dense_kernel
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_module, "DENSE_KERNEL", kernel)
        mp.setattr(conv_module, "_dense_kernel", lambda *args: (ran.append(choose(*args)), ran[-1])[1])
        yield ran


@st.composite
def dense8_cases(draw):
    """8-bit operands (uint8 or int8 inputs, int8 weights) on shapes that walk the kernels' blocks:
    C/groups not a multiple of 4, K/groups past 16, 32 and 64 channels, rows past 4 and 32
    pixels, kernel rows past 64 bytes; at most ~40k multiply-adds (the twin is pure Python)."""
    groups = draw(st.integers(1, 2))
    Cg, Kg = draw(st.sampled_from([1, 3, 4, 5, 9, 22])), draw(st.sampled_from([1, 5, 16, 17, 33, 65]))
    N, H, W = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.sampled_from([1, 3, 5, 9, 33, 40]))
    ph, pw = draw(st.integers(0, 1)), draw(st.integers(0, 2))
    kh, kw = draw(st.integers(1, min(3, H + 2 * ph))), draw(st.integers(1, min(4, W + 2 * pw)))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    assume(N * groups * Kg * Ho * Wo * Cg * kh * kw <= 40_000)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    info = np.iinfo(draw(st.sampled_from([np.uint8, np.int8])))
    x = rng.integers(info.min, info.max + 1, (N, Cg * groups, H, W)).astype(info.dtype)
    w = rng.integers(-128, 128, (Kg * groups, Cg, kh, kw)).astype(np.int8)
    bias = rng.integers(-(2**20), 2**20, Kg * groups) if draw(st.booleans()) else None
    return dict(x=x, w=w, b=bias, stride=(sh, sw), padding=(ph, pw), groups=groups)


@pytest.mark.parametrize("kernel", conv_module.DENSE_KERNELS)
@given(case=dense8_cases())
def test_every_dense_kernel_equals_twin(kernel, case):
    """Each dense kernel, forced (it runs where this machine has it; the test id names it), on
    exact 8-bit layers: the same as the twin."""
    skip_unless_available(kernel)
    with dense_kernel_forced(kernel) as ran:
        got, want = run_both(method="dense", **case)
    assert ran == [kernel]
    assert got == want


@pytest.mark.parametrize("stride", [1, (1, 2)])
@pytest.mark.parametrize("kernel", conv_module.DENSE_KERNELS)
def test_every_dense_kernel_on_a_wide_layer(kernel, stride):
    """Past the blocks of every kernel at once (C/groups = 70: 5 AMX steps per kernel row,
    K/groups = 70: two 64-channel chunks, 35 or 18 output pixels per row: AMX's rows flattened at
    stride 1, row by row at stride 2), int8 inputs."""
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (1, 140, 3, 35)).astype(np.int8)
    w = rng.integers(-128, 128, (140, 70, 1, 3)).astype(np.int8)
    skip_unless_available(kernel)
    with dense_kernel_forced(kernel) as ran:
        got, want = run_both(x, w, rng.integers(-9, 9, 140), "dense", stride=stride, padding=(0, 1), groups=2)
    assert ran == [kernel]
    assert got == want


@pytest.mark.parametrize("kernel", conv_module.DENSE_KERNELS)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 70), F=st.integers(1, 80), K=st.integers(1, 40),
       dtype=st.sampled_from([np.uint8, np.int8]), with_bias=st.booleans())
def test_every_dense_kernel_linear_equals_twin(kernel, seed, N, F, K, dtype, with_bias):
    """linear on each dense kernel, forced: the fast ones take the batch as the pixels of rows of
    32 images (N past 32 and 64: more than one row, the last one partly filled)."""
    skip_unless_available(kernel)
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (N, F)).astype(dtype)
    w = rng.integers(-128, 128, (K, F)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, K) if with_bias else None
    with dense_kernel_forced(kernel) as ran:
        got = linear(x, w, b, method="dense")
    assert ran == [kernel]
    assert got.tolist() == oracle.linear(x.tolist(), w.tolist(), None if b is None else b.tolist())[0]


def test_dense_kernels_fall_back_where_the_operands_do_not_fit(monkeypatch):
    """The 8-bit kernels take 8-bit operands only, every fast one exact int32 sums only; the next
    kernel of DENSE_KERNELS that this machine has takes the rest.  A bad DENSE_KERNEL is refused."""
    kernels = conv_module.DENSE_KERNELS
    have = [k for k in kernels if conv_module.dense_kernel_available(k)]
    beyond_8bit = next(k for k in have if kernels.index(k) > kernels.index("dense_vnni"))
    x8, w8 = np.full((1, 4, 2, 2), -128, np.int16), np.full((2, 4, 1, 1), 127, np.int16)
    cases = [(x8, w8, have[0]), (x8 - 1, w8, beyond_8bit), (x8, w8 + 1, beyond_8bit),
             (x8 * 256, w8 * 256, "dense_ordered")]  # 4·(2**15)·32512 > 2**31
    for x, w, kernel in cases:
        with dense_kernel_forced("dense_amx") as ran:
            got = conv2d(x, w, method="dense")
        assert got.tolist() == np.einsum("nchw,kc->nkhw", x.astype(np.int64), w[:, :, 0, 0]).tolist()
        assert ran == [kernel]
    monkeypatch.setattr(conv_module, "DENSE_KERNEL", "vnni")
    with pytest.raises(FixedPointError, match="DENSE_KERNEL .* must be 'auto' or one of .*, got 'vnni'"):
        conv2d(x8, w8)


# --------------------------------------------------------------------------- edge values
def test_int32_kernel_pair_products_wrap_but_sum_is_exact():
    # Two products of (-32768)·(-32768) = 2**30 sum to 2**31, which wraps an int32 pair
    # sum (vpmaddwd); with bias -1 the exact sum 2**31 - 1 fits int32 and must come out.
    x = np.full((1, 2, 1, 1), -32768, np.int16)
    w = np.full((1, 2, 1, 1), -32768, np.int16)
    assert conv2d(x, w, np.array([-1]), method="dense")[0, 0, 0, 0] == 2**31 - 1
    assert conv2d(x, w, method="dense")[0, 0, 0, 0] == 2**31  # beyond int32: the int64 kernel


@pytest.mark.parametrize("method", METHODS)
def test_sat_per_addition_depends_on_order(method):
    # Terms in (c, ky, kx) order: +3, +3, -3 into a signed 3-bit accumulator (max 3).
    x = np.ones((1, 3, 1, 1), np.uint8)
    w = np.array([3, 3, -3]).reshape(1, 3, 1, 1)
    acc = QFormat(3)
    out, n = conv2d(x, w, acc=acc, overflow="SAT", method=method, return_overflows=True)
    assert (out[0, 0, 0, 0], n) == (0, 1)  # 3, sat(6) = 3 (one overflow), 3 - 3 = 0
    out, n = conv2d(x, w, acc=acc, overflow="SAT", acc_apply="once", method=method, return_overflows=True)
    assert (out[0, 0, 0, 0], n) == (3, 0)  # exact 3 fits


@pytest.mark.parametrize("method", METHODS)
def test_wrap_each_equals_once_but_counts_differ(method):
    x = np.ones((1, 3, 1, 1), np.uint8)
    w = np.array([3, 3, -3]).reshape(1, 3, 1, 1)
    each = conv2d(x, w, acc=QFormat(3), method=method, return_overflows=True)
    once = conv2d(x, w, acc=QFormat(3), acc_apply="once", method=method, return_overflows=True)
    assert each[0][0, 0, 0, 0] == once[0][0, 0, 0, 0] == 3
    assert (each[1], once[1]) == (2, 0)  # 6 wraps to -2, then -2 - 3 = -5 wraps to 3


@pytest.mark.parametrize("method", METHODS)
def test_sat_sym_never_gives_most_negative(method):
    x = np.ones((1, 4, 1, 1), np.uint8)
    w = np.full((1, 4, 1, 1), -3)
    out = conv2d(x, w, acc=QFormat(4), overflow="SAT_SYM", method=method)
    assert out[0, 0, 0, 0] == -7
    assert conv2d(x, w, acc=QFormat(4), overflow="SAT", method=method)[0, 0, 0, 0] == -8


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("acc_apply", ["each", "once"])
def test_error_names_output_index_and_value(method, acc_apply):
    x = np.zeros((2, 1, 3, 3), np.uint8)
    x[1, 0, 2, 1] = 1
    w = np.full((2, 1, 1, 1), 5)
    with pytest.raises(FixedOverflowError, match=r"out\[1, 0, 2, 1\] reached 5") as e:
        conv2d(x, w, acc=QFormat(3), overflow="ERROR", acc_apply=acc_apply, method=method)
    assert (e.value.index, e.value.value) == ((1, 0, 2, 1), 5)


def test_linear_error_names_n_k():
    with pytest.raises(FixedOverflowError, match=r"out\[0, 1\]") as e:
        linear(np.array([[1, 1]]), np.array([[1, 1], [2, 2]]), acc=QFormat(3), overflow="ERROR")
    assert e.value.index == (0, 1)


def test_bias_must_fit_accumulator_under_each():
    x = np.ones((1, 1, 1, 1), np.uint8)
    w = np.ones((2, 1, 1, 1), np.int8)
    with pytest.raises(FixedOverflowError, match=r"bias\[1\] = 8"):
        conv2d(x, w, np.array([0, 8]), acc=QFormat(4))
    with pytest.raises(FixedOverflowError, match=r"bias\[0\] = -8"):
        conv2d(x, w, np.array([-8, 0]), acc=QFormat(4), overflow="SAT_SYM")
    assert conv2d(x, w, np.array([0, 8]), acc=QFormat(4), acc_apply="once", overflow="SAT")[0, 1, 0, 0] == 7


def test_exactness_is_checked_up_front():
    x = np.array([[[[-(2**61), 2**61]]]], np.int64)
    w = np.array([[[[1, 1]]]])
    assert conv2d(x, w)[0, 0, 0, 0] == 0
    with pytest.raises(FixedPointError, match=r"conv2d: output channel 0: .* = 9223372036854775808 exceeds int64"):
        conv2d(x, 2 * w)
    with pytest.raises(FixedPointError, match="exceeds int64"):
        conv2d(np.array([[[[2**63]]]], np.uint64), np.ones((1, 1, 1, 1), np.int8))


def test_bool_spikes_and_kernel_as_large_as_padded_image():
    x = np.array([[[[True, False], [False, True]]]])
    w = np.arange(16).reshape(1, 1, 4, 4)
    got, want = run_both(x, w, None, "auto", padding=1)
    assert got == want and len(got[0][0][0]) == 1


def test_declared_formats_are_checked():
    x = np.ones((1, 1, 2, 2), np.int16)
    w = np.full((1, 1, 1, 1), 8)
    with pytest.raises(FixedOverflowError, match=r"conv2d: w\[0, 0, 0, 0\] = 8"):
        conv2d(x, w, w_fmt=QFormat(4))
    with pytest.raises(FixedOverflowError, match=r"conv2d: x\[0, 0, 0, 0\] = 1"):
        conv2d(x, w, x_fmt=QFormat(1, signed=True))
    with pytest.raises(FixedOverflowError, match=r"linear: bias\[0\] = 9"):
        linear(np.ones((1, 2), int), np.ones((1, 2), int), np.array([9]), b_fmt=QFormat(4))


# --------------------------------------------------------------------------- invalid input
X = np.zeros((1, 4, 5, 5), np.uint8)
Wt = np.zeros((2, 4, 3, 3), np.int8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=X.astype(np.float32)), "conv2d: x must be an integer array, got dtype float32"),
        (dict(w=Wt.astype(float)), "conv2d: w must be an integer array"),
        (dict(x=X[0]), r"conv2d: x must be 4-D .* shape \(4, 5, 5\)"),
        (dict(w=Wt[0]), "conv2d: w must be 4-D"),
        (dict(x=X[:, :3]), "x has C = 3 channels but w expects"),
        (dict(w=np.zeros((3, 2, 3, 3), np.int8), groups=2), "K = 3 output channels .* not divisible by groups = 2"),
        (dict(w=np.zeros((2, 4, 8, 3), np.int8), padding=1), r"kernel 8×3 is larger than the padded image 7×7"),
        (dict(stride=0), "stride must be >= 1, got 0"),
        (dict(stride=(1, -2)), r"stride must be >= 1, got \(1, -2\)"),
        (dict(padding=-1), "padding must be >= 0"),
        (dict(padding=1.5), "padding must be an int"),
        (dict(groups=0), "groups must be an integer >= 1"),
        (dict(bias=np.zeros(3, int)), r"bias must have shape \(K,\) = \(2,\), got \(3,\)"),
        (dict(bias=np.zeros(2)), "conv2d: bias must be an integer array"),
        (dict(overflow="CLAMP"), "unknown Overflow mode 'CLAMP'"),
        (dict(acc_apply="never"), "acc_apply must be 'each' or 'once'"),
        (dict(method="fft"), "method must be 'auto', 'dense' or 'event'"),
        (dict(acc=16), "acc must be a QFormat or None"),
        (dict(acc=QFormat(64, signed=False)), "does not fit the int64 datapath"),
    ],
)
def test_invalid_input_names_the_place(kwargs, match):
    args = dict(x=X, w=Wt, bias=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        conv2d(args.pop("x"), args.pop("w"), args.pop("bias"), **args)


def test_linear_invalid_input():
    with pytest.raises(ShapeError, match=r"linear: x has F = 3 features but w has 2"):
        linear(np.zeros((1, 3), int), np.zeros((4, 2), int))
    with pytest.raises(ShapeError, match="linear: x must be 2-D"):
        linear(np.zeros(3, int), np.zeros((4, 3), int))
    with pytest.raises(FixedPointError, match="linear: w must be an integer array"):
        linear(np.zeros((1, 3), int), np.zeros((4, 3)))
