"""Integer conv2d and linear, dense and event-driven (docs/arithmetic.md §4).

    out[n, k, oy, ox] = A(... A(A(b[k] + w[k, 0, 0, 0]·x[n, c'(k, 0), iy(0), ix(0)]) + ...) ...)

with ``c'(k, c) = (k // (K/groups))·(C/groups) + c``, ``iy = oy·sh + ky − ph``,
``ix = ox·sw + kx − pw``, the terms in (c, ky, kx) order, padding terms left out, and
``A`` the accumulator format ``acc`` with ``overflow``, applied after every addition
(``acc_apply="each"``) or once to the exact sum (``"once"``).  ``acc=None``: exact.

The wrapper plans (validates, proves the range of every partial sum, picks a kernel),
executes the kernel and reports (applies the format, counts or raises on overflows).
When only the exact sum is needed and it fits int32, a fast kernel: dense, the first of
``DENSE_KERNELS`` that the machine has and the operands fit (``_conv_amx.dense_amx``: AMX tiles,
8-bit operands; ``_conv_simd.dense_simd`` on uint8 quads with VNNI, 8-bit operands; the same on
int16 pairs, AVX-512 or AVX2), or event-driven on 0/1 spikes, ``_conv_simd.event_spikes``.
Otherwise the int64 kernels of ``_conv_kernels`` that follow the contract order
(``dense_ordered``, ``event_ordered``).  ``DENSE_KERNEL`` limits the choice (for tests and
benchmarks).

Weights that are used again and again (a layer's, every timestep) can be prepared once with
``Weights(w, bias, groups=...)`` and passed in place of ``w``: the per-channel sums that
prove the partial-sum range and the weight tables of the fast kernels are then computed once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from refmodel.checks import first_outside, index_text, integer_in, is_integer, must_be_integer
from refmodel.fixed import FixedOverflowError, FixedPointError, Overflow, QFormat, cast
from refmodel.kernels import _conv_kernels as _k
from refmodel.kernels import _conv_amx, _conv_simd

__all__ = ["conv2d", "linear", "Weights", "ShapeError", "EVENT_DENSITY_THRESHOLD", "EVENT_DENSITY_THRESHOLDS",
           "DENSE_KERNELS", "DENSE_KERNEL", "dense_kernel_available"]

#: "auto" takes the event-driven kernel for 0/1 inputs with at most this fraction of ones when
#: the dense kernel would be the int16 SIMD or ordered one (measured with benchmarks/bench_conv.py,
#: see docs/performance.md) ...
EVENT_DENSITY_THRESHOLD = 0.4
#: ... and, per dense kernel, at most this fraction (the 8-bit kernels are faster, measured
#: single-thread on layers of 64..256 channels, 32×32..8×8: docs/performance.md).
EVENT_DENSITY_THRESHOLDS = {"dense_amx": 0.05, "dense_vnni": 0.15, "dense_simd": EVENT_DENSITY_THRESHOLD,
                            "dense_ordered": EVENT_DENSITY_THRESHOLD}
_AMX_MIN_ROW = 16  # with a stride other than 1, "auto" takes AMX for rows of at least this many output pixels

#: The dense kernels, fastest first: AMX tiles (uint8 × int8), VNNI (uint8 × int8 quads), SIMD
#: (int16 pairs), the int64 loops in the contract order.  The first three need exact int32 sums.
DENSE_KERNELS = ("dense_amx", "dense_vnni", "dense_simd", "dense_ordered")
#: The fastest dense kernel conv2d / linear may take: "auto" (any), or one of DENSE_KERNELS, which
#: forces that kernel where the machine has it and the operands fit it, else the next one that
#: does.  Set from the environment variable REFMODEL_DENSE_KERNEL when this module is imported.
DENSE_KERNEL = os.environ.get("REFMODEL_DENSE_KERNEL", "auto")
_X8_OFFSET = 128  # int8 inputs enter the uint8 kernels as x + 128

_I32 = (-(2**31), 2**31 - 1)
_I64_MAX = 2**63 - 1


class ShapeError(FixedPointError):
    """Shapes or geometry (stride, padding, groups) that do not fit together."""


def conv2d(
    x,
    w,
    bias=None,
    *,
    stride=1,
    padding=0,
    groups=None,
    acc: QFormat | None = None,
    overflow="WRAP",
    acc_apply="each",
    method="auto",
    return_overflows=False,
    return_coverage=False,
    w_fmt: QFormat | None = None,
    x_fmt: QFormat | None = None,
    b_fmt: QFormat | None = None,
):
    """2-D convolution (cross-correlation) of integer ``x`` (N, C, H, W) with ``w``
    (K, C/groups, kh, kw) plus ``bias`` (K,): int64 (N, K, Ho, Wo), see the module doc.

    ``Ho = (H + 2·ph − kh) // sh + 1``.  ``groups`` defaults to 1.  ``w`` may be a
    ``Weights`` (then it brings the bias and groups, and these arguments stay None).
    ``method``: "dense", "event" (adds only the terms of nonzero inputs) or "auto".
    ``return_overflows``: also return the number of accumulator writes that left the
    range.  ``return_coverage``: also return the accumulator's coverage counts, int64 (K, 4):
    per output channel the writes above and below the range and the writes within 1 of its top
    and of its bottom (docs/coverage.md §2; zeros without ``acc``).  ``*_fmt``: declared formats
    checked up front.  Overflow "ERROR" raises FixedOverflowError naming (n, k, oy, ox).
    """
    x = _int_array(x, "conv2d: x")
    if x.ndim != 4:
        raise ShapeError(f"conv2d: x must be 4-D (N, C, H, W), got shape {x.shape}")
    weights = _weights("conv2d", w, bias, groups)
    sh, sw = _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    groups = weights.groups
    N, C, H, W = x.shape
    K, Cg, kh, kw = weights.w.shape
    if C != Cg * groups:
        raise ShapeError(
            f"conv2d: x has C = {C} channels but w expects C/groups × groups = {Cg} × {groups} = {Cg * groups}"
        )
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ShapeError(
            f"conv2d: kernel {kh}×{kw} is larger than the padded image {H + 2 * ph}×{W + 2 * pw} "
            f"(H×W = {H}×{W}, padding = ({ph}, {pw}))"
        )
    out, n_over, cov = _run(
        "conv2d", x, weights, (sh, sw), (ph, pw), acc, overflow, acc_apply, method,
        return_overflows or return_coverage, return_coverage, (w_fmt, x_fmt, b_fmt), index_dims=4,
    )
    return _returned(out, n_over, cov, return_overflows, return_coverage)


def linear(
    x,
    w,
    bias=None,
    *,
    acc: QFormat | None = None,
    overflow="WRAP",
    acc_apply="each",
    method="auto",
    return_overflows=False,
    return_coverage=False,
    w_fmt: QFormat | None = None,
    x_fmt: QFormat | None = None,
    b_fmt: QFormat | None = None,
):
    """``out[n, k] = A(... A(b[k] + w[k, 0]·x[n, 0]) ... + w[k, F−1]·x[n, F−1])``: int64 (N, K).

    ``x`` (N, F), ``w`` (K, F) or a ``Weights`` of it; the same contract and options as
    ``conv2d`` (it is a 1×1 convolution of (N, F, 1, 1)); "ERROR" names (n, k).
    """
    x = _int_array(x, "linear: x")
    if x.ndim != 2:
        raise ShapeError(f"linear: x must be 2-D (N, F), got shape {x.shape}")
    weights = _weights("linear", w, bias, None)
    if weights.w.shape[2:] != (1, 1) or weights.groups != 1:
        raise ShapeError(f"linear: the Weights must be of a (K, F) weight array, got {weights!r}")
    F = weights.w.shape[1]
    if x.shape[1] != F:
        raise ShapeError(f"linear: x has F = {x.shape[1]} features but w has {F} (w.shape = {weights.w.shape[:2]})")
    out, n_over, cov = _run(
        "linear", x[:, :, None, None], weights, (1, 1), (0, 0), acc, overflow,
        acc_apply, method, return_overflows or return_coverage, return_coverage, (w_fmt, x_fmt, b_fmt), index_dims=2,
    )
    return _returned(out[:, :, 0, 0], n_over, cov, return_overflows, return_coverage)


def _returned(out, n_over, cov, return_overflows, return_coverage):
    """``out``, with the overflow count and the coverage counts when asked for."""
    extra = ((n_over,) if return_overflows else ()) + ((cov,) if return_coverage else ())
    return (out, *extra) if extra else out


# --------------------------------------------------------------------------- validation
def _int_array(a, what):
    """``a`` as an integer ndarray (bool -> uint8); refuses floats and uint64 beyond int64."""
    arr = np.asarray(a)
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype.kind not in "iu":
        raise FixedPointError(f"{what} must be an integer array, got dtype {arr.dtype}")
    outside = first_outside(arr, None, _I64_MAX) if arr.dtype == np.uint64 else None
    if outside:
        index, value = outside
        raise FixedPointError(f"{what}[{', '.join(map(str, index))}] = {value} exceeds int64")  # 0-d: "x[]"
    return arr


def _pair(v, name, minimum):
    """An int or an (h, w) pair of ints >= minimum."""
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2 or not all(is_integer(e) for e in vals):
        raise ShapeError(f"conv2d: {name} must be an int or an (h, w) pair of ints, got {v!r}")
    if any(e < minimum for e in vals):
        raise ShapeError(f"conv2d: {name} must be >= {minimum}, got {v!r}")
    return int(vals[0]), int(vals[1])


class Weights:
    """The weights ``w`` (K, C/groups, kh, kw) and bias (K,) of a conv2d, validated and
    prepared once for repeated calls (a linear layer's (K, F) weights are ``w[:, :, None, None]``,
    which ``Weights.linear`` builds).

    Kept: per output channel k the sums of its positive weights ``P_k`` and of its negative
    weights ``N_k`` (exact), from which ``partial_sum_range`` bounds every partial sum in
    O(K); and, built on first use, the weight tables of the fast kernels.
    """

    def __init__(self, w, bias=None, *, groups=1, api="conv2d"):
        w = _int_array(w, f"{api}: w")
        if w.ndim != 4:
            raise ShapeError(f"{api}: w must be 4-D (K, C/groups, kh, kw), got shape {w.shape}")
        if not integer_in(groups, 1):
            raise ShapeError(f"{api}: groups {must_be_integer(1)}, got {groups!r}")
        K = w.shape[0]
        if K % groups:
            raise ShapeError(f"{api}: K = {K} output channels (w.shape[0]) is not divisible by groups = {groups}")
        bias = np.zeros(K, np.int64) if bias is None else _int_array(bias, f"{api}: bias")
        if bias.shape != (K,):
            raise ShapeError(f"{api}: bias must have shape (K,) = ({K},), got {bias.shape}")
        self.api, self.groups = api, int(groups)
        self.w, self.bias = w.astype(np.int64), bias.astype(np.int64)  # own copies: never modify them
        w2 = self.w.reshape(K, -1)
        wabs = max(-int(w2.min()), int(w2.max())) if w2.size else 0
        exact = np.int64 if wabs * w2.shape[1] <= _I64_MAX else object  # then int64 sums are exact
        w2 = w2.astype(exact)
        self._pos = np.where(w2 > 0, w2, 0).sum(axis=1)
        self._neg = np.where(w2 < 0, w2, 0).sum(axis=1)
        self._abs = self._pos - self._neg  # Σ|w[k]|
        self._abs_max = int(max(self._abs)) if K else 0
        self._bias_abs = np.abs(self.bias.astype(object))
        self._bias_abs_max = int(max(self._bias_abs)) if K else 0
        self.fits16 = _fits(self.w, np.int16)  # the dense SIMD kernel takes int16 weights
        self.fits8 = _fits(self.w, np.int8)  # the VNNI and AMX kernels take int8 weights
        self._tables = {}

    @classmethod
    def linear(cls, w, bias=None):
        """The Weights of a linear layer's (K, F) weight array."""
        w = _int_array(w, "linear: w")
        if w.ndim != 2:
            raise ShapeError(f"linear: w must be 2-D (K, F), got shape {w.shape}")
        return cls(w[:, :, None, None], bias, api="linear")

    def __repr__(self):
        return f"Weights(w.shape={self.w.shape}, groups={self.groups})"

    def partial_sum_range(self, xmin, xmax):
        """[lo, hi] holding every partial sum of every output, for inputs in [xmin, xmax] ∋ 0.

        0 is in the input range (it stands for padding), so each term w·x lies in
        [min(w·xmin, w·xmax), max(...)] ∋ 0 (the low end is w·xmin for w > 0, w·xmax for
        w < 0), and a partial sum of output channel k in
        [b_k + xmin·P_k + xmax·N_k, b_k + xmax·P_k + xmin·N_k].  Refuses when
        ``max_k Σ|w[k]|·max|x| + |b[k]|`` does not fit int64: below that bound no int64
        intermediate of any kernel wraps unintentionally.
        """
        if self.w.shape[0] == 0:
            return 0, 0
        xabs = max(-xmin, xmax)
        pos, neg, bias = self._pos, self._neg, self.bias
        if self._abs_max * xabs + self._bias_abs_max > _I64_MAX:  # an upper bound of the exact one
            outside = first_outside(self._abs.astype(object) * xabs + self._bias_abs, None, _I64_MAX)
            if outside:
                (k,), value = outside
                raise FixedPointError(
                    f"{self.api}: output channel {k}: Σ|w[{k}]|·max|x| + |bias[{k}]| = {value} exceeds "
                    f"int64; the exact sum cannot be guaranteed"
                )
            pos, neg, bias = pos.astype(object), neg.astype(object), bias.astype(object)
        return int(min(bias + pos * xmin + neg * xmax)), int(max(bias + pos * xmax + neg * xmin))

    def table(self, kind):
        """The weight table of a fast kernel ("event_spikes" or one of the dense ones), built once."""
        if kind not in self._tables:
            self._tables[kind] = _TABLES[kind](self.w, self.groups)
        return self._tables[kind]

    def offset_bias(self, offset):
        """``bias[k] − offset·Σw[k]``: the bias of a kernel fed ``x + offset`` (exact: int8 weights)."""
        return self.bias - offset * (self._pos + self._neg).astype(np.int64)


