"""Print what the exporters wrote into ``fixtures/`` and re-run each file without its framework.

For every ``.nir``: whether ``nir.read`` accepts it with type checking, each node's type and
parameters (shape, scalar or per neuron, distinct values), the edges, the metadata, the
timestep the parameters imply; then the graph simulated in numpy (float64) on the reference
images under each reading of NIR's ambiguities -- reset to ``v_reset`` / by subtraction /
snnTorch's delayed subtraction, compare ``>`` / ``>=`` -- and how many of the 50 output
spike-count vectors equal the framework's own (``<name>.reference.npz``).

For every ``.onnx``: opset, inputs and outputs, each node with its attributes, the
initializers, and onnxruntime's logits against the reference.

Needs only numpy, nir, onnx and onnxruntime (refmodel's ``interop`` extra), not torch::

    python examples/interop/inspect_fixtures.py
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

FIX = pathlib.Path(__file__).resolve().parent / "fixtures"


# --------------------------------------------------------------------------- NIR
def describe(v):
    a = np.asarray(v)
    if a.dtype.kind in "fiu" and a.size > 3:
        u = np.unique(a)
        vals = f"{len(u)} distinct" if len(u) > 3 else "values " + " ".join(f"{x:.9g}" for x in u)
        return f"{a.dtype}{list(a.shape)} {vals}"
    return repr(a.tolist()) + ("" if a.dtype.kind not in "fiu" else f" ({a.dtype}, shape {list(a.shape)})")


def nir_version(path):
    import h5py

    with h5py.File(path, "r") as f:
        v = f["version"][()]
    return v.decode() if isinstance(v, bytes) else str(v)


def show_nir(path):
    import nir

    print(f"== {path.name} ({path.stat().st_size} bytes), NIR version {nir_version(path)}")
    try:
        nir.read(path)
        print("   nir.read(type_check=True): accepted")
    except Exception as e:  # noqa: BLE001 -- reported, not handled
        print(f"   nir.read(type_check=True): REFUSED, {type(e).__name__}: {e}")
    g = nir.read(path, type_check=False)
    print(f"   graph metadata: {g.metadata}")
    for name in sorted(g.nodes, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else k)):
        node = g.nodes[name]
        print(f"   node {name!r}: {type(node).__name__}")
        for field, v in vars(node).items():
            if field in ("input_type", "output_type") or (field == "metadata" and not v):
                continue
            print(f"      {field}: {describe(v)}")
        if hasattr(node, "tau") and hasattr(node, "r"):
            dt = float(np.ravel(node.tau)[0]) / float(np.ravel(node.r)[0])
            print(f"      -> tau/r = {dt:.9g} (the dt giving input gain 1), "
                  f"alpha = 1 - dt/tau = {1 - dt / float(np.ravel(node.tau)[0]):.9g}")  # fmt: skip
        elif type(node).__name__ == "IF":
            print(f"      -> 1/r = {1 / float(np.ravel(node.r)[0]):.9g} (the dt giving input gain 1)")
    print(f"   edges: {g.edges}")
    return g


def conv2d(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    sh, sw = (int(s) for s in np.broadcast_to(stride, 2))
    ph, pw = (int(p) for p in np.broadcast_to(pad, 2))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, k, ho, wo))
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u : u + sh * ho : sh, v : v + sw * wo : sw]
            out += np.einsum("nchw,kc->nkhw", patch, w[:, :, u, v])
    return out + b[None, :, None, None]


def pool2d(x, k, s, mean):
    kh, kw = (int(v) for v in np.broadcast_to(k, 2))
    sh, sw = (int(v) for v in np.broadcast_to(s, 2))
    n, c, h, w = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((n, c, ho, wo))
    for u in range(kh):
        for v in range(kw):
            out += x[:, :, u : u + sh * ho : sh, v : v + sw * wo : sw]
    return out / (kh * kw) if mean else out


def simulate(g, x, T, dt, reset, compare):
    """Float64 forward-Euler run of graph g: x fed as a constant current every step.
    reset: 'value' (v <- v_reset, NIR), 'subtract' (v -= v_thr after the compare), or
    'snntorch' (v_t = beta*v_{t-1} + I - v_thr*s_{t-1}: the subtraction of a spike applied at
    the next step, after the leak, on the membrane that was not reset), or 'subtract/alpha'
    (v -= v_thr/alpha after the compare: the same spikes as 'snntorch', in NIR's order).
    Returns (output spike counts, last output membrane)."""
    order, preds = topo(g)
    state, spikes_prev, counts = {}, {}, 0
    for _ in range(T):
        val = {}
        for name in order:
            node = g.nodes[name]
            kind = type(node).__name__
            ins = [val[p] for p in preds[name]]
            inp = sum(ins) if ins else None
            if kind == "Input":
                out = x
            elif kind == "Output":
                out = inp
            elif kind == "Conv2d":
                out = conv2d(inp, node.weight.astype(np.float64), node.bias.astype(np.float64), node.stride, node.padding)
            elif kind in ("Affine", "Linear"):
                out = inp @ node.weight.astype(np.float64).T + (node.bias if kind == "Affine" else 0)
            elif kind == "Flatten":
                out = inp.reshape(len(inp), -1)
            elif kind in ("AvgPool2d", "SumPool2d"):
                out = pool2d(inp, node.kernel_size, node.stride, kind == "AvgPool2d")
            elif kind in ("IF", "LIF"):
                thr = node.v_threshold.astype(np.float64)
                v = state.get(name, np.zeros_like(inp))
                if kind == "IF":
                    v = v + dt * node.r * inp
                else:
                    tau = node.tau.astype(np.float64)
                    v = v + dt / tau * (node.v_leak - v + node.r * inp)
                if reset == "snntorch" and name in spikes_prev:
                    v = v - thr * spikes_prev[name]
                s = (v > thr) if compare == ">" else (v >= thr)
                s = s.astype(np.float64)
                state["mem_" + name] = v
                if reset == "value":
                    v = np.where(s > 0, node.v_reset, v)
                elif reset == "subtract":
                    v = v - thr * s
                elif reset == "subtract/alpha":  # the leak applied to v - thr/alpha: v - thr
                    alpha = 1 - dt / node.tau.astype(np.float64) if kind == "LIF" else 1.0
                    v = v - thr / alpha * s
                spikes_prev[name] = s
                state[name] = v
                out = s
            else:
                raise NotImplementedError(kind)
            val[name] = out
        counts = counts + val[order[-1]]
    last_neuron = [n for n in order if type(g.nodes[n]).__name__ in ("IF", "LIF")][-1]
    return counts, state["mem_" + last_neuron], state[last_neuron]


def topo(g):
    preds = {n: [] for n in g.nodes}
    for a, b in g.edges:
        preds[b].append(a)
    order, seen = [], set()

    def visit(n):
        if n not in seen:
            seen.add(n)
            for p in preds[n]:
                visit(p)
            order.append(n)

    outs = [n for n, v in g.nodes.items() if type(v).__name__ == "Output"]
    for n in outs:
        visit(n)
    return order, preds


def check_nir(path, g):
    ref = np.load(path.with_name(path.stem + ".reference.npz"))
    x = ref["x"].astype(np.float64)
    T, dt = int(ref["T"]), float(ref["dt"])
    print(f"   re-run in numpy (float64), T = {T}, dt = {dt:g}, input x constant every step: "
          "rows of output spike counts equal to the framework's, of 50")  # fmt: skip
    for reset in ("value", "subtract", "snntorch", "subtract/alpha"):
        cells = []
        for compare in (">", ">="):
            counts, pre, post = simulate(g, x, T, dt, reset, compare)
            same = int((counts == ref["spike_counts"]).all(axis=1).sum())
            cells.append(f"{compare!s:>2}: {same:2d}")
            if same == len(x) and reset in ("value", "subtract"):
                d = {k: np.abs(v - ref["final_membrane"]).max() for k, v in (("pre", pre), ("post", post))}
                best = min(d, key=d.get)
                cells[-1] += f" (final membrane = the {best}-reset value, max |diff| {d[best]:.1e})"
            elif same == len(x):
                cells[-1] += f" (final membrane max |diff| {np.abs(pre - ref['final_membrane']).max():.1e})"
        print(f"      reset {reset:14s} " + "   ".join(cells))


def check_refmodel(path):
    """refmodel's own importer on the file, run on the reference pixels (input u5.4: the codes
    are the pixels 0..16, exactly x·2^4), under a few profiles."""
    try:
        from refmodel.fixed import QFormat
        from refmodel.interop.nir import Profile, import_nir
    except ImportError:
        print("   (refmodel not importable here: its check skipped)")
        return
    ref = np.load(path.with_name(path.stem + ".reference.npz"))
    print("   refmodel import_nir + Network.run, input u5.4 (codes = pixels), T as the reference: "
          "rows of output spike counts equal / argmax equal, of 50")  # fmt: skip
    wide = dict(weight_bits=16, bias_bits=32, vm_bits=32)
    for kw in (dict(), dict(reset="subtract"), dict(reset="subtract", compare=">="),
               dict(reset="subtract", compare=">=", **wide)):  # fmt: skip
        net, _ = import_nir(path, Profile(input_format=QFormat(5, 4, signed=False), **kw))
        res = net.run(ref["pixels"].astype(np.int64), int(ref["T"]))
        c = res.outputs["spike_count"].reshape(len(ref["pixels"]), -1)
        rows = int((c == ref["spike_counts"]).all(axis=1).sum())
        arg = int((c.argmax(1) == ref["spike_counts"].argmax(1)).sum())
        print(f"      {str(kw or 'defaults'):75s} {rows:2d} / {arg:2d}")


# --------------------------------------------------------------------------- ONNX
def show_onnx(path):
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    m = onnx.load(path)
    g = m.graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    print(f"== {path.name} ({path.stat().st_size} bytes): ir {m.ir_version}, opsets "
          f"{[(o.domain or 'ai.onnx', o.version) for o in m.opset_import]}, producer "
          f"{m.producer_name} {m.producer_version}, metadata {dict((p.key, p.value) for p in m.metadata_props)}")  # fmt: skip
    print(f"   inputs {[(i.name, dims(i)) for i in g.input]}, outputs {[(o.name, dims(o)) for o in g.output]}")
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        print(f"   {n.op_type:18s} {n.name!r}: {list(n.input)} -> {list(n.output)} {attrs}")
    print("   initializers: " + ", ".join(f"{k} {list(v.shape)}" + (f"={v.tolist()}" if v.dtype.kind == "i" else "")
                                       for k, v in init.items()))  # fmt: skip
    ref = np.load(path.with_name(path.name.split(".")[0] + ".reference.npz"))
    key = "ort_logits_dynamo" if ".dynamo." in path.name else "ort_logits"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    out = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"input": ref["x"]})[0]
    print(f"   onnxruntime now vs reference {key}: max |diff| {np.abs(out - ref[key]).max():.1e}; "
          f"vs torch_logits {np.abs(out - ref['torch_logits']).max():.1e}")  # fmt: skip


def main(names):
    paths = sorted(FIX.glob("*.nir")) + sorted(FIX.glob("*.onnx"))
    for p in paths:
        if names and not any(n in p.name for n in names):
            continue
        if p.suffix == ".nir":
            check_nir(p, show_nir(p))
            check_refmodel(p)
        else:
            show_onnx(p)
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
