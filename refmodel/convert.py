"""ANN -> SNN conversion: batch-norm folding, data-based normalization, quantization (floats),
then the refmodel spiking network (integers).

Following Rueckauer et al. 2016 ("Theory and tools for the conversion of analog to spiking
convolutional neural networks") and the SNN Toolbox.  The steps, each a function (method,
equations and choices: ``docs/conversion.md``)::

    folded = fold_batchnorm(ann)                                  # W' = W*g/s, b' = beta + (b - mu)*g/s
    normed, lambdas = normalize(folded, x_calib, percentile=99.9) # W <- W*lam_prev/lam, b <- b/lam
    formats = choose_formats(normed, input_format, weight_bits=8) # per-layer QFormats
    layers = quantize_parameters(normed, formats, input_format)   # integer codes + QFormats
    x_codes = quantize_input(x, input_format)                     # analog input current, per step
    network = to_network(layers, input_shape, "count_gate")       # refmodel layers, integers only

or all at once ``layers, lambdas = convert(ann, x_calib, input_format)``.  Floats live only
here; what leaves ``quantize_parameters`` and ``quantize_input`` is int64 codes with a QFormat,
and ``to_network`` only moves integers into refmodel's spiking layers.

The network is a chain or a graph of *units*: a weight layer (conv or linear), optionally a
batchnorm (folded), an activation — relu (the IF neuron's rate approximates it),
dual_threshold (a DualThreshold layer) or threshold (an IF with the trained threshold and a
strict compare; both exact at T = 1) —, or an add of such weight layers and of
activations (identity shortcuts) before the activation (a residual unit: Add -> IF); units are
joined by maxpool / avgpool / global_avgpool / flatten / concat.  The last unit is the readout
and may omit its relu.  Anything else is refused.
"""

from __future__ import annotations

import math
import numbers
import dataclasses
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from refmodel.ann import ANN, INPUT, ANNError, forward
from refmodel.fixed import FixedOverflowError, Overflow, QFormat, Rounding, quantize
from refmodel.layers import (
    IF,
    LIF,
    NETWORK_INPUT,
    Add,
    Concat,
    Conv2d,
    CountGatePool,
    DualThreshold,
    Flatten,
    Linear,
    OrPool,
    PooledNeuronPool,
    SumPool,
    WinnerSpikePool,
)
from refmodel.layers.base import SPIKE
from refmodel.network import Network

__all__ = [
    "ConversionError",
    "fold_batchnorm",
    "normalize",
    "choose_formats",
    "quantize_parameters",
    "quantize_input",
    "convert",
    "POOLINGS",
    "READOUTS",
    "RESETS",
    "to_network",
]

WEIGHT_KINDS = ("conv", "linear")
PASS_KINDS = ("maxpool", "avgpool", "global_avgpool", "flatten")
AVG_KINDS = ("avgpool", "global_avgpool")
ACTIVATIONS = ("relu", "dual_threshold", "threshold")
#: Activations with trained thresholds and 0/1 outputs (spiking layers at one timestep): not normalized.
BINARY = ("dual_threshold", "threshold")


class ConversionError(ANNError):
    """The network or the conversion options cannot be converted; the message says where."""


_UNIT = ("conv", "linear", "maxpool", "avgpool", "global_avgpool", "flatten", "add", "concat")
#: What may read each kind in a convertible graph (None: the input); the network may end only
#: with conv, linear, batchnorm or relu (so after the readout at most a batchnorm and a relu).
_FOLLOWERS = {
    None: ("conv", "linear", "flatten", "add"),
    "conv": ("batchnorm", *ACTIVATIONS, "add"),
    "linear": ("batchnorm", *ACTIVATIONS, "add"),
    "batchnorm": (*ACTIVATIONS, "add"),
    "add": ACTIVATIONS,
    **dict.fromkeys((*ACTIVATIONS, "maxpool", "avgpool", "global_avgpool", "flatten", "concat"), _UNIT),
}
_ENDS = ("conv", "linear", "batchnorm", "relu")
_GRAPH = ("graphs of units conv|linear [batchnorm] relu|dual_threshold|threshold (or add(conv|linear "
          "[batchnorm] or activations, ...) relu|dual_threshold|threshold) joined by "
          "maxpool|avgpool|global_avgpool|flatten|concat, the readout's relu optional")
#: Kinds whose output is a pre-activation (a current in the SNN): read by one layer only.
_ONE_READER = ("conv", "linear", "batchnorm", "add")