def _weights(api, w, bias, groups) -> Weights:
    """``w`` as Weights: as given, or prepared from arrays (``groups`` None stands for 1)."""
    if isinstance(w, Weights):
        if bias is not None or groups is not None:
            raise FixedPointError(f"{api}: a Weights brings its bias and groups; pass them to Weights(), not here")
        return w
    if api == "linear":
        return Weights.linear(w, bias)
    return Weights(w, bias, groups=1 if groups is None else groups, api=api)


def _check_fmt(fmt, values, what):
    """Raise unless ``values`` fit the declared format ``fmt`` (None: nothing declared)."""
    if fmt is None:
        return
    if not isinstance(fmt, QFormat):
        raise FixedPointError(f"{what}: the declared format must be a QFormat or None, got {fmt!r}")
    fmt.check(values, what)


# --------------------------------------------------------------------------- dispatch
def _run(api, x, weights, stride, padding, acc, overflow, acc_apply, method, want_count, cover, fmts, index_dims):
    """Plan, execute and report one call: (int64 out (N, K, Ho, Wo), n_overflows, coverage
    counts (K, 4) or None)."""
    plan = _plan(api, x, weights, stride, padding, acc, overflow, acc_apply, method, want_count, cover, fmts,
                 index_dims)
    out, counters = _execute(plan, x, weights, stride, padding)
    return _report(api, plan, out, counters, index_dims)


