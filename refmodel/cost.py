"""Cost model: operations, memory and memory traffic per layer (formulas: docs/cost-model.md).

Static figures come from the network description alone: per sample and timestep, an
activity-independent upper bound (every input neuron spikes every timestep).  Measured figures
come from a run: totals over its T timesteps and N samples, with the event-driven counts
(synaptic operations, counter increments, pooled-neuron resets) taken from the actual spikes::

    estimate(network, timesteps)        static only
    measure(result, stimulus)           static + measured from a Network.run
    measure_spec(spec)                  runs the spec's stimulus, then measure()
    measure_vectors(network, vf)        static + measured from a vector file's recorded spikes

All figures are Python integers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

import numpy as np

from refmodel.fixed import Overflow
from refmodel.layers import (
    CountGatePool,
    DualThreshold,
    LayerError,
    Linear,
    LoihiLIF,
    PooledNeuronPool,
    SumPool,
    WinnerSpikePool,
)
from refmodel.network import SPIKE, Network, Result, role_of
from refmodel.spec import kind_of, network_config

__all__ = [
    "OPS", "TRAFFIC", "MEMORY", "CostError", "LayerCost", "Cost", "Activity",
    "fan_out", "estimate", "measure", "measure_spec", "measure_vectors",
]  # fmt: skip

#: Operations (counts).  Static: per sample and timestep; measured: over the run.
OPS = ("macs", "synops", "neuron_updates", "threshold_compares", "pool_ops", "leak_ops", "counter_increments")
#: Memory traffic (bits).  Static: per sample and timestep; measured: over the run.
TRAFFIC = (
    "vm_read_bits", "vm_write_bits", "weight_read_bits", "event_weight_read_bits",
    "counter_read_bits", "counter_write_bits",
)  # fmt: skip
#: Storage per sample (``weights`` and ``neurons`` are counts, the rest bits).
MEMORY = (
    "weights", "weight_bits", "bias_bits", "neurons", "vm_bits", "refractory_bits",
    "spike_buffer_bits", "counter_bits",
)  # fmt: skip
PER_STEP = OPS + TRAFFIC


class CostError(LayerError):
    """The cost cannot be computed: ``layer 'x': field = value problem``, or with
    ``place="network"`` (a figure of the whole run) ``network 'y': ...``."""


@dataclass(frozen=True)
class LayerCost:
    """One layer's figures: ``static`` (PER_STEP, per sample and timestep), ``memory`` (MEMORY,
    per sample) and ``measured`` (PER_STEP, totals over the run; None for a static estimate)."""

    name: str
    kind: str
    static: dict
    memory: dict
    measured: dict | None = None


@dataclass(frozen=True)
class Cost:
    """The figures of every layer of ``network`` for a run of ``timesteps`` over ``batch``
    samples; ``measured_from`` says where the measured figures come from (None: static only)."""

    network: str
    timesteps: int
    batch: int
    layers: tuple
    measured_from: str | None = None

    def layer(self, name: str) -> LayerCost:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def total(self) -> LayerCost:
        """Sum over the layers of every figure."""

        def add(dicts):
            return {key: sum(d[key] for d in dicts) for key in dicts[0]}

        measured = add([la.measured for la in self.layers]) if self.measured_from is not None else None
        return LayerCost("total", "", add([la.static for la in self.layers]),
                         add([la.memory for la in self.layers]), measured)  # fmt: skip

    def sections(self) -> dict:
        """``{section: {layer: {quantity: int}}}`` with sections "static", "memory" and (when
        measured) "measured": what vector files store in their ``cost`` group."""
        names = ("static", "memory") + (() if self.measured_from is None else ("measured",))
        return {section: {la.name: getattr(la, section) for la in self.layers} for section in names}

    def to_dict(self) -> dict:
        def entry(la):
            return {"name": la.name, "kind": la.kind, "static": la.static, "memory": la.memory,
                    "measured": la.measured}

        return {
            "network": self.network, "timesteps": self.timesteps, "batch": self.batch,
            "measured_from": self.measured_from,
            "layers": [entry(la) for la in self.layers], "total": entry(self.total()),
        }  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_csv(self) -> str:
        """One row per (layer, section, quantity), the total last: ``layer,kind,section,quantity,value``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(("layer", "kind", "section", "quantity", "value"))
        for la in (*self.layers, self.total()):
            for section, values in (("static", la.static), ("memory", la.memory), ("measured", la.measured)):
                for key, value in (values or {}).items():
                    writer.writerow((la.name, la.kind, section, key, value))
        return buf.getvalue()

    def to_table(self) -> str:
        """Per-layer tables of the static, memory and measured figures."""
        total = self.total()
        T, N = self.timesteps, self.batch
        source = {None: "static estimate only", "run": "measured from a run"}.get(
            self.measured_from, f"measured from {self.measured_from}")
        parts = [f"cost of network {self.network!r}: T = {T} timesteps, batch N = {N}; {source}"]

        def block(title, section, keys, extra=()):
            rows = [(la.name, la.kind, *(getattr(la, section)[k] for k in keys)) for la in (*self.layers, total)]
            parts.append(f"\n{title}\n" + _render(("layer", "kind", *keys), rows + list(extra)))

        def times(label, factor, keys):  # a row of static totals scaled by ``factor``
            return [(label, "", *(total.static[k] * factor for k in keys))]

        block("operations per sample and timestep (static bound)", "static", OPS,
              times(f"total x T = {T}", T, OPS))
        block("memory per sample (weights, neurons: counts; others: bits)", "memory", MEMORY)
        block("memory traffic per sample and timestep (static bound, bits)", "static", TRAFFIC,
              times(f"total x T = {T}", T, TRAFFIC))
        if self.measured_from is not None:
            for title, keys in (("operations", OPS), ("memory traffic (bits)", TRAFFIC)):
                block(f"{title}, measured over the run (T = {T}, N = {N})", "measured", keys,
                      times("static bound x T x N", T * N, keys))
        return "\n".join(parts)


