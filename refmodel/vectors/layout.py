"""What ``refmodel gen`` writes for a run: every layer group and integer dataset of the vector
file, with its shape, format and axis names, computed from the network, the stimulus spec and
the record list (docs/vectors.md, "What refmodel gen writes").

``generate`` writes exactly this layout; ``VectorFile`` rebuilds it from the file's config and
refuses a file that differs from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refmodel.errors import LayerError
from refmodel.fixed import QFormat
from refmodel.layers import SPIKE
from refmodel.network import Network
from refmodel.spec import StimulusSpec, layer_config
from refmodel.stimulus import input_format
from refmodel.vectors.schema import COUNT_FORMAT, TRACE_AXES, default_axes, layer_key

__all__ = ["Dataset", "LayerGroup", "RunLayout", "run_layout", "total_format"]


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


def total_format(fmt: QFormat, timesteps: int, where: str) -> QFormat:
    """The format of a sum of ``timesteps`` values of ``fmt``: the same ``frac`` and the
    narrowest range holding ``T * min_int .. T * max_int`` (u(bits(T)).0 for spikes)."""
    lo, hi = timesteps * fmt.min_int, timesteps * fmt.max_int
    bits = max(1, hi.bit_length()) if lo >= 0 else max(hi.bit_length(), (-lo - 1).bit_length()) + 1
    if bits > 64:
        raise LayerError(where, "timesteps", timesteps,
                         f"make its spike count (a sum of T values of {fmt}) need {bits} bits, more than 64")
    return QFormat(bits, fmt.frac, signed=lo < 0)


def _attr(value):
    """A config value as a layer attribute: a QFormat table as its name ("s16.0"), a bool as
    0/1, a list of names (``inputs``) as one string of names separated by spaces."""
    if isinstance(value, dict):
        return str(QFormat.from_dict(value))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return value


def _layer_group(index: int, layer, site, config: dict) -> LayerGroup:
    """Parameters: the layer's ``params``.  Attributes: every other field of its ``config``
    (``layer_config``) that is set, except the parameters' formats (``inputs`` as a list of names)."""
    key = layer_key(index, layer.name)
    raw = layer.params(*site.input_shapes)
    params = {
        name: Dataset(f"layers/{key}/params/{name}", np.shape(p.values), p.fmt, p.axes,
                      f"parameter {name!r} of layer {layer.name!r}", np.asarray(p.values))
        for name, p in raw.items()
    }  # fmt: skip
    hidden = {"name", "kind", *raw, *(f"{name}_format" for name in raw)}
    attrs = {field: _attr(value) for field, value in config.items() if field not in hidden and value is not None}
    return LayerGroup(layer.name, layer.kind, key, site.input_shape, site.output_shape, attrs, params)


def run_layout(network: Network, stimulus: StimulusSpec, record, where: str | None = None,
               configs=None) -> RunLayout:
    """The layout of the vector file of ``network`` run on ``stimulus``, recording ``record``
    (``(layer, signal)`` pairs, as ``Network.resolve_record`` gives them).  ``configs``: the
    layers' ``layer_config``, when the caller has them (``network_config(network)["layers"]``,
    or a file's config): made again, they would hash every weight array once more."""
    where = where or network.name
    T, N = stimulus.timesteps, stimulus.batch
    configs = configs if configs is not None else [layer_config(layer) for layer in network.layers]
    layers = tuple(_layer_group(i, layer, network.sites[layer.name], config)
                   for i, (layer, config) in enumerate(zip(network.layers, configs)))
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
    counted = network.counted()
    for layer, group in zip(network.layers, layers):
        counts[(group.name, "overflow")] = Dataset(f"counts/{group.key}/overflow", (T,), COUNT_FORMAT, ("t",),
                                                   f"overflow count of layer {group.name!r}")
        if group.name in counted:
            totals[group.name] = total_format(network.sites[group.name].output_format, T, group.name)
            counts[(group.name, "spike_count")] = per_sample(
                f"counts/{group.key}/spike_count", group.output_shape, totals[group.name],
                f"spike count of layer {group.name!r}")
    last, group = network.layers[-1], layers[-1]
    outputs = {}
    if last.name in counted:
        outputs["spike_count"] = per_sample("outputs/spike_count", group.output_shape, totals[group.name],
                                            "output spike_count (the last layer's spike count)")
    for name, signal in last.readout.items():
        outputs[name] = per_sample(f"outputs/{name}", network.signal_shape(last.name, signal),
                                   network.formats[(last.name, signal)],
                                   f"output {name} (the last layer's {signal} at the last timestep)")
    return RunLayout(layers, stim, traces, counts, outputs)
