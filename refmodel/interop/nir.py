"""NIR graphs in and out (docs/interop.md).

``import_nir(path, profile)`` turns a NIR graph (continuous-time, float parameters) into a
refmodel ``Network`` (integers with declared formats) and a report of every choice and
assumption; ``export_nir(network, path)`` writes a refmodel network as a NIR graph whose float
parameters are its integer codes × 2^-frac, each node carrying its refmodel layer config in its
metadata, so that importing it again gives the same network.

Discretization (forward Euler, one timestep = ``dt``).  With ``g`` the input gain of a neuron
node (IF: ``dt·r``; LIF and LI: ``dt·r/τ``; Threshold: 1) and the membrane scaled by ``1/g``
(spikes do not change when v, the threshold and the reset value are scaled alike):

* IF   ``v ← v + I``, threshold ``v_thr/g``, reset to ``v_reset/g``;
* LIF  ``v ← α·v + I + v_leak/r`` with ``α = 1 − dt/τ`` (a shift leak when ``dt/τ = 2^-k``,
  else a multiplier ``m/2^n``), the constant ``v_leak/r`` folded into the bias of the synaptic
  layer feeding it;
* LI   as LIF, never firing (a readout: its Vm is the output);
* Threshold ``s = I > θ``: a LIF whose leak multiplies by 0 (no memory).

Several edges into one node sum (NIR's meaning): an ``add`` layer is inserted (or a ``Scale``
of ones with several inputs becomes one).  Numbers become integers: weights of ``weight_bits``
with the largest ``frac`` that holds them (the exact ``frac`` when every weight is a dyadic
rational that fits), biases of ``bias_bits`` in the current's scale, Vm of ``vm_bits`` in the
current's scale; ``exact`` refuses any rounding.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refmodel.checks import integer_in
from refmodel.errors import RefmodelError
from refmodel.fixed import Overflow, QFormat, Rounding, quantize
from refmodel.interop import identifier
from refmodel.layers import (
    IF,
    LIF,
    NETWORK_INPUT,
    SPIKE,
    Add,
    AvgPool,
    Conv2d,
    Flatten,
    Linear,
    SumPool,
)
from refmodel.network import Network
from refmodel.spec import layer_config, layer_from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["InteropError", "Profile", "load_profile", "import_nir", "network_from_nir", "export_nir", "network_to_nir"]

#: The graph metadata key of the timestep; the node metadata key of a refmodel layer config.
DT_KEY, CONFIG_KEY = "dt", "refmodel"
#: The timestep assumed when a graph names none (snnTorch's exporter assumes it without storing it).
DEFAULT_DT = 1e-4
RESETS = ("nir", "subtract", "zero", "value")
MAX_FRAC = 48


class InteropError(RefmodelError):
    """A model that cannot be imported or exported: the message names the node and why."""


def _node_error(name, node, problem) -> InteropError:
    return InteropError(f"NIR node {name!r} ({type(node).__name__}): {problem}")


@dataclass(frozen=True)
class Profile:
    """The integer profile of an import: widths, modes and assumptions (docs/interop.md).

    ``layers`` maps a NIR node name to overrides of the fields below for that node."""

    weight_bits: int = 8
    bias_bits: int = 16
    vm_bits: int = 16
    leak_bits: int = 12
    rounding: str = "RND_CONV"
    overflow: str = "SAT"
    input_format: QFormat = SPIKE
    dt: float | None = None
    reset: str = "nir"
    compare: str = ">"
    exact: bool = False
    layers: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("weight_bits", "bias_bits", "vm_bits", "leak_bits"):
            if not integer_in(getattr(self, name), 1, 62):
                raise InteropError(f"profile: {name} = {getattr(self, name)!r} must be an integer in 1..62")
        try:
            Rounding.of(self.rounding), Overflow.of(self.overflow)
        except RefmodelError as err:
            raise InteropError(f"profile: {err}") from None
        if self.reset not in RESETS:
            raise InteropError(f"profile: reset = {self.reset!r} must be one of {', '.join(RESETS)}")
        if self.compare not in (">", ">="):
            raise InteropError(f"profile: compare = {self.compare!r} must be '>' or '>='")
        if self.dt is not None and not (isinstance(self.dt, (int, float)) and self.dt > 0):
            raise InteropError(f"profile: dt = {self.dt!r} must be a number > 0")

    def of(self, node: str) -> Profile:
        """The profile of node ``node``: this one with the node's overrides."""
        overrides = self.layers.get(node)
        return dataclasses.replace(self, layers={}, **overrides) if overrides else self


