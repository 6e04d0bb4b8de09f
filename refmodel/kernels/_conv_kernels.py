"""Numba kernels behind ``refmodel.kernels.conv`` (see docs/arithmetic.md §4).

Three kernels, all computing, for every output,
``acc = b[k]; for (c, ky, kx): acc = A(acc + w[k, c, ky, kx] * x[n, c', iy, ix])``
where ``A`` is the accumulator format applied after each addition (``cast_each``) or
the identity (exact accumulation; the wrapper then applies the format once):

* ``dense_ordered``: one (n, k) plane per parallel job; every output receives its
  additions in the contract order (c, ky, kx), so any overflow mode is exact.
* ``event_ordered``: walks the nonzero inputs of one (n, group) in (c, iy, ix) order
  and scatters ``w * x`` into the outputs they reach.  For a fixed output, the inputs
  it sees in that walk come in (c, ky, kx) order (``iy = oy*sh + ky - ph`` grows with
  ``ky`` for fixed ``c``, ``ix`` with ``kx`` for fixed ``iy``), so this is the same
  sequence of additions as ``dense_ordered``, output by output.
* ``dense_int32``: exact sums only, when the wrapper has proved they fit int32:
  int16 operands, int32 wrapping accumulation (the exact sum mod 2**32 is the exact
  sum once it is known to fit), an im2col row buffer and a 4x4 register block so
  that LLVM emits ``vpdpwssd``/``vpmaddwd``.

Overflow reporting: ``counts[job]`` is the number of writes that left the range,
``err_at[job]`` the flat index into ``out`` of the first output (C order) that left it
(-1 if none) and ``err_val[job]`` the first value that output took outside the range.
"""

import numba
import numpy as np
from numba import prange

from refmodel.fixed import cast_int, in_range_int

_ERROR = 3  # Overflow.ERROR


@numba.njit(cache=True, inline="always")
def _step(v, bits, signed, overflow):
    """Apply the accumulator format to ``v``: (new value, whether ``v`` left the range)."""
    if in_range_int(v, bits, signed, overflow):
        return v, False
    return cast_int(v, bits, signed, overflow), True


@numba.njit(cache=True, parallel=True)
def dense_ordered(xp, w, bias, sh, sw, cast_each, bits, signed, overflow, out, counts, err_at, err_val):
    """``out[n, k]`` from the zero-padded input ``xp`` (N, C, Hp, Wp), one (n, k) per job."""
    N, K, Ho, Wo = out.shape
    _, Cg, kh, kw = w.shape
    Kg = K // (xp.shape[1] // Cg)
    for job in prange(N * K):
        n = job // K
        k = job % K
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
                            v, left = _step(arow[ox] + wv * row[ox * sw + kx], bits, signed, overflow)
                            if left:
                                count += 1
                                pos = oy * Wo + ox
                                if first < 0 or pos < first:
                                    first = pos
                                    first_val = arow[ox] + wv * row[ox * sw + kx]
                            arow[ox] = v
        counts[job] = count
        err_at[job] = -1 if first < 0 else job * Ho * Wo + first
        err_val[job] = first_val


@numba.njit(cache=True, parallel=True)
def event_ordered(x, wt, bias, sh, sw, ph, pw, cast_each, bits, signed, overflow, work, out, counts, err_at, err_val):
    """``out`` by scattering the nonzero ``x`` (N, C, H, W), one (n, group) per job.

    ``wt`` is (G, Cg, kh, kw, Kg) (output channel last, contiguous); ``work`` is an
    (N*G, Ho, Wo, Kg) accumulator buffer whose dtype (int32 or int64) the wrapper picks.
    """
    N, C, H, W = x.shape
    G, Cg, kh, kw, Kg = wt.shape
    _, Ho, Wo, _ = work.shape
    track = cast_each and overflow == _ERROR
    for job in prange(N * G):
        n = job // G
        g = job % G
        acc = work[job]
        for oy in range(Ho):
            for ox in range(Wo):
                for k in range(Kg):
                    acc[oy, ox, k] = bias[g * Kg + k]
        bad = np.zeros((Ho, Wo, Kg) if track else (0, 0, 0), np.bool_)
        bad_val = np.zeros((Ho, Wo, Kg) if track else (0, 0, 0), np.int64)
        count = 0
        for c in range(Cg):
            for iy in range(H):
                for ix in range(W):
                    v = x[n, g * Cg + c, iy, ix]
                    if v == 0:
                        continue
                    for ky in range(kh):
                        ty = iy + ph - ky
                        if ty < 0:
                            break
                        oy = ty // sh
                        if ty % sh != 0 or oy >= Ho:
                            continue
                        for kx in range(kw):
                            tx = ix + pw - kx
                            if tx < 0:
                                break
                            ox = tx // sw
                            if tx % sw != 0 or ox >= Wo:
                                continue
                            wrow = wt[g, c, ky, kx]
                            arow = acc[oy, ox]
                            if not cast_each:
                                for k in range(Kg):
                                    arow[k] += wrow[k] * v
                                continue
                            for k in range(Kg):
                                s = np.int64(arow[k]) + wrow[k] * v
                                new, left = _step(s, bits, signed, overflow)
                                if left:
                                    count += 1
                                    if track and not bad[oy, ox, k]:
                                        bad[oy, ox, k] = True
                                        bad_val[oy, ox, k] = s
                                arow[k] = new
        first = -1
        first_val = np.int64(0)
        for k in range(Kg):
            for oy in range(Ho):
                for ox in range(Wo):
                    out[n, g * Kg + k, oy, ox] = acc[oy, ox, k]
                    if track and first < 0 and bad[oy, ox, k]:
                        first = ((n * G * Kg + g * Kg + k) * Ho + oy) * Wo + ox
                        first_val = bad_val[oy, ox, k]
        counts[job] = count
        err_at[job] = first
        err_val[job] = first_val


