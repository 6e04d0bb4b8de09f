"""Twin of Network.run: the per-block twins composed as docs/spec.md ("Graphs", "One timestep")
and docs/arithmetic.md §6 (merges) say, from the layers' documented fields only (Python ints,
explicit loops).

Layers run in the order listed.  A layer reads the outputs (of this timestep) of the layers its
``inputs`` names ("input": the network input), by default the previous layer's (the network
input for the first).  Every timestep the network input is the analog stimulus, or the per-step
stimulus of ``t``: a synapse makes the current; a neuron layer integrates it and spikes; a pool
reads its neuron layer's spikes and Vm (the pooled neuron subtracts from that Vm, after the
neuron's own step); flatten is row-major; add sums its inputs in order and casts the sum once;
concat joins them on the channel axis.  Nothing is cached: currents are recomputed every timestep.

``run(network, stimulus, timesteps)`` returns a ``TwinRun``.  Under Overflow.ERROR the first
offending write raises ``TwinOverflow(layer, index, value)``.  Besides the signals it keeps what
the coverage twin (tests/oracle/coverage.py) replays from: each layer's inputs and each neuron
layer's registers before each timestep.
"""

from dataclasses import dataclass, field

import numpy as np

from tests.oracle import conv, neurons, pooling
from tests.oracle.fixed import OracleOverflow, cast


class TwinOverflow(Exception):
    """ERROR mode: the first write of ``layer`` outside its register, at ``index`` with ``value``."""

    def __init__(self, layer, index, value):
        super().__init__(layer, index, value)
        self.layer, self.index, self.value = layer, tuple(index), value


@dataclass
class TwinRun:
    """traces: {(layer, signal): [array per timestep]} of every signal a layer produces.
    overflows: [t][layer index] counted writes.  spike_counts: {layer: outputs summed over T}
    for every layer whose outputs are events, but reshapes.  outputs: the last layer's "spike_count" and final "v" (neuron)
    or last "current" (synapse).  inputs: {layer: [per timestep: tuple of its inputs' arrays, in
    ``inputs`` order]}.  states: {neuron layer: [per timestep: {register: array} before the step]}."""

    traces: dict
    overflows: list
    spike_counts: dict
    outputs: dict
    inputs: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)


def kind(layer) -> str:
    """The layer's kind, as a spec names it."""
    return layer.kind


def _flatten(sample):
    """A nested list in row-major order."""
    if not isinstance(sample, list):
        return [sample]
    return [v for item in sample for v in _flatten(item)]


def _synapse(layer, x):
    weight = layer.weight.tolist()
    bias = None if layer.bias is None else layer.bias.tolist()
    options = dict(acc=layer.acc_format, overflow=layer.overflow, acc_apply=layer.acc_apply)
    try:
        if kind(layer) == "conv2d":
            out, n_over = conv.conv2d(x.tolist(), weight, bias, layer.stride, layer.padding, layer.groups, **options)
        else:
            out, n_over = conv.linear(x.tolist(), weight, bias, **options)
    except conv.ConvOverflow as e:
        raise TwinOverflow(layer.name, e.index, e.value) from None
    return np.array(out, np.int64), n_over


def _neuron(layer, state, current):
    try:
        spikes, v_pre, v_post, new_state, n_over = neurons.step(layer, state, current)
    except neurons.NeuronOverflow as e:
        raise TwinOverflow(layer.name, e.index, e.value) from None
    return spikes, v_pre, v_post, new_state, n_over


def _pool(layer, state, spikes, v_pre, v_post, neuron_state):
    """(signals {name: array}, overflows); may change ``state["count"]`` and ``neuron_state["v"]``."""
    k, stride = layer.kernel, layer.stride
    s = spikes.tolist()
    try:
        if kind(layer) == "winner_spike":
            out, index = pooling.winner_spike(s, (v_pre if layer.vm_stage == "pre" else v_post).tolist(), k, stride)
            return {"spikes": out, "index": index}, 0
        if kind(layer) == "count_gate":
            counts = state["count"]
            out, index, lost = pooling.count_gate(s, counts, layer.count_bits, k, stride)
            return {"spikes": out, "index": index, "counters": counts}, lost
        if kind(layer) == "pooled_neuron":
            v = neuron_state["v"].tolist()
            out, vmax, index, events = pooling.pooled_neuron(
                v, layer.threshold, layer.compare, layer.vm, layer.overflow, k, stride
            )
            neuron_state["v"] = np.array(v, np.int64)
            return {"spikes": out, "index": index, "v": vmax}, events
        if kind(layer) == "or":
            return {"spikes": pooling.or_pool(s, k, stride)}, 0
        if kind(layer) == "sum":
            out, events = pooling.sum_pool(s, k, stride, layer.out_format, layer.overflow)
        else:
            out, events = pooling.avg_pool(s, k, stride, layer.out_format, layer.rounding, layer.overflow)
        return {"spikes": out}, events
    except pooling.OracleOverflowAt as e:
        raise TwinOverflow(layer.name, e.index, e.value) from None