class _Graph:
    """The units of a convertible ANN, checked: who reads whom, and for each weight layer or
    add the activation or add it feeds (``docs/conversion.md`` §1)."""

    def __init__(self, ann: ANN):
        self.layer = {layer["name"]: layer for layer in ann.layers}
        self.sources = {layer["name"]: sources for layer, sources in zip(ann.layers, ann.sources)}
        self.shape = {INPUT: ann.input_shape} | {layer["name"]: s for layer, s in zip(ann.layers, ann.shapes)}
        self.readers = {}
        for layer in ann.layers:
            for source in self.sources[layer["name"]]:
                kind = self.kind(source)
                if layer["kind"] not in _FOLLOWERS[kind]:
                    raise ConversionError(
                        f"layer {layer['name']!r} ({layer['kind']}) cannot follow "
                        f"{f'{kind} {source!r}' if kind else 'the input'}: convertible networks are {_GRAPH}"
                    )
                self.readers.setdefault(source, []).append(layer["name"])
        end = ann.layers[-1]["kind"] if ann.layers else None
        if end not in _ENDS:
            raise ConversionError(
                f"the network ends with {end or 'no layer'}: it must end with its readout conv/linear layer"
            )
        for layer in ann.layers[:-1]:
            readers = self.readers.get(layer["name"], [])
            if not readers:
                raise ConversionError(f"layer {layer['name']!r} ({layer['kind']}) is read by no layer and is not "
                                      "the network's output (its last layer)")
            if layer["kind"] in _ONE_READER and len(readers) > 1:
                raise ConversionError(
                    f"layer {layer['name']!r} ({layer['kind']}) is read by {readers}: the output of a conv, linear, "
                    "batchnorm or add is a current that feeds one activation, batchnorm or add"
                )
        output = ann.layers[-1]["name"]
        #: The weight layer or add whose activation (or output) is the network's output.
        self.readout = self.sources[output][0] if self.kind(output) == "relu" else output

    def kind(self, name):
        """The kind of layer ``name`` (None for the network input)."""
        return None if name == INPUT else self.layer[name]["kind"]

    def reader(self, name, kinds):
        """The layer reading ``name`` when it is one of ``kinds``, else None."""
        readers = self.readers.get(name, [])
        return self.layer[readers[0]] if len(readers) == 1 and self.kind(readers[0]) in kinds else None

    def add_of(self, name):
        """The name of the add weight layer ``name`` feeds, or None."""
        add = self.reader(name, ("add",))
        return add and add["name"]

    def unit(self, name) -> str:
        """What an SNN reader of ``name`` reads: an activation is its unit (its weight layer or add)."""
        return self.sources[name][0] if self.kind(name) in ACTIVATIONS else name

    def units(self) -> list:
        """Names of the weight layers and adds that feed an activation or are the readout."""
        return [name for name, layer in self.layer.items()
                if layer["kind"] == "add" or layer["kind"] in WEIGHT_KINDS and self.add_of(name) is None]

    def _through_flatten(self, name) -> str:
        """The source of weight layer ``name``, looking through flatten layers."""
        source = self.sources[name][0]
        while self.kind(source) == "flatten":
            source = self.sources[source][0]
        return source

    def analog(self, name) -> bool:
        """Whether weight layer ``name`` reads the analog network input (through flatten at most)."""
        return self._through_flatten(name) == INPUT

    def input_frac(self, name, input_format) -> int:
        """Fraction bits of the codes entering weight layer ``name``: the input's, or 0 for spikes."""
        return input_format.frac if self.analog(name) else SPIKE.frac

    def pool_entry(self, name) -> dict:
        """The integer entry of a pass layer: kind, name and, for a pool, ``k`` and ``stride``
        (a global average pool: ``k = (H, W)``, the whole map)."""
        layer = self.layer[name]
        if layer["kind"] == "global_avgpool":
            return {"kind": layer["kind"], "name": name, "k": tuple(self.shape[self.sources[name][0]][1:])}
        return {k: layer[k] for k in ("kind", "name", "k", "stride") if k in layer}

    def pool_shift(self, name) -> int:
        """``a`` when weight layer ``name`` reads the sum pool of an average pool of area ``2**a``
        (its codes then have frac a, docs/conversion.md §6), else 0."""
        source = self._through_flatten(name)
        return _avg_shift(self.pool_entry(source)) if self.kind(source) in AVG_KINDS else 0


def fold_batchnorm(ann: ANN) -> ANN:
    """The same function without batchnorm layers: each is folded into the layer before it.

    With ``s = sqrt(var + eps)`` and ``g = gamma / s`` per output channel k:
    ``W'[k] = W[k] * g[k]`` and ``b'[k] = beta[k] + (b[k] - mean[k]) * g[k]``.  The layers
    that read a batchnorm read its weight layer instead.
    """
    graph = _Graph(ann)
    layers, folded = [], {}
    for layer in ann.layers:
        name = layer["name"]
        if layer["kind"] != "batchnorm":
            layer = dict(layer)
            if "inputs" in layer:
                layer["inputs"] = tuple(folded.get(source, source) for source in layer["inputs"])
            elif graph.sources[name][0] in folded and layers[-1]["name"] != folded[graph.sources[name][0]]:
                layer["inputs"] = (folded[graph.sources[name][0]],)  # its previous layer is no longer the source
            layers.append(layer)
            continue
        g = layer["gamma"] / np.sqrt(layer["var"] + layer["eps"])
        folded[name] = graph.sources[name][0]
        prev = next(kept for kept in layers if kept["name"] == folded[name])
        prev["weight"] = prev["weight"] * g.reshape((-1,) + (1,) * (prev["weight"].ndim - 1))
        prev["bias"] = layer["beta"] + (prev["bias"] - layer["mean"]) * g
    return ANN(ann.input_shape, layers, dict(ann.meta))


def _identity_shortcuts(ann: ANN, graph: _Graph) -> ANN:
    """``ann`` with each add input that is an activation (an identity shortcut) read through a
    new weight layer ``<add>_identity<j>`` (j: its place in the add's inputs) of weight I and
    bias 0, inserted before the add: a 1x1 conv (a linear for flat inputs).  The same function,
    and every add input is a weight layer, normalized like the others."""
    layers = []
    for layer, sources in zip(ann.layers, ann.sources):
        if layer["kind"] == "add":
            inputs = list(sources)
            for j, source in enumerate(sources):
                if graph.kind(source) in WEIGHT_KINDS:
                    continue
                shape = graph.shape[source]
                eye = np.eye(shape[0])
                inputs[j] = f"{layer['name']}_identity{j}"
                layers.append({"kind": "conv" if len(shape) == 3 else "linear", "name": inputs[j], "inputs": (source,),
                               "weight": eye[:, :, None, None] if len(shape) == 3 else eye, "bias": np.zeros(shape[0])})
            layer = dict(layer, inputs=tuple(inputs))
        layers.append(layer)
    return ANN(ann.input_shape, layers, dict(ann.meta))


