"""Pooling kernels, specified in ``docs/pooling.md``.

Integers only.  Arrays are C-contiguous ``(N, C, H, W)``: spikes ``uint8`` (0 or 1), membrane
potentials and counters ``int64``; outputs ``(N, C, Ho, Wo)``.  Window ``(oy, ox)`` covers rows
``oy*sh .. oy*sh+kh-1`` and columns ``ox*sw .. ox*sw+kw-1``; a position inside it is numbered
row-major, ``p = ky*kw + kx``.  Modes are integer codes (``int(Overflow.SAT)``, ...).  Every
kernel loops in parallel over the independent ``(n, c)`` planes only; event counts are kept per
plane and summed at the end (no cross-thread reduction).
"""

import functools

import numba
import numpy as np

from refmodel.fixed import cast_int, in_range_int, shift_right_int

__all__ = ["winner_pool", "count_spikes", "pooled_neuron_pool", "or_pool", "sum_pool"]

#: Columns of the window coverage counters: ties of the ranking key, windows without a spike,
#: winners that moved since the previous timestep.
WIN_TIE, WIN_SILENT, WIN_CHANGED, N_WIN = range(4)


@numba.njit(cache=True, inline="always")
def _window_argmax(a, n, c, y0, x0, kh, kw):
    """(p, a[p]) for the first row-major position p holding the window's maximum."""
    best = a[n, c, y0, x0]
    arg = 0
    for ky in range(kh):
        for kx in range(kw):
            value = a[n, c, y0 + ky, x0 + kx]
            if value > best:
                best = value
                arg = ky * kw + kx
    return arg, best


@numba.njit(cache=True, inline="always")
def _window_argmax_counted(a, spikes, n, c, y0, x0, kh, kw):
    """``_window_argmax`` in the same pass counting the positions that hold the maximum and the
    window's spikes (without branches): (p, a[p], positions equal to the maximum, spikes)."""
    best = a[n, c, y0, x0]
    arg = 0
    equal = 0
    fired = 0
    for ky in range(kh):
        for kx in range(kw):
            value = a[n, c, y0 + ky, x0 + kx]
            fired += spikes[n, c, y0 + ky, x0 + kx]
            above = value > best
            equal = 1 if above else equal + (value == best)
            arg = ky * kw + kx if above else arg
            best = value if above else best
    return arg, best, equal, fired


@numba.njit(cache=True, inline="always")
def _window_sum(s, n, c, y0, x0, kh, kw):
    """Sum of the window's values, int64."""
    total = np.int64(0)
    for ky in range(kh):
        for kx in range(kw):
            total += np.int64(s[n, c, y0 + ky, x0 + kx])
    return total


@numba.njit(cache=True, inline="always")
def _window_2x2(a, spikes, n, c, y0, x0):
    """``_window_argmax_counted`` of a 2x2 window, without branches (a loop over output
    columns that LLVM vectorizes): the larger of each row's pair (the left one on ties), then
    the larger of the two rows' (the upper one on ties).  Returns (p, spikes[p], positions
    equal to the maximum, spikes of the window); a kernel that does not count drops the last two.
    Each choice selects a (value, position, spike) tuple: computing p from the comparisons
    instead (``2 + lower_right``) left the plain kernel's loop scalar, 4x slower."""
    a0, a1, a2, a3 = a[n, c, y0, x0], a[n, c, y0, x0 + 1], a[n, c, y0 + 1, x0], a[n, c, y0 + 1, x0 + 1]
    s0, s1, s2, s3 = spikes[n, c, y0, x0], spikes[n, c, y0, x0 + 1], spikes[n, c, y0 + 1, x0], spikes[n, c, y0 + 1, x0 + 1]
    right = a1 > a0
    upper, p_upper, s_upper = (a1, 1, s1) if right else (a0, 0, s0)
    lower_right = a3 > a2
    lower, p_lower, s_lower = (a3, 3, s3) if lower_right else (a2, 2, s2)
    below = lower > upper
    best, p, spike = (lower, p_lower, s_lower) if below else (upper, p_upper, s_upper)
    equal = np.int64(a0 == best) + (a1 == best) + (a2 == best) + (a3 == best)
    return p, spike, equal, np.int64(s0 | s1 | s2 | s3)


def winner_pool(spikes, key, kh, kw, sh, sw, out, index, prev, cov):
    """``index = argmax_p key`` (first p on ties); ``out = spikes[window p = index]``.  Unless
    ``cov`` is empty, ``cov[n*C + c]`` counts the windows whose maximum is at two or more
    positions (``WIN_TIE``), those without a spike (``WIN_SILENT``) and, unless ``prev`` (the
    previous winners) is empty, those whose winner differs from it (``WIN_CHANGED``)."""
    square2 = kh == 2 and kw == 2
    kernel = _winner_kernel(square2, square2 and sh == 2 and sw == 2, cov.shape[0] > 0)
    kernel(spikes, key, kh, kw, sh, sw, out, index, prev, cov)


