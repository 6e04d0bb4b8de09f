"""Integer conv2d and linear, dense and event-driven (docs/arithmetic.md §4).

    out[n, k, oy, ox] = A(... A(A(b[k] + w[k, 0, 0, 0]·x[n, c'(k, 0), iy(0), ix(0)]) + ...) ...)

with ``c'(k, c) = (k // (K/groups))·(C/groups) + c``, ``iy = oy·sh + ky − ph``,
``ix = ox·sw + kx − pw``, the terms in (c, ky, kx) order, padding terms left out, and
``A`` the accumulator format ``acc`` with ``overflow``, applied after every addition
(``acc_apply="each"``) or once to the exact sum (``"once"``).  ``acc=None``: exact.

The wrapper validates, proves the range of every partial sum, and picks a kernel.
When only the exact sum is needed and it fits int32: ``_conv_simd.dense_simd``
(AVX-512 or AVX2, int16 operands) or, event-driven on 0/1 spikes, ``_conv_simd.event_spikes``.
Otherwise the int64 kernels of ``_conv_kernels`` that follow the contract order
(``dense_ordered``, ``event_ordered``).

Weights that are used again and again (a layer's, every timestep) can be prepared once with
``Weights(w, bias, groups=...)`` and passed in place of ``w``: the per-channel sums that
prove the partial-sum range and the weight tables of the fast kernels are then computed once.
"""

from __future__ import annotations

import numpy as np

from refmodel.fixed import FixedOverflowError, FixedPointError, Overflow, QFormat, cast
from refmodel.kernels import _conv_kernels as _k
from refmodel.kernels import _conv_simd

__all__ = ["conv2d", "linear", "Weights", "ShapeError", "EVENT_DENSITY_THRESHOLD"]

#: "auto" takes the event-driven kernel for 0/1 inputs with at most this fraction of
#: ones (measured with benchmarks/bench_conv.py, see docs/performance.md).
EVENT_DENSITY_THRESHOLD = 0.4

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
    range.  ``*_fmt``: declared formats checked up front.  Overflow "ERROR" raises
    FixedOverflowError naming (n, k, oy, ox).
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
    out, n_over = _run(
        "conv2d", x, weights, (sh, sw), (ph, pw), acc, overflow, acc_apply, method,
        return_overflows, (w_fmt, x_fmt, b_fmt), index_dims=4,
    )
    return (out, n_over) if return_overflows else out


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
    out, n_over = _run(
        "linear", x[:, :, None, None], weights, (1, 1), (0, 0), acc, overflow,
        acc_apply, method, return_overflows, (w_fmt, x_fmt, b_fmt), index_dims=2,
    )
    out = out[:, :, 0, 0]
    return (out, n_over) if return_overflows else out


# --------------------------------------------------------------------------- validation
def _int_array(a, what):
    """``a`` as an integer ndarray (bool -> uint8); refuses floats and uint64 beyond int64."""
    arr = np.asarray(a)
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype.kind not in "iu":
        raise FixedPointError(f"{what} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > _I64_MAX:
        index = np.unravel_index(int(np.argmax(arr > _I64_MAX)), arr.shape)
        raise FixedPointError(f"{what}[{_fmt_index(index)}] = {int(arr[index])} exceeds int64")
    return arr


def _pair(v, name, minimum):
    """An int or an (h, w) pair of ints >= minimum."""
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2 or any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in vals):
        raise ShapeError(f"conv2d: {name} must be an int or an (h, w) pair of ints, got {v!r}")
    if any(e < minimum for e in vals):
        raise ShapeError(f"conv2d: {name} must be >= {minimum}, got {v!r}")
    return int(vals[0]), int(vals[1])


def _fmt_index(index):
    return ", ".join(str(int(i)) for i in index)


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
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ShapeError(f"{api}: groups must be an integer >= 1, got {groups!r}")
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
            bound = self._abs.astype(object) * xabs + self._bias_abs
            if max(bound) > _I64_MAX:
                k = int(np.argmax(bound > _I64_MAX))
                raise FixedPointError(
                    f"{self.api}: output channel {k}: Σ|w[{k}]|·max|x| + |bias[{k}]| = {int(bound[k])} exceeds "
                    f"int64; the exact sum cannot be guaranteed"
                )
            pos, neg, bias = pos.astype(object), neg.astype(object), bias.astype(object)
        return int(min(bias + pos * xmin + neg * xmax)), int(max(bias + pos * xmax + neg * xmin))

    def table(self, kind):
        """The weight table of a fast kernel ("event" or "dense"), built once."""
        if kind not in self._tables:
            self._tables[kind] = (_event_table if kind == "event" else _dense_table)(self.w, self.groups)
        return self._tables[kind]


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
    if fmt is None:
        return
    if not isinstance(fmt, QFormat):
        raise FixedPointError(f"{what}: the declared format must be a QFormat or None, got {fmt!r}")
    fmt.check(values, what)


