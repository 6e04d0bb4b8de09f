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

The network must be a chain of *units*: a weight layer (conv or linear), optionally a batchnorm
(folded), an activation — relu (the IF neuron's rate approximates it) or dual_threshold (a
DualThreshold layer: exact at T = 1) —, then any maxpool / avgpool / flatten.  The last weight
layer is the readout and may omit its relu.  Anything else is refused.
"""

from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np

from refmodel.ann import ANN, ANNError, forward
from refmodel.fixed import FixedOverflowError, Overflow, QFormat, Rounding, quantize
from refmodel.layers import (
    IF,
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
PASS_KINDS = ("maxpool", "avgpool", "flatten")


class ConversionError(ANNError):
    """The network or the conversion options cannot be converted; the message says where."""


_UNIT = ("conv", "linear", "maxpool", "avgpool", "flatten")
#: What may follow each kind in a convertible chain (None: the input); the chain may end only
#: after conv, linear, batchnorm or relu (so after the readout at most a batchnorm and a relu).
_FOLLOWERS = {
    None: ("conv", "linear", "flatten"),
    "conv": ("batchnorm", "relu", "dual_threshold"),
    "linear": ("batchnorm", "relu", "dual_threshold"),
    "batchnorm": ("relu", "dual_threshold"),
    "relu": _UNIT,
    "dual_threshold": _UNIT,
    "maxpool": _UNIT,
    "avgpool": _UNIT,
    "flatten": _UNIT,
}
_ENDS = ("conv", "linear", "batchnorm", "relu")
_CHAIN = "conv|linear [batchnorm] relu|dual_threshold [maxpool|avgpool|flatten]..., the readout's relu optional"


def _weight_indices(ann: ANN) -> list:
    """Indices of the weight layers, after checking that ``ann`` is a chain of units."""
    prev = None
    for layer in ann.layers:
        if layer["kind"] not in _FOLLOWERS[prev]:
            raise ConversionError(
                f"layer {layer['name']!r} ({layer['kind']}) cannot follow {prev or 'the input'}: "
                f"convertible networks are chains of {_CHAIN}"
            )
        prev = layer["kind"]
    if prev not in _ENDS:
        raise ConversionError(
            f"the network ends with {prev or 'no layer'}: it must end with its readout conv/linear layer"
        )
    return [i for i, layer in enumerate(ann.layers) if layer["kind"] in WEIGHT_KINDS]


def _is_dual_threshold(ann: ANN, i) -> bool:
    """Whether weight layer ``i`` of a batchnorm-free chain has a dual-threshold activation."""
    return i + 1 < len(ann.layers) and ann.layers[i + 1]["kind"] == "dual_threshold"


def fold_batchnorm(ann: ANN) -> ANN:
    """The same function without batchnorm layers: each is folded into the layer before it.

    With ``s = sqrt(var + eps)`` and ``g = gamma / s`` per output channel k:
    ``W'[k] = W[k] * g[k]`` and ``b'[k] = beta[k] + (b[k] - mean[k]) * g[k]``.
    """
    _weight_indices(ann)
    layers = []
    for layer in ann.layers:
        if layer["kind"] != "batchnorm":
            layers.append(dict(layer))
            continue
        g = layer["gamma"] / np.sqrt(layer["var"] + layer["eps"])
        prev = layers[-1]
        prev["weight"] = prev["weight"] * g.reshape((-1,) + (1,) * (prev["weight"].ndim - 1))
        prev["bias"] = layer["beta"] + (prev["bias"] - layer["mean"]) * g
    return ANN(ann.input_shape, layers, dict(ann.meta))


def _activation_scale(z, percentile, name):
    """lambda: the ``percentile`` of the positive entries of ``z`` (``"max"``: their maximum)."""
    positive = z[z > 0]
    if positive.size == 0:
        raise ConversionError(
            f"layer {name!r}: no positive activation on the calibration set, cannot normalize"
        )
    return float(positive.max() if percentile == "max" else np.percentile(positive, percentile))


def normalize(ann: ANN, calibration_inputs, percentile=99.9):
    """Data-based normalization: every unit's activations put on the threshold scale 1.0.

    For each weight layer l (in order), ``lam_l`` is the ``percentile`` (a number in (0, 100],
    or ``"max"``) of the non-zero post-ReLU activations ``a_l = max(z_l, 0)`` of the float
    network over ``calibration_inputs`` (N, C, H, W).  Then ``W_l <- W_l * lam_{l-1} / lam_l``
    and ``b_l <- b_l / lam_l`` with ``lam_0 = 1`` (the input is used as is); max-pool,
    avg-pool and flatten commute with a positive scale, so they pass lambda through.  The
    readout layer is normalized the same way (on its positive outputs): a positive scale
    leaves its argmax unchanged, and its neurons can then also fire at the same threshold.
    A dual-threshold unit keeps its float scale, ``lam_l = 1`` (``W_l <- W_l * lam_{l-1}``,
    ``b_l`` and its thresholds unchanged, so ``z_l`` and its 0/1 outputs are those of the
    float network), and its binary output gives the next layer ``lam_{l-1} = 1``.

    Needs a network without batchnorm (``fold_batchnorm`` first).  Returns the normalized
    network and ``{layer name: lam}``.  Calibration runs on the original network: since every
    scale is positive, its activations are ``lam_l`` times the normalized ones.
    """
    if percentile != "max" and not (isinstance(percentile, numbers.Real) and 0 < percentile <= 100):
        raise ConversionError(f"percentile = {percentile!r} must be in (0, 100] or 'max'")
    if any(layer["kind"] == "batchnorm" for layer in ann.layers):
        raise ConversionError("normalize needs a network without batchnorm: call fold_batchnorm first")
    indices = _weight_indices(ann)
    _, outputs = forward(ann, calibration_inputs, return_all=True)
    layers, lambdas, lam_prev = [dict(layer) for layer in ann.layers], {}, 1.0
    for i in indices:
        name = ann.layers[i]["name"]
        lam = 1.0 if _is_dual_threshold(ann, i) else _activation_scale(outputs[i], percentile, name)
        layers[i]["weight"], layers[i]["bias"] = (
            layers[i]["weight"] * (lam_prev / lam),
            layers[i]["bias"] / lam,
        )
        lambdas[name], lam_prev = lam, lam
    meta = dict(ann.meta, normalization={"percentile": percentile, "lambdas": lambdas})
    return ANN(ann.input_shape, layers, meta), lambdas


def _input_frac(position, input_format):
    """Fraction bits of the codes entering the ``position``-th weight layer."""
    return input_format.frac if position == 0 else SPIKE.frac


def _exact_codes(x, frac, rounding):
    """``round(x * 2**frac)`` without any range limit (int64, saturated only beyond 2**63)."""
    return quantize(x, QFormat(64, frac), rounding, "SAT")


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
    (``input_format.frac`` for the first layer, 0 for spikes); bias: signed ``bias_bits``, frac
    ``fv``.  The threshold 1.0 is then the code ``2**fv``.
    """
    formats = {}
    for position, i in enumerate(_weight_indices(ann)):
        layer = ann.layers[i]
        frac = weight_frac
        if frac is None:
            largest = float(np.abs(layer["weight"]).max())
            fmt = QFormat(weight_bits, 0)
            frac = int(np.floor(np.log2(max(fmt.max_int, 1) / largest))) + 1 if largest > 0 else 0
            while True:
                codes = _exact_codes(layer["weight"], frac, rounding)
                if codes.min() >= fmt.min_int and codes.max() <= fmt.max_int:
                    break
                frac -= 1
        fv = frac + _input_frac(position, input_format)
        formats[layer["name"]] = {
            "weight": QFormat(weight_bits, frac),
            "bias": QFormat(bias_bits, fv),
            "vm": QFormat(vm_bits, fv),
        }
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