@dataclass(frozen=True)
class _Plan:
    """The kernel chosen for one call, and what running it and reporting on its result need."""

    kernel: str  # one of DENSE_KERNELS, "event_spikes" or "event_ordered"
    shape: tuple  # of the output, (N, K, Ho, Wo)
    spikes: bool  # every input is 0 or 1
    cast_each: bool  # the kernel applies the accumulator format after every addition
    exact32: bool  # only the exact sum is needed, and every partial sum fits int32
    cover: bool  # count the accumulator's coverage bins
    once: bool  # the accumulator format is applied once, to the exact sum
    acc: QFormat | None
    overflow: Overflow
    bounds: tuple  # the accumulator's range under overflow (int64's when acc is None)
    offset: int | None  # what the 8-bit kernels add to x (0 or 128), None when x does not fit 8 bits

    @property
    def mode(self) -> tuple:
        """The accumulator arguments of the ordered kernels: (cast_each, bits, signed, overflow)."""
        acc = self.acc
        return self.cast_each, acc.bits if acc is not None else 64, acc is None or acc.signed, int(self.overflow)


def _plan(api, x, weights, stride, padding, acc, overflow, acc_apply, method, want_count, cover, fmts,
          index_dims) -> _Plan:
    """Validate the options and declared formats, prove the partial-sum range, choose the kernel."""
    overflow = _check_options(api, acc, overflow, acc_apply, method)
    w, bias = weights.w, weights.bias
    w_fmt, x_fmt, b_fmt = fmts
    _check_fmt(w_fmt, w if index_dims == 4 else w[:, :, 0, 0], f"{api}: w")
    _check_fmt(x_fmt, x if index_dims == 4 else x[:, :, 0, 0], f"{api}: x")
    _check_fmt(b_fmt, bias, f"{api}: bias")

    xmin = min(0, int(x.min())) if x.size else 0
    xmax = max(0, int(x.max())) if x.size else 0
    lo, hi = weights.partial_sum_range(xmin, xmax)
    bounds = acc.bounds(overflow) if acc is not None else (-_I64_MAX - 1, _I64_MAX)
    each = acc is not None and acc_apply == "each"
    if each:
        _check_bias(api, bias, acc, overflow, bounds)
    # Exact accumulation gives the contract's result when no partial sum can leave the
    # accumulator's range, when the format is applied once, or under WRAP (modular
    # arithmetic) unless the per-write overflow count is asked for.
    in_range = bounds[0] <= lo and hi <= bounds[1]
    cast_each = bool(each and not in_range and (overflow != Overflow.WRAP or want_count))
    # coverage counts the partial sums within 1 of a bound: unless none can come that close,
    # the ordered kernel walks them
    cast_each |= bool(each and cover and not (bounds[0] + 2 <= lo and hi <= bounds[1] - 2))
    exact32 = not cast_each and _I32[0] <= lo and hi <= _I32[1]
    spikes = xmin == 0 and xmax <= 1
    x16 = -(2**15) <= xmin and xmax < 2**15
    # 8-bit inputs: uint8 as they are, int8 as x + 128
    offset = 0 if xmin == 0 and xmax <= 255 else _X8_OFFSET if -128 <= xmin and xmax <= 127 else None
    N, _, H, W = x.shape
    K, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    shape = (N, K, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)
    # AMX's tile pairs of 32 pixels are mostly busy: a linear layer (rows of 32 images), stride 1
    # (rows flattened when that saves pixel slots, see _flat_saves), or rows of enough pixels
    amx_busy = _batch_as_pixels(x, weights, padding) or stride == (1, 1) or shape[3] >= _AMX_MIN_ROW
    kernel = _choose_kernel(method, x, spikes, x16, offset is not None, exact32, weights, amx_busy)
    return _Plan(kernel, shape, spikes, cast_each, exact32, cover, acc is not None and acc_apply == "once", acc,
                 overflow, bounds, offset)


