"""The fast exact conv kernels, with micro-kernels written in LLVM IR (numba intrinsics).

Used only for exact sums that the wrapper has proved to fit int32 (docs/arithmetic.md
§4): every operation is modulo 2**32, which gives the exact sum once it is known to fit,
whatever the order and whatever the intermediate wrap-arounds.

* ``dense_simd``: int32 accumulators fed by groups of operands that fill one int32 lane,
  in AVX-512BW (``ISA = "avx512"``, 16 int32 lanes) or AVX2 (``"avx2"``, 8 lanes) form,
  specialised on the input's dtype:

  - int16 pairs: ``vpmaddwd`` + add (fused into ``vpdpwssd`` with AVX-512 VNNI);
  - uint8 quads times int8 weights: ``vpdpbusd`` (``VNNI``: AVX-512 VNNI, or AVX-VNNI on
    256-bit vectors), twice the operands per instruction;
* ``event_spikes``: 0/1 spike maps, the weight rows of the spikes summed in registers
  (portable vector IR, see its doc).

Layout for ``dense_simd`` (built by ``conv._dense_simd``), with ``L = LANES``, ``e`` the
operand size in bytes (2 or 1) and a group = the ``4/e`` operands of one int32 lane:

* ``xh`` (N, G, Hp, Wq, Cp) int16 or uint8: the input, zero-padded, channel last, ``Cp`` =
  C/groups rounded up to a whole number of groups, ``Wq`` >= the padded width plus room for
  MR - 1 extra output pixels (uint8 may hold ``x + 128`` for int8 inputs: the wrapper then
  subtracts ``128·Σw[k]`` through the bias);
* ``wp`` (G, nchunk, R4, NB_MAX, 4L/e) int16 or int8: for output channels in chunks of
  NB_MAX·L (NB_MAX vectors of L), reduction index r = (ky, kx, c) in groups ``i = r·e // 4``;
  ``wp[g, q, i, j, (4/e)·m + t]`` is ``w[g·Kg + NB_MAX·L·q + L·j + m, r = (4/e)·i + t]``
  (zero where the channel or r does not exist).

For one output row (n, g, oy), a micro-kernel computes MR = 4 output pixels × up to
NB_MAX·L channels at once (AVX-512: 4 × 64 in 16 zmm accumulators; AVX2: 4 × 16 in 8 ymm,
the largest block that measured fast without spilling the 16 ymm registers): per group of
r, it broadcasts the group of each pixel, loads NB_MAX weight vectors and issues MR·NB_MAX
dot-product instructions.  The micro-kernel is written in LLVM IR (a numba intrinsic)
because LLVM's auto-vectorizer does not find this register blocking.
"""

import functools

import llvmlite.binding as ll
import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

def has_feature(feature):
    """Whether numba's compile target has the CPU ``feature`` (e.g. "avx2")."""
    features = numba.config.CPU_FEATURES
    if features is None:
        if numba.config.CPU_NAME not in (None, "host"):
            return False
        return bool(ll.get_host_cpu_features().get(feature, False))
    return f"+{feature}" in features.split(",")


#: The instruction set ``dense_simd`` is built for: "avx512", "avx2", or None (not available).
ISA = "avx512" if has_feature("avx512bw") else "avx2" if has_feature("avx2") else None
AVAILABLE = ISA is not None
LANES = 16 if ISA == "avx512" else 8  # int32 lanes of one vector register
MR = 4  # output pixels per micro-kernel call
NB_MAX = 4 if ISA == "avx512" else 2  # channel vectors per micro-kernel call
_PMADDWD = "llvm.x86.avx512.pmaddw.d.512" if ISA == "avx512" else "llvm.x86.avx2.pmadd.wd"
#: Whether ``dense_simd`` takes uint8 × int8 operands (``vpdpbusd`` on the ISA's vectors).
VNNI = (ISA == "avx512" and has_feature("avx512vnni")) or (ISA == "avx2" and has_feature("avxvnni"))
_DPBUSD = f"llvm.x86.avx512.vpdpbusd.{32 * LANES}"  # the 256-bit form is AVX-VNNI's (VEX) without AVX-512