def _activation_scale(z, percentile, name):
    """lambda: the ``percentile`` of the positive entries of ``z`` (``"max"``: their maximum)."""
    positive = z[z > 0]
    if positive.size == 0:
        raise ConversionError(
            f"layer {name!r}: no positive activation on the calibration set, cannot normalize"
        )
    return float(positive.max() if percentile == "max" else np.percentile(positive, percentile))


def _along_inputs(lam, weight):
    """The scale ``lam`` of a weight layer's input (a number, or one per channel / feature) shaped
    to multiply ``weight`` (K, C, ...) along its input axis."""
    return lam if np.ndim(lam) == 0 else np.reshape(lam, (1, -1) + (1,) * (weight.ndim - 2))


def _per_channel(lam, channels) -> np.ndarray:
    return np.full(channels, lam) if np.ndim(lam) == 0 else lam


def normalize(ann: ANN, calibration_inputs, percentile=99.9):
    """Data-based normalization: every unit's activations put on the threshold scale 1.0.

    Every activation has a scale: for each unit (a weight layer, or an add of weight layers,
    feeding a relu, or the readout), ``lam`` is the ``percentile`` (a number in (0, 100], or
    ``"max"``) of the non-zero values ``a = max(z, 0)`` of its output z in the float network over
    ``calibration_inputs``.  A weight layer whose input has scale ``lam_in`` (1 for the network
    input) and whose output has scale ``lam_out`` (its unit's: its own, or the add's it feeds)
    becomes ``W <- W * lam_in / lam_out``, ``b <- b / lam_out``; so the currents an add sums are in
    the same units.  Max-pool, avg-pool, global average pool and flatten commute with positive
    scales and pass ``lam`` on; a concat joins its inputs' scales (one per channel: the next
    weight layer undoes each channel's own ``lam_in``).  An add input that is an activation (an
    identity shortcut) first becomes a weight layer ``<add>_identity<j>`` of weight I (so
    ``(lam_in / lam_out) * I`` after normalization).  The readout is normalized the same way (on
    its positive outputs): a positive scale leaves its argmax unchanged.  A dual-threshold unit
    keeps its float scale, ``lam = 1`` (``W <- W * lam_in``, ``b`` and its thresholds unchanged,
    so its 0/1 outputs are those of the float network), and its binary output has scale 1.

    Needs a network without batchnorm (``fold_batchnorm`` first).  Returns the normalized
    network and ``{weight layer or add name: lam}`` (a weight layer's ``lam_out``).  Calibration
    runs on the original network: since every scale is positive, its activations are ``lam``
    times the normalized ones.
    """
    if percentile != "max" and not (isinstance(percentile, numbers.Real) and 0 < percentile <= 100):
        raise ConversionError(f"percentile = {percentile!r} must be in (0, 100] or 'max'")
    if any(layer["kind"] == "batchnorm" for layer in ann.layers):
        raise ConversionError("normalize needs a network without batchnorm: call fold_batchnorm first")
    ann = _identity_shortcuts(ann, _Graph(ann))
    graph = _Graph(ann)
    _, outputs = forward(ann, calibration_inputs, return_all=True)
    unit_lam, units = {}, graph.units()
    for layer, z in zip(ann.layers, outputs):
        if layer["name"] in units:
            binary = graph.reader(layer["name"], BINARY) is not None
            unit_lam[layer["name"]] = 1.0 if binary else _activation_scale(z, percentile, layer["name"])
    layers, lambdas, scale = [dict(layer) for layer in ann.layers], {}, {INPUT: 1.0}
    for layer, sources in zip(layers, ann.sources):
        kind, name, lam_in = layer["kind"], layer["name"], scale[sources[0]]
        if kind in WEIGHT_KINDS:
            lam = unit_lam[graph.add_of(name) or name]
            layer["weight"], layer["bias"] = layer["weight"] * (_along_inputs(lam_in, layer["weight"]) / lam), (
                layer["bias"] / lam
            )
            scale[name] = lambdas[name] = lam
        elif kind == "add":
            scale[name] = lambdas[name] = unit_lam[name]
        elif kind in BINARY:
            scale[name] = 1.0
        elif kind == "flatten":
            in_shape = graph.shape[sources[0]]
            scale[name] = lam_in if np.ndim(lam_in) == 0 else np.repeat(lam_in, int(np.prod(in_shape[1:])))
        elif kind == "concat":
            lams = [scale[source] for source in sources]
            uniform = all(np.ndim(lam) == 0 and lam == lams[0] for lam in lams)
            scale[name] = lams[0] if uniform else np.concatenate(
                [_per_channel(lam, graph.shape[source][0]) for lam, source in zip(lams, sources)]
            )
        else:  # relu and the pools
            scale[name] = lam_in
    meta = dict(ann.meta, normalization={"percentile": percentile, "lambdas": lambdas})
    return ANN(ann.input_shape, layers, meta), lambdas


def _exact_codes(x, frac, rounding):
    """``round(x * 2**frac)`` without any range limit (int64, saturated only beyond 2**63)."""
    return quantize(x, QFormat(64, frac), rounding, "SAT")