def _add(layer, values):
    """(sum, overflows): the inputs added in order, the exact sum cast once into ``layer.format``."""
    total = sum(np.asarray(v, np.int64).astype(object) for v in values)
    out = np.empty(total.shape, np.int64)
    events = 0
    for index in np.ndindex(total.shape):
        x = int(total[index])
        try:
            y = cast(x, layer.format, layer.overflow)
        except OracleOverflow:
            raise TwinOverflow(layer.name, index, x) from None
        events += y != x
        out[index] = y
    return out, events


def _zero_state(layer, shape):
    """A neuron layer's registers at 0: v (u for Loihi, refractory counters when used)."""
    keys = ["v"] + (["u"] if kind(layer) == "loihi_lif" else []) + (["refractory"] if getattr(layer, "refractory", 0) else [])
    return {key: np.zeros(shape, np.int64) for key in keys}


def _events(layer, sources, events) -> bool:
    """Whether the layer's output is events (spikes or codes counted over the run): a neuron or
    pool layer's, and a reshape's or merge's whose inputs all are (docs/spec.md)."""
    role = layer.role
    return role in ("neuron", "pool") or role in ("shape", "merge") and all(events[s] for s in sources)


def run(network, stimulus, timesteps) -> TwinRun:
    stimulus = np.asarray(stimulus).astype(np.int64)
    per_step = stimulus.ndim == len(network.input_shape) + 2
    layers = network.layers
    fmt = network.input_format
    sources = {layer.name: layer.inputs or ((layers[i - 1].name,) if i else ("input",))
               for i, layer in enumerate(layers)}
    events = {"input": (fmt.bits, fmt.frac, fmt.signed) == (1, 0, False)}
    for layer in layers:
        events[layer.name] = _events(layer, sources[layer.name], events)
    traces, overflows, spike_counts = {}, [], {}
    inputs_seen, states_seen = {}, {}
    states = {}  # neuron layers: registers; count_gate pools: {"count": nested lists}

    def record(layer, signal, t, value):
        traces.setdefault((layer.name, signal), []).append(np.array(value, np.int64))

    for t in range(timesteps):
        outputs = {"input": stimulus[t] if per_step else stimulus}
        neuron_outs = {}  # neuron layer: (spikes, v_pre, v_post) of this timestep
        row = []
        for layer in layers:
            role = layer.role
            inputs = [outputs[name] for name in sources[layer.name]]
            x = inputs[0]
            inputs_seen.setdefault(layer.name, []).append(tuple(np.array(v, np.int64) for v in inputs))
            n_over = 0
            if role == "synapse":
                x, n_over = _synapse(layer, x)
                record(layer, "current", t, x)
            elif role == "neuron":
                state = states.setdefault(layer.name, _zero_state(layer, x.shape))
                states_seen.setdefault(layer.name, []).append({key: np.array(v, np.int64) for key, v in state.items()})
                spikes, v_pre, v_post, new_state, n_over = _neuron(layer, state, x)
                states[layer.name] = new_state
                for signal, value in (("v_pre", v_pre), ("v_post", v_post), ("spikes", spikes)):
                    record(layer, signal, t, value)
                neuron_outs[layer.name], x = (spikes, v_pre, v_post), spikes
            elif role == "pool":
                neuron = sources[layer.name][0]
                if kind(layer) == "count_gate" and layer.name not in states:
                    states[layer.name] = {"count": np.zeros(neuron_outs[neuron][0].shape, np.int64).tolist()}
                signals, n_over = _pool(layer, states.get(layer.name), *neuron_outs[neuron], states[neuron])
                for signal in ("spikes", "index", "v", "counters"):
                    if signal in signals:
                        record(layer, signal, t, signals[signal])
                x = np.array(signals["spikes"], np.int64)
            elif kind(layer) == "flatten":
                x = np.array([_flatten(sample) for sample in x.tolist()], np.int64)
            elif kind(layer) == "add":
                x, n_over = _add(layer, inputs)
                record(layer, "out", t, x)
            else:  # concat: on the channel axis, in the order of ``inputs``
                x = np.array([[channel for sample_input in sample for channel in sample_input]
                              for sample in zip(*(v.tolist() for v in inputs))], np.int64)
                record(layer, "out", t, x)
            outputs[layer.name] = x
            row.append(n_over)
            if events[layer.name] and role != "shape":
                spike_counts[layer.name] = spike_counts.get(layer.name, 0) + x
        overflows.append(row)
    last = layers[-1]
    outputs = {}
    if last.name in spike_counts:
        outputs["spike_count"] = spike_counts[last.name]
    if last.role == "neuron":
        outputs["v"] = states[last.name]["v"]
    if last.role == "synapse":
        outputs["current"] = x
    stacked = {key: np.stack(arrays) for key, arrays in traces.items()}
    return TwinRun(stacked, overflows, spike_counts, outputs, inputs_seen, states_seen)
