"""Twin of Network.run: the per-block twins composed in the order of refmodel/network.py's
module docstring, from the layers' documented fields only (Python ints, explicit loops).

Every timestep ``t`` the input ``x`` (the analog stimulus every timestep, or the per-step
stimulus of ``t``) flows through the layers in order: a synapse makes the current; a neuron
layer integrates it and spikes; a pool reads the preceding neuron layer's spikes and Vm (the
pooled neuron subtracts from that Vm, after the neuron's own step); flatten is row-major.
Nothing is cached: the first layer's current is recomputed every timestep.

``run(network, stimulus, timesteps)`` returns a ``TwinRun``.  Under Overflow.ERROR the first
offending write raises ``TwinOverflow(layer, index, value)``.
"""

from dataclasses import dataclass

import numpy as np

from tests.oracle import conv, neurons, pooling

ROLES = {
    "conv2d": "synapse", "linear": "synapse", "flatten": "flatten",
    "if": "neuron", "lif": "neuron", "dual_threshold": "neuron", "loihi_lif": "neuron",
    "winner_spike": "pool", "pooled_neuron": "pool", "count_gate": "pool", "or": "pool", "sum": "pool", "avg": "pool",
}  # fmt: skip
_NEURON_CLASSES = {"IF": "if", "LIF": "lif", "DualThreshold": "dual_threshold", "LoihiLIF": "loihi_lif"}


class TwinOverflow(Exception):
    """ERROR mode: the first write of ``layer`` outside its register, at ``index`` with ``value``."""

    def __init__(self, layer, index, value):
        super().__init__(layer, index, value)
        self.layer, self.index, self.value = layer, tuple(index), value


@dataclass
class TwinRun:
    """traces: {(layer, signal): [array per timestep]} of every signal a layer produces.
    overflows: [t][layer index] counted writes.  spike_counts: {layer: outputs summed over T}
    for neuron and pool layers.  outputs: the last layer's "spike_count" and final "v" (neuron)
    or last "current" (synapse)."""

    traces: dict
    overflows: list
    spike_counts: dict
    outputs: dict


def kind(layer) -> str:
    """The layer's kind: the class attribute ``kind`` of synapses and pools, by class for neurons."""
    return getattr(layer, "kind", None) or _NEURON_CLASSES[type(layer).__name__]


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


def _zero_state(layer, shape):
    """A neuron layer's registers at 0: v (u for Loihi, refractory counters when used)."""
    keys = ["v"] + (["u"] if kind(layer) == "loihi_lif" else []) + (["refractory"] if getattr(layer, "refractory", 0) else [])
    return {key: np.zeros(shape, np.int64) for key in keys}


def run(network, stimulus, timesteps) -> TwinRun:
    stimulus = np.asarray(stimulus).astype(np.int64)
    per_step = stimulus.ndim == len(network.input_shape) + 2
    layers = network.layers
    traces, overflows, spike_counts = {}, [], {}
    states = {}  # neuron layers: registers; count_gate pools: {"count": nested lists}

    def record(layer, signal, t, value):
        traces.setdefault((layer.name, signal), []).append(np.array(value, np.int64))

    for t in range(timesteps):
        x = stimulus[t] if per_step else stimulus
        row = []
        neuron, neuron_out = None, None
        for layer in layers:
            role = ROLES[kind(layer)]
            n_over = 0
            if role == "synapse":
                x, n_over = _synapse(layer, x)
                record(layer, "current", t, x)
            elif role == "neuron":
                state = states.setdefault(layer.name, _zero_state(layer, x.shape))
                spikes, v_pre, v_post, new_state, n_over = _neuron(layer, state, x)
                states[layer.name] = new_state
                for signal, value in (("v_pre", v_pre), ("v_post", v_post), ("spikes", spikes)):
                    record(layer, signal, t, value)
                neuron, neuron_out, x = layer, (spikes, v_pre, v_post), spikes
            elif role == "pool":
                if kind(layer) == "count_gate" and layer.name not in states:
                    states[layer.name] = {"count": np.zeros(neuron_out[0].shape, np.int64).tolist()}
                signals, n_over = _pool(layer, states.get(layer.name), *neuron_out, states[neuron.name])
                for signal in ("spikes", "index", "v", "counters"):
                    if signal in signals:
                        record(layer, signal, t, signals[signal])
                x = np.array(signals["spikes"], np.int64)
            else:
                x = np.array([_flatten(sample) for sample in x.tolist()], np.int64)
            row.append(n_over)
            if role in ("neuron", "pool"):
                spike_counts[layer.name] = spike_counts.get(layer.name, 0) + x
        overflows.append(row)
    last = layers[-1]
    outputs = {}
    if last.name in spike_counts:
        outputs["spike_count"] = spike_counts[last.name]
    if ROLES[kind(last)] == "neuron":
        outputs["v"] = states[last.name]["v"]
    if ROLES[kind(last)] == "synapse":
        outputs["current"] = x
    stacked = {key: np.stack(arrays) for key, arrays in traces.items()}
    return TwinRun(stacked, overflows, spike_counts, outputs)
