"""The stimulus of a run, built once from a spec's ``[stimulus]`` (docs/encoding.md): the
source codes (random or from the spec's .npz), their encoder, and what the network is fed."""

from __future__ import annotations

import dataclasses

import numpy as np

from refmodel.checks import integer_in, must_be_integer
from refmodel.encode import SEED_MAX, Encoder, make_encoder, seed_state, xorshift32
from refmodel.errors import SpecError
from refmodel.fixed import QFormat
from refmodel.layers import SPIKE

__all__ = ["SOURCE_SEED_FLIP", "random_codes", "input_format", "encoder_of", "make_stimulus", "build_stimulus"]

#: The random source draws with the run's seed xor this (its top bit flipped), the random encoder
#: with the seed itself: their per-element states coincide only 2**31 pixels apart (docs/encoding.md).
SOURCE_SEED_FLIP = 1 << 31


def random_codes(shape, fmt: QFormat, seed: int, bounds=None) -> np.ndarray:
    """Uniform-ish integer codes of ``fmt`` (at most 32 bits wide), reproducible in C:
    element ``i`` (row-major) is ``lo + xorshift32(seed_state(seed ^ 2**31, i)) % span`` with
    ``span = hi - lo + 1``; ``bounds`` ``(lo, hi)`` lies within ``fmt`` (None: its min_int and
    max_int).  docs/encoding.md gives seed_state and xorshift32."""
    lo, hi = (fmt.min_int, fmt.max_int) if bounds is None else bounds
    span = hi - lo + 1
    if span > 2**32:
        raise SpecError("[stimulus]", "format", str(fmt), "a random source needs a format of at most 32 bits")
    if not integer_in(seed, 0, SEED_MAX):
        raise SpecError("[stimulus]", "seed", seed, must_be_integer(0, SEED_MAX))
    source_seed = int(seed) ^ SOURCE_SEED_FLIP
    count = int(np.prod(shape))
    draws = np.array([xorshift32(seed_state(source_seed, i)) for i in range(count)], np.int64)
    return (lo + draws % span).reshape(shape)


def input_format(network, stimulus, where: str) -> QFormat:
    """The format of the stimulus input (``stimulus/input`` in a vector file): the network's
    input format for the analog encoding, else the pixel format ``stimulus.format`` (the
    network then takes u1.0 spikes).  The stimulus's ``range`` must lie within it."""
    if stimulus.encoding == "analog":
        fmt = network.input_format
    elif network.input_format != SPIKE:
        raise SpecError(where, "input_format", str(network.input_format),
                        f"a {stimulus.encoding!r} encoding feeds spikes: the network input must be u1.0")
    elif stimulus.format is None:
        raise SpecError(where, "stimulus.format", None, f"a {stimulus.encoding!r} encoding needs the pixel format")
    else:
        fmt = stimulus.format
    if stimulus.range is not None and not (fmt.min_int <= stimulus.range[0] and stimulus.range[1] <= fmt.max_int):
        raise SpecError(where, "stimulus.range", list(stimulus.range),
                        f"must lie within the codes of {fmt}, the format the source draws: "
                        f"{fmt.min_int}..{fmt.max_int}")
    return fmt


def encoder_of(stimulus, x, fmt: QFormat) -> Encoder:
    """The encoder of ``stimulus`` (a StimulusSpec) over the integer input ``x`` of ``fmt``: its
    full scale when the spec gives one, and for the random encoding the spec's seed."""
    params = {}
    if stimulus.encoding != "analog" and stimulus.full_scale is not None:
        params["full_scale"] = stimulus.full_scale
    if stimulus.encoding == "random":
        params["seed"] = stimulus.seed
    return make_encoder(stimulus.encoding, x, fmt, **params)


def make_stimulus(spec, batch: int, seed: int) -> Encoder:
    """The encoder a spec's [stimulus] asks for, over ``batch`` samples of its source."""
    return _encoder(spec, dataclasses.replace(spec.stimulus, batch=batch, seed=seed))


def _encoder(spec, stim) -> Encoder:
    """The encoder of ``stim`` (a StimulusSpec) over its source for ``spec``'s network."""
    network = spec.network
    fmt = input_format(network, stim, spec.where)
    shape = (stim.batch, *network.input_shape)
    if stim.source == "random":
        x = random_codes(shape, fmt, stim.seed, stim.range)
    else:
        x = np.asarray(spec.arrays[stim.source])[:stim.batch]
        if x.shape != shape:
            raise SpecError(spec.where, "stimulus.source", stim.source, f"has shape {x.shape}, expected {shape}")
    return encoder_of(stim, x, fmt)


def build_stimulus(spec, stimulus) -> tuple[Encoder, np.ndarray]:
    """(encoder, what the network is fed) for a run of ``spec``'s network on ``stimulus`` (a
    StimulusSpec): the analog codes (N, ...), or the encoded spikes (T, N, ...).  A caller checks
    the run's memory first (``Network.check_run``)."""
    encoder = _encoder(spec, stimulus)
    return encoder, encoder.run(stimulus.timesteps) if encoder.spiking else encoder.x
