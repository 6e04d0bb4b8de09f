"""Twin of the coverage counting, written from docs/coverage.md alone: every bin of every layer
counted again, one neuron / window / accumulator write at a time with Python ints, by replaying
the network twin's run (tests/oracle/network.py) with the twin's own arithmetic
(tests/oracle/fixed.py's cast and shift_right, tests/oracle/neurons.leak).

``count(network, twin_run)`` returns {layer: {bin: [hits per channel]}} for every layer whose
kind has bins (docs/coverage.md §2-5; concat and flatten have none).  What each replay needs:

* synapses: the layer's input of each timestep (the source's output, or the stimulus), whose
  accumulation is replayed in the contract order c, ky, kx (docs/arithmetic.md §4);
* neurons: the registers before each timestep and the input current, replayed through the
  order of operations of docs/neurons.md §2 (§5 for Loihi);
* pools: the neuron layer's spikes, v_pre, v_post and the pool's recorded counters / spikes;
* add: its inputs of each timestep.

Each replay checks itself against the twin's traces (the currents, v_pre and v_post, the
winners and the pooled neuron's spikes it recomputes), so a count is never taken from a replay
that went astray.  Unreachability is not computed here.
"""

from fractions import Fraction

from tests.oracle.fixed import cast, code_range, mode_name, shift_right
from tests.oracle.neurons import channel_value, leak
from tests.oracle.pooling import _windows

#: The bins of each kind, in the order of docs/coverage.md's tables.
WRITE = ("wrap_high", "wrap_low", "sat_high", "sat_low")
_SYNAPSE = tuple(f"acc_{b}" for b in WRITE) + ("acc_near_high", "acc_near_low", "zero_input")
_IF = tuple(f"v_{b}" for b in WRITE) + ("v_at_threshold", "v_min_clamped", "reset_to_value", "refractory_start",
                                         "refractory_end")
BINS = {
    "conv2d": _SYNAPSE,
    "linear": _SYNAPSE,
    "if": _IF,
    "lif": _IF + ("leak_tie", "leak_to_zero"),
    "dual_threshold": tuple(f"v_{b}" for b in WRITE) + (
        "v_at_theta1", "v_at_theta2", "v_min_clamped", "reset_to_value", "refractory_start", "refractory_end",
        "leak_tie", "leak_to_zero", "s1_only", "s2_only", "both", "neither_positive"),
    "loihi_lif": ("u_wrap_high", "u_wrap_low", "v_sat_high", "v_sat_low", "v_at_threshold", "leak_to_zero"),
    "winner_spike": ("window_tie", "window_silent", "winner_changed"),
    "count_gate": ("window_tie", "window_silent", "winner_changed", "counter_at_max"),
    "pooled_neuron": ("window_tie", "winner_changed", "subtract_negative", "v_wrap_low", "v_sat_low"),
    "or": ("window_silent", "window_multiple"),
    "sum": ("window_silent", "window_full", "out_wrap_high", "out_sat_high", "round_tie"),
    "avg": ("window_silent", "window_full", "out_wrap_high", "out_sat_high", "round_tie"),
    "add": tuple(f"out_{b}" for b in WRITE),
}
NEAREST = ("RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")  # the modes with a tie rule


class ReplayMismatch(AssertionError):
    """The replay of a layer disagrees with the network twin's own trace of it."""


def register_range(fmt, overflow):
    """[lo, hi] a register of ``fmt`` holds under ``overflow`` (SAT_SYM: the most negative
    code of a signed format excluded), docs/arithmetic.md §3."""
    lo, hi = code_range(fmt.bits, fmt.signed)
    if mode_name(overflow) == "SAT_SYM" and fmt.signed:
        lo = -hi
    return lo, hi


def _write(hits, register, overflow, c, x, lo, hi):
    """Count the write of the exact value ``x`` into channel ``c``: beyond the range above or
    below, under the bins of the overflow mode (none under ERROR: that run raises)."""
    mode = mode_name(overflow)
    group = "wrap" if mode == "WRAP" else "sat" if mode in ("SAT", "SAT_SYM") else None
    if group is None:
        return
    if x > hi:
        hits[f"{register}_{group}_high"][c] += 1
    elif x < lo:
        hits[f"{register}_{group}_low"][c] += 1


