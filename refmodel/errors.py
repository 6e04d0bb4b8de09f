"""The one root of refmodel's errors.

Every failure of input or environment that refmodel detects is a ``RefmodelError``: a bad
format or value (``FixedPointError``), a layer, network or spec (``LayerError`` and its
subclasses), a vector file (``VectorFileError``), a float network to convert (``ANNError``),
a run too large for the machine (``ResourceError``), an output that cannot be written
(``OutputError``).  The message names the place, the field and the value; the command line
prints it as one line and exits with status 2.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RefmodelError", "PlacedError"]


class RefmodelError(Exception):
    """Bad input or environment, detected and explained by refmodel."""


class PlacedError(RefmodelError):
    """An error at a named place: the message reads ``<place> '<name>': <field> = <value>
    <problem>`` (an array value is shown by its shape); ``place`` is the class's unless the
    caller names another kind of place ("layer", "network", "spec")."""

    place = "input"

    def __init__(self, name: str, field: str, value, problem: str, *, place: str | None = None):
        self.place = place or type(self).place
        shown = f"array of shape {value.shape}" if isinstance(value, np.ndarray) else repr(value)
        super().__init__(f"{self.place} {name!r}: {field} = {shown} {problem}")
        self.name, self.field, self.value, self.problem = name, field, value, problem
