"""Input encodings, integer-only and deterministic (specified in docs/encoding.md).

* ``AnalogEncoder``: the quantized input applied as a constant current every timestep.
* ``RateEncoder``: an integrate-and-fire encoder per pixel, ``acc += x``; spike and
  ``acc -= full_scale`` when ``acc >= full_scale``.
* ``RandomEncoder``: a per-pixel xorshift32 generator seeded from (seed, pixel index);
  spike when the top ``k`` bits of the state are below ``x`` (``full_scale = 2**k``).

Each encoder holds an (N, ...) integer input of a QFormat and streams one timestep at a
time: ``step()`` returns the (N, ...) input of the next timestep (uint8 spikes, or the
int64 input for the analog encoder); ``run(T)`` stacks T steps; ``reset()`` restarts.
"""

from __future__ import annotations

import numba
import numpy as np

from refmodel.checks import first_outside, index_text, integer_in, must_be_integer
from refmodel.fixed import FixedPointError, QFormat

__all__ = ["Encoder", "AnalogEncoder", "RateEncoder", "RandomEncoder", "ENCODINGS", "SEED_MAX", "make_encoder",
           "mix32", "xorshift32", "seed_state"]

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
#: Seeds are 32-bit: the generators use every bit of them and no more.
SEED_MAX = _M32


class Encoder:
    """Base: validates the (N, ...) integer input ``x`` against ``fmt``."""

    name = ""
    spiking = True

    def __init__(self, x, fmt: QFormat):
        if not isinstance(fmt, QFormat):
            raise FixedPointError(f"{self.name} encoder: fmt must be a QFormat, got {fmt!r}")
        arr = np.asarray(x)
        if arr.ndim < 1:
            raise FixedPointError(f"{self.name} encoder: the input needs a batch axis, got shape {arr.shape}")
        fmt.check_datapath()
        fmt.check(arr, f"{self.name} encoder input")
        self.fmt = fmt
        self.x = arr.astype(np.int64)
        self.x.flags.writeable = False
        self.reset()

    @property
    def params(self) -> dict:
        """The encoder's settings (integers), as stored in a vector file's stimulus attributes."""
        return {}

    def reset(self):
        """Restart at timestep 0."""

    def step(self) -> np.ndarray:
        raise NotImplementedError

    def run(self, timesteps) -> np.ndarray:
        """The next ``timesteps`` steps stacked: (T, N, ...)."""
        if not integer_in(timesteps, 0):
            raise FixedPointError(f"timesteps {must_be_integer(0)}, got {timesteps!r}")
        return np.stack([self.step() for _ in range(timesteps)]) if timesteps else \
            np.zeros((0,) + self.x.shape, np.uint8 if self.spiking else np.int64)


class AnalogEncoder(Encoder):
    """The input itself, every timestep (a constant current into the first layer)."""

    name = "analog"
    spiking = False

    def step(self) -> np.ndarray:
        return self.x


class _SpikeEncoder(Encoder):
    """Spike encoders: ``0 <= x <= full_scale`` (default ``2**fmt.frac``, the code of 1.0)."""

    def __init__(self, x, fmt: QFormat, full_scale=None, max_full_scale=1 << 62):
        super().__init__(x, fmt)
        if full_scale is None:
            if fmt.frac < 0:
                raise FixedPointError(f"{self.name} encoder: {fmt} has frac < 0; pass full_scale explicitly")
            full_scale = 1 << fmt.frac
        if not integer_in(full_scale, 1, max_full_scale):
            raise FixedPointError(f"{self.name} encoder: full_scale {must_be_integer(1, max_full_scale)}, "
                                  f"got {full_scale!r}")
        self.full_scale = int(full_scale)
        outside = first_outside(self.x, 0, self.full_scale)  # x has a batch axis: index_text is never empty
        if outside:
            index, value = outside
            raise FixedPointError(f"{self.name} encoder input{index_text(index)} = {value} "
                                  f"is outside 0..full_scale = 0..{self.full_scale}")

    @property
    def params(self) -> dict:
        return {"full_scale": self.full_scale}