@functools.cache
def _dpbusd_operand():
    """The operand type LLVM declares for ``_DPBUSD``: <4·LANES x i8> in recent LLVM, <LANES x i32>
    before (LLVM 14, numba 0.59's), found by verifying a call of each (bytes first)."""
    vi32 = ir.VectorType(ir.IntType(32), LANES)
    for vop in (ir.VectorType(ir.IntType(8), 4 * LANES), vi32):
        module = ir.Module()
        fn = ir.Function(module, ir.FunctionType(vi32, [vi32, vop, vop]), _DPBUSD)
        probe = ir.Function(module, ir.FunctionType(vi32, [vi32, vop, vop]), "probe")
        builder = ir.IRBuilder(probe.append_basic_block())
        builder.ret(builder.call(fn, probe.args))
        try:
            ll.parse_assembly(str(module)).verify()
            return vop
        except RuntimeError:
            continue
    raise RuntimeError(f"LLVM {ll.llvm_version_info} takes neither operand type for {_DPBUSD}")


def _make_microkernel(nb):
    """An intrinsic computing out32[p, LANES·j + m] (p < MR, j < nb) for one row of outputs
    from int16 pairs or uint8 quads (the dtype of its first argument, ``xh``)."""

    @intrinsic
    def microkernel(typingctx, xh, xaddr, xpix, xrow, kh, ngroups, waddr, wgroup, oaddr, orow):
        i64t = types.int64
        sig = types.void(xh, i64t, i64t, i64t, i64t, i64t, i64t, i64t, i64t, i64t)
        quads = xh.dtype.bitwidth == 8

        def codegen(context, builder, signature, args):
            _, xaddr, xpix, xrow, kh, ngroups, waddr, wgroup, oaddr, orow = args
            i32, i64 = ir.IntType(32), ir.IntType(64)
            vi32 = ir.VectorType(i32, LANES)
            vop = ir.VectorType(ir.IntType(8), 4 * LANES) if quads else ir.VectorType(ir.IntType(16), 2 * LANES)
            if quads:  # acc + Σ_t u8(x_t)·s8(w_t) per lane
                vdot = _dpbusd_operand()
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vi32, [vi32, vdot, vdot]), _DPBUSD)
                dot = lambda a, x, w: builder.call(fn, [a, builder.bitcast(x, vdot), builder.bitcast(w, vdot)])  # noqa: E731
            else:  # acc + x_0·w_0 + x_1·w_1 per lane
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vi32, [vop, vop]), _PMADDWD)
                dot = lambda a, x, w: builder.add(a, builder.call(fn, [x, w]))  # noqa: E731
            zero = ir.Constant(vi32, None)
            splat0 = ir.Constant(vi32, [0] * LANES)
            vbytes = 4 * LANES
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nb)] for _ in range(MR)]

            def load(addr, ty):
                return builder.load(builder.inttoptr(addr, ty.as_pointer()), align=1)

            with cgutils.for_range(builder, kh) as row:
                xbase = builder.add(xaddr, builder.mul(row.index, xrow))
                wbase = builder.add(waddr, builder.mul(builder.mul(row.index, ngroups), wgroup))
                with cgutils.for_range(builder, ngroups) as group:
                    waddr_i = builder.add(wbase, builder.mul(group.index, wgroup))
                    ws = [load(builder.add(waddr_i, i64(vbytes * j)), vop) for j in range(nb)]
                    for p in range(MR):
                        xoff = builder.add(builder.mul(i64(p), xpix), builder.mul(group.index, i64(4)))
                        xv = load(builder.add(xbase, xoff), i32)  # the group of pixel p
                        xs = builder.shuffle_vector(builder.insert_element(zero, xv, i32(0)), zero, splat0)
                        xs = builder.bitcast(xs, vop)
                        for j in range(nb):
                            builder.store(dot(builder.load(acc[p][j]), xs, ws[j]), acc[p][j])
            for p in range(MR):
                for j in range(nb):
                    addr = builder.add(oaddr, builder.add(builder.mul(i64(p), orow), i64(vbytes * j)))
                    builder.store(builder.load(acc[p][j]), builder.inttoptr(addr, vi32.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return microkernel


# (with NB_MAX = 2, dense_simd never asks for 3 or 4 vectors: those names repeat _mk2)
_mk1, _mk2, _mk3, _mk4 = (_make_microkernel(min(nb, NB_MAX)) for nb in range(1, 5))


@numba.njit(cache=True, parallel=True)
def channels_last(x, ph, pw, offset, xh):
    """``xh`` (N, G, H + 2·ph, Wq, Cp) = x (N, C, H, W) + offset, padded with ``offset``, channel
    last, for G groups: ``xh[n, g, ph + y, pw + i, c] = x[n, g·(C/G) + c, y, i] + offset``, ``offset``
    elsewhere (the caller has checked that x + offset fits xh's dtype).  Each row goes through
    a (Cp, W) buffer: converted with contiguous reads and writes, then transposed (measured
    0.42 ms instead of 0.67 ms single-thread on the benchmark layer's int8 input)."""
    N, G, Hp = xh.shape[:3]
    for job in prange(N * G * Hp):
        _channels_last_row(job // (G * Hp), (job // Hp) % G, job % Hp, x, ph, pw, offset, xh)


@numba.njit(cache=True)
def _channels_last_row(n, g, yp, x, ph, pw, offset, xh):
    """One job of ``channels_last``: the row ``xh[n, g, yp]``.  (A function of its own, see ``_spikes_job``.)"""
    _, C, H, W = x.shape
    _, G, _, _, Cp = xh.shape
    Cg = C // G
    y = yp - ph
    row = xh[n, g, yp]
    if not 0 <= y < H:
        row[:, :] = offset
        return
    row[:pw, :] = offset
    row[pw + W :, :] = offset
    rowt = np.empty((Cp, W), xh.dtype)
    rowt[Cg:, :] = offset
    for c in range(Cg):
        src, dst = x[n, g * Cg + c, y], rowt[c]
        for i in range(W):
            dst[i] = src[i] + offset
    for i in range(W):
        dst = row[pw + i]
        for c in range(Cp):
            dst[c] = rowt[c, i]


@numba.njit(cache=True, parallel=True)
def dense_simd(xh, wp, bias, sh, sw, kh, kw, out):
    """Exact ``out`` (N, K, Ho, Wo) int64 = (Σ w·x + bias) mod 2**32, sign-extended."""
    N, G, _, Wq, Cp = xh.shape
    _, nchunk, _, _, _ = wp.shape
    _, K, Ho, Wo = out.shape
    Kg = K // G
    nvec = (Kg + LANES - 1) // LANES
    e = xh.itemsize
    ngroups = kw * Cp * e // 4  # groups of r per kernel row
    for job in prange(N * G * Ho):
        n = job // (G * Ho)
        g = (job // Ho) % G
        oy = job % Ho
        out32 = np.empty(((Wo + MR - 1) // MR * MR, nchunk * NB_MAX * LANES), np.int32)  # one output row
        orow = out32.shape[1] * 4
        row0 = xh[n, g, oy * sh]
        for ox0 in range(0, Wo, MR):
            xaddr = row0.ctypes.data + ox0 * sw * Cp * e
            for q in range(nchunk):
                nb = min(NB_MAX, nvec - q * NB_MAX)
                waddr = wp[g, q].ctypes.data
                oaddr = out32.ctypes.data + ox0 * orow + q * NB_MAX * LANES * 4
                args = (xaddr, sw * Cp * e, Wq * Cp * e, kh, ngroups, waddr, NB_MAX * LANES * 4, oaddr, orow)
                if nb == 4:
                    _mk4(xh, *args)
                elif nb == 3:
                    _mk3(xh, *args)
                elif nb == 2:
                    _mk2(xh, *args)
                else:
                    _mk1(xh, *args)
        for k in range(Kg):  # out[n, k, oy, :] is contiguous: write channel by channel
            kk = g * Kg + k
            for ox in range(Wo):
                out[n, kk, oy, ox] = np.int32(out32[ox, k] + bias[kk])  # mod 2**32


_LANES = 3  # masks walked side by side in spikesum


def _make_spikesum(nb):
    """An intrinsic adding to the 16·nb int32 lanes at ``oaddr`` the weight rows of the spikes
    of ``npix`` consecutive input pixels, rows of the dtype of its first argument, ``wt`` (int8
    or int32: only the one in use is generated).

    Spikes are bit masks: bit ``b`` of word ``wd`` (int64 at ``masks + wd·wstride + 8·j``)
    set means channel ``c = 64·wd + b`` of pixel j spiked; its row of signed ``ebits``-bit
    weights (``ebits`` = 8 or 32) is at ``base + j·pix + c·row``.  The (pixel, word) masks are walked 3 at a time,
    one set bit of each per step (count-trailing-zeros; an exhausted mask adds the zero row
    at ``zero``), for max(popcounts) steps: one unpredictable loop end per 3 masks instead of
    one per mask, which is what limits this kernel.  Sums stay in registers (portable IR).
    """

    @intrinsic
    def spikesum(typingctx, wt, masks, wstride, nwords, npix, base, pix, row, zero, oaddr):
        i64t = types.int64
        sig = types.void(wt, i64t, i64t, i64t, i64t, i64t, i64t, i64t, i64t, i64t)
        ebits = wt.dtype.bitwidth

        def codegen(context, builder, signature, args):
            _, masks, wstride, nwords, npix, base, pix, row, zero, oaddr = args
            i64, i1 = ir.IntType(64), ir.IntType(1)
            v16i32, v16e = ir.VectorType(ir.IntType(32), 16), ir.VectorType(ir.IntType(ebits), 16)
            mod = builder.module
            cttz = cgutils.get_or_insert_function(mod, ir.FunctionType(i64, [i64, i1]), "llvm.cttz.i64")
            ctpop = cgutils.get_or_insert_function(mod, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
            umax = cgutils.get_or_insert_function(mod, ir.FunctionType(i64, [i64, i64]), "llvm.umax.i64")
            dst = [builder.inttoptr(builder.add(oaddr, i64(64 * j)), v16i32.as_pointer()) for j in range(nb)]
            acc = [cgutils.alloca_once_value(builder, builder.load(d, align=4)) for d in dst]
            mask = [cgutils.alloca_once(builder, i64) for _ in range(_LANES)]
            rowbase = [cgutils.alloca_once(builder, i64) for _ in range(_LANES)]
            lanes = builder.mul(npix, nwords)
            with cgutils.for_range_slice(builder, i64(0), lanes, i64(_LANES)) as (first, _):
                steps = i64(0)
                for lane in range(_LANES):
                    idx = builder.add(first, i64(lane))
                    j, wd = builder.udiv(idx, nwords), builder.urem(idx, nwords)
                    addr = builder.add(masks, builder.add(builder.mul(wd, wstride), builder.mul(j, i64(8))))
                    addr = builder.select(builder.icmp_unsigned("<", idx, lanes), addr, zero)
                    m = builder.load(builder.inttoptr(addr, i64.as_pointer()))
                    builder.store(m, mask[lane])
                    rb = builder.add(builder.add(base, builder.mul(j, pix)), builder.mul(wd, builder.mul(row, i64(64))))
                    builder.store(rb, rowbase[lane])
                    steps = builder.call(umax, [steps, builder.call(ctpop, [m])])
                with cgutils.for_range(builder, steps):
                    for lane in range(_LANES):
                        m = builder.load(mask[lane])
                        r = builder.add(builder.load(rowbase[lane]), builder.mul(builder.call(cttz, [m, i1(0)]), row))
                        r = builder.select(builder.icmp_unsigned("!=", m, i64(0)), r, zero)
                        builder.store(builder.and_(m, builder.sub(m, i64(1))), mask[lane])  # next set bit
                        for j in range(nb):
                            ptr = builder.inttoptr(builder.add(r, i64(2 * ebits * j)), v16e.as_pointer())
                            term = builder.load(ptr, align=1)
                            if ebits < 32:
                                term = builder.sext(term, v16i32)
                            builder.store(builder.add(builder.load(acc[j]), term), acc[j])
            for j in range(nb):
                builder.store(builder.load(acc[j]), dst[j], align=4)
            return context.get_dummy_value()

        return sig, codegen

    return spikesum


EVENT_NB = 4  # 16-channel vectors per spikesum call
_ss1, _ss2, _ss3, _ss4 = (_make_spikesum(nb) for nb in range(1, EVENT_NB + 1))


@numba.njit(cache=True, inline="always")
def _spikesum(wt, nb, masks, wstride, nwords, npix, base, pix, row, zero, oaddr):
    """Dispatch to the spikesum intrinsic for rows of nb vectors of ``wt``'s dtype."""
    if nb == 4:
        _ss4(wt, masks, wstride, nwords, npix, base, pix, row, zero, oaddr)
    elif nb == 3:
        _ss3(wt, masks, wstride, nwords, npix, base, pix, row, zero, oaddr)
    elif nb == 2:
        _ss2(wt, masks, wstride, nwords, npix, base, pix, row, zero, oaddr)
    else:
        _ss1(wt, masks, wstride, nwords, npix, base, pix, row, zero, oaddr)


@numba.njit(cache=True, parallel=True)
def event_spikes(x, wt, bias, sh, sw, ph, pw, kh, kw, out):
    """Exact ``out`` from a 0/1 spike map ``x`` (N, C, H, W) uint8 when every sum fits int32:
    ``out[n, k, oy, ox] = (bias[k] + Σ_{ky, kx} Σ_{c: x = 1} w[k, c, ky, kx]) mod 2**32``.

    Gathers instead of scattering (any order: the sum is exact).  Per (n, group) the
    spikes become one bit mask per input pixel and 64 channels.  ``wt`` is (G, kh, kw·Cg,
    Kgp): row ``kx·Cg + c`` of kernel row ky holds ``w[g·Kg + k, c, ky, kx]`` (k < Kg,
    zero-padded to Kgp, a multiple of 16; int8 when the weights fit, so that the table
    stays in L1, else int32).  Output pixel (oy, ox) takes, for each kernel row ky, the
    spikes of input pixels ix0 .. ix0 + kw − 1 (ix0 = ox·sw − pw): spike (ix, c) adds the
    row ``(ix − ix0)·Cg + c`` of ``wt[g, ky]``.
    """
    G = wt.shape[0]
    for job in prange(x.shape[0] * G):
        _spikes_job(job // G, job % G, x, wt, bias, sh, sw, ph, pw, kh, kw, out)


@numba.njit(cache=True)
def _spikes_job(n, g, x, wt, bias, sh, sw, ph, pw, kh, kw, out):
    """One job of ``event_spikes``: the outputs of (n, group g).  (A function of its own, not the body
    of the parallel loop: numba's parfor passes cost seconds of compiling on a large loop body.)"""
    _, C, H, W = x.shape
    G, _, _, Kgp = wt.shape
    _, K, Ho, Wo = out.shape
    Kg, Cg = K // G, C // G
    nvec = Kgp // 16
    nwords = (Cg + 63) // 64
    ebytes = wt.itemsize
    row = Kgp * ebytes
    masks = np.zeros((nwords, H * W), np.int64)  # bit c % 64 of masks[c // 64, iy*W + ix]
    for c in range(Cg):
        bit = np.int64(1) << np.int64(c % 64)
        for iy in range(H):
            for ix in range(W):
                masks[c // 64, iy * W + ix] |= bit & -np.int64(x[n, g * Cg + c, iy, ix] != 0)
    acc = np.empty((Wo, Kgp), np.int32)
    zeros = np.zeros(EVENT_NB * 16, np.int32)  # the zero row (and zero mask) of spikesum
    zero = zeros.ctypes.data
    for oy in range(Ho):
        for ox in range(Wo):
            for k in range(Kgp):
                acc[ox, k] = 0
        for ox in range(Wo):
            ix0 = ox * sw - pw
            lo, hi = max(ix0, 0), min(ix0 + kw, W)
            for ky in range(kh):
                iy = oy * sh + ky - ph
                if iy < 0 or iy >= H or lo >= hi:
                    continue
                base = wt.ctypes.data + ((g * kh + ky) * kw + lo - ix0) * Cg * row  # (no view: refcounts)
                mask0 = masks.ctypes.data + (iy * W + lo) * 8
                for q in range(0, nvec, EVENT_NB):
                    dst = acc.ctypes.data + (ox * Kgp + q * 16) * 4
                    nb = min(EVENT_NB, nvec - q)
                    _spikesum(wt, nb, mask0, H * W * 8, nwords, hi - lo, base + q * 16 * ebytes, Cg * row, row, zero, dst)
        for k in range(Kg):
            for ox in range(Wo):
                out[n, g * Kg + k, oy, ox] = np.int32(acc[ox, k] + bias[g * Kg + k])  # mod 2**32
