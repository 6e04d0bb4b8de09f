"""Pooling layer descriptions (equations and order of operations: ``docs/pooling.md``).

A pooling layer follows a neuron layer and is stepped right after it, every timestep:

    step = pool.step(state, spikes=..., v_pre=..., v_post=..., v_state=...)

with the neuron layer's ``spikes`` (uint8 0/1), ``v_pre`` (int64 Vm after integration, before
reset), ``v_post`` (after reset) and its mutable Vm array ``v_state`` (int64), all
``(N, C, H, W)``.  Each variant reads only the arrays it needs (others may be ``None``).
``state`` comes from ``init_state((N, C, H, W))``.

Windows are ``kernel = (kh, kw)`` with ``stride = (sh, sw)`` (default: the kernel), no padding,
and only whole windows: ``Ho = (H - kh) // sh + 1`` (PyTorch ``ceil_mode=False``).  Inside a
window, position ``p = ky*kw + kx`` (row-major); argmax ties go to the smallest ``p``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from refmodel.checks import first_outside, index_text, is_integer
from refmodel.fixed import FixedOverflowError, Overflow, QFormat, Rounding, shift_right
from refmodel.kernels import pooling as kernels
from refmodel.layers.base import (SPIKE, Layer, LayerError, Param, Step, Tally, positive_pair, spike_buffer_bits,
                                   write_bins, write_bins_unreachable)

__all__ = [
    "PoolStep",
    "WinnerSpikePool",
    "PooledNeuronPool",
    "CountGatePool",
    "OrPool",
    "SumPool",
    "AvgPool",
]


class PoolStep(NamedTuple):
    """One timestep of a pooling layer, arrays ``(N, C, Ho, Wo)``.

    out: uint8 spikes, or the int64 codes of ``out_format`` for SumPool / AvgPool.
    index: int64 window position ``p`` of the winner (WinnerSpikePool, CountGatePool,
        PooledNeuronPool), else None.
    v: int64 pooled potential ``max_p v`` before any subtraction (PooledNeuronPool), else None.
    overflows: how many values this step saturated or wrapped (counter increments lost at the
        counter's maximum, Vm casts, output casts).
    coverage: the Tally of this step (``step(..., cover=True)``; ``coverage.hits()``: {bin: int64
        hits per channel}; the winners are "changed" against ``step(..., winners=)``, the
        previous step's ``index``), else None.
    """

    out: np.ndarray
    index: np.ndarray | None = None
    v: np.ndarray | None = None
    overflows: int = 0
    coverage: Tally | None = None


@dataclass(frozen=True, kw_only=True)
class _Pool(Layer):
    """Fields shared by every pooling layer: ``name``, ``kernel`` (k or (kh, kw)) and
    ``stride`` (s or (sh, sw); None = kernel), normalized to int tuples.

    A pool reads one neuron layer (its spikes, and the Vm for the Vm variants), records
    ``spikes`` (its output) and the variant's ``index``, ``v`` or ``counters``."""

    role: ClassVar[str] = "pool"
    accepts: ClassVar[tuple] = ("neuron",)
    output_signal: ClassVar[str] = "spikes"
    #: Signals of the pool's input shape (the others have its output shape).
    input_shaped: ClassVar[tuple] = ("counters",)
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None

    def __post_init__(self):
        super().__post_init__()
        self._set("kernel", positive_pair(self.name, "kernel", self.kernel))
        self._set("stride", self.kernel if self.stride is None else positive_pair(self.name, "stride", self.stride))

    # ------------------------------------------------------------------ the layer interface
    def signal_formats(self, spike_format) -> dict:
        """``spikes`` (``out_format``) and the variant's others, in ``signals`` order."""
        return {"spikes": self.out_format} | self._extra_formats()

    def _extra_formats(self) -> dict:
        return {}

    @property
    def _index_format(self) -> QFormat:
        """The window position p of a winner: unsigned, enough bits for kh·kw - 1."""
        return QFormat(max(1, (self.area - 1).bit_length()), signed=False)

    def event_range(self, spike_range):
        return (0, 1)

    def stepper(self, site, run):
        source = site.source_names[0]
        winners = []  # the previous timestep's winners, for winner_changed

        def step(frame):
            state = frame.states[self.name]
            neuron = frame.steps[source].signals
            out = self.step(state, spikes=neuron["spikes"], v_pre=neuron["v_pre"], v_post=neuron["v_post"],
                            v_state=frame.states[source]["v"], cover=run.coverage,
                            winners=winners[0] if winners else None)
            signals = {"spikes": out.out, "index": out.index, "v": out.v, "counters": state.get("count")}
            if run.coverage and out.index is not None:
                winners[:] = [out.index]
            return Step(out.out, signals, out.overflows, out.coverage)

        return step

    def unreachable_bins(self, site) -> dict:
        """A 1x1 window has no tie, no second spike and no other winner."""
        if self.area > 1:
            return {}
        why = "a 1x1 window has one position"
        return {name: why for name in ("window_tie", "winner_changed", "window_multiple") if name in self.coverage_bins}


    def _sum_bins(self, cov, out_shape) -> Tally | None:
        """The window-sum counters ``cov`` of ``kernels.sum_pool`` (None when not covering)."""
        return self._tally({"sum": cov}, out_shape) if cov.shape[0] else None

    def _tally(self, raw, out_shape) -> Tally:
        return Tally(raw, functools.partial(self._named, out_shape[1]))

    def _named(self, channels, raw) -> dict:
        """{bin: hits per channel} of its kind from the raw counters per plane: "window"
        (``winner_pool``'s), "sum" (``sum_pool``'s), "subtract" (``subtract_bins``') and
        "counter_at_max" (already per channel)."""
        named = {}
        if "window" in raw:
            window = _per_channel(raw["window"], channels)
            named |= {"window_tie": window[:, kernels.WIN_TIE], "window_silent": window[:, kernels.WIN_SILENT],
                      "winner_changed": window[:, kernels.WIN_CHANGED]}
        if "sum" in raw:
            sums = _per_channel(raw["sum"], channels)
            named |= {"window_silent": sums[:, kernels.SUM_SILENT], "window_full": sums[:, kernels.SUM_FULL],
                      "window_multiple": sums[:, kernels.SUM_MULTIPLE], "round_tie": sums[:, kernels.SUM_TIE]}
            named |= write_bins("out", getattr(self, "overflow", Overflow.SAT), sums[:, kernels.SUM_HIGH],
                                np.zeros_like(sums[:, 0]))
        if "subtract" in raw:
            sub = _per_channel(raw["subtract"], channels)
            named |= {"subtract_negative": sub[:, 0]} | write_bins("v", self.overflow, np.zeros_like(sub[:, 1]),
                                                                   sub[:, 1])
        if "counter_at_max" in raw:
            named["counter_at_max"] = raw["counter_at_max"]
        return {name: named[name] for name in self.coverage_bins}

    def static_cost(self, site):
        """``area - 1`` compares per window; the output buffered unless a pool reads it."""
        windows = math.prod(site.output_shape)
        return {"pool_ops": windows * (self.area - 1)}, {"spike_buffer_bits": spike_buffer_bits(site)}

    # ------------------------------------------------------------------ helpers
    def _error(self, field, value, reason):
        return LayerError(self.name, field, value, reason)

    def _mode(self, field, enum):
        try:
            self._set(field, enum.of(getattr(self, field)))
        except ValueError as exc:
            raise self._error(field, getattr(self, field), str(exc)) from None

    def _choice(self, field, choices):
        value = getattr(self, field)
        if value not in choices:
            raise self._error(field, value, f"must be one of {', '.join(map(repr, choices))}")

    def _format(self, field, max_bits=64):
        fmt = getattr(self, field)
        if not isinstance(fmt, QFormat):
            raise self._error(field, fmt, "must be a QFormat")
        if fmt.bits > max_bits or (fmt.bits == 64 and not fmt.signed):
            raise self._error(field, fmt, f"does not fit the int64 datapath (at most {max_bits} bits)")

    @property
    def area(self) -> int:
        """Window area ``kh * kw``."""
        return self.kernel[0] * self.kernel[1]

    def output_shape(self, shape) -> tuple[int, int, int]:
        """``(C, (H - kh) // sh + 1, (W - kw) // sw + 1)`` for a per-sample input ``(C, H, W)``."""
        if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(is_integer(x) and x >= 1 for x in shape)):
            raise self._error("shape", shape, "must be 3 integers >= 1 (C, H, W)")
        c, h, w = (int(x) for x in shape)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        if h < kh or w < kw:
            raise self._error("shape", tuple(shape), f"input smaller than the {kh}x{kw} window")
        return c, (h - kh) // sh + 1, (w - kw) // sw + 1

    def batch_output_shape(self, shape) -> tuple[int, int, int, int]:
        """``(N, *output_shape((C, H, W)))`` for a batch ``(N, C, H, W)``."""
        if not (isinstance(shape, (tuple, list)) and len(shape) == 4 and is_integer(shape[0]) and shape[0] >= 1):
            raise self._error("shape", shape, "must be 4 integers >= 1 (N, C, H, W)")
        return (int(shape[0]), *self.output_shape(tuple(shape[1:])))

    def init_state(self, shape) -> dict:
        """The layer's state for an input ``(N, C, H, W)``: empty unless the variant keeps one."""
        self.batch_output_shape(shape)
        return {}

    def _array(self, field, arr, dtype, shape=None):
        """``arr`` checked to be a C-contiguous 4-d ``dtype`` array (of ``shape`` if given)."""
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 4 or not arr.flags.c_contiguous:
            described = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}".strip()
            raise self._error(field, described, f"must be a C-contiguous 4-d {np.dtype(dtype)} array")
        if shape is not None and arr.shape != shape:
            raise self._error(field, arr.shape, f"shape differs from the spikes/Vm shape {shape}")
        return arr

    def _spikes(self, spikes):
        """``spikes`` checked: a C-contiguous 4-d uint8 array of 0s and 1s."""
        spikes = self._array("spikes", spikes, np.uint8)
        outside = first_outside(spikes, None, 1)
        if outside:
            index, value = outside
            raise self._error(f"spikes{index_text(index)}", value, "spikes must be 0 or 1")
        return spikes

    def _outputs(self, shape, dtype=np.uint8):
        out_shape = self.batch_output_shape(shape)
        return np.empty(out_shape, dtype), np.empty(out_shape, np.int64)

    def _raise_outside(self, arr, fmt, what):
        """FixedOverflowError naming the first element of ``arr`` outside ``fmt`` (row-major)."""
        fmt.check(arr, f"pooling layer {self.name!r}: {what}")
        raise AssertionError("called with every value inside the format")


