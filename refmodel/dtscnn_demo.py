"""``refmodel demo dtscnn``: a dual-threshold spiking CNN (DT-SCNN, Lei et al. 2024) against a
conventional spiking CNN with twice the Vm channels, both trained on scikit-learn's digits
(``examples/dtscnn/train.py``) and run bit-exactly in integers at one timestep.

The trained float networks ship in ``refmodel/data`` (``dtscnn_dt.npz``, ``dtscnn_baseline.npz``:
``refmodel.ann`` files of the T = 1 network, conv -> dual_threshold / threshold -> avgpool ...
-> linear, no biases), so the demo needs neither torch nor training.  Integers
(``refmodel.convert``, no normalization: the thresholds are trained)::

    w = round(W * 2**fw)                  8-bit weights, fw the largest frac that fits (per layer)
    x = pixel / 16  as u5.4 codes         analog input into conv1, exact
    V = sum w * x  (frac fv = fw + fi)    16-bit Vm declared; after a 2x2 average pool the codes
                                          carry 2 fraction bits, so that layer's Vm is s18.(fv + 2)
    theta_code = floor(theta * 2**fv)     V > theta_code  <=>  V > theta * 2**fv  (strict >)

and the neurons of the public code: leak x0.5 as the arithmetic shift ``V >> 1`` (floor), hard
reset to 0 where s1 (the baseline: s) fired, leak first; the readout integrates only.  At T = 1
the leak and the reset never act (V starts at 0), so the integer spikes are those of the float
network whose weights are the rounded ones.

Costs (``refmodel.cost``, measured on the test images at T = 1): conv1's MACs (dense, on the
analog input), conv2's synaptic ops (one accumulate per spike of a pooled window and target),
the conv layers' stored Vm bits and weight bits.
"""

from __future__ import annotations

import sys
import time
from importlib import resources

import numpy as np

from refmodel import ann as annlib
from refmodel.convert import choose_formats, quantize_input, quantize_parameters, to_network
from refmodel.cost import measure
from refmodel.demo import INPUT_FORMAT, load_data, output_dir
from refmodel.generate import generate
from refmodel.network import Network
from refmodel.spec import Spec, StimulusSpec, load_spec, save_spec

__all__ = ["NETWORKS", "load_networks", "integer_network", "evaluate", "run_dtscnn_demo"]

#: name -> the refmodel.ann file of the trained T = 1 network in refmodel/data.
NETWORKS = {"dt": "dtscnn_dt.npz", "baseline": "dtscnn_baseline.npz"}
LABELS = {"dt": "DT-SCNN", "baseline": "baseline"}
WEIGHT_BITS, BIAS_BITS, VM_BITS = 8, 16, 16
#: The public code's leak x0.5: ``V <- V >> 1`` (leak "mul" by 1 / 2**1, floor), before integrating.
LEAK = {"leak": "mul", "leak_mult": 1, "leak_shift": 1, "leak_rounding": "TRN", "order": "leak_first"}
VECTOR_IMAGES = 4


def load_networks() -> dict:
    """``{name: refmodel.ann.ANN}`` of the committed trained networks."""
    root = resources.files("refmodel") / "data"
    nets = {}
    for name, filename in NETWORKS.items():
        with resources.as_file(root / filename) as path:
            nets[name] = annlib.load(path)
    return nets


def integer_network(model: annlib.ANN, name: str):
    """``(network, entries)``: the refmodel network of a trained T = 1 network and the integer
    entries of ``quantize_parameters`` (formats, thresholds, clipped counts)."""
    formats = choose_formats(model, INPUT_FORMAT, WEIGHT_BITS, BIAS_BITS, VM_BITS)
    entries = quantize_parameters(model, formats, INPUT_FORMAT, overflow="SAT")
    network = to_network(entries, model.input_shape, readout="vm", reset="zero", overflow="SAT", leak=LEAK,
                         reset_by="s1", name=name)
    return network, entries