def _check_options(api, acc, overflow, acc_apply, method) -> Overflow:
    """Raise FixedPointError for a bad ``acc``, ``acc_apply`` or ``method``; the Overflow member."""
    if acc is not None:
        if not isinstance(acc, QFormat):
            raise FixedPointError(f"{api}: acc must be a QFormat or None, got {acc!r}")
        acc.check_datapath()
    overflow = Overflow.of(overflow)
    if acc_apply not in ("each", "once"):
        raise FixedPointError(f"{api}: acc_apply must be 'each' or 'once', got {acc_apply!r}")
    if method not in ("auto", "dense", "event"):
        raise FixedPointError(f"{api}: method must be 'auto', 'dense' or 'event', got {method!r}")
    return overflow


def _check_bias(api, bias, acc, overflow, bounds):
    """Raise FixedOverflowError unless the bias, where an accumulation under "each" starts, fits ``bounds``."""
    outside = first_outside(bias, *bounds)
    if outside:
        index, value = outside
        raise FixedOverflowError(
            f"{api}: bias{index_text(index)} = {value} does not fit the accumulator {acc} "
            f"(range {bounds[0]}..{bounds[1]} under {overflow.name}), which starts at the bias with acc_apply='each'",
            index=index,
            value=value,
        )


def _choose_kernel(method, x, spikes, x16, x8, exact32, weights, amx_busy) -> str:
    """The kernel for ``method``: a fast one (int32 sums) when ``exact32`` and the operands fit it
    (see ``_dense_kernel``; 0/1 inputs for ``event_spikes``), else an ordered one.  "auto" is
    event-driven for 0/1 inputs with at most ``EVENT_DENSITY_THRESHOLDS[the dense kernel]`` ones."""
    if method == "auto":
        dense = _dense_kernel(x16, x8, exact32, weights, amx_busy)
        if not (spikes and np.count_nonzero(x) <= EVENT_DENSITY_THRESHOLDS[dense] * x.size):
            return dense
        return "event_spikes" if exact32 else "event_ordered"
    if method == "dense":
        return _dense_kernel(x16, x8, exact32, weights, amx_busy)
    return "event_spikes" if spikes and exact32 else "event_ordered"