@functools.cache
def _winner_kernel(square2: bool, stride2: bool, cover: bool):
    """``winner_pool``'s kernel compiled for a 2x2 window or any (``square2``), the 2x2 window
    at stride 2 or any (``stride2``), counting or not (``cover``).  As closure constants they
    are known at compile time (numba caches one kernel per combination a network uses): the 2x2
    window is ranked without branches (``_window_2x2``), at stride 2 in a loop LLVM vectorizes,
    and the plain pool carries no counting.  Measured (Intel Xeon, one thread, best of 30) on
    vgg's first pool, 16x64x32x32 post-reset Vm: plain 0.84 ms with the 2x2 loops unrolled but
    branching, 0.61 ms without branches, 0.41-0.49 ms at stride 2; counting 1.36, 0.84 and
    0.53-0.58 ms."""

    @numba.njit(cache=True, parallel=True)
    def kernel(spikes, key, kh, kw, sh, sw, out, index, prev, cov):
        n_, c_, ho, wo = out.shape
        changes = prev.shape[0] > 0
        for nc in numba.prange(n_ * c_):
            wh = 2 if square2 else kh
            ww = 2 if square2 else kw
            sy = 2 if stride2 else sh
            sx = 2 if stride2 else sw
            n, c = nc // c_, nc % c_
            ties = silent = changed = 0
            for oy in range(ho):
                for ox in range(wo):
                    y0, x0 = oy * sy, ox * sx
                    if square2:
                        p, spike, equal, fired = _window_2x2(key, spikes, n, c, y0, x0)
                    elif cover:
                        p, _, equal, fired = _window_argmax_counted(key, spikes, n, c, y0, x0, wh, ww)
                    else:
                        p, _ = _window_argmax(key, n, c, y0, x0, wh, ww)
                    if not square2:
                        ky = p // ww
                        spike = spikes[n, c, y0 + ky, x0 + p - ky * ww]
                    if cover:
                        ties += equal > 1
                        silent += fired == 0
                        if changes:
                            changed += prev[n, c, oy, ox] != p
                    index[n, c, oy, ox] = p
                    out[n, c, oy, ox] = spike
            if cover:
                cov[nc, WIN_TIE] = ties
                cov[nc, WIN_SILENT] = silent
                cov[nc, WIN_CHANGED] = changed

    return kernel


@numba.njit(cache=True, parallel=True)
def count_spikes(spikes, count, count_max):
    """``count = min(count + spikes, count_max)`` in place; returns how many increments saturated."""
    n_, c_, h, w = count.shape
    saturated = np.zeros(n_ * c_, np.int64)
    for nc in numba.prange(n_ * c_):
        n, c = nc // c_, nc % c_
        for y in range(h):
            for x in range(w):
                if spikes[n, c, y, x] != 0:
                    if count[n, c, y, x] >= count_max:
                        saturated[nc] += 1
                    else:
                        count[n, c, y, x] += 1
    return saturated.sum()


@numba.njit(cache=True, parallel=True)
def pooled_neuron_pool(v, theta, strict, bits, signed, overflow, kh, kw, sh, sw, out, vmax, index):
    """Per window: ``m = max_p v`` (``index`` = first argmax), ``out = m > theta`` if ``strict``
    else ``m >= theta``; on firing every window neuron ``v = cast(v - theta)`` in place.

    Returns the number of casts that changed a value (under ERROR: values left out of range).
    Windows must not overlap (``sh >= kh``, ``sw >= kw``).
    """
    n_, c_, ho, wo = out.shape
    events = np.zeros(n_ * c_, np.int64)
    for nc in numba.prange(n_ * c_):
        n, c = nc // c_, nc % c_
        for oy in range(ho):
            for ox in range(wo):
                y0, x0 = oy * sh, ox * sw
                p, m = _window_argmax(v, n, c, y0, x0, kh, kw)
                fire = m > theta if strict else m >= theta
                index[n, c, oy, ox] = p
                vmax[n, c, oy, ox] = m
                out[n, c, oy, ox] = 1 if fire else 0
                if fire:
                    for ky in range(kh):
                        for kx in range(kw):
                            x = v[n, c, y0 + ky, x0 + kx] - theta
                            if not in_range_int(x, bits, signed, overflow):
                                events[nc] += 1
                            v[n, c, y0 + ky, x0 + kx] = cast_int(x, bits, signed, overflow)
    return events.sum()