def load_profile(path, **defaults) -> Profile:
    """A Profile from a TOML file: top-level keys as the Profile's fields (``input_format`` a
    QFormat table), ``[layers.NODE]`` tables of per-node overrides; ``defaults`` (the command
    line's options) apply where the file is silent."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InteropError(f"profile {str(path)!r}: cannot be read: {err}") from None
    fields = {f.name for f in dataclasses.fields(Profile)}
    for key in list(data) + [k for table in data.get("layers", {}).values() for k in table]:
        if key not in fields:
            raise InteropError(f"profile {str(path)!r}: {key!r} is not a profile field ({', '.join(sorted(fields))})")
    if "input_format" in data:
        data["input_format"] = QFormat.from_dict(data["input_format"])
    return Profile(**{**defaults, **data})


# --------------------------------------------------------------------------- reading
def _nir():
    try:
        import nir
    except ImportError as err:
        raise ImportError("NIR import and export need the nir package: pip install 'refmodel[interop]'") from err
    return nir


class _Report:
    """The lines of an import report."""

    def __init__(self):
        self.lines = []

    def __call__(self, line: str):
        self.lines.append(line)


def _name(node_name: str, taken: set) -> str:
    """A refmodel layer name for a NIR node name: letters, digits and _, unique."""
    base = identifier(node_name, "n")
    name, k = base, 1
    while name in taken or name == NETWORK_INPUT:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _array(node_name, node, attr) -> np.ndarray:
    value = getattr(node, attr)
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise _node_error(node_name, node, f"{attr} holds values that are not finite")
    return arr


def _per_channel(node_name, node, attr, channels) -> np.ndarray:
    """A neuron parameter as one value per channel (axis 0 of the node's shape): scalars are
    broadcast, and a per-neuron array must be constant over each channel."""
    arr = _array(node_name, node, attr)
    if arr.ndim == 0 or arr.size == 1:
        return np.full(channels, float(arr.reshape(-1)[0]))
    flat = arr.reshape(arr.shape[0], -1) if arr.shape[0] == channels else None
    if flat is None or not (flat == flat[:, :1]).all():
        raise _node_error(node_name, node, f"{attr} of shape {arr.shape} is not one value per channel ({channels} "
                                           "channels): refmodel's neuron parameters are per channel")
    return flat[:, 0].copy()


def _fracs(values: np.ndarray, bits: int, signed: bool = True) -> tuple[int | None, int]:
    """(exact, fit): the smallest frac at which every value is an integer code of ``bits``
    (None when there is none), and the largest frac at which the largest |value| still fits."""
    top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    largest = float(np.abs(values).max(initial=0))
    fit = MAX_FRAC if largest == 0 else min(MAX_FRAC, math.floor(math.log2(top / largest)))
    for frac in range(-MAX_FRAC, fit + 1):
        scaled = values * 2.0**frac
        if (scaled == np.round(scaled)).all():
            return frac, fit
    return None, fit


def _common_frac(fracs) -> int:
    """One frac for weights whose currents are added: the largest exact frac when it holds them
    all, else the smallest frac that still holds every one."""
    exact = [e for e, _ in fracs]
    fit = min(f for _, f in fracs)
    if None not in exact and max(exact) <= fit:
        return max(exact)
    return fit


def _quantized(name, node, what, values, fmt, profile, report) -> np.ndarray:
    """Codes of ``values`` in ``fmt`` (rounding and saturating by the profile), reported: exact,
    or the clipped count and the largest error relative to the largest |value|."""
    codes = quantize(values, fmt, profile.rounding, "SAT")
    back = codes * 2.0**-fmt.frac
    error = np.abs(back - values)
    if not error.any():
        report(f"  {what}: {fmt}, exact")
        return codes
    if profile.exact:
        raise _node_error(name, node, f"{what} is not a dyadic rational that fits {fmt} (exact import refused)")
    clipped = int(np.count_nonzero((values * 2.0**fmt.frac > fmt.max_int) | (values * 2.0**fmt.frac < fmt.min_int)))
    scale = float(np.abs(values).max()) or 1.0
    report(f"  {what}: {fmt}, {clipped} clipped, largest error {float(error.max()) / scale:.2e} of the largest |{what}|")
    return codes


@dataclass
class _Source:
    """What a converted node gives its readers: the refmodel layer name and the output format."""

    layer: str
    fmt: QFormat
    shape: tuple


class _Importer:
    """Converts one NIR graph, node by node in topological order."""

    def __init__(self, graph, profile: Profile, name: str):
        self.graph, self.profile, self.name = graph, profile, name
        self.report = _Report()
        self.layers, self.taken, self.sources = [], set(), {}
        self.dt = self._timestep(graph.metadata or {})

    def _timestep(self, metadata) -> float:
        """dt: given, from the graph's metadata, or else the value giving every neuron node an
        input gain of 1 (τ/r of LIF and LI, 1/r of IF nodes: how snnTorch and sinabs export)
        when they all agree, else DEFAULT_DT; reported."""
        nir = _nir()
        if self.profile.dt is not None:
            self.report(f"dt = {self.profile.dt} (given)")
            return float(self.profile.dt)
        if DT_KEY in metadata:
            dt = float(np.asarray(metadata[DT_KEY]).reshape(-1)[0])
            self.report(f"dt = {dt} (from the graph's metadata)")
            return dt
        unit = set()
        for node in self.graph.nodes.values():
            if isinstance(node, (nir.LIF, nir.LI)):
                unit |= set(np.ravel(np.asarray(node.tau, np.float64) / np.asarray(node.r, np.float64)).tolist())
            elif isinstance(node, nir.IF):
                unit |= set(np.ravel(1 / np.asarray(node.r, np.float64)).tolist())
        values = sorted(unit)
        if values and math.isclose(values[0], values[-1], rel_tol=1e-6) and values[0] > 0:  # (float32 files)
            self.report(f"dt = {values[0]:g} inferred: the graph names none, and it gives every neuron an input gain "
                        "of 1 (τ/r of LIF, 1/r of IF: as snnTorch and sinabs export; --dt to choose)")
            return values[0]
        self.report(f"dt = {DEFAULT_DT} assumed: the graph names none and its neurons imply no common one (--dt)")
        return DEFAULT_DT

    # ------------------------------------------------------------------ graph order
    def order(self):
        nir = _nir()
        nodes, edges = self.graph.nodes, self.graph.edges
        for name, node in nodes.items():
            if isinstance(node, nir.NIRGraph):
                raise _node_error(name, node, "a nested graph; refmodel imports flat graphs (flatten it first)")
        inputs = {name: [a for a, b in edges if b == name] for name in nodes}
        for a, b in edges:
            if a not in nodes or b not in nodes:
                raise InteropError(f"NIR edge ({a!r}, {b!r}) names a node the graph does not have")
        firsts = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
        lasts = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
        if len(firsts) != 1 or len(lasts) != 1:
            raise InteropError(f"a NIR graph with {len(firsts)} Input and {len(lasts)} Output nodes: refmodel "
                               "imports one of each")
        done, order = set(), []
        while len(order) < len(nodes):
            ready = [n for n in nodes if n not in done and all(s in done for s in inputs[n])]
            if not ready:
                stuck = next(n for n in nodes if n not in done)
                raise _node_error(stuck, nodes[stuck], "is on a cycle (a recurrent edge): refmodel networks are acyclic")
            order.append(ready[0])
            done.add(ready[0])
        return order, inputs, firsts[0], lasts[0]

    # ------------------------------------------------------------------ nodes
    def run(self) -> Network:
        nir = _nir()
        order, inputs, first, last = self.order()
        shape = tuple(int(d) for d in np.asarray(self.graph.nodes[first].input_type["input"]).reshape(-1))
        if not shape or min(shape) < 1:
            raise _node_error(first, self.graph.nodes[first], f"input shape {shape} is not a sample shape")
        fmt = self.profile.input_format
        self.report(f"input {first!r}: shape {shape}, format {fmt}{' (spikes)' if fmt == SPIKE else ''}")
        self.sources[first] = _Source(NETWORK_INPUT, fmt, shape)
        self.weight_fracs = self._weight_fracs(inputs)
        handlers = {
            nir.Affine: self.synapse, nir.Linear: self.synapse, nir.Conv2d: self.synapse,
            nir.IF: self.neuron, nir.LIF: self.neuron, nir.LI: self.neuron, nir.Threshold: self.neuron,
            nir.SumPool2d: self.pool, nir.AvgPool2d: self.pool, nir.Flatten: self.flatten, nir.Scale: self.scale,
        }  # fmt: skip
        for name in order:
            node = self.graph.nodes[name]
            if name == first:
                continue
            if name == last:
                (source,) = inputs[name] if len(inputs[name]) == 1 else (None,)
                if source is None or self.sources[source].layer != self.layers[-1].name:
                    raise _node_error(name, node, "the output must read the last node of the graph, alone")
                continue
            handler = handlers.get(type(node))
            if handler is None:
                raise _node_error(name, node, f"refmodel does not import {type(node).__name__} nodes"
                                              f"{self._why_not(node)}")
            if not inputs[name]:
                raise _node_error(name, node, "has no incoming edge")
            handler(name, node, [self.sources[s] for s in inputs[name]])
        return Network(self.layers, shape, fmt, name=self.name)

    def _weight_fracs(self, inputs) -> dict:
        """The weight frac of every synaptic node: its own (``_fracs``), or one common to the
        synaptic nodes whose currents one node sums (``_common_frac``)."""
        nir = _nir()
        synapses = {name: node for name, node in self.graph.nodes.items()
                    if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d))}
        own = {name: _fracs(_array(name, node, "weight"), self.profile.of(name).weight_bits)
               for name, node in synapses.items()}
        chosen = {name: _common_frac([fracs]) for name, fracs in own.items()}
        for sources in inputs.values():
            group = [s for s in sources if s in synapses]
            if len(group) > 1:
                frac = _common_frac([own[s] for s in group])
                chosen.update(dict.fromkeys(group, frac))
        return chosen

    @staticmethod
    def _why_not(node) -> str:
        kind = type(node).__name__
        if kind in ("CubaLIF", "CubaLI"):
            return (": its synaptic-current stage (tau_syn) is a register refmodel models only in the Loihi preset, "
                    "whose decays and widths are fixed; convert the graph to LIF/LI or use a Loihi spec")
        if kind == "Conv1d":
            return ": refmodel convolves images (Conv2d)"
        return ""

    def _add(self, layer, fmt: QFormat, shape: tuple, node: str):
        self.layers.append(layer)
        self.sources[node] = _Source(layer.name, fmt, shape)

    def _merged(self, name, node, sources) -> _Source:
        """The one input of ``node``: its source, or an ``add`` of several (NIR sums the
        edges into a node), written into a format that holds every sum exactly."""
        if len(sources) == 1:
            return sources[0]
        fracs = {s.fmt.frac for s in sources}
        shapes = {s.shape for s in sources}
        if len(fracs) != 1 or len(shapes) != 1:
            raise _node_error(name, node, f"sums inputs of other scales or shapes ({[str(s.fmt) for s in sources]}, "
                                          f"{sorted(shapes)}): refmodel adds codes of one scale and shape")
        lo = sum(s.fmt.min_int for s in sources)
        hi = sum(s.fmt.max_int for s in sources)
        signed = lo < 0
        bits = max(hi.bit_length(), (-lo - 1).bit_length() if signed else 0) + int(signed)
        fmt = QFormat(bits, fracs.pop(), signed)
        layer = Add(name=_name(f"{name}_sum", self.taken), inputs=[s.layer for s in sources], format=fmt,
                    overflow="ERROR")
        self.report(f"{layer.name} (add): the {len(sources)} edges into {name!r}, summed into {fmt} (never overflows)")
        self._add(layer, fmt, sources[0].shape, f"{name}_sum")
        return self.sources[f"{name}_sum"]

    def synapse(self, name, node, sources):
        nir = _nir()
        source = self._merged(name, node, sources)
        profile = self.profile.of(name)
        weight = _array(name, node, "weight")
        bias = _array(name, node, "bias") if hasattr(node, "bias") else None
        if isinstance(node, nir.Conv2d):
            if weight.ndim != 4:
                raise _node_error(name, node, f"weight of shape {weight.shape} is not (C_out, C_in, kh, kw)")
            dilation = np.broadcast_to(np.asarray(node.dilation), (2,))
            if (dilation != 1).any():
                raise _node_error(name, node, f"dilation {tuple(dilation)}: refmodel convolves without dilation")
            padding = node.padding
            if isinstance(padding, str):
                if padding != "same" or (np.asarray(node.stride) != 1).any() or weight.shape[2] % 2 == 0:
                    raise _node_error(name, node, f"padding {padding!r}: only 'same' of stride 1 and odd kernels")
                padding = (weight.shape[2] // 2, weight.shape[3] // 2)
            geometry = dict(stride=tuple(int(s) for s in np.broadcast_to(np.asarray(node.stride), (2,))),
                            padding=tuple(int(p) for p in np.broadcast_to(np.asarray(padding), (2,))),
                            groups=int(node.groups))
        elif weight.ndim != 2:
            raise _node_error(name, node, f"weight of shape {weight.shape} is not (out, in)")
        else:
            geometry = {}
        if bias is not None and not bias.any():
            bias = None  # (a zero bias is no bias: no register to declare)
        layer_name = _name(name, self.taken)
        self.report(f"{layer_name} ({'conv2d' if geometry else 'linear'}) from {name!r}:")
        w_fmt = QFormat(profile.weight_bits, self.weight_fracs[name])
        codes = _quantized(name, node, "weight", weight, w_fmt, profile, self.report)
        fields = dict(weight=codes, weight_format=w_fmt)
        if bias is not None:
            b_fmt = QFormat(profile.bias_bits, w_fmt.frac + source.fmt.frac)
            fields.update(bias=_quantized(name, node, "bias", bias, b_fmt, profile, self.report), bias_format=b_fmt)
        cls = Conv2d if geometry else Linear
        layer = cls(name=layer_name, inputs=[source.layer], **fields, **geometry)
        out_shape = layer.output_shape(source.shape)
        self._add(layer, layer.signal_formats(source.fmt)["current"], out_shape, name)

    def _gain(self, name, node, channels):
        """(g per channel, α per channel or None): the input gain and the leak factor of a neuron node."""
        nir = _nir()
        if isinstance(node, nir.Threshold):
            return np.ones(channels), np.zeros(channels)
        r = _per_channel(name, node, "r", channels)
        if isinstance(node, nir.IF):
            return self.dt * r, None
        tau = _per_channel(name, node, "tau", channels)
        if (tau < self.dt).any():
            raise _node_error(name, node, f"tau {tau.min()} is shorter than dt = {self.dt}: the leak would overshoot")
        return self.dt * r / tau, 1 - self.dt / tau

    def _leak(self, name, node, alpha, profile) -> dict:
        """The LIF leak fields for a leak factor α (one for the layer): none, shift or multiplier."""
        if not (alpha == alpha[0]).all():
            raise _node_error(name, node, "tau varies over channels: refmodel's leak is one per layer")
        a = float(alpha[0])
        if a == 1:
            return {}
        rounding = Rounding.of(profile.rounding).name
        step = 1 - a
        k = -math.log2(step) if step > 0 else None
        if k is not None and k == int(k):
            self.report(f"  leak: α = {a} = 1 - 2^-{int(k)}: shift by {int(k)}, rounding {rounding}")
            return dict(leak="shift", leak_shift=int(k), leak_rounding=rounding)
        exact, _ = _fracs(np.array([a]), profile.leak_bits + 1, signed=False)
        n = profile.leak_bits if exact is None else max(0, min(exact, profile.leak_bits))
        m = int(round(a * 2**n))
        if m / 2**n != a:
            if profile.exact:
                raise _node_error(name, node, f"leak factor α = {a} is not m/2^n with n <= {profile.leak_bits} "
                                              "(exact import refused)")
            self.report(f"  leak: α = {a} ≈ {m}/2^{n} (error {abs(m / 2**n - a):.2e}), rounding {rounding}")
        else:
            self.report(f"  leak: α = {a} = {m}/2^{n}, rounding {rounding}")
        return dict(leak="mul", leak_mult=m, leak_shift=n, leak_rounding=rounding)

    def neuron(self, name, node, sources):
        nir = _nir()
        source = self._merged(name, node, sources)
        profile = self.profile.of(name)
        channels = source.shape[0]
        gain, alpha = self._gain(name, node, channels)
        vm = QFormat(profile.vm_bits, source.fmt.frac)
        layer_name = _name(name, self.taken)
        kind = type(node).__name__
        self.report(f"{layer_name} from {name!r} ({kind}): Vm {vm}, overflow {profile.overflow}, compare "
                    f"'{profile.compare}', input gain {'/'.join(f'{g:g}' for g in np.unique(gain))} folded into the "
                    "threshold and reset")
        if isinstance(node, nir.LI):
            threshold, reset = np.full(channels, vm.max_int), "none"
            self.report("  LI: never fires (threshold at the top of the Vm range, no reset): a readout")
        else:
            attr = "threshold" if isinstance(node, nir.Threshold) else "v_threshold"
            theta = _per_channel(name, node, attr, channels) / gain
            threshold = _quantized(name, node, "threshold", theta, vm, profile, self.report)
            reset = "zero" if isinstance(node, nir.Threshold) else None
        fields = dict(vm=vm, overflow=profile.overflow, compare=profile.compare)
        if reset is None:
            v_reset = _per_channel(name, node, "v_reset", channels) / gain if getattr(node, "v_reset", None) is not None \
                else np.zeros(channels)
            reset = profile.reset
            if reset == "nir":
                reset = "zero" if not v_reset.any() else "value"
                self.report(f"  reset: to v_reset ({reset}), as NIR defines it (--reset to choose)")
            if reset == "value":
                codes = _quantized(name, node, "v_reset", v_reset, vm, profile, self.report)
                if not (codes == codes[0]).all():
                    raise _node_error(name, node, "v_reset varies over channels: refmodel's reset value is one")
                fields["reset_value"] = int(codes[0])
        fields["reset"] = reset
        leak = self._leak(name, node, alpha, profile) if alpha is not None else {}
        v_leak = _per_channel(name, node, "v_leak", channels) if hasattr(node, "v_leak") else np.zeros(channels)
        if v_leak.any():
            self._fold_leak_current(name, node, v_leak / _per_channel(name, node, "r", channels), source)
        thresholds = tuple(int(t) for t in threshold)
        fields["threshold"] = thresholds[0] if len(set(thresholds)) == 1 else thresholds
        layer = (LIF if leak else IF)(name=layer_name, inputs=[source.layer], **fields, **leak)
        self._add(layer, SPIKE, source.shape, name)

    def _fold_leak_current(self, name, node, current, source):
        """Add the constant v_leak/r to the bias of the synaptic layer feeding the neuron."""
        synapse = next((la for la in self.layers if la.name == source.layer), None)
        if synapse is None or synapse.role != "synapse":
            raise _node_error(name, node, "v_leak ≠ 0 needs a synaptic layer feeding the neuron, whose bias takes "
                                          "the constant current v_leak/r")
        b_fmt = synapse.bias_format or QFormat(self.profile.of(name).bias_bits, source.fmt.frac)
        extra = _quantized(name, node, "v_leak/r", current, b_fmt, self.profile.of(name), self.report)
        bias = (synapse.bias if synapse.bias is not None else 0) + extra
        index = self.layers.index(synapse)
        self.layers[index] = dataclasses.replace(synapse, bias=bias, bias_format=b_fmt)

    def pool(self, name, node, sources):
        nir = _nir()
        (source,) = sources if len(sources) == 1 else (None,)
        if source is None:
            raise _node_error(name, node, "a pool reads one neuron node")
        kernel = tuple(int(k) for k in np.broadcast_to(np.asarray(node.kernel_size), (2,)))
        stride = tuple(int(s) for s in np.broadcast_to(np.asarray(node.stride), (2,)))
        if np.asarray(node.padding).any():
            raise _node_error(name, node, "padding: refmodel pools whole windows without padding")
        area = kernel[0] * kernel[1]
        layer_name = _name(name, self.taken)
        if isinstance(node, nir.SumPool2d):
            fmt = QFormat(area.bit_length(), 0, signed=False)
            layer = SumPool(name=layer_name, inputs=[source.layer], kernel=kernel, stride=stride, out_format=fmt)
        else:
            if area & (area - 1):
                raise _node_error(name, node, f"a {kernel} window: refmodel averages power-of-two areas exactly")
            fmt = QFormat(area.bit_length(), area.bit_length() - 1, signed=False)
            layer = AvgPool(name=layer_name, inputs=[source.layer], kernel=kernel, stride=stride, out_format=fmt,
                            rounding="TRN")
        self.report(f"{layer_name} ({layer.kind}) from {name!r}: {kernel} windows, stride {stride}, codes {fmt} (exact)")
        self._add(layer, fmt, layer.output_shape(source.shape), name)

    def flatten(self, name, node, sources):
        source = self._merged(name, node, sources)
        layer = Flatten(name=_name(name, self.taken), inputs=[source.layer])
        self.report(f"{layer.name} (flatten) from {name!r}: the whole sample, row-major (start_dim {node.start_dim})")
        self._add(layer, source.fmt, layer.output_shape(source.shape), name)

    def scale(self, name, node, sources):
        """A Scale of ones with several inputs is their sum (an ``add``); with one, nothing."""
        if not (_array(name, node, "scale") == 1).all():
            raise _node_error(name, node, "a scale other than 1: fold it into the weights of the layer before it")
        self.sources[name] = self._merged(name, node, sources)


def network_from_nir(graph, profile: Profile = Profile(), name: str = "network") -> tuple[Network, list]:
    """(Network, report lines) of a NIR graph (see the module docstring).  A graph written by
    ``export_nir`` (every node carrying its refmodel config) gives back exactly that network."""
    if all(CONFIG_KEY in (node.metadata or {}) for n, node in graph.nodes.items()
           if type(node).__name__ not in ("Input", "Output")):
        return _rebuilt(graph, name)
    importer = _Importer(graph, profile, name)
    return importer.run(), importer.report.lines


def import_nir(path, profile: Profile = Profile(), name: str | None = None) -> tuple[Network, list]:
    """Read the NIR file ``path`` and convert it (``network_from_nir``)."""
    nir = _nir()
    try:
        graph = nir.read(str(path), type_check=False)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise InteropError(f"{path}: not a readable NIR file ({type(err).__name__}: {err})") from None
    return network_from_nir(graph, profile, name or identifier(Path(path).stem, "nir"))


# --------------------------------------------------------------------------- writing
def _rebuilt(graph, name) -> tuple[Network, list]:
    """The network a graph of ``export_nir`` describes: each layer from its config, its arrays
    from the node's parameters (which must be codes × 2^-frac of the config's formats)."""
    nir = _nir()
    meta = graph.metadata or {}
    network_meta = json.loads(meta.get(CONFIG_KEY, "{}")) if isinstance(meta.get(CONFIG_KEY), str) else {}
    layers = []
    order = network_meta.get("layers") or [n for n, node in graph.nodes.items()
                                            if not isinstance(node, (nir.Input, nir.Output))]
    for node_name in order:
        node = graph.nodes[node_name]
        config = json.loads(node.metadata[CONFIG_KEY])
        arrays = {}
        for key, value in config.items():
            if isinstance(value, dict) and set(value) == {"shape", "frac"}:
                floats = _array(node_name, node, key)
                codes = floats * 2.0 ** value["frac"]
                if not (codes == np.round(codes)).all():
                    raise _node_error(node_name, node, f"{key} is not codes of frac {value['frac']}: edited after export?")
                arrays[f"{config['name']}.{key}"] = codes.astype(np.int64).reshape(value["shape"])
                config[key] = f"{config['name']}.{key}"
        layers.append(layer_from_dict(config, arrays))
    first = next(node for node in graph.nodes.values() if isinstance(node, nir.Input))
    shape = tuple(int(d) for d in np.asarray(first.input_type["input"]).reshape(-1))
    input_format = QFormat.from_dict(network_meta["input_format"]) if "input_format" in network_meta else SPIKE
    network = Network(layers, shape, input_format, name=network_meta.get("name", name))
    return network, [f"a graph written by refmodel export-nir: network {network.name!r} rebuilt from its metadata"]


def _refuse(layer, why):
    raise InteropError(f"layer {layer.name!r} ({layer.kind}): NIR cannot express it: {why}")


def network_to_nir(network: Network):
    """The NIR graph of ``network``: float parameters = codes × 2^-frac, the timestep dt = 1
    (so IF has r = 1 and LIF τ = 1/(1 - α), r = τ), and every node's refmodel config in its
    metadata (arrays replaced by their shape and frac)."""
    nir = _nir()
    nodes = {NETWORK_INPUT: nir.Input(input_type={"input": np.array(network.input_shape)})}
    edges = []
    for layer in network.layers:
        site = network.sites[layer.name]
        node = _node_of(nir, layer, site)
        config = layer_config(layer)
        for key, value in list(config.items()):
            raw = getattr(layer, key, None)
            if isinstance(raw, np.ndarray):
                config[key] = {"shape": list(raw.shape), "frac": getattr(layer, f"{key}_format").frac}
        node.metadata[CONFIG_KEY] = json.dumps(config, sort_keys=True)
        nodes[layer.name] = node
        edges += [(source, layer.name) for source in site.source_names]
    nodes["output"] = nir.Output(output_type={"output": np.array(network.output_shape)})
    edges.append((network.layers[-1].name, "output"))
    meta = {DT_KEY: 1.0, CONFIG_KEY: json.dumps({"name": network.name, "input_format": network.input_format.to_dict(),
                                                 "layers": [layer.name for layer in network.layers]})}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def _floats(codes, fmt) -> np.ndarray:
    return np.asarray(codes, np.float64) * 2.0**-fmt.frac


def _node_of(nir, layer, site):
    """The NIR node of one refmodel layer (docs/interop.md, "Export")."""
    kind = layer.kind
    if kind in ("conv2d", "linear"):
        k = layer.weight.shape[0]
        weight = _floats(layer.weight, layer.weight_format)
        bias = np.zeros(k) if layer.bias is None else _floats(layer.bias, layer.bias_format)
        if kind == "linear":
            return nir.Affine(weight=weight, bias=bias)
        return nir.Conv2d(input_shape=tuple(site.input_shape[1:]), weight=weight, stride=layer.stride,
                          padding=layer.padding, dilation=1, groups=layer.groups, bias=bias)
    if kind == "flatten":
        return nir.Flatten(input_type={"input": np.array(site.input_shape)}, start_dim=0)
    if kind in ("if", "lif"):
        channels = site.input_shape[0]
        shape = site.input_shape
        thresholds = np.broadcast_to(np.asarray(layer.threshold, np.float64), (channels,))
        v_thr = _per_neuron(thresholds * 2.0**-layer.vm.frac, shape)
        v_reset = _per_neuron(np.full(channels, layer.reset_value * 2.0**-layer.vm.frac), shape)
        if kind == "if":
            return nir.IF(r=np.ones(shape), v_threshold=v_thr, v_reset=v_reset)
        if layer.leak == "shift":
            alpha = 1 - 2.0**-layer.leak_shift
        elif layer.leak == "mul":
            alpha = layer.leak_mult * 2.0**-layer.leak_shift
        else:
            _refuse(layer, "a linear leak is not NIR's exponential decay")
        if alpha >= 1:
            _refuse(layer, "a leak factor of 1 has no time constant; write it as an IF layer")
        tau = np.full(shape, 1 / (1 - alpha))
        return nir.LIF(tau=tau, r=tau.copy(), v_leak=np.zeros(shape), v_threshold=v_thr, v_reset=v_reset)
    if kind in ("sum", "avg"):
        pool = nir.SumPool2d if kind == "sum" else nir.AvgPool2d
        return pool(kernel_size=np.array(layer.kernel), stride=np.array(layer.stride), padding=np.zeros(2, int))
    if kind == "add":
        return nir.Scale(scale=np.ones(site.output_shape))  # several edges into one node sum
    _refuse(layer, {
        "winner_spike": "NIR has no max-pooling on the membrane potential",
        "pooled_neuron": "NIR has no max-pooling on the membrane potential",
        "count_gate": "NIR has no spike-count gated pooling",
        "or": "NIR has no OR pooling",
        "dual_threshold": "NIR has no neuron with two thresholds",
        "loihi_lif": "the Loihi preset's 24-bit current register and fixed decays are not NIR's CubaLIF",
        "concat": "NIR has no concatenation node",
    }.get(kind, "no NIR node for it"))


def _per_neuron(values, shape) -> np.ndarray:
    """One value per channel broadcast to every neuron of ``shape`` (C, ...)."""
    return np.broadcast_to(values.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()


def export_nir(network: Network, path) -> None:
    """Write ``network`` as the NIR file ``path`` (atomically)."""
    from refmodel.files import AtomicOutput

    nir = _nir()
    graph = network_to_nir(network)
    with AtomicOutput(path) as out:
        nir.write(out.tmp, graph)