def is_tie(x, n):
    """The n discarded bits of x are exactly 100...0 (x / 2**n lies halfway between integers)."""
    return n >= 1 and Fraction(x, 2**n) - Fraction(x // 2**n) == Fraction(1, 2)


def _zeros(kind, channels):
    return {name: [0] * (1 if name == "zero_input" else channels) for name in BINS[kind]}


def _check(layer, what, expected, got, where):
    if expected != got:
        raise ReplayMismatch(f"layer {layer.name!r}: replayed {what} {got} differs from the twin's {expected} "
                             f"at {where}")


# --------------------------------------------------------------------------- synapses
def _synapse(layer, xs, currents):
    """acc bins and zero_input over the timesteps: ``xs`` the input per timestep, ``currents``
    the twin's current per timestep (the replay must end where it did)."""
    w = layer.weight.tolist()
    bias = None if layer.bias is None else layer.bias.tolist()
    hits = _zeros(layer.kind, len(w))
    acc = layer.acc_format
    rng = register_range(acc, layer.overflow) if acc is not None else None

    def write(k, value, term_nonzero):
        """A write of exact ``value``; the near bins count an in-range value of a nonzero term."""
        lo, hi = rng
        _write(hits, "acc", layer.overflow, k, value, lo, hi)
        if term_nonzero and lo <= value <= hi:
            if value >= hi - 1:
                hits["acc_near_high"][k] += 1
            if value <= lo + 1:
                hits["acc_near_low"][k] += 1
        return cast(value, acc, layer.overflow)

    for t, x in enumerate(xs):
        x = x.tolist()
        for n, sample in enumerate(x):
            if all(v == 0 for v in _flat(sample)):
                hits["zero_input"][0] += 1
            for k, index, terms in _terms(layer, w, sample):
                a = int(bias[k]) if bias is not None else 0
                for term in terms:
                    if acc is not None and layer.acc_apply == "each":
                        if term != 0:  # a zero term does not change the register: no write
                            a = write(k, a + term, True)
                    else:
                        a += term
                if acc is not None and layer.acc_apply == "once":
                    a = write(k, a, True)
                got = currents[t][(n, k) + index]
                _check(layer, "current", int(got), a, (t, n, k) + index)
    return hits


def _flat(v):
    return [u for item in v for u in _flat(item)] if isinstance(v, list) else [v]


def _terms(layer, w, sample):
    """Yield (k, output position, [w·x of each tap in the order c, ky, kx]) of one sample,
    the taps in the padding left out."""
    if layer.kind == "linear":
        for k, row in enumerate(w):
            yield k, (), [int(wf) * int(xf) for wf, xf in zip(row, sample)]
        return
    h, wd = len(sample[0]), len(sample[0][0])
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    K, cg, kh, kw = len(w), len(w[0]), len(w[0][0]), len(w[0][0][0])
    kg = K // layer.groups
    for k in range(K):
        first = (k // kg) * cg
        for oy in range((h + 2 * ph - kh) // sh + 1):
            for ox in range((wd + 2 * pw - kw) // sw + 1):
                terms = []
                for c in range(cg):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sh + ky - ph, ox * sw + kx - pw
                            if 0 <= iy < h and 0 <= ix < wd:
                                terms.append(int(w[k][c][ky][kx]) * int(sample[first + c][iy][ix]))
                yield k, (oy, ox), terms


# --------------------------------------------------------------------------- neurons
def _leak_bins(layer, hits, c, v):
    """leak(v), counting leak_tie (the rounding shift discards exactly one half, under a
    round-to-nearest mode) and leak_to_zero (v != 0 leaks to 0)."""
    kind = getattr(layer, "leak", "none")
    if kind == "none":
        return v
    if kind in ("shift", "mul") and mode_name(layer.leak_rounding) in NEAREST:
        shifted = v if kind == "shift" else v * layer.leak_mult
        if is_tie(shifted, layer.leak_shift):
            hits["leak_tie"][c] += 1
    out = leak(v, layer)
    if v != 0 and out == 0:
        hits["leak_to_zero"][c] += 1
    return out


def _neuron(layer, states, currents, v_pres, v_posts):
    """IF / LIF / DT bins over the timesteps, from the registers before each step and its current."""
    dual = layer.kind == "dual_threshold"
    shape = currents[0].shape
    hits = _zeros(layer.kind, shape[1])
    lo, hi = register_range(layer.vm, layer.overflow)
    leak_first = getattr(layer, "order", "leak_first") == "leak_first"
    thetas = (layer.theta1, layer.theta2) if dual else (layer.threshold,)
    for t, (state, current) in enumerate(zip(states, currents)):
        for index in _indices(shape):
            c = index[1]
            v = int(state["v"][index])
            r = int(state["refractory"][index]) if layer.refractory else 0
            if layer.refractory > 0 and r > 0:  # held: only refractory_end counts
                if r == 1:
                    hits["refractory_end"][c] += 1
                _check(layer, "v_post of a held neuron", int(v_posts[t][index]), v, (t,) + index)
                continue
            if leak_first:
                v = _leak_bins(layer, hits, c, v)
            x = v + int(current[index])
            _write(hits, "v", layer.overflow, c, x, lo, hi)
            v = cast(x, layer.vm, layer.overflow)
            if not leak_first:
                v = _leak_bins(layer, hits, c, v)
            if layer.v_min is not None and v < layer.v_min:
                hits["v_min_clamped"][c] += 1
                v = layer.v_min
            _check(layer, "v_pre", int(v_pres[t][index]), v, (t,) + index)
            th = [channel_value(theta, c) for theta in thetas]
            if dual:
                hits["v_at_theta1"][c] += v == th[0]
                hits["v_at_theta2"][c] += v == th[1]
            else:
                hits["v_at_threshold"][c] += v == th[0]
            s = [v >= x if layer.compare == ">=" else v > x for x in th]
            if dual:
                outcome = ("both" if s[0] and s[1] else "s1_only" if s[0] else "s2_only" if s[1]
                           else "neither_positive" if v > 0 else None)
                if outcome:
                    hits[outcome][c] += 1
            if not dual or layer.reset_by == "s1":
                d, theta_d = s[0], th[0]
            elif layer.reset_by == "s2":
                d, theta_d = s[1], th[1]
            else:
                d = s[0] or s[1]
                theta_d = max(x for x, fired in zip(th, s) if fired) if d else None
            if d:
                if layer.reset == "subtract":
                    x = v - theta_d
                    _write(hits, "v", layer.overflow, c, x, lo, hi)
                    v = cast(x, layer.vm, layer.overflow)
                elif layer.reset == "zero":
                    v = 0
                elif layer.reset == "value":
                    hits["reset_to_value"][c] += 1
                    v = layer.reset_value
                if layer.refractory > 0:
                    hits["refractory_start"][c] += 1
            _check(layer, "v_post", int(v_posts[t][index]), v, (t,) + index)
    return hits


def _trunc0(x, n):
    """x / 2**n rounded toward zero."""
    q = abs(x) // 2**n
    return q if x >= 0 else -q


def _loihi(layer, states, currents, v_pres, v_posts):
    """LoihiLIF bins (docs/neurons.md §5): u written beyond its 24 bits, v clamped at ±(2**23 - 1),
    v at vth·2**6, v's decay taking v != 0 to 0."""
    shape = currents[0].shape
    hits = _zeros(layer.kind, shape[1])
    u_lo, u_hi = -(2**23), 2**23 - 1
    v_lim = 2**23 - 1
    for t, (state, current) in enumerate(zip(states, currents)):
        for index in _indices(shape):
            c = index[1]
            u = _trunc0(int(state["u"][index]) * (4096 - (layer.du + 1)), 12) + int(current[index]) * 2**6
            if u > u_hi:
                hits["u_wrap_high"][c] += 1
            elif u < u_lo:
                hits["u_wrap_low"][c] += 1
            u = (u - u_lo) % 2**24 + u_lo
            v_old = int(state["v"][index])
            decayed = _trunc0(v_old * (4096 - layer.dv), 12)
            if v_old != 0 and decayed == 0:
                hits["leak_to_zero"][c] += 1
            v = decayed + u + channel_value(layer.bias_mant, c) * 2 ** channel_value(layer.bias_exp, c)
            if v > v_lim:
                hits["v_sat_high"][c] += 1
            elif v < -v_lim:
                hits["v_sat_low"][c] += 1
            v = min(max(v, -v_lim), v_lim)
            _check(layer, "v_pre", int(v_pres[t][index]), v, (t,) + index)
            theta = channel_value(layer.vth, c) * 2**6
            hits["v_at_threshold"][c] += v == theta
            _check(layer, "v_post", int(v_posts[t][index]), 0 if v > theta else v, (t,) + index)
    return hits


def _indices(shape):
    """Every index of ``shape`` in row-major order."""
    if not shape:
        yield ()
        return
    for i in range(shape[0]):
        for rest in _indices(shape[1:]):
            yield (i,) + rest


# --------------------------------------------------------------------------- pools
def _winner(values):
    """(first position of the maximum, whether the maximum is at two or more positions)."""
    top = max(values)
    return values.index(top), values.count(top) >= 2


def _pool(layer, spikes_t, keys_t, run_traces, vm_for_key):
    """Pool bins over the timesteps.  ``spikes_t``: the pool's input spikes per timestep;
    ``keys_t``: the ranking key per timestep (None for or/sum/avg); ``vm_for_key``: the key has
    the Vm's channels (C), the spikes may have 2C (after a dual-threshold layer)."""
    kind = layer.kind
    shape = spikes_t[0].shape
    hits = _zeros(kind, shape[1])
    area = layer.kernel[0] * layer.kernel[1]
    previous = {}
    for t, spikes in enumerate(spikes_t):
        s = spikes.tolist()
        key = keys_t[t].tolist() if keys_t is not None else None
        for n, c, oy, ox, pos in _windows(shape, layer.kernel, layer.stride):
            ss = [s[n][c][y][x] for y, x in pos]
            total = sum(ss)
            if "window_silent" in hits and total == 0:
                hits["window_silent"][c] += 1
            if kind == "or" and total >= 2:
                hits["window_multiple"][c] += 1
            if kind in ("sum", "avg"):
                _sum_window(layer, hits, c, total, area)
            if key is None:
                continue
            kc = c % len(key[0]) if vm_for_key else c
            values = [key[n][kc][y][x] for y, x in pos]
            p, tie = _winner(values)
            hits["window_tie"][c] += tie
            _check(layer, "winner", int(run_traces["index"][t][n][c][oy][ox]), p, (t, n, c, oy, ox))
            if t >= 1 and previous[(n, c, oy, ox)] != p:
                hits["winner_changed"][c] += 1
            previous[(n, c, oy, ox)] = p
            if kind == "pooled_neuron":
                _subtraction(layer, hits, c, values, run_traces["spikes"][t][n][c][oy][ox], (t, n, c, oy, ox))
        if kind == "count_gate":  # per counter, after this timestep's update
            top = 2**layer.count_bits - 1
            counters = run_traces["counters"][t].tolist()
            for index in _indices(shape):
                value = counters[index[0]][index[1]][index[2]][index[3]]
                hits["counter_at_max"][index[1]] += value == top
    return hits


def _sum_window(layer, hits, c, total, area):
    """window_full, the output code beyond the format above, round_tie of avg's shift."""
    if total == area:
        hits["window_full"][c] += 1
    if layer.kind == "avg":
        shift = (area.bit_length() - 1) - layer.out_format.frac
        rounding = layer.rounding
    else:
        shift, rounding = 0, "TRN"
    code = shift_right(total, shift, rounding)
    lo, hi = register_range(layer.out_format, layer.overflow)
    if code > hi:  # (a sum of spikes is never negative)
        _write(hits, "out", layer.overflow, c, code, lo, hi)
    if mode_name(rounding) in NEAREST and is_tie(total, shift):
        hits["round_tie"][c] += 1


def _subtraction(layer, hits, c, values, traced_spike, where):
    """The pooled neuron: m = max of the window's Vm; fired: every V - θ of the window written."""
    m = max(values)
    fired = m > layer.threshold if layer.compare == ">" else m >= layer.threshold
    _check(layer, "pooled spike", int(traced_spike), int(fired), where)
    if not fired:
        return
    lo, hi = register_range(layer.vm, layer.overflow)
    for v in values:
        x = v - layer.threshold
        if x < 0:
            hits["subtract_negative"][c] += 1
        if x < lo:
            _write(hits, "v", layer.overflow, c, x, lo, hi)


# --------------------------------------------------------------------------- add
def _add(layer, inputs_t):
    shape = inputs_t[0][0].shape
    hits = _zeros(layer.kind, shape[1])
    lo, hi = register_range(layer.format, layer.overflow)
    for inputs in inputs_t:
        for index in _indices(shape):
            x = sum(int(v[index]) for v in inputs)  # exact, in the order of ``inputs``
            _write(hits, "out", layer.overflow, index[1], x, lo, hi)
    return hits


# --------------------------------------------------------------------------- the network
def count(network, twin_run) -> dict:
    """{layer: {bin: [hits per channel]}} of every layer of ``network`` with bins, from the
    network twin's ``twin_run`` (tests.oracle.network.run)."""
    traces = twin_run.traces
    out = {}
    for layer in network.layers:
        kind = layer.kind
        if kind not in BINS:
            continue
        inputs = twin_run.inputs[layer.name]
        first = [x[0] for x in inputs]
        if kind in ("conv2d", "linear"):
            out[layer.name] = _synapse(layer, first, traces[(layer.name, "current")])
        elif layer.role == "neuron":
            replay = _loihi if kind == "loihi_lif" else _neuron
            out[layer.name] = replay(layer, twin_run.states[layer.name], first, traces[(layer.name, "v_pre")],
                                     traces[(layer.name, "v_post")])
        elif layer.role == "pool":
            neuron = (layer.inputs or (network.layers[network.layers.index(layer) - 1].name,))[0]
            mine = {signal: traces[(layer.name, signal)].tolist() for signal in ("index", "spikes")
                    if (layer.name, signal) in traces}
            mine["counters"] = traces.get((layer.name, "counters"))
            keys = {
                "winner_spike": lambda: traces[(neuron, "v_" + layer.vm_stage)],
                "count_gate": lambda: traces[(layer.name, "counters")],
                "pooled_neuron": lambda: traces[(neuron, "v_post")],  # the Vm before the subtraction
            }
            key = keys[kind]() if kind in keys else None
            out[layer.name] = _pool(layer, first, key, mine, kind == "winner_spike")
        else:  # add
            out[layer.name] = _add(layer, inputs)
    return out
