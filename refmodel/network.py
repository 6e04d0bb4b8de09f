"""A network: layers in a directed acyclic graph, run bit-exactly over T timesteps.

A layer reads the outputs of the layers its ``inputs`` names (by default the previous layer's,
or the network input for the first layer; ``"input"`` names the network input), always layers
listed before it: the listed order is the order of execution, and no cycle can be written.
Every timestep ``t`` the network input ``x`` (the analog stimulus, the same every timestep, or
the stimulus' spikes of timestep ``t``) is offered, and each layer in turn takes its inputs'
outputs of this timestep and produces its own (``Layer.stepper``):

* a synaptic layer (Conv2d, Linear) turns its input into the current ``I = forward(x)``;
* a neuron layer integrates its input current into its Vm and emits spikes;
* a pooling layer reads its neuron layer's spikes and Vm (and may change that Vm, the
  pooled-neuron variant) and outputs pooled spikes or codes;
* Flatten reshapes row-major; Add sums its inputs into a register, Concat joins them.

A network's output is its last layer's output: its outputs counted over the T timesteps and,
for a neuron layer, its final Vm (a readout layer is a neuron layer with ``reset="none"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from refmodel.checks import integer_in
from refmodel.coverage import Coverage
from refmodel.errors import LayerError, NetworkError
from refmodel.fixed import QFormat
from refmodel.layers import KINDS, NETWORK_INPUT, SPIKE, Layer
from refmodel.layers.base import RunOptions, Site, check_name
from refmodel.limits import MAX_TIMESTEPS, check_memory, elements, memory_limit

__all__ = ["Network", "Result", "SIGNALS", "NetworkError"]

#: Signals each role can record, in recording order (the union over the role's kinds).
SIGNALS = {role: tuple(dict.fromkeys(s for cls in KINDS.values() if cls.role == role for s in cls.signals))
           for role in dict.fromkeys(cls.role for cls in KINDS.values())}
#: Arrays of a layer's input and output size a run holds per sample at once (states, currents,
#: spikes, the Vm before reset, kernel temporaries such as a padded input), int64 each.
_WORKING_ARRAYS = 3


@dataclass
class Frame:
    """What the layers of a run see during a timestep: ``outputs`` (by layer name, and the
    network input under "input"), ``steps`` (each layer's ``Step`` of this timestep) and
    ``states`` (each layer's registers, kept across timesteps)."""

    outputs: dict
    steps: dict
    states: dict


def _sources(layers, i) -> tuple:
    """The names layer ``i`` reads: its ``inputs``, else the previous layer (the network input for the first)."""
    layer = layers[i]
    if layer.inputs is not None:
        return layer.inputs
    return (layers[i - 1].name,) if i else (NETWORK_INPUT,)


@dataclass(frozen=True, eq=False)
class Network:
    """Layers in order of execution, the per-sample input shape and the input's QFormat.

    Checked when built: names unique; each layer reads only layers listed before it (or the
    network input), of roles it accepts, whose shapes and formats it takes; every layer's
    output is read by a later layer, but the last's (errors name the layer, the field and the
    value).  ``sites`` says where each layer stands (``Site``); ``shapes`` (per layer: input and
    output shape per sample) and ``formats`` ({(layer, signal): QFormat} of every recordable
    signal) come from them.
    """

    layers: tuple
    input_shape: tuple
    input_format: QFormat
    name: str = "network"
    sites: dict = field(init=False, repr=False)
    shapes: tuple = field(init=False, repr=False)
    formats: dict = field(init=False, repr=False)

    def __post_init__(self):
        check_name(self.name, NetworkError)
        object.__setattr__(self, "layers", tuple(self.layers))
        shape = self.input_shape
        if not (isinstance(shape, (tuple, list)) and shape and all(integer_in(n, 1) for n in shape)):
            raise NetworkError(self.name, "input_shape", shape, "must be a non-empty sequence of integers >= 1")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        if not self.layers:
            raise NetworkError(self.name, "layers", [], "a network needs at least one layer")
        if not isinstance(self.input_format, QFormat):
            raise NetworkError(self.name, "input_format", self.input_format, "must be a QFormat")
        check_memory(self.name, "input_shape", self.input_shape, {"one input sample": 8 * elements(self.input_shape)})
        names = [getattr(layer, "name", "?") for layer in self.layers]
        spikes_in = (0, 1) if self.input_format == SPIKE else None
        outputs = {NETWORK_INPUT: (None, self.input_shape, self.input_format, spikes_in)}
        built, readers, formats = [], {}, {}
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise LayerError(names[i], "layer", type(layer).__name__, "is not a refmodel layer")
            if layer.name in outputs:
                problem = "names the network input" if layer.name == NETWORK_INPUT else "is used by an earlier layer"
                raise LayerError(layer.name, "name", layer.name, problem)
            sources = _sources(self.layers, i)
            for source in sources:
                self._check_source(layer, source, outputs, names)
            source_layers = tuple(outputs[s][0] for s in sources)
            layer.check_sources(*source_layers)
            in_shapes = tuple(outputs[s][1] for s in sources)
            in_formats = tuple(outputs[s][2] for s in sources)
            in_ranges = tuple(outputs[s][3] for s in sources)
            out = tuple(layer.output_shape(*in_shapes))
            in_shape = in_shapes[0] if len(in_shapes) == 1 else out
            check_memory(layer.name, "output_shape", out, {"one sample of this layer": 8 * _WORKING_ARRAYS * (
                elements(in_shape) + elements(out))}, LayerError)
            formats.update({(layer.name, signal): fmt for signal, fmt in layer.signal_formats(*in_formats).items()})
            out_format = layer.output_format(*in_formats)
            out_range = layer.event_range(*in_ranges)
            outputs[layer.name] = (layer, out, out_format, out_range)
            built.append((layer, sources, source_layers, in_shapes, in_formats, in_ranges, out, out_format, out_range))
            for source in sources:
                readers.setdefault(source, []).append(layer)
        last = self.layers[-1]
        if last.role == "shape":
            raise LayerError(last.name, "position", last.kind, f"a network cannot end with a {last.kind} layer")
        for layer in self.layers[:-1]:
            if layer.name not in readers:
                raise LayerError(layer.name, "position", layer.name,
                                 "is read by no layer and is not the last one (the network's output)")
        sites = {
            layer.name: Site(source_layers, sources, in_shapes, in_formats, in_ranges, out, out_format, out_range,
                             tuple(readers.get(layer.name, ())), layer is last)
            for layer, sources, source_layers, in_shapes, in_formats, in_ranges, out, out_format, out_range in built
        }  # fmt: skip
        object.__setattr__(self, "sites", sites)
        object.__setattr__(self, "shapes", tuple((sites[la.name].input_shape, sites[la.name].output_shape)
                                                 for la in self.layers))
        object.__setattr__(self, "formats", formats)

    @staticmethod
    def _check_source(layer, source, outputs, names) -> None:
        """LayerError unless ``source`` is the network input or an earlier layer of a role ``layer`` accepts."""
        if source not in outputs:
            problem = ("is listed after it: a layer reads only the network input and layers listed before it"
                       if source in names else "names no layer of the network")
            raise LayerError(layer.name, "inputs", source, problem)
        source_layer = outputs[source][0]
        role = NETWORK_INPUT if source_layer is None else source_layer.role
        if role not in layer.accepts:
            if layer.inputs is None:
                raise LayerError(layer.name, "position", layer.role, f"a {layer.role} layer cannot follow {role}")
            raise LayerError(layer.name, "inputs", source, f"a {layer.role} layer cannot read a {role} layer")

    @property
    def output_shape(self) -> tuple:
        return self.shapes[-1][1]

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def signal_shape(self, name: str, signal: str) -> tuple:
        """The per-sample shape of ``signal`` of layer ``name``."""
        site = self.sites[name]
        return site.input_shape if signal in self.layer(name).input_shaped else site.output_shape

    def counted(self) -> list:
        """The layers whose outputs a run adds up over its timesteps (``Result.spike_counts``):
        those with event-like outputs (spikes, pooled codes, merges of them), not reshapes."""
        return [layer.name for layer in self.layers
                if layer.role != "shape" and self.sites[layer.name].output_range is not None]

    def check_run(self, batch: int, timesteps: int, record=None, *, keep_traces: bool = True,
                  stimulus: str | None = None) -> None:
        """ResourceError (naming batch, or timesteps when one sample is already too much, with
        the bytes and the limit) unless a run of ``batch`` samples over ``timesteps`` fits the
        memory limit (``refmodel.limits``): the layers' working arrays, the per-timestep counts,
        the recorded traces when they are kept in memory (``keep_traces``), and the stimulus when
        it is still to be made: ``"analog"`` (its int64 codes) or ``"spikes"`` (also its (T, N, ...)
        uint8 spikes)."""
        traced = sum(elements(self.signal_shape(*pair)) for pair in self.resolve_record(record)) if keep_traces else 0
        per_sample = sum(_WORKING_ARRAYS * (elements(a) + elements(b)) for a, b in self.shapes)
        pixels = elements(self.input_shape)

        def parts(n):
            out = {"layer state and signals": 8 * n * per_sample, "per-timestep counts": 8 * timesteps * len(self.layers)}
            if traced:  # the list of timesteps, then its stacked copy
                out["traces"] = 2 * 8 * timesteps * n * traced
            if stimulus is not None:
                out["stimulus"] = 8 * 2 * n * pixels + (timesteps * n * pixels if stimulus == "spikes" else 0)
            return out

        one_sample_fits = sum(parts(1).values()) <= memory_limit()[0]
        field, value = ("batch", batch) if one_sample_fits else ("timesteps", timesteps)
        check_memory(self.name, field, value, parts(batch))

    def recordable(self) -> list[tuple[str, str]]:
        """Every (layer, signal) this network can record, in layer and signal order."""
        return list(self.formats)

    def resolve_record(self, record) -> list[tuple[str, str]]:
        """``record``: None/"none", "all", or items "layer.signal" / (layer, signal), "layer" (all its
        signals) or "signal" (that signal of every layer)."""
        available = self.recordable()
        if record is None or record == "none":
            return []
        if record == "all":
            return available
        if isinstance(record, str):
            items = [record]
        elif isinstance(record, (list, tuple)):
            items = list(record)
        else:
            raise NetworkError(self.name, "record", record, 'must be None, "none", "all", or a list of items '
                                                            '"layer.signal", "layer" or "signal"')
        chosen = []
        for item in items:
            if not (isinstance(item, str) or isinstance(item, tuple) and len(item) == 2):
                raise NetworkError(self.name, "record", item, 'is not an item "layer.signal", "layer" or "signal"')
            hits = [
                pair for pair in available
                if item in (pair, f"{pair[0]}.{pair[1]}", pair[0], pair[1])
            ]  # fmt: skip
            if not hits:
                names = ", ".join(f"{a}.{b}" for a, b in available)
                raise NetworkError(self.name, "record", item, f"matches no signal; available: {names}")
            chosen += [pair for pair in hits if pair not in chosen]
        return [pair for pair in available if pair in chosen]

    def check_stimulus(self, stimulus, timesteps: int) -> bool:
        """Validate the stimulus; True when it varies per timestep ((T, N, ...) spikes)."""
        arr = np.asarray(stimulus)
        if not integer_in(timesteps, 1, MAX_TIMESTEPS):
            raise NetworkError(self.name, "timesteps", timesteps, f"must be an integer in 1..{MAX_TIMESTEPS}")
        per_step = arr.ndim == len(self.input_shape) + 2
        sample = arr.shape[2:] if per_step else arr.shape[1:]
        if arr.ndim not in (len(self.input_shape) + 1, len(self.input_shape) + 2) or sample != self.input_shape:
            raise NetworkError(
                self.name, "stimulus", arr,
                f"must be (N, {', '.join(map(str, self.input_shape))}) or (T, N, ...) with that sample shape",
            )  # fmt: skip
        if (arr.shape[1] if per_step else arr.shape[0]) == 0:
            raise NetworkError(self.name, "stimulus", arr, "holds no sample: the batch must be >= 1")
        if per_step and arr.shape[0] != timesteps:
            raise NetworkError(self.name, "stimulus", arr, f"has {arr.shape[0]} timesteps, the run asks for {timesteps}")
        if arr.dtype.kind not in "iub":
            raise NetworkError(self.name, "stimulus", arr, f"must be integer codes, got dtype {arr.dtype}")
        self.input_format.check(arr, f"network {self.name!r}: stimulus")
        return per_step

    def _count_dtype(self, name: str, timesteps: int) -> np.dtype:
        """The narrowest dtype that holds the sum of ``timesteps`` outputs of layer ``name``
        (spikes or pool codes): the running spike counts are kept in it (``SpikeCounts``)."""
        fmt = self.sites[name].output_format
        lo, hi = timesteps * min(0, fmt.min_int), timesteps * fmt.max_int
        for dtype in (np.uint8, np.uint16, np.uint32) if lo == 0 else (np.int8, np.int16, np.int32):
            if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
                return np.dtype(dtype)
        return np.dtype(np.int64)

    def run(
        self,
        stimulus,
        timesteps: int,
        record=None,
        sink: Callable[[str, str, int, np.ndarray], None] | None = None,
        progress: Callable[[int], None] | None = None,
        coverage: bool = False,
    ) -> Result:
        """Simulate ``timesteps`` steps over a batch (see the module docstring).

        ``stimulus``: integer codes of ``input_format``, (N, *input_shape) applied every
        timestep, or (T, N, *input_shape) per timestep.  ``record`` chooses traces (see
        ``resolve_record``); with ``sink`` each recorded array is handed to
        ``sink(layer, signal, t, array)`` as it is computed and not kept, so memory stays
        bounded (the array may be layer state that changes later: a sink that keeps it copies
        it).  ``progress(t)`` is called after each timestep.  With ``coverage`` every layer
        counts the hits of its coverage bins (docs/coverage.md), returned as ``Result.coverage``.
        """
        per_step = self.check_stimulus(stimulus, timesteps)
        stimulus = np.asarray(stimulus)
        batch = stimulus.shape[1] if per_step else stimulus.shape[0]
        wanted = self.resolve_record(record)
        self.check_run(batch, timesteps, wanted, keep_traces=sink is None)
        recorded = {layer.name: [s for s in layer.signals if (layer.name, s) in wanted] for layer in self.layers}
        options = RunOptions(constant_input=not per_step, recorded=recorded, coverage=coverage)
        # each output is dropped once its last reader has stepped, so that memory is reused at
        # once (keeping a timestep's arrays alive into the next one made the kernels write to
        # fresh pages: vgg ran 35% slower)
        last_reader = {name: layer.name for layer in self.layers for name in self.sites[layer.name].source_names}
        released = {layer.name: [name for name, reader in last_reader.items()
                                 if reader == layer.name and name != NETWORK_INPUT] for layer in self.layers}
        plan = [(layer.name, layer.stepper(self.sites[layer.name], options), recorded[layer.name],
                 released[layer.name]) for layer in self.layers]
        frame = Frame({}, {}, {layer.name: layer.init_state((batch, *self.sites[layer.name].input_shape))
                               for layer in self.layers})
        counted = set(self.counted())
        traces = {pair: [] for pair in wanted} if sink is None else {}
        overflows = np.zeros((timesteps, len(self.layers)), np.int64)
        spike_counts = {}
        tallies = {layer.name: None for layer in self.layers if layer.coverage_bins} if coverage else {}
        for t in range(timesteps):
            frame.outputs[NETWORK_INPUT] = stimulus[t] if per_step else stimulus
            for i, (name, step, signals, release) in enumerate(plan):
                out = step(frame)
                frame.outputs[name], frame.steps[name] = out.output, out
                for source in release:
                    del frame.outputs[source], frame.steps[source]
                overflows[t, i] = out.overflows
                if name in tallies:
                    tallies[name] = _add_tally(tallies[name], out.coverage)
                for signal in signals:
                    value = out.signals[signal]
                    if sink is not None:
                        sink(name, signal, t, value)
                    else:  # a copy: state arrays (Vm, counters) change in place later
                        traces[(name, signal)].append(np.array(value, copy=True))
                if name in counted:
                    if name not in spike_counts:
                        spike_counts[name] = out.output.astype(self._count_dtype(name, timesteps))
                    else:
                        np.add(spike_counts[name], out.output, out=spike_counts[name], casting="unsafe")
            if progress is not None:
                progress(t)
        spike_counts = SpikeCounts(spike_counts)
        last = self.layers[-1]
        outputs = {"spike_count": spike_counts.get(last.name)}
        outputs |= {name: np.array(frame.steps[last.name].signals[signal], copy=True)
                    for name, signal in last.readout.items()}
        stacked = {pair: np.stack(arrays) for pair, arrays in traces.items()}
        return Result(
            network=self, timesteps=timesteps, batch=batch,
            outputs={k: v for k, v in outputs.items() if v is not None},
            traces=stacked, overflows=overflows, spike_counts=spike_counts,
            coverage=self._coverage({name: tally.hits() for name, tally in tallies.items()}) if coverage else None,
        )  # fmt: skip

    def _coverage(self, hits: dict) -> Coverage:
        """The Coverage of a run's summed hits, with each layer's unreachable bins."""
        layers = {name: self.layer(name) for name in hits}
        ordered = {name: {b: hits[name][b] for b in layer.coverage_bins} for name, layer in layers.items()}
        unreachable = {name: layer.unreachable_bins(self.sites[name]) for name, layer in layers.items()}
        return Coverage.of_run(ordered, {name: layer.kind for name, layer in layers.items()}, unreachable)


class SpikeCounts(Mapping):
    """{layer: (N, ...) int64 outputs summed over the run}: kept in the narrow dtype the run
    added them in and widened to int64 when first read (dtscnn at T = 1 spent ~4 ms of its
    ~90 ms run, one thread, copying 11 M spikes into int64 counts that a caller reading only
    the prediction never uses)."""

    def __init__(self, narrow: dict):
        self._narrow, self._wide = narrow, {}

    def __getitem__(self, name) -> np.ndarray:
        if name not in self._wide:
            self._wide[name] = self._narrow[name].astype(np.int64)
        return self._wide[name]

    def __iter__(self):
        return iter(self._narrow)

    def __len__(self) -> int:
        return len(self._narrow)

    def narrow(self, name) -> np.ndarray:
        """The counts of ``name`` in the dtype the run added them in (not a copy: read only),
        for a reader that takes any integer dtype (the vector writer, the cost measurement)."""
        return self._narrow[name]


def _add_tally(total, step):
    """The run's Tally so far (None before the first step) with one step's Tally added: its
    raw counters summed as the kernels left them (named only once, at the end of the run).
    The run adds them in place into its own copy of the first step's counters: a step's
    counters are never changed (they may be cached and given again), and no step allocates
    (vgg, T = 16: 2.3 ms of a ~250 ms run went to new dicts and arrays of each step's sums)."""
    if total is None:
        return type(step)({key: counts.copy() for key, counts in step.raw.items()}, step.named)
    for key, counts in step.raw.items():
        total.raw[key] += counts
    return total


@dataclass(frozen=True, eq=False)
class Result:
    """What a run computed.

    outputs: the last layer's "spike_count" (spikes summed over T) and "v" (final Vm) or
    "current".  traces: {(layer, signal): (T, N, ...) array} of the recorded signals.
    overflows: (T, n_layers) wrapped/saturated writes per layer and timestep.
    spike_counts: {layer: (N, ...) spikes summed over T, int64} for every spiking layer (a ``SpikeCounts``).
    coverage: the run's Coverage (``run(..., coverage=True)``), else None.
    """

    network: Network
    timesteps: int
    batch: int
    outputs: dict
    traces: dict
    overflows: np.ndarray
    spike_counts: Mapping
    coverage: Coverage | None = None

    def prediction(self) -> np.ndarray:
        """Class per sample: argmax of the final Vm when the output layer has one, else of the
        spike counts (ties to the first index)."""
        scores = self.outputs.get("v", self.outputs.get("spike_count", self.outputs.get("current")))
        return np.argmax(scores.reshape(self.batch, -1), axis=1)

    def spike_rate(self, layer: str) -> float:
        """Mean spikes per neuron per timestep of ``layer``."""
        counts = self.spike_counts[layer]
        return float(counts.sum()) / (counts.size * self.timesteps)
