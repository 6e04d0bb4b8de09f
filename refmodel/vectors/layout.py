"""What ``refmodel gen`` writes for a run: every layer group and integer dataset of the vector
file, with its shape, format and axis names, computed from the network, the stimulus spec and
the record list (docs/vectors.md, "What refmodel gen writes").

``generate`` writes exactly this layout; ``VectorFile`` rebuilds it from the file's config and
refuses a file that differs from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refmodel.encode import Encoder, make_encoder
from refmodel.fixed import QFormat
from refmodel.layers.base import SPIKE
from refmodel.network import Network, NetworkError, role_of
from refmodel.spec import SpecError, StimulusSpec, kind_of, layer_config
from refmodel.vectors.schema import COUNT_FORMAT, TRACE_AXES, default_axes, layer_key

__all__ = ["Dataset", "LayerGroup", "RunLayout", "run_layout", "input_format", "encoder_of", "total_format"]

#: Axis names of the synaptic weights; every other parameter is a scalar or one value per channel.
WEIGHT_AXES = {"conv2d": ("co", "ci", "ky", "kx"), "linear": ("co", "ci")}


@dataclass(frozen=True)
class Dataset:
    """One integer dataset: its path, shape, QFormat, axis names, what it is (for error
    messages) and, for a parameter, its values."""

    path: str
    shape: tuple
    fmt: QFormat
    axes: tuple
    what: str
    values: np.ndarray | None = None


@dataclass(frozen=True)
class LayerGroup:
    """A layer group: attributes beyond name, kind, index and shapes, and the parameters."""

    name: str
    kind: str
    key: str
    input_shape: tuple
    output_shape: tuple
    attrs: dict
    params: dict  # name -> Dataset


@dataclass(frozen=True)
class RunLayout:
    """Everything a run writes, in writing order: layers (with parameters), the stimulus, the
    traces, the counts (``(layer, name)``: "overflow" and "spike_count") and the outputs."""

    layers: tuple
    stimulus: dict  # "input" / "spikes" -> Dataset
    traces: dict  # (layer, signal) -> Dataset
    counts: dict  # (layer, name) -> Dataset
    outputs: dict  # name -> Dataset

    def datasets(self) -> list:
        """Every dataset of the file."""
        params = [d for group in self.layers for d in group.params.values()]
        return [*params, *self.stimulus.values(), *self.traces.values(), *self.counts.values(), *self.outputs.values()]


def input_format(network: Network, stimulus: StimulusSpec, where: str) -> QFormat:
    """The format of ``stimulus/input``: the network's input format for the analog encoding,
    else the pixel format ``stimulus.format`` (the network then takes u1.0 spikes)."""
    if stimulus.encoding == "analog":
        return network.input_format
    if network.input_format != SPIKE:
        raise SpecError(where, "input_format", str(network.input_format),
                        f"a {stimulus.encoding!r} encoding feeds spikes: the network input must be u1.0")
    if stimulus.format is None:
        raise SpecError(where, "stimulus.format", None, f"a {stimulus.encoding!r} encoding needs the pixel format")
    return stimulus.format


def encoder_of(stimulus: StimulusSpec, x, fmt: QFormat) -> Encoder:
    """The encoder of ``stimulus`` over the integer input ``x`` of ``fmt``: its full scale when
    the spec gives one, and for the random encoding the spec's seed."""
    params = {}
    if stimulus.encoding != "analog" and stimulus.full_scale is not None:
        params["full_scale"] = stimulus.full_scale
    if stimulus.encoding == "random":
        params["seed"] = stimulus.seed
    return make_encoder(stimulus.encoding, x, fmt, **params)


def total_format(fmt: QFormat, timesteps: int, where: str) -> QFormat:
    """The format of a sum of ``timesteps`` values of ``fmt``: the same ``frac`` and the
    narrowest range holding ``T * min_int .. T * max_int`` (u(bits(T)).0 for spikes)."""
    lo, hi = timesteps * fmt.min_int, timesteps * fmt.max_int
    bits = max(1, hi.bit_length()) if lo >= 0 else max(hi.bit_length(), (-lo - 1).bit_length()) + 1
    if bits > 64:
        raise NetworkError(where, "timesteps", timesteps,
                           f"make its spike count (a sum of T values of {fmt}) need {bits} bits, more than 64",
                           place="layer")
    return QFormat(bits, fmt.frac, signed=lo < 0)


