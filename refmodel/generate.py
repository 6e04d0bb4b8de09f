"""The main job: run a spec's network bit-exactly and stream everything into a vector file,
in the layout of ``refmodel.vectors.layout`` (specified in docs/vectors.md)."""

from __future__ import annotations

import dataclasses

import numpy as np

from refmodel.cost import measure
from refmodel.encode import SEED_MAX, Encoder, seed_state, xorshift32
from refmodel.fixed import QFormat
from refmodel.network import Network, NetworkError, Result
from refmodel.spec import Spec, SpecError, StimulusSpec, network_config
from refmodel.vectors.layout import encoder_of, input_format, run_layout
from refmodel.vectors.writer import VectorWriter

__all__ = ["SOURCE_SEED_FLIP", "random_codes", "make_stimulus", "generate", "run_config"]

#: The random source draws with the run's seed xor this (its top bit flipped), the random encoder
#: with the seed itself: their per-element states coincide only 2**31 pixels apart (docs/encoding.md).
SOURCE_SEED_FLIP = 1 << 31


def random_codes(shape, fmt: QFormat, seed: int) -> np.ndarray:
    """Uniform-ish integer codes of ``fmt`` (at most 32 bits wide), reproducible in C:
    element ``i`` (row-major) is ``min_int + xorshift32(seed_state(seed ^ 2**31, i)) % span``
    with ``span = max_int - min_int + 1`` (docs/encoding.md gives seed_state and xorshift32)."""
    span = fmt.max_int - fmt.min_int + 1
    if span > 2**32:
        raise SpecError("[stimulus]", "format", str(fmt), "a random source needs a format of at most 32 bits")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise SpecError("[stimulus]", "seed", seed, f"must be an integer in 0..{SEED_MAX}")
    source_seed = int(seed) ^ SOURCE_SEED_FLIP
    count = int(np.prod(shape))
    draws = np.array([xorshift32(seed_state(source_seed, i)) for i in range(count)], np.int64)
    return (fmt.min_int + draws % span).reshape(shape)


def make_stimulus(spec: Spec, batch: int, seed: int) -> Encoder:
    """The encoder a spec's [stimulus] asks for, over ``batch`` samples of its source."""
    stim, network = dataclasses.replace(spec.stimulus, batch=batch, seed=seed), spec.network
    fmt = input_format(network, stim, spec.where)
    shape = (batch, *network.input_shape)
    if stim.source == "random":
        x = random_codes(shape, fmt, seed)
    else:
        x = np.asarray(spec.arrays[stim.source])[:batch]
        if x.shape != shape:
            raise SpecError(spec.where, "stimulus.source", stim.source, f"has shape {x.shape}, expected {shape}")
    return encoder_of(stim, x, fmt)


def run_config(network: Network, stimulus: StimulusSpec, record) -> dict:
    """The full config stored in (and hashed by) a vector file."""
    return {
        "network": network_config(network),
        "stimulus": stimulus.to_dict(),
        "record": [f"{layer}.{signal}" for layer, signal in record],
    }


def _overridden(spec: Spec, **overrides) -> StimulusSpec:
    """The spec's [stimulus] with the arguments that are not None in place of its values; a
    bad value is refused naming the network, the argument and the value."""
    try:
        return dataclasses.replace(spec.stimulus, **{k: v for k, v in overrides.items() if v is not None})
    except SpecError as err:
        raise NetworkError(spec.network.name, err.field, err.value, err.problem) from None


def generate(spec: Spec, out, *, timesteps=None, batch=None, seed=None, record="all", progress=None,
             force=False) -> Result:
    """Run ``spec`` and write the vector file ``out`` (atomically; ``force`` writes through a
    symbolic link, see ``refmodel.files``); returns the run's Result (without traces: they went
    to the file).  Arguments left None come from the spec."""
    network = spec.network
    stim = _overridden(spec, timesteps=timesteps, batch=batch, seed=seed)
    chosen = network.resolve_record(record)
    layout = run_layout(network, stim, chosen, spec.where)
    network.check_run(stim.batch, stim.timesteps, chosen, keep_traces=False,
                      stimulus="analog" if stim.encoding == "analog" else "spikes")
    encoder = make_stimulus(spec, stim.batch, stim.seed)
    stimulus = encoder.run(stim.timesteps) if encoder.spiking else encoder.x
    config = run_config(network, stim, chosen)
    with VectorWriter(out, config=config, seed=stim.seed, timesteps=stim.timesteps, batch=stim.batch,
                      force=force) as writer:
        for group in layout.layers:
            writer.add_layer(group.name, group.kind, input_shape=group.input_shape, output_shape=group.output_shape,
                             attrs=group.attrs)
            for name, param in group.params.items():
                writer.write_param(group.name, name, param.values, param.fmt, param.axes)
        writer.write_stimulus(encoder)
        if encoder.spiking:
            for t in range(stim.timesteps):
                writer.write_stimulus_step(t, stimulus[t])
        for (layer, signal), trace in layout.traces.items():
            writer.declare_trace(layer, signal, trace.shape[2:], trace.fmt, trace.axes)
        result = network.run(stimulus, stim.timesteps, record=chosen, sink=writer.write_step, progress=progress)
        writer.write_cost(measure(result, stimulus).sections())
        for name, output in layout.outputs.items():
            writer.write_output(name, result.outputs[name], output.fmt, output.axes)
        index = {layer.name: i for i, layer in enumerate(network.layers)}
        for (layer, name), count in layout.counts.items():
            if name == "overflow":
                writer.write_counts(layer, name, result.overflows[:, index[layer]])
            else:
                writer.write_spike_count(layer, result.spike_counts[layer], count.fmt)
    return result