@dataclass(frozen=True, kw_only=True)
class _SpikePool(_Pool):
    """A pooling layer whose output is a spike."""

    @property
    def out_format(self) -> QFormat:
        """Format of ``PoolStep.out``: a 1-bit unsigned spike."""
        return SPIKE


@dataclass(frozen=True, kw_only=True)
class WinnerSpikePool(_SpikePool):
    """Vm max-pooling, winner spike:  ``p* = argmax_p V[p]``, ``out = s[p*]``.

    ``V`` is ``v_pre`` (``vm_stage="pre"``: this timestep's Vm after integration, before reset) or
    ``v_post`` (``vm_stage="post"``, after reset); ties to the first row-major ``p``.  With one
    threshold shared by the window and ``s = V_pre >= θ`` (or ``>``), ``vm_stage="pre"`` equals OrPool.
    After a dual-threshold layer (spikes ``[s1, s2]``, 2C channels; Vm C channels) spike channel
    ``k`` is ranked by Vm channel ``k mod C``.  No memory.
    """

    vm_stage: str = "pre"
    kind: ClassVar[str] = "winner_spike"
    signals: ClassVar[tuple] = ("spikes", "index")
    coverage_bins: ClassVar[tuple] = ("window_tie", "window_silent", "winner_changed")

    def __post_init__(self):
        super().__post_init__()
        self._choice("vm_stage", ("pre", "post"))

    def _extra_formats(self):
        return {"index": self._index_format}

    @property
    def input_signals(self) -> tuple:
        return ("spikes", "v_" + self.vm_stage)

    def static_cost(self, site):
        """After a dual-threshold layer, its s1 and s2 channels share the argmax of one Vm channel."""
        ops, memory = super().static_cost(site)
        windows = math.prod(site.output_shape) // site.sources[0].spike_maps
        return ops | {"pool_ops": windows * (self.area - 1)}, memory

    def step(self, state, spikes=None, v_pre=None, v_post=None, v_state=None, cover=False, winners=None) -> PoolStep:
        spikes = self._spikes(spikes)
        field = "v_" + self.vm_stage
        key = self._array(field, v_pre if self.vm_stage == "pre" else v_post, np.int64)
        n, c, h, w = key.shape
        if spikes.shape == (n, 2 * c, h, w):  # after a dual-threshold layer: [s1, s2] of one Vm map
            key = np.concatenate((key, key), axis=1)
        elif spikes.shape != key.shape:
            raise self._error(field, key.shape, f"must be the spikes' shape {spikes.shape} "
                              "(or have half its channels, after a dual-threshold layer)")
        out, index = self._outputs(spikes.shape)
        cov = _window_counters(out.shape, cover, kernels.N_WIN)
        kernels.winner_pool(spikes, key, *self.kernel, *self.stride, out, index, _previous(winners), cov)
        return PoolStep(out=out, index=index, coverage=self._tally({"window": cov}, out.shape) if cover else None)


