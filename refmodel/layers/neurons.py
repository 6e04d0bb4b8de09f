"""Neuron layers: IF, LIF, DualThreshold (DT-SCNN) and the Loihi CUBA LIF preset.

Each layer is a frozen description, validated on construction, with one uniform way to run
it one timestep at a time::

    state = layer.init_state((N, C, H, W))     # dict of int64 arrays, Vm = 0
    out = layer.step(state, current)           # current: int64, same shape
    out.spikes, out.v_pre, out.v_post, out.overflows

``step`` checks the state and the current and leaves the state alone when it raises;
``advance`` (what the network simulator calls, having checked the shapes and formats when
the network was built) skips those checks and updates the state's arrays in place.

The arithmetic of every option, in order, is specified in ``docs/neurons.md``; the work is
done by the Numba kernels of ``refmodel.kernels.neurons``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from refmodel.checks import checked_integer, first_outside, index_text
from refmodel.fixed import FixedOverflowError, FixedPointError, Overflow, QFormat, Rounding
from refmodel.kernels import neurons as K
from refmodel.layers.base import (SPIKE, Layer, LayerError, Param, Step, Tally, spike_buffer_bits, write_bins,
                                   write_bins_unreachable)

__all__ = [
    "NeuronStep",
    "IF",
    "LIF",
    "DualThreshold",
    "LoihiLIF",
    "COMPARES",
    "RESETS",
    "LEAKS",
    "ORDERS",
    "RESET_BY",
]

_COMPARE_CODES = {">=": K.CMP_GE, ">": K.CMP_GT}
_RESET_CODES = {"subtract": K.RESET_SUBTRACT, "zero": K.RESET_ZERO, "value": K.RESET_VALUE, "none": K.RESET_NONE}
_LEAK_CODES = {"none": K.LEAK_NONE, "shift": K.LEAK_SHIFT, "mul": K.LEAK_MUL, "linear": K.LEAK_LINEAR}
_ORDER_CODES = {"leak_first": K.ORDER_LEAK_FIRST, "integrate_first": K.ORDER_INTEGRATE_FIRST}
_DRIVE_CODES = {"s1": K.DRIVE_S1, "s2": K.DRIVE_S2, "either": K.DRIVE_EITHER}
COMPARES, RESETS, LEAKS, ORDERS, RESET_BY = map(tuple, (_COMPARE_CODES, _RESET_CODES, _LEAK_CODES, _ORDER_CODES, _DRIVE_CODES))

MAX_VM_BITS = 62  # with |current| <= 2**62, V + I is exact in int64
MAX_CURRENT = 2**62
_NO_REFRACTORY = np.zeros((0, 0, 0), np.int64)  # stands for the unused counter arrays


class NeuronStep(NamedTuple):
    """The result of one ``step`` (or ``advance``).

    spikes:    uint8, shape of the current; (N, 2C, ...) = [s1, s2] for DualThreshold.
    v_pre:     int64 Vm after integration (and lower bound), before the reset
               (None from ``advance(..., keep_pre=False)``).
    v_post:    int64 Vm after the reset: the array held in ``state["v"]`` (after ``step``
               never written again; after ``advance`` it changes with the next ``advance``).
    overflows: number of register writes wrapped or saturated in this step.
    coverage:  the Tally of the layer's coverage bins in this step (``step(..., cover=True)``;
               ``coverage.hits()``: {bin: int64 hits per Vm channel}), else None.
    """

    spikes: np.ndarray
    v_pre: np.ndarray
    v_post: np.ndarray
    overflows: int
    coverage: Tally | None = None


# --------------------------------------------------------------------------- validation
def _where(layer) -> str:
    return f"{type(layer).__name__} {layer.name!r}"


def _fail(layer, field, value, why):
    raise LayerError(layer.name, field, value, why)


def _check_int(layer, field, value, lo, hi) -> int:
    return checked_integer(value, lo, hi, LayerError, layer.name, field)


def _check_channels(layer, field, value, lo, hi):
    """An integer, or a sequence of one integer per channel (axis 1); each in lo..hi."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.ndim == 1 else [value]
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            _fail(layer, field, value, "must be an integer or a non-empty 1-D sequence (one per channel)")
        return tuple(_check_int(layer, f"{field}[{i}]", v, lo, hi) for i, v in enumerate(value))
    return _check_int(layer, field, value, lo, hi)


def _per_channel(layer, field, value, n_ch) -> np.ndarray:
    if isinstance(value, tuple):
        if len(value) != n_ch:
            _fail(layer, field, value, f"has {len(value)} entries but the input has {n_ch} channels (axis 1)")
        return np.array(value, np.int64)
    return np.full(n_ch, value, np.int64)


def _check_choice(layer, field, value, choices):
    if not isinstance(value, str) or value not in choices:
        _fail(layer, field, value, f"must be one of {', '.join(map(repr, choices))}")


