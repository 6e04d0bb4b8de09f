"""The layer interface: what every layer says about itself (docs/layers.md).

A layer is a small frozen dataclass that describes and validates a block; its arithmetic is in
``refmodel.kernels``.  The network, the cost model, the vector layout and the test strategies
never ask a layer for its class: they ask it for

* ``kind`` (its spec name), ``role`` (one of ``ROLES``), ``accepts`` (the roles its inputs may
  have, ``"input"`` for the network input), ``arity`` (1, or 0 for two or more inputs) and
  ``input_signals`` (what it reads of its source besides the output);
* ``output_shape(*input_shapes)`` and ``signal_formats(*input_formats)``: the signals it can
  record with their formats, ``output_signal`` naming the one that is its output (a layer
  without one passes its input's format on), ``input_shaped`` those with its input's shape;
* ``state_formats()`` / ``init_state(shape)``: its registers; ``params(*input_shapes)``: its
  integer parameters with formats and axis names, as vector files store them;
* ``event_range(*input_ranges)``: the range of the codes it outputs, for counting the events
  they cause (None: multi-bit values, such as a current); ``readout``: what it gives the
  network's outputs when it is the last layer;
* ``check_sources(*sources)``: what its place in a graph needs beyond roles, shapes, formats;
* ``stepper(site, run)``: the function that steps it one timestep in a run;
* ``static_cost(site)`` and ``measured_cost(site, totals, activity)``: its cost figures;
* ``coverage_bins`` (its functional-coverage bins, docs/coverage.md) and
  ``unreachable_bins(site)``: those its formats and settings prove can never be hit, with why.

Every concrete layer class registers itself under its ``kind`` (``Layer.registry``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, ClassVar, NamedTuple

import numpy as np

from refmodel.checks import first_outside, index_text, is_integer
from refmodel.errors import LayerError
from refmodel.fixed import FixedPointError, Overflow, QFormat

__all__ = ["SPIKE", "ROLES", "NETWORK_INPUT", "Layer", "Param", "Site", "Step", "Tally", "RunOptions", "LayerError",
           "check_name", "int_array", "positive_pair"]

#: The format of a spike: one unsigned bit.
SPIKE = QFormat(1, 0, signed=False)
#: What a layer does: make currents, reshape, integrate and fire, pool spikes, merge inputs.
ROLES = ("synapse", "shape", "neuron", "pool", "merge")
#: The name under which a layer's ``inputs`` refers to the network's input.
NETWORK_INPUT = "input"


class Param(NamedTuple):
    """An integer parameter as a vector file stores it: values, format, axis names."""

    values: np.ndarray
    fmt: QFormat
    axes: tuple


class Tally(NamedTuple):
    """The coverage counters of one step as its kernels left them: ``raw`` ({key: int64
    array}, which a run adds up over its steps as they are), and ``named(raw)``, which turns raw
    counters into {bin: int64 hits per channel}.  ``hits()``: this step's named counts."""

    raw: dict
    named: Callable

    def hits(self) -> dict:
        return self.named(self.raw)


def named_as_is(raw: dict) -> dict:
    """The ``named`` of a Tally whose raw counters already are {bin: hits per channel}."""
    return raw


class Step(NamedTuple):
    """One timestep of a layer: its ``output`` (what its readers take), the recordable
    ``signals`` it produced ({name: array or None}), the register writes that overflowed and,
    in a run that measures coverage, ``coverage``: the Tally of this step."""

    output: np.ndarray
    signals: dict
    overflows: int
    coverage: Tally | None = None


@dataclass(frozen=True)
class Site:
    """Where a layer stands in its network, as its step, cost and checks see it.

    sources: the layers it reads, in order (None for the network input); source_names the same
    by name ("input" for the network input); input_shapes / input_formats / input_ranges: per
    source, its output's per-sample shape, format and event range; output_shape,
    output_format and output_range: its own output's; readers: the layers reading its output; is_output: it is
    the network's last layer.
    """

    sources: tuple
    source_names: tuple
    input_shapes: tuple
    input_formats: tuple
    input_ranges: tuple
    output_shape: tuple
    output_format: QFormat
    output_range: tuple | None
    readers: tuple
    is_output: bool

    @property
    def input_shape(self) -> tuple:
        """The per-sample shape of the layer's input (of its inputs merged: its output's, for a merge)."""
        return self.input_shapes[0] if len(self.input_shapes) == 1 else self.output_shape


