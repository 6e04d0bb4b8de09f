"""The fast exact conv kernel: int16 operands, int32 accumulators, AVX-512 ``vpmaddwd``.

Used only for exact sums that the wrapper has proved to fit int32 (docs/arithmetic.md
§4): every operation is modulo 2**32, which gives the exact sum once it is known to fit,
whatever the order and whatever the intermediate wrap-arounds.

Layout (built by ``conv._dense_simd``):

* ``xh`` (N, G, Hp, Wq, Cp) int16: the input, zero-padded, channel last, ``Cp`` = C/groups
  rounded up to even, ``Wq`` >= the padded width plus room for 3 extra output pixels;
* ``wp`` (G, nchunk, R2, 4, 32) int16: for output channels in chunks of 64 (4 vectors of
  16), reduction index r = (ky, kx, c) in pairs ``i = r // 2``; ``wp[g, q, i, j, 2m + t]`` is
  ``w[g·Kg + 64q + 16j + m, r = 2i + t]`` (zero where the channel or r does not exist).

For one output row (n, g, oy), a micro-kernel computes 4 output pixels × up to 64
channels at once: 16 zmm accumulators; per pair of r, it broadcasts the int16 pair of
each pixel, loads 4 weight vectors and issues 16 ``vpmaddwd`` + add (fused into
``vpdpwssd`` with AVX-512 VNNI).  The micro-kernel is written in LLVM IR (a numba
intrinsic) because LLVM's auto-vectorizer does not find this register blocking.
"""

import llvmlite.binding as ll
import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

MR = 4  # output pixels per micro-kernel call
NB_MAX = 4  # 16-channel vectors per micro-kernel call


def _has_avx512bw():
    features = numba.config.CPU_FEATURES
    if features is None:
        if numba.config.CPU_NAME not in (None, "host"):
            return False
        return bool(ll.get_host_cpu_features().get("avx512bw", False))
    return "+avx512bw" in features.split(",")


#: True when the compile target has AVX-512BW (the kernel below needs it).
AVAILABLE = _has_avx512bw()