_MR = 4  # output pixels per register block
_NR = 4  # output channels per register block


@numba.njit(cache=True, parallel=True)
def dense_int32(xh, wq, bias, sh, sw, kh, kw, out):
    """Exact ``out`` when every sum fits int32.

    ``xh``: zero-padded input, (N, G, Hp, Wp, Cg) int16 (channel last); ``wq``: (G, Kgp,
    Rp) int16, row ``k`` holding ``w[k]`` in (ky, kx, c) order, zero-padded to ``Rp``
    columns and ``Kgp`` (a multiple of 4) rows.  Each job is one output row (n, g, oy):
    its patches are copied into ``cols`` (Wo rounded up to 4, Rp), then multiplied by
    ``wq[g]`` in 4x4 blocks with int32 accumulators.  All arithmetic is modulo 2**32,
    which is exact because the wrapper proved that the sum with its bias fits int32
    (a sub-sum without the bias need not).
    """
    N, G, Hp, Wp, Cg = xh.shape
    _, Kgp, Rp = wq.shape
    _, K, Ho, Wo = out.shape
    Kg = K // G
    L = kw * Cg  # one kernel row of a patch: contiguous in xh
    Wop = (Wo + _MR - 1) // _MR * _MR
    for job in prange(N * G * Ho):
        n = job // (G * Ho)
        g = (job // Ho) % G
        oy = job % Ho
        cols = np.zeros((Wop, Rp), np.int16)
        for ox in range(Wo):
            for ky in range(kh):
                src = xh[n, g, oy * sh + ky].ravel()[ox * sw * Cg : ox * sw * Cg + L]
                cols[ox, ky * L : (ky + 1) * L] = src
        wg = wq[g]
        for p in range(0, Wop, _MR):
            for q in range(0, Kgp, _NR):
                s = _block4x4(cols, wg, p, q, Rp)
                for i in range(_MR):
                    if p + i < Wo:
                        for j in range(_NR):
                            if q + j < Kg:
                                k = g * Kg + q + j
                                out[n, k, oy, p + i] = np.int32(s[i * _NR + j] + bias[k])  # mod 2**32


@numba.njit(cache=True, inline="always")
def _block4x4(a, b, p, q, R):
    """The 16 int32 dot products of rows p..p+3 of ``a`` with rows q..q+3 of ``b``.

    Each partial sum is truncated to int32 at every step (a wrapping int32 register),
    which lets LLVM keep it in int32 lanes and fuse the int16 products into vpdpwssd.
    """
    a0, a1, a2, a3 = a[p], a[p + 1], a[p + 2], a[p + 3]
    b0, b1, b2, b3 = b[q], b[q + 1], b[q + 2], b[q + 3]
    z = np.int32(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    for r in range(R):
        x0, x1, x2, x3 = np.int32(a0[r]), np.int32(a1[r]), np.int32(a2[r]), np.int32(a3[r])
        y0, y1, y2, y3 = np.int32(b0[r]), np.int32(b1[r]), np.int32(b2[r]), np.int32(b3[r])
        s00 = np.int32(s00 + x0 * y0)
        s01 = np.int32(s01 + x0 * y1)
        s02 = np.int32(s02 + x0 * y2)
        s03 = np.int32(s03 + x0 * y3)
        s10 = np.int32(s10 + x1 * y0)
        s11 = np.int32(s11 + x1 * y1)
        s12 = np.int32(s12 + x1 * y2)
        s13 = np.int32(s13 + x1 * y3)
        s20 = np.int32(s20 + x2 * y0)
        s21 = np.int32(s21 + x2 * y1)
        s22 = np.int32(s22 + x2 * y2)
        s23 = np.int32(s23 + x2 * y3)
        s30 = np.int32(s30 + x3 * y0)
        s31 = np.int32(s31 + x3 * y1)
        s32 = np.int32(s32 + x3 * y2)
        s33 = np.int32(s33 + x3 * y3)
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)