def _check_mode(layer, field, value, enum):
    try:
        return enum.of(value)
    except FixedPointError:
        _fail(layer, field, value, f"must be a {enum.__name__} mode ({', '.join(m.name for m in enum)})")


def _check_shape(layer, shape) -> tuple:
    if not isinstance(shape, (tuple, list)) or len(shape) < 2:
        _fail(layer, "shape", shape, "must be (N, C, ...) with at least 2 axes")
    return tuple(_check_int(layer, f"shape[{i}]", d, 0, 2**62) for i, d in enumerate(shape))


def _check_array(layer, field, arr, shape, lo, hi):
    """An int64 ndarray of ``shape`` with every value in lo..hi."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.int64:
        _fail(layer, field, type(arr).__name__ if not isinstance(arr, np.ndarray) else arr.dtype, "must be an int64 ndarray")
    if arr.shape != shape:
        _fail(layer, f"{field}.shape", arr.shape, f"must be {shape}")
    outside = first_outside(arr, lo, hi)
    if outside:
        index, value = outside
        _fail(layer, f"{field}{index_text(index)}", value, f"is outside {lo}..{hi}")


def _check_state(layer, state, ranges: dict) -> tuple:
    """The state dict holds exactly the keys of ``ranges``: int64 arrays of state["v"]'s shape, in range."""
    if not isinstance(state, dict) or set(state) != set(ranges):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        _fail(layer, "state keys", keys, f"must be {sorted(ranges)} (from init_state)")
    shape = getattr(state["v"], "shape", None)
    for key, (lo, hi) in ranges.items():
        _check_array(layer, f"state[{key!r}]", state[key], shape, lo, hi)
    return shape


def _flat3(shape) -> tuple:
    """(N, C, *S) -> (N, C, M) with M = prod(S)."""
    return (shape[0], shape[1], math.prod(shape[2:]))


def _flat_view(layer, state, key, flat):
    """``state[key]`` as an (N, C, M) view, so that a kernel updates it in place."""
    arr = state[key]
    if not (isinstance(arr, np.ndarray) and arr.dtype == np.int64 and arr.flags.c_contiguous and arr.flags.writeable):
        _fail(layer, f"state[{key!r}]", getattr(arr, "dtype", type(arr).__name__), "must be a writeable C-contiguous int64 array")
    return arr.reshape(flat)


def _kernel_bins(n, n_ch, n_bins, cover) -> np.ndarray:
    """The per-row coverage counters of a kernel: zeros (N·C, n_bins), or empty when not covering."""
    return np.zeros((n * n_ch if cover else 0, n_bins), np.int64)


def _per_vm_channel(cov, n_ch) -> np.ndarray:
    """Per-row kernel counters (N·C, bins) summed over the batch: (C, bins)."""
    return cov.reshape(-1, n_ch, cov.shape[1]).sum(axis=0)


def _run_neuron_kernel(layer, shape, v, refr, current, thr, modes, fmt: QFormat, overflow: Overflow, keep_pre,
                       cover):
    """Run ``K.neuron_step`` with ``modes`` (``K.NeuronModes``) on (N, C, M) views of ``shape``
    (``v`` and ``refr`` in place); raise the first overflow under ERROR.  Returns spikes, v_pre
    (None unless ``keep_pre``), the overflow count and (when ``cover``) the kernel's coverage
    counters per channel, (C, K.N_COV)."""
    current = np.ascontiguousarray(current)  # one specialization
    n, n_ch, m = current.shape
    spikes = np.empty((n, thr.shape[0] * n_ch, m), np.uint8)
    v_pre = np.empty_like(current) if keep_pre else _NO_REFRACTORY
    ovf = np.empty(n * n_ch, np.int64)
    err = np.empty((n * n_ch, 3), np.int64)
    cov = np.zeros((n_ch if cover else 0, K.N_COV), np.int64)
    K.neuron_step(v, refr, current, thr, modes, spikes, v_pre, ovf, err, cov)
    if overflow == Overflow.ERROR:
        _raise_first_overflow(layer, err, shape, fmt, overflow)
    return spikes, (v_pre if keep_pre else None), int(ovf.sum()), (cov if cover else None)


def _raise_first_overflow(layer, err, shape, fmt, overflow):
    """FixedOverflowError for the first row-major (integrate before reset) overflowing write."""
    rows = np.flatnonzero(err[:, 0] >= 0)
    if not rows.size:
        return
    row = int(rows[0])
    n, c = divmod(row, shape[1])
    index = (n, c) + tuple(int(i) for i in np.unravel_index(int(err[row, 0]), shape[2:]))
    value = int(err[row, 2])
    write = "V + I (integrate)" if err[row, 1] == K.WRITE_INTEGRATE else "V - theta (reset)"
    lo, hi = fmt.bounds(overflow)
    raise FixedOverflowError(
        f"{_where(layer)}: v[{', '.join(map(str, index))}] = {value} from {write} overflows {fmt} "
        f"(range {lo}..{hi}) under Overflow.ERROR",
        index=index,
        value=value,
    )


