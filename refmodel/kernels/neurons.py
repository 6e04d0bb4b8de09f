"""Neuron kernels: IF / LIF / dual-threshold updates and the Loihi current stage.

Integer only; every array is int64 (spikes uint8) flattened to (N, C, M), channel = axis 1.
Modes arrive as the int codes below, gathered in one ``NeuronModes``.  The arithmetic is specified in ``docs/neurons.md``;
the kernels never raise: overflow events are counted per (n, c) row, and the first one of
each row is recorded (position m, which write, exact value) so the caller can raise
under ``Overflow.ERROR``.
"""

import functools
from collections import namedtuple

import numba
import numpy as np

from refmodel.fixed import cast_int, in_range_int, int_bounds, shift_right_int

LEAK_NONE, LEAK_SHIFT, LEAK_MUL, LEAK_LINEAR = range(4)
ORDER_LEAK_FIRST, ORDER_INTEGRATE_FIRST = range(2)
CMP_GE, CMP_GT = range(2)
RESET_SUBTRACT, RESET_ZERO, RESET_VALUE, RESET_NONE = range(4)
# The reset is driven by map 0 (s1), map 1 (s2) or by either map.
DRIVE_S1, DRIVE_S2, DRIVE_EITHER = range(3)
# Which register write overflowed (err[row, 1]).
WRITE_INTEGRATE, WRITE_RESET = np.int64(1), np.int64(2)  # numpy scalars: no Literal typing (one _overflowed)
# Coverage bins counted per row (docs/coverage.md §3): a Vm write above / below the range, V
# equal to the threshold of map 0 / map 1, the lower bound applied, a reset to the value, a
# refractory hold started / ended, a rounding tie of the leak, a leak taking V != 0 to 0, and
# the outcomes of two maps (s1 only, s2 only, both, neither with V > 0).
(COV_HIGH, COV_LOW, COV_AT_THR0, COV_AT_THR1, COV_VMIN, COV_RESET_VALUE, COV_REFR_START, COV_REFR_END,
 COV_LEAK_TIE, COV_LEAK_ZERO, COV_S1_ONLY, COV_S2_ONLY, COV_BOTH, COV_NEITHER_POS, N_COV) = range(15)
_HELD = np.iinfo(np.int64).min  # the Vm of a held neuron for the counting pass: no bin counts it
_RND = 2  # the first round-to-nearest mode (Rounding.RND); TRN and TRN_ZERO have no tie rule

#: Every option of ``neuron_step``, as int codes: the compare, reset (value), the map driving
#: the reset, the lower bound (when ``has_vmin``), the refractory period, the leak (kind, its
#: two numbers a and b, rounding, min_step) and its order, and the Vm register (bits, signed,
#: overflow).
NeuronModes = namedtuple(
    "NeuronModes",
    ["compare", "reset", "reset_value", "drive", "has_vmin", "v_min", "refractory",
     "leak", "leak_a", "leak_b", "leak_rounding", "leak_min_step", "order", "bits", "signed", "overflow"],
)  # fmt: skip


@numba.njit(cache=True, inline="always")
def leak_int(x, kind, a, b, rounding, min_step):
    """One leak of ``x`` toward 0 (never leaves the interval [min(0, x), max(0, x)]).

    shift: ``x - round(x / 2**a)``; with ``min_step`` a zero step becomes sign(x).
    mul: ``round(x * a / 2**b)``.  linear: ``x`` moves toward 0 by ``a``, stopping at 0.
    """
    if kind == LEAK_SHIFT:
        step = shift_right_int(x, a, rounding)
        if min_step and step == 0:
            if x > 0:
                step = np.int64(1)
            elif x < 0:
                step = np.int64(-1)
        return x - step
    if kind == LEAK_MUL:
        return shift_right_int(x * a, b, rounding)
    if kind == LEAK_LINEAR:
        if x > a:
            return x - a
        if x < -a:
            return x + a
        return np.int64(0)
    return x


