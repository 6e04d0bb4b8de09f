"""ONNX float CNNs in: ``read_onnx`` reads a model into a ``refmodel.ann.ANN`` (a graph of float
layers), ``import_onnx`` converts it into a bit-exact refmodel ``Network`` (docs/conversion.md §8).

Nodes read (anything else, or an attribute outside what is listed, is refused with a
``ConversionError`` naming the node, its op type and why):

=====================  ==========================================================================
ONNX                   ANN layer
=====================  ==========================================================================
Conv                   conv: group 1, dilations 1, equal strides, pads equal on every side
BatchNormalization     batchnorm (inference: training_mode 0; folded by the conversion)
Relu                   relu
MaxPool, AveragePool   maxpool, avgpool: square kernel, equal strides, no pads, ceil_mode 0
GlobalAveragePool      global_avgpool: the mean over H, W, shape (C, 1, 1)
Flatten (axis 1),      flatten (row-major C, H, W); a Reshape's shape is a constant (1 or N, -1) or
Reshape to (N, -1)       (1 or N, F): the batch axis is kept
Gemm                   linear ``y = x W^T + b``: transA 0, transB 0 or 1, alpha = beta = 1
MatMul [+ Add const]   linear ``y = x B + c``: B a constant (F, K), the Add's constant c its bias
Add                    add of two activations (a residual sum)
Concat (axis 1)        concat on the channel (or feature) axis
Identity, Constant     none: an alias, a constant (as initializers are)
=====================  ==========================================================================

The input must be one float tensor (N, C, H, W) or (N, F) (N: 1, any number or symbolic); the
output one tensor, the last node's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refmodel.ann import ANN, INPUT, ANNError
from refmodel.convert import (
    ConversionError,
    choose_formats,
    fold_batchnorm,
    normalize,
    quantize_parameters,
    to_network,
)
from refmodel.interop import identifier

__all__ = ["read_onnx", "import_onnx"]

#: Attributes each op may carry (others are refused); ops not listed are refused.
_ATTRIBUTES = {
    "Conv": ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"),
    "BatchNormalization": ("epsilon", "momentum", "training_mode", "spatial"),
    "Relu": (),
    "MaxPool": ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"),
    "AveragePool": ("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"),
    "GlobalAveragePool": (),
    "Flatten": ("axis",),
    "Reshape": ("allowzero",),
    "Gemm": ("alpha", "beta", "transA", "transB"),
    "MatMul": (),
    "Add": (),
    "Concat": ("axis",),
    "Identity": (),
    "Constant": ("value", "value_float", "value_floats", "value_int", "value_ints"),
}
_FLOATS = ("FLOAT", "DOUBLE", "FLOAT16")


def _onnx():
    """The ``onnx`` package, or an ImportError naming the extra that installs it."""
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError as err:
        raise ImportError("reading ONNX models needs the onnx package: pip install 'refmodel[interop]'") from err
    return onnx


def _refused(node, why) -> ConversionError:
    return ConversionError(f"ONNX node {node.name!r} ({node.op_type}): {why}")


class _Reader:
    """Walks an ONNX graph in its (topological) node order, building the ANN's layer dicts."""

    def __init__(self, onnx, model):
        self.onnx, self.graph = onnx, model.graph
        self.consts = {init.name: onnx.numpy_helper.to_array(init) for init in self.graph.initializer}
        self.layers, self.node_of, self.notes = [], {}, []
        self.tensors, self.ranks = {}, {}  # tensor -> ANN layer name (or INPUT); and its rank
        self.uses = {}  # tensor -> number of node inputs and graph outputs reading it
        for name in [t for node in self.graph.node for t in node.input] + [o.name for o in self.graph.output]:
            self.uses[name] = self.uses.get(name, 0) + 1
        self.matmuls = set()  # layers made of a MatMul, whose bias an Add of a constant may still set
        self.sizes = []  # (Reshape node, its flatten layer, the F of its constant shape (N, F)), checked at the end

    # ------------------------------------------------------------------ the graph's input and output
    def input_shape(self) -> tuple:
        """(C, H, W) or (F,) of the one graph input that is not an initializer."""
        inputs = [v for v in self.graph.input if v.name not in self.consts]
        if len(inputs) != 1:
            raise ConversionError(f"the ONNX model has {len(inputs)} inputs {[v.name for v in inputs]}: "
                                  "refmodel reads models of one input tensor")
        value = inputs[0]
        tensor = value.type.tensor_type
        elem = self.onnx.TensorProto.DataType.Name(tensor.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if elem not in _FLOATS or len(dims) not in (2, 4) or not all(d and d > 0 for d in dims[1:]):
            shown = ", ".join("?" if d is None else str(d) for d in dims)
            raise ConversionError(f"the ONNX model's input {value.name!r} is {elem} ({shown}): refmodel reads one "
                                  "float tensor (N, C, H, W) or (N, F) of fixed C, H, W or F")
        self.tensors[value.name], self.ranks[value.name] = INPUT, len(dims)
        return tuple(dims[1:])

    def output(self) -> None:
        """The graph's one output must be the last layer's."""
        outputs = list(self.graph.output)
        last = self.layers[-1]["name"] if self.layers else None
        if len(outputs) != 1 or self.tensors.get(outputs[0].name) != last or last is None:
            raise ConversionError(f"the ONNX model's outputs {[o.name for o in outputs]} must be one tensor, the "
                                  "output of its last node")

    # ------------------------------------------------------------------ operands
    def act(self, node, k) -> str:
        """The ANN layer (or INPUT) whose output is the ``k``-th input of ``node``."""
        tensor = node.input[k] if k < len(node.input) else ""
        if tensor not in self.tensors:
            what = "a constant" if tensor in self.consts else "missing" if not tensor else "not computed before it"
            raise _refused(node, f"input {k} ({tensor!r}) is {what}, not an activation")
        return self.tensors[tensor]

    def const(self, node, k, what, required=True):
        """The constant (initializer or Constant node) that is the ``k``-th input of ``node``."""
        tensor = node.input[k] if k < len(node.input) else ""
        if not tensor and not required:
            return None
        if tensor not in self.consts:
            raise _refused(node, f"its {what} (input {k}, {tensor!r}) is not a constant (an initializer or a "
                                 "Constant node)")
        return np.asarray(self.consts[tensor])

    def attrs(self, node) -> dict:
        helper = self.onnx.helper
        values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        extra = sorted(set(values) - set(_ATTRIBUTES[node.op_type]))
        if extra:
            raise _refused(node, f"attributes {extra} are not supported (allowed: {list(_ATTRIBUTES[node.op_type])})")
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}

    def name(self, node) -> str:
        """A refmodel name for the node's layer (``identifier``; ``<op><n>`` for a node without a name)."""
        base = identifier(node.name or str(len(self.layers)), node.op_type.lower())
        name, n = base, 1
        while name in self.node_of or name == INPUT:
            n += 1
            name = f"{base}_{n}"
        return name

    def add_layer(self, node, layer, rank) -> None:
        """Append ``layer`` (kind and fields; its name is made here), the node's first output its output."""
        layer = {"name": self.name(node), **layer}
        self.layers.append(layer)
        self.node_of[layer["name"]] = node
        self.tensors[node.output[0]], self.ranks[node.output[0]] = layer["name"], rank
        for extra in node.output[1:]:
            if extra and self.uses.get(extra):
                raise _refused(node, f"its output {extra!r} is used; refmodel reads only the first output")

    def rank(self, node, k=0) -> int:
        return self.ranks[node.input[k]]

    # ------------------------------------------------------------------ nodes
    def read(self, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise _refused(node, f"domain {node.domain!r}: refmodel reads standard ONNX operators only")
        if node.op_type not in _ATTRIBUTES:
            raise _refused(node, f"refmodel does not read {node.op_type} nodes (it reads {', '.join(_ATTRIBUTES)})")
        getattr(self, f"_{node.op_type.lower()}")(node, self.attrs(node))

    def _pair(self, node, attrs, key, default) -> int:
        """The one value of a 2-D attribute whose two values must be equal."""
        values = list(attrs.get(key, default))
        if len(values) != 2 or values[0] != values[1]:
            raise _refused(node, f"{key} = {values}: refmodel needs equal values on both axes")
        return int(values[0])

    def _window(self, node, attrs, kernel) -> dict:
        """What Conv and the pools share: auto_pad NOTSET or VALID, dilations 1, equal strides."""
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise _refused(node, f"auto_pad = {attrs['auto_pad']!r}: give explicit pads")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise _refused(node, f"dilations = {list(attrs['dilations'])}: refmodel has no dilated windows")
        if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != list(kernel):
            raise _refused(node, f"kernel_shape = {list(attrs['kernel_shape'])} differs from the weight's {kernel}")
        return {"stride": self._pair(node, attrs, "strides", [1, 1])}

    def _conv(self, node, attrs):
        weight = self.const(node, 1, "weight")
        if weight.ndim != 4:
            raise _refused(node, f"weight of shape {weight.shape}: refmodel reads 2-D convolutions (K, C, kh, kw)")
        if attrs.get("group", 1) != 1:
            raise _refused(node, f"group = {attrs['group']}: refmodel's ANN reads ungrouped convolutions only")
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(set(pads)) != 1:
            raise _refused(node, f"pads = {pads}: refmodel pads every side alike (symmetric, equal on both axes)")
        bias = self.const(node, 2, "bias", required=False)
        source = self.act(node, 0)
        self.add_layer(node, {"kind": "conv", "inputs": (source,), "weight": weight,
                              "bias": np.zeros(weight.shape[0]) if bias is None else bias,
                              **self._window(node, attrs, weight.shape[2:]), "padding": pads[0]}, 4)

    def _batchnormalization(self, node, attrs):
        if attrs.get("training_mode", 0) or attrs.get("spatial", 1) != 1:
            raise _refused(node, "training_mode or spatial = 0: refmodel folds inference-mode batch norm only")
        arrays = {key: self.const(node, k, key) for k, key in enumerate(("gamma", "beta", "mean", "var"), 1)}
        self.add_layer(node, {"kind": "batchnorm", "inputs": (self.act(node, 0),), "eps": attrs.get("epsilon", 1e-5),
                              **arrays}, self.rank(node))

    def _relu(self, node, attrs):
        self.add_layer(node, {"kind": "relu", "inputs": (self.act(node, 0),)}, self.rank(node))

    def _pool(self, node, attrs, kind):
        kernel = list(attrs.get("kernel_shape", []))
        if len(kernel) != 2 or kernel[0] != kernel[1]:
            raise _refused(node, f"kernel_shape = {kernel}: refmodel pools square 2-D windows")
        if any(attrs.get("pads", [0])):
            raise _refused(node, f"pads = {list(attrs['pads'])}: refmodel pools whole windows, without padding")
        if attrs.get("ceil_mode", 0):
            raise _refused(node, "ceil_mode = 1: refmodel pools whole windows only (floor)")
        self.add_layer(node, {"kind": kind, "inputs": (self.act(node, 0),), "k": kernel[0],
                              **self._window(node, attrs, kernel)}, 4)

    def _maxpool(self, node, attrs):
        self._pool(node, attrs, "maxpool")

    def _averagepool(self, node, attrs):
        self._pool(node, attrs, "avgpool")

    def _globalaveragepool(self, node, attrs):
        self.add_layer(node, {"kind": "global_avgpool", "inputs": (self.act(node, 0),)}, 4)

    def _flatten(self, node, attrs):
        if attrs.get("axis", 1) != 1:
            raise _refused(node, f"axis = {attrs['axis']}: refmodel flattens each sample (axis 1)")
        self.add_layer(node, {"kind": "flatten", "inputs": (self.act(node, 0),)}, 2)

    def _reshape(self, node, attrs):
        shape = self.const(node, 1, "shape").tolist()
        flat = len(shape) == 2 and (shape[1] == -1 and shape[0] in (0, 1) or shape[1] > 0 and shape[0] in (-1, 0, 1))
        if not flat or (0 in shape and attrs.get("allowzero", 0)):
            raise _refused(node, f"shape = {shape}: refmodel reads a Reshape to (N, -1) (or (1, -1), (N, F)) only")
        source = self.act(node, 0)
        self.add_layer(node, {"kind": "flatten", "inputs": (source,)}, 2)
        self.notes.append(f"Reshape {node.name!r} to {tuple(shape)} read as a flatten (N, -1): the batch axis kept")
        if shape[1] > 0:
            self.sizes.append((node, self.layers[-1]["name"], shape[1]))

    def _gemm(self, node, attrs):
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise _refused(node, f"transA = {attrs.get('transA', 0)}, alpha = {attrs.get('alpha', 1.0)}, beta = "
                                 f"{attrs.get('beta', 1.0)}: refmodel reads y = x W^T + b (transA 0, alpha = beta = 1)")
        b = self.const(node, 1, "weight")
        if b.ndim != 2:
            raise _refused(node, f"weight of shape {b.shape} must be a matrix")
        weight = b if attrs.get("transB", 0) else b.T
        bias = self.const(node, 2, "bias", required=False)
        if bias is not None and bias.shape not in ((weight.shape[0],), (1, weight.shape[0])):
            raise _refused(node, f"bias of shape {bias.shape} must be ({weight.shape[0]},) or (1, {weight.shape[0]})")
        self.add_layer(node, {"kind": "linear", "inputs": (self.act(node, 0),), "weight": weight,
                              "bias": np.zeros(weight.shape[0]) if bias is None else bias.ravel()}, 2)

    def _matmul(self, node, attrs):
        b = self.const(node, 1, "weight")
        if b.ndim != 2:
            raise _refused(node, f"weight of shape {b.shape} must be a matrix (F, K)")
        self.add_layer(node, {"kind": "linear", "inputs": (self.act(node, 0),), "weight": b.T,
                              "bias": np.zeros(b.shape[1])}, 2)
        self.matmuls.add(self.layers[-1]["name"])

    def _add(self, node, attrs):
        consts = [k for k in (0, 1) if node.input[k] in self.consts]
        if not consts:
            self.add_layer(node, {"kind": "add", "inputs": (self.act(node, 0), self.act(node, 1))}, self.rank(node))
            return
        source = self.tensors.get(node.input[1 - consts[0]])
        if len(consts) == 2 or source not in self.matmuls or self.uses[node.input[1 - consts[0]]] != 1:
            raise _refused(node, "adds a constant to a tensor that is not a MatMul's output read by this Add alone: "
                                 "refmodel reads a constant Add only as the bias of a MatMul")
        layer = next(layer for layer in self.layers if layer["name"] == source)
        bias = self.const(node, consts[0], "bias")
        if bias.shape not in ((layer["bias"].size,), (1, layer["bias"].size)):
            raise _refused(node, f"bias of shape {bias.shape} must be ({layer['bias'].size},) or "
                                 f"(1, {layer['bias'].size})")
        layer["bias"] = layer["bias"] + bias.ravel()
        self.matmuls.discard(source)
        self.tensors[node.output[0]], self.ranks[node.output[0]] = source, 2
        self.notes.append(f"MatMul {self.node_of[source].name!r} + Add {node.name!r}: one linear layer {source!r}, "
                          "the Add's constant its bias")

    def _concat(self, node, attrs):
        rank = self.rank(node)
        axis = attrs.get("axis", 1)
        if (axis + rank if axis < 0 else axis) != 1:
            raise _refused(node, f"axis = {axis}: refmodel concatenates on the channel (or feature) axis, 1")
        self.add_layer(node, {"kind": "concat", "inputs": tuple(self.act(node, k) for k in range(len(node.input)))},
                       rank)

    def _identity(self, node, attrs):
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
        else:
            self.tensors[node.output[0]], self.ranks[node.output[0]] = self.act(node, 0), self.rank(node)

    def _constant(self, node, attrs):
        if len(attrs) != 1:
            raise _refused(node, f"attributes {sorted(attrs)}: a Constant has one value")
        ((key, value),) = attrs.items()
        self.consts[node.output[0]] = self.onnx.numpy_helper.to_array(value) if key == "value" else np.asarray(value)


def read_onnx(path) -> ANN:
    """The float ANN of an ONNX model (the nodes of the module docstring), its layers named after
    the nodes (``identifier``: ``/stem/stem.0/Conv`` -> ``stem_stem_0_Conv``, ``/0/Conv`` ->
    ``conv_0_Conv``).  ``meta`` holds the file, the producer and ``assumptions``: what the
    reading took for granted."""
    onnx = _onnx()
    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError, OSError, ... for unreadable files
        raise ConversionError(f"{path}: not a readable ONNX model ({type(err).__name__}: {err})") from None
    reader = _Reader(onnx, model)
    input_shape = reader.input_shape()
    for node in model.graph.node:
        reader.read(node)
    reader.output()
    meta = {"source": str(path), "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "assumptions": reader.notes}
    try:
        ann = ANN(input_shape, reader.layers, meta)
    except ANNError as err:
        if err.layer not in reader.node_of:
            raise
        raise _refused(reader.node_of[err.layer], str(err)) from None
    shapes = dict(zip((layer["name"] for layer in ann.layers), ann.shapes))
    for node, name, size in reader.sizes:
        if shapes[name] != (size,):
            raise _refused(node, f"reshapes to (N, {size}), but a sample holds {shapes[name][0]} values")
    return ann


def _error(codes, fmt, values) -> float:
    """The largest quantization error relative to the largest value: ``max|q·2^-frac − x| / max|x|``."""
    largest = float(np.abs(values).max(initial=0.0))
    return float(np.abs(codes * 2.0**-fmt.frac - values).max(initial=0.0)) / largest if largest else 0.0


def _report(ann, normed, lambdas, layers, network, calibration, options) -> list:
    """The import's lines: the model, every assumption, the normalization, each weight layer's and
    add's formats with the values clipped and the largest relative errors, and the SNN's options."""
    floats = {layer["name"]: layer for layer in normed.layers}
    lines = [f"ONNX model {ann.meta['source']} ({ann.meta['producer'] or 'unknown producer'}): {len(ann.layers)} "
             f"layers, input (N, {', '.join(map(str, ann.input_shape))})", *ann.meta["assumptions"]]
    folded = [layer["name"] for layer in ann.layers if layer["kind"] == "batchnorm"]
    if folded:
        lines.append(f"batch norm folded into the conv/linear layer before it: {', '.join(folded)}")
    lines.append(f"normalization: lambda = the {options['percentile']} percentile of the non-zero activations over "
                 f"{len(calibration)} calibration inputs: " + ", ".join(f"{k} {v:.4g}" for k, v in lambdas.items()))
    for layer in normed.layers:
        if layer["name"] not in {a["name"] for a in ann.layers}:
            lines.append(f"identity shortcut {layer['inputs'][0]!r} -> {layer['name']!r}: a 1x1 "
                         f"{'conv' if layer['kind'] == 'conv' else 'linear'} of weight (lambda_in / lambda_out)·I, "
                         "quantized with the other current of its add")
    for entry in layers:
        name = entry["name"]
        if "weight" in entry:
            neuron = f", Vm {entry['vm_format']}, threshold {entry['threshold']}" if "vm_format" in entry else \
                f", current of add {entry['add']!r}"
            errors = [_error(entry[k], entry[f"{k}_format"], floats[name][k]) for k in ("weight", "bias")]
            lines.append(f"{name}: weights {entry['weight_format']}, bias {entry['bias_format']}{neuron}; clipped "
                         f"weight {entry['clipped']['weight']}, bias {entry['clipped']['bias']}; largest error "
                         f"max|q·2^-frac - x| / max|x|: weight {errors[0]:.2e}, bias {errors[1]:.2e}")
        elif entry["kind"] == "add":
            add = network.layer(name)
            lines.append(f"{name}: add of the currents of {', '.join(entry['inputs'])} into {add.format} (wide enough "
                         f"for any sum, SAT), Vm {entry['vm_format']}, threshold {entry['threshold']}")
        elif entry["kind"] in ("avgpool", "global_avgpool"):
            lines.append(f"{name}: {entry['kind']} over {entry['k']} as a sum pool whose code has "
                         f"{network.layer(name).out_format.frac} fraction bits (the exact mean); the next layer's "
                         "bias, threshold and Vm move to that scale")
    lines.append(f"input {options['input_format']}: codes round(x·2^{options['input_format'].frac}), the same current "
                 f"every timestep; IF neurons V >= threshold, reset {options['reset']}; max pooling "
                 f"{options['pooling']}; readout {options['readout']}; parameters outside their formats and Vm "
                 "registers saturate (SAT, counted)")
    return lines


def import_onnx(path, calibration, *, input_format=None, weight_bits=8, percentile=99.9, pooling="count_gate",
                readout="vm", reset="subtract", name=None):
    """``(network, lines)``: the ONNX model at ``path`` converted into a refmodel Network
    (``refmodel.convert``: batch norm folded, normalized on the float ``calibration`` inputs at
    ``percentile``, ``weight_bits`` weights, biases of ``2 * weight_bits`` and Vm of
    ``weight_bits + 16`` bits (16 and 24 for 8-bit weights, as ``convert``), parameters saturated
    and counted, ``to_network(pooling, readout, reset)`` with saturating Vm registers) and the
    report's lines: every assumption, the normalization's lambdas and, per weight layer, its
    formats, the values clipped and the largest quantization error relative to the largest float
    value, ``max|q·2^-frac - x| / max|x|`` over its weights (and, apart, its biases), x the
    normalized float parameter.  ``input_format``: the QFormat of the input codes (required).
    """
    if input_format is None:
        raise ConversionError("input_format = None: give the QFormat of the network input codes, e.g. u9.8 for "
                              "values in [0, 1] (round(x·2^8)), docs/conversion.md §4")
    ann = read_onnx(path)
    calibration = np.asarray(calibration, np.float64)
    normed, lambdas = normalize(fold_batchnorm(ann), calibration, percentile)
    formats = choose_formats(normed, input_format, weight_bits, 2 * weight_bits, weight_bits + 16)
    layers = quantize_parameters(normed, formats, input_format, overflow="SAT")
    network = to_network(layers, ann.input_shape, pooling, readout, reset=reset, overflow="SAT",
                         name=name or identifier(Path(path).stem, "onnx"))
    options = {"input_format": input_format, "percentile": percentile, "pooling": pooling, "readout": readout,
               "reset": reset}
    return network, _report(ann, normed, lambdas, layers, network, calibration, options)