def _largest_frac(weight, bits, rounding) -> int:
    """The largest frac at which every rounded ``weight`` fits a signed ``bits``-bit code."""
    largest = float(np.abs(weight).max())
    fmt = QFormat(bits, 0)
    frac = int(np.floor(np.log2(max(fmt.max_int, 1) / largest))) + 1 if largest > 0 else 0
    while True:
        codes = _exact_codes(weight, frac, rounding)
        if codes.min() >= fmt.min_int and codes.max() <= fmt.max_int:
            return frac
        frac -= 1


def choose_formats(
    ann: ANN,
    input_format: QFormat,
    weight_bits=8,
    bias_bits=16,
    vm_bits=24,
    weight_frac=None,
    rounding="RND_CONV",
):
    """Per weight layer ``{"weight", "bias", "vm"}`` QFormats for ``quantize_parameters``.

    weight: signed ``weight_bits``; its frac ``fw`` is ``weight_frac`` if given, else the
    largest frac at which every rounded weight of the layer fits (most precision, no clipping).
    vm: signed ``vm_bits`` with frac ``fv = fw + fi``, where ``fi`` is the input code's frac
    (``input_format.frac`` for a layer reading the network input, 0 for spikes); bias: signed
    ``bias_bits``, frac ``fv``.  The threshold 1.0 is then the code ``2**fv``.

    The weight layers feeding one add share the frac of their currents, ``c = fw + fi + a`` (a:
    the frac of an average pool's codes they read, §6): ``c`` is the smallest of their own
    choices, each gets ``fw = c - fi - a`` and ``{"weight", "bias"}``, and the add ``{"vm"}``:
    signed ``vm_bits`` of frac ``c``.
    """
    graph, formats, groups = _Graph(ann), {}, {}
    for layer in ann.layers:
        if layer["kind"] not in WEIGHT_KINDS:
            continue
        name = layer["name"]
        frac = _largest_frac(layer["weight"], weight_bits, rounding) if weight_frac is None else weight_frac
        fi, add = graph.input_frac(name, input_format), graph.add_of(name)
        if add is None:
            formats[name] = {
                "weight": QFormat(weight_bits, frac),
                "bias": QFormat(bias_bits, frac + fi),
                "vm": QFormat(vm_bits, frac + fi),
            }
        else:
            groups.setdefault(add, []).append((name, frac, fi, graph.pool_shift(name)))
    for add, members in groups.items():
        current = min(frac + fi + shift for _, frac, fi, shift in members)
        for name, _, fi, shift in members:
            fw = current - fi - shift
            formats[name] = {"weight": QFormat(weight_bits, fw), "bias": QFormat(bias_bits, fw + fi)}
        formats[add] = {"vm": QFormat(vm_bits, current)}
    return formats


def _to_codes(x, fmt, rounding, overflow, what):
    """``quantize(x, fmt)`` and the number of clipped values; ERROR names ``what`` and the index."""
    if overflow == Overflow.ERROR:
        try:
            return quantize(x, fmt, rounding, overflow), 0
        except FixedOverflowError as err:
            index = ", ".join(map(str, err.index))
            raise FixedOverflowError(
                f"{what}[{index}] = {err.value!r} does not fit {fmt} (range {fmt.min}..{fmt.max}); "
                "declare a wider format or a smaller frac, or pass overflow='SAT' to clip",
                index=err.index,
                value=err.value,
            ) from None
    codes = quantize(x, fmt, rounding, overflow)
    return codes, int(np.count_nonzero(codes != _exact_codes(x, fmt.frac, rounding)))


def _check_overflow(overflow):
    overflow = Overflow.of(overflow)
    if overflow == Overflow.WRAP:
        raise ConversionError("overflow = WRAP would wrap parameters silently; use ERROR, SAT or SAT_SYM")
    return overflow


def quantize_input(x, input_format: QFormat, rounding="RND_CONV", overflow="ERROR"):
    """Analog input codes ``round(x * 2**fi)`` of ``input_format`` (fi = its frac), int64.

    Applied unchanged at every timestep as the first layer's input (no Poisson coding).
    Pixels in [0, 1] need 1.0 to fit: ``u(fi+1).fi`` (e.g. u5.4 for digits' pixel/16, u9.8 for
    pixel/256); u8.8 holds at most 255/256 and refuses 1.0 unless ``overflow`` is SAT.
    """
    return _to_codes(
        np.asarray(x, np.float64), input_format, Rounding.of(rounding), _check_overflow(overflow), "input"
    )[0]


def _trained_thresholds(layer, vm: QFormat, overflow) -> tuple:
    """The entry fields of a dual_threshold / threshold activation, its thresholds
    ``floor(θ * 2**fv)`` (TRN) in the ``vm`` format (frac fv), int64 of θ's shape (() or (C,)):
    ``theta1, theta2``, or (threshold) ``threshold`` from ``theta``; and their clipped counts.

    Floor makes the strict compare exact: for an integer V, ``V > θ·2**fv`` <=> ``V > floor(θ·2**fv)``.
    """
    fields, clipped = {"neuron": layer["kind"]}, {}
    for key in ("theta1", "theta2") if layer["kind"] == "dual_threshold" else ("theta",):
        field = "threshold" if key == "theta" else key
        fields[field], clipped[field] = _to_codes(layer[key], vm, Rounding.TRN, overflow,
                                                  f"layer {layer['name']!r}: {key}")  # fmt: skip
    return fields, clipped


def _formats_of(name, formats, keys) -> dict:
    """``formats[name]``, which must be a dict of QFormats with exactly ``keys``."""
    fmts = formats.get(name)
    if not isinstance(fmts, dict) or set(fmts) != set(keys):
        raise ConversionError(
            f"layer {name!r}: formats[{name!r}] = {fmts!r} must be a dict of QFormats with keys {', '.join(keys)}"
        )
    return fmts