# --------------------------------------------------------------------------- dispatch
def _run(api, x, weights, stride, padding, acc, overflow, acc_apply, method, want_count, fmts, index_dims):
    """Validate the options, pick a kernel, run it: (int64 out (N, K, Ho, Wo), n_overflows)."""
    N, C, H, W = x.shape
    w, bias, groups = weights.w, weights.bias, weights.groups
    K, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if acc is not None:
        if not isinstance(acc, QFormat):
            raise FixedPointError(f"{api}: acc must be a QFormat or None, got {acc!r}")
        acc.check_datapath()
    overflow = Overflow.of(overflow)
    if acc_apply not in ("each", "once"):
        raise FixedPointError(f"{api}: acc_apply must be 'each' or 'once', got {acc_apply!r}")
    if method not in ("auto", "dense", "event"):
        raise FixedPointError(f"{api}: method must be 'auto', 'dense' or 'event', got {method!r}")
    w_fmt, x_fmt, b_fmt = fmts
    _check_fmt(w_fmt, w if index_dims == 4 else w[:, :, 0, 0], f"{api}: w")
    _check_fmt(x_fmt, x if index_dims == 4 else x[:, :, 0, 0], f"{api}: x")
    _check_fmt(b_fmt, bias, f"{api}: bias")

    xmin = min(0, int(x.min())) if x.size else 0
    xmax = max(0, int(x.max())) if x.size else 0
    lo, hi = weights.partial_sum_range(xmin, xmax)
    acc_lo, acc_hi = acc.bounds(overflow) if acc is not None else (-_I64_MAX - 1, _I64_MAX)
    each = acc is not None and acc_apply == "each"
    if each and bias.size and not (acc_lo <= int(bias.min()) and int(bias.max()) <= acc_hi):
        k = int(np.argmax((bias < acc_lo) | (bias > acc_hi)))
        raise FixedOverflowError(
            f"{api}: bias[{k}] = {int(bias[k])} does not fit the accumulator {acc} "
            f"(range {acc_lo}..{acc_hi} under {overflow.name}), which starts at the bias with acc_apply='each'",
            index=(k,),
            value=int(bias[k]),
        )
    # Exact accumulation gives the contract's result when no partial sum can leave the
    # accumulator's range, when the format is applied once, or under WRAP (modular
    # arithmetic) unless the per-write overflow count is asked for.
    in_range = acc_lo <= lo and hi <= acc_hi
    cast_each = bool(each and not in_range and (overflow != Overflow.WRAP or want_count))
    fits32 = _I32[0] <= lo and hi <= _I32[1]

    spikes = xmin == 0 and xmax <= 1
    if method == "auto":
        dense = not (spikes and np.count_nonzero(x) <= EVENT_DENSITY_THRESHOLD * x.size)
    else:
        dense = method == "dense"

    out = np.empty((N, K, Ho, Wo), np.int64)
    mode = (cast_each, acc.bits if acc is not None else 64, acc is None or acc.signed, int(overflow))
    x16 = -(2**15) <= xmin and xmax < 2**15
    if dense and not cast_each and fits32 and _conv_simd.AVAILABLE and x16 and weights.fits16:
        _dense_simd(x, weights, stride, padding, out)
        counts, err_at, err_val = np.zeros(1, np.int64), np.full(1, -1), np.zeros(1, np.int64)
    elif dense:
        xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        counts, err_at, err_val = (np.empty(N * K, np.int64) for _ in range(3))
        _k.dense_ordered(xp, w, bias, sh, sw, *mode, out, counts, err_at, err_val)
    elif spikes and not cast_each and fits32:
        _conv_simd.event_spikes(x.astype(np.uint8, copy=False), weights.table("event"), bias, *stride, *padding, kh, kw, out)
        counts, err_at, err_val = np.zeros(1, np.int64), np.full(1, -1), np.zeros(1, np.int64)
    else:
        G, Kg = groups, K // groups
        acc_t = np.int32 if fits32 and not cast_each else np.int64
        wt = np.ascontiguousarray(w.reshape(G, Kg, Cg, kh, kw).transpose(0, 2, 3, 4, 1), dtype=acc_t)
        work = np.empty((N * G, Ho, Wo, Kg), acc_t)
        counts, err_at, err_val = (np.empty(N * G, np.int64) for _ in range(3))
        xe = x.astype(np.uint8, copy=False) if spikes else x.astype(np.int64)
        _k.event_ordered(xe, wt, bias, sh, sw, ph, pw, *mode, work, out, counts, err_at, err_val)

    if acc is None:
        return out, 0
    if cast_each:
        first = err_at[err_at >= 0]
        if overflow == Overflow.ERROR and first.size:
            flat = int(first.min())
            _raise_overflow(api, out.shape, flat, int(err_val[np.argmax(err_at == flat)]), acc, overflow, index_dims)
        return out, int(counts.sum())
    # exact sums: apply the format once (under "each" this is WRAP, or nothing left the range)
    bad = (out < acc_lo) | (out > acc_hi)
    n_over = int(np.count_nonzero(bad))
    if n_over and overflow == Overflow.ERROR:
        flat = int(np.argmax(bad))
        _raise_overflow(api, out.shape, flat, int(out.flat[flat]), acc, overflow, index_dims)
    return (cast(out, acc, overflow) if n_over else out), n_over