@dataclass(frozen=True, kw_only=True)
class PooledNeuronPool(_SpikePool):
    """Vm max-pooling, pooled neuron, on the Vm the preceding layer stores (``v_state``; that
    layer only integrates: reset "none"; its spikes, if given, only have their shape checked):

        ``m = max_p V[p]`` (``PoolStep.v``; ``index`` = first argmax),  ``out = m ⋄ θ``
        if out:  ``V[p] = cast(V[p] - θ, vm, overflow)`` for every p of the window, in ``v_state``

    ``⋄`` is ``compare`` (">=" or ">").  Windows may not overlap (stride >= kernel); neurons
    in no window are never reset.  Constant inputs ``I[p] >= 0`` from ``V = 0`` give exactly
    ``N_T = min(T, floor(T·max I / θ))`` output spikes with ">=" (see docs/pooling.md).
    """

    threshold: int
    vm: QFormat
    overflow: Overflow | str = "ERROR"
    compare: str = ">="
    kind: ClassVar[str] = "pooled_neuron"
    signals: ClassVar[tuple] = ("spikes", "index", "v")
    coverage_bins: ClassVar[tuple] = ("window_tie", "winner_changed", "subtract_negative", "v_wrap_low", "v_sat_low")

    def __post_init__(self):
        super().__post_init__()
        if self.stride[0] < self.kernel[0] or self.stride[1] < self.kernel[1]:
            raise self._error("stride", self.stride, f"windows of {self.kernel} would overlap; "
                              "the pooled neuron subtracts θ from its whole window, so stride >= kernel")
        self._format("vm", max_bits=63)
        self._mode("overflow", Overflow)
        self._choice("compare", (">=", ">"))
        if not (is_integer(self.threshold) and 1 <= self.threshold <= self.vm.max_int):
            raise self._error("threshold", self.threshold, f"must be an integer in 1..{self.vm.max_int}")
        self._set("threshold", int(self.threshold))

    def _extra_formats(self):
        return {"index": self._index_format, "v": self.vm}

    def check_sources(self, neuron) -> None:
        """The pooled neuron fires for its window: the neuron layer it reads only integrates
        (reset "none"), one Vm map, in the pool's Vm format."""
        if neuron.reset != "none":
            raise LayerError(self.name, "position", neuron.name,
                             "a pooled_neuron pool needs a neuron layer with reset='none' before it")
        if neuron.spike_maps != 1:
            raise LayerError(self.name, "position", neuron.name,
                             "a pooled_neuron pool pools one Vm map: it cannot follow a dual-threshold layer")
        if neuron.vm != self.vm:
            raise LayerError(self.name, "vm", str(self.vm), f"differs from the Vm format {neuron.vm} of {neuron.name!r}")

    def params(self, input_shape) -> dict:
        """``threshold`` per channel, shape (C,), in the Vm format."""
        return {"threshold": Param(np.full(input_shape[0], self.threshold, np.int64), self.vm, ("c",))}

    def static_cost(self, site):
        """A compare per window; when it fires, θ subtracted from each Vm of its window."""
        ops, memory = super().static_cost(site)
        windows = math.prod(site.output_shape)
        return ops | {"threshold_compares": windows, "vm_write_bits": windows * self.area * self.vm.bits}, memory

    def measured_cost(self, site, totals, activity):
        """Vm writes only for the windows that fired."""
        fired = int(activity.of(self.name).sum())
        return totals | {"vm_write_bits": fired * self.area * self.vm.bits}

    def unreachable_bins(self, site) -> dict:
        """As every pool's; the subtraction only lowers V, so only its low bins of its overflow mode."""
        low = write_bins_unreachable("v", self.overflow, {"high": None, "low": None})
        return super().unreachable_bins(site) | {name: why for name, why in low.items() if name in self.coverage_bins}

    def step(self, state, spikes=None, v_pre=None, v_post=None, v_state=None, cover=False, winners=None) -> PoolStep:
        v = self._array("v_state", v_state, np.int64)
        if spikes is not None and np.shape(spikes) != v.shape:
            raise self._error("spikes", np.shape(spikes), f"must have the Vm's shape {v.shape}: the pooled "
                              "neuron pools one Vm map (not after a dual-threshold layer)")
        try:
            self.vm.check(v, "v_state")
        except FixedOverflowError as exc:
            raise self._error("v_state", exc.value, f"{exc}; the Vm must fit vm = {self.vm}") from None
        out, index = self._outputs(v.shape)
        vmax = np.empty_like(index)
        fmt = self.vm
        checked = self.overflow == Overflow.ERROR
        before = v.copy() if cover else None
        work = v.copy() if checked else v  # under ERROR, v_state changes only if nothing overflows
        events = kernels.pooled_neuron_pool(work, self.threshold, self.compare == ">", fmt.bits, fmt.signed,
                                            int(self.overflow), *self.kernel, *self.stride, out, vmax, index)
        if checked:
            if events:
                self._raise_outside(work, fmt, "v_state")
            v[...] = work
        coverage = self._subtraction_bins(before, out, winners) if cover else None
        return PoolStep(out=out, index=index, v=vmax, overflows=int(events), coverage=coverage)

    def _subtraction_bins(self, before, out, winners) -> Tally:
        """window_tie and winner_changed on the Vm before the step; subtract_negative and the
        write bins of the subtraction V - θ in the windows that fired."""
        ties = _window_counters(out.shape, True, kernels.N_WIN)
        kernels.winner_pool(np.zeros(before.shape, np.uint8), before, *self.kernel, *self.stride, np.empty_like(out),
                            np.empty(out.shape, np.int64), _previous(winners), ties)
        cov = np.zeros((out.shape[0] * out.shape[1], 2), np.int64)
        fmt = self.vm
        kernels.subtract_bins(before, out, self.threshold, fmt.bits, fmt.signed, int(self.overflow),
                              *self.kernel, *self.stride, cov)
        return self._tally({"window": ties, "subtract": cov}, out.shape)


