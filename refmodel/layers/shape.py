"""Shape layers: they move values, no arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from refmodel.layers.base import Layer, Step
from refmodel.limits import elements


@dataclass(frozen=True, eq=False)
class Flatten(Layer):
    """s[n, (c*H + y)*W + x] = s[n, c, y, x]: row-major, no arithmetic."""

    kind: ClassVar[str] = "flatten"
    role: ClassVar[str] = "shape"
    accepts: ClassVar[tuple] = ("neuron", "pool", "merge")

    def output_shape(self, input_shape: tuple) -> tuple:
        return (elements(input_shape),)

    def event_range(self, input_range):
        return input_range

    def stepper(self, site, run):
        source = site.source_names[0]

        def step(frame):
            x = frame.outputs[source]
            return Step(x.reshape(x.shape[0], -1), {}, 0)

        return step
