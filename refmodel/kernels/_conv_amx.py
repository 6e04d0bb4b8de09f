"""The dense exact conv kernel on AMX tiles (``tdpbusd``: uint8 × int8 → int32).

Used, like ``_conv_simd.dense_simd``, only for exact sums that the wrapper has proved to fit
int32 (every operation is modulo 2**32), and on the same input layout: ``xh`` (N, G, Hp, Wq, Cp)
uint8, channel last, ``Cp`` a multiple of 4 (int8 inputs are stored as ``x + 128`` and the
wrapper subtracts ``128·Σw[k]`` through the bias).

For one output row (n, g, oy), output pixels in blocks of 16 (a tile's rows) and output
channels in blocks of 16 (a tile's int32 columns):

    C[p, k] += Σ_r A[p, r]·B[r, k]     (tdpbusd: A uint8 16×64, B int8 16×(16·4), C int32 16×16)

where for kernel row ky the reduction index r runs over the ``kw·Cp`` bytes that follow the
first input pixel of output pixel p (the kw taps are consecutive input pixels): A's row p is
read straight from ``xh`` at stride ``sw·Cp`` (no im2col), 64 bytes per step, and B from the
weight table ``wp`` (G, nchunk, kh·Q, 4, 64) int8: ``wp[g, q, ky·Q + i, j, 4m + t]`` =
``w[g·Kg + 64q + 16j + m, r = (ky, 4i + t)]`` with Q = ``kw·Cp/4`` rounded up to a multiple of
16 quads (zero weights: the bytes A reads beyond ``kw·Cp`` count for nothing).  Eight tiles:
C0..C3 hold 2 pixel blocks × 2 channel blocks, A0, A1 the two pixel blocks, B0, B1 the two
channel blocks.  Tiles are written in LLVM IR (a numba intrinsic) with the tile numbers as
immediates; every tile is configured 16 rows × 64 bytes.

With stride 1, ``dense_amx`` can run the same tiles over blocks of 32 pixels of the output
flattened across its rows (see its doc).

Linux lets a process use the tile registers only after asking for them
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``): ``available()`` asks once.
"""

import ctypes
import functools
import platform

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from refmodel.kernels._conv_simd import has_feature

TILE = 16  # rows of a tile: output pixels, reduction quads, output channels
CHUNK = 64  # output channels per block of the weight table
_SYS_ARCH_PRCTL = 158  # x86_64
_ARCH_GET_XCOMP_PERM, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA = 0x1022, 0x1023, 18


@functools.cache
def available() -> bool:
    """Whether the CPU has AMX-INT8 and the OS lets this process use the tiles (asked once)."""
    if not (has_feature("amx-int8") and has_feature("amx-tile")):
        return False
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        return False
    granted = ctypes.c_uint64(0)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_GET_XCOMP_PERM, ctypes.byref(granted)) != 0:
        return False
    return bool(granted.value >> _XFEATURE_XTILEDATA & 1)


def _tile_config():
    """ldtilecfg's 64 bytes: palette 1, tiles 0..7 of 16 rows × 64 bytes."""
    cfg = bytearray(64)
    cfg[0] = 1
    for t in range(8):
        cfg[16 + 2 * t : 18 + 2 * t] = (64).to_bytes(2, "little")
        cfg[48 + t] = TILE
    return bytes(cfg)