def _neuron_fields(graph, name, vm: QFormat, overflow, shift=0) -> tuple:
    """The neuron fields of unit ``name`` (weight layer or add) in its ``vm`` format (frac fv),
    and their clipped counts: a dual-threshold's ``theta1, theta2``, a threshold's ``threshold``,
    else (relu) IF ``threshold = 2**fv``.  A weight layer reading an average pool's codes of frac
    ``shift`` compares a current of frac ``fv + shift`` (§6): its trained thresholds are quantized
    at that frac, ``floor(θ * 2**(fv + shift))`` in the Vm format ``shift`` bits wider and finer."""
    binary = graph.reader(name, BINARY)
    if binary is not None:
        return _trained_thresholds(binary, QFormat(vm.bits + shift, vm.frac + shift, vm.signed), overflow)
    if vm.frac < 0 or 1 << vm.frac > vm.max_int:
        raise ConversionError(f"layer {name!r}: threshold 1.0 = 2**{vm.frac} does not fit the vm format {vm}")
    return {"neuron": "if", "threshold": 1 << vm.frac}, {}


def quantize_parameters(
    ann: ANN, formats: dict, input_format: QFormat, rounding="RND_CONV", overflow="ERROR"
) -> list:
    """The normalized network as a list of integer layer dicts (threshold 1.0 -> ``2**fv``).

    For weight layer l, with its codes' input frac ``fi`` (``input_format.frac`` for a layer
    reading the network input, 0 for spikes) and declared ``formats[name] = {"weight", "bias",
    "vm"}``, fw = the weight frac and ``fv = fw + fi`` (required of the bias and vm formats):
    ``w = round(W * 2**fw)``, ``b = round(b * 2**fv)``, ``threshold = 2**fv``, so the integer
    current ``I = b + sum w * s`` is the float ``W s + b`` in units of ``2**-fv``: V, I, b and
    the threshold share one scale.  A value outside its format raises FixedOverflowError naming
    the layer, field and index (``overflow="ERROR"``), or is clipped (``"SAT"``/``"SAT_SYM"``)
    and counted in the layer's ``"clipped"``.  A weight layer feeding an add has
    ``{"weight", "bias"}`` (bias frac fv); the add has ``{"vm"}``, whose frac must be that of
    every current it sums (``fw + fi + a``, a: the frac of an average pool's codes, §6), and
    carries the unit's neuron.

    A dual-threshold unit's thresholds become ``theta_k = floor(θ_k * 2**fv)`` in its vm format
    (``_trained_thresholds``), refused or clipped and counted like the other values; a threshold
    unit's ``theta`` becomes ``threshold = floor(θ * 2**fv)`` the same way.  When the unit reads an
    average pool's codes of frac a (§6), its current has frac ``fv + a``: its trained thresholds are
    ``floor(θ * 2**(fv + a))`` in the vm format a bits wider and finer (to_network widens the Vm so).

    Entries, in network order (batchnorm must be folded; the activation, relu, dual_threshold
    or threshold, disappears into the neuron of its unit).  An entry reads the entry before
    it, or those its ``inputs`` names (present only then; "input": the network input); reading a
    unit (a weight layer or an add with its neuron) means reading its spikes, except for an add,
    which reads currents:

    * conv / linear: ``kind, name, weight`` (int64, (K, C, kh, kw) or (K, F)), ``weight_format,
      bias`` (int64 (K,)), ``bias_format, vm_format``, ``input`` ("analog" for a layer reading the
      network input, else "spikes"), ``input_format`` (``input_format`` or SPIKE), ``readout``
      (True for the network's readout unit), ``neuron`` ("if": ``threshold``, the int code of 1.0
      in vm_format; "dual_threshold": ``theta1, theta2``, int64 () or (K,); "threshold":
      ``threshold`` = floor(θ·2**fv), int64 () or (K,)), ``clipped``
      ({"weight": n, "bias": n}, plus "theta1", "theta2" or "threshold"); conv also ``stride, padding``.
      Feeding an add: no ``vm_format``, ``readout`` or neuron fields, but ``add`` (its name).
    * add: ``kind, name, inputs`` (its weight layers), ``vm_format, readout``, the neuron fields
      and ``clipped`` (the thresholds').
    * maxpool / avgpool: ``kind, name, k, stride`` (float pooling of the ANN; the spiking variant
      is chosen when mapping); global_avgpool: ``kind, name, k = (H, W)``.  flatten: ``kind,
      name`` (row-major C, H, W).  concat: ``kind, name, inputs``.
    """
    rounding, overflow = Rounding.of(rounding), _check_overflow(overflow)
    graph = _Graph(ann)
    if any(layer["kind"] == "batchnorm" for layer in ann.layers):
        raise ConversionError(
            "quantize_parameters needs a network without batchnorm: call fold_batchnorm first"
        )
    known = {layer["name"] for layer in ann.layers if layer["kind"] in (*WEIGHT_KINDS, "add")}
    unknown = sorted(set(formats) - known)
    if unknown:
        raise ConversionError(
            f"formats given for layers {unknown}, which are not conv/linear layers (or adds) of the network"
        )
    out = []
    for layer, sources in zip(ann.layers, ann.sources):
        kind, name = layer["kind"], layer["name"]
        if kind in ACTIVATIONS:
            continue
        if kind in PASS_KINDS:
            entry = graph.pool_entry(name)
        elif kind == "concat":
            entry = {"kind": kind, "name": name}
        elif kind == "add":
            entry = _add_entry(graph, name, formats, input_format, overflow)
        else:
            entry = _weight_entry(graph, layer, formats, input_format, rounding, overflow)
        inputs = tuple(graph.unit(source) for source in sources)
        if inputs != ((out[-1]["name"],) if out else (INPUT,)):
            entry["inputs"] = inputs
        out.append(entry)
    return out