class RateEncoder(_SpikeEncoder):
    """Integrate-and-fire rate coding: ``acc += x``; if ``acc >= full_scale``: spike,
    ``acc -= full_scale``.  ``acc`` starts at 0, so after T steps a pixel has spiked exactly
    ``floor(T * x / full_scale)`` times."""

    name = "rate"

    def reset(self):
        self.acc = np.zeros(self.x.size, np.int64)

    def step(self) -> np.ndarray:
        out = np.empty(self.x.size, np.uint8)
        _rate_step(self.x.ravel(), self.acc, self.full_scale, out)
        return out.reshape(self.x.shape)


class RandomEncoder(_SpikeEncoder):
    """Seeded pseudo-random coding: per pixel ``p`` (row-major index over the whole (N, ...)
    input) the state starts at ``seed_state(seed, p)``; each step ``s = xorshift32(s)`` and
    the pixel spikes when ``s >> (32 - k) < x``, with ``full_scale = 2**k``, ``k <= 32``."""

    name = "random"

    def __init__(self, x, fmt: QFormat, *, seed, full_scale=None):
        if not integer_in(seed, 0, SEED_MAX):  # not must_be_integer(): the message writes the bound 2**32-1
            raise FixedPointError(f"random encoder: seed must be an integer in 0..2**32-1, got {seed!r}")
        self.seed = int(seed)
        super().__init__(x, fmt, full_scale, max_full_scale=1 << 32)
        if self.full_scale & (self.full_scale - 1):
            raise FixedPointError(f"random encoder: full_scale must be a power of two, got {self.full_scale}")
        if self.x.size > 1 << 32:
            raise FixedPointError(f"random encoder: at most 2**32 pixels, got {self.x.size}")
        self.k = self.full_scale.bit_length() - 1

    def reset(self):
        self.state = np.empty(self.x.size, np.int64)
        _seed_states(self.seed, self.state)

    @property
    def params(self) -> dict:
        return {"full_scale": self.full_scale, "seed": self.seed}

    def step(self) -> np.ndarray:
        out = np.empty(self.x.size, np.uint8)
        _random_step(self.x.ravel(), self.state, 32 - self.k, out)
        return out.reshape(self.x.shape)


_ENCODERS = {cls.name: cls for cls in (AnalogEncoder, RateEncoder, RandomEncoder)}
#: The names of the encodings; all but "analog" feed spikes.
ENCODINGS = tuple(_ENCODERS)


def make_encoder(name, x, fmt: QFormat, **params) -> Encoder:
    """The encoder called ``name`` (``analog``, ``rate``, ``random``) with its ``params``."""
    if name not in _ENCODERS:
        raise FixedPointError(f"unknown encoding {name!r}; expected one of {', '.join(_ENCODERS)}")
    try:
        return _ENCODERS[name](x, fmt, **params)
    except TypeError as exc:
        raise FixedPointError(f"{name} encoder: bad parameters {sorted(params)} ({exc})") from None


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def mix32(v):
    """The lowbias32 integer hash of a 32-bit value (a bijection; ``mix32(0) == 0``)."""
    v &= _M32
    v ^= v >> 16
    v = (v * 0x7FEB352D) & _M32
    v ^= v >> 15
    v = (v * 0x846CA68B) & _M32
    v ^= v >> 16
    return v


@numba.njit(cache=True)
def seed_state(seed, p):
    """Initial xorshift32 state of pixel ``p``: ``mix32(seed + 0x9E3779B9 * (p + 1))``, or
    ``0x9E3779B9`` where that is 0 (xorshift32 never leaves state 0)."""
    s = mix32(seed + ((_GOLDEN * ((p + 1) & _M32)) & _M32))
    return s if s != 0 else np.int64(_GOLDEN)


@numba.njit(cache=True)
def xorshift32(s):
    """Marsaglia's xorshift32 with shifts (13, 17, 5), on a state in 1..2**32-1."""
    s ^= (s << 13) & _M32
    s ^= s >> 17
    s ^= (s << 5) & _M32
    return s


@numba.njit(cache=True)
def _seed_states(seed, state):
    for p in range(state.size):
        state[p] = seed_state(seed, p)


@numba.njit(cache=True)
def _rate_step(x, acc, full_scale, out):
    for i in range(x.size):
        a = acc[i] + x[i]
        if a >= full_scale:
            a -= full_scale
            out[i] = 1
        else:
            out[i] = 0
        acc[i] = a


@numba.njit(cache=True)
def _random_step(x, state, shift, out):
    for i in range(x.size):
        s = xorshift32(state[i])
        state[i] = s
        out[i] = 1 if (s >> shift) < x[i] else 0