def evaluate(model: annlib.ANN, network: Network, x_float, labels) -> dict:
    """Float and integer (bit-exact, T = 1) accuracy of one network, and its conv costs per image."""
    x_codes = quantize_input(x_float, INPUT_FORMAT)
    result = network.run(x_codes, 1)
    float_pred = annlib.forward(model, x_float).argmax(axis=1)
    int_pred = result.prediction()
    cost = measure(result, x_codes)
    n = len(labels)
    convs = [layer.name for layer in network.layers if layer.kind == "conv2d"]
    conv_vm = [la for la in cost.layers if la.kind in ("dual_threshold", "lif")]  # the conv units' neurons
    readout = [layer.name for layer in network.layers if layer.kind == "linear"]
    return {
        "n": n,
        "float_correct": int((float_pred == labels).sum()),
        "integer_correct": int((int_pred == labels).sum()),
        "disagree": int((float_pred != int_pred).sum()),
        "conv1_macs": cost.layer(convs[0]).measured["macs"] // n,
        "conv_synops": sum(cost.layer(c).measured["synops"] for c in convs[1:]) / n,
        "readout_synops": sum(cost.layer(c).measured["synops"] for c in readout) / n,
        "conv_vm_bits": sum(la.memory["vm_bits"] for la in conv_vm),
        "conv_vms": sum(la.memory["neurons"] for la in conv_vm),
        "conv_weight_bits": sum(cost.layer(c).memory["weight_bits"] for c in convs),
        "conv_weights": sum(cost.layer(c).memory["weights"] for c in convs),
        "overflows": int(result.overflows.sum()),
    }


def _unit_line(network: Network, entry) -> str:
    """A weight layer's formats, its neuron's Vm format and thresholds (as run: after an average
    pool the Vm and thresholds carry its fraction bits) and the clipped parameters."""
    names = [layer.name for layer in network.layers]
    neuron = network.layers[names.index(entry["name"]) + 1]
    thresholds = {"dual_threshold": ("theta1", "theta2"), "lif": ("threshold",)}.get(neuron.kind, ())
    return (f"{entry['name']}: weights {entry['weight_format']}, Vm {neuron.vm}"
            + "".join(f", {k} {getattr(neuron, k)}" for k in thresholds)
            + f", clipped {sum(entry['clipped'].values())}")  # fmt: skip


def _seeds_line(model) -> str:
    """The training script's float accuracies over its seeds (``meta``), as mean, spread and range."""
    accs = 100 * np.array(list(model.meta.get("seeds_float_test_accuracy_t1", {}).values()))
    if len(accs) < 2:
        return "one seed"
    return (f"{len(accs)} seeds: mean {accs.mean():.2f} %, std {accs.std(ddof=1):.2f}, "
            f"range {accs.min():.1f}..{accs.max():.1f}")  # fmt: skip