def dense_kernel_available(kernel) -> bool:
    """Whether this machine (CPU and OS) runs the dense ``kernel`` (one of DENSE_KERNELS)."""
    if kernel == "dense_amx":
        return _conv_amx.available()
    if kernel == "dense_vnni":
        return _conv_simd.VNNI
    if kernel == "dense_simd":
        return _conv_simd.AVAILABLE
    return kernel == "dense_ordered"


def _dense_kernel(x16, x8, exact32, weights, amx_busy) -> str:
    """The first of DENSE_KERNELS from ``DENSE_KERNEL`` on that the machine has and the operands fit:
    the fast ones need exact int32 sums, and 8-bit operands (AMX, VNNI) or 16-bit ones (SIMD).
    "auto" leaves AMX out unless ``amx_busy`` (else most of its 32-pixel tile pairs would be idle:
    row by row on 8×8 images it measured slower than VNNI)."""
    if DENSE_KERNEL != "auto" and DENSE_KERNEL not in DENSE_KERNELS:
        raise FixedPointError(f"conv.DENSE_KERNEL (REFMODEL_DENSE_KERNEL) must be 'auto' or one of {DENSE_KERNELS}, "
                              f"got {DENSE_KERNEL!r}")
    fits = {"dense_amx": x8 and weights.fits8 and (amx_busy or DENSE_KERNEL != "auto"),
            "dense_vnni": x8 and weights.fits8, "dense_simd": x16 and weights.fits16, "dense_ordered": True}
    first = 0 if DENSE_KERNEL == "auto" else DENSE_KERNELS.index(DENSE_KERNEL)
    for kernel in DENSE_KERNELS[first:]:
        if (exact32 or kernel == "dense_ordered") and fits[kernel] and dense_kernel_available(kernel):
            return kernel
    raise AssertionError("dense_ordered always fits")  # pragma: no cover