def _weight_entry(graph, layer, formats, input_format, rounding, overflow) -> dict:
    """The integer entry of conv / linear ``layer`` (see ``quantize_parameters``)."""
    kind, name = layer["kind"], layer["name"]
    add = graph.add_of(name)
    fmts = _formats_of(name, formats, ("weight", "bias", "vm") if add is None else ("weight", "bias"))
    fw, fi = fmts["weight"].frac, graph.input_frac(name, input_format)
    for field in ("bias", "vm") if add is None else ("bias",):
        if fmts[field].frac != fw + fi:
            scale = "the membrane potential" if add is None else "its current"
            raise ConversionError(
                f"layer {name!r}: {field} format {fmts[field]} must have frac {fw + fi} "
                f"(weight frac {fw} + input frac {fi}), the scale of {scale}"
            )
    neuron, clipped = _neuron_fields(graph, name, fmts["vm"], overflow, graph.pool_shift(name)) if add is None \
        else ({}, {})
    weight, clipped_w = _to_codes(layer["weight"], fmts["weight"], rounding, overflow, f"layer {name!r}: weight")
    bias, clipped_b = _to_codes(layer["bias"], fmts["bias"], rounding, overflow, f"layer {name!r}: bias")
    analog = graph.analog(name)
    entry = {
        "kind": kind, "name": name,
        "weight": weight, "weight_format": fmts["weight"],
        "bias": bias, "bias_format": fmts["bias"],
        **({"vm_format": fmts["vm"]} if add is None else {}),
        "input": "analog" if analog else "spikes",
        "input_format": input_format if analog else SPIKE,
        **({"readout": name == graph.readout, **neuron} if add is None else {"add": add}),
        "clipped": {"weight": clipped_w, "bias": clipped_b, **clipped},
    }  # fmt: skip
    if kind == "conv":
        entry.update(stride=layer["stride"], padding=layer["padding"])
    return entry


def _add_entry(graph, name, formats, input_format, overflow) -> dict:
    """The integer entry of add ``name``, whose inputs must be weight layers of one current frac."""
    vm = _formats_of(name, formats, ("vm",))["vm"]
    for source in graph.sources[name]:
        if graph.kind(source) not in WEIGHT_KINDS:
            raise ConversionError(
                f"add {name!r}: input {source!r} is {graph.kind(source) or 'the network input'}, not a conv/linear "
                "layer: quantize a normalized network (normalize turns an identity shortcut into a 1x1 conv)"
            )
        current = formats[source]["weight"].frac + graph.input_frac(source, input_format) + graph.pool_shift(source)
        if current != vm.frac:
            raise ConversionError(
                f"add {name!r}: vm format {vm} must have frac {current}, the frac of the current of {source!r} "
                "(weight frac + input frac + average-pool frac): the currents it adds must share one scale"
            )
    neuron, clipped = _neuron_fields(graph, name, vm, overflow)
    return {"kind": "add", "name": name, "vm_format": vm, "readout": name == graph.readout, **neuron,
            "clipped": clipped}  # fmt: skip


def convert(
    ann: ANN,
    calibration_inputs,
    input_format: QFormat,
    *,
    percentile=99.9,
    weight_bits=8,
    bias_bits=16,
    vm_bits=24,
    weight_frac=None,
    rounding="RND_CONV",
    overflow="ERROR",
):
    """fold_batchnorm -> normalize -> choose_formats -> quantize_parameters; returns
    ``(layers, lambdas)`` (the integer layer list and the normalization scales)."""
    normed, lambdas = normalize(fold_batchnorm(ann), calibration_inputs, percentile)
    formats = choose_formats(normed, input_format, weight_bits, bias_bits, vm_bits, weight_frac, rounding)
    return quantize_parameters(normed, formats, input_format, rounding, overflow), lambdas


# --------------------------------------------------------------------------- integers -> Network
POOLINGS = ("count_gate", "winner_pre", "winner_post", "pooled_neuron", "or")
READOUTS = ("vm", "spikes")
#: The fields LIF (and DualThreshold) add to IF for the leak: what ``to_network(leak=...)`` may set.
LEAK_FIELDS = frozenset(f.name for f in dataclasses.fields(LIF)) - frozenset(f.name for f in dataclasses.fields(IF))
RESETS = ("subtract", "zero")


def _avg_shift(entry) -> int:
    """``a`` with ``kh*kw = 2**a`` for an avgpool / global_avgpool entry (``k``: k or (kh, kw));
    other areas are refused."""
    area = math.prod(entry["k"]) if isinstance(entry["k"], tuple) else entry["k"] * entry["k"]
    if area & (area - 1):
        raise ConversionError(
            f"{entry['kind']} {entry['name']!r}: area {area} is not a power of two; the mean is exact in "
            "integers only for areas 2**a (fold 1/area into the next weights before quantizing instead)"
        )
    return area.bit_length() - 1