def _dual_thresholds(layer, vm: QFormat, overflow) -> tuple:
    """The entry fields of a dual-threshold activation, ``theta_k = floor(θ_k * 2**fv)`` (TRN)
    in the ``vm`` format (frac fv), int64 of θ's shape (() or (C,)); and their clipped counts.

    Floor makes the strict compare exact: for an integer V, ``V > θ·2**fv`` <=> ``V > floor(θ·2**fv)``.
    """
    fields, clipped = {"neuron": "dual_threshold"}, {}
    for key in ("theta1", "theta2"):
        fields[key], clipped[key] = _to_codes(layer[key], vm, Rounding.TRN, overflow, f"layer {layer['name']!r}: {key}")
    return fields, clipped


def quantize_parameters(
    ann: ANN, formats: dict, input_format: QFormat, rounding="RND_CONV", overflow="ERROR"
) -> list:
    """The normalized network as a list of integer layer dicts (threshold 1.0 -> ``2**fv``).

    For weight layer l, with its codes' input frac ``fi`` (``input_format.frac`` for the first
    layer, 0 for spikes) and declared ``formats[name] = {"weight", "bias", "vm"}``, fw = the
    weight frac and ``fv = fw + fi`` (required of the bias and vm formats):
    ``w = round(W * 2**fw)``, ``b = round(b * 2**fv)``, ``threshold = 2**fv``, so the integer
    current ``I = b + sum w * s`` is the float ``W s + b`` in units of ``2**-fv``: V, I, b and
    the threshold share one scale.  A value outside its format raises FixedOverflowError naming
    the layer, field and index (``overflow="ERROR"``), or is clipped (``"SAT"``/``"SAT_SYM"``)
    and counted in the layer's ``"clipped"``.

    A dual-threshold unit's thresholds become ``theta_k = floor(θ_k * 2**fv)`` in its vm format
    (``_dual_thresholds``), refused or clipped and counted like the other values.

    Entries, in network order (batchnorm must be folded; the activation, relu or
    dual_threshold, disappears into the neuron):

    * conv / linear: ``kind, name, weight`` (int64, (K, C, kh, kw) or (K, F)), ``weight_format,
      bias`` (int64 (K,)), ``bias_format, vm_format``, ``neuron`` ("if": ``threshold``, the int
      code of 1.0 in vm_format; "dual_threshold": ``theta1, theta2``, int64 () or (K,)),
      ``input`` ("analog" for the first layer, else "spikes"), ``input_format``
      (``input_format`` or SPIKE), ``readout`` (True for the last weight layer),
      ``clipped`` ({"weight": n, "bias": n}, plus "theta1", "theta2"); conv also ``stride, padding``.
    * maxpool / avgpool: ``kind, name, k, stride`` (float pooling of the ANN; the spiking variant
      is chosen when mapping).  flatten: ``kind, name`` (row-major C, H, W).
    """
    rounding, overflow = Rounding.of(rounding), _check_overflow(overflow)
    indices = _weight_indices(ann)
    if any(layer["kind"] == "batchnorm" for layer in ann.layers):
        raise ConversionError(
            "quantize_parameters needs a network without batchnorm: call fold_batchnorm first"
        )
    unknown = sorted(set(formats) - {ann.layers[i]["name"] for i in indices})
    if unknown:
        raise ConversionError(
            f"formats given for layers {unknown}, which are not conv/linear layers of the network"
        )
    out = []
    for i, layer in enumerate(ann.layers):
        kind, name = layer["kind"], layer["name"]
        if kind in PASS_KINDS:
            out.append({k: layer[k] for k in ("kind", "name", "k", "stride") if k in layer})
        if kind not in WEIGHT_KINDS:
            continue
        position = indices.index(i)
        fmts = formats.get(name)
        if not isinstance(fmts, dict) or set(fmts) != {"weight", "bias", "vm"}:
            raise ConversionError(
                f"layer {name!r}: formats[{name!r}] = {fmts!r} must be a dict of QFormats with keys weight, bias, vm"
            )
        fw, fv = fmts["weight"].frac, fmts["weight"].frac + _input_frac(position, input_format)
        for field in ("bias", "vm"):
            if fmts[field].frac != fv:
                raise ConversionError(
                    f"layer {name!r}: {field} format {fmts[field]} must have frac {fv} "
                    f"(weight frac {fw} + input frac {fv - fw}), the scale of the membrane potential"
                )
        if _is_dual_threshold(ann, i):
            neuron, clipped = _dual_thresholds(ann.layers[i + 1], fmts["vm"], overflow)
        else:
            neuron, clipped = {"neuron": "if", "threshold": 1 << fv if fv >= 0 else None}, {}
            if neuron["threshold"] is None or neuron["threshold"] > fmts["vm"].max_int:
                raise ConversionError(
                    f"layer {name!r}: threshold 1.0 = 2**{fv} does not fit the vm format {fmts['vm']}"
                )
        weight, clipped_w = _to_codes(
            layer["weight"], fmts["weight"], rounding, overflow, f"layer {name!r}: weight"
        )
        bias, clipped_b = _to_codes(layer["bias"], fmts["bias"], rounding, overflow, f"layer {name!r}: bias")
        entry = {
            "kind": kind, "name": name,
            "weight": weight, "weight_format": fmts["weight"],
            "bias": bias, "bias_format": fmts["bias"],
            "vm_format": fmts["vm"],
            "input": "analog" if position == 0 else "spikes",
            "input_format": input_format if position == 0 else SPIKE,
            "readout": position == len(indices) - 1,
            **neuron,
            "clipped": {"weight": clipped_w, "bias": clipped_b, **clipped},
        }  # fmt: skip
        if kind == "conv":
            entry.update(stride=layer["stride"], padding=layer["padding"])
        out.append(entry)
    return out


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
RESETS = ("subtract", "zero")


