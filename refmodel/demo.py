"""``refmodel demo``: a CNN trained on real handwritten digits, converted to bit-exact spiking
hardware, measured (accuracy against timesteps, per max-pooling variant, with its cost), plotted,
and turned into a test-vector file and the spec (TOML + .npz) it was generated from.

The model (``examples/digits/train.py``, float test accuracy 97.2 %) and the images
(``examples/digits/export_demo_data.py``: the 500 held-out test images and 200 calibration
images, pixels 0..16) ship in ``refmodel/data``, so the demo needs neither scikit-learn nor
training.  Conversion (``refmodel.convert``, floats only there): batch-norm folded, λ = the
99.9th percentile of the calibration activations, 8-bit weights, input u5.4 (pixel / 16 exact),
IF neurons with reset by subtraction.  Each variant runs once for ``T_max`` timesteps; its
accuracy at ``T`` is read from the readout Vm after ``T`` steps (``v_post`` at timestep T − 1).

Cost per image, with ``refmodel.cost`` (docs/cost-model.md): synaptic ops up to T =
Σ_{t<T} Σ_i s_t[i]·fan_out[i] over every spike-input weight layer (one accumulate per spike
and target; at T_max this is ``cost.measure``'s ``synops``); the first layer's MACs per
evaluation; Vm, counter and weight + bias memory bits.
"""

from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

from refmodel import ann as annlib
from refmodel.convert import convert, quantize_input, to_network
from refmodel.cost import estimate
from refmodel.files import AtomicOutput, OutputError
from refmodel.fixed import QFormat
from refmodel.generate import generate
from refmodel.spec import Spec, StimulusSpec, load_spec, save_spec

__all__ = ["run_demo", "load_data", "run_variant", "within_one_point", "label", "VARIANTS", "TIMESTEPS"]

TIMESTEPS = (1, 2, 4, 8, 16, 32, 64)
#: (pooling, readout) pairs, in table order.
VARIANTS = (
    ("count_gate", "vm"),
    ("winner_pre", "vm"),
    ("winner_post", "vm"),
    ("pooled_neuron", "vm"),
    ("or", "vm"),
    ("count_gate", "spikes"),
)
INPUT_FORMAT = QFormat(5, 4, signed=False)
PERCENTILE = 99.9
VECTOR_IMAGES = 4


def load_data():
    """``(model, data)``: the float digits CNN and the arrays of ``digits_demo.npz``."""
    root = resources.files("refmodel") / "data"
    with resources.as_file(root / "digits_cnn.npz") as path:
        model = annlib.load(path)
    with resources.as_file(root / "digits_demo.npz") as path, np.load(path) as npz:
        data = {key: npz[key] for key in npz.files}
    return model, data


def label(pooling, readout) -> str:
    """A variant's name in the tables: the pooling, plus the readout when it is not the Vm."""
    return pooling if readout == "vm" else f"{pooling} (spike readout)"


# --------------------------------------------------------------------------- cost
def _spike_sources(network) -> dict:
    """{layer whose spikes feed a weight layer: ``fan_out`` of those spikes, in that layer's
    output shape}; the first weight layer reads the analog input and is left out."""
    sources = {}
    for layer in network.layers:
        site = network.sites[layer.name]
        source = site.sources[0] if layer.role == "synapse" else None
        while source is not None and source.role == "shape":
            source = network.sites[source.name].sources[0]
        if source is not None:
            sources[source.name] = layer.fan_out(site.input_shape).reshape(network.sites[source.name].output_shape)
    return sources


def memory_bits(network) -> dict:
    """Per-image Vm, counter and weight + bias bits (``refmodel.cost.estimate``)."""
    memory = estimate(network).total().memory
    return {"vm_bits": memory["vm_bits"], "counter_bits": memory["counter_bits"],
            "weight_bits": memory["weight_bits"] + memory["bias_bits"]}  # fmt: skip


