"""A network: an ordered list of layers, run bit-exactly over T timesteps.

Every timestep ``t`` the input ``x`` (the analog stimulus, the same every timestep, or the
stimulus' spikes of timestep ``t``) flows through the layers in order:

* a synaptic layer (Conv2d, Linear) turns ``x`` into the current ``I = forward(x)``;
* a neuron layer integrates ``I`` into its Vm and emits spikes, ``x = spikes``;
* a pooling layer reads the preceding neuron layer's spikes and Vm (and may change that Vm,
  the pooled-neuron variant), ``x = pooled output``;
* Flatten reshapes ``x`` row-major.

A network's output is its last layer's output: the spikes counted over the T timesteps and,
for a neuron layer, its final Vm (a readout layer is a neuron layer with ``reset="none"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from refmodel.fixed import FixedOverflowError, QFormat
from refmodel.layers import (
    MAX_CURRENT,
    NEURONS,
    POOLS,
    SYNAPSES,
    DualThreshold,
    Flatten,
    LayerError,
    LoihiLIF,
    OrPool,
    PooledNeuronPool,
    SumPool,
    WinnerSpikePool,
)
from refmodel.layers.base import SPIKE, check_name
from refmodel.limits import MAX_TIMESTEPS, check_memory, elements, memory_limit

__all__ = ["Network", "Result", "SIGNALS", "NetworkError"]


class NetworkError(LayerError):
    """The layers do not form a valid network, or the stimulus does not fit it: names the
    network ("network 'x': ...") or, for a layer's place or formats, the layer ("layer 'x': ...")."""

    place = "network"


#: Signals each role can record, in recording order.
SIGNALS = {
    "synapse": ("current",),
    "neuron": ("v_pre", "v_post", "spikes"),
    "pool": ("spikes", "index", "v", "counters"),
    "flatten": (),
}
#: Signals of a layer's input shape (a neuron's Vm, a pool's counters); the others have its output shape.
INPUT_SHAPED = ("v_pre", "v_post", "counters")
#: Arrays of a layer's input and output size a run holds per sample at once (states, currents,
#: spikes, the Vm before reset, kernel temporaries such as a padded input), int64 each.
_WORKING_ARRAYS = 3


def role_of(layer) -> str:
    """'synapse', 'neuron', 'pool' or 'flatten'."""
    for role, classes in (("synapse", SYNAPSES), ("neuron", NEURONS), ("pool", POOLS), ("flatten", (Flatten,))):
        if isinstance(layer, classes):
            return role
    raise NetworkError(getattr(layer, "name", "?"), "layer", type(layer).__name__, "is not a refmodel layer",
                       place="layer")


def _exact_current_format(layer, x_format: QFormat) -> QFormat:
    """The narrowest signed format holding every exact current of ``layer`` for inputs of
    ``x_format``: bound_k = |b_k| + sum |W_k| * max(|x_min|, |x_max|), frac = w.frac + x.frac."""
    w = np.abs(layer.weight.reshape(layer.weight.shape[0], -1)).sum(axis=1)
    x_max = max(abs(x_format.min_int), abs(x_format.max_int))
    bias = np.zeros_like(w) if layer.bias is None else np.abs(layer.bias)
    bound = int((bias + w * x_max).max())
    return QFormat(min(64, bound.bit_length() + 1), layer.weight_format.frac + x_format.frac)