def _rescaled(entry, shift):
    """A weight entry whose input codes gained ``shift`` fraction bits (the exact mean of a sum
    pool): the current ``Σ w·x`` has frac ``fv + shift``, so ``b << shift``, a relu unit's threshold
    ``2**fv << shift`` and the bias and Vm formats ``shift`` bits wider and finer (``QFormat(n + a, f + a)``);
    trained thresholds were quantized at frac ``fv + shift`` already (``_neuron_fields``)."""
    widen = lambda f: QFormat(f.bits + shift, f.frac + shift, f.signed)  # noqa: E731
    thresholds = {"threshold": entry["threshold"] << shift} if entry.get("neuron") == "if" else {}
    formats = {k: widen(entry[k]) for k in ("bias_format", "vm_format") if k in entry}
    return dict(entry, **thresholds, bias=entry["bias"] << shift, **formats)


def _pool_layer(entry, pooling, unit, shift, count_bits, overflow, inputs):
    """The refmodel pooling layer for a maxpool / avgpool / global_avgpool (area ``2**shift``)
    entry after unit ``unit``, reading ``inputs``; a maxpool after a dual-threshold or threshold
    unit is OR pooling (the max of 0/1 maps)."""
    common = {"name": entry["name"], "kernel": entry["k"], "stride": entry.get("stride", entry["k"]), "inputs": inputs}
    if entry["kind"] in AVG_KINDS:
        return SumPool(out_format=QFormat(shift + 1, shift, signed=False), overflow=overflow, **common)
    if unit["neuron"] in BINARY:
        return OrPool(**common)
    if pooling == "count_gate":
        return CountGatePool(count_bits=count_bits, **common)
    if pooling in ("winner_pre", "winner_post"):
        return WinnerSpikePool(vm_stage=pooling.split("_")[1], **common)
    if pooling == "or":
        return OrPool(**common)
    return PooledNeuronPool(threshold=unit["threshold"], vm=unit["vm_format"], overflow=overflow, **common)


def _neuron_layer(unit, readout, reset, overflow, leak, reset_by):
    """The neuron layer of unit ``unit`` (a weight or add entry): IF ``<name>_if`` (relu: ``>=`` the
    code of 1.0; threshold: ``>`` its trained threshold), LIF ``<name>_if`` with ``leak``, or
    DualThreshold ``<name>_dt`` (``leak`` too, when given); a ``readout="vm"`` readout is an IF
    that only integrates."""
    def codes(key):  # a trained threshold: one int for the layer, or one per channel
        return int(unit[key]) if unit[key].ndim == 0 else tuple(unit[key].tolist())

    common = dict(vm=unit["vm_format"], overflow=overflow, reset=reset, **(leak or {}))
    if unit["neuron"] == "dual_threshold":
        return DualThreshold(name=f"{unit['name']}_dt", compare=">", reset_by=reset_by, theta1=codes("theta1"),
                             theta2=codes("theta2"), **common)  # fmt: skip
    if unit["neuron"] == "if" and unit["readout"] and readout == "vm":
        return IF(name=f"{unit['name']}_if", vm=unit["vm_format"], threshold=unit["threshold"], overflow=overflow,
                  compare=">=", reset="none")  # fmt: skip
    threshold, compare = (codes("threshold"), ">") if unit["neuron"] == "threshold" else (unit["threshold"], ">=")
    return (LIF if leak else IF)(name=f"{unit['name']}_if", threshold=threshold, compare=compare, **common)


class _Made(NamedTuple):
    """What the readers of an entry read in the network being built: the refmodel layer, the
    format and average-pool frac (``shift``) of its codes, the entry's kind, and the unit (entry)
    whose neuron layer it is (None when it is not a neuron layer)."""

    layer: str
    fmt: QFormat
    shift: int
    kind: str | None
    unit: dict | None