@numba.njit(cache=True, inline="always")
def leak_tie(x, kind, a, b, rounding):
    """Whether the leak of ``x`` rounds a tie under a round-to-nearest mode: the bits that
    ``shift_right`` discards (of ``x`` for "shift" by ``a``, of ``x * a`` for "mul" by ``b``)
    are exactly one half, ``100...0``."""
    if rounding < _RND or (kind != LEAK_SHIFT and kind != LEAK_MUL):
        return False
    p = x if kind == LEAK_SHIFT else x * a
    n = a if kind == LEAK_SHIFT else b
    if n == 0 or n > 62:  # n > 62: |p| < 2**62 has no tie (the Vm has at most 62 bits)
        return False
    return (p & ((np.int64(1) << n) - 1)) == np.int64(1) << (n - 1)


@numba.njit(cache=True)
def _overflowed(y, bits, signed, overflow, err, row, m, write, count, cov, c):
    """A Vm write of ``y`` outside the register's range: ``cast_int(y)`` and ``count``, the
    number of the row's overflowing writes, with this one added; the row's first is recorded as
    ``err[row] = (m, write, y)``, and unless ``cov`` (the coverage counters) is None,
    ``cov[c, COV_HIGH]`` or ``cov[c, COV_LOW]`` counts it.  Not inlined: the rare path stays out of
    the neuron loop's code (it is compiled once per use of coverage), and its counts out of the
    loop's registers."""
    if err[row, 0] < 0:
        err[row, 0] = m
        err[row, 1] = write
        err[row, 2] = y
    if cov is not None:
        cov[c, COV_HIGH if y > 0 else COV_LOW] += 1
    return cast_int(y, bits, signed, overflow), count + 1


def neuron_step(v, refr, current, thr, modes, spikes, v_pre, ovf, err, cov):
    """One timestep of K-threshold neurons (K = thr.shape[0]: 1 for IF/LIF, 2 for DT), with
    the options ``modes`` (a ``NeuronModes``).

    Per neuron: refractory hold, leak / integrate (cast) in ``order``, lower bound,
    ``s_k = V cmp thr[k, c]`` into spike channel ``k * C + c``, reset driven by ``drive``
    (subtraction cast), refractory start.  ``v`` (and ``refr``, only touched when
    ``refractory > 0``) are updated in place; the Vm before the reset goes to ``v_pre``
    unless it is empty.  ``ovf[row]`` counts overflowing writes of row ``n * C + c``;
    ``err[row] = (m, write, exact value)`` of its first one, m = -1 when none.  Unless ``cov``
    is empty, ``cov[c, b]`` counts the hits of coverage bin ``b`` (the ``COV_*`` codes) in
    channel c, over the batch.

    The work is done by the kernel of ``_step_kernel`` for this number of maps, use of the
    refractory counter, counting of coverage and place of the leak.
    """
    leaky = modes.leak != LEAK_NONE
    kernel = _step_kernel(thr.shape[0], modes.refractory > 0, cov.shape[0] > 0, leaky and modes.order == ORDER_LEAK_FIRST,
                          leaky and modes.order == ORDER_INTEGRATE_FIRST)
    kernel(v, refr, current, thr, modes, spikes, v_pre, ovf, err, cov)