def _signal_formats(layer, role, x_format, formats) -> QFormat:
    """Record the formats of ``layer``'s signals in ``formats``; return its output's format."""
    name = layer.name
    if role == "synapse":
        fmt = layer.acc_format or _exact_current_format(layer, x_format)
        formats[(name, "current")] = fmt
        return fmt
    if role == "neuron":
        if isinstance(layer, LoihiLIF):
            lo, hi = LoihiLIF.A_IN_FORMAT.min_int, LoihiLIF.A_IN_FORMAT.max_int
            if x_format.min_int < lo or x_format.max_int > hi:
                raise NetworkError(name, "input current", str(x_format),
                                   f"can leave Loihi's 16-bit a_in range {lo}..{hi}", place="layer")
        vm = LoihiLIF.U_FORMAT if isinstance(layer, LoihiLIF) else layer.vm
        formats.update({(name, "v_pre"): vm, (name, "v_post"): vm, (name, "spikes"): SPIKE})
        return SPIKE
    if role == "pool":
        out = layer.out_format if isinstance(layer, SumPool) else SPIKE
        formats[(name, "spikes")] = out
        if not isinstance(layer, (SumPool, OrPool)):
            formats[(name, "index")] = QFormat(max(1, (layer.area - 1).bit_length()), signed=False)
        if hasattr(layer, "vm"):
            formats[(name, "v")] = layer.vm
        if hasattr(layer, "count_format"):
            formats[(name, "counters")] = layer.count_format
        return out
    return x_format


def _check_pooled_neuron(pool, neuron) -> None:
    """The pooled neuron fires for its window: the neuron layer before it only integrates,
    into a Vm of the pool's format."""
    if getattr(neuron, "reset", None) != "none":
        raise NetworkError(pool.name, "position", neuron.name,
                           "a pooled_neuron pool needs a neuron layer with reset='none' before it", place="layer")
    if isinstance(neuron, DualThreshold):
        raise NetworkError(pool.name, "position", neuron.name,
                           "a pooled_neuron pool pools one Vm map: it cannot follow a dual-threshold layer", place="layer")
    if neuron.vm != pool.vm:
        raise NetworkError(pool.name, "vm", str(pool.vm), f"differs from the Vm format {neuron.vm} of {neuron.name!r}",
                           place="layer")


def _forward(layer, x):
    """``layer.forward(x)``; an accumulator overflow under ERROR is re-raised naming the layer
    (the kernel's message names only conv2d/linear, the index and the value)."""
    try:
        return layer.forward(x)
    except FixedOverflowError as err:
        raise FixedOverflowError(f"layer {layer.name!r}: {err}", index=err.index, value=err.value) from None


# which role may follow which ("input" stands before the first layer)
_MAY_FOLLOW = {
    "synapse": ("input", "neuron", "pool", "flatten"),
    "neuron": ("synapse",),
    "pool": ("neuron",),
    "flatten": ("neuron", "pool"),
}