def to_network(
    layers, input_shape, pooling="count_gate", readout="vm", *, reset="subtract", count_bits=8, overflow="ERROR",
    leak=None, reset_by="either", name="converted",
) -> Network:  # fmt: skip
    """The refmodel Network of ``quantize_parameters``' integer layers (``input_shape`` (C, H, W) or (F,)).

    Each conv / linear entry becomes Conv2d / Linear (exact accumulation, bias added every
    timestep) and a neuron layer (vm = the entry's vm_format, Vm overflow ``overflow``, counted
    unless ERROR).  An IF unit gets IF ``<name>_if``: ``V += I``; ``s = V >= θ``; where s,
    ``V -= θ`` (``reset="subtract"``, the default) or ``V = 0`` (``"zero"``).  A dual-threshold
    unit gets DualThreshold ``<name>_dt``: ``V += I``; ``s1 = V > θ1``, ``s2 = V > θ2`` (the
    same V), output [s1, s2] (C -> 2C channels); ``reset`` where s1 or s2 (``reset_by="either"``:
    V -= the larger θ that fired, or V = 0; ``"s1"``/``"s2"``: where that one fired); at T = 1 its
    spikes are the float activation's.  A threshold unit gets IF ``<name>_if`` with its trained
    threshold and ``s = V > θ`` (exact at T = 1).  ``leak`` (LIF's leak fields, e.g. ``{"leak":
    "mul", "leak_mult": 1, "leak_shift": 1}``: V <- floor(V / 2)) gives every spiking neuron that
    leak: an IF unit's neuron becomes LIF ``<name>_if``, a DualThreshold leaks too.
    The readout's neuron: ``readout="vm"`` integrates only (IF, reset "none", no leak: classify
    by argmax V) or ``"spikes"`` resets (and leaks) as the others (classify by argmax of the spike counts).
    A maxpool after an IF unit becomes ``pooling``: "count_gate" (``count_bits`` counters),
    "winner_pre" / "winner_post" (winner spike by pre- / post-reset Vm), "pooled_neuron" (its
    neuron layer then only integrates, the pool fires at θ and subtracts θ from its window; only
    with ``reset="subtract"``, and the pool must be the neuron's only reader) or "or"; after a
    dual-threshold or threshold unit it is always OR (the max of 0/1 values).  An avgpool (a global_avgpool:
    the whole H x W map) of area 2**a becomes a SumPool whose code ``Σ s`` has frac a (the exact
    mean); the next layer's bias, θ and Vm move to that scale exactly (``_rescaled``).
    An add entry becomes Add ``<name>`` of its weight layers' currents, in a register of their
    frac wide enough for any sum (``max bits + ceil(log2 k)`` for k currents; SAT declared, never
    reached), then the unit's neuron layer; a concat becomes Concat of the layers it joins.
    """
    if pooling not in POOLINGS:
        raise ConversionError(f"pooling = {pooling!r} must be one of {', '.join(POOLINGS)}")
    if readout not in READOUTS:
        raise ConversionError(f"readout = {readout!r} must be one of {', '.join(READOUTS)}")
    if reset not in RESETS:
        raise ConversionError(f"reset = {reset!r} must be one of {', '.join(RESETS)}")
    if leak is not None and not (isinstance(leak, dict) and set(leak) <= LEAK_FIELDS):
        raise ConversionError(f"leak = {leak!r} must be a table of LIF's leak fields ({', '.join(sorted(LEAK_FIELDS))})")
    if pooling == "pooled_neuron" and reset != "subtract":
        raise ConversionError(
            f"pooling = 'pooled_neuron' with reset = {reset!r}: the pooled neuron resets its window by "
            "subtraction only"
        )
    if not layers or layers[0]["kind"] not in WEIGHT_KINDS:
        raise ConversionError(
            f"the layers must start with a conv/linear entry, not {layers[0]['kind'] if layers else 'nothing'} "
            "(give the stimulus already flat instead of a leading flatten)"
        )
    sources = {entry["name"]: entry.get("inputs") or ((layers[j - 1]["name"],) if j else (INPUT,))
               for j, entry in enumerate(layers)}  # fmt: skip
    readers = {}
    for entry in layers:
        for source in sources[entry["name"]]:
            readers.setdefault(source, []).append(entry["name"])
    out, made = [], {INPUT: _Made(NETWORK_INPUT, layers[0]["input_format"], 0, None, None)}

    def inputs(*names):  # the layers a new refmodel layer reads: None when it is the previous one
        return None if names == ((out[-1].name,) if out else (NETWORK_INPUT,)) else names

    def append(layer, fmt, shift=0, kind=None, unit=None):
        out.append(layer)
        made[layer.name] = _Made(layer.name, fmt, shift, kind, unit)

    for entry in layers:
        kind, ename = entry["kind"], entry["name"]
        src = [made[source] for source in sources[ename]]
        if kind in ("maxpool", *AVG_KINDS):
            unit = src[0].unit
            if unit is None:
                raise ConversionError(
                    f"pool {ename!r} follows {src[0].kind or 'the input'}: a spiking pool reads one neuron layer, "
                    "so it must directly follow a conv/linear unit"
                )
            shift = _avg_shift(entry) if kind in AVG_KINDS else 0
            if kind == "maxpool" and pooling == "pooled_neuron" and unit["neuron"] == "if":
                others = [r for r in readers[sources[ename][0]] if r != ename]
                if others:
                    raise ConversionError(
                        f"pooling = 'pooled_neuron': pool {ename!r} is not the only reader of unit "
                        f"{unit['name']!r} (also {others}); the pooled neuron changes its neuron layer's Vm and spikes"
                    )
                position = [layer.name for layer in out].index(src[0].layer)
                out[position] = replace(out[position], reset="none")
            pool = _pool_layer(entry, pooling, unit, shift, count_bits, overflow, inputs(src[0].layer))
            append(pool, pool.output_format(src[0].fmt), shift, kind)
        elif kind == "flatten":
            append(Flatten(ename, inputs=inputs(src[0].layer)), src[0].fmt, src[0].shift, kind)
        elif kind == "concat":
            append(Concat(ename, inputs=tuple(m.layer for m in src)), src[0].fmt, src[0].shift, kind)
        elif kind == "add":
            bits = max(m.fmt.bits for m in src) + (len(src) - 1).bit_length()
            fmt = QFormat(min(64, bits), entry["vm_format"].frac)
            append(Add(ename, inputs=tuple(m.layer for m in src), format=fmt, overflow="SAT"), fmt, kind=kind)
            neuron = _neuron_layer(entry, readout, reset, overflow, leak, reset_by)
            append(neuron, neuron.output_format(fmt), kind=kind, unit=entry)
            made[ename] = made[neuron.name]
        else:
            unit = _rescaled(entry, src[0].shift) if src[0].shift else entry
            params = dict(name=ename, weight=unit["weight"], weight_format=unit["weight_format"], bias=unit["bias"],
                          bias_format=unit["bias_format"], inputs=inputs(src[0].layer))  # fmt: skip
            if kind == "conv":
                synapse = Conv2d(stride=unit["stride"], padding=unit["padding"], **params)
            else:
                synapse = Linear(**params)
            current = synapse.output_format(src[0].fmt)
            append(synapse, current, kind=kind)
            if "add" not in entry:
                neuron = _neuron_layer(unit, readout, reset, overflow, leak, reset_by)
                append(neuron, neuron.output_format(current), kind=kind, unit=unit)
                made[ename] = made[neuron.name]
    return Network(out, input_shape, layers[0]["input_format"], name=name)
