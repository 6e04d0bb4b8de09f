"""A float CNN description and its float64 reference forward pass (numpy only).

This is the input side of ANN -> SNN conversion (``refmodel.convert``): floats live here and in
the conversion, never in the golden path.

File format: an ``.npz`` of float arrays named ``"<layer>.<field>"`` (e.g. ``"conv1.weight"``)
plus, under the key ``__architecture__``, a JSON string::

    {"format": "refmodel-ann", "version": 1, "input_shape": [C, H, W],
     "layers": [{"kind": "conv", "name": "conv1", "stride": 1, "padding": 1}, ...],
     "meta": {...free-form provenance...}}

The network is a directed acyclic graph: a layer reads the layers its ``inputs`` names (layers
listed before it, or ``"input"``: the network input), by default the previous layer (the network
input for the first).  ``input_shape`` is (C, H, W) or (F,).  On a batch ``(N, C, H, W)`` (or
``(N, F)`` after flatten):

=========  ======================================  =================================================
kind       arrays / options                        output
=========  ======================================  =================================================
conv       weight (K, C, kh, kw), bias (K,);       y[n,k,i,j] = b[k] + sum_{c,u,v} W[k,c,u,v] *
           stride s, padding p (zeros)               xpad[n, c, i*s + u, j*s + v]
batchnorm  gamma, beta, mean, var (C,); eps        y = gamma * (x - mean) / sqrt(var + eps) + beta
                                                     (per channel: axis 1)
relu       -                                       y = max(x, 0)
maxpool    k, stride (default k), no padding       y = max of each k x k window
avgpool    k, stride (default k), no padding       y = mean of each k x k window
flatten    -                                       y[n] = x[n].ravel() (row-major C, H, W order)
linear     weight (K, F), bias (K,)                y = x @ W.T + b
global_    -                                       y[n,c,0,0] = mean of x[n,c] over H, W: (C, 1, 1)
 avgpool
add        inputs (two or more, one shape)         y = x_0 + x_1 + ... (element-wise)
concat     inputs (two or more)                    y = [x_0, x_1, ...] on axis 1 (channels, or features)
=========  ======================================  =================================================

``dual_threshold`` (arrays ``theta1``, ``theta2``: shape () for the layer or (C,) per channel,
on axis 1) is DT-SCNN's two-level activation, C -> 2C channels of 0.0 / 1.0; ``threshold``
(array ``theta``, the same shapes) is the one-level activation of a conventional spiking layer
at one timestep (DT-SCNN's baseline), C -> C channels::

    y = concat([x > theta1, x > theta2], axis=1)        (strict >, thresholds in x's units)
    y = x > theta                                       (threshold)

Pooling keeps whole windows only: ``Ho = (H - k) // stride + 1`` (as ``refmodel.layers.pooling``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from refmodel.errors import RefmodelError

__all__ = ["ANNError", "ANN", "ARRAYS", "INPUT", "MERGE_KINDS", "load", "save", "forward", "windows"]

ARCH_KEY = "__architecture__"
FORMAT, VERSION = "refmodel-ann", 1
#: The name under which ``inputs`` refers to the network input.
INPUT = "input"
#: Kinds that read two or more layers (``inputs`` required).
MERGE_KINDS = ("add", "concat")

#: The float arrays of each layer kind, and their options (with defaults).
ARRAYS = {
    "conv": ("weight", "bias"),
    "batchnorm": ("gamma", "beta", "mean", "var"),
    "linear": ("weight", "bias"),
    "dual_threshold": ("theta1", "theta2"),
    "threshold": ("theta",),
}
_OPTIONS = {
    "conv": {"stride": 1, "padding": 0},
    "batchnorm": {"eps": 1e-5},
    "maxpool": {"k": None, "stride": None},
    "avgpool": {"k": None, "stride": None},
    "relu": {},
    "dual_threshold": {},
    "threshold": {},
    "flatten": {},
    "linear": {},
    "global_avgpool": {},
    "add": {},
    "concat": {},
}


class ANNError(RefmodelError):
    """An invalid network description; the message names the layer, the field and the value
    (``layer``: the name of the layer at fault, when there is one)."""

    def __init__(self, message: str, layer: str | None = None):
        super().__init__(message)
        self.layer = layer


@dataclass
class ANN:
    """A float CNN: ``input_shape`` (C, H, W) or (F,) and ``layers``, a list of dicts with
    ``kind``, ``name``, optionally ``inputs``, the kind's options and its float64 arrays (see the
    module docstring).

    Construction validates everything and fills defaults; ``sources`` holds the names each layer
    reads (its ``inputs``, else the previous layer, or ``"input"``), ``shapes`` each layer's
    output shape (without the batch axis).
    """

    input_shape: tuple
    layers: list
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        if len(self.input_shape) not in (1, 3) or min(self.input_shape) < 1:
            raise ANNError(f"input_shape must be (C, H, W) or (F,) of positive sizes, got {self.input_shape}")
        self.layers = [_checked_layer(i, layer) for i, layer in enumerate(self.layers)]
        names = [layer["name"] for layer in self.layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ANNError(f"layer names must be unique, repeated: {dup}")
        if INPUT in names:
            raise ANNError(f"no layer may be named {INPUT!r}: inputs = [{INPUT!r}] names the network input")
        self.sources, self.shapes = [], []
        shapes = {INPUT: self.input_shape}
        for i, layer in enumerate(self.layers):
            sources = layer.get("inputs") or ((names[i - 1],) if i else (INPUT,))
            for source in sources:
                if source not in shapes:
                    raise _err(layer, "inputs", source, f"is neither {INPUT!r} nor a layer listed before it")
            shapes[layer["name"]] = _output_shape(layer, [shapes[source] for source in sources])
            self.sources.append(tuple(sources))
            self.shapes.append(shapes[layer["name"]])

    def layer(self, name) -> dict:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer["name"] == name:
                return layer
        raise ANNError(f"no layer named {name!r}")


def _err(layer, fld, value, reason):
    return ANNError(
        f"layer {layer.get('name', '?')!r} ({layer.get('kind', '?')}): {fld} = {value!r} {reason}", layer.get("name")
    )


def _checked_layer(index, layer) -> dict:
    if not isinstance(layer, dict):
        raise ANNError(f"layer {index} must be a dict, got {type(layer).__name__}")
    kind = layer.get("kind")
    if kind not in _OPTIONS:
        raise _err(layer, "kind", kind, f"is not one of {sorted(_OPTIONS)}")
    out = {"kind": kind, "name": str(layer.get("name", f"{kind}{index}"))}
    allowed = {"kind", "name", "inputs", *_OPTIONS[kind], *ARRAYS.get(kind, ())}
    unknown = sorted(set(layer) - allowed)
    if unknown:
        raise _err(out, "keys", unknown, f"are unknown for {kind} (allowed: {sorted(allowed)})")
    if "inputs" in layer or kind in MERGE_KINDS:
        out["inputs"] = _checked_inputs(out, layer.get("inputs"))
    for opt, default in _OPTIONS[kind].items():
        value = layer.get(opt, default)
        if opt == "stride" and kind in ("maxpool", "avgpool") and value is None:
            value = out["k"]
        if opt == "eps":
            if not isinstance(value, (int, float)) or not value > 0:
                raise _err(out, opt, value, "must be a positive number")
            value = float(value)
        else:
            minimum = 0 if opt == "padding" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise _err(out, opt, value, f"must be an integer >= {minimum}")
            value = int(value)
        out[opt] = value
    for name in ARRAYS.get(kind, ()):
        if name not in layer:
            raise _err(out, name, None, "is missing")
        arr = np.asarray(layer[name])
        if arr.dtype.kind not in "fiu":
            raise _err(out, name, arr.dtype, "must be real numbers")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise _err(out, name, "non-finite", "values found")
        out[name] = arr
    return out


def _checked_inputs(layer, names) -> tuple:
    """The ``inputs`` of a layer: two or more distinct names for a merge, else one."""
    merge = layer["kind"] in MERGE_KINDS
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names) or (
        len(names) < 2 if merge else len(names) != 1
    ):
        raise _err(layer, "inputs", names, f"must be a list of {'two or more' if merge else 'one'} layer names "
                                           f"({INPUT!r}: the network input)")
    if len(set(names)) != len(names):
        raise _err(layer, "inputs", list(names), "names a layer twice")
    return tuple(names)


def _merged_shape(layer, shapes) -> tuple:
    """add: the inputs' common shape; concat: the inputs joined on their first axis."""
    first, names = shapes[0], layer["inputs"]
    for name, shape in zip(names[1:], shapes[1:]):
        if shape != first if layer["kind"] == "add" else (len(shape) != len(first) or shape[1:] != first[1:]):
            where = "in shape" if layer["kind"] == "add" else "beyond the channel axis"
            raise _err(layer, "inputs", list(names), f"differ {where}: {names[0]!r} {first}, {name!r} {shape}")
    return first if layer["kind"] == "add" else (sum(shape[0] for shape in shapes), *first[1:])


