"""Synaptic layers: integer weights turn their input into currents.

The arithmetic (accumulation order, where the accumulator format applies) is
docs/arithmetic.md §4; these classes describe and validate a layer and say what it costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from refmodel.fixed import FixedOverflowError, FixedPointError, Overflow, QFormat
from refmodel.kernels._conv_kernels import COV_ABOVE, COV_BELOW, COV_NEAR_HIGH, COV_NEAR_LOW, silent_samples
from refmodel.layers.base import (NETWORK_INPUT, Layer, LayerError, Param, Step, Tally, int_array, positive_pair,
                                  write_bins, write_bins_unreachable)
from refmodel.limits import check_memory

ACC_APPLY = ("each", "once")


@dataclass(frozen=True, eq=False)
class _Synapse(Layer):
    """What Conv2d and Linear share: weights, an optional bias, the accumulator.

    Records ``current``; as the network's last layer its output ``current`` is the current of
    the last timestep.
    """

    role: ClassVar[str] = "synapse"
    accepts: ClassVar[tuple] = ("input", "neuron", "pool", "shape", "merge")
    signals: ClassVar[tuple] = ("current",)
    output_signal: ClassVar[str] = "current"
    readout: ClassVar[dict] = {"current": "current"}
    coverage_bins: ClassVar[tuple] = ("acc_wrap_high", "acc_wrap_low", "acc_sat_high", "acc_sat_low",
                                      "acc_near_high", "acc_near_low", "zero_input")
    weight_axes: ClassVar[tuple]

    def _check_synapse(self, weight_ndim: int):
        super().__post_init__()
        w = int_array(self.name, "weight", self.weight, self.weight_format, ndim=weight_ndim)
        self._set("weight", w)
        k = w.shape[0]
        if self.bias is None:
            if self.bias_format is not None:
                raise LayerError(self.name, "bias_format", self.bias_format, "given without a bias")
        else:
            if self.bias_format is None:
                raise LayerError(self.name, "bias_format", None, "a bias needs its declared format")
            bias = int_array(self.name, "bias", self.bias, self.bias_format, ndim=1)
            if bias.shape != (k,):
                raise LayerError(self.name, "bias", bias, f"must have shape ({k},), one per output channel")
            self._set("bias", bias)
        if self.acc_format is not None and not isinstance(self.acc_format, QFormat):
            raise LayerError(self.name, "acc_format", self.acc_format, "must be a QFormat or None (exact)")
        try:
            Overflow.of(self.overflow)
        except FixedPointError as err:
            raise LayerError(self.name, "overflow", self.overflow, str(err)) from None
        if self.acc_apply not in ACC_APPLY:
            raise LayerError(self.name, "acc_apply", self.acc_apply, f"must be one of {ACC_APPLY}")
        if self.bias is not None and self.acc_format is not None and self.acc_apply == "each":
            # the accumulator register starts at the bias (arithmetic.md §4)
            lo, hi = self.acc_format.bounds(self.overflow)
            outside = np.flatnonzero((self.bias < lo) | (self.bias > hi))
            if outside.size:
                k = int(outside[0])
                raise LayerError(self.name, f"bias[{k}]", int(self.bias[k]),
                                 f"does not fit the accumulator {self.acc_format} ({lo}..{hi})")

    def signal_formats(self, x_format) -> dict:
        """The accumulator's format, or (exact) the narrowest signed format holding every
        current for inputs of ``x_format``: bound_k = |b_k| + Σ|W_k|·max(|x_min|, |x_max|),
        frac = weight frac + input frac."""
        if self.acc_format is not None:
            return {"current": self.acc_format}
        w = np.abs(self.weight.reshape(self.weight.shape[0], -1)).sum(axis=1)
        x_max = max(abs(x_format.min_int), abs(x_format.max_int))
        bias = np.zeros_like(w) if self.bias is None else np.abs(self.bias)
        bound = int((bias + w * x_max).max())
        return {"current": QFormat(min(64, bound.bit_length() + 1), self.weight_format.frac + x_format.frac)}

    def params(self, input_shape) -> dict:
        """``weight`` (axes ``weight_axes``) and, when given, ``bias`` (one per output channel)."""
        out = {"weight": Param(self.weight, self.weight_format, self.weight_axes)}
        if self.bias is not None:
            out["bias"] = Param(self.bias, self.bias_format, ("co",))
        return out

    def forward(self, x, cover=False):
        """(currents int64 (N, K, ...), number of accumulator overflows), and with ``cover`` the
        step's coverage Tally; an overflow under ERROR names the layer."""
        try:
            computed = self._forward(x, cover)
        except FixedOverflowError as err:
            raise FixedOverflowError(f"layer {self.name!r}: {err}", index=err.index, value=err.value) from None
        if not cover:
            return computed
        current, overflows, counts = computed
        silent = silent_samples(np.asarray(x).reshape(len(x), -1))
        return current, overflows, Tally({"acc": counts, "zero_input": np.array([silent], np.int64)}, self._named)

    def _named(self, raw) -> dict:
        """{bin: hits}: the accumulator's counters (K, 4) per output channel, zero_input per layer."""
        counts = raw["acc"]
        named = write_bins("acc", Overflow.of(self.overflow), counts[:, COV_ABOVE], counts[:, COV_BELOW])
        return named | {"acc_near_high": counts[:, COV_NEAR_HIGH], "acc_near_low": counts[:, COV_NEAR_LOW],
                        "zero_input": raw["zero_input"]}

    def stepper(self, site, run):
        source = site.source_names[0]
        constant = source == NETWORK_INPUT and run.constant_input
        cache = []  # the current of a constant input, computed once

        def step(frame):
            if cache:
                computed = cache[0]
            else:
                computed = self.forward(frame.outputs[source], run.coverage)
                if constant:
                    cache.append(computed)
            current, overflows = computed[:2]
            return Step(current, {"current": current}, overflows, computed[2] if run.coverage else None)

        return step

    def unreachable_bins(self, site) -> dict:
        """Without an accumulator format, every accumulator bin; else those of the other overflow
        mode, and each side that the range proof of the partial sums (docs/arithmetic.md §4, for
        inputs of the source's range) keeps away from.  Under WRAP with ``acc_apply="each"`` a
        side is claimed only when both are: a wrap moves the register by ``2**bits``, so after a
        wrap on one side the exact partial sums no longer bound the register on the other."""
        acc_bins = [name for name in self.coverage_bins if name.startswith("acc_")]
        if self.acc_format is None:
            return {name: "exact accumulator (no acc_format)" for name in acc_bins}
        codes = site.input_ranges[0] or (site.input_formats[0].min_int, site.input_formats[0].max_int)
        lo, hi = self._weights.partial_sum_range(min(0, codes[0]), max(0, codes[1]))
        bottom, top = self.acc_format.bounds(self.overflow)
        proof = f"every partial sum lies in {lo}..{hi} (range proof)"
        high, low = hi <= top, lo >= bottom
        if Overflow.of(self.overflow) == Overflow.WRAP and self.acc_apply == "each" and not (high and low):
            return write_bins_unreachable("acc", Overflow.WRAP, {"high": None, "low": None})
        out = write_bins_unreachable("acc", Overflow.of(self.overflow), {"high": proof if high else None,
                                                                        "low": proof if low else None})
        if hi < top - 1:
            out["acc_near_high"] = proof
        if lo > bottom + 1:
            out["acc_near_low"] = proof
        return out

    def fan_out(self, input_shape) -> np.ndarray:
        """Synaptic connections leaving each input neuron, shape ``input_shape``."""
        raise NotImplementedError

    def static_cost(self, site):
        """MACs of the dense layer; synops: one accumulate per synapse per unit of input code
        (``m = max |input code|``, 1 for spikes; an analog input counts dense MACs)."""
        w_bits = self.weight_format.bits
        macs = math.prod(site.output_shape) * math.prod(self.weight.shape[1:])
        codes = site.input_ranges[0]
        synops = macs if codes is None else max(-codes[0], codes[1]) * int(self.fan_out(site.input_shape).sum())
        ops = {"macs": macs, "synops": synops, "weight_read_bits": macs * w_bits,
               "event_weight_read_bits": synops * w_bits}
        memory = {"weights": self.weight.size, "weight_bits": self.weight.size * w_bits}
        if self.bias is not None:
            memory["bias_bits"] = self.bias.size * self.bias_format.bits
        return ops, memory

    def measured_cost(self, site, totals, activity):
        """synops: Σ_i S[i]·fan_out[i] over the input's Σ_t |code| (an analog input: as static)."""
        counts = activity.of(site.source_names[0])
        if counts is None:
            return totals
        counts = np.asarray(counts, np.int64).reshape((-1, *site.input_shape)).sum(axis=0)
        synops = int((counts * self.fan_out(site.input_shape)).sum())
        return totals | {"synops": synops, "event_weight_read_bits": synops * self.weight_format.bits}