def _fits(a, dtype):
    """Whether every value of ``a`` fits ``dtype``."""
    info = np.iinfo(dtype)
    return a.size == 0 or (info.min <= int(a.min()) and int(a.max()) <= info.max)


def _raise_overflow(api, shape, flat, value, acc, overflow, index_dims):
    index = np.unravel_index(flat, shape)[:index_dims]
    lo, hi = acc.bounds(overflow)
    raise FixedOverflowError(
        f"{api}: the accumulator of out[{_fmt_index(index)}] reached {value}, outside {acc} "
        f"(range {lo}..{hi}) under Overflow.ERROR",
        index=tuple(int(i) for i in index),
        value=value,
    )


def _event_table(w, groups):
    """The weight table of ``_conv_simd.event_spikes`` (see its doc): (G, kh, kw·Cg, Kgp)."""
    K, Cg, kh, kw = w.shape
    G, Kg = groups, K // groups
    wt = np.zeros((G, kh, kw, Cg, -(-Kg // 16) * 16), np.int8 if _fits(w, np.int8) else np.int32)
    wt[..., :Kg] = w.reshape(G, Kg, Cg, kh, kw).transpose(0, 3, 4, 2, 1)
    return wt.reshape(G, kh, kw * Cg, -1)


def _dense_table(w, groups):
    """The weight table of ``_conv_simd.dense_simd`` (see its module doc): int16 pairs."""
    K, Cg, kh, kw = w.shape
    G, Kg = groups, K // groups
    Cp = Cg + Cg % 2
    lanes, nb = _conv_simd.LANES, _conv_simd.NB_MAX
    nchunk = -(-Kg // (nb * lanes))
    R2 = kh * kw * Cp // 2
    wk = np.zeros((G, nchunk * nb * lanes, kh, kw, Cp), np.int16)
    wk[:, :Kg, :, :, :Cg] = w.reshape(G, Kg, Cg, kh, kw).transpose(0, 1, 3, 4, 2)
    # (G, q, j, m, i, t) -> (G, q, i, j, m, t): channel (nb·q + j)·lanes + m, r = 2i + t
    wp = wk.reshape(G, nchunk, nb, lanes, R2, 2).transpose(0, 1, 4, 2, 3, 5)
    return np.ascontiguousarray(wp).reshape(G, nchunk, R2, nb, 2 * lanes)


def _dense_simd(x, weights, stride, padding, out):
    """Lay the input out for ``_conv_simd.dense_simd`` (see its module doc) and run it."""
    N, C, H, W = x.shape
    _, Cg, kh, kw = weights.w.shape
    _, _, Ho, Wo = out.shape
    (sh, sw), (ph, pw) = stride, padding
    G = weights.groups
    Cp = Cg + Cg % 2
    Wq = max(W + 2 * pw, (-(-Wo // _conv_simd.MR) * _conv_simd.MR - 1) * sw + kw)
    xh = np.empty((N, G, H + 2 * ph, Wq, Cp), np.int16)
    _conv_simd.channels_last(x, G, ph, pw, xh)
    _conv_simd.dense_simd(xh, weights.table("dense"), weights.bias, sh, sw, kh, kw, out)
