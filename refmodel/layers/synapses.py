"""Synaptic layers: integer weights turn the previous layer's output into input currents.

The arithmetic (accumulation order, where the accumulator format applies) is
docs/arithmetic.md §4; these classes only describe and validate a layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from refmodel.fixed import FixedPointError, Overflow, QFormat
from refmodel.layers.base import LayerError, check_name, int_array, positive_pair
from refmodel.limits import check_memory, elements

ACC_APPLY = ("each", "once")


def _check_accumulator(layer, acc_format, overflow, acc_apply) -> None:
    if acc_format is not None and not isinstance(acc_format, QFormat):
        raise LayerError(layer, "acc_format", acc_format, "must be a QFormat or None (exact)")
    try:
        Overflow.of(overflow)
    except FixedPointError as err:
        raise LayerError(layer, "overflow", overflow, str(err)) from None
    if acc_apply not in ACC_APPLY:
        raise LayerError(layer, "acc_apply", acc_apply, f"must be one of {ACC_APPLY}")


def _check_bias_fits_accumulator(layer, bias, acc_format, overflow, acc_apply) -> None:
    """Under acc_apply="each" the accumulator register starts at the bias (arithmetic.md §4)."""
    if bias is None or acc_format is None or acc_apply != "each":
        return
    lo, hi = acc_format.bounds(overflow)
    outside = np.flatnonzero((bias < lo) | (bias > hi))
    if outside.size:
        k = int(outside[0])
        raise LayerError(layer, f"bias[{k}]", int(bias[k]), f"does not fit the accumulator {acc_format} ({lo}..{hi})")


def _bias(layer, bias, bias_format, k):
    if bias is None:
        if bias_format is not None:
            raise LayerError(layer, "bias_format", bias_format, "given without a bias")
        return None
    if bias_format is None:
        raise LayerError(layer, "bias_format", None, "a bias needs its declared format")
    arr = int_array(layer, "bias", bias, bias_format, ndim=1)
    if arr.shape != (k,):
        raise LayerError(layer, "bias", arr, f"must have shape ({k},), one per output channel")
    return arr


@dataclass(frozen=True, eq=False)
class Conv2d:
    """I[n,k,y,x] = b[k] + sum_{c,i,j} W[k,c,i,j] * s[n, g*Cg + c, y*sy + i - py, x*sx + j - px]

    with ``g = k // (K / groups)``, ``Cg = C / groups``, zero padding, and the products added in
    the order c, i, j into an accumulator of ``acc_format`` (None: exact) applied after each
    addition or once (``acc_apply``), overflowing by ``overflow``.  Weight (K, C/groups, kh, kw).
    """

    kind: ClassVar[str] = "conv2d"
    name: str
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
        check_name(self.name)
        w = int_array(self.name, "weight", self.weight, self.weight_format, ndim=4)
        set_ = object.__setattr__
        set_(self, "weight", w)
        set_(self, "stride", positive_pair(self.name, "stride", self.stride, 1))
        set_(self, "padding", positive_pair(self.name, "padding", self.padding, 0))
        if not isinstance(self.groups, (int, np.integer)) or self.groups < 1 or w.shape[0] % self.groups:
            raise LayerError(self.name, "groups", self.groups, f"must be >= 1 and divide K = {w.shape[0]}")
        set_(self, "bias", _bias(self.name, self.bias, self.bias_format, w.shape[0]))
        _check_accumulator(self.name, self.acc_format, self.overflow, self.acc_apply)
        _check_bias_fits_accumulator(self.name, self.bias, self.acc_format, self.overflow, self.acc_apply)

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
            place="layer")
        return (k, (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1)

    @cached_property
    def _weights(self):
        """The weights prepared once for the kernels (``refmodel.kernels.Weights``)."""
        from refmodel.kernels import Weights

        return Weights(self.weight, self.bias, groups=self.groups)

    def forward(self, x):
        """(currents int64 (N, K, Ho, Wo), number of accumulator overflows)."""
        from refmodel.kernels import conv2d

        return conv2d(
            x, self._weights, stride=self.stride, padding=self.padding,
            acc=self.acc_format, overflow=self.overflow, acc_apply=self.acc_apply, return_overflows=True,
        )

    def params(self) -> dict:
        """name -> (integer array, QFormat), as stored in vector files."""
        out = {"weight": (self.weight, self.weight_format)}
        if self.bias is not None:
            out["bias"] = (self.bias, self.bias_format)
        return out


@dataclass(frozen=True, eq=False)
class Linear:
    """I[n,k] = b[k] + sum_f W[k,f] * s[n,f], added in the order f (docs/arithmetic.md §4)."""

    kind: ClassVar[str] = "linear"
    name: str
    weight: np.ndarray
    weight_format: QFormat
    bias: np.ndarray | None = None
    bias_format: QFormat | None = None
    acc_format: QFormat | None = None
    overflow: str = "WRAP"
    acc_apply: str = "each"

    def __post_init__(self):
        check_name(self.name)
        w = int_array(self.name, "weight", self.weight, self.weight_format, ndim=2)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", _bias(self.name, self.bias, self.bias_format, w.shape[0]))
        _check_accumulator(self.name, self.acc_format, self.overflow, self.acc_apply)
        _check_bias_fits_accumulator(self.name, self.bias, self.acc_format, self.overflow, self.acc_apply)

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

    def forward(self, x):
        """(currents int64 (N, K), number of accumulator overflows)."""
        from refmodel.kernels import linear

        return linear(
            x, self._weights, acc=self.acc_format, overflow=self.overflow,
            acc_apply=self.acc_apply, return_overflows=True,
        )

    params = Conv2d.params


@dataclass(frozen=True)
class Flatten:
    """s[n, (c*H + y)*W + x] = s[n, c, y, x]: row-major, no arithmetic."""

    kind: ClassVar[str] = "flatten"
    name: str

    def __post_init__(self):
        check_name(self.name)

    def output_shape(self, input_shape: tuple) -> tuple:
        return (elements(input_shape),)