@dataclass(frozen=True, kw_only=True)
class CountGatePool(_SpikePool):
    """Spike-count gating (the SNN Toolbox's max-pool), one unsigned ``count_bits`` counter
    per input neuron, zero at ``init_state``:

        ``c[i] = min(c[i] + s[i], 2**count_bits - 1)``   (every input neuron, this timestep's spike included)
        ``p* = argmax_p c[p]`` (first on ties),  ``out = s[p*]``

    Increments lost at the maximum are counted in ``PoolStep.overflows``.
    """

    count_bits: int
    kind: ClassVar[str] = "count_gate"
    signals: ClassVar[tuple] = ("spikes", "index", "counters")
    coverage_bins: ClassVar[tuple] = ("window_tie", "window_silent", "winner_changed", "counter_at_max")

    def __post_init__(self):
        super().__post_init__()
        if not (is_integer(self.count_bits) and 1 <= self.count_bits <= 63):
            raise self._error("count_bits", self.count_bits, "must be an integer in 1..63")
        self._set("count_bits", int(self.count_bits))

    @property
    def count_format(self) -> QFormat:
        """Format of a counter: unsigned ``count_bits``."""
        return QFormat(self.count_bits, 0, signed=False)

    def _extra_formats(self):
        return {"index": self._index_format, "counters": self.count_format}

    def state_formats(self) -> dict:
        """``{"count": count_format}``, one counter per input neuron."""
        return {"count": self.count_format}

    def init_state(self, shape) -> dict:
        """``{"count": int64 zeros (N, C, H, W)}``."""
        self.batch_output_shape(shape)
        return {"count": np.zeros(tuple(int(x) for x in shape), np.int64)}

    def static_cost(self, site):
        """A counter per input neuron, incremented, read and written every timestep."""
        ops, memory = super().static_cost(site)
        counters = math.prod(site.input_shape)
        bits = counters * self.count_bits
        ops |= {"counter_increments": counters, "counter_read_bits": bits, "counter_write_bits": bits}
        return ops, memory | {"counter_bits": bits}

    def measured_cost(self, site, totals, activity):
        """One increment per input spike."""
        increments = int(activity.of(site.source_names[0]).sum())
        return totals | {"counter_increments": increments, "counter_write_bits": increments * self.count_bits}

    def step(self, state, spikes=None, v_pre=None, v_post=None, v_state=None, cover=False, winners=None) -> PoolStep:
        spikes = self._spikes(spikes)
        count = self._array('state["count"]', state.get("count") if isinstance(state, dict) else None,
                            np.int64, spikes.shape)
        top = self.count_format.max_int
        outside = first_outside(count, 0, top)
        if outside:
            index, value = outside
            raise self._error(f'state["count"]{index_text(index)}', value,
                              f"is outside the {self.count_bits}-bit counter range 0..{top}")
        out, index = self._outputs(spikes.shape)
        saturated = kernels.count_spikes(spikes, count, self.count_format.max_int)
        cov = _window_counters(out.shape, cover, kernels.N_WIN)
        kernels.winner_pool(spikes, count, *self.kernel, *self.stride, out, index, _previous(winners), cov)
        coverage = None
        if cover:
            at_max = (count == top).sum(axis=(0, 2, 3), dtype=np.int64)
            coverage = self._tally({"window": cov, "counter_at_max": at_max}, out.shape)
        return PoolStep(out=out, index=index, overflows=int(saturated), coverage=coverage)