@numba.njit(cache=True, parallel=True)
def or_pool(spikes, kh, kw, sh, sw, out):
    """``out = 1`` if any spike of the window is 1, else 0."""
    n_, c_, ho, wo = out.shape
    for nc in numba.prange(n_ * c_):
        n, c = nc // c_, nc % c_
        for oy in range(ho):
            for ox in range(wo):
                total = _window_sum(spikes, n, c, oy * sh, ox * sw, kh, kw)
                out[n, c, oy, ox] = 1 if total > 0 else 0


#: Columns of the window-sum coverage counters of ``sum_pool``: no spike, every position
#: spiked, two or more spikes, the code (after the shift) above the output range, a rounding
#: tie of the shift (docs/coverage.md §4).
SUM_SILENT, SUM_FULL, SUM_MULTIPLE, SUM_HIGH, SUM_TIE, N_SUM = range(6)


def sum_pool(spikes, kh, kw, sh, sw, shift, rounding, bits, signed, overflow, out, cov):
    """``out = cast(shift_right(x, shift, rounding))`` with ``x`` the sum of the window's spikes.

    Returns the number of casts that changed a value (under ERROR: values left out of range).
    Unless ``cov`` is empty, ``cov[n*C + c]`` counts the windows of plane (n, c) by their sum
    ``x``: silent (x = 0), full (x = kh·kw), multiple (x >= 2), high (the shifted code above
    the output range) and tie (``shift >= 1``, a round-to-nearest ``rounding`` and the
    discarded bits of ``x`` exactly one half)."""
    kernel = _sum_kernel(kh == 2 and kw == 2, cov.shape[0] > 0)
    return kernel(spikes, kh, kw, sh, sw, shift, rounding, bits, signed, overflow, out, cov)


@functools.cache
def _sum_kernel(square2: bool, cover: bool):
    """``sum_pool``'s kernel for a 2x2 window or any, counting or not, fixed at compile time
    as in ``_winner_kernel``."""

    @numba.njit(cache=True, parallel=True)
    def kernel(spikes, kh, kw, sh, sw, shift, rounding, bits, signed, overflow, out, cov):
        n_, c_, ho, wo = out.shape
        events = np.zeros(n_ * c_, np.int64)
        wh = 2 if square2 else kh
        ww = 2 if square2 else kw
        for nc in numba.prange(n_ * c_):
            n, c = nc // c_, nc % c_
            sums = np.zeros(wh * ww + 1 if cover else 0, np.int64)  # windows per sum 0 .. kh·kw
            count = 0
            for oy in range(ho):
                for ox in range(wo):
                    x = _window_sum(spikes, n, c, oy * sh, ox * sw, wh, ww)
                    if cover:
                        sums[x] += 1
                    if shift > 0:
                        x = shift_right_int(x, shift, rounding)
                    outside = not in_range_int(x, bits, signed, overflow)
                    count += outside
                    out[n, c, oy, ox] = cast_int(x, bits, signed, overflow)
            events[nc] = count
            if cover:
                _sum_bins(sums, shift, rounding, count, cov[nc])
        return events.sum()

    return kernel


@numba.njit(cache=True)
def _sum_bins(sums, shift, rounding, high, row):
    """The window-sum bins of one plane from ``sums[x]``, its number of windows of each sum x,
    and ``high``, the number whose code was above the output range."""
    row[SUM_SILENT], row[SUM_FULL], row[SUM_MULTIPLE], row[SUM_HIGH] = sums[0], sums[-1], sums[2:].sum(), high
    half = np.int64(1) << (shift - 1) if shift > 0 else np.int64(0)
    ties = 0
    if shift > 0 and rounding >= 2:
        for x in range(len(sums)):
            ties += sums[x] if (x & (2 * half - 1)) == half else 0
    row[SUM_TIE] = ties


# --------------------------------------------------------------------------- coverage (docs/coverage.md §4)
@numba.njit(cache=True, parallel=True)
def subtract_bins(v, out, theta, bits, signed, overflow, kh, kw, sh, sw, cov):
    """For every neuron of a window that fired (``out``) the pooled neuron's subtraction
    ``y = v - theta`` from the Vm ``v`` before it: ``cov[row, 0]`` counts y < 0, ``cov[row, 1]``
    y outside the Vm register's range."""
    n_, c_, ho, wo = out.shape
    for nc in numba.prange(n_ * c_):
        n, c = nc // c_, nc % c_
        for oy in range(ho):
            for ox in range(wo):
                if out[n, c, oy, ox] == 0:
                    continue
                for ky in range(kh):
                    for kx in range(kw):
                        y = v[n, c, oy * sh + ky, ox * sw + kx] - theta
                        if y < 0:
                            cov[nc, 0] += 1
                        if not in_range_int(y, bits, signed, overflow):
                            cov[nc, 1] += 1