def run_dtscnn_demo(out=sys.stdout, outdir="refmodel-demo", n_images=None) -> dict:
    """Quantize both trained networks, run them bit-exactly at T = 1 on the digits test images
    (the first ``n_images``, default all 500), print the table, and write the DT network's vector
    file (``VECTOR_IMAGES`` test images, T = 1) and its spec; returns the figures."""
    start = time.perf_counter()
    outdir = output_dir(outdir)
    _, data = load_data()
    n = len(data["y_test"]) if n_images is None else n_images
    x_float, labels = data["x_test"][:n, None] / 16.0, data["y_test"][:n].astype(np.int64)
    models = load_networks()

    print("refmodel demo dtscnn: a dual-threshold spiking CNN (DT-SCNN) against a conventional one, at T = 1, "
          "bit-exact", file=out)  # fmt: skip
    print(f"  data: {n} held-out digits test images (8x8, pixels 0..16), input {INPUT_FORMAT} analog into conv1",
          file=out)  # fmt: skip
    networks, figures = {}, {}
    for name, model in models.items():
        network, entries = integer_network(model, f"dtscnn_{name}")
        networks[name], figures[name] = network, evaluate(model, network, x_float, labels)
        shapes = (_shape(model, i) for i, layer in enumerate(model.layers) if layer["kind"] != "flatten")
        print(f"  {LABELS[name]}: {' | '.join(shapes)}", file=out)
        for entry in (e for e in entries if "weight" in e):
            print(f"    {_unit_line(network, entry)}", file=out)
        print(f"    trained (examples/dtscnn/train.py), float accuracy at T = 1 over {_seeds_line(model)}", file=out)
    print(f"  integers: {WEIGHT_BITS}-bit weights (largest frac per layer); Vm {VM_BITS} bits, + 2 fraction bits after a "
          "2x2 average pool; thresholds floor(theta * 2^frac), strict >;\n  neurons: leak V >> 1 (x0.5, floor), "
          "reset to 0 where s1 fired (neither acts at T = 1); readout: its Vm, argmax", file=out)  # fmt: skip

    dt, base = figures["dt"], figures["baseline"]
    rows = [
        ("float accuracy (%)", lambda f: 100 * f["float_correct"] / n, "{:.1f}", "diff"),
        ("integer accuracy, bit-exact (%)", lambda f: 100 * f["integer_correct"] / n, "{:.1f}", "diff"),
        ("images float != integer", lambda f: f["disagree"], "{:d}", None),
        ("conv1 MACs per image (analog input)", lambda f: f["conv1_macs"], "{:,d}", "ratio"),
        ("conv2 synaptic ops per image", lambda f: f["conv_synops"], "{:,.0f}", "ratio"),
        ("conv operations per image", lambda f: f["conv1_macs"] + f["conv_synops"], "{:,.0f}", "ratio"),
        ("readout synaptic ops per image", lambda f: f["readout_synops"], "{:,.0f}", "ratio"),
        ("conv Vms (neurons)", lambda f: f["conv_vms"], "{:,d}", "ratio"),
        ("stored conv Vm bits", lambda f: f["conv_vm_bits"], "{:,d}", "ratio"),
        ("conv weights", lambda f: f["conv_weights"], "{:,d}", "ratio"),
        ("conv weight bits", lambda f: f["conv_weight_bits"], "{:,d}", "ratio"),
        ("Vm overflows (saturated)", lambda f: f["overflows"], "{:d}", None),
    ]
    print(f"\n  {'at T = 1, per image':<38}{'DT-SCNN':>10}{'baseline':>10}{'DT / baseline':>16}", file=out)
    for title, value, fmt, compare in rows:
        a, b = value(dt), value(base)
        versus = {"diff": f"{a - b:+.1f} pp", "ratio": f"{a / b:.3f}" if b else "-", None: ""}[compare]
        print(f"  {title:<38}{fmt.format(a):>10}{fmt.format(b):>10}{versus:>16}".rstrip(), file=out)

    vectors, spec_path = outdir / "dtscnn_dt_T1.h5", outdir / "dtscnn_dt.toml"
    x_codes = quantize_input(x_float[:VECTOR_IMAGES], INPUT_FORMAT)
    save_spec(Spec(networks["dt"], StimulusSpec("analog", "digits", VECTOR_IMAGES, 1), {"digits": x_codes}),
              spec_path)  # fmt: skip
    generate(load_spec(spec_path), vectors)  # the vectors of the spec as written: `refmodel gen` reproduces them
    print(f"\nvectors: {vectors} (DT-SCNN, {VECTOR_IMAGES} test images, T = 1, every signal; labels "
          f"{', '.join(map(str, labels[:VECTOR_IMAGES]))})", file=out)  # fmt: skip
    print(f"spec: {spec_path} (+ .npz); its cost per layer: refmodel cost {spec_path}", file=out)
    seconds = time.perf_counter() - start
    print(f"done in {seconds:.1f} s", file=out)
    return {"n": n, "figures": figures, "networks": networks, "vectors": vectors, "spec": spec_path,
            "seconds": seconds}  # fmt: skip


def _shape(model, i) -> str:
    """Layer ``i`` of a trained network in a few characters (conv1 1->8 DT, avgpool 2, ...)."""
    layer, shape = model.layers[i], model.shapes[i]
    kind = layer["kind"]
    if kind in ("conv", "linear"):
        return f"{layer['name']} {layer['weight'].shape[1]}->{layer['weight'].shape[0]}"
    if kind == "dual_threshold":
        return f"DT [s1, s2] -> {shape[0]}"
    if kind == "threshold":
        return f"s = V > theta -> {shape[0]}"
    if kind == "avgpool":
        return f"avgpool {layer['k']}"
    return kind
