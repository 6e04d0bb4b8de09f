"""The main job: run a spec's network bit-exactly and stream everything into a vector file."""

from __future__ import annotations

import numpy as np

from refmodel.cost import measure
from refmodel.encode import make_encoder, seed_state, xorshift32
from refmodel.fixed import QFormat
from refmodel.network import SPIKE, Network, Result
from refmodel.spec import Spec, SpecError, StimulusSpec, kind_of, network_config
from refmodel.vectors.writer import VectorWriter

__all__ = ["random_codes", "make_stimulus", "generate"]


def random_codes(shape, fmt: QFormat, seed: int) -> np.ndarray:
    """Uniform-ish integer codes of ``fmt`` (at most 32 bits wide), reproducible in C:
    element ``i`` (row-major) is ``min_int + xorshift32(seed_state(seed, i)) % span`` with
    ``span = max_int - min_int + 1`` (docs/encoding.md gives seed_state and xorshift32)."""
    span = fmt.max_int - fmt.min_int + 1
    if span > 2**32:
        raise SpecError("stimulus", "format", str(fmt), "a random source needs a format of at most 32 bits")
    count = int(np.prod(shape))
    draws = np.array([xorshift32(seed_state(seed, i)) for i in range(count)], np.int64)
    return (fmt.min_int + draws % span).reshape(shape)


def make_stimulus(spec: Spec, batch: int, seed: int):
    """The encoder a spec's [stimulus] asks for, over ``batch`` samples."""
    stim, network = spec.stimulus, spec.network
    if stim.encoding == "analog":
        fmt = network.input_format
    else:
        if network.input_format != SPIKE:
            raise SpecError(
                network.name, "input_format", str(network.input_format),
                f"a {stim.encoding!r} encoding feeds spikes: the network input must be u1.0",
            )  # fmt: skip
        if stim.format is None:
            raise SpecError(network.name, "stimulus.format", None, f"a {stim.encoding!r} encoding needs the pixel format")
        fmt = stim.format
    shape = (batch, *network.input_shape)
    if stim.source == "random":
        x = random_codes(shape, fmt, seed)
    else:
        x = np.asarray(spec.arrays[stim.source])[:batch]
        if x.shape != shape:
            raise SpecError(network.name, "stimulus.source", stim.source, f"has shape {x.shape}, expected {shape}")
    params = {}
    if stim.encoding != "analog" and stim.full_scale is not None:
        params["full_scale"] = stim.full_scale
    if stim.encoding == "random":
        params["seed"] = seed
    return make_encoder(stim.encoding, x, fmt, **params)


def run_config(network: Network, stimulus: StimulusSpec, record) -> dict:
    """The full config stored in (and hashed by) a vector file."""
    return {
        "network": network_config(network),
        "stimulus": stimulus.to_dict(),
        "record": [f"{layer}.{signal}" for layer, signal in record],
    }


def generate(spec: Spec, out, *, timesteps=None, batch=None, seed=None, record="all", progress=None) -> Result:
    """Run ``spec`` and write the vector file ``out`` (atomically); returns the run's Result
    (without traces: they went to the file).  Arguments left None come from the spec."""
    stim = spec.stimulus
    overrides = {k: v for k, v in (("timesteps", timesteps), ("batch", batch), ("seed", seed)) if v is not None}
    stim = StimulusSpec(**{**stim.__dict__, **overrides})
    network = spec.network
    chosen = network.resolve_record(record)
    encoder = make_stimulus(spec, stim.batch, stim.seed)
    stimulus = encoder.run(stim.timesteps) if encoder.spiking else encoder.x
    with VectorWriter(
        out, config=run_config(network, stim, chosen), seed=stim.seed, timesteps=stim.timesteps, batch=stim.batch
    ) as writer:
        for layer, (shape_in, shape_out) in zip(network.layers, network.shapes):
            writer.add_layer(layer.name, kind_of(layer), input_shape=shape_in, output_shape=shape_out)
            for name, (values, fmt) in getattr(layer, "params", dict)().items():
                writer.write_param(layer.name, name, values, fmt)
        writer.write_stimulus(encoder)
        if encoder.spiking:
            for t in range(stim.timesteps):
                writer.write_stimulus_step(t, stimulus[t])
        shapes = {layer.name: shape for layer, (_, shape) in zip(network.layers, network.shapes)}
        for layer, signal in chosen:
            fmt = network.formats[(layer, signal)]
            per_step = shapes[layer] if signal in ("spikes", "current") else _state_shape(network, layer, signal)
            writer.declare_trace(layer, signal, per_step, fmt)
        result = network.run(stimulus, stim.timesteps, record=chosen, sink=writer.write_step, progress=progress)
        writer.write_cost(measure(result, stimulus).sections())
        _write_outputs(writer, network, result)
        for i, layer in enumerate(network.layers):
            writer.write_counts(layer.name, "overflow", result.overflows[:, i])
    return result


def _state_shape(network: Network, layer_name: str, signal: str) -> tuple:
    """Per-sample shape of a neuron's Vm (its input current's shape) or a pool's window outputs."""
    for layer, (shape_in, shape_out) in zip(network.layers, network.shapes):
        if layer.name == layer_name:
            return shape_in if signal in ("v_pre", "v_post", "counters") else shape_out
    raise KeyError(layer_name)


def _write_outputs(writer, network: Network, result: Result) -> None:
    last = network.layers[-1].name
    for name, values in result.outputs.items():
        if name == "spike_count":
            fmt = QFormat(max(1, result.timesteps.bit_length()), signed=False)
        else:
            fmt = network.formats[(last, "v_post" if name == "v" else name)]
        writer.write_output(name, values, fmt)