# --------------------------------------------------------------------------- the neuron interface
@dataclass(frozen=True, kw_only=True)
class _NeuronLayer(Layer):
    """What every neuron layer says about itself (the ``Layer`` interface): it integrates its
    input (a current) into its Vm, records ``v_pre``, ``v_post`` (of its input's shape) and
    ``spikes``, outputs its spikes, and as the network's last layer gives its final Vm ``v``.

    Subclasses give ``spike_maps`` (spike maps per Vm map), ``reset``, ``leaks`` (leak
    operations per neuron and timestep), ``_state_ranges``, ``state_formats``, ``step`` and
    ``advance``."""

    role: ClassVar[str] = "neuron"
    accepts: ClassVar[tuple] = ("synapse", "merge")
    signals: ClassVar[tuple] = ("v_pre", "v_post", "spikes")
    output_signal: ClassVar[str] = "spikes"
    input_shaped: ClassVar[tuple] = ("v_pre", "v_post")
    readout: ClassVar[dict] = {"v": "v_post"}
    spike_maps: ClassVar[int] = 1

    #: Kernel counter (``K.COV_*``) of each bin that is not a Vm write beyond the range.
    _BIN_CODES: ClassVar[dict] = {
        "v_at_threshold": K.COV_AT_THR0, "v_at_theta1": K.COV_AT_THR0, "v_at_theta2": K.COV_AT_THR1,
        "v_min_clamped": K.COV_VMIN, "reset_to_value": K.COV_RESET_VALUE, "refractory_start": K.COV_REFR_START,
        "refractory_end": K.COV_REFR_END, "leak_tie": K.COV_LEAK_TIE, "leak_to_zero": K.COV_LEAK_ZERO,
        "s1_only": K.COV_S1_ONLY, "s2_only": K.COV_S2_ONLY, "both": K.COV_BOTH, "neither_positive": K.COV_NEITHER_POS,
    }  # fmt: skip

    @property
    def leaks(self) -> int:
        return 0

    def _named_bins(self, counts, overflow: Overflow) -> dict:
        """{bin: hits per Vm channel} from the kernel's counters per channel (C, K.N_COV): a Vm
        write beyond the range is a ``v_wrap_*`` or ``v_sat_*`` hit by the register's overflow
        mode."""
        named = write_bins("v", overflow, counts[:, K.COV_HIGH], counts[:, K.COV_LOW])
        named |= {name: counts[:, code] for name, code in self._BIN_CODES.items()}
        return {name: named[name] for name in self.coverage_bins if name in named}

    def output_shape(self, input_shape) -> tuple:
        """Per-sample spike shape for a per-sample current shape (C, ...): (spike_maps·C, ...)."""
        return (self.spike_maps * input_shape[0], *input_shape[1:])

    def signal_formats(self, current_format) -> dict:
        vm = self.state_formats()["v"]
        return {"v_pre": vm, "v_post": vm, "spikes": SPIKE}

    def event_range(self, current_range):
        return (0, 1)

    def stepper(self, site, run):
        """``advance`` (no per-step checks, in place) when the input current provably lies
        within ±MAX_CURRENT, else the checked ``step``; the Vm before reset is kept only when
        it is recorded or a reader ranks by it."""
        source = site.source_names[0]
        current = site.input_formats[0]
        if -MAX_CURRENT <= current.min_int and current.max_int <= MAX_CURRENT:
            keep_pre = "v_pre" in run.recorded.get(self.name, ()) or any(
                "v_pre" in reader.input_signals for reader in site.readers)

            def update(state, x):
                return self.advance(state, x, keep_pre, cover=run.coverage)
        else:
            def update(state, x):
                return self.step(state, x, cover=run.coverage)

        def step(frame):
            out = update(frame.states[self.name], frame.outputs[source])
            return Step(out.spikes, {"v_pre": out.v_pre, "v_post": out.v_post, "spikes": out.spikes}, out.overflows,
                        out.coverage)

        return step

    def static_cost(self, site):
        """Per neuron: one update, a compare per spike map, its leak operations, its state
        registers read and written; the spikes buffered unless a pool or the readout takes them."""
        n = math.prod(site.input_shape)
        formats = self.state_formats()
        state_bits = n * sum(fmt.bits for key, fmt in formats.items() if key != "refractory")
        ops = {"neuron_updates": n, "threshold_compares": n * self.spike_maps, "leak_ops": n * self.leaks,
               "vm_read_bits": state_bits, "vm_write_bits": state_bits}
        memory = {"neurons": n, "vm_bits": state_bits,
                  "refractory_bits": n * formats["refractory"].bits if "refractory" in formats else 0,
                  "spike_buffer_bits": spike_buffer_bits(site, readout=self.reset == "none")}
        return ops, memory