@functools.cache
def _step_kernel(n_maps: int, use_refr: bool, cover: bool, leak_first: bool, leak_after: bool):
    """``neuron_step``'s kernel for ``n_maps`` (1 or 2), the use of the refractory counter, the
    counting of coverage and the leak's place (before the integration, after it, or none).  Each
    kernel is compiled (and cached) only when a run first needs it: compiling all eight of the
    (maps, refractory, coverage) kernels in every run took a first ``refmodel gen`` ~70 s.

    ``_neuron_channel`` gets ``n_maps`` as a constant and, for an option not in use, None instead
    of the counter array, the coverage array or the leak flag: numba drops the code of ``x is not
    None`` branches on None before typing it (an IF step's kernel compiles in ~2.8 s of CPU
    instead of ~5.2 s), and LLVM specializes the rest (measured with a loop per row (n, c): an
    IF step in 35% less CPU time, a dual-threshold step in 20% less).  The channel index is
    uint64, as the parfor makes it: an int64 index typed ``_neuron_channel`` a second time.

    The channels are shared among the threads; the loop over one channel is ``_neuron_channel``.
    A loop per channel, not per row, keeps a channel's coverage counters in registers over the
    batch and stores C rows of them, not N·C (vgg's IF steps of two timesteps, Intel Xeon: plain
    14.7-15.6 ms and counting 16.3-17.9 ms, against 18.6-19.1 and 17.8-19.8 ms per row; counting
    V = threshold only where it can be, below, then took counting from 1.17x plain to 1.12x)."""

    @numba.njit(cache=True, parallel=True)
    def kernel(v, refr, current, thr, modes, spikes, v_pre, ovf, err, cov):
        keep_pre = v_pre.shape[0] > 0
        for c in numba.prange(np.uint64(current.shape[1])):
            _neuron_channel(v, refr if use_refr else None, current, thr, c, n_maps, True if leak_first else None,
                            True if leak_after else None, keep_pre, modes, spikes, v_pre, ovf, err, cov if cover else None)

    return kernel