# --------------------------------------------------------------------------- simulation
def run_variant(network, x_codes, labels, timesteps, progress=None) -> dict:
    """One run of ``max(timesteps)`` steps; images classified correctly (``correct``, an int),
    accuracy and synaptic ops per image after each T in ``timesteps``.  The scores after T steps
    are the readout's V (``v_post`` of timestep T - 1) or, for a spiking readout, its spikes
    summed over the T steps.  ``progress(t)`` is called after each timestep."""
    readout = network.layers[-1]
    signal = "v_post" if readout.reset == "none" else "spikes"
    sources = _spike_sources(network)
    totals = dict.fromkeys([*sources, readout.name], 0)  # spikes summed so far (the readout's V)
    correct, accuracy, synops = {}, {}, {}

    def sink(layer, sig, t, value):
        totals[layer] = value if sig == "v_post" else totals[layer] + value
        if layer == readout.name and t + 1 in timesteps:
            scores = totals[layer].reshape(len(labels), -1)
            correct[t + 1] = int((np.argmax(scores, axis=1) == labels).sum())
            accuracy[t + 1] = correct[t + 1] / len(labels)
            synops[t + 1] = sum(float((totals[n] * f).sum()) for n, f in sources.items()) / len(labels)

    record = [(name, "spikes") for name in sources] + [(readout.name, signal)]
    result = network.run(x_codes, max(timesteps), record=record, sink=sink, progress=progress)
    return {"correct": correct, "accuracy": accuracy, "synops": synops, "overflows": int(result.overflows.sum())}


def within_one_point(correct, float_correct, n) -> bool:
    """Accuracy within 1 percentage point of the float ANN's, in integers:
    ``100·correct / n >= 100·float_correct / n - 1``."""
    return correct * 100 >= float_correct * 100 - n