# --------------------------------------------------------------------------- IF / LIF / DT
@dataclass(frozen=True, kw_only=True)
class _Neuron(_NeuronLayer):
    """Fields shared by IF, LIF and DualThreshold (see docs/neurons.md for the order of operations).

    name: layer name.  vm: QFormat of the membrane potential V (bits <= 62).
    overflow: what the V register does when a write leaves vm (WRAP, SAT, SAT_SYM, ERROR).
    compare: ">=" or ">".  reset: "subtract" (V -= theta), "zero", "value" (V = reset_value), "none".
    v_min: optional lower bound applied to V after integration.
    refractory: timesteps a neuron holds V and stays silent after its reset fires (0 = none).
    """

    vm: QFormat
    overflow: Overflow | str = Overflow.ERROR
    compare: str = ">="
    reset: str = "subtract"
    reset_value: int = 0
    v_min: int | None = None
    refractory: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.vm, QFormat):
            _fail(self, "vm", self.vm, "must be a QFormat")
        if self.vm.bits > MAX_VM_BITS:
            _fail(self, "vm", str(self.vm), f"must have at most {MAX_VM_BITS} bits (V + I is computed in int64)")
        self._set("overflow", _check_mode(self, "overflow", self.overflow, Overflow))
        _check_choice(self, "compare", self.compare, COMPARES)
        _check_choice(self, "reset", self.reset, RESETS)
        lo, hi = self.vm.bounds(self.overflow)
        self._set("reset_value", _check_int(self, "reset_value", self.reset_value, lo, hi))
        if self.v_min is not None:
            self._set("v_min", _check_int(self, "v_min", self.v_min, lo, hi))
        self._set("refractory", _check_int(self, "refractory", self.refractory, 0, 2**31 - 1))
        self._validate()

    def _check_threshold(self, field):
        self._set(field, _check_channels(self, field, getattr(self, field), self.vm.min_int, self.vm.max_int))

    # subclass hooks
    def _validate(self):
        raise NotImplementedError

    def _maps(self) -> tuple:
        """(field name, threshold) of each spike map, in output-channel order."""
        raise NotImplementedError

    def _leak_modes(self) -> dict:
        """The leak's fields of ``K.NeuronModes``."""
        return dict(leak=K.LEAK_NONE, leak_a=0, leak_b=0, leak_rounding=0, leak_min_step=0, order=K.ORDER_LEAK_FIRST)

    def _drive(self) -> int:
        return K.DRIVE_S1

    @property
    def spike_maps(self) -> int:
        return len(self._maps())

    def _state_ranges(self) -> dict:
        ranges = {"v": self.vm.bounds(self.overflow)}
        if self.refractory:
            ranges["refractory"] = (0, self.refractory)
        return ranges

    def state_formats(self) -> dict:
        """{"v": vm} (plus the refractory counter, unsigned bits of ``refractory``, when used)."""
        formats = {"v": self.vm}
        if self.refractory:
            formats["refractory"] = QFormat(self.refractory.bit_length(), signed=False)
        return formats

    def params(self, input_shape) -> dict:
        """Each threshold per channel, shape (C,) for an input of C channels; ``reset_value``
        (used by reset "value") and ``v_min`` (when set) as scalars; all in the Vm format (plus
        the leak's, see _Leaky)."""
        channels = input_shape[0]
        out = {field: Param(_per_channel(self, field, value, channels), self.vm, ("c",))
               for field, value in self._maps()}
        out["reset_value"] = Param(np.int64(self.reset_value), self.vm, ())
        if self.v_min is not None:
            out["v_min"] = Param(np.int64(self.v_min), self.vm, ())
        return out

    def init_state(self, shape) -> dict:
        """{"v": zeros} (plus {"refractory": zeros} when refractory > 0), int64 of ``shape`` (N, C, ...)."""
        shape = _check_shape(self, shape)
        for field, value in self._maps():
            _per_channel(self, field, value, shape[1])
        return super().init_state(shape)

    def step(self, state, current, cover=False) -> NeuronStep:
        """Advance one timestep with input ``current`` (int64, the shape of the state); with
        ``cover`` also count the coverage bins.

        ``state`` entries are replaced by the new arrays; nothing is changed if it raises
        (``FixedOverflowError`` under Overflow.ERROR, ``LayerError`` for bad input).
        """
        return _checked_step(self, state, current, (-MAX_CURRENT, MAX_CURRENT), cover)

    def advance(self, state, current, keep_pre=True, cover=False) -> NeuronStep:
        """``step`` without its checks, the state's arrays updated in place: for a caller
        whose state comes from ``init_state`` and whose current is int64 of the state's shape
        within ±MAX_CURRENT.  ``v_pre`` is None unless ``keep_pre``."""
        shape = state["v"].shape
        flat = _flat3(shape)
        thr = np.stack([_per_channel(self, field, value, shape[1]) for field, value in self._maps()])
        refr = _flat_view(self, state, "refractory", flat) if self.refractory else _NO_REFRACTORY
        modes = K.NeuronModes(
            compare=_COMPARE_CODES[self.compare], reset=_RESET_CODES[self.reset], reset_value=self.reset_value,
            drive=self._drive(), has_vmin=int(self.v_min is not None), v_min=self.v_min or 0,
            refractory=self.refractory, **self._leak_modes(),
            bits=self.vm.bits, signed=int(self.vm.signed), overflow=int(self.overflow),
        )  # fmt: skip
        spikes, v_pre, overflows, counts = _run_neuron_kernel(
            self, shape, _flat_view(self, state, "v", flat), refr, current.reshape(flat), thr, modes, self.vm,
            self.overflow, keep_pre, cover,
        )  # fmt: skip
        spikes = spikes.reshape((shape[0], spikes.shape[1]) + shape[2:])
        coverage = None if counts is None else Tally({"v": counts}, self._named)
        return NeuronStep(spikes, None if v_pre is None else v_pre.reshape(shape), state["v"], overflows, coverage)

    def _named(self, raw) -> dict:
        """{bin: hits per Vm channel} from the kernel's counters per channel."""
        return self._named_bins(raw["v"], self.overflow)

    def unreachable_bins(self, site) -> dict:
        """The Vm write bins of the other overflow modes, and those the range of the current and
        the thresholds exclude; the bins of an option not in use (docs/coverage.md §3)."""
        current = site.input_formats[0]
        thresholds = [np.asarray(value) for _, value in self._maps()]
        out = write_bins_unreachable("v", self.overflow, {
            "high": None if current.max_int > 0 or (self.reset == "subtract" and min(t.min() for t in thresholds) < 0)
            else f"the current ({current}) is never positive and a subtract reset never raises V (no threshold < 0)",
            "low": None if current.min_int < 0 else f"the current ({current}) is never negative",
        })
        vlo = self.vm.bounds(self.overflow)[0]
        if self.v_min is None:
            out["v_min_clamped"] = "no v_min"
        elif self.v_min <= vlo:
            out["v_min_clamped"] = f"v_min = {self.v_min} is the register's minimum"
        if self.reset != "value":
            out["reset_to_value"] = f"reset is {self.reset!r}"
        if not self.refractory:
            out["refractory_start"] = out["refractory_end"] = "refractory is 0"
        out |= self._leak_unreachable()
        return {name: why for name, why in out.items() if name in self.coverage_bins}

    def _leak_unreachable(self) -> dict:
        return {}