def _avg_shift(entry) -> int:
    """``a`` with ``k*k = 2**a`` for an avgpool entry; other areas are refused."""
    area = entry["k"] * entry["k"]
    if area & (area - 1):
        raise ConversionError(
            f"avgpool {entry['name']!r}: area {area} is not a power of two; the mean is exact in "
            "integers only for areas 2**a (fold 1/area into the next weights before quantizing instead)"
        )
    return area.bit_length() - 1


def _rescaled(entry, shift):
    """A weight entry whose input codes gained ``shift`` fraction bits (the exact mean of a sum
    pool): the current ``Σ w·x`` has frac ``fv + shift``, so ``b << shift``, every threshold
    ``θ << shift`` and the bias and Vm formats ``shift`` bits wider and finer (``QFormat(n + a, f + a)``)."""
    widen = lambda f: QFormat(f.bits + shift, f.frac + shift, f.signed)  # noqa: E731
    thresholds = {k: entry[k] << shift for k in ("threshold", "theta1", "theta2") if k in entry}
    return dict(
        entry, **thresholds,
        bias=entry["bias"] << shift, bias_format=widen(entry["bias_format"]), vm_format=widen(entry["vm_format"]),
    )  # fmt: skip


def _pool_layer(entry, pooling, unit, shift, count_bits, overflow):
    """The refmodel pooling layer for a maxpool / avgpool (area ``2**shift``) entry after weight
    unit ``unit``; a maxpool after a dual-threshold unit is OR pooling (the max of 0/1 maps)."""
    common = {"name": entry["name"], "kernel": entry["k"], "stride": entry.get("stride", entry["k"])}
    if entry["kind"] == "avgpool":
        return SumPool(out_format=QFormat(shift + 1, shift, signed=False), overflow=overflow, **common)
    if unit["neuron"] == "dual_threshold":
        return OrPool(**common)
    if pooling == "count_gate":
        return CountGatePool(count_bits=count_bits, **common)
    if pooling in ("winner_pre", "winner_post"):
        return WinnerSpikePool(vm_stage=pooling.split("_")[1], **common)
    if pooling == "or":
        return OrPool(**common)
    return PooledNeuronPool(threshold=unit["threshold"], vm=unit["vm_format"], overflow=overflow, **common)