def _output_shape(layer, shapes) -> tuple:
    kind = layer["kind"]
    if kind in MERGE_KINDS:
        return _merged_shape(layer, shapes)
    (shape,) = shapes
    if kind in ("relu",):
        return shape
    if kind == "flatten":
        return (int(np.prod(shape)),)
    if kind == "linear":
        w, b = layer["weight"], layer["bias"]
        if len(shape) != 1:
            raise _err(layer, "input shape", shape, "must be flat (add a flatten layer)")
        if w.ndim != 2 or w.shape[1] != shape[0]:
            raise _err(layer, "weight.shape", w.shape, f"must be (K, {shape[0]})")
        if b.shape != (w.shape[0],):
            raise _err(layer, "bias.shape", b.shape, f"must be ({w.shape[0]},)")
        return (w.shape[0],)
    if kind == "batchnorm":
        for name in ARRAYS[kind]:
            if layer[name].shape != (shape[0],):
                raise _err(
                    layer, f"{name}.shape", layer[name].shape, f"must be ({shape[0]},), one per channel"
                )
        if (layer["var"] < 0).any():
            raise _err(layer, "var", float(layer["var"].min()), "must be >= 0")
        return shape
    if kind in ("dual_threshold", "threshold"):
        for name in ARRAYS[kind]:
            if layer[name].shape not in ((), (shape[0],)):
                raise _err(
                    layer, f"{name}.shape", layer[name].shape, f"must be () (per layer) or ({shape[0]},) (per channel)"
                )
        return (len(ARRAYS[kind]) * shape[0], *shape[1:])
    if len(shape) != 3:
        raise _err(layer, "input shape", shape, "must be (C, H, W)")
    c, h, w_ = shape
    if kind == "global_avgpool":
        return (c, 1, 1)
    if kind == "conv":
        w, b = layer["weight"], layer["bias"]
        if w.ndim != 4 or w.shape[1] != c:
            raise _err(layer, "weight.shape", w.shape, f"must be (K, {c}, kh, kw)")
        if b.shape != (w.shape[0],):
            raise _err(layer, "bias.shape", b.shape, f"must be ({w.shape[0]},)")
        k, p, s = w.shape[2:], layer["padding"], layer["stride"]
        size = [(n + 2 * p - kk) // s + 1 for n, kk in zip((h, w_), k)]
        if min(size) < 1:
            raise _err(layer, "weight.shape", w.shape, f"does not fit the padded input {shape}")
        return (w.shape[0], *size)
    k, s = layer["k"], layer["stride"]
    if k > min(h, w_):
        raise _err(layer, "k", k, f"is larger than the input {shape}")
    return (c, (h - k) // s + 1, (w_ - k) // s + 1)


# --------------------------------------------------------------------------- file I/O
def save(ann: ANN, path) -> None:
    """Write ``ann`` to ``path`` (.npz, compressed): arrays ``"<layer>.<field>"`` + the JSON."""
    arrays, specs = {}, []
    for layer in ann.layers:
        specs.append({k: v for k, v in layer.items() if k not in ARRAYS.get(layer["kind"], ())})
        for name in ARRAYS.get(layer["kind"], ()):
            arrays[f"{layer['name']}.{name}"] = layer[name]
    arch = {
        "format": FORMAT,
        "version": VERSION,
        "input_shape": list(ann.input_shape),
        "layers": specs,
        "meta": ann.meta,
    }
    arrays[ARCH_KEY] = np.array(json.dumps(arch, sort_keys=True))
    np.savez_compressed(path, **arrays)


def load(path) -> ANN:
    """Read an ``.npz`` written by ``save`` (or by hand, same layout); validates it."""
    with np.load(path, allow_pickle=False) as data:
        if ARCH_KEY not in data.files:
            raise ANNError(f"{path}: no {ARCH_KEY!r} entry (the JSON architecture)")
        arch = json.loads(str(data[ARCH_KEY]))
        if arch.get("format") != FORMAT or arch.get("version") != VERSION:
            raise ANNError(
                f"{path}: format {arch.get('format')!r} v{arch.get('version')!r}, expected {FORMAT!r} v{VERSION}"
            )
        layers, used = [], {ARCH_KEY}
        for spec in arch["layers"]:
            layer = dict(spec)
            for name in ARRAYS.get(spec.get("kind"), ()):
                key = f"{spec.get('name')}.{name}"
                if key in data.files:
                    layer[name] = data[key]
                    used.add(key)
            layers.append(layer)
        extra = sorted(set(data.files) - used)
        if extra:
            raise ANNError(f"{path}: arrays {extra} belong to no layer")
    return ANN(arch["input_shape"], layers, arch.get("meta", {}))


# --------------------------------------------------------------------------- forward pass
def windows(x, k, stride, padding=0):
    """Sliding windows of ``x`` (N, C, H, W): a view (N, C, Ho, Wo, kh, kw), zero padded."""
    kh, kw = (k, k) if np.isscalar(k) else k
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return view[:, :, ::stride, ::stride]


def _layer_forward(layer, *xs):
    kind = layer["kind"]
    if kind == "add":
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total
    if kind == "concat":
        return np.concatenate(xs, axis=1)
    (x,) = xs
    if kind == "global_avgpool":
        return x.mean(axis=(2, 3), keepdims=True)
    if kind == "conv":
        w = layer["weight"]
        cols = windows(x, w.shape[2:], layer["stride"], layer["padding"])
        return np.einsum("nchwuv,kcuv->nkhw", cols, w, optimize=True) + layer["bias"][:, None, None]
    if kind == "linear":
        return x @ layer["weight"].T + layer["bias"]
    if kind == "batchnorm":
        scale = layer["gamma"] / np.sqrt(layer["var"] + layer["eps"])
        shift = layer["beta"] - layer["mean"] * scale
        shape = (-1,) + (1,) * (x.ndim - 2)
        return x * scale.reshape(shape) + shift.reshape(shape)
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind in ("dual_threshold", "threshold"):
        shape = (-1,) + (1,) * (x.ndim - 2)
        maps = [x > np.reshape(layer[name], shape) for name in ARRAYS[kind]]  # () or (C,) per channel
        return np.concatenate(maps, axis=1).astype(np.float64)
    if kind == "flatten":
        return x.reshape(x.shape[0], -1)
    pooled = windows(x, layer["k"], layer["stride"])
    return pooled.max(axis=(4, 5)) if kind == "maxpool" else pooled.mean(axis=(4, 5))


def forward(ann: ANN, x, return_all=False):
    """The float64 output (the last layer's) for a batch ``x`` (N, *input_shape), each layer
    reading its ``sources``; with ``return_all``, also the list of every layer's output (aligned
    with ``ann.layers``), for calibration."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != ann.input_shape:
        raise ANNError(
            f"input batch shape {x.shape} does not match (N, {', '.join(map(str, ann.input_shape))})"
        )
    values, outputs = {INPUT: x}, []
    for layer, sources in zip(ann.layers, ann.sources):
        x = values[layer["name"]] = _layer_forward(layer, *(values[source] for source in sources))
        outputs.append(x)
    return (x, outputs) if return_all else x