def _checked_step(layer, state, current, current_range, cover) -> NeuronStep:
    """``layer.advance`` on a checked copy of ``state``, which takes the new arrays only when
    nothing raised."""
    shape = _check_state(layer, state, layer._state_ranges())
    _check_array(layer, "current", current, shape, *current_range)
    new = {key: value.copy() for key, value in state.items()}
    out = layer.advance(new, current, cover=cover)
    state.update(new)
    return out


@dataclass(frozen=True, kw_only=True)
class IF(_Neuron):
    """Integrate-and-fire: ``V <- cast(V + I)``; ``s = V cmp theta``; reset where s.

    threshold: theta, an integer or one per channel, in the range of ``vm``.
    """

    kind: ClassVar[str] = "if"
    coverage_bins: ClassVar[tuple] = ("v_wrap_high", "v_wrap_low", "v_sat_high", "v_sat_low", "v_at_threshold",
                                      "v_min_clamped", "reset_to_value", "refractory_start", "refractory_end")
    threshold: int | tuple

    def _validate(self):
        self._check_threshold("threshold")

    def _maps(self):
        return (("threshold", self.threshold),)


@dataclass(frozen=True, kw_only=True)
class _Leaky(_Neuron):
    """The leak fields shared by LIF and DualThreshold.

    leak: "none"; "shift" (``V - round(V / 2**leak_shift)``, ``leak_min_step``: a zero step
    becomes sign(V), as SynSense Xylo does); "mul" (``round(V * leak_mult / 2**leak_shift)``,
    0 <= leak_mult <= 2**leak_shift); "linear" (V moves toward 0 by ``leak_step``, stops at 0).
    leak_rounding: Rounding of shift and mul.  order: "leak_first" or "integrate_first".
    """

    leak: str = "none"
    leak_shift: int | None = None
    leak_mult: int | None = None
    leak_step: int | None = None
    leak_rounding: Rounding | str = Rounding.TRN
    leak_min_step: bool = False
    order: str = "leak_first"

    _LEAK_FIELDS: ClassVar[dict] = {
        "none": (),
        "shift": ("leak_shift",),
        "mul": ("leak_shift", "leak_mult"),
        "linear": ("leak_step",),
    }

    def _validate(self):
        _check_choice(self, "leak", self.leak, LEAKS)
        _check_choice(self, "order", self.order, ORDERS)
        self._set("leak_rounding", _check_mode(self, "leak_rounding", self.leak_rounding, Rounding))
        needed = self._LEAK_FIELDS[self.leak]
        for field in ("leak_shift", "leak_mult", "leak_step"):
            value = getattr(self, field)
            if field in needed and value is None:
                _fail(self, field, value, f"is required with leak={self.leak!r}")
            if field not in needed and value is not None:
                _fail(self, field, value, f"is not used with leak={self.leak!r}; leave it None")
        if self.leak == "shift":
            self._set("leak_shift", _check_int(self, "leak_shift", self.leak_shift, 0, 64))
        elif self.leak == "mul":
            n = _check_int(self, "leak_shift", self.leak_shift, 0, 63 - self.vm.bits)
            self._set("leak_shift", n)
            self._set("leak_mult", _check_int(self, "leak_mult", self.leak_mult, 0, 2**n))
        elif self.leak == "linear":
            self._set("leak_step", _check_int(self, "leak_step", self.leak_step, 0, self.vm.max_int))
        if not isinstance(self.leak_min_step, (bool, np.bool_)):
            _fail(self, "leak_min_step", self.leak_min_step, "must be a bool")
        if self.leak_min_step and self.leak != "shift":
            _fail(self, "leak_min_step", self.leak_min_step, f"applies to leak='shift' only, not {self.leak!r}")

    def params(self, input_shape) -> dict:
        """As ``_Neuron.params``, plus the leak's number: ``leak_step`` (leak "linear", Vm
        format) or ``leak_mult`` (leak "mul", format u(n+1).n with n = leak_shift: the factor
        leak_mult * 2**-leak_shift), scalars."""
        out = super().params(input_shape)
        if self.leak == "linear":
            out["leak_step"] = Param(np.int64(self.leak_step), self.vm, ())
        elif self.leak == "mul":
            out["leak_mult"] = Param(np.int64(self.leak_mult),
                                     QFormat(self.leak_shift + 1, self.leak_shift, signed=False), ())
        return out

    @property
    def leaks(self) -> int:
        return int(self.leak != "none")

    def _leak_unreachable(self) -> dict:
        """leak_tie needs a rounded leak (shift or mul, shift >= 1) under a round-to-nearest mode;
        leak_to_zero needs a leak that is not the identity, and for "shift" by 2 or more without
        min_step, V = -1 under TRN (floor(-1/4) = -1 takes it to 0)."""
        out = {}
        if self.leak == "none":
            out["leak_to_zero"] = "no leak"
        elif self.leak == "shift" and self.leak_shift >= 2 and not self.leak_min_step and (
                self.leak_rounding != Rounding.TRN or not self.vm.signed):
            out["leak_to_zero"] = ("leak_shift >= 2 without min_step, not TRN on a signed Vm: a step is at most "
                                   "|V|/4 + 1/2 < |V|")
        elif self.leak == "mul" and self.leak_mult == 1 << self.leak_shift:
            out["leak_to_zero"] = "leak_mult = 2**leak_shift: the leak is the identity"
        elif self.leak == "linear" and self.leak_step == 0:
            out["leak_to_zero"] = "leak_step = 0: the leak is the identity"
        if self.leak not in ("shift", "mul"):
            out["leak_tie"] = f"leak {self.leak!r} does not round"
        elif self.leak_rounding in (Rounding.TRN, Rounding.TRN_ZERO):
            out["leak_tie"] = f"leak_rounding {self.leak_rounding.name} has no tie rule"
        elif self.leak_shift == 0:
            out["leak_tie"] = "leak_shift = 0 discards no bits"
        return out

    def _leak_modes(self):
        a, b = {
            "none": (0, 0),
            "shift": (self.leak_shift, 0),
            "mul": (self.leak_mult, self.leak_shift),
            "linear": (self.leak_step, 0),
        }[self.leak]
        return dict(leak=_LEAK_CODES[self.leak], leak_a=a, leak_b=b, leak_rounding=int(self.leak_rounding),
                    leak_min_step=int(self.leak_min_step), order=_ORDER_CODES[self.order])


