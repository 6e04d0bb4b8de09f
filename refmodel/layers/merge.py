"""Merge layers: they combine the outputs of two or more layers (docs/arithmetic.md §7)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from refmodel.checks import first_outside, index_text
from refmodel.fixed import FixedOverflowError, FixedPointError, Overflow, QFormat, cast
from refmodel.layers.base import Layer, LayerError, Step, Tally, named_as_is, write_bins, write_bins_unreachable

_INT64_MAX = 2**63 - 1


def _union(ranges):
    """The smallest range holding every range of ``ranges`` (None when one is None)."""
    if any(r is None for r in ranges):
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


@dataclass(frozen=True, eq=False)
class _Merge(Layer):
    """Reads the layers ``inputs`` names (two or more, in that order) and records ``out``."""

    role: ClassVar[str] = "merge"
    accepts: ClassVar[tuple] = ("input", "synapse", "shape", "neuron", "pool", "merge")
    arity: ClassVar[int] = 0
    signals: ClassVar[tuple] = ("out",)
    output_signal: ClassVar[str] = "out"

    def __post_init__(self):
        super().__post_init__()
        if self.inputs is None:
            raise LayerError(self.name, "inputs", None, f"a {self.kind} layer names the layers it merges")

    def stepper(self, site, run):
        sources = site.source_names

        def step(frame):
            return self._merge([frame.outputs[name] for name in sources], run.coverage)

        return step


@dataclass(frozen=True, eq=False)
class Add(_Merge):
    """out = cast(x_0 + x_1 + ... + x_{k-1}, format, overflow): the element-wise sum of its
    inputs (equal shapes; each input's frac equal to ``format.frac``), added exactly in the order
    of ``inputs``, then written once into the register of ``format``; a value outside it
    overflows by ``overflow`` (WRAP, SAT, SAT_SYM or ERROR) and is counted.

    The residual form of a spiking ResNet: the currents of two synaptic layers summed into the
    current of one neuron layer (NIR's meaning of several edges into one node).
    """

    kind: ClassVar[str] = "add"
    coverage_bins: ClassVar[tuple] = ("out_wrap_high", "out_wrap_low", "out_sat_high", "out_sat_low")
    format: QFormat
    overflow: Overflow | str = "ERROR"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.format, QFormat):
            raise LayerError(self.name, "format", self.format, "must be a QFormat: the register the sum is written to")
        try:
            self.format.check_datapath()
        except FixedPointError as err:
            raise LayerError(self.name, "format", str(self.format), str(err)) from None
        try:
            self._set("overflow", Overflow.of(self.overflow))
        except FixedPointError as err:
            raise LayerError(self.name, "overflow", self.overflow, str(err)) from None

    def output_shape(self, *input_shapes) -> tuple:
        """The inputs' shape, which they all share."""
        for name, shape in zip(self.inputs[1:], input_shapes[1:]):
            if tuple(shape) != tuple(input_shapes[0]):
                raise LayerError(self.name, "inputs", list(self.inputs),
                                 f"differ in shape: {self.inputs[0]!r} {tuple(input_shapes[0])}, {name!r} {tuple(shape)}")
        return tuple(input_shapes[0])

    def signal_formats(self, *input_formats) -> dict:
        for name, fmt in zip(self.inputs, input_formats):
            if fmt.frac != self.format.frac:
                raise LayerError(self.name, "format", str(self.format),
                                 f"has frac {self.format.frac}, input {name!r} is {fmt} (frac {fmt.frac}): codes of "
                                 "different scales cannot be added")
        if sum(max(-fmt.min_int, fmt.max_int) for fmt in input_formats) > _INT64_MAX:
            raise LayerError(self.name, "inputs", list(self.inputs), "can sum beyond int64")
        return {"out": self.format}

    def event_range(self, *input_ranges):
        """The exact sum's range, as the register keeps it (None for multi-bit inputs)."""
        if any(r is None for r in input_ranges):
            return None
        lo, hi = sum(r[0] for r in input_ranges), sum(r[1] for r in input_ranges)
        low, high = self.format.bounds(self.overflow)
        if low <= lo and hi <= high:
            return lo, hi
        if self.overflow == Overflow.WRAP:
            return self.format.min_int, self.format.max_int
        return max(lo, low), min(hi, high)

    def unreachable_bins(self, site) -> dict:
        """The bins of the other overflow mode, and a side the inputs' formats cannot sum beyond."""
        lo = sum(fmt.min_int for fmt in site.input_formats)
        hi = sum(fmt.max_int for fmt in site.input_formats)
        low, high = self.format.bounds(self.overflow)
        proof = f"the inputs' formats sum to {lo}..{hi}"
        return write_bins_unreachable("out", self.overflow, {"high": proof if hi <= high else None,
                                                             "low": proof if lo >= low else None})

    def _merge(self, values, cover=False) -> Step:
        total = values[0].astype(np.int64)
        for x in values[1:]:
            total += x
        lo, hi = self.format.bounds(self.overflow)
        coverage = None
        if cover:
            per_channel = (0, *range(2, total.ndim))
            coverage = Tally(write_bins("out", self.overflow, (total > hi).sum(axis=per_channel, dtype=np.int64),
                                        (total < lo).sum(axis=per_channel, dtype=np.int64)), named_as_is)
        outside = first_outside(total, lo, hi)
        if outside is None:
            return Step(total, {"out": total}, 0, coverage)
        if self.overflow == Overflow.ERROR:
            index, value = outside
            raise FixedOverflowError(f"layer {self.name!r}: out{index_text(index)} = {value} overflows {self.format} "
                                     f"(range {lo}..{hi}) under Overflow.ERROR", index=index, value=value)
        overflows = int(np.count_nonzero((total < lo) | (total > hi)))
        out = cast(total, self.format, self.overflow)
        return Step(out, {"out": out}, overflows, coverage)

    def static_cost(self, site):
        """k - 1 additions per element (k inputs), no weights, no state."""
        return {"merge_adds": (len(site.sources) - 1) * math.prod(site.output_shape)}, {}


@dataclass(frozen=True, eq=False)
class Concat(_Merge):
    """out = [x_0, x_1, ..., x_{k-1}] along the channel axis (the first axis of a sample), in the
    order of ``inputs``: shapes equal but for that axis, formats equal.  No arithmetic."""

    kind: ClassVar[str] = "concat"

    def output_shape(self, *input_shapes) -> tuple:
        first = tuple(input_shapes[0])
        for name, shape in zip(self.inputs[1:], input_shapes[1:]):
            if len(shape) != len(first) or tuple(shape[1:]) != first[1:]:
                raise LayerError(self.name, "inputs", list(self.inputs),
                                 f"differ beyond the channel axis: {self.inputs[0]!r} {first}, {name!r} {tuple(shape)}")
        return (sum(shape[0] for shape in input_shapes), *first[1:])

    def signal_formats(self, *input_formats) -> dict:
        for name, fmt in zip(self.inputs[1:], input_formats[1:]):
            if fmt != input_formats[0]:
                raise LayerError(self.name, "inputs", list(self.inputs),
                                 f"differ in format: {self.inputs[0]!r} {input_formats[0]}, {name!r} {fmt}")
        return {"out": input_formats[0]}

    def event_range(self, *input_ranges):
        return _union(input_ranges)

    def _merge(self, values, cover=False) -> Step:
        out = np.concatenate(values, axis=1)
        return Step(out, {"out": out}, 0)
