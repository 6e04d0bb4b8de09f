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
import dataclasses
import io
import json
from dataclasses import dataclass

import numpy as np

from refmodel.checks import integer_in, must_be_integer
from refmodel.errors import LayerError, NetworkError
from refmodel.layers import NETWORK_INPUT, SPIKE
from refmodel.network import Network, Result
from refmodel.spec import network_config
from refmodel.stimulus import build_stimulus

__all__ = [
    "OPS", "TRAFFIC", "MEMORY", "LayerCost", "Cost", "Activity", "estimate", "measure", "measure_spec",
    "measure_vectors",
]  # fmt: skip

#: Operations (counts).  Static: per sample and timestep; measured: over the run.
OPS = ("macs", "synops", "neuron_updates", "threshold_compares", "pool_ops", "leak_ops", "counter_increments",
       "merge_adds")
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
    """Outputs of a run, summed over its timesteps: ``counts[layer]`` (N, *output shape) of
    every layer whose outputs are counted (spikes; ``Σ_t |code|`` for codes that can be
    negative), ``inputs`` (N, *input shape) the network's input spikes (None for an analog
    input).  ``source`` names the run."""

    network: Network
    timesteps: int
    batch: int
    counts: dict
    inputs: np.ndarray | None
    source: str

    def of(self, name: str) -> np.ndarray | None:
        """Σ_t |output| of layer ``name`` (of its source, through a reshape), or of the network
        input ("input"; None when it is analog); LayerError when the run did not keep it."""
        if name == NETWORK_INPUT:
            return self.inputs
        layer = self.network.layer(name)
        if layer.role == "shape":
            return self.of(self.network.sites[name].source_names[0])
        if name not in self.counts:
            raise LayerError(name, "record", f"{name}.{layer.output_signal}",
                             f"is not in {self.source} (the measured cost counts these outputs: record them)")
        return self.counts[name]


def _magnitudes(trace) -> np.ndarray:
    """``Σ_t |value|`` of a (T, N, ...) trace (or of a sequence of per-timestep arrays)."""
    return sum(np.abs(np.asarray(step, np.int64)) for step in trace)


def _input_counts(network: Network, per_step: bool, stimulus: np.ndarray, timesteps: int):
    """The input spikes summed over T, or None for a multi-bit (analog) input."""
    if network.input_format != SPIKE:
        return None
    stimulus = np.asarray(stimulus, np.int64)
    return stimulus.sum(axis=0) if per_step else stimulus * timesteps


def signed_outputs(network: Network) -> list:
    """(layer, output signal) of the counted layers whose codes can be negative: their counts
    are Σ_t |code|, not the run's Σ_t code."""
    return [(name, network.layer(name).output_signal) for name in network.counted()
            if network.sites[name].output_range[0] < 0]


# --------------------------------------------------------------------------- figures
def _cost(network: Network, timesteps: int, batch: int, activity: Activity | None) -> Cost:
    for field, value in (("timesteps", timesteps), ("batch", batch)):
        if not integer_in(value, 1):
            raise NetworkError(network.name, field, value, must_be_integer(1))
    layers = []
    for layer in network.layers:
        site = network.sites[layer.name]
        ops, memory = layer.static_cost(site)
        static = _figures(layer, PER_STEP, ops)
        memory = _figures(layer, MEMORY, memory)
        measured = None
        if activity is not None:
            totals = {key: value * activity.timesteps * activity.batch for key, value in static.items()}
            measured = _figures(layer, PER_STEP, layer.measured_cost(site, totals, activity))
        layers.append(LayerCost(layer.name, layer.kind, static, memory, measured))
    source = None if activity is None else activity.source
    return Cost(network.name, int(timesteps), int(batch), tuple(layers), source)


def _figures(layer, keys, values: dict) -> dict:
    """Every figure of ``keys`` (0 where ``values`` has none) as Python ints."""
    unknown = set(values) - set(keys)
    if unknown:
        raise AssertionError(f"layer {layer.name!r} ({layer.kind}) reports unknown cost figures {sorted(unknown)}")
    return {key: int(values.get(key, 0)) for key in keys}


# --------------------------------------------------------------------------- public entry points
def estimate(network: Network, timesteps: int = 1, batch: int = 1) -> Cost:
    """Static figures of ``network`` (activity-independent bounds), for runs of ``timesteps``."""
    return _cost(network, timesteps, batch, None)


def measure(result: Result, stimulus, magnitudes=None) -> Cost:
    """Static and measured figures of a run: ``result`` of ``network.run(stimulus, ...)``.  The
    codes of a sum/avg pool that can wrap negative (``signed_outputs``) count by their
    magnitudes ``Σ_t |code|``: from ``magnitudes`` ({layer: (N, ...) array}) when the caller
    summed them during the run, else from its recorded trace or, when ``result`` lacks it,
    from a rerun recording it (same stimulus: the same run)."""
    network = result.network
    per_step = network.check_stimulus(stimulus, result.timesteps)
    inputs = _input_counts(network, per_step, stimulus, result.timesteps)
    counts = {name: result.spike_counts.narrow(name) for name in result.spike_counts}  # (not widened to int64)
    wrapping = [(name, signal) for name, signal in signed_outputs(network) if name not in (magnitudes or {})]
    counts.update(magnitudes or {})
    if wrapping:  # Σ_t code != Σ_t |code|: every timestep's codes, recorded or from a rerun (deterministic)
        traces = result.traces
        if any(pair not in traces for pair in wrapping):
            traces = network.run(stimulus, result.timesteps, record=wrapping).traces
        counts.update({name: _magnitudes(traces[(name, signal)]) for name, signal in wrapping})
    activity = Activity(network, result.timesteps, result.batch, counts, inputs, "run")
    return _cost(network, result.timesteps, result.batch, activity)


def measure_spec(spec, timesteps: int | None = None) -> Cost:
    """Run ``spec``'s network on its [stimulus] (``timesteps`` overrides the spec's) and measure."""
    stim = spec.stimulus if timesteps is None else dataclasses.replace(spec.stimulus, timesteps=timesteps)
    spec.network.check_run(stim.batch, stim.timesteps, "spikes",
                           stimulus="analog" if stim.encoding == "analog" else "spikes")
    _, stimulus = build_stimulus(spec, stim)
    return measure(spec.network.run(stimulus, stim.timesteps), stimulus)


def measure_vectors(network: Network, vf, timesteps: int | None = None) -> Cost:
    """Static and measured figures of the run a vector file recorded (an open ``VectorFile``
    written for ``network``), from its recorded spike traces and stimulus."""
    expected = json.loads(json.dumps(network_config(network)))
    if vf.config.get("network") != expected:
        raise NetworkError(network.name, "vector file", vf.path, "was not generated from this network (configs differ)")
    if timesteps is not None and timesteps != vf.timesteps:
        raise NetworkError(network.name, "timesteps", timesteps, f"differs from the vector file's T = {vf.timesteps}")
    counted = set(network.counted())
    counts = {}
    for info in vf.layers:
        signal = network.layer(info.name).output_signal
        if info.name in counted and signal in info.signals:
            counts[info.name] = _magnitudes(vf.trace_steps(info.name, signal))
    if vf.encoding != "analog":
        inputs = _input_counts(network, True, vf.stimulus_spikes(), vf.timesteps)
    else:
        inputs = _input_counts(network, False, vf.stimulus()[0], vf.timesteps)
    activity = Activity(network, vf.timesteps, vf.batch, counts, inputs, vf.path)
    return _cost(network, vf.timesteps, vf.batch, activity)