@intrinsic
def _row_tiles(typingctx, xaddr, xpix, xrow, kh, nsteps, waddr, wrow, wchunk, npb, nkp, oaddr, orow):
    """out32[p, k] for the 32·npb pixels and 32·nkp channels of one output row (see the module doc).

    xaddr: the first byte of the first pixel of kernel row 0; xpix, xrow: bytes between
    output pixels and between input rows; nsteps: 64-byte steps per kernel row; waddr: the
    group's weight table; wrow: bytes between its quad rows (4·64); wchunk: between its
    64-channel chunks; oaddr, orow: the int32 output buffer and bytes between its pixels.
    """
    i64t = types.int64
    sig = types.void(*([i64t] * 12))

    def codegen(context, builder, signature, args):
        xaddr, xpix, xrow, kh, nsteps, waddr, wrow, wchunk, npb, nkp, oaddr, orow = args
        i8, i64 = ir.IntType(8), ir.IntType(64)
        mod = builder.module
        ptr = i8.as_pointer()

        def fn(name, *argtys):
            return cgutils.get_or_insert_function(mod, ir.FunctionType(ir.VoidType(), list(argtys)), name)

        ldtilecfg, release = fn("llvm.x86.ldtilecfg", ptr), fn("llvm.x86.tilerelease")
        tilezero = fn("llvm.x86.tilezero", i8)
        load, store = fn("llvm.x86.tileloadd64", i8, ptr, i64), fn("llvm.x86.tilestored64", i8, ptr, i64)
        dpbusd = fn("llvm.x86.tdpbusd", i8, i8, i8)
        cfg = cgutils.alloca_once_value(builder, ir.Constant(ir.ArrayType(i8, 64), bytearray(_tile_config())))
        builder.call(ldtilecfg, [builder.bitcast(cfg, ptr)])

        def at(addr):
            return builder.inttoptr(addr, ptr)

        A, B = (4, 5), (6, 7)  # C tile of (pixel block a, channel block b): 2a + b
        with cgutils.for_range(builder, npb) as pb:
            x0 = builder.add(xaddr, builder.mul(builder.mul(pb.index, i64(2 * TILE)), xpix))
            with cgutils.for_range(builder, nkp) as kp:
                j0 = builder.mul(kp.index, i64(2))  # first 16-channel block of the pair
                w0 = builder.add(waddr, builder.add(builder.mul(builder.udiv(j0, i64(4)), wchunk),
                                                    builder.mul(builder.urem(j0, i64(4)), i64(64))))
                for c in range(4):
                    builder.call(tilezero, [i8(c)])
                with cgutils.for_range(builder, kh) as ky:
                    xk = builder.add(x0, builder.mul(ky.index, xrow))
                    wk = builder.add(w0, builder.mul(builder.mul(ky.index, builder.mul(nsteps, i64(TILE))), wrow))
                    with cgutils.for_range(builder, nsteps) as step:
                        xs = builder.add(xk, builder.mul(step.index, i64(64)))
                        ws = builder.add(wk, builder.mul(step.index, builder.mul(i64(TILE), wrow)))
                        for a in range(2):
                            builder.call(load, [i8(A[a]), at(builder.add(xs, builder.mul(i64(a * TILE), xpix))), xpix])
                        for b in range(2):
                            builder.call(load, [i8(B[b]), at(builder.add(ws, i64(64 * b))), wrow])
                        for a in range(2):
                            for b in range(2):
                                builder.call(dpbusd, [i8(2 * a + b), i8(A[a]), i8(B[b])])
                o0 = builder.add(oaddr, builder.add(builder.mul(builder.mul(pb.index, i64(2 * TILE)), orow),
                                                    builder.mul(j0, i64(4 * TILE))))
                for a in range(2):
                    for b in range(2):
                        o = builder.add(o0, builder.add(builder.mul(i64(a * TILE), orow), i64(4 * TILE * b)))
                        builder.call(store, [i8(2 * a + b), at(o), orow])
        builder.call(release, [])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, parallel=True)
def dense_amx(xh, wp, bias, sh, sw, kh, flat, out):
    """Exact ``out`` (N, K, Ho, Wo) int64 = (Σ w·x + bias) mod 2**32, sign-extended.

    Row by row (``flat`` False): one job per output row, its pixels in pairs of 16-pixel blocks.
    ``flat`` (stride 1, ``xh`` of width Wq = W + 2·pw): the output rows flattened, virtual pixel
    ``m = oy·Wq + ox`` reading its kernel rows at ``xh[n, g] + (m + ky·Wq)·Cp``, one stride for
    the whole image, so jobs of 2·TILE virtual pixels run across output rows (the Wq − Wo virtual
    pixels at the end of each row are computed and dropped) and small images keep the tiles
    busy: 8×8 with padding 1 fills 64 of 96 pixel slots instead of 64 of 256.  The caller leaves
    room after ``xh`` for the reads of the last block.
    """
    N, G, _, Wq, Cp = xh.shape
    _, nchunk, R4, NBv, _ = wp.shape
    _, K, Ho, Wo = out.shape
    Kg = K // G
    nsteps = R4 // kh // TILE
    nkp = (Kg + 2 * TILE - 1) // (2 * TILE)  # pairs of 16-channel blocks
    wrow = NBv * 64
    # virtual pixels: m = oy·pitch + ox; a job computes ``run`` of them from m0 = job·run
    pitch = Wq if flat else (Wo + 2 * TILE - 1) // (2 * TILE) * 2 * TILE
    run = 2 * TILE if flat else pitch
    njob = (Ho * pitch + run - 1) // run
    for job in prange(N * G * njob):
        n = job // (G * njob)
        g = (job // njob) % G
        m0 = job % njob * run
        xaddr = xh[n, g].ctypes.data + m0 * Cp if flat else xh[n, g, m0 // pitch * sh].ctypes.data
        out32 = np.empty((run, nkp * 2 * TILE), np.int32)  # the job's pixels
        orow = out32.shape[1] * 4
        _row_tiles(xaddr, sw * Cp, Wq * Cp, kh, nsteps, wp[g].ctypes.data, wrow, R4 * wrow, run // (2 * TILE),
                   nkp, out32.ctypes.data, orow)
        for oy in range(m0 // pitch, min(Ho, (m0 + run - 1) // pitch + 1)):
            first = oy * pitch - m0  # out32's row of (oy, 0)
            lo, hi = max(0, -first), min(Wo, run - first)
            for k in range(Kg):  # out[n, k, oy, :] is contiguous: write channel by channel
                dst, src, b = out[n, g * Kg + k, oy], out32[first + lo : first + hi, k], bias[g * Kg + k]
                for i in range(hi - lo):
                    dst[lo + i] = np.int32(src[i] + b)  # mod 2**32