@dataclass(frozen=True, kw_only=True)
class LIF(_Leaky):
    """Leaky integrate-and-fire.  leak_first: ``V <- cast(leak(V) + I)``;
    integrate_first: ``V <- leak(cast(V + I))``; then ``s = V cmp theta``, reset where s.

    threshold: theta, an integer or one per channel.  leak: "shift", "mul" or "linear".
    """

    kind: ClassVar[str] = "lif"
    coverage_bins: ClassVar[tuple] = IF.coverage_bins + ("leak_tie", "leak_to_zero")
    threshold: int | tuple
    leak: str

    def _validate(self):
        if self.leak == "none":
            _fail(self, "leak", self.leak, "must be 'shift', 'mul' or 'linear' (use IF for no leak)")
        super()._validate()
        self._check_threshold("threshold")

    def _maps(self):
        return (("threshold", self.threshold),)


@dataclass(frozen=True, kw_only=True)
class DualThreshold(_Leaky):
    """Dual-threshold firing (DT-SCNN): one V per neuron, two spike maps from the same
    post-integration, pre-reset V: ``s1 = V cmp theta1``, ``s2 = V cmp theta2``; output
    ``[s1, s2]`` on the channel axis (C -> 2C).  Leak as LIF (default none).

    reset_by: "s1" (V -= theta1 where s1), "s2" (V -= theta2 where s2), or "either"
    (where s1 or s2; V -= the largest theta among the maps that fired).  No reset: reset="none".
    """

    kind: ClassVar[str] = "dual_threshold"
    coverage_bins: ClassVar[tuple] = (
        "v_wrap_high", "v_wrap_low", "v_sat_high", "v_sat_low", "v_at_theta1", "v_at_theta2", "v_min_clamped",
        "reset_to_value", "refractory_start", "refractory_end", "leak_tie", "leak_to_zero",
        "s1_only", "s2_only", "both", "neither_positive",
    )  # fmt: skip
    theta1: int | tuple
    theta2: int | tuple
    reset_by: str = "s1"

    def _validate(self):
        super()._validate()
        self._check_threshold("theta1")
        self._check_threshold("theta2")
        _check_choice(self, "reset_by", self.reset_by, RESET_BY)

    def _maps(self):
        """Output (2C, ...): the maps [s1, s2] concatenated on the channel axis."""
        return (("theta1", self.theta1), ("theta2", self.theta2))

    def _drive(self):
        return _DRIVE_CODES[self.reset_by]

    def unreachable_bins(self, site) -> dict:
        """As every neuron's, and with one compare for both maps, ``s2_only`` when θ2 >= θ1 in
        every channel (then s2 implies s1), ``s1_only`` when θ1 >= θ2 in every channel."""
        out = super().unreachable_bins(site)
        theta1, theta2 = (_per_channel(self, f, v, site.input_shape[0]) for f, v in self._maps())
        if np.all(theta2 >= theta1):
            out["s2_only"] = "theta2 >= theta1 in every channel: s2 implies s1"
        if np.all(theta1 >= theta2):
            out["s1_only"] = "theta1 >= theta2 in every channel: s1 implies s2"
        return out


