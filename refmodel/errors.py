"""refmodel's errors: one root, one class for each kind of place a problem can be.

Every failure of input or environment that refmodel detects is a ``RefmodelError`` (a
``ValueError``); the command line prints it as one line and exits with status 2.  By where
the problem is:

* ``refmodel.fixed.FixedPointError`` a format, a mode or a value that does not fit its format
  (``FixedOverflowError``: a value left its register under ``Overflow.ERROR``);
* ``LayerError`` a layer's field, or the layer's place in its network: ``layer 'conv1': ...``;
* ``NetworkError`` the network as a whole, or a run of it: ``network 'net': ...``;
* ``SpecError`` a spec file or its ``[stimulus]``: ``spec 'net.toml': ...``;
* ``ResourceError`` a size the machine cannot hold, at the place that asks for it;
* ``refmodel.vectors.VectorFileError`` a vector file; ``OutputError`` an output path;
* ``refmodel.ann.ANNError`` a float network to convert (``ConversionError``: its conversion).

A placed error's message reads ``<place> '<name>': <field> = <value> <problem>``, the place
given by its class (an array value is shown by its shape).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

__all__ = ["RefmodelError", "PlacedError", "LayerError", "NetworkError", "SpecError", "ResourceError",
           "OutputError"]


class RefmodelError(ValueError):
    """Bad input or environment, detected and explained by refmodel."""


class PlacedError(RefmodelError):
    """An error at a named place: ``<place> '<name>': <field> = <value> <problem>``."""

    place: ClassVar[str]

    def __init__(self, name: str, field: str, value, problem: str):
        shown = f"array of shape {value.shape}" if isinstance(value, np.ndarray) else repr(value)
        super().__init__(f"{self.place} {name!r}: {field} = {shown} {problem}")
        self.name, self.field, self.value, self.problem = name, field, value, problem

    @property
    def layer(self) -> str:
        """The name of the place (a layer's, a network's, a spec's); kept for older callers."""
        return self.name


class LayerError(PlacedError):
    """A layer's field, or the layer's place in its network, is invalid."""

    place = "layer"


class NetworkError(PlacedError):
    """The network as a whole, or a run of it (its stimulus, timesteps, record list), is invalid."""

    place = "network"


class SpecError(PlacedError):
    """A spec file, its top-level keys or its ``[stimulus]`` table is invalid."""

    place = "spec"


class ResourceError(RefmodelError):
    """A size the machine cannot hold: the message names the place that asks for it, the
    field, the value and the bytes."""

    def __init__(self, where: PlacedError):
        super().__init__(str(where))
        self.place, self.name, self.field, self.value, self.problem = (
            where.place, where.name, where.field, where.value, where.problem)


class OutputError(RefmodelError):
    """An output that cannot, or must not, be written; the message names the user's path."""
