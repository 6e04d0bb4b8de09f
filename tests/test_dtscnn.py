"""DT-SCNN against its conventional baseline (issue 18): the one-threshold unit's conversion, the
committed trained networks in integers, their costs, the training script's two stages and
``refmodel demo dtscnn``."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from refmodel import ann as annlib
from refmodel.convert import (
    ConversionError, choose_formats, convert, fold_batchnorm, quantize_input, quantize_parameters, to_network,
)
from refmodel.cost import estimate
from refmodel.demo import load_data
from refmodel.cli import main
from refmodel.dtscnn_demo import evaluate, integer_network, load_networks
from refmodel.fixed import FixedOverflowError, QFormat
from refmodel.generate import generate
from refmodel.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "dtscnn" / "train.py"


# --------------------------------------------------------------------------- the threshold unit
def dyadic_threshold_net(rng):
    """conv1 (1->3, 3x3, pad 1) threshold maxpool2 | fc (48->3), conv1's weights and biases
    multiples of 1/16 (exact in the chosen formats); theta = 0.5 for the layer (set it to taste)."""
    dyadic = lambda shape: rng.integers(-24, 25, shape) / 16  # noqa: E731
    return annlib.ANN((1, 8, 8), [
        {"kind": "conv", "name": "conv1", "weight": dyadic((3, 1, 3, 3)), "bias": dyadic(3), "padding": 1},
        {"kind": "threshold", "name": "th1", "theta": 0.5},
        {"kind": "maxpool", "name": "pool1", "k": 2},
        {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "fc", "weight": rng.normal(0, 1, (3, 48)), "bias": rng.normal(0, 1, 3)},
    ])  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_threshold_spikes_and_or_pool_equal_the_float_model(seed):
    # conv1's V = 2**fv * z exactly (dyadic weights, biases and u5.4 pixels k/16), so the strict compare
    # V > floor(theta * 2**fv) equals z > theta whatever theta: a tie (theta = 0.5, met by some z) and, per
    # channel, theta just below a z that occurs (a code rounded to nearest would equal that V: no spike).
    rng = np.random.default_rng(seed)
    net = dyadic_threshold_net(rng)
    x = rng.integers(0, 17, (20, 1, 8, 8)) / 16
    z = annlib.forward(net, x, return_all=True)[1][0]
    assert (z == 0.5).any()
    in_fmt = QFormat(5, 4, signed=False)
    for theta in (0.5, np.array([np.sort(z[:, c].ravel())[z[:, c].size * 3 // 4] for c in range(3)]) - 2**-12):
        net.layer("th1")["theta"] = np.asarray(theta, np.float64)
        layers, lambdas = convert(net, x, in_fmt)
        assert lambdas["conv1"] == 1.0 and layers[0]["neuron"] == "threshold"
        network = to_network(layers, net.input_shape, pooling="pooled_neuron")  # pooling applies to relu units only
        kinds = [(layer.name, type(layer).__name__) for layer in network.layers[:3]]
        assert kinds == [("conv1", "Conv2d"), ("conv1_if", "IF"), ("pool1", "OrPool")]
        assert network.layers[1].compare == ">"
        _, float_out = annlib.forward(net, x, return_all=True)
        result = network.run(quantize_input(x, in_fmt), 1, record=["conv1_if.spikes", "pool1.spikes"])
        spikes = result.traces[("conv1_if", "spikes")][0]
        np.testing.assert_array_equal(spikes, float_out[1])
        np.testing.assert_array_equal(result.traces[("pool1", "spikes")][0], float_out[2])
        assert 0 < spikes.mean() < 1  # both outcomes occur


@pytest.mark.parametrize("seed", range(3))
def test_trained_thresholds_after_an_average_pool_are_exact(seed):
    # conv1 DT -> avgpool 2 (codes with 2 fraction bits) -> conv2 (weights k/64, s8.6) -> threshold: conv2's current
    # is z * 2**(fv + 2) exactly, so its threshold must be floor(theta * 2**(fv + 2)); floor(theta * 2**fv) << 2
    # would be up to 3 codes lower.  Each channel's theta is a value z takes (a tie: no spike) whose code is not
    # a multiple of 4, where the coarser threshold would fire.
    rng = np.random.default_rng(seed)
    dyadic = lambda shape: rng.integers(-24, 25, shape) / 16  # noqa: E731
    net = annlib.ANN((1, 8, 8), [
        {"kind": "conv", "name": "conv1", "weight": dyadic((3, 1, 3, 3)), "bias": np.zeros(3), "padding": 1},
        {"kind": "dual_threshold", "name": "dt1", "theta1": 0.25, "theta2": 0.75},
        {"kind": "avgpool", "name": "pool1", "k": 2},
        {"kind": "conv", "name": "conv2", "weight": rng.integers(-96, 97, (4, 6, 3, 3)) / 64, "bias": np.zeros(4),
         "padding": 1},
        {"kind": "threshold", "name": "th2", "theta": 0.0},
        {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "fc", "weight": rng.normal(0, 1, (3, 64)), "bias": np.zeros(3)},
    ])  # fmt: skip
    x = rng.integers(0, 17, (20, 1, 8, 8)) / 16
    in_fmt = QFormat(5, 4, signed=False)
    formats = choose_formats(net, in_fmt)
    codes = annlib.forward(net, x, return_all=True)[1][3] * 2 ** (formats["conv2"]["vm"].frac + 2)
    assert np.array_equal(codes, np.round(codes))  # exact at the finer frac
    between = [np.unique(c[c % 4 != 0]) for c in codes.transpose(1, 0, 2, 3).reshape(4, -1)]
    net.layer("th2")["theta"] = np.array([b[len(b) // 2] for b in between]) / 2 ** (formats["conv2"]["vm"].frac + 2)
    layers = quantize_parameters(net, formats, in_fmt)  # no relu unit: nothing to normalize
    network = to_network(layers, net.input_shape)
    assert network.layer("conv2_if").vm.frac == layers[2]["vm_format"].frac + 2
    _, float_out = annlib.forward(net, x, return_all=True)
    result = network.run(quantize_input(x, in_fmt), 1, record=["conv1_dt.spikes", "conv2_if.spikes"])
    np.testing.assert_array_equal(result.traces[("conv1_dt", "spikes")][0], float_out[1])
    spikes = result.traces[("conv2_if", "spikes")][0]
    np.testing.assert_array_equal(spikes, float_out[4])
    assert 0 < spikes.mean() < 1


def test_threshold_layers_are_validated_quantized_and_cannot_be_the_readout():
    ok = {"kind": "conv", "name": "c", "weight": np.ones((2, 1, 1, 1)), "bias": np.zeros(2)}
    with pytest.raises(annlib.ANNError, match=r"'th' \(threshold\): theta.shape = \(3,\) must be \(\) \(per layer\) or \(2,\)"):
        annlib.ANN((1, 2, 2), [ok, {"kind": "threshold", "name": "th", "theta": np.ones(3)}])
    net = annlib.ANN((1, 2, 2), [ok, {"kind": "threshold", "name": "th", "theta": [0.5, -1]}])
    assert net.shapes == [(2, 2, 2), (2, 2, 2)]
    with pytest.raises(ConversionError, match="ends with threshold"):
        fold_batchnorm(net)
    rng = np.random.default_rng(0)
    net, x = dyadic_threshold_net(rng), rng.integers(0, 17, (20, 1, 8, 8)) / 16
    net.layer("th1")["theta"] = np.array([0.3, -0.3, 70000.0])  # conv1's Vm: s16.(fw + 4)
    with pytest.raises(FixedOverflowError, match=r"layer 'th1': theta\[2\] = 70000.0 does not fit s16"):
        convert(net, x, QFormat(5, 4, signed=False), vm_bits=16)
    layers, _ = convert(net, x, QFormat(5, 4, signed=False), vm_bits=16, overflow="SAT")
    fv = layers[0]["vm_format"].frac
    np.testing.assert_array_equal(layers[0]["threshold"], [np.floor(0.3 * 2**fv), np.floor(-0.3 * 2**fv), 2**15 - 1])
    assert layers[0]["clipped"] == {"weight": 0, "bias": 0, "threshold": 1}


# --------------------------------------------------------------------------- the committed networks
@pytest.fixture(scope="module")
def committed():
    """``{name: (model, network, entries)}`` of the committed trained networks in integers."""
    return {name: (model, *integer_network(model, name)) for name, model in load_networks().items()}


def test_committed_networks_keep_their_accuracy_in_integers(committed):
    # 100 test images at T = 1: the integer accuracy within 2 images of the float network's (both computed
    # here), and not below what it was when the weights were committed (DT 95, baseline 98 of 100; float 95, 99).
    _, data = load_data()
    x, labels = data["x_test"][:100, None] / 16.0, data["y_test"][:100].astype(np.int64)
    for name, floor in (("dt", 95), ("baseline", 98)):
        model, network, entries = committed[name]
        figures = evaluate(model, network, x, labels)
        assert abs(figures["integer_correct"] - figures["float_correct"]) <= 2, name
        assert figures["integer_correct"] >= floor, name
        assert figures["overflows"] == 0 and all(sum(e["clipped"].values()) == 0 for e in entries if "weight" in e)


def test_dt_conv_weights_and_vms_are_exactly_half_the_baseline(committed):
    # From refmodel.cost, and in closed form from the channel lists: 3x3 convs on 8x8 then 4x4 maps,
    # DT Vm channels (8, 16) reading (1, 16) input channels, the baseline (16, 32) reading (1, 16).
    figures = {}
    for name, (_, network, _) in committed.items():
        cost = estimate(network)
        convs = [la for la in cost.layers if la.kind == "conv2d"]
        neurons = [la for la in cost.layers if la.kind in ("dual_threshold", "lif")]
        figures[name] = (sum(la.memory["weights"] for la in convs), sum(la.memory["neurons"] for la in neurons),
                         sum(la.static["macs"] for la in convs))  # fmt: skip
    assert figures["dt"] == (8 * 1 * 9 + 16 * 16 * 9, 8 * 64 + 16 * 16, (8 * 1 * 9) * 64 + (16 * 16 * 9) * 16)
    assert figures["baseline"] == (16 * 1 * 9 + 32 * 16 * 9, 16 * 64 + 32 * 16, (16 * 9) * 64 + (32 * 16 * 9) * 16)
    assert all(2 * d == b for d, b in zip(figures["dt"], figures["baseline"]))


def test_committed_networks_use_the_public_codes_neurons(committed):
    # DT layers: one Vm, two thresholds, strict >, leak V >> 1 (floor) first, reset to 0 by s1; the baseline's
    # conv neurons the same with one threshold (LIF); the readout integrates only.
    for name, kind in (("dt", "dual_threshold"), ("baseline", "lif")):
        _, network, _ = committed[name]
        neurons = [layer for layer in network.layers if layer.role == "neuron"]
        assert [n.kind for n in neurons] == [kind, kind, "if"]
        for n in neurons[:2]:
            assert (n.compare, n.leak, n.leak_mult, n.leak_shift, n.leak_rounding.name, n.order, n.reset) == \
                (">", "mul", 1, 1, "TRN", "leak_first", "zero")
        assert neurons[-1].reset == "none"
        if kind == "dual_threshold":
            assert all(n.reset_by == "s1" for n in neurons[:2])


# --------------------------------------------------------------------------- training
def _train_module():
    pytest.importorskip("torch", reason="training needs torch (pip install -e '.[dev]')")
    spec = importlib.util.spec_from_file_location("dtscnn_train", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_stage_training_runs_at_t5_then_t1_and_exports_the_t1_network(monkeypatch):
    train = _train_module()
    import torch

    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, (48, 1, 8, 8)) / 16
    y = rng.integers(0, 10, 48)
    seen = []
    forward = train.SCNN.forward
    monkeypatch.setattr(train.SCNN, "forward", lambda self, x, t: seen.append(t) or forward(self, x, t))
    for kind in ("dt", "baseline"):
        seen.clear()
        model, history = train.train(kind, (x, y), 0, stages=((5, 1, 1e-3), (1, 2, 1e-3)), batch=16, log=lambda s: None)
        assert seen == [5] * 3 + [1] * 6  # 3 batches per epoch: one epoch at T = 5, two at T = 1
        assert [(t, e) for t, e, _ in history] == [(5, 0), (1, 0), (1, 1)]
        net = train.to_ann(model, {})
        with torch.no_grad():
            logits = model(torch.tensor(x).float(), 1).double().numpy()
        np.testing.assert_allclose(annlib.forward(net, x), logits, atol=1e-4)
        assert [layer["kind"] for layer in net.layers][1] == ("dual_threshold" if kind == "dt" else "threshold")


# --------------------------------------------------------------------------- the demo
def test_demo_dtscnn_command_prints_the_table_and_writes_the_dt_vectors(tmp_path, capsys):
    assert main(["demo", "dtscnn", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line[:40].strip(): line[40:].split() for line in out.splitlines() if line.startswith("  ") and
            len(line) > 40}  # fmt: skip
    assert rows["at T = 1, per image"] == ["DT-SCNN", "baseline", "DT", "/", "baseline"]
    assert rows["conv1 MACs per image (analog input)"] == ["4,608", "9,216", "0.500"]
    for row in ("float accuracy (%)", "integer accuracy, bit-exact (%)", "conv2 synaptic ops per image"):
        assert row in rows
    for row in ("stored conv Vm bits", "conv weight bits"):
        assert rows[row][2] == "0.500"
    spec, vectors = tmp_path / "dtscnn_dt.toml", tmp_path / "dtscnn_dt_T1.h5"
    assert f"vectors: {vectors}" in out and f"spec: {spec}" in out
    again = tmp_path / "again.h5"
    generate(load_spec(spec), again)  # `refmodel gen` of the spec reproduces the demo's vector file
    assert again.read_bytes() == vectors.read_bytes()
