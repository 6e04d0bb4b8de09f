"""Pure-Python twin of the pooling blocks, written from docs/pooling.md alone.

Arrays are nested lists of Python ints indexed ``[n][c][y][x]`` (``ndarray.tolist()``).
Windows, positions and ties as in the doc: ``Ho = (H - kh) // sh + 1``, position
``p = ky*kw + kx``, argmax = first position holding the maximum.  A value outside its format
under ERROR raises ``OracleOverflowAt`` naming the first such element in row-major order.
"""

from tests.oracle.fixed import OracleOverflow, OracleOverflowAt, cast, mode_name, shift_right


def _cast(x, fmt, overflow):
    """(value, changed): x cast into ``fmt``; under ERROR an unfitting x is kept, changed."""
    try:
        y = cast(x, fmt, overflow)
    except OracleOverflow:
        return x, True
    return y, y != x


def _windows(shape, kernel, stride):
    """Yield (n, c, oy, ox, positions) with positions the window's (y, x) in row-major order."""
    n_, c_, h, w = shape
    (kh, kw), (sh, sw) = kernel, stride
    for n in range(n_):
        for c in range(c_):
            for oy in range((h - kh) // sh + 1):
                for ox in range((w - kw) // sw + 1):
                    yield n, c, oy, ox, [(oy * sh + ky, ox * sw + kx) for ky in range(kh) for kx in range(kw)]


def _shape(a):
    return (len(a), len(a[0]), len(a[0][0]), len(a[0][0][0]))


def _output(shape, kernel, stride):
    n_, c_, h, w = shape
    ho = (h - kernel[0]) // stride[0] + 1
    wo = (w - kernel[1]) // stride[1] + 1
    return [[[[None] * wo for _ in range(ho)] for _ in range(c_)] for _ in range(n_)]


def _first_argmax(values):
    best = 0
    for p, value in enumerate(values):
        if value > values[best]:
            best = p
    return best


def winner_spike(spikes, vm, kernel, stride):
    """out = s[p*], p* = first argmax of vm over the window.  Returns (out, index).

    vm may have half the channels of spikes (after a dual-threshold layer): spike channel c is
    ranked by vm channel c mod C."""
    out, index = _output(_shape(spikes), kernel, stride), _output(_shape(spikes), kernel, stride)
    vm_channels = len(vm[0])
    for n, c, oy, ox, pos in _windows(_shape(spikes), kernel, stride):
        p = _first_argmax([vm[n][c % vm_channels][y][x] for y, x in pos])
        y, x = pos[p]
        out[n][c][oy][ox] = spikes[n][c][y][x]
        index[n][c][oy][ox] = p
    return out, index


def count_gate(spikes, counts, count_bits, kernel, stride):
    """Counters += spikes (saturating at 2**bits - 1, in place), then winner by counts.
    Returns (out, index, lost increments)."""
    top = 2**count_bits - 1
    lost = 0
    for n, plane_n in enumerate(spikes):
        for c, plane in enumerate(plane_n):
            for y, row in enumerate(plane):
                for x, s in enumerate(row):
                    if s == 1:
                        if counts[n][c][y][x] == top:
                            lost += 1
                        else:
                            counts[n][c][y][x] += 1
    out, index = winner_spike(spikes, counts, kernel, stride)
    return out, index, lost


def pooled_neuron(v, threshold, compare, fmt, overflow, kernel, stride):
    """m = max window v; fire = m >= θ (or > θ); on fire v = cast(v - θ) over the window, in place.
    Returns (out, vmax, index, events)."""
    shape = _shape(v)
    out, vmax, index = (_output(shape, kernel, stride) for _ in range(3))
    events = 0
    bad = []
    for n, c, oy, ox, pos in _windows(shape, kernel, stride):
        values = [v[n][c][y][x] for y, x in pos]
        p = _first_argmax(values)
        m = values[p]
        fire = m > threshold if compare == ">" else m >= threshold
        out[n][c][oy][ox] = int(fire)
        vmax[n][c][oy][ox] = m
        index[n][c][oy][ox] = p
        if fire:
            for y, x in pos:
                new, changed = _cast(v[n][c][y][x] - threshold, fmt, overflow)
                events += changed
                if changed and mode_name(overflow) == "ERROR":
                    bad.append(((n, c, y, x), new))
                v[n][c][y][x] = new
    if bad:
        raise OracleOverflowAt(*min(bad))
    return out, vmax, index, events


def or_pool(spikes, kernel, stride):
    out = _output(_shape(spikes), kernel, stride)
    for n, c, oy, ox, pos in _windows(_shape(spikes), kernel, stride):
        out[n][c][oy][ox] = 1 if any(spikes[n][c][y][x] == 1 for y, x in pos) else 0
    return out


def avg_pool(spikes, kernel, stride, fmt, rounding, overflow):
    """out = cast(shift_right(Σ s, log2(kh*kw) - fmt.frac, rounding)).  Returns (out, events)."""
    area = kernel[0] * kernel[1]
    log2_area = 0
    while 2**log2_area < area:
        log2_area += 1
    assert 2**log2_area == area, "window area must be a power of two"
    return _scaled_sum(spikes, kernel, stride, log2_area - fmt.frac, rounding, fmt, overflow)


def sum_pool(spikes, kernel, stride, fmt, overflow):
    """out = cast(Σ s).  Returns (out, events)."""
    return _scaled_sum(spikes, kernel, stride, 0, "TRN", fmt, overflow)


def _scaled_sum(spikes, kernel, stride, shift, rounding, fmt, overflow):
    out = _output(_shape(spikes), kernel, stride)
    events = 0
    bad = []
    for n, c, oy, ox, pos in _windows(_shape(spikes), kernel, stride):
        total = sum(spikes[n][c][y][x] for y, x in pos)
        new, changed = _cast(shift_right(total, shift, rounding), fmt, overflow)
        events += changed
        if changed and mode_name(overflow) == "ERROR":
            bad.append(((n, c, oy, ox), new))
        out[n][c][oy][ox] = new
    if bad:
        raise OracleOverflowAt(*min(bad))
    return out, events
