"""Numba kernels behind ``refmodel.kernels.conv`` (see docs/arithmetic.md §4).

Two kernels (the fast exact ones are in ``_conv_simd``), both computing, for every output,
``acc = b[k]; for (c, ky, kx): acc = A(acc + w[k, c, ky, kx] * x[n, c', iy, ix])``
where ``A`` is the accumulator format applied after each addition (``cast_each``) or
the identity (exact accumulation; the wrapper then applies the format once):

* ``dense_ordered``: one (n, k) plane per parallel job; every output receives its
  additions in the contract order (c, ky, kx), so any overflow mode is exact.
* ``event_ordered``: walks the nonzero inputs of one (n, group) in (c, iy, ix) order
  and scatters ``w * x`` into the outputs they reach.  For a fixed output, the inputs
  it sees in that walk come in (c, ky, kx) order (``iy = oy*sh + ky - ph`` grows with
  ``ky`` for fixed ``c``, ``ix`` with ``kx`` for fixed ``iy``), so this is the same
  sequence of additions as ``dense_ordered``, output by output.  (The events of one
  input row are scattered tap by tap; an output receives one term per tap, so its
  order is unchanged.)

Overflow reporting: ``counts[job]`` is the number of writes that left the range,
``err_at[job]`` the flat index into ``out`` of the first output (C order) that left it
(-1 if none) and ``err_val[job]`` the first value that output took outside the range.

Coverage (docs/coverage.md §2), when ``cov`` (N, K, 4) is not empty and the format is applied
after each addition: ``cov[n, k]`` counts the writes of output channel k above and below the
range ``[lo, hi]`` and the writes of a nonzero term whose value lies within 1 of ``hi`` and of
``lo`` (``COV_ABOVE``, ``COV_BELOW``, ``COV_NEAR_HIGH``, ``COV_NEAR_LOW``).
"""

import numba
import numpy as np
from numba import prange

from refmodel.fixed import cast_int, in_range_int

_ERROR = 3  # Overflow.ERROR
COV_ABOVE, COV_BELOW, COV_NEAR_HIGH, COV_NEAR_LOW = range(4)


@numba.njit(cache=True)
def _cover(cov, n, k, s, term, left, lo, hi):
    """Count the write of value ``s`` (the sum after adding ``term``) into ``cov[n, k]``."""
    if left:
        cov[n, k, COV_ABOVE if s > hi else COV_BELOW] += 1
    elif term != 0:
        if s >= hi - 1:
            cov[n, k, COV_NEAR_HIGH] += 1
        if s <= lo + 1:
            cov[n, k, COV_NEAR_LOW] += 1


@numba.njit(cache=True)
def _step(v, bits, signed, overflow):
    """Apply the accumulator format to ``v``: (new value, whether ``v`` left the range)."""
    if in_range_int(v, bits, signed, overflow):
        return v, False
    return cast_int(v, bits, signed, overflow), True


@numba.njit(cache=True, parallel=True)
def dense_ordered(xp, w, bias, sh, sw, cast_each, bits, signed, overflow, out, counts, err_at, err_val, lo, hi, cov):
    """``out[n, k]`` from the zero-padded input ``xp`` (N, C, Hp, Wp), one (n, k) per job."""
    N, K, Ho, Wo = out.shape
    for job in prange(N * K):
        count, first, first_val = _dense_job(job // K, job % K, xp, w, bias, sh, sw, cast_each, bits, signed,
                                             overflow, out, lo, hi, cov)
        counts[job] = count
        err_at[job] = -1 if first < 0 else job * Ho * Wo + first
        err_val[job] = first_val