@dataclass(frozen=True)
class RunOptions:
    """What a run tells each layer's ``stepper``: whether the network input is the same every
    timestep (a synapse reading it then computes its current once), the recorded signals
    ({layer: set of signals}) and whether each step counts its coverage bins."""

    constant_input: bool
    recorded: dict
    coverage: bool = False


def check_name(name, error=LayerError) -> None:
    """A layer's (or network's) name: an ASCII letter, then up to 63 ASCII letters, digits and
    ``_`` (what a vector file's group names and a Verilog macro take)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name):
        raise error(str(name), "name", name, "must be a non-empty name of ASCII letters, digits and _, "
                                             "starting with a letter, at most 64 characters")


@dataclass(frozen=True, eq=False)
class Layer:
    """The base of every layer: a ``name`` and the ``inputs`` it reads (layer names, or
    ``"input"`` for the network input; None: the previous layer's output, or the network
    input for the first layer).  See the module docstring for the interface."""

    name: str
    inputs: tuple | None = field(default=None, kw_only=True)

    kind: ClassVar[str]
    role: ClassVar[str]
    accepts: ClassVar[tuple]
    arity: ClassVar[int] = 1
    signals: ClassVar[tuple] = ()
    output_signal: ClassVar[str | None] = None
    input_shaped: ClassVar[tuple] = ()
    #: Signals of its source it reads besides the source's output (a Vm max-pool: the Vm).
    input_signals: ClassVar[tuple] = ()
    readout: ClassVar[dict] = {}
    #: Its functional-coverage bins, in report order (docs/coverage.md).
    coverage_bins: ClassVar[tuple] = ()
    #: Every concrete layer class by its kind, in the order the classes were defined.
    registry: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Layer.registry[cls.kind] = cls

    def __post_init__(self):
        check_name(self.name)
        if self.inputs is None:
            return
        names = self.inputs
        if not isinstance(names, (list, tuple)) or not names:
            raise LayerError(self.name, "inputs", names, "must be a non-empty list of layer names (or 'input')")
        for name in names:
            check_name(name)
        if len(set(names)) != len(names):
            raise LayerError(self.name, "inputs", list(names), "names a layer twice")
        if self.arity == 1 and len(names) != 1:
            raise LayerError(self.name, "inputs", list(names), f"a {self.kind} layer reads exactly one input")
        if self.arity == 0 and len(names) < 2:
            raise LayerError(self.name, "inputs", list(names), f"a {self.kind} layer merges two or more inputs")
        object.__setattr__(self, "inputs", tuple(names))

    def _set(self, name, value):
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ shapes and formats
    def output_shape(self, *input_shapes) -> tuple:
        """The per-sample shape of the output for inputs of these per-sample shapes."""
        raise NotImplementedError

    def signal_formats(self, *input_formats) -> dict:
        """{signal: QFormat} of what the layer can record, in recording order."""
        return {}

    def output_format(self, *input_formats) -> QFormat:
        """The format of the output: its output signal's, else (a reshape) its input's."""
        if self.output_signal is None:
            return input_formats[0]
        return self.signal_formats(*input_formats)[self.output_signal]

    def check_sources(self, *sources) -> None:
        """Raise LayerError unless the layers it reads suit it (beyond roles, shapes and formats)."""

    def event_range(self, *input_ranges):
        """(lo, hi) of the codes it outputs, or None for multi-bit values (no events)."""
        return None

    # ------------------------------------------------------------------ state and parameters
    def state_formats(self) -> dict:
        """{register: QFormat} of the state it keeps from one timestep to the next."""
        return {}

    def init_state(self, shape) -> dict:
        """Its registers at zero, int64 arrays of the batch input shape ``(N, ...)``."""
        return {key: np.zeros(tuple(shape), np.int64) for key in self.state_formats()}

    def params(self, *input_shapes) -> dict:
        """{name: Param} of its integer parameters, as vector files store them."""
        return {}

    # ------------------------------------------------------------------ running
    def stepper(self, site: Site, run: RunOptions) -> Callable:
        """``step(frame) -> Step``, called once per timestep with the run's ``frame``
        (``frame.outputs``, ``frame.steps`` and ``frame.states`` by layer name)."""
        raise NotImplementedError

    def unreachable_bins(self, site: Site) -> dict:
        """{bin: reason} of its coverage bins that its formats and settings prove can never be hit."""
        return {}

    # ------------------------------------------------------------------ cost
    def static_cost(self, site: Site) -> tuple[dict, dict]:
        """({operation or traffic: count} per sample and timestep, {memory: count} per sample),
        the nonzero figures only (docs/cost-model.md)."""
        return {}, {}

    def measured_cost(self, site: Site, totals: dict, activity) -> dict:
        """The figures of a run: ``totals`` (the static ones × T × N) with the event-driven ones
        counted from ``activity`` (``activity.of(name)``: Σ_t |output| of a layer or of the
        network input, per sample)."""
        return totals


# --------------------------------------------------------------------------- field checks
def int_array(layer: str, field: str, value, fmt: QFormat | None, ndim: int | None = None) -> np.ndarray:
    """``value`` as a read-only int64 array whose codes fit ``fmt`` (when given)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":  # (booleans are not codes: true/false in a spec is a mistake)
        raise LayerError(layer, field, value, f"must be integer codes, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise LayerError(layer, field, arr, f"must have {ndim} dimensions, got {arr.ndim}")
    if fmt is not None:
        if not isinstance(fmt, QFormat):
            raise LayerError(layer, f"{field}_format", fmt, "must be a QFormat")
        try:
            fmt.check_datapath()
        except FixedPointError as err:
            raise LayerError(layer, f"{field}_format", str(fmt), str(err)) from None
        outside = first_outside(arr, fmt.min_int, fmt.max_int)
        if outside:
            index, code = outside
            raise LayerError(layer, field, arr, f"has {field}{index_text(index)} = {code}, which does not fit {fmt} "
                                                f"(range {fmt.min_int}..{fmt.max_int})")
    arr = arr.astype(np.int64)
    arr.setflags(write=False)
    return arr


def positive_pair(layer: str, field: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= ``minimum``."""
    pair = (value, value) if is_integer(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(is_integer(v) for v in pair):
        raise LayerError(layer, field, value, "must be an integer or a pair of integers")
    if min(pair) < minimum:
        raise LayerError(layer, field, value, f"must be >= {minimum}")
    return int(pair[0]), int(pair[1])


def spike_buffer_bits(site: Site, readout: bool = False) -> int:
    """Bits of one timestep's output of a spiking layer: 0 when only pools read it (they
    consume it in place) or when it is the network's Vm readout (``readout``)."""
    if site.readers and all(reader.role == "pool" for reader in site.readers):
        return 0
    if site.is_output and readout:
        return 0
    return math.prod(site.output_shape) * site.output_format.bits


def write_bins_unreachable(register: str, overflow: Overflow, sides: dict) -> dict:
    """{bin: reason} of the write-beyond-range bins ``<register>_{wrap,sat}_{high,low}`` that
    cannot be hit: those of the other modes (ERROR stops the run instead), and each side whose
    reason in ``sides`` is not None (a range proof)."""
    out = {}
    for mode in ("wrap", "sat"):
        matches = overflow == Overflow.WRAP if mode == "wrap" else overflow in (Overflow.SAT, Overflow.SAT_SYM)
        for side in ("high", "low"):
            if not matches:
                out[f"{register}_{mode}_{side}"] = (
                    "overflow ERROR stops the run at the first write beyond the range" if overflow == Overflow.ERROR
                    else f"overflow is {overflow.name}")
            elif sides[side] is not None:
                out[f"{register}_{mode}_{side}"] = sides[side]
    return out


def write_bins(register: str, overflow: Overflow, high, low) -> dict:
    """{``<register>_{wrap,sat}_{high,low}``: hits per channel}: the register writes beyond its
    range, above (``high``) and below (``low``), under the bins of its overflow mode (WRAP: wrap,
    SAT and SAT_SYM: sat); the other mode's bins zero."""
    zeros = np.zeros_like(high)
    wrap = overflow == Overflow.WRAP
    sat = overflow in (Overflow.SAT, Overflow.SAT_SYM)
    return {f"{register}_wrap_high": high if wrap else zeros, f"{register}_wrap_low": low if wrap else zeros,
            f"{register}_sat_high": high if sat else zeros, f"{register}_sat_low": low if sat else zeros}