def _execute(plan: _Plan, x, weights, stride, padding):
    """Run the planned kernel: (int64 out, counters).  The counters (per-run overflow counts, flat
    index of the first overflow or -1, its value, and the coverage counts (N, K, 4) or an empty
    array) come from the ordered kernels; the fast kernels, which only compute exact sums, give None."""
    out = np.empty(plan.shape, np.int64)
    if plan.kernel in _FAST_DENSE and _batch_as_pixels(x, weights, padding):
        _dense_batch_as_pixels(plan, x, weights, out)
        return out, None
    if plan.kernel in _FAST_DENSE:
        _dense_simd(plan, x, weights, stride, padding, out)
        return out, None
    if plan.kernel == "event_spikes":
        _, _, kh, kw = weights.w.shape
        _conv_simd.event_spikes(x.astype(np.uint8, copy=False), weights.table("event_spikes"), weights.bias,
                                *stride, *padding, kh, kw, out)
        return out, None
    run = _dense_ordered if plan.kernel == "dense_ordered" else _event_ordered
    return out, run(plan, x, weights, stride, padding, out)


def _report(api, plan: _Plan, out, counters, index_dims):
    """(out, n_overflows, coverage) of the contract from the kernel's result: the format applied
    once where the kernel summed exactly; FixedOverflowError at the first overflow under ERROR.
    coverage: the (K, 4) counts of ``_conv_kernels.COV_*`` (zeros without an accumulator format;
    None when not asked for)."""
    acc, overflow = plan.acc, plan.overflow
    cov = np.zeros((out.shape[1], 4), np.int64) if plan.cover else None
    if acc is None:
        return out, 0, cov
    if plan.cast_each:
        counts, err_at, err_val, per_output = counters
        first = err_at[err_at >= 0]
        if overflow == Overflow.ERROR and first.size:
            flat = int(first.min())
            _raise_overflow(api, out.shape, flat, int(err_val[np.argmax(err_at == flat)]), acc, overflow, index_dims)
        return out, int(counts.sum()), None if cov is None else per_output.sum(axis=0)
    # exact sums: apply the format once (under "each" this is WRAP, or nothing left or came
    # within 1 of the range)
    lo, hi = plan.bounds
    bad = (out < lo) | (out > hi)
    n_over = int(np.count_nonzero(bad))
    if n_over and overflow == Overflow.ERROR:
        flat = int(np.argmax(bad))
        _raise_overflow(api, out.shape, flat, int(out.flat[flat]), acc, overflow, index_dims)
    if cov is not None and plan.once:
        written = {_k.COV_ABOVE: out > hi, _k.COV_BELOW: out < lo, _k.COV_NEAR_HIGH: (out >= hi - 1) & (out <= hi),
                   _k.COV_NEAR_LOW: (out >= lo) & (out <= lo + 1)}
        for column, where in written.items():
            cov[:, column] = where.sum(axis=(0, 2, 3))
    return (cast(out, acc, overflow) if n_over else out), n_over, cov


def _fits(a, dtype):
    """Whether every value of ``a`` fits ``dtype``."""
    info = np.iinfo(dtype)
    return a.size == 0 or (info.min <= int(a.min()) and int(a.max()) <= info.max)


def _raise_overflow(api, shape, flat, value, acc, overflow, index_dims):
    """Raise FixedOverflowError naming the output (its first ``index_dims`` coordinates) at flat index ``flat``."""
    index = tuple(int(i) for i in np.unravel_index(flat, shape)[:index_dims])
    lo, hi = acc.bounds(overflow)
    raise FixedOverflowError(
        f"{api}: the accumulator of out{index_text(index)} reached {value}, outside {acc} "
        f"(range {lo}..{hi}) under Overflow.ERROR",
        index=index,
        value=value,
    )