@dataclass(frozen=True, kw_only=True)
class OrPool(_SpikePool):
    """OR pooling:  ``out = max_p s[p]`` (1 if any neuron of the window spiked).  No memory."""

    kind: ClassVar[str] = "or"
    signals: ClassVar[tuple] = ("spikes",)
    coverage_bins: ClassVar[tuple] = ("window_silent", "window_multiple")

    def step(self, state, spikes=None, v_pre=None, v_post=None, v_state=None, cover=False, winners=None) -> PoolStep:
        spikes = self._spikes(spikes)
        out, _ = self._outputs(spikes.shape)
        kernels.or_pool(spikes, *self.kernel, *self.stride, out)
        cov = _window_counters(out.shape, cover, kernels.N_SUM)
        if cover:  # the window sums into a 1-bit saturating code: the bins only
            kernels.sum_pool(spikes, *self.kernel, *self.stride, 0, int(Rounding.TRN), SPIKE.bits, SPIKE.signed,
                             int(Overflow.SAT), np.empty(out.shape, np.int64), cov)
        return PoolStep(out=out, coverage=self._sum_bins(cov, out.shape))

@dataclass(frozen=True, kw_only=True)
class SumPool(_Pool):
    """Sum pooling:  ``out = cast(Σ_p s[p], out_format, overflow)`` (an integer code, not a spike).

    The code stands for ``out * 2**-out_format.frac``; with ``out_format.frac = log2(kh*kw)``
    it is exactly the window's mean (the 1/area folded into the next layer's weights).
    """

    out_format: QFormat
    overflow: Overflow | str = "ERROR"
    kind: ClassVar[str] = "sum"
    signals: ClassVar[tuple] = ("spikes",)
    coverage_bins: ClassVar[tuple] = ("window_silent", "window_full", "out_wrap_high", "out_sat_high", "round_tie")

    def __post_init__(self):
        super().__post_init__()
        self._format("out_format")
        self._mode("overflow", Overflow)

    def event_range(self, spike_range):
        """``0 .. min(area >> shift, max_int)``; the whole format when a window sum can wrap
        to a negative code (a signed ``out_format`` under WRAP too narrow for a full window)."""
        fmt = self.out_format
        full = self.area >> self.shift
        if self.overflow == Overflow.WRAP and fmt.signed and full > fmt.max_int:
            return (fmt.min_int, fmt.max_int)
        return (0, min(full, fmt.max_int))

    @property
    def shift(self) -> int:
        """Right shift applied to the window sum (0 for the sum)."""
        return 0

    @property
    def rounding_code(self) -> int:
        return int(Rounding.TRN)

    def unreachable_bins(self, site) -> dict:
        """The output write bins of the other overflow mode, and both when a full window's code
        fits; round_tie without a shift or under a rounding without a tie rule."""
        full = int(shift_right(self.area, self.shift, Rounding(self.rounding_code)))
        fits = f"a full window's code {full} fits {self.out_format}" if full <= self.out_format.max_int else None
        out = write_bins_unreachable("out", self.overflow, {"high": fits, "low": None})
        if self.shift == 0:
            out["round_tie"] = "the window sum is not shifted"
        elif self.rounding_code < int(Rounding.RND):
            out["round_tie"] = f"rounding {Rounding(self.rounding_code).name} has no tie rule"
        return {name: why for name, why in out.items() if name in self.coverage_bins}

    def step(self, state, spikes=None, v_pre=None, v_post=None, v_state=None, cover=False, winners=None) -> PoolStep:
        spikes = self._spikes(spikes)
        out, _ = self._outputs(spikes.shape, np.int64)
        fmt = self.out_format
        cov = _window_counters(out.shape, cover, kernels.N_SUM)
        events = kernels.sum_pool(spikes, *self.kernel, *self.stride, self.shift, self.rounding_code,
                                  fmt.bits, fmt.signed, int(self.overflow), out, cov)
        if events and self.overflow == Overflow.ERROR:
            self._raise_outside(out, fmt, "out")
        return PoolStep(out=out, overflows=int(events), coverage=self._sum_bins(cov, out.shape))