@dataclass(frozen=True, eq=False)
class Network:
    """Layers in order, the per-sample input shape and the input's QFormat.

    Checked when built: names unique, each layer's role allowed after the previous one, and
    every shape and format chaining (errors name the layer, the field and the value).
    """

    layers: tuple
    input_shape: tuple
    input_format: QFormat
    name: str = "network"
    shapes: tuple = field(init=False, repr=False)
    formats: dict = field(init=False, repr=False)

    def __post_init__(self):
        check_name(self.name, place="network")
        object.__setattr__(self, "layers", tuple(self.layers))
        shape = self.input_shape
        if not (isinstance(shape, (tuple, list)) and shape and all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape)):
            raise NetworkError(self.name, "input_shape", shape, "must be a non-empty sequence of integers >= 1")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        if not self.layers:
            raise NetworkError(self.name, "layers", [], "a network needs at least one layer")
        if not isinstance(self.input_format, QFormat):
            raise NetworkError(self.name, "input_format", self.input_format, "must be a QFormat")
        check_memory(self.name, "input_shape", self.input_shape, {"one input sample": 8 * elements(self.input_shape)})
        seen, previous, shape, shapes = set(), "input", self.input_shape, []
        x_format, formats = self.input_format, {}
        for layer in self.layers:
            role = role_of(layer)
            if layer.name in seen:
                raise NetworkError(layer.name, "name", layer.name, "is used by an earlier layer", place="layer")
            seen.add(layer.name)
            if previous not in _MAY_FOLLOW[role]:
                raise NetworkError(layer.name, "position", role, f"a {role} layer cannot follow {previous}", place="layer")
            if isinstance(layer, PooledNeuronPool):
                _check_pooled_neuron(layer, self.layers[len(shapes) - 1])
            out = tuple(layer.output_shape(shape))
            check_memory(layer.name, "output_shape", out, {"one sample of this layer": 8 * _WORKING_ARRAYS * (
                elements(shape) + elements(out))}, place="layer")
            shapes.append((shape, out))
            x_format = _signal_formats(layer, role, x_format, formats)
            previous, shape = role, out
        if previous == "flatten":
            raise NetworkError(layer.name, "position", "flatten", "a network cannot end with a flatten layer",
                               place="layer")
        object.__setattr__(self, "shapes", tuple(shapes))
        object.__setattr__(self, "formats", formats)

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
        shape_in, shape_out = self.shapes[[layer.name for layer in self.layers].index(name)]
        return shape_in if signal in INPUT_SHAPED else shape_out

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
        if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) \
                or not 1 <= timesteps <= MAX_TIMESTEPS:
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

    def _stepper(self, i: int, wanted) -> Callable:
        """How ``run`` steps neuron layer ``i``: ``advance`` (no per-step checks, in place)
        when its input current provably lies within ±MAX_CURRENT, else the checked ``step``;
        the Vm before reset is kept only when it is recorded or the next layer ranks by it."""
        layer = self.layers[i]
        current = self.formats[(self.layers[i - 1].name, "current")]
        if not (-MAX_CURRENT <= current.min_int and current.max_int <= MAX_CURRENT):
            return layer.step
        after = self.layers[i + 1] if i + 1 < len(self.layers) else None
        keep_pre = (layer.name, "v_pre") in wanted or (isinstance(after, WinnerSpikePool) and after.vm_stage == "pre")
        return lambda state, x: layer.advance(state, x, keep_pre)

    def _count_dtype(self, name: str, timesteps: int) -> np.dtype:
        """The narrowest dtype that holds the sum of ``timesteps`` outputs of layer ``name``
        (spikes or pool codes): the running spike counts are kept in it, then returned as int64
        (int64 from the start when there is nothing to add up, T = 1)."""
        fmt = self.formats[(name, "spikes")]
        lo, hi = timesteps * min(0, fmt.min_int), timesteps * fmt.max_int
        if timesteps > 1:
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
    ) -> Result:
        """Simulate ``timesteps`` steps over a batch (see the module docstring).

        ``stimulus``: integer codes of ``input_format``, (N, *input_shape) applied every
        timestep, or (T, N, *input_shape) per timestep.  ``record`` chooses traces (see
        ``resolve_record``); with ``sink`` each recorded array is handed to
        ``sink(layer, signal, t, array)`` as it is computed and not kept, so memory stays
        bounded (the array may be layer state that changes later: a sink that keeps it copies
        it).  ``progress(t)`` is called after each timestep.
        """
        per_step = self.check_stimulus(stimulus, timesteps)
        stimulus = np.asarray(stimulus)
        batch = stimulus.shape[1] if per_step else stimulus.shape[0]
        wanted = self.resolve_record(record)
        self.check_run(batch, timesteps, wanted, keep_traces=sink is None)
        traces = {pair: [] for pair in wanted} if sink is None else {}
        overflows = np.zeros((timesteps, len(self.layers)), np.int64)
        spike_counts = {}
        states = {}
        for layer, (shape_in, _) in zip(self.layers, self.shapes):
            if role_of(layer) in ("neuron", "pool"):
                states[layer.name] = layer.init_state((batch, *shape_in))
        constant_current = None  # the first layer's current, when its input never changes
        stepping = {layer.name: self._stepper(i, wanted) for i, layer in enumerate(self.layers)
                    if role_of(layer) == "neuron"}  # fmt: skip

        def emit(layer, signal, t, value):
            if value is None or (layer.name, signal) not in wanted:
                return
            if sink is not None:
                sink(layer.name, signal, t, value)
            else:  # a copy: state arrays (Vm, counters) change in place later
                traces[(layer.name, signal)].append(np.array(value, copy=True))

        for t in range(timesteps):
            x = stimulus[t] if per_step else stimulus
            neuron_out = None
            for i, layer in enumerate(self.layers):
                role = role_of(layer)
                if role == "synapse":
                    if i == 0 and not per_step and constant_current is not None:
                        current, n_over = constant_current
                    else:
                        current, n_over = _forward(layer, x)
                        if i == 0 and not per_step:
                            constant_current = (current, n_over)
                    emit(layer, "current", t, current)
                    x = current
                elif role == "neuron":
                    neuron_out = stepping[layer.name](states[layer.name], x)
                    n_over = neuron_out.overflows
                    for signal in SIGNALS["neuron"]:
                        emit(layer, signal, t, getattr(neuron_out, signal))
                    x = neuron_out.spikes
                elif role == "pool":
                    state = states[layer.name]
                    prev = self.layers[i - 1]
                    out = layer.step(
                        state, spikes=neuron_out.spikes, v_pre=neuron_out.v_pre, v_post=neuron_out.v_post,
                        v_state=states[prev.name]["v"],
                    )  # fmt: skip
                    n_over = out.overflows
                    emit(layer, "spikes", t, out.out)
                    emit(layer, "index", t, out.index)
                    emit(layer, "v", t, out.v)
                    emit(layer, "counters", t, state.get("count"))
                    x = out.out
                else:
                    x = x.reshape(x.shape[0], -1)
                    n_over = 0
                overflows[t, i] = n_over
                if role in ("neuron", "pool"):
                    if layer.name not in spike_counts:
                        spike_counts[layer.name] = x.astype(self._count_dtype(layer.name, timesteps))
                    else:
                        np.add(spike_counts[layer.name], x, out=spike_counts[layer.name], casting="unsafe")
            if progress is not None:
                progress(t)
        spike_counts = {name: counts.astype(np.int64, copy=False) for name, counts in spike_counts.items()}
        last = self.layers[-1]
        outputs = {"spike_count": spike_counts.get(last.name)}
        if role_of(last) == "neuron":
            outputs["v"] = np.array(states[last.name]["v"], copy=True)
        if role_of(last) == "synapse":
            outputs["current"] = x
        stacked = {pair: np.stack(arrays) for pair, arrays in traces.items()}
        return Result(
            network=self, timesteps=timesteps, batch=batch,
            outputs={k: v for k, v in outputs.items() if v is not None},
            traces=stacked, overflows=overflows, spike_counts=spike_counts,
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class Result:
    """What a run computed.

    outputs: the last layer's "spike_count" (spikes summed over T) and "v" (final Vm) or
    "current".  traces: {(layer, signal): (T, N, ...) array} of the recorded signals.
    overflows: (T, n_layers) wrapped/saturated writes per layer and timestep.
    spike_counts: {layer: (N, ...) spikes summed over T} for every spiking layer.
    """

    network: Network
    timesteps: int
    batch: int
    outputs: dict
    traces: dict
    overflows: np.ndarray
    spike_counts: dict

    def prediction(self) -> np.ndarray:
        """Class per sample: argmax of the final Vm when the output layer has one, else of the
        spike counts (ties to the first index)."""
        scores = self.outputs.get("v", self.outputs.get("spike_count", self.outputs.get("current")))
        return np.argmax(scores.reshape(self.batch, -1), axis=1)

    def spike_rate(self, layer: str) -> float:
        """Mean spikes per neuron per timestep of ``layer``."""
        counts = self.spike_counts[layer]
        return float(counts.sum()) / (counts.size * self.timesteps)
