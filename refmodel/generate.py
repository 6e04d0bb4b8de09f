"""The main job: run a spec's network bit-exactly and stream everything into a vector file,
in the layout of ``refmodel.vectors.layout`` (specified in docs/vectors.md)."""

from __future__ import annotations

import dataclasses

import numpy as np

from refmodel.cost import measure, signed_outputs
from refmodel.coverage import Coverage, input_coverage
from refmodel.errors import NetworkError, SpecError
from refmodel.network import Network, Result
from refmodel.spec import Spec, StimulusSpec, network_config
from refmodel.stimulus import build_stimulus
from refmodel.vectors.layout import run_layout
from refmodel.vectors.writer import VectorWriter

__all__ = ["generate", "prepared", "run_config", "overridden"]


def run_config(network: Network, stimulus: StimulusSpec, record, described=None) -> dict:
    """The full config stored in (and hashed by) a vector file (``described``: the network's
    ``network_config``, when the caller has it: made again, it would hash the weights again)."""
    return {
        "network": described if described is not None else network_config(network),
        "stimulus": stimulus.to_dict(),
        "record": [f"{layer}.{signal}" for layer, signal in record],
    }


def overridden(spec: Spec, **overrides) -> StimulusSpec:
    """The spec's [stimulus] with the arguments that are not None in place of its values; a
    bad value is refused naming the network, the argument and the value."""
    try:
        return dataclasses.replace(spec.stimulus, **{k: v for k, v in overrides.items() if v is not None})
    except SpecError as err:
        raise NetworkError(spec.network.name, err.field, err.value, err.problem) from None


def prepared(spec: Spec, *, timesteps=None, batch=None, seed=None, range=None, record="all", described=None):
    """(the run's StimulusSpec, its recorded (layer, signal) pairs, its file layout): every
    check ``generate`` makes before it runs, so that a bad run is refused before any work
    (``described``: the network's ``network_config``, when the caller has it)."""
    network = spec.network
    stim = overridden(spec, timesteps=timesteps, batch=batch, seed=seed, range=range)
    chosen = network.resolve_record(record)
    layout = run_layout(network, stim, chosen, spec.where, None if described is None else described["layers"])
    network.check_run(stim.batch, stim.timesteps, chosen, keep_traces=False,
                      stimulus="analog" if stim.encoding == "analog" else "spikes")
    return stim, chosen, layout


class _Sink:
    """What ``generate`` hands ``Network.run``: the recorded traces go to the writer; the
    outputs that ``cost.measure`` counts by magnitude (``signed_outputs``) are summed as
    ``Σ_t |code|`` into ``magnitudes``, so that the cost needs no second run."""

    def __init__(self, writer, recorded, summed):
        self.writer, self.recorded, self.summed = writer, set(recorded), set(summed)
        self.magnitudes = {}

    def __call__(self, layer, signal, t, value):
        if (layer, signal) in self.summed:
            size = np.abs(np.asarray(value, np.int64))
            self.magnitudes[layer] = size if t == 0 else self.magnitudes[layer] + size
        if (layer, signal) in self.recorded:
            self.writer.write_step(layer, signal, t, value)


def generate(spec: Spec, out, *, timesteps=None, batch=None, seed=None, range=None, record="all", progress=None,
             force=False, coverage=True, compression="fast") -> Result:
    """Run ``spec`` and write the vector file ``out`` (atomically; ``force`` writes through a
    symbolic link, see ``refmodel.files``); returns the run's Result (without traces: they went
    to the file).  Arguments left None come from the spec (``range``: the (lo, hi) codes of a
    random source, as ``StimulusSpec.range``).  With ``coverage`` (the default) the
    run counts its coverage bins and the file stores them (its ``coverage`` group: the network
    input's bins under "input", then the layers'), as does ``Result.coverage``.  ``compression``:
    how the file stores its chunks, ``fast`` (the default), ``small`` or ``none`` (docs/vectors.md §5)."""
    network = spec.network
    described = network_config(network)  # (hashes every weight array: once)
    stim, chosen, layout = prepared(spec, timesteps=timesteps, batch=batch, seed=seed, range=range, record=record,
                                    described=described)
    encoder, stimulus = build_stimulus(spec, stim)
    config = run_config(network, stim, chosen, described)
    with VectorWriter(out, config=config, seed=stim.seed, timesteps=stim.timesteps, batch=stim.batch,
                      force=force, compression=compression) as writer:
        for group in layout.layers:
            writer.add_layer(group.name, group.kind, input_shape=group.input_shape, output_shape=group.output_shape,
                             attrs=group.attrs)
            for name, param in group.params.items():
                writer.write_param(group.name, name, param.values, param.fmt, param.axes)
        writer.write_stimulus(encoder)
        if encoder.spiking:
            for t, spikes in enumerate(stimulus):
                writer.write_stimulus_step(t, spikes)
        for (layer, signal), trace in layout.traces.items():
            writer.declare_trace(layer, signal, trace.shape[2:], trace.fmt, trace.axes)
        summed = signed_outputs(network)
        sink = _Sink(writer, chosen, summed)
        result = network.run(stimulus, stim.timesteps, record=network.resolve_record([*chosen, *summed]), sink=sink,
                             progress=progress, coverage=coverage)
        writer.write_cost(measure(result, stimulus, sink.magnitudes).sections())
        if coverage:
            covered = Coverage({"input": input_coverage(encoder), **result.coverage.layers}, 1)
            writer.write_coverage(covered)
            result = dataclasses.replace(result, coverage=covered)
        for name, output in layout.outputs.items():
            writer.write_output(name, result.outputs[name], output.fmt, output.axes)
        index = {layer.name: i for i, layer in enumerate(network.layers)}
        for (layer, name), count in layout.counts.items():
            if name == "overflow":
                writer.write_counts(layer, name, result.overflows[:, index[layer]])
            else:
                writer.write_spike_count(layer, result.spike_counts.narrow(layer), count.fmt)
    return result