def _event_table(w, groups):
    """The weight table of ``_conv_simd.event_spikes`` (see its doc): (G, kh, kw·Cg, Kgp)."""
    K, Cg, kh, kw = w.shape
    G, Kg = groups, K // groups
    wt = np.zeros((G, kh, kw, Cg, -(-Kg // 16) * 16), np.int8 if _fits(w, np.int8) else np.int32)
    wt[..., :Kg] = w.reshape(G, Kg, Cg, kh, kw).transpose(0, 3, 4, 2, 1)
    return wt.reshape(G, kh, kw * Cg, -1)


def _dense_table(w, groups, dtype, nb, lanes, row_groups):
    """The weight table of the dense fast kernels (``_conv_simd``'s module doc, ``_conv_amx``'s):
    (G, nchunk, kh·Q, nb, lanes·g) of ``dtype`` (int16 pairs or int8 quads: g = 4 / itemsize
    operands per int32 lane), Q = the groups of one kernel row rounded up to ``row_groups``."""
    K, Cg, kh, kw = w.shape
    G, Kg = groups, K // groups
    g = 4 // np.dtype(dtype).itemsize
    Cp = -(-Cg // g) * g
    nchunk = -(-Kg // (nb * lanes))
    Q = -(-(kw * Cp // g) // row_groups) * row_groups
    wk = np.zeros((G, nchunk * nb * lanes, kh, kw, Cp), dtype)
    wk[:, :Kg, :, :, :Cg] = w.reshape(G, Kg, Cg, kh, kw).transpose(0, 1, 3, 4, 2)
    wq = np.zeros((G, nchunk * nb * lanes, kh, Q * g), dtype)
    wq[..., : kw * Cp] = wk.reshape(G, -1, kh, kw * Cp)
    # (G, q, j, m, i, t) -> (G, q, i, j, m, t): channel (nb·q + j)·lanes + m, r = g·i + t
    wp = wq.reshape(G, nchunk, nb, lanes, kh * Q, g).transpose(0, 1, 4, 2, 3, 5)
    return np.ascontiguousarray(wp).reshape(G, nchunk, kh * Q, nb, g * lanes)


_TABLES = {
    "event_spikes": _event_table,
    "dense_simd": lambda w, groups: _dense_table(w, groups, np.int16, _conv_simd.NB_MAX, _conv_simd.LANES, 1),
    "dense_vnni": lambda w, groups: _dense_table(w, groups, np.int8, _conv_simd.NB_MAX, _conv_simd.LANES, 1),
    "dense_amx": lambda w, groups: _dense_table(w, groups, np.int8, _conv_amx.CHUNK // _conv_amx.TILE,
                                                _conv_amx.TILE, _conv_amx.TILE),
}
_FAST_DENSE = ("dense_amx", "dense_vnni", "dense_simd")


def _coverage_counters(plan, out):
    """The ordered kernels' coverage counters: zeros (N, K, 4) when they count (the format
    applied after each addition, coverage asked for), else empty."""
    counting = plan.cover and plan.cast_each
    return np.zeros((out.shape[0], out.shape[1], 4) if counting else (0, 0, 4), np.int64)


def _dense_ordered(plan, x, weights, stride, padding, out):
    """Run ``_conv_kernels.dense_ordered`` on the zero-padded int64 input: its counters (per (n, k))."""
    N, K, _, _ = out.shape
    ph, pw = padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    counters = tuple(np.empty(N * K, np.int64) for _ in range(3))
    cov = _coverage_counters(plan, out)
    _k.dense_ordered(xp, weights.w, weights.bias, *stride, *plan.mode, out, *counters, *plan.bounds, cov)
    return (*counters, cov)


def _event_ordered(plan, x, weights, stride, padding, out):
    """Run ``_conv_kernels.event_ordered`` (int32 work when the exact sums fit it, uint8 spikes): its
    counters (per (n, group))."""
    N, K, Ho, Wo = out.shape
    _, Cg, kh, kw = weights.w.shape
    G, Kg = weights.groups, K // weights.groups
    acc_t = np.int32 if plan.exact32 else np.int64
    wt = np.ascontiguousarray(weights.w.reshape(G, Kg, Cg, kh, kw).transpose(0, 2, 3, 4, 1), dtype=acc_t)
    work = np.empty((N * G, Ho, Wo, Kg), acc_t)
    counters = tuple(np.empty(N * G, np.int64) for _ in range(3))
    cov = _coverage_counters(plan, out)
    xe = x.astype(np.uint8, copy=False) if plan.spikes else x.astype(np.int64)
    _k.event_ordered(xe, wt, weights.bias, *stride, *padding, *plan.mode, work, out, *counters, *plan.bounds, cov)
    return (*counters, cov)


_BATCH_ROW = 32  # images per row in _dense_batch_as_pixels: two AMX tiles, eight SIMD micro-kernel calls


def _batch_as_pixels(x, weights, padding):
    """Whether the call is a 1×1 conv of 1×1 images (a linear layer), which the fast dense kernels
    run as ``_dense_batch_as_pixels``."""
    return x.shape[2:] == weights.w.shape[2:] == (1, 1) and padding == (0, 0)


def _dense_batch_as_pixels(plan, x, weights, out):
    """A 1×1 conv of 1×1 images (a linear layer) by a fast dense kernel, the images laid out as
    the pixels of rows of _BATCH_ROW: ``out[n, k, 0, 0] = out'[n // 32, k, 0, n % 32]`` of the
    conv of ``x'[m, c, 0, i] = x[32·m + i, c, 0, 0]`` (zero past N).  The kernels' pixel blocks are
    then full (measured 2-5× less CPU time for N = 16..64, F = 512..4096, K = 10..256)."""
    N, C, _, _ = x.shape
    M = -(-N // _BATCH_ROW)
    rows = np.zeros((M * _BATCH_ROW, C), x.dtype)
    rows[:N] = x[:, :, 0, 0]
    xt = np.ascontiguousarray(rows.reshape(M, _BATCH_ROW, C).transpose(0, 2, 1))[:, :, None, :]
    out_t = np.empty((M, out.shape[1], 1, _BATCH_ROW), np.int64)
    _dense_simd(plan, xt, weights, (1, 1), (0, 0), out_t)
    out[:, :, 0, 0] = out_t[:, :, 0, :].transpose(0, 2, 1).reshape(M * _BATCH_ROW, -1)[:N]


def _flat_saves(Ho, Wo, Wq, block):
    """Whether ``dense_amx`` with its output rows flattened (Wq virtual pixels each) computes at
    least 20% fewer pixel slots than row by row (each row in blocks of ``block``): its output write is
    slower per pixel (blocks straddle rows and cache lines; the kernel alone, single thread: 32×32,
    C = K = 64, 2.2 ms against 1.4 ms for 1088 against 1024 slots; 16×16, C = K = 128, 1.1 against
    1.4 ms; 8×8, C = K = 256, 1.9 against 4.6 ms)."""
    return 5 * (-(-Ho * Wq // block) * block) <= 4 * Ho * (-(-Wo // block) * block)


def _dense_simd(plan, x, weights, stride, padding, out):
    """Lay the input out (channel last, see ``_conv_simd``'s module doc) and run the planned fast
    dense kernel: int16 for ``dense_simd``, uint8 (x + plan.offset) for ``dense_vnni`` and ``dense_amx``."""
    N, C, H, W = x.shape
    _, Cg, kh, kw = weights.w.shape
    _, K, Ho, Wo = out.shape
    (sh, sw), (ph, pw) = stride, padding
    G = weights.groups
    table = weights.table(plan.kernel)
    offset = 0 if plan.kernel == "dense_simd" else plan.offset
    dtype = np.int16 if plan.kernel == "dense_simd" else np.uint8
    if x.dtype.itemsize > np.dtype(dtype).itemsize:  # exact (the plan checked x's range): channels_last
        x = x.astype(dtype if offset == 0 else np.int8)  # is then compiled for the dtypes spikes come in
    g = 4 // np.dtype(dtype).itemsize  # operands per int32 lane
    Cp = -(-Cg // g) * g
    bias = weights.offset_bias(offset) if offset else weights.bias
    block = 2 * _conv_amx.TILE
    if plan.kernel == "dense_amx" and stride == (1, 1) and _flat_saves(Ho, Wo, W + 2 * pw, block):
        Wq, Hp = W + 2 * pw, H + 2 * ph
        # the last block's reads: its last pixel's last kernel row, in whole 64-byte steps
        end = ((-(-Ho * Wq // block) * block - 1) + (kh - 1) * Wq) * Cp + table.shape[2] // kh * 4
        size = N * G * Hp * Wq * Cp
        xh = np.empty(size + max(0, end - Hp * Wq * Cp), np.uint8)[:size].reshape(N, G, Hp, Wq, Cp)
        _conv_simd.channels_last(x, ph, pw, offset, xh)
        _conv_amx.dense_amx(xh, table, bias, 1, 1, kh, True, out)
        return
    if plan.kernel == "dense_amx":  # pixels in pairs of tiles, 64-byte steps along each kernel row
        pixels, row_bytes = -(-Wo // block) * block, table.shape[2] // kh * 4
    else:
        pixels, row_bytes = -(-Wo // _conv_simd.MR) * _conv_simd.MR, kw * Cp * np.dtype(dtype).itemsize
    # room for the last pixel's reads
    Wq = max(W + 2 * pw, (pixels - 1) * sw + -(-row_bytes // (Cp * np.dtype(dtype).itemsize)))
    xh = np.empty((N, G, H + 2 * ph, Wq, Cp), dtype)
    _conv_simd.channels_last(x, ph, pw, offset, xh)
    if plan.kernel == "dense_amx":
        _conv_amx.dense_amx(xh, table, bias, sh, sw, kh, False, out)
    else:
        _conv_simd.dense_simd(xh, table, bias, sh, sw, kh, kw, out)