def _neuron_layer(unit, readout, reset, overflow):
    """The neuron layer of weight entry ``unit``: IF ``<name>_if`` or DualThreshold ``<name>_dt``."""
    if unit["neuron"] == "dual_threshold":
        theta = {k: int(unit[k]) if unit[k].ndim == 0 else tuple(unit[k].tolist()) for k in ("theta1", "theta2")}
        return DualThreshold(name=f"{unit['name']}_dt", vm=unit["vm_format"], overflow=overflow, compare=">",
                             reset=reset, reset_by="either", **theta)  # fmt: skip
    return IF(name=f"{unit['name']}_if", vm=unit["vm_format"], threshold=unit["threshold"], overflow=overflow,
              compare=">=", reset="none" if unit["readout"] and readout == "vm" else reset)  # fmt: skip


def to_network(
    layers, input_shape, pooling="count_gate", readout="vm", *, reset="subtract", count_bits=8, overflow="ERROR",
    name="converted",
) -> Network:  # fmt: skip
    """The refmodel Network of ``quantize_parameters``' integer layers (``input_shape`` (C, H, W)).

    Each conv / linear entry becomes Conv2d / Linear (exact accumulation, bias added every
    timestep) and a neuron layer (vm = the entry's vm_format, Vm overflow ``overflow``, counted
    unless ERROR).  An IF unit gets IF ``<name>_if``: ``V += I``; ``s = V >= θ``; where s,
    ``V -= θ`` (``reset="subtract"``, the default) or ``V = 0`` (``"zero"``).  A dual-threshold
    unit gets DualThreshold ``<name>_dt``: ``V += I``; ``s1 = V > θ1``, ``s2 = V > θ2`` (the
    same V), output [s1, s2] (C -> 2C channels); ``reset`` where s1 or s2 (``reset_by="either"``:
    V -= the larger θ that fired, or V = 0); at T = 1 its spikes are the float activation's.
    The readout's neuron: ``readout="vm"`` integrates only (reset "none": classify by argmax V)
    or ``"spikes"`` resets as the others (classify by argmax of the spike counts).
    A maxpool after an IF unit becomes ``pooling``: "count_gate" (``count_bits`` counters),
    "winner_pre" / "winner_post" (winner spike by pre- / post-reset Vm), "pooled_neuron" (its
    neuron layer then only integrates, the pool fires at θ and subtracts θ from its window; only
    with ``reset="subtract"``) or "or"; after a dual-threshold unit it is always OR (the max of
    0/1 values).  An avgpool of area 2**a becomes a SumPool whose code ``Σ s`` has frac a (the
    exact mean); the next layer's bias, θ and Vm move to that scale exactly (``_rescaled``).
    """
    if pooling not in POOLINGS:
        raise ConversionError(f"pooling = {pooling!r} must be one of {', '.join(POOLINGS)}")
    if readout not in READOUTS:
        raise ConversionError(f"readout = {readout!r} must be one of {', '.join(READOUTS)}")
    if reset not in RESETS:
        raise ConversionError(f"reset = {reset!r} must be one of {', '.join(RESETS)}")
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
    out, unit, prev_kind, shift = [], None, None, 0
    for entry in layers:
        kind = entry["kind"]
        if kind in ("maxpool", "avgpool"):
            if prev_kind not in WEIGHT_KINDS:
                raise ConversionError(
                    f"pool {entry['name']!r} follows {prev_kind}: a spiking pool reads one neuron layer, "
                    "so it must directly follow a conv/linear unit"
                )
            if kind == "avgpool":
                shift = _avg_shift(entry)
            elif pooling == "pooled_neuron" and unit["neuron"] == "if":
                out[-1] = replace(out[-1], reset="none")
            out.append(_pool_layer(entry, pooling, unit, shift, count_bits, overflow))
        elif kind == "flatten":
            out.append(Flatten(entry["name"]))
        else:
            unit, shift = (_rescaled(entry, shift) if shift else entry), 0
            params = dict(name=unit["name"], weight=unit["weight"], weight_format=unit["weight_format"],
                          bias=unit["bias"], bias_format=unit["bias_format"])  # fmt: skip
            if kind == "conv":
                out.append(Conv2d(stride=unit["stride"], padding=unit["padding"], **params))
            else:
                out.append(Linear(**params))
            out.append(_neuron_layer(unit, readout, reset, overflow))
        prev_kind = kind
    return Network(out, input_shape, layers[0]["input_format"], name=name)
