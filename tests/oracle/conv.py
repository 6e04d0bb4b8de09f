"""Twin of conv2d / linear from docs/arithmetic.md §4: Python ints and explicit loops."""

from tests.oracle.fixed import OracleOverflow, OracleOverflowAt, cast


class ConvOverflow(OracleOverflowAt):
    """ERROR mode: the accumulator of output ``index`` took ``value`` outside its range."""


def conv2d(x, w, bias=None, stride=(1, 1), padding=(0, 0), groups=1, acc=None, overflow="WRAP", acc_apply="each"):
    """x (N, C, H, W), w (K, C/groups, kh, kw) nested sequences of ints; acc: None (exact) or a format with ``bits`` and ``signed``.

    Returns (out as nested lists of Python ints, number of accumulator writes that left the range).
    """
    N, H, W = len(x), len(x[0][0]), len(x[0][0][0])
    K, Cg, kh, kw = len(w), len(w[0]), len(w[0][0]), len(w[0][0][0])
    (sh, sw), (ph, pw) = stride, padding
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    Kg = K // groups
    n_over = 0
    out = [[[[0] * Wo for _ in range(Ho)] for _ in range(K)] for _ in range(N)]
    for n in range(N):
        for k in range(K):
            c_first = (k // Kg) * Cg
            for oy in range(Ho):
                for ox in range(Wo):
                    a = int(bias[k]) if bias is not None else 0
                    for c in range(Cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy = oy * sh + ky - ph
                                ix = ox * sw + kx - pw
                                if not (0 <= iy < H and 0 <= ix < W):
                                    continue  # padding contributes nothing
                                a = a + int(w[k][c][ky][kx]) * int(x[n][c_first + c][iy][ix])
                                if acc is not None and acc_apply == "each":
                                    a, left = _apply(a, acc, overflow, (n, k, oy, ox))
                                    n_over += left
                    if acc is not None and acc_apply == "once":
                        a, left = _apply(a, acc, overflow, (n, k, oy, ox))
                        n_over += left
                    out[n][k][oy][ox] = a
    return out, n_over


def linear(x, w, bias=None, acc=None, overflow="WRAP", acc_apply="each"):
    """x (N, F), w (K, F): a = bias[k], then a = A(a + w[k][f]·x[n][f]) for f = 0 .. F-1
    (the 1×1 case of §4, written out); returns (out[n][k], writes that left the range)."""
    n_over = 0
    out = [[0] * len(w) for _ in x]
    for n in range(len(x)):
        for k in range(len(w)):
            a = int(bias[k]) if bias is not None else 0
            for f in range(len(w[k])):
                a = a + int(w[k][f]) * int(x[n][f])
                if acc is not None and acc_apply == "each":
                    a, left = _apply(a, acc, overflow, (n, k))
                    n_over += left
            if acc is not None and acc_apply == "once":
                a, left = _apply(a, acc, overflow, (n, k))
                n_over += left
            out[n][k] = a
    return out, n_over


def _apply(a, acc, overflow, index):
    """(the accumulator format applied to a, 1 if a was outside the range else 0)."""
    try:
        b = cast(a, acc, overflow)
    except OracleOverflow:
        raise ConvOverflow(index, a) from None
    return b, int(b != a)