@dataclass(frozen=True, kw_only=True)
class AvgPool(SumPool):
    """Average pooling:  ``out = cast(shift_right(Σ_p s[p], log2(kh*kw) - f, rounding), out_format, overflow)``
    with ``f = out_format.frac`` in ``0..log2(kh*kw)``: the mean rounded to ``f`` fractional bits.

    ``kh*kw`` must be a power of two.  ``f = log2(kh*kw)`` keeps the mean exact (then the code
    equals SumPool's).
    """

    rounding: Rounding | str
    kind: ClassVar[str] = "avg"

    def __post_init__(self):
        super().__post_init__()
        self._mode("rounding", Rounding)
        if self.area & (self.area - 1):
            raise self._error("kernel", self.kernel, f"window area {self.area} is not a power of two; "
                              "use SumPool and fold 1/area into the next layer's weights")
        if not 0 <= self.out_format.frac <= self.log2_area:
            raise self._error("out_format", self.out_format,
                              f"frac must be in 0..log2(area) = 0..{self.log2_area}")

    @property
    def log2_area(self) -> int:
        return self.area.bit_length() - 1

    @property
    def shift(self) -> int:
        return self.log2_area - self.out_format.frac

    @property
    def rounding_code(self) -> int:
        return int(self.rounding)


def _per_channel(cov, channels) -> np.ndarray:
    """Per-plane kernel counters (N·C, bins) summed over the batch: (C, bins)."""
    return cov.reshape(-1, channels, cov.shape[1]).sum(axis=0)


def _window_counters(out_shape, cover, columns) -> np.ndarray:
    """A pool kernel's coverage counters per plane: (N·C, ``columns``) zeros (``kernels.N_WIN``
    for ``winner_pool``, ``kernels.N_SUM`` for ``sum_pool``), or empty when not covering."""
    return np.zeros((out_shape[0] * out_shape[1] if cover else 0, columns), np.int64)


def _previous(winners) -> np.ndarray:
    """The previous timestep's winners for ``kernels.winner_pool`` (empty at the first)."""
    return np.zeros((0, 0, 0, 0), np.int64) if winners is None else winners