# --------------------------------------------------------------------------- Loihi preset
@dataclass(frozen=True, kw_only=True)
class LoihiLIF(_NeuronLayer):
    """Loihi CUBA LIF, the equations of Lava's bit-accurate ``PyLifModelBitAcc``::

        u <- wrap24(trunc0(u * (4096 - du - 1) / 2**12) + a_in * 2**6)
        v <- sat(trunc0(v * (4096 - dv) / 2**12) + u + bias_mant * 2**bias_exp), |v| <= 2**23 - 1
        s = v > vth * 2**6;  v <- 0 where s  (u is not reset)

    du, dv: 0..4095.  vth: 0..2**17 - 1, bias_mant: -4096..4095, bias_exp: 0..7 (each an
    integer or one per channel).  The input a_in (``step``'s current) is 16-bit signed.
    """

    kind: ClassVar[str] = "loihi_lif"
    coverage_bins: ClassVar[tuple] = ("u_wrap_high", "u_wrap_low", "v_sat_high", "v_sat_low", "v_at_threshold",
                                      "leak_to_zero")
    reset: ClassVar[str] = "zero"
    du: int
    dv: int
    vth: int | tuple
    bias_mant: int | tuple = 0
    bias_exp: int | tuple = 0

    U_FORMAT: ClassVar[QFormat] = QFormat(24)
    A_IN_FORMAT: ClassVar[QFormat] = QFormat(16)
    DECAY_SHIFT: ClassVar[int] = 12
    IN_SHIFT: ClassVar[int] = 6
    VTH_SHIFT: ClassVar[int] = 6

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "du", _check_int(self, "du", self.du, 0, 4095))
        object.__setattr__(self, "dv", _check_int(self, "dv", self.dv, 0, 4095))
        for field, lo, hi in (("vth", 0, 2**17 - 1), ("bias_mant", -4096, 4095), ("bias_exp", 0, 7)):
            object.__setattr__(self, field, _check_channels(self, field, getattr(self, field), lo, hi))

    def _state_ranges(self) -> dict:
        return {"u": self.U_FORMAT.bounds("WRAP"), "v": self.U_FORMAT.bounds("SAT_SYM")}

    def state_formats(self) -> dict:
        """u and v, 24-bit signed each."""
        return {"u": self.U_FORMAT, "v": self.U_FORMAT}

    @property
    def leaks(self) -> int:
        return 2  # the decays of u and v

    def signal_formats(self, current_format) -> dict:
        """As every neuron's; the input current must fit Loihi's 16-bit a_in."""
        lo, hi = self.A_IN_FORMAT.min_int, self.A_IN_FORMAT.max_int
        if current_format.min_int < lo or current_format.max_int > hi:
            raise LayerError(self.name, "input current", str(current_format),
                             f"can leave Loihi's 16-bit a_in range {lo}..{hi}")
        return super().signal_formats(current_format)

    #: Formats of the fields as stored in vector files (their ranges, checked on construction).
    PARAM_FORMATS: ClassVar[dict] = {
        "du": QFormat(12, 0, signed=False),
        "dv": QFormat(12, 0, signed=False),
        "vth": QFormat(17, 0, signed=False),
        "bias_mant": QFormat(13, 0, signed=True),
        "bias_exp": QFormat(3, 0, signed=False),
    }

    def params(self, input_shape) -> dict:
        """``du`` and ``dv`` scalars; ``vth``, ``bias_mant`` and ``bias_exp`` per channel, shape (C,)."""
        fmt = self.PARAM_FORMATS
        out = {field: Param(np.int64(getattr(self, field)), fmt[field], ()) for field in ("du", "dv")}
        for field in ("vth", "bias_mant", "bias_exp"):
            out[field] = Param(_per_channel(self, field, getattr(self, field), input_shape[0]), fmt[field], ("c",))
        return out

    def init_state(self, shape) -> dict:
        """{"u": zeros, "v": zeros}, int64 of ``shape`` (N, C, ...)."""
        shape = _check_shape(self, shape)
        for field in ("vth", "bias_mant", "bias_exp"):
            _per_channel(self, field, getattr(self, field), shape[1])
        return super().init_state(shape)

    def step(self, state, current, cover=False) -> NeuronStep:
        """One Loihi timestep; ``current`` is a_in (int64 in -2**15..2**15 - 1).

        ``overflows`` counts u wraps plus v saturations; nothing is changed if it raises.
        """
        return _checked_step(self, state, current, (self.A_IN_FORMAT.min_int, self.A_IN_FORMAT.max_int), cover)

    def unreachable_bins(self, site) -> dict:
        """u never wraps up (down) when a_in is never positive (negative); v never reaches 0 by
        its decay when dv = 0; the decay rounds toward zero, so it has no tie bin."""
        current = site.input_formats[0]
        out = {}
        if current.max_int <= 0:
            out["u_wrap_high"] = f"a_in ({current}) is never positive"
        if current.min_int >= 0:
            out["u_wrap_low"] = f"a_in ({current}) is never negative"
        if self.dv == 0:
            out["leak_to_zero"] = "dv = 0: v does not decay"
        return out

    def advance(self, state, current, keep_pre=True, cover=False) -> NeuronStep:
        """``step`` without its checks, u and v updated in place (see ``_Neuron.advance``)."""
        shape = state["v"].shape
        flat = _flat3(shape)
        n_ch = shape[1]
        bias = _per_channel(self, "bias_mant", self.bias_mant, n_ch) << _per_channel(self, "bias_exp", self.bias_exp, n_ch)
        thr = np.stack([_per_channel(self, "vth", self.vth, n_ch) << self.VTH_SHIFT])
        i_v = np.empty(flat, np.int64)
        ovf_u = np.empty(flat[0] * n_ch, np.int64)
        cov_u = _kernel_bins(flat[0], n_ch, 2, cover)
        K.current_filter_step(
            _flat_view(self, state, "u", flat), np.ascontiguousarray(current.reshape(flat)),
            4095 - self.du, self.DECAY_SHIFT,
            int(Rounding.TRN_ZERO), self.IN_SHIFT, self.U_FORMAT.bits, int(Overflow.WRAP), bias, i_v, ovf_u, cov_u,
        )  # fmt: skip
        modes = K.NeuronModes(
            compare=K.CMP_GT, reset=K.RESET_ZERO, reset_value=0, drive=K.DRIVE_S1, has_vmin=0, v_min=0,
            refractory=0, leak=K.LEAK_MUL, leak_a=4096 - self.dv, leak_b=self.DECAY_SHIFT,
            leak_rounding=int(Rounding.TRN_ZERO), leak_min_step=0, order=K.ORDER_LEAK_FIRST,
            bits=self.U_FORMAT.bits, signed=1, overflow=int(Overflow.SAT_SYM),
        )  # fmt: skip
        spikes, v_pre, ovf_v, counts = _run_neuron_kernel(
            self, shape, _flat_view(self, state, "v", flat), _NO_REFRACTORY, i_v, thr, modes, self.U_FORMAT,
            Overflow.SAT_SYM, keep_pre, cover,
        )  # fmt: skip
        v_pre = None if v_pre is None else v_pre.reshape(shape)
        coverage = None if counts is None else Tally({"u": cov_u, "v": counts}, functools.partial(self._named, n_ch))
        return NeuronStep(spikes.reshape(shape), v_pre, state["v"], int(ovf_u.sum()) + ovf_v, coverage)

    def _named(self, n_ch, raw) -> dict:
        """{bin: hits per channel} from the u kernel's counters per row and the v kernel's per channel."""
        u = _per_vm_channel(raw["u"], n_ch)
        named = {"u_wrap_high": u[:, 0], "u_wrap_low": u[:, 1]} | self._named_bins(raw["v"], Overflow.SAT_SYM)
        return {name: named[name] for name in self.coverage_bins}