def _make_microkernel(nb):
    """An intrinsic computing out32[p, 16j + m] (p < 4, j < nb) for one row of outputs."""

    @intrinsic
    def microkernel(typingctx, xaddr, xpix, xrow, kh, npairs, waddr, wpair, oaddr, orow):
        i64t = types.int64
        sig = types.void(i64t, i64t, i64t, i64t, i64t, i64t, i64t, i64t, i64t)

        def codegen(context, builder, signature, args):
            xaddr, xpix, xrow, kh, npairs, waddr, wpair, oaddr, orow = args
            i32, i64 = ir.IntType(32), ir.IntType(64)
            v16i32, v32i16 = ir.VectorType(i32, 16), ir.VectorType(ir.IntType(16), 32)
            pmaddwd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(v16i32, [v32i16, v32i16]), "llvm.x86.avx512.pmaddw.d.512"
            )
            zero = ir.Constant(v16i32, None)
            splat0 = ir.Constant(v16i32, [0] * 16)
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nb)] for _ in range(MR)]

            def load(addr, ty):
                return builder.load(builder.inttoptr(addr, ty.as_pointer()), align=1)

            with cgutils.for_range(builder, kh) as row:
                xbase = builder.add(xaddr, builder.mul(row.index, xrow))
                wbase = builder.add(waddr, builder.mul(builder.mul(row.index, npairs), wpair))
                with cgutils.for_range(builder, npairs) as pair:
                    waddr_i = builder.add(wbase, builder.mul(pair.index, wpair))
                    ws = [load(builder.add(waddr_i, i64(64 * j)), v32i16) for j in range(nb)]
                    for p in range(MR):
                        xoff = builder.add(builder.mul(i64(p), xpix), builder.mul(pair.index, i64(4)))
                        xv = load(builder.add(xbase, xoff), i32)  # the int16 pair (c, c+1) of pixel p
                        xs = builder.shuffle_vector(builder.insert_element(zero, xv, i32(0)), zero, splat0)
                        xs = builder.bitcast(xs, v32i16)
                        for j in range(nb):
                            a = acc[p][j]
                            builder.store(builder.add(builder.load(a), builder.call(pmaddwd, [xs, ws[j]])), a)
            for p in range(MR):
                for j in range(nb):
                    addr = builder.add(oaddr, builder.add(builder.mul(i64(p), orow), i64(64 * j)))
                    builder.store(builder.load(acc[p][j]), builder.inttoptr(addr, v16i32.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return microkernel


_mk1, _mk2, _mk3, _mk4 = (_make_microkernel(nb) for nb in range(1, NB_MAX + 1))


@numba.njit(cache=True, parallel=True)
def dense_simd(xh, wp, bias, sh, sw, kh, kw, out):
    """Exact ``out`` (N, K, Ho, Wo) int64 = (Σ w·x + bias) mod 2**32, sign-extended."""
    N, G, Hp, Wq, Cp = xh.shape
    _, nchunk, R2, _, _ = wp.shape
    _, K, Ho, Wo = out.shape
    Kg = K // G
    nvec = (Kg + 15) // 16
    npairs = kw * Cp // 2  # pairs of r per kernel row
    e = 2  # bytes per int16
    for job in prange(N * G * Ho):
        n = job // (G * Ho)
        g = (job // Ho) % G
        oy = job % Ho
        out32 = np.empty((MR, nchunk * NB_MAX * 16), np.int32)
        row0 = xh[n, g, oy * sh]
        for ox0 in range(0, Wo, MR):
            xaddr = row0.ctypes.data + ox0 * sw * Cp * e
            for q in range(nchunk):
                nb = min(NB_MAX, nvec - q * NB_MAX)
                waddr = wp[g, q].ctypes.data
                oaddr = out32.ctypes.data + q * NB_MAX * 16 * 4
                args = (xaddr, sw * Cp * e, Wq * Cp * e, kh, npairs, waddr, NB_MAX * 64, oaddr, out32.shape[1] * 4)
                if nb == 4:
                    _mk4(*args)
                elif nb == 3:
                    _mk3(*args)
                elif nb == 2:
                    _mk2(*args)
                else:
                    _mk1(*args)
            for k in range(Kg):
                kk = g * Kg + k
                for p in range(min(MR, Wo - ox0)):
                    out[n, kk, oy, ox0 + p] = np.int32(out32[p, k] + bias[kk])  # mod 2**32


def _make_rowsum(nb, ebits):
    """An intrinsic storing at ``oaddr`` the int32 sum of ``m`` rows of ``16·nb`` signed
    ``ebits``-bit integers, the i-th row at address ``addrs[i] + off`` (portable vector IR:
    loads, sign extensions and adds)."""

    @intrinsic
    def rowsum(typingctx, addrs, m, off, oaddr):
        sig = types.void(types.int64, types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            addrs, m, off, oaddr = args
            i64 = ir.IntType(64)
            v16i32, v16e = ir.VectorType(ir.IntType(32), 16), ir.VectorType(ir.IntType(ebits), 16)
            acc = [cgutils.alloca_once_value(builder, ir.Constant(v16i32, None)) for _ in range(nb)]
            table = builder.inttoptr(addrs, i64.as_pointer())
            with cgutils.for_range(builder, m) as loop:
                base = builder.add(builder.load(builder.gep(table, [loop.index])), off)
                for j in range(nb):
                    row = builder.inttoptr(builder.add(base, i64(2 * ebits * j)), v16e.as_pointer())
                    term = builder.load(row, align=1)
                    if ebits < 32:
                        term = builder.sext(term, v16i32)
                    builder.store(builder.add(builder.load(acc[j]), term), acc[j])
            for j in range(nb):
                dst = builder.inttoptr(builder.add(oaddr, i64(64 * j)), v16i32.as_pointer())
                builder.store(builder.load(acc[j]), dst, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return rowsum


_rs8_1, _rs8_2, _rs8_3, _rs8_4 = (_make_rowsum(nb, 8) for nb in range(1, NB_MAX + 1))
_rs32_1, _rs32_2, _rs32_3, _rs32_4 = (_make_rowsum(nb, 32) for nb in range(1, NB_MAX + 1))


@numba.njit(cache=True, inline="always")
def _rowsum(ebytes, nb, addrs, m, off, oaddr):
    """Dispatch to the rowsum intrinsic for int8 (ebytes 1) or int32 rows of nb vectors."""
    if ebytes == 1:
        if nb == 4:
            _rs8_4(addrs, m, off, oaddr)
        elif nb == 3:
            _rs8_3(addrs, m, off, oaddr)
        elif nb == 2:
            _rs8_2(addrs, m, off, oaddr)
        else:
            _rs8_1(addrs, m, off, oaddr)
    elif nb == 4:
        _rs32_4(addrs, m, off, oaddr)
    elif nb == 3:
        _rs32_3(addrs, m, off, oaddr)
    elif nb == 2:
        _rs32_2(addrs, m, off, oaddr)
    else:
        _rs32_1(addrs, m, off, oaddr)


@numba.njit(cache=True, parallel=True)
def event_spikes(x, wt, bias, sh, sw, ph, pw, kh, kw, out):
    """Exact ``out`` from a 0/1 spike map ``x`` (N, C, H, W) uint8 when every sum fits int32:
    ``out[n, k, oy, ox] = (bias[k] + Σ_{ky, kx} Σ_{c: x = 1} w[k, c, ky, kx]) mod 2**32``.

    Gathers instead of scattering: per (n, group) it lists the active channels of every
    input pixel, then for each output pixel sums the weight rows of its active taps in
    registers (any order: the sum is exact).  ``wt`` is (G, kh·kw·Cg, Kgp) int8 (when the
    weights fit: the table then stays in L1) or int32, row ``(ky·kw + kx)·Cg + c`` holding
    ``w[g·Kg + k, c, ky, kx]`` for k < Kg, zero-padded to ``Kgp``, a multiple of 16.
    """
    N, C, H, W = x.shape
    G, _, Kgp = wt.shape
    _, K, Ho, Wo = out.shape
    Kg, Cg = K // G, C // G
    nvec = Kgp // 16
    ebytes = wt.itemsize
    row_bytes = Kgp * ebytes
    for job in prange(N * G):
        n = job // G
        g = job % G
        # active channels of input pixel p = iy*W + ix: chans[start[p] : start[p + 1]]
        start = np.zeros(H * W + 1, np.int64)
        for c in range(Cg):
            for iy in range(H):
                for ix in range(W):
                    if x[n, g * Cg + c, iy, ix] != 0:
                        start[iy * W + ix + 1] += 1
        for p in range(H * W):
            start[p + 1] += start[p]
        chans = np.empty(start[H * W], np.int64)
        fill = start[: H * W].copy()
        for c in range(Cg):
            for iy in range(H):
                for ix in range(W):
                    if x[n, g * Cg + c, iy, ix] != 0:
                        chans[fill[iy * W + ix]] = c
                        fill[iy * W + ix] += 1
        addrs = np.empty(kh * kw * Cg, np.int64)
        row32 = np.empty((Wo, Kgp), np.int32)
        wbase = wt[g].ctypes.data
        for oy in range(Ho):
            for ox in range(Wo):
                m = 0
                for ky in range(kh):
                    iy = oy * sh + ky - ph
                    if iy < 0 or iy >= H:
                        continue
                    for kx in range(kw):
                        ix = ox * sw + kx - pw
                        if ix < 0 or ix >= W:
                            continue
                        tap = wbase + (ky * kw + kx) * Cg * row_bytes
                        for e in range(start[iy * W + ix], start[iy * W + ix + 1]):
                            addrs[m] = tap + chans[e] * row_bytes
                            m += 1
                for q in range(0, nvec, NB_MAX):
                    nb = min(NB_MAX, nvec - q)
                    _rowsum(ebytes, nb, addrs.ctypes.data, m, q * 16 * ebytes, row32[ox].ctypes.data + q * 64)
            for k in range(Kg):
                for ox in range(Wo):
                    out[n, g * Kg + k, oy, ox] = np.int32(row32[ox, k] + bias[g * Kg + k])  # mod 2**32