def _attr(value):
    """A config value as a layer attribute: a QFormat table as its name ("s16.0"), a bool as 0/1."""
    if isinstance(value, dict):
        return str(QFormat.from_dict(value))
    if isinstance(value, bool):
        return int(value)
    return value


def _layer_group(index: int, layer, shape_in: tuple, shape_out: tuple) -> LayerGroup:
    """Parameters: synapses' weight (and bias); each neuron's and pool's ``params(channels)``.
    Attributes: every other field of ``layer_config`` that is set, except the parameters' formats."""
    kind, key = kind_of(layer), layer_key(index, layer.name)
    role = role_of(layer)
    if role == "synapse":
        raw = layer.params()
        axes = {"weight": WEIGHT_AXES[kind], "bias": ("co",)}
    elif role in ("neuron", "pool"):
        raw = layer.params(shape_in[0])
        axes = {name: ("c",)[: np.ndim(values)] for name, (values, _) in raw.items()}
    else:
        raw, axes = {}, {}
    params = {
        name: Dataset(f"layers/{key}/params/{name}", np.shape(values), fmt, axes[name],
                      f"parameter {name!r} of layer {layer.name!r}", np.asarray(values))
        for name, (values, fmt) in raw.items()
    }  # fmt: skip
    hidden = {"name", "kind", *raw, *(f"{name}_format" for name in raw)}
    attrs = {field: _attr(value) for field, value in layer_config(layer).items()
             if field not in hidden and value is not None}
    return LayerGroup(layer.name, kind, key, tuple(shape_in), tuple(shape_out), attrs, params)


def run_layout(network: Network, stimulus: StimulusSpec, record, where: str | None = None) -> RunLayout:
    """The layout of the vector file of ``network`` run on ``stimulus``, recording ``record``
    (``(layer, signal)`` pairs, as ``Network.resolve_record`` gives them)."""
    where = where or network.name
    T, N = stimulus.timesteps, stimulus.batch
    layers = tuple(_layer_group(i, layer, shape_in, shape_out)
                   for i, (layer, (shape_in, shape_out)) in enumerate(zip(network.layers, network.shapes)))
    groups = {group.name: group for group in layers}

    def stepped(path, shape, fmt, what):
        return Dataset(path, (T, N, *shape), fmt, default_axes(2 + len(shape)), what)

    def per_sample(path, shape, fmt, what):
        return Dataset(path, (N, *shape), fmt, default_axes(1 + len(shape), TRACE_AXES[1:]), what)

    stim = {"input": per_sample("stimulus/input", network.input_shape, input_format(network, stimulus, where),
                                f"the {stimulus.encoding} stimulus input")}
    if stimulus.encoding != "analog":
        stim["spikes"] = stepped("stimulus/spikes", network.input_shape, SPIKE, "the encoded input spikes")
    traces = {}
    for name, signal in record:
        group = groups[name]
        traces[(name, signal)] = stepped(f"traces/{group.key}/{signal}", network.signal_shape(name, signal),
                                         network.formats[(name, signal)],
                                         f"trace {name}.{signal} of the record list")
    counts, totals = {}, {}
    for layer, group in zip(network.layers, layers):
        counts[(group.name, "overflow")] = Dataset(f"counts/{group.key}/overflow", (T,), COUNT_FORMAT, ("t",),
                                                   f"overflow count of layer {group.name!r}")
        if role_of(layer) in ("neuron", "pool"):
            totals[group.name] = total_format(network.formats[(group.name, "spikes")], T, group.name)
            counts[(group.name, "spike_count")] = per_sample(
                f"counts/{group.key}/spike_count", group.output_shape, totals[group.name],
                f"spike count of layer {group.name!r}")
    last, group = network.layers[-1], layers[-1]
    outputs = {}
    if role_of(last) in ("neuron", "pool"):
        outputs["spike_count"] = per_sample("outputs/spike_count", group.output_shape, totals[group.name],
                                            "output spike_count (the last layer's spike count)")
    if role_of(last) == "neuron":
        outputs["v"] = per_sample("outputs/v", group.input_shape, network.formats[(group.name, "v_post")],
                                  "output v (the last layer's final Vm)")
    if role_of(last) == "synapse":
        outputs["current"] = per_sample("outputs/current", group.output_shape, network.formats[(group.name, "current")],
                                        "output current (the last layer's current at the last timestep)")
    return RunLayout(layers, stim, traces, counts, outputs)