def _render(header, rows) -> str:
    cells = [header] + [[f"{v:,}" if isinstance(v, int) else v for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    align = [str.ljust, str.ljust] + [str.rjust] * (len(header) - 2)
    return "\n".join("  ".join(a(c, w) for a, c, w in zip(align, row, widths)).rstrip() for row in cells)


# --------------------------------------------------------------------------- activity
@dataclass(frozen=True)
class Activity:
    """Spikes of a run, summed over its timesteps: ``counts[layer]`` (N, *output shape) for
    neuron and pooling layers (for sum/avg pools ``Σ_t |code|``), ``inputs`` (N, *input shape)
    the network's input spikes (None for an analog input).  ``source`` names the run."""

    timesteps: int
    batch: int
    counts: dict
    inputs: np.ndarray | None
    source: str

    def of(self, layer: str) -> np.ndarray:
        if layer not in self.counts:
            raise CostError(layer, "record", f"{layer}.spikes",
                            f"is not in {self.source} (the measured cost counts these spikes: record them)")
        return self.counts[layer]


def _wraps_negative(layer) -> bool:
    """A sum/avg pool whose window sum can wrap to a negative code: a signed ``out_format``
    under WRAP too narrow for a full window (``a >> shift > max_int``)."""
    if not isinstance(layer, SumPool):
        return False
    fmt = layer.out_format
    return layer.overflow == Overflow.WRAP and fmt.signed and layer.area >> layer.shift > fmt.max_int


def _magnitudes(trace) -> np.ndarray:
    """``Σ_t |value|`` of a (T, N, ...) trace (or of a sequence of per-timestep arrays)."""
    return sum(np.abs(np.asarray(step, np.int64)) for step in trace)


def _input_counts(network: Network, per_step: bool, stimulus: np.ndarray, timesteps: int):
    """The input spikes summed over T, or None for a multi-bit (analog) input."""
    if network.input_format != SPIKE:
        return None
    stimulus = np.asarray(stimulus, np.int64)
    return stimulus.sum(axis=0) if per_step else stimulus * timesteps


# --------------------------------------------------------------------------- static figures
def _taps(size: int, out: int, k: int, stride: int, pad: int) -> np.ndarray:
    """For each input position: how many (output position, kernel tap) pairs read it."""
    pos = (np.arange(out)[:, None] * stride + np.arange(k)[None, :] - pad).ravel()
    taps = np.zeros(size, np.int64)
    np.add.at(taps, pos[(pos >= 0) & (pos < size)], 1)
    return taps


def fan_out(layer, input_shape) -> np.ndarray:
    """Synaptic connections leaving each input neuron, shape ``input_shape``: K for Linear;
    ``(K / groups) * ny[y] * nx[x]`` for Conv2d, ``ny[y] = #{(oy, i): oy*sy + i - py = y}``
    (taps that fall on the zero padding connect no input neuron)."""
    if isinstance(layer, Linear):
        return np.full(input_shape, layer.weight.shape[0], np.int64)
    c, h, w = input_shape
    k, _, kh, kw = layer.weight.shape
    _, ho, wo = layer.output_shape(input_shape)
    (sy, sx), (py, px) = layer.stride, layer.padding
    per_channel = _taps(h, ho, kh, sy, py)[:, None] * _taps(w, wo, kw, sx, px)[None, :]
    return np.broadcast_to(per_channel * (k // layer.groups), (c, h, w))


def _source(network: Network, i: int) -> int | None:
    """Index of the layer whose output layer ``i`` reads (through Flatten); None: the network input."""
    j = i - 1
    while j >= 0 and role_of(network.layers[j]) == "flatten":
        j -= 1
    return j if j >= 0 else None


def _max_code(network: Network, source: int | None) -> int | None:
    """The largest |input value| of a synaptic layer reading ``source``: 1 for spikes; for
    sum/avg pools the code of a full window, ``min(a >> shift, max_int)``, or ``-min_int`` when
    a sum can wrap to a negative code; None for an analog (multi-bit) network input."""
    if source is None:
        return 1 if network.input_format == SPIKE else None
    layer = network.layers[source]
    if _wraps_negative(layer):
        return -layer.out_format.min_int
    if isinstance(layer, SumPool):
        return min(layer.area >> layer.shift, layer.out_format.max_int)
    return 1


def _zeros(keys) -> dict:
    return dict.fromkeys(keys, 0)


def _synapse(network, i, shape_in, shape_out):
    layer = network.layers[i]
    static, memory = _zeros(PER_STEP), _zeros(MEMORY)
    w_bits = layer.weight_format.bits
    macs = math.prod(shape_out) * math.prod(layer.weight.shape[1:])
    code = _max_code(network, _source(network, i))
    static["macs"] = macs
    static["synops"] = macs if code is None else code * int(fan_out(layer, shape_in).sum())
    static["weight_read_bits"] = macs * w_bits
    static["event_weight_read_bits"] = static["synops"] * w_bits
    memory["weights"] = layer.weight.size
    memory["weight_bits"] = layer.weight.size * w_bits
    if layer.bias is not None:
        memory["bias_bits"] = layer.bias.size * layer.bias_format.bits
    return static, memory


def _neuron(network, i, shape_in, shape_out):
    layer = network.layers[i]
    static, memory = _zeros(PER_STEP), _zeros(MEMORY)
    n = math.prod(shape_in)
    loihi = isinstance(layer, LoihiLIF)
    state_bits = n * (2 * LoihiLIF.U_FORMAT.bits if loihi else layer.vm.bits)  # Loihi: u and v
    static["neuron_updates"] = n
    static["threshold_compares"] = n * (2 if isinstance(layer, DualThreshold) else 1)
    static["leak_ops"] = 2 * n if loihi else (n if getattr(layer, "leak", "none") != "none" else 0)
    static["vm_read_bits"] = static["vm_write_bits"] = state_bits
    memory["neurons"] = n
    memory["vm_bits"] = state_bits
    memory["refractory_bits"] = n * getattr(layer, "refractory", 0).bit_length()
    return static, memory


def _pool(network, i, shape_in, shape_out):
    layer = network.layers[i]
    static, memory = _zeros(PER_STEP), _zeros(MEMORY)
    c, h, w = shape_in
    windows = math.prod(shape_out)
    compared = windows
    if isinstance(layer, WinnerSpikePool) and isinstance(network.layers[i - 1], DualThreshold):
        compared //= 2  # s1 and s2 channels share the argmax of one Vm channel
    static["pool_ops"] = compared * (layer.area - 1)
    if isinstance(layer, CountGatePool):
        counter_bits = c * h * w * layer.count_bits
        static["counter_increments"] = c * h * w
        static["counter_read_bits"] = static["counter_write_bits"] = memory["counter_bits"] = counter_bits
    if isinstance(layer, PooledNeuronPool):
        static["threshold_compares"] = windows
        static["vm_write_bits"] = windows * layer.area * layer.vm.bits
    return static, memory


def _spike_buffer_bits(network, i, shape_out) -> int:
    """Bits of one timestep's output of a neuron or pool layer; 0 when a pool consumes it in
    place, or for the Vm readout (a last neuron layer with reset "none": its output is its Vm)."""
    layer = network.layers[i]
    if i + 1 < len(network.layers):
        if role_of(network.layers[i + 1]) == "pool":
            return 0
    elif getattr(layer, "reset", None) == "none":
        return 0
    return math.prod(shape_out) * network.formats[(layer.name, "spikes")].bits


_STATIC = {"synapse": _synapse, "neuron": _neuron, "pool": _pool}


def _measured(network, i, static, activity: Activity) -> dict:
    """Static figures x T x N, with the event-driven ones counted from ``activity``."""
    layer = network.layers[i]
    runs = activity.timesteps * activity.batch
    out = {key: value * runs for key, value in static.items()}
    role = role_of(layer)
    if role == "synapse":
        source = _source(network, i)
        if source is None and activity.inputs is None:
            return out  # analog input: dense MACs every timestep
        counts = activity.inputs if source is None else activity.of(network.layers[source].name)
        shape_in = network.shapes[i][0]
        counts = np.asarray(counts, np.int64).reshape((-1, *shape_in)).sum(axis=0)
        out["synops"] = int((counts * fan_out(layer, shape_in)).sum())
        out["event_weight_read_bits"] = out["synops"] * layer.weight_format.bits
    elif isinstance(layer, CountGatePool):
        out["counter_increments"] = int(activity.of(network.layers[i - 1].name).sum())
        out["counter_write_bits"] = out["counter_increments"] * layer.count_bits
    elif isinstance(layer, PooledNeuronPool):
        out["vm_write_bits"] = int(activity.of(layer.name).sum()) * layer.area * layer.vm.bits
    return out


def _cost(network: Network, timesteps: int, batch: int, activity: Activity | None) -> Cost:
    for field, value in (("timesteps", timesteps), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise CostError(network.name, field, value, "must be an integer >= 1", place="network")
    layers = []
    for i, (layer, (shape_in, shape_out)) in enumerate(zip(network.layers, network.shapes)):
        role = role_of(layer)
        if role in _STATIC:
            static, memory = _STATIC[role](network, i, shape_in, shape_out)
        else:
            static, memory = _zeros(PER_STEP), _zeros(MEMORY)
        if role in ("neuron", "pool"):
            memory["spike_buffer_bits"] = _spike_buffer_bits(network, i, shape_out)
        static = {k: int(v) for k, v in static.items()}
        memory = {k: int(v) for k, v in memory.items()}
        measured = None if activity is None else _measured(network, i, static, activity)
        layers.append(LayerCost(layer.name, kind_of(layer), static, memory, measured))
    source = None if activity is None else activity.source
    return Cost(network.name, int(timesteps), int(batch), tuple(layers), source)


# --------------------------------------------------------------------------- public entry points
def estimate(network: Network, timesteps: int = 1, batch: int = 1) -> Cost:
    """Static figures of ``network`` (activity-independent bounds), for runs of ``timesteps``."""
    return _cost(network, timesteps, batch, None)


def measure(result: Result, stimulus) -> Cost:
    """Static and measured figures of a run: ``result`` of ``network.run(stimulus, ...)``.  The
    codes of a sum/avg pool that can wrap negative come from its recorded spikes trace or, when
    ``result`` lacks it, from a rerun recording it (same stimulus: the same run)."""
    network = result.network
    per_step = network.check_stimulus(stimulus, result.timesteps)
    inputs = _input_counts(network, per_step, stimulus, result.timesteps)
    counts = dict(result.spike_counts)
    wrapping = [(layer.name, "spikes") for layer in network.layers if _wraps_negative(layer)]
    if wrapping:  # Σ_t code != Σ_t |code|: every timestep's codes, recorded or from a rerun (deterministic)
        traces = result.traces
        if any(pair not in traces for pair in wrapping):
            traces = network.run(stimulus, result.timesteps, record=wrapping).traces
        counts.update({name: _magnitudes(traces[(name, signal)]) for name, signal in wrapping})
    activity = Activity(result.timesteps, result.batch, counts, inputs, "run")
    return _cost(network, result.timesteps, result.batch, activity)


def measure_spec(spec, timesteps: int | None = None) -> Cost:
    """Run ``spec``'s network on its [stimulus] (``timesteps`` overrides the spec's) and measure."""
    from refmodel.generate import make_stimulus

    stim = spec.stimulus
    timesteps = stim.timesteps if timesteps is None else timesteps
    spec.network.check_run(stim.batch, timesteps, "spikes", stimulus="analog" if stim.encoding == "analog" else "spikes")
    encoder = make_stimulus(spec, stim.batch, stim.seed)
    stimulus = encoder.run(timesteps) if encoder.spiking else encoder.x
    return measure(spec.network.run(stimulus, timesteps), stimulus)


def measure_vectors(network: Network, vf, timesteps: int | None = None) -> Cost:
    """Static and measured figures of the run a vector file recorded (an open ``VectorFile``
    written for ``network``), from its recorded spike traces and stimulus."""
    expected = json.loads(json.dumps(network_config(network)))
    if vf.config.get("network") != expected:
        raise CostError(network.name, "vector file", vf.path, "was not generated from this network (configs differ)",
                        place="network")
    if timesteps is not None and timesteps != vf.timesteps:
        raise CostError(network.name, "timesteps", timesteps, f"differs from the vector file's T = {vf.timesteps}",
                        place="network")
    counts = {}
    for info in vf.layers:
        if "spikes" in info.signals:
            counts[info.name] = _magnitudes(vf.steps(vf.trace_info(info.name, "spikes").path))
    if vf.encoding != "analog":
        inputs = _input_counts(network, True, vf.stimulus_spikes(), vf.timesteps)
    else:
        inputs = _input_counts(network, False, vf.stimulus()[0], vf.timesteps)
    activity = Activity(vf.timesteps, vf.batch, counts, inputs, vf.path)
    return _cost(network, vf.timesteps, vf.batch, activity)