# --------------------------------------------------------------------------- outputs
def _plot(path, float_accuracy, variants, timesteps):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (name, res), marker in zip(variants.items(), "osD^vx"):  # distinct markers: some curves coincide
        ax.plot(timesteps, [100 * res["accuracy"][t] for t in timesteps], marker=marker, fillstyle="none", label=name)
    ax.axhline(100 * float_accuracy, color="k", linestyle="--", label="float ANN")
    ax.set(xscale="log", xlabel="timesteps T", ylabel="test accuracy (%)", ylim=(0, 100),
           title="Digits CNN converted to a bit-exact SNN")  # fmt: skip
    ax.set_xticks(timesteps, [str(t) for t in timesteps])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    try:
        with AtomicOutput(path) as out:
            fig.savefig(out.tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def output_dir(outdir) -> Path:
    """``outdir`` as a Path, made with its parents when missing (OutputError when it cannot be)."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot be made a directory ({exc.strerror})") from None
    return outdir


def _table(out, title, variants, timesteps, cell):
    print(f"\n{title}", file=out)
    print(f"  {'variant':<30}" + "".join(f"{'T=' + str(t):>9}" for t in timesteps), file=out)
    for name, res in variants.items():
        print(f"  {name:<30}" + "".join(f"{cell(res, t):>9}" for t in timesteps), file=out)


def run_demo(out=sys.stdout, outdir="refmodel-demo", quick=False, progress=None) -> dict:
    """Convert, simulate, print the tables, save the plot and the vector file; returns the figures.

    ``quick``: 100 test images and T up to 8 (for tests).  ``progress(done, total)`` is called
    after each timestep of the variants' runs (``total`` of them).
    """
    start = time.perf_counter()
    outdir = output_dir(outdir)
    model, data = load_data()
    n = 100 if quick else len(data["y_test"])
    timesteps = TIMESTEPS[:4] if quick else TIMESTEPS
    x_float, labels = data["x_test"][:n, None] / 16.0, data["y_test"][:n].astype(np.int64)
    calib = data["x_calib"][:, None] / 16.0
    float_correct = int((annlib.forward(model, x_float).argmax(axis=1) == labels).sum())
    float_accuracy = float_correct / n
    layers, lambdas = convert(model, calib, INPUT_FORMAT, percentile=PERCENTILE, weight_bits=8)
    x_codes = quantize_input(x_float, INPUT_FORMAT)
    count_bits = max(timesteps).bit_length()  # a counter never saturates within the run

    print("refmodel demo: a CNN trained on scikit-learn's handwritten digits, run as a bit-exact spiking network",
          file=out)  # fmt: skip
    print(f"  data: {n} held-out test images (8x8, pixels 0..16), {len(calib)} calibration images", file=out)
    print(f"  model: {' | '.join(layer['name'] for layer in model.layers)}", file=out)
    print(f"  conversion: batch-norm folded; lambda (p = {PERCENTILE}) "
          + ", ".join(f"{k} {v:.3f}" for k, v in lambdas.items()), file=out)  # fmt: skip
    for e in (e for e in layers if "weight" in e):
        print(f"    {e['name']}: weights {e['weight_format']}, bias {e['bias_format']}, Vm {e['vm_format']}, "
              f"threshold {e['threshold']}, clipped {sum(e['clipped'].values())}", file=out)  # fmt: skip
    print(f"  input {INPUT_FORMAT} (analog, every timestep); IF, V >= threshold, reset by subtraction; "
          f"count-gate counters {count_bits} bits; Vm registers saturate (counted)", file=out)
    print(f"\nfloat ANN test accuracy: {100 * float_accuracy:.1f} %", file=out)

    variants, networks = {}, {}
    for pooling, readout in VARIANTS:
        network = to_network(layers, model.input_shape, pooling, readout, count_bits=count_bits,
                             overflow="SAT", name=f"digits_{pooling}")  # fmt: skip
        name = label(pooling, readout)
        networks[name] = network
        done = len(variants) * max(timesteps)
        step = None if progress is None else lambda t, done=done: progress(done + t + 1, len(VARIANTS) * max(timesteps))
        variants[name] = run_variant(network, x_codes, labels, timesteps, step) | memory_bits(network)

    _table(out, f"SNN test accuracy (%), one run of T = {max(timesteps)} per variant, read at each T:",
           variants, timesteps, lambda r, t: f"{100 * r['accuracy'][t]:.1f}")  # fmt: skip
    _table(out, "synaptic ops (spike-driven accumulates) per image, up to T:", variants, timesteps,
           lambda r, t: f"{r['synops'][t]:.0f}")  # fmt: skip
    macs = estimate(networks["count_gate"]).layers[0].static["macs"]
    print(f"\ncost per image (every variant also: {macs} first-layer MACs per evaluation of its analog "
          "input current, constant over T):", file=out)  # fmt: skip
    print(f"  {'variant':<30}{'Vm bits':>9}{'counter bits':>14}{'weight+bias bits':>18}{'overflows':>11}"
          f"{'best T within 1 pp':>20}", file=out)  # fmt: skip
    for name, r in variants.items():
        close = [t for t in timesteps if within_one_point(r["correct"][t], float_correct, n)]
        print(f"  {name:<30}{r['vm_bits']:>9}{r['counter_bits']:>14}{r['weight_bits']:>18}{r['overflows']:>11}"
              f"{(str(close[0]) if close else '-'):>20}", file=out)  # fmt: skip

    plot = outdir / "accuracy_vs_timesteps.png"
    try:
        _plot(plot, float_accuracy, variants, timesteps)
        print(f"\nplot: {plot}", file=out)
    except ImportError:
        plot = None
        print("\nplot skipped: matplotlib is not installed (pip install 'refmodel[demo]')", file=out)

    vec_t = min(16, max(timesteps))
    vectors, spec_path = outdir / f"digits_count_gate_T{vec_t}.h5", outdir / "digits_count_gate.toml"
    save_spec(Spec(networks["count_gate"], StimulusSpec("analog", "digits", VECTOR_IMAGES, vec_t),
                   {"digits": x_codes[:VECTOR_IMAGES]}), spec_path)  # fmt: skip
    generate(load_spec(spec_path), vectors)  # the vectors of the spec as written: `refmodel gen` reproduces them
    print(f"vectors: {vectors} (count gating, {VECTOR_IMAGES} test images, T = {vec_t}, every signal; "
          f"labels {', '.join(map(str, labels[:VECTOR_IMAGES]))})", file=out)  # fmt: skip
    print(f"spec: {spec_path} (+ .npz; the network and stimulus of the vectors); its cost per layer:\n"
          f"  refmodel cost {spec_path} --timesteps {vec_t}", file=out)  # fmt: skip
    print("a dual-threshold SCNN trained for T = 1 against a conventional one: refmodel demo dtscnn", file=out)
    seconds = time.perf_counter() - start
    print(f"done in {seconds:.1f} s", file=out)
    return {"float_accuracy": float_accuracy, "float_correct": float_correct, "n": n, "timesteps": timesteps,
            "variants": variants, "plot": plot, "vectors": vectors, "spec": spec_path, "seconds": seconds}  # fmt: skip