@numba.njit(cache=True)
def _dense_job(n, k, xp, w, bias, sh, sw, cast_each, bits, signed, overflow, out, lo, hi, cov):
    """One job of ``dense_ordered``: the plane ``out[n, k]``; (overflow count, index in the plane of
    the first output that left the range or -1, its first value outside).  (A function of its own,
    not the body of the parallel loop: numba's parfor passes cost seconds of compiling on a large
    loop body, none on a call.)"""
    _, K, Ho, Wo = out.shape
    cover = cov.shape[0] > 0
    _, Cg, kh, kw = w.shape
    Kg = K // (xp.shape[1] // Cg)
    c0 = (k // Kg) * Cg
    plane = out[n, k]
    plane[:, :] = bias[k]
    count = 0
    first = -1
    first_val = np.int64(0)
    for c in range(Cg):
        for ky in range(kh):
            for kx in range(kw):
                wv = w[k, c, ky, kx]
                if wv == 0:  # adds 0 to an in-range accumulator: no change
                    continue
                for oy in range(Ho):
                    row = xp[n, c0 + c, oy * sh + ky]
                    arow = plane[oy]
                    if not cast_each:
                        for ox in range(Wo):
                            arow[ox] += wv * row[ox * sw + kx]
                        continue
                    for ox in range(Wo):
                        term = wv * row[ox * sw + kx]
                        v, left = _step(arow[ox] + term, bits, signed, overflow)
                        if cover:
                            _cover(cov, n, k, arow[ox] + term, term, left, lo, hi)
                        if left:
                            count += 1
                            pos = oy * Wo + ox
                            if first < 0 or pos < first:
                                first = pos
                                first_val = arow[ox] + wv * row[ox * sw + kx]
                        arow[ox] = v
    return count, first, first_val


@numba.njit(cache=True, parallel=True)
def event_ordered(x, wt, bias, sh, sw, ph, pw, cast_each, bits, signed, overflow, work, out, counts, err_at, err_val,
                  lo, hi, cov):
    """``out`` by scattering the nonzero ``x`` (N, C, H, W), one (n, group) per job.

    ``wt`` is (G, Cg, kh, kw, Kg) (output channel last, contiguous); ``work`` is an
    (N*G, Ho, Wo, Kg) accumulator buffer.  The wrapper picks their dtype: int32 when the
    exact sums fit int32 (then int32 arithmetic is exact), int64 otherwise.
    """
    G = wt.shape[0]
    for job in prange(x.shape[0] * G):
        count, first, first_val = _event_job(job // G, job % G, x, wt, bias, sh, sw, ph, pw, cast_each, bits, signed,
                                             overflow, work[job], out, lo, hi, cov)
        counts[job] = count
        err_at[job] = first
        err_val[job] = first_val


@numba.njit(cache=True)
def _event_job(n, g, x, wt, bias, sh, sw, ph, pw, cast_each, bits, signed, overflow, acc, out, lo, hi, cov):
    """One job of ``event_ordered``: the outputs of (n, group g), accumulated in ``acc`` (Ho, Wo, Kg);
    (overflow count, flat index into ``out`` of the first output that left the range or -1, its first
    value outside).  (A function of its own, see ``_dense_job``.)"""
    _, _, H, W = x.shape
    G, Cg, kh, kw, Kg = wt.shape
    Ho, Wo, _ = acc.shape
    track = cast_each and overflow == _ERROR
    cover = cov.shape[0] > 0
    for oy in range(Ho):
        for ox in range(Wo):
            for k in range(Kg):
                acc[oy, ox, k] = bias[g * Kg + k]
    bad = np.zeros((Ho, Wo, Kg) if track else (0, 0, 0), np.bool_)
    bad_val = np.zeros((Ho, Wo, Kg) if track else (0, 0, 0), np.int64)
    count = 0
    ev_q = np.empty(W, np.int64)  # the events of one input row: ix + pw = q*sw + r
    ev_r = np.empty(W, np.int64)
    ev_v = np.empty(W, np.int64)
    for c in range(Cg):
        for iy in range(H):
            m = 0
            for ix in range(W):
                v = x[n, g * Cg + c, iy, ix]
                if v != 0:
                    ev_q[m], ev_r[m], ev_v[m] = (ix + pw) // sw, (ix + pw) % sw, v
                    m += 1
            if m == 0:
                continue
            # kernel rows reaching output rows from input row iy: ky = ry + j*sh, oy = qy - j
            ry, qy = (iy + ph) % sh, (iy + ph) // sh
            oy = qy + 1
            for ky in range(ry, kh, sh):
                oy -= 1
                if oy < 0:
                    break
                if oy >= Ho:
                    continue
                for kx in range(kw):
                    r, d = kx % sw, kx // sw
                    for e in range(m):  # one tap for all events of the row: no store->load chains
                        ox = ev_q[e] - d
                        if ev_r[e] != r or ox < 0 or ox >= Wo:
                            continue
                        v = ev_v[e]
                        # (indexing, not row views: a view costs two atomic refcount updates)
                        if not cast_each:
                            if v == 1:  # a spike: add the weights
                                for k in range(Kg):
                                    acc[oy, ox, k] += wt[g, c, ky, kx, k]
                            else:
                                for k in range(Kg):
                                    acc[oy, ox, k] += wt[g, c, ky, kx, k] * v
                            continue
                        for k in range(Kg):
                            term = np.int64(wt[g, c, ky, kx, k]) * v
                            s = np.int64(acc[oy, ox, k]) + term
                            new, left = _step(s, bits, signed, overflow)
                            if cover:
                                _cover(cov, n, g * Kg + k, s, term, left, lo, hi)
                            if left:
                                count += 1
                                if track and not bad[oy, ox, k]:
                                    bad[oy, ox, k] = True
                                    bad_val[oy, ox, k] = s
                            acc[oy, ox, k] = new
    for oy in range(Ho):  # transpose one output row at a time (it stays in L1)
        for k in range(Kg):
            for ox in range(Wo):
                out[n, g * Kg + k, oy, ox] = acc[oy, ox, k]
    first = -1
    first_val = np.int64(0)
    for k in range(Kg if track else 0):  # the first output (C order) that left the range
        for oy in range(Ho):
            for ox in range(Wo):
                if first < 0 and bad[oy, ox, k]:
                    first = ((n * G * Kg + g * Kg + k) * Ho + oy) * Wo + ox
                    first_val = bad_val[oy, ox, k]
    return count, first, first_val


@numba.njit(cache=True)
def silent_samples(x):
    """The number of samples (rows of ``x``, (N, F)) whose every input is 0: each row is read
    only up to its first nonzero (coverage's ``zero_input``, docs/coverage.md §2)."""
    count = 0
    for n in range(x.shape[0]):
        f = 0
        while f < x.shape[1] and x[n, f] == 0:
            f += 1
        count += f == x.shape[1]
    return count