def _taps(size: int, out: int, k: int, stride: int, pad: int) -> np.ndarray:
    """For each input position: how many (output position, kernel tap) pairs read it."""
    pos = (np.arange(out)[:, None] * stride + np.arange(k)[None, :] - pad).ravel()
    taps = np.zeros(size, np.int64)
    np.add.at(taps, pos[(pos >= 0) & (pos < size)], 1)
    return taps


@dataclass(frozen=True, eq=False)
class Conv2d(_Synapse):
    """I[n,k,y,x] = b[k] + sum_{c,i,j} W[k,c,i,j] * s[n, g*Cg + c, y*sy + i - py, x*sx + j - px]

    with ``g = k // (K / groups)``, ``Cg = C / groups``, zero padding, and the products added in
    the order c, i, j into an accumulator of ``acc_format`` (None: exact) applied after each
    addition or once (``acc_apply``), overflowing by ``overflow``.  Weight (K, C/groups, kh, kw).
    """

    kind: ClassVar[str] = "conv2d"
    weight_axes: ClassVar[tuple] = ("co", "ci", "ky", "kx")
    weight: np.ndarray
    weight_format: QFormat
    bias: np.ndarray | None = None
    bias_format: QFormat | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1
    acc_format: QFormat | None = None
    overflow: str = "WRAP"
    acc_apply: str = "each"

    def __post_init__(self):
        self._check_synapse(weight_ndim=4)
        self._set("stride", positive_pair(self.name, "stride", self.stride, 1))
        self._set("padding", positive_pair(self.name, "padding", self.padding, 0))
        k = self.weight.shape[0]
        if not isinstance(self.groups, (int, np.integer)) or self.groups < 1 or k % self.groups:
            raise LayerError(self.name, "groups", self.groups, f"must be >= 1 and divide K = {k}")

    def output_shape(self, input_shape: tuple) -> tuple:
        """(K, Ho, Wo) for an input (C, H, W)."""
        if len(input_shape) != 3:
            raise LayerError(self.name, "input shape", input_shape, "a conv2d needs (C, H, W) inputs")
        c, h, w = input_shape
        k, cg, kh, kw = self.weight.shape
        if c != cg * self.groups:
            raise LayerError(
                self.name, "weight", self.weight, f"expects {cg * self.groups} input channels, the input has {c}"
            )
        (sy, sx), (py, px) = self.stride, self.padding
        if kh > h + 2 * py or kw > w + 2 * px:
            raise LayerError(self.name, "weight", self.weight, f"kernel {kh}x{kw} exceeds padded input {h}x{w}")
        check_memory(self.name, "padding", self.padding, {
            f"one padded input sample ({c}x{h + 2 * py}x{w + 2 * px})": 8 * c * (h + 2 * py) * (w + 2 * px)},
            LayerError)
        return (k, (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1)

    @cached_property
    def _weights(self):
        """The weights prepared once for the kernels (``refmodel.kernels.Weights``)."""
        from refmodel.kernels import Weights

        return Weights(self.weight, self.bias, groups=self.groups)

    def _forward(self, x, cover):
        from refmodel.kernels import conv2d

        return conv2d(
            x, self._weights, stride=self.stride, padding=self.padding, acc=self.acc_format, overflow=self.overflow,
            acc_apply=self.acc_apply, return_overflows=True, return_coverage=cover,
        )

    def fan_out(self, input_shape) -> np.ndarray:
        """``(K / groups) * ny[y] * nx[x]`` with ``ny[y] = #{(oy, i): oy*sy + i - py = y}``
        (taps that fall on the zero padding connect no input neuron)."""
        c, h, w = input_shape
        k, _, kh, kw = self.weight.shape
        _, ho, wo = self.output_shape(input_shape)
        (sy, sx), (py, px) = self.stride, self.padding
        per_channel = _taps(h, ho, kh, sy, py)[:, None] * _taps(w, wo, kw, sx, px)[None, :]
        return np.broadcast_to(per_channel * (k // self.groups), (c, h, w))


@dataclass(frozen=True, eq=False)
class Linear(_Synapse):
    """I[n,k] = b[k] + sum_f W[k,f] * s[n,f], added in the order f (docs/arithmetic.md §4)."""

    kind: ClassVar[str] = "linear"
    weight_axes: ClassVar[tuple] = ("co", "ci")
    weight: np.ndarray
    weight_format: QFormat
    bias: np.ndarray | None = None
    bias_format: QFormat | None = None
    acc_format: QFormat | None = None
    overflow: str = "WRAP"
    acc_apply: str = "each"

    def __post_init__(self):
        self._check_synapse(weight_ndim=2)

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 1 or input_shape[0] != self.weight.shape[1]:
            raise LayerError(
                self.name, "weight", self.weight, f"expects ({self.weight.shape[1]},) inputs, got {input_shape}"
            )
        return (self.weight.shape[0],)

    @cached_property
    def _weights(self):
        """The weights prepared once for the kernels (``refmodel.kernels.Weights``)."""
        from refmodel.kernels import Weights

        return Weights.linear(self.weight, self.bias)

    def _forward(self, x, cover):
        from refmodel.kernels import linear

        return linear(
            x, self._weights, acc=self.acc_format, overflow=self.overflow,
            acc_apply=self.acc_apply, return_overflows=True, return_coverage=cover,
        )

    def fan_out(self, input_shape) -> np.ndarray:
        """K for every input."""
        return np.full(input_shape, self.weight.shape[0], np.int64)