@numba.njit(cache=True)
def _neuron_channel(v, refr, current, thr, c, n_maps, leak_first, leak_after, keep_pre, modes, spikes, v_pre, ovf, err,
                    cov):
    """``neuron_step`` for the neurons of channel c, row (n, c) after row (``refr`` and ``cov``
    None when unused; the leak applied where ``leak_first`` or ``leak_after`` is not None).
    Counts the channel's coverage bins into ``cov[c]``, in local counters that stay in
    registers, but for the rare writes beyond the range: a write is cast only when it leaves
    lo..hi, and then ``_overflowed`` counts it in ``cov`` (vgg's IF steps, one thread: counting
    in 1.035x their plain time, not 1.056x; dtscnn's DT steps 1.22x, not 1.29x).  With
    two maps, the bins of V at a threshold and of the outcomes are counted after each row from its
    pre-reset Vm and spikes (s1 only = fired1 - both, neither: s1 = s2 = 0 and V > 0), in a loop
    without branches (dtscnn's neuron steps, interleaved: counting in 1.12x their plain time, not 1.24x)."""
    (compare, reset, reset_value, drive, has_vmin, v_min, refractory,
     leak, leak_a, leak_b, leak_rounding, leak_min_step, order, bits, signed, overflow) = modes
    n_ch = current.shape[1]
    lo, hi = int_bounds(bits, signed, overflow)
    at0 = at1 = clamped = to_value = started = ended = ties = zeroed = np.int64(0)
    fired1 = fired2 = both = neither = 0
    pass2 = cov is not None and n_maps == 2
    pre = np.empty(current.shape[2] if pass2 else 0, np.int64)  # the row's Vm before the reset (_HELD: held)
    for n in range(current.shape[0]):
        row = n * n_ch + c
        count = np.int64(0)
        err[row, 0] = -1
        for m in range(current.shape[2]):
            x = v[n, c, m]
            if refr is not None and refr[n, c, m] > 0:
                ended += refr[n, c, m] == 1
                refr[n, c, m] -= 1
                if keep_pre:
                    v_pre[n, c, m] = x
                for k in range(n_maps):
                    spikes[n, k * n_ch + c, m] = 0
                if pass2:
                    pre[m] = _HELD
                continue
            if leak_first is not None:
                y = leak_int(x, leak, leak_a, leak_b, leak_rounding, leak_min_step)
                if cov is not None:
                    ties += leak_tie(x, leak, leak_a, leak_b, leak_rounding)
                    zeroed += (x != 0) & (y == 0)
                x = y
            y = x + current[n, c, m]
            x = y
            if not lo <= y <= hi:
                x, count = _overflowed(y, bits, signed, overflow, err, row, m, WRITE_INTEGRATE, count, cov, c)
            if leak_after is not None:
                y = leak_int(x, leak, leak_a, leak_b, leak_rounding, leak_min_step)
                if cov is not None:
                    ties += leak_tie(x, leak, leak_a, leak_b, leak_rounding)
                    zeroed += (x != 0) & (y == 0)
                x = y
            if has_vmin and x < v_min:
                x = v_min
                clamped += 1
            if keep_pre:
                v_pre[n, c, m] = x
            if pass2:
                pre[m] = x
            fired = False
            theta = np.int64(0)
            for k in range(n_maps):
                t = thr[k, c]
                s = x >= t if compare == CMP_GE else x > t
                spikes[n, k * n_ch + c, m] = np.uint8(1) if s else np.uint8(0)
                if n_maps == 1 and (s if compare == CMP_GE else not s):  # V = t only where V >= t fires, V > t not
                    at0 += x == t
                if s and (drive == k or (drive == DRIVE_EITHER and (not fired or t > theta))):
                    fired = True
                    theta = t
            if fired:
                if reset == RESET_SUBTRACT:
                    y = x - theta
                    x = y
                    if not lo <= y <= hi:
                        x, count = _overflowed(y, bits, signed, overflow, err, row, m, WRITE_RESET, count, cov, c)
                elif reset == RESET_ZERO:
                    x = np.int64(0)
                elif reset == RESET_VALUE:
                    x = reset_value
                    to_value += 1
            if refr is not None:
                refr[n, c, m] = refractory if fired else 0
                started += fired
            v[n, c, m] = x
        ovf[row] = count
        if pass2:  # the threshold and outcome bins of two maps: a second pass over the row, without branches
            t0, t1 = thr[0, c], thr[1, c]
            for m in range(current.shape[2]):
                x = pre[m]
                s1 = np.int64(spikes[n, c, m])
                s2 = np.int64(spikes[n, n_ch + c, m])
                at0 += x == t0
                at1 += x == t1
                fired1 += s1
                fired2 += s2
                both += s1 & s2
                neither += (s1 | s2 | (x <= 0)) == 0
    if cov is not None:  # COV_HIGH and COV_LOW are counted by _overflowed
        counts = cov[c]
        counts[COV_AT_THR0], counts[COV_AT_THR1] = at0, at1
        counts[COV_VMIN], counts[COV_RESET_VALUE], counts[COV_REFR_START], counts[COV_REFR_END] = (
            clamped, to_value, started, ended)
        counts[COV_LEAK_TIE], counts[COV_LEAK_ZERO], counts[COV_S1_ONLY], counts[COV_S2_ONLY] = (
            ties, zeroed, fired1 - both, fired2 - both)
        counts[COV_BOTH], counts[COV_NEITHER_POS] = both, neither


@numba.njit(cache=True, parallel=True)
def current_filter_step(u, a_in, mult, shift, rounding, in_shift, bits, overflow, bias, i_out, ovf, cov):
    """Synaptic current register (Loihi CUBA), ``u`` updated in place:
    ``u <- cast(round(u * mult / 2**shift) + a_in * 2**in_shift)``, then
    ``i_out = u + bias[c]``.  ``ovf[row]`` counts the casts that changed ``u``; unless ``cov``
    is empty, ``cov[row, 0]`` / ``cov[row, 1]`` count those above / below the range."""
    n_rows = a_in.shape[0] * a_in.shape[1]
    n_ch = a_in.shape[1]
    for row in numba.prange(n_rows):
        n = row // n_ch
        c = row - n * n_ch
        count = 0
        for m in range(a_in.shape[2]):
            y = shift_right_int(u[n, c, m] * mult, shift, rounding) + (a_in[n, c, m] << in_shift)
            if not in_range_int(y, bits, True, overflow):
                count += 1
                if cov.shape[0] > 0:
                    cov[row, 0 if y > 0 else 1] += 1
            x = cast_int(y, bits, True, overflow)
            u[n, c, m] = x
            i_out[n, c, m] = x + bias[c]
        ovf[row] = count
