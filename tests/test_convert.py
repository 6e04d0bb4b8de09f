"""ANN description, float forward pass and the float side of ANN -> SNN conversion."""

import dataclasses
import importlib.util
import pathlib
import re

import numpy as np
import pytest

from refmodel import ann as annlib
from refmodel.convert import (
    ConversionError,
    choose_formats,
    convert,
    fold_batchnorm,
    normalize,
    quantize_input,
    quantize_parameters,
    to_network,
)
from refmodel.demo import INPUT_FORMAT, load_data, run_variant, within_one_point
from refmodel.fixed import FixedOverflowError, QFormat
from refmodel.layers import LIF, SumPool
from refmodel.layers.base import SPIKE
from refmodel.spec import layer_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
#: Float test accuracy of the committed digits model, measured when it was trained (0.972).
DIGITS_FLOAT_ACCURACY_FLOOR = 0.97


def random_net(rng, readout_bn=True):
    """conv(2->3, 3x3, pad 1) bn relu avgpool2 | conv(3->4, 2x2, stride 2) bn relu maxpool2 |
    flatten linear(4->5) [bn]: every layer kind, with negative gammas and non-zero biases."""

    def bn(name, c):
        return {"kind": "batchnorm", "name": name, "gamma": rng.normal(0, 1, c), "beta": rng.normal(0, 1, c),
                "mean": rng.normal(0, 1, c), "var": rng.uniform(0.1, 2, c), "eps": 1e-3}  # fmt: skip

    layers = [
        {
            "kind": "conv",
            "name": "c1",
            "weight": rng.normal(0, 1, (3, 2, 3, 3)),
            "bias": rng.normal(0, 1, 3),
            "padding": 1,
        },
        bn("bn1", 3),
        {"kind": "relu", "name": "r1"},
        {"kind": "avgpool", "name": "p1", "k": 2},
        {
            "kind": "conv",
            "name": "c2",
            "weight": rng.normal(0, 1, (4, 3, 2, 2)),
            "bias": rng.normal(0, 1, 4),
            "stride": 2,
        },
        bn("bn2", 4),
        {"kind": "relu", "name": "r2"},
        {"kind": "maxpool", "name": "p2", "k": 2},
        {"kind": "flatten", "name": "fl"},
        {"kind": "linear", "name": "fc", "weight": rng.normal(0, 1, (5, 4)), "bias": rng.normal(0, 1, 5)},
    ]
    if readout_bn:
        layers.append(bn("bn3", 5))
    return annlib.ANN((2, 8, 8), layers)


# --------------------------------------------------------------------------- ann.py
def test_forward_conv_matches_direct_sum():
    rng = np.random.default_rng(1)
    w, b, x = rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3), rng.normal(size=(2, 2, 5, 6))
    net = annlib.ANN(
        (2, 5, 6), [{"kind": "conv", "name": "c", "weight": w, "bias": b, "stride": 2, "padding": 1}]
    )
    y = annlib.forward(net, x)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert y.shape == (2, 3, 3, 4) and net.shapes == [(3, 3, 4)]  # (5 + 2 - 3) // 2 + 1, (6 + 2 - 2) // 2 + 1
    for n, k, i, j in np.ndindex(y.shape):
        assert y[n, k, i, j] == pytest.approx(
            b[k] + (w[k] * xp[n, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 2]).sum(), abs=1e-12
        )


def test_save_load_roundtrip(tmp_path):
    net = random_net(np.random.default_rng(2))
    net.meta = {"note": "x"}
    annlib.save(net, tmp_path / "n.npz")
    back = annlib.load(tmp_path / "n.npz")
    assert back.input_shape == net.input_shape and back.meta == net.meta
    for a, b in zip(net.layers, back.layers):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"kind": "conv", "name": "c", "weight": np.ones((2, 3, 3, 3)), "bias": np.ones(2)}, "weight.shape"),
        ({"kind": "conv", "name": "c", "weight": np.ones((2, 1, 3, 3)), "bias": np.ones(3)}, "bias.shape"),
        ({"kind": "maxpool", "name": "p"}, "'p' (maxpool): k = None"),
        ({"kind": "relu", "name": "r", "alpha": 0.1}, "['alpha'] are unknown"),
        ({"kind": "softmax", "name": "s"}, "kind = 'softmax'"),
        ({"kind": "linear", "name": "fc", "weight": np.ones((2, 64)), "bias": np.ones(2)}, "must be flat"),
    ],
)
def test_invalid_layers_are_refused(layer, message):
    with pytest.raises(
        annlib.ANNError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        annlib.ANN((1, 8, 8), [layer])


# --------------------------------------------------------------------------- batch-norm folding
@pytest.mark.parametrize("seed", range(3))
def test_fold_batchnorm_equals_unfolded(seed):
    rng = np.random.default_rng(seed)
    net = random_net(rng)
    folded = fold_batchnorm(net)
    assert [layer["kind"] for layer in folded.layers] == [
        "conv", "relu", "avgpool", "conv", "relu", "maxpool", "flatten", "linear"
    ]  # fmt: skip
    x = rng.normal(size=(7, 2, 8, 8))
    np.testing.assert_allclose(annlib.forward(folded, x), annlib.forward(net, x), rtol=1e-10, atol=1e-10)
    assert any(layer["kind"] == "batchnorm" for layer in net.layers)  # the input is not modified


# --------------------------------------------------------------------------- normalization
@pytest.mark.parametrize("percentile", [99.9, 90, "max"])
def test_normalize_puts_the_calibration_percentile_at_one(percentile):
    rng = np.random.default_rng(4)
    net = fold_batchnorm(random_net(rng))
    calib = rng.normal(size=(40, 2, 8, 8))
    normed, lambdas = normalize(net, calib, percentile)
    assert list(lambdas) == ["c1", "c2", "fc"]
    _, acts = annlib.forward(normed, calib, return_all=True)
    _, raw = annlib.forward(net, calib, return_all=True)
    p = 100 if percentile == "max" else percentile
    for i, layer in enumerate(net.layers):
        if layer["kind"] in ("conv", "linear"):
            a = acts[i][acts[i] > 0]
            assert np.percentile(a, p) == pytest.approx(1.0, rel=1e-12)
            assert lambdas[layer["name"]] == pytest.approx(np.percentile(raw[i][raw[i] > 0], p), rel=1e-12)
    # every scale is positive: the readout is the original one divided by its lambda
    np.testing.assert_allclose(
        annlib.forward(normed, calib) * lambdas["fc"], annlib.forward(net, calib), rtol=1e-10, atol=1e-10
    )


def test_normalize_refuses_batchnorm_bad_percentile_and_dead_layers():
    rng = np.random.default_rng(5)
    net = random_net(rng)
    calib = rng.normal(size=(4, 2, 8, 8))
    with pytest.raises(ConversionError, match="fold_batchnorm first"):
        normalize(net, calib)
    with pytest.raises(ConversionError, match="percentile = 0"):
        normalize(fold_batchnorm(net), calib, 0)
    dead = fold_batchnorm(net)
    dead.layers[0]["weight"][:] = 0.0
    dead.layers[0]["bias"][:] = -1.0
    with pytest.raises(ConversionError, match="layer 'c1': no positive activation"):
        normalize(dead, calib)


@pytest.mark.parametrize(
    "kinds, message",
    [
        (["conv", "conv"], "'l1' (conv) cannot follow conv"),
        (["maxpool", "conv"], "cannot follow the input"),
        (["conv", "maxpool", "relu"], "(maxpool) cannot follow conv"),
        (["conv", "relu", "maxpool"], "ends with maxpool"),
    ],
)
def test_unconvertible_chains_are_refused(kinds, message):
    layers = []
    for i, kind in enumerate(kinds):
        layer = {"kind": kind, "name": f"l{i}"}
        if kind == "conv":
            layer.update(weight=np.ones((1, 1, 1, 1)), bias=np.zeros(1))
        if kind == "maxpool":
            layer["k"] = 2
        layers.append(layer)
    with pytest.raises(ConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fold_batchnorm(annlib.ANN((1, 4, 4), layers))


# --------------------------------------------------------------------------- a conversion by hand
def hand_net():
    """conv1 (1->1, 2x2) bn relu maxpool2 flatten fc (1->2), on 3x3 inputs."""
    return annlib.ANN(
        (1, 3, 3),
        [
            {"kind": "conv", "name": "conv1", "weight": [[[[0.5, 0.0], [0.0, 0.5]]]], "bias": [0.25]},
            {
                "kind": "batchnorm",
                "name": "bn1",
                "gamma": [4.0],
                "beta": [0.5],
                "mean": [0.0],
                "var": [3.0],
                "eps": 1.0,
            },
            {"kind": "relu", "name": "relu1"},
            {"kind": "maxpool", "name": "pool1", "k": 2},
            {"kind": "flatten", "name": "flat"},
            {"kind": "linear", "name": "fc", "weight": [[1.0], [-0.5]], "bias": [3.0, 39 / 64]},
        ],
    )


HAND_X = np.array([[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]]]])


def test_conversion_of_a_tiny_network_equals_the_hand_computation():
    # BN fold: sigma = sqrt(3 + 1) = 2, g = 4 / 2 = 2:
    #   W1 = 0.5 * 2 = [[1, 0], [0, 1]],  b1 = 0.5 + (0.25 - 0) * 2 = 1.
    # Calibration on HAND_X: conv1 z[i, j] = x[i, j] + x[i+1, j+1] + 1 = [[3, 1], [1, 2.5]];
    #   lambda1 = max = 3; maxpool -> 3; fc = [1*3 + 3, -0.5*3 + 39/64] = [6, -0.890625]: lambda2 = 6.
    # Normalization: W1 = W1 * 1/3, b1 = 1/3;  W2 = W2 * 3/6 = [[0.5], [-0.25]], b2 = [3/6, (39/64)/6 = 13/128].
    folded = fold_batchnorm(hand_net())
    np.testing.assert_array_equal(folded.layer("conv1")["weight"], [[[[1.0, 0.0], [0.0, 1.0]]]])
    np.testing.assert_array_equal(folded.layer("conv1")["bias"], [1.0])
    normed, lambdas = normalize(folded, HAND_X, "max")
    assert lambdas == {"conv1": 3.0, "fc": 6.0}
    # Formats: input u2.1 (x codes = 2x: 1.0 -> 2, 0.5 -> 1); weights s8.6.
    #   conv1: Vm frac = 6 + 1 = 7: w = round(64/3 = 21.33) = 21, b = round(128/3 = 42.67) = 43, threshold 2^7 = 128.
    #   fc (spike input, frac 0): Vm frac 6: w = [0.5*64, -0.25*64] = [32, -16];
    #   b = [0.5*64 = 32, (13/128)*64 = 6.5 -> 6 (RND_CONV: tie to even) or 7 (RND: tie up)], threshold 64.
    in_fmt = QFormat(2, 1, signed=False)
    formats = {
        "conv1": {"weight": QFormat(8, 6), "bias": QFormat(16, 7), "vm": QFormat(16, 7)},
        "fc": {"weight": QFormat(8, 6), "bias": QFormat(16, 6), "vm": QFormat(16, 6)},
    }
    layers = quantize_parameters(normed, formats, in_fmt, rounding="RND_CONV")
    assert [e["kind"] for e in layers] == ["conv", "maxpool", "flatten", "linear"]
    conv1, pool, flat, fc = layers
    np.testing.assert_array_equal(conv1["weight"], [[[[21, 0], [0, 21]]]])
    np.testing.assert_array_equal(conv1["bias"], [43])
    assert conv1["weight"].dtype == np.int64 and conv1["bias"].dtype == np.int64
    assert (conv1["threshold"], conv1["input"], conv1["input_format"], conv1["readout"]) == (
        128,
        "analog",
        in_fmt,
        False,
    )
    assert (conv1["weight_format"], conv1["bias_format"], conv1["vm_format"]) == (
        QFormat(8, 6),
        QFormat(16, 7),
        QFormat(16, 7),
    )
    assert (conv1["stride"], conv1["padding"], conv1["clipped"]) == (1, 0, {"weight": 0, "bias": 0})
    assert pool == {"kind": "maxpool", "name": "pool1", "k": 2, "stride": 2}
    assert flat == {"kind": "flatten", "name": "flat"}
    np.testing.assert_array_equal(fc["weight"], [[32], [-16]])
    np.testing.assert_array_equal(fc["bias"], [32, 6])
    assert (fc["threshold"], fc["input"], fc["input_format"], fc["readout"]) == (
        64,
        "spikes",
        SPIKE,
        True,
    )
    assert "stride" not in fc
    np.testing.assert_array_equal(
        quantize_parameters(normed, formats, in_fmt, rounding="RND")[3]["bias"], [32, 7]
    )
    np.testing.assert_array_equal(quantize_input(HAND_X, in_fmt), [[[[2, 0, 0], [0, 2, 0], [0, 0, 1]]]])
    # The first current at the calibration maximum: 21*2 + 21*2 + 43 = 127 = 0.99 * threshold.
    # choose_formats: conv1 max|W| = 1/3: frac 9 gives round(512/3) = 171 > 127, frac 8 gives 85 -> s8.8,
    # Vm frac 8 + 1 = 9; fc max|W| = 0.5: frac 8 gives 128 > 127, frac 7 gives 64 -> s8.7.
    assert choose_formats(normed, in_fmt) == {
        "conv1": {"weight": QFormat(8, 8), "bias": QFormat(16, 9), "vm": QFormat(24, 9)},
        "fc": {"weight": QFormat(8, 7), "bias": QFormat(16, 7), "vm": QFormat(24, 7)},
    }
    assert choose_formats(normed, in_fmt, weight_frac=6, vm_bits=16) == formats
    # convert() chains the same steps
    one_call, lambdas2 = convert(hand_net(), HAND_X, in_fmt, percentile="max", weight_frac=6, vm_bits=16)
    assert lambdas2 == lambdas
    for a, b in zip(one_call, layers):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_format_rules_are_enforced():
    normed, _ = normalize(fold_batchnorm(hand_net()), HAND_X, "max")
    in_fmt = QFormat(2, 1, signed=False)
    good = choose_formats(normed, in_fmt)
    with pytest.raises(ConversionError, match="layer 'conv1': bias format s16.8 must have frac 9"):
        quantize_parameters(normed, dict(good, conv1=dict(good["conv1"], bias=QFormat(16, 8))), in_fmt)
    with pytest.raises(ConversionError, match="threshold 1.0 = 2\\*\\*9 does not fit the vm format s10.9"):
        quantize_parameters(normed, dict(good, conv1=dict(good["conv1"], vm=QFormat(10, 9))), in_fmt)
    with pytest.raises(ConversionError, match="formats\\['fc'\\] = None"):
        quantize_parameters(normed, {"conv1": good["conv1"]}, in_fmt)
    with pytest.raises(ConversionError, match="not conv/linear layers"):
        quantize_parameters(normed, dict(good, pool1=good["fc"]), in_fmt)
    with pytest.raises(ConversionError, match="WRAP"):
        quantize_parameters(normed, good, in_fmt, overflow="WRAP")


# --------------------------------------------------------------------------- clipping report
def test_out_of_range_parameters_raise_or_are_counted():
    # fc weights in s4.2 (codes -8..7, i.e. -2.0..1.75): x 4 = [10, -12, 4, 7, 7.2, -8, -8.8]
    #   rounded [10, -12, 4, 7, 7, -8, -9]: SAT clips 10, -12, -9 (3); SAT_SYM (-7..7) also -8 (4).
    # bias 5.0 in s4.2: code 20 > 7, clipped (1).  Input u1.0 (frac 0) -> Vm frac 2 = the bias frac.
    net = annlib.ANN(
        (1, 1, 7),
        [
            {"kind": "flatten", "name": "flat"},
            {
                "kind": "linear",
                "name": "fc",
                "weight": [[2.5, -3.0, 1.0, 1.75, 1.8, -2.0, -2.2]],
                "bias": [5.0],
            },
        ],
    )
    formats = {"fc": {"weight": QFormat(4, 2), "bias": QFormat(4, 2), "vm": QFormat(8, 2)}}
    in_fmt = QFormat(1, 0, signed=False)
    with pytest.raises(
        FixedOverflowError, match=r"layer 'fc': weight\[0, 0\] = 2.5 does not fit s4.2"
    ) as info:
        quantize_parameters(net, formats, in_fmt)
    assert info.value.index == (0, 0) and info.value.value == 2.5
    sat = quantize_parameters(net, formats, in_fmt, overflow="SAT")[1]
    np.testing.assert_array_equal(sat["weight"], [[7, -8, 4, 7, 7, -8, -8]])
    np.testing.assert_array_equal(sat["bias"], [7])
    assert sat["clipped"] == {"weight": 3, "bias": 1}
    assert quantize_parameters(net, formats, in_fmt, overflow="SAT_SYM")[1]["clipped"] == {
        "weight": 4,
        "bias": 1,
    }


def test_input_one_needs_an_integer_bit():
    x = np.array([0.0, 0.5, 1.0])
    np.testing.assert_array_equal(quantize_input(x, QFormat(9, 8, signed=False)), [0, 128, 256])
    with pytest.raises(FixedOverflowError, match=r"input\[2\] = 1.0 does not fit u8.8"):
        quantize_input(x, QFormat(8, 8, signed=False))
    np.testing.assert_array_equal(
        quantize_input(x, QFormat(8, 8, signed=False), overflow="SAT"), [0, 128, 255]
    )


# --------------------------------------------------------------------------- the committed digits model
def test_committed_digits_model_float_accuracy():
    # The held-out images as the demo ships them (pixels 0..16; the model's inputs are pixel / 16).
    net, data = load_data()
    x_test, y_test = data["x_test"][:, None] / 16.0, data["y_test"]
    accuracy = float((annlib.forward(net, x_test).argmax(axis=1) == y_test).mean())
    assert len(y_test) == 500 and accuracy >= DIGITS_FLOAT_ACCURACY_FLOOR
    assert accuracy == net.meta["float_test_accuracy"]  # what train.py measured on its split
    np.testing.assert_allclose(
        annlib.forward(fold_batchnorm(net), x_test), annlib.forward(net, x_test), rtol=1e-10, atol=1e-10
    )


def test_demo_images_are_the_training_scripts_split():
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    x_train, y_train, x_test, y_test = train.load_split()
    _, data = load_data()
    np.testing.assert_array_equal(data["x_test"] / 16.0, x_test[:, 0])
    np.testing.assert_array_equal(data["y_test"], y_test)
    np.testing.assert_array_equal(data["x_calib"] / 16.0, x_train[: len(data["x_calib"]), 0])
    np.testing.assert_array_equal(data["y_calib"], y_train[: len(data["y_calib"])])


# --------------------------------------------------------------------------- integers -> Network
def hand_layers():
    """The integer layers of the hand conversion above (input u2.1, weights s8.6)."""
    normed, _ = normalize(fold_batchnorm(hand_net()), HAND_X, "max")
    formats = {
        "conv1": {"weight": QFormat(8, 6), "bias": QFormat(16, 7), "vm": QFormat(16, 7)},
        "fc": {"weight": QFormat(8, 6), "bias": QFormat(16, 6), "vm": QFormat(16, 6)},
    }
    return quantize_parameters(normed, formats, QFormat(2, 1, signed=False))


HAND_CODES = np.array([[[[2, 0, 0], [0, 2, 0], [0, 0, 1]]]])
# conv1 (w [[21, 0], [0, 21]], b 43, threshold 128) on HAND_CODES: I = 43 + 21 x[i,j] + 21 x[i+1,j+1]
#   = [[43 + 42 + 42, 43], [43, 43 + 42 + 21]] = [[127, 43], [43, 106]], the same every timestep.
# IF, reset by subtraction, V row-major [v00, v01, v10, v11]:
#   t0 V = [127, 43, 43, 106]   no spike
#   t1 V = [254, 86, 86, 212]   spikes [1, 0, 0, 1] -> V = [126, 86, 86, 84]
#   t2 V = [253, 129, 129, 190] spikes [1, 1, 1, 1] -> V = [125, 1, 1, 62]
#   t3 V = [252, 44, 44, 168]   spikes [1, 0, 0, 1] -> V = [124, 44, 44, 40]
# Every max-pool variant outputs [0, 1, 1, 1] here:
#   count gate: counts [0,0,0,0], [1,0,0,1], [2,1,1,2], [3,1,1,3] -> winner 0 (first on ties), s[0];
#   winner pre / OR: any spike; winner post: V_post max at index 0, s[0];
#   pooled neuron (conv1 reset "none"): V = [127, 43, 43, 106] (max 127 < 128), then [254, 86, 86, 212]
#   fires -> [126, -42, -42, 84]; [253, 1, 1, 190] fires -> [125, -127, -127, 62]; [252, -84, -84, 168]
#   fires -> [124, -212, -212, 40]; pooled potentials 127, 254, 253, 252.
# fc (w [[32], [-16]], b [32, 6], threshold 64): I = [32, 6] (no spike), [64, -10] (a spike).
#   Vm readout (reset none): V = [32, 6], [96, -4], [160, -14], [224, -24].
#   Spike readout: V = [32, 6]; [96, -4] fires class 0 -> [32, -4]; [96, -14] -> [32, -14];
#   [96, -24] -> [32, -24]: spike counts [3, 0].
HAND_POOL_OUT = [0, 1, 1, 1]


@pytest.mark.parametrize("pooling", ["count_gate", "winner_pre", "winner_post", "pooled_neuron", "or"])
def test_to_network_equals_the_hand_computation(pooling):
    net = to_network(hand_layers(), (1, 3, 3), pooling)
    assert [layer.name for layer in net.layers] == ["conv1", "conv1_if", "pool1", "flat", "fc", "fc_if"]
    conv1, if1, pool, _, fc, readout = net.layers
    np.testing.assert_array_equal(conv1.weight, [[[[21, 0], [0, 21]]]])
    assert (if1.threshold, if1.vm, readout.threshold, readout.reset) == (128, QFormat(16, 7), 64, "none")
    assert if1.reset == ("none" if pooling == "pooled_neuron" else "subtract")
    assert type(pool).__name__ == {"count_gate": "CountGatePool", "winner_pre": "WinnerSpikePool",
                                   "winner_post": "WinnerSpikePool", "pooled_neuron": "PooledNeuronPool",
                                   "or": "OrPool"}[pooling]  # fmt: skip
    result = net.run(HAND_CODES, 4, record=["conv1.current", "pool1.spikes", "fc_if.v_post"])
    current = result.traces[("conv1", "current")][:, 0, 0]
    np.testing.assert_array_equal(current, np.tile([[127, 43], [43, 106]], (4, 1, 1)))
    np.testing.assert_array_equal(result.traces[("pool1", "spikes")].ravel(), HAND_POOL_OUT)
    np.testing.assert_array_equal(result.traces[("fc_if", "v_post")][:, 0], [[32, 6], [96, -4], [160, -14], [224, -24]])
    assert result.prediction().tolist() == [0] and result.overflows.sum() == 0
    if pooling != "pooled_neuron":
        np.testing.assert_array_equal(result.spike_counts["conv1_if"][0, 0], [[3, 1], [1, 3]])
    else:
        assert pool.threshold == 128 and pool.vm == QFormat(16, 7)


def test_to_network_spike_readout_and_average_pool_by_hand():
    spiking = to_network(hand_layers(), (1, 3, 3), readout="spikes").run(HAND_CODES, 4)
    assert spiking.outputs["spike_count"].tolist() == [[3, 0]]
    # avgpool 2x2 -> SumPool with frac 2: code = sum of the 4 spikes = [0, 2, 4, 2] (means 0, .5, 1, .5).
    # fc moves to frac 6 + 2: b = [32 << 2, 6 << 2] = [128, 24], threshold 64 << 2 = 256, Vm s18.8.
    # I = b + w * code = [128, 24], [192, -8], [256, -40], [192, -8]; V = [128, 24], [320, 16],
    # [576, -24], [768, -32]: 768 / 256 = 3.0 = sum_t (0.5 + 0.5 * mean_t), the float value.
    layers = hand_layers()
    layers[1] = dict(layers[1], kind="avgpool")
    net = to_network(layers, (1, 3, 3))
    pool, fc, readout = net.layers[2], net.layers[4], net.layers[5]
    assert type(pool).__name__ == "SumPool" and pool.out_format == QFormat(3, 2, signed=False)
    np.testing.assert_array_equal(fc.bias, [128, 24])
    assert (fc.bias_format, readout.vm, readout.threshold) == (QFormat(18, 8), QFormat(18, 8), 256)
    result = net.run(HAND_CODES, 4, record=["pool1.spikes", "fc_if.v_post"])
    np.testing.assert_array_equal(result.traces[("pool1", "spikes")].ravel(), [0, 2, 4, 2])
    v = result.traces[("fc_if", "v_post")][:, 0]
    np.testing.assert_array_equal(v, [[128, 24], [320, 16], [576, -24], [768, -32]])


# Reset to zero, same conv1 currents [[127, 43], [43, 106]], threshold 128, V row-major:
#   t0 V = [127, 43, 43, 106]   no spike
#   t1 V = [254, 86, 86, 212]   spikes [1, 0, 0, 1] -> V = [0, 86, 86, 0]
#   t2 V = [127, 129, 129, 106] spikes [0, 1, 1, 0] -> V = [127, 0, 0, 106]
#   t3 V = [254, 43, 43, 212]   spikes [1, 0, 0, 1] -> V = [0, 43, 43, 0]
# spike counts [[2, 1], [1, 2]] (subtraction: [[3, 1], [1, 3]]: the discarded excess is lost).
# count gate: counts [0,0,0,0], [1,0,0,1], [1,1,1,1], [2,1,1,2] -> winner 0 each step, out = s[0] =
#   [0, 1, 0, 1];  OR: [0, 1, 1, 1].
# fc Vm readout, I = [32, 6] (no spike) or [64, -10] (a spike): count gate V = [32, 6], [96, -4],
#   [128, 2], [192, -8];  OR: [32, 6], [96, -4], [160, -14], [224, -24].
# fc spike readout (count gate), reset to zero at 64: [32, 6]; [96, -4] fires class 0 -> [0, -4];
#   [32, 2]; [96, -8] fires -> [0, -8]: spike counts [2, 0].
@pytest.mark.parametrize(
    "pooling, pool_out, v_readout",
    [
        ("count_gate", [0, 1, 0, 1], [[32, 6], [96, -4], [128, 2], [192, -8]]),
        ("or", [0, 1, 1, 1], [[32, 6], [96, -4], [160, -14], [224, -24]]),
    ],
)
def test_to_network_reset_to_zero_by_hand(pooling, pool_out, v_readout):
    net = to_network(hand_layers(), (1, 3, 3), pooling, reset="zero")
    assert (net.layers[1].reset, net.layers[5].reset) == ("zero", "none")
    result = net.run(HAND_CODES, 4, record=["conv1_if.v_post", "pool1.spikes", "fc_if.v_post"])
    v = result.traces[("conv1_if", "v_post")][:, 0, 0].reshape(4, -1)
    np.testing.assert_array_equal(v, [[127, 43, 43, 106], [0, 86, 86, 0], [127, 0, 0, 106], [0, 43, 43, 0]])
    np.testing.assert_array_equal(result.spike_counts["conv1_if"][0, 0], [[2, 1], [1, 2]])
    np.testing.assert_array_equal(result.traces[("pool1", "spikes")].ravel(), pool_out)
    np.testing.assert_array_equal(result.traces[("fc_if", "v_post")][:, 0], v_readout)
    if pooling == "count_gate":
        spiking = to_network(hand_layers(), (1, 3, 3), pooling, "spikes", reset="zero")
        assert spiking.layers[5].reset == "zero"
        assert spiking.run(HAND_CODES, 4).outputs["spike_count"].tolist() == [[2, 0]]


def test_to_network_refuses_what_it_cannot_map():
    layers = hand_layers()
    with pytest.raises(ConversionError, match="pooling = 'max' must be one of count_gate"):
        to_network(layers, (1, 3, 3), "max")
    with pytest.raises(ConversionError, match="readout = 'rate' must be one of vm, spikes"):
        to_network(layers, (1, 3, 3), readout="rate")
    with pytest.raises(ConversionError, match="reset = 'value' must be one of subtract, zero"):
        to_network(layers, (1, 3, 3), reset="value")
    with pytest.raises(ConversionError, match="'pooled_neuron' with reset = 'zero'"):
        to_network(layers, (1, 3, 3), "pooled_neuron", reset="zero")
    with pytest.raises(ConversionError, match="must start with a conv/linear entry, not flatten"):
        to_network([{"kind": "flatten", "name": "f"}] + layers, (1, 3, 3))
    with pytest.raises(ConversionError, match="pool 'pool2' follows maxpool"):
        to_network(layers[:2] + [{"kind": "maxpool", "name": "pool2", "k": 1, "stride": 1}] + layers[2:], (1, 3, 3))
    big = dict(layers[1], kind="avgpool", k=3, stride=3)
    with pytest.raises(ConversionError, match="avgpool 'pool1': area 9 is not a power of two"):
        to_network([layers[0], big] + layers[2:], (1, 4, 4))


# --------------------------------------------------------------------------- dual-threshold units
def dt_hand_net():
    """conv1 (1->2, 1x1) dual_threshold (per channel) | conv2 (4->2, 1x2) readout, on 1x2 inputs."""
    readout = np.zeros((2, 4, 1, 2))
    readout[0, [0, 2]] = 1.0  # class 0 counts channel 0's maps s1 and s2, class 1 channel 1's
    readout[1, [1, 3]] = 1.0
    return annlib.ANN(
        (1, 1, 2),
        [
            {"kind": "conv", "name": "conv1", "weight": [[[[1.0]]], [[[-1.0]]]], "bias": [0.0, 0.5]},
            {"kind": "dual_threshold", "name": "dt1", "theta1": [0.25, 0.0], "theta2": [0.75, 0.25]},
            {"kind": "conv", "name": "conv2", "weight": readout, "bias": [0.0, 0.0]},
        ],
    )


DT_X = np.array([[0.0, 0.0], [0.5, 1.0], [1.0, 0.0]])[:, None, None, :]


def test_dual_threshold_conversion_at_one_timestep_equals_the_float_model():
    # Float: z0 = x, z1 = 0.5 - x; maps [s1_c0, s1_c1, s2_c0, s2_c1] = [z0 > .25, z1 > 0, z0 > .75, z1 > .25]:
    #   x = 0: z = (0, .5) -> [0, 1, 0, 1];  x = .5: z = (.5, 0) -> [1, 0, 0, 0] (z1 = 0 is no spike: >);
    #   x = 1: z = (1, -.5) -> [1, 0, 1, 0].
    # conv2 sums channel 0's maps (class 0) and channel 1's (class 1) over both pixels:
    #   A = [0, 0] -> (0, 4);  B = [.5, 1] -> (1 + 2, 0) = (3, 0);  C = [1, 0] -> (2, 2).
    # Normalization ("max"): the DT unit keeps lambda 1 (W, b, theta unchanged); conv2 lambda = 4, W2 = 1/4.
    # Formats (input u2.1, codes 2x): conv1 max|W| = 1 -> s8.6 (128 > 127 at frac 7), Vm frac 7:
    #   w = [64, -64], b = [0, 64], theta1 = floor([.25, 0] * 128) = [32, 0], theta2 = [96, 32];
    #   conv2 (spikes) max|W| = 1/4 -> s8.8 (128 > 127 at frac 9): w = 64, Vm frac 8.
    # T = 1 (V = I): conv1 V = (64 code, 64 - 64 code): x = .5 (code 1) -> V = (64, 0): s1 = (64 > 32, 0 > 0) = (1, 0).
    # conv2 V = 64 * count = (0, 256), (192, 0), (128, 128) = 256 * the normalized outputs (0, 1), (.75, 0), (.5, .5).
    net = dt_hand_net()
    assert net.shapes == [(2, 1, 2), (4, 1, 2), (2, 1, 1)]
    _, float_out = annlib.forward(net, DT_X, return_all=True)
    np.testing.assert_array_equal(float_out[1][:, :, 0], [[[0, 0], [1, 1], [0, 0], [1, 1]],
                                                          [[1, 1], [0, 0], [0, 1], [0, 0]],
                                                          [[1, 0], [0, 1], [1, 0], [0, 1]]])  # fmt: skip
    np.testing.assert_array_equal(float_out[2].reshape(3, 2), [[0, 4], [3, 0], [2, 2]])
    in_fmt = QFormat(2, 1, signed=False)
    layers, lambdas = convert(net, DT_X, in_fmt, percentile="max")
    assert lambdas == {"conv1": 1.0, "conv2": 4.0}
    conv1, conv2 = layers
    assert (conv1["neuron"], conv1["vm_format"], conv2["neuron"]) == ("dual_threshold", QFormat(24, 7), "if")
    assert "threshold" not in conv1 and conv1["clipped"] == {"weight": 0, "bias": 0, "theta1": 0, "theta2": 0}
    np.testing.assert_array_equal(conv1["weight"].ravel(), [64, -64])
    np.testing.assert_array_equal(conv1["bias"], [0, 64])
    np.testing.assert_array_equal(conv1["theta1"], [32, 0])
    np.testing.assert_array_equal(conv1["theta2"], [96, 32])
    network = to_network(layers, net.input_shape)
    assert [type(layer).__name__ for layer in network.layers] == ["Conv2d", "DualThreshold", "Conv2d", "IF"]
    dt = network.layers[1]
    assert (dt.name, dt.theta1, dt.theta2, dt.compare, dt.reset, dt.reset_by) == (
        "conv1_dt", (32, 0), (96, 32), ">", "subtract", "either")
    assert network.layers[2].weight.shape == (2, 4, 1, 2) and network.shapes[1][1] == (4, 1, 2)  # reads 2C
    result = network.run(quantize_input(DT_X, in_fmt), 1, record=["conv1_dt.spikes", "conv2_if.v_post"])
    np.testing.assert_array_equal(result.traces[("conv1_dt", "spikes")][0], float_out[1])
    v = result.traces[("conv2_if", "v_post")][0].reshape(3, 2)
    np.testing.assert_array_equal(v, [[0, 256], [192, 0], [128, 128]])
    np.testing.assert_array_equal(v, annlib.forward(normalize(net, DT_X, "max")[0], DT_X).reshape(3, 2) * 256)
    assert result.prediction().tolist() == [1, 0, 0]


def dyadic_dt_net(rng):
    """conv1 (1->3, 3x3, pad 1) dual_threshold maxpool2 | conv2 (6->4, 2x2) relu flatten | fc (36->3), with
    conv1's weights and biases multiples of 1/16 (exact in the chosen formats); theta1 = 0.25 per
    channel, theta2 = 0.5 for the layer (set them to taste)."""
    dyadic = lambda shape: rng.integers(-24, 25, shape) / 16  # noqa: E731
    return annlib.ANN((1, 8, 8), [
        {"kind": "conv", "name": "conv1", "weight": dyadic((3, 1, 3, 3)), "bias": dyadic(3), "padding": 1},
        {"kind": "dual_threshold", "name": "dt1", "theta1": np.full(3, 0.25), "theta2": 0.5},
        {"kind": "maxpool", "name": "pool1", "k": 2},
        {"kind": "conv", "name": "conv2", "weight": rng.normal(0, 1, (4, 6, 2, 2)), "bias": rng.normal(0, 1, 4)},
        {"kind": "relu", "name": "relu2"},
        {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "fc", "weight": rng.normal(0, 1, (3, 36)), "bias": rng.normal(0, 1, 3)},
    ])  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_dual_threshold_spikes_and_or_pool_equal_the_float_model(seed):
    # conv1's V = 2**fv * z exactly (dyadic weights, biases and u5.4 pixels k/16), so the strict compares
    # V > floor(theta * 2**fv) equal z > theta whatever theta: ties (theta2 = 0.5, a multiple of 1/16, met by
    # some z) and theta1 just below a z that occurs (a rounded-to-nearest code would equal that V: no spike).
    # A maxpool after a DT unit is OR pooling, the max of 0/1 maps; conv2 reads the 2 * 3 pooled maps.
    rng = np.random.default_rng(seed)
    net = dyadic_dt_net(rng)
    x = rng.integers(0, 17, (20, 1, 8, 8)) / 16
    z = annlib.forward(net, x, return_all=True)[1][0]
    assert (z == 0.5).any()
    net.layer("dt1")["theta1"] = np.array([np.sort(z[:, c].ravel())[z[:, c].size * 3 // 4] for c in range(3)]) - 2**-12
    in_fmt = QFormat(5, 4, signed=False)
    layers, lambdas = convert(net, x, in_fmt)
    assert lambdas["conv1"] == 1.0 and layers[0]["theta2"].shape == ()
    network = to_network(layers, net.input_shape, pooling="pooled_neuron")  # pooling applies to IF units only
    names = [(layer.name, type(layer).__name__) for layer in network.layers]
    assert names[1:4] == [("conv1_dt", "DualThreshold"), ("pool1", "OrPool"), ("conv2", "Conv2d")]
    assert network.layers[3].weight.shape[1] == 6
    _, float_out = annlib.forward(net, x, return_all=True)
    result = network.run(quantize_input(x, in_fmt), 1, record=["conv1_dt.spikes", "pool1.spikes"])
    dt_spikes = result.traces[("conv1_dt", "spikes")][0]
    np.testing.assert_array_equal(dt_spikes, float_out[1])
    np.testing.assert_array_equal(result.traces[("pool1", "spikes")][0], float_out[2])
    assert 0 < dt_spikes.mean() < 1  # both outcomes occur


def test_a_leak_makes_every_spiking_neuron_leak_and_the_readout_only_integrate():
    """to_network(leak=...): the DualThreshold gets the leak fields (and ``reset_by``), an IF unit
    becomes LIF with its IF fields and the leak, the readout (``readout="vm"``) stays a leak-free
    integrator; a leak field LIF does not have is refused."""
    rng = np.random.default_rng(0)
    net = dyadic_dt_net(rng)
    layers, _ = convert(net, rng.integers(0, 17, (20, 1, 8, 8)) / 16, QFormat(5, 4, signed=False))
    leak = {"leak": "mul", "leak_mult": 1, "leak_shift": 1, "order": "leak_first"}
    plain = to_network(layers, net.input_shape, reset="zero")
    leaky = to_network(layers, net.input_shape, reset="zero", leak=leak, reset_by="s1")
    kinds = [(a.kind, b.kind) for a, b in zip(plain.layers, leaky.layers, strict=True)]
    assert ("dual_threshold", "dual_threshold") in kinds and ("if", "lif") in kinds and kinds[-1] == ("if", "if")
    for was, now in zip(plain.layers, leaky.layers):
        if now.kind == "lif":
            was = LIF(**{f.name: getattr(was, f.name) for f in dataclasses.fields(was)}, **leak)
        elif now.kind == "dual_threshold":
            was = dataclasses.replace(was, reset_by="s1", **leak)
        assert layer_config(now) == layer_config(was)
    with pytest.raises(ConversionError, match="leak = {'tau': 2} must be a table of LIF's leak fields .leak, "):
        to_network(layers, net.input_shape, leak={"tau": 2})


def test_dual_threshold_thresholds_must_fit_the_vm_format():
    # conv1's Vm is s24.7 (see the hand case): theta codes up to (2**23 - 1), i.e. theta < 65536.
    net = dt_hand_net()
    net.layer("dt1")["theta2"] = np.array([0.75, 70000.0])
    in_fmt = QFormat(2, 1, signed=False)
    with pytest.raises(FixedOverflowError, match=r"layer 'dt1': theta2\[1\] = 70000.0 does not fit s24.7"):
        convert(net, DT_X, in_fmt, percentile="max")
    sat = convert(net, DT_X, in_fmt, percentile="max", overflow="SAT")[0][0]
    np.testing.assert_array_equal(sat["theta2"], [96, 2**23 - 1])
    assert sat["clipped"] == {"weight": 0, "bias": 0, "theta1": 0, "theta2": 1}


def test_dual_threshold_layers_are_validated_and_cannot_be_the_readout():
    ok = {"kind": "conv", "name": "c", "weight": np.ones((2, 1, 1, 1)), "bias": np.zeros(2)}
    with pytest.raises(annlib.ANNError, match=r"'dt' \(dual_threshold\): theta1.shape = \(3,\) must be \(\) \(per layer\) or \(2,\)"):
        annlib.ANN((1, 2, 2), [ok, {"kind": "dual_threshold", "name": "dt", "theta1": np.ones(3), "theta2": 0.5}])
    net = annlib.ANN((1, 2, 2), [ok, {"kind": "dual_threshold", "name": "dt", "theta1": 0.25, "theta2": [0.5, 1]}])
    assert net.shapes == [(2, 2, 2), (4, 2, 2)]
    with pytest.raises(ConversionError, match="ends with dual_threshold"):
        fold_batchnorm(net)


# --------------------------------------------------------------------------- graphs: add, concat, global pool
def conv(name, weight, bias=None, **options):
    weight = np.asarray(weight, float)
    return {"kind": "conv", "name": name, "weight": weight,
            "bias": np.zeros(weight.shape[0]) if bias is None else bias, **options}


def random_graph(rng):
    """stem conv(2->4) bn relu | conv bn relu conv bn + identity (the stem's relu), relu | conv s2 relu conv
    + 1x1 s2 projection bn, relu | two 1x1 branches relu, concat | conv 1x1 (7->5) relu | global_avgpool flatten
    linear(5->3)."""

    def w(*shape):
        return rng.normal(0, 1.2 / np.sqrt(np.prod(shape[1:])), shape)

    def bn(name, c, source):
        return {"kind": "batchnorm", "name": name, "inputs": [source], "gamma": rng.uniform(0.5, 1.5, c),
                "beta": rng.normal(0, 0.2, c), "mean": rng.normal(0, 0.2, c), "var": rng.uniform(0.5, 2, c)}

    relu = lambda name, source=None: {"kind": "relu", "name": name, **({"inputs": [source]} if source else {})}  # noqa: E731
    return annlib.ANN((2, 8, 8), [
        conv("stem", w(4, 2, 3, 3), rng.normal(0, 0.1, 4), padding=1), bn("bn0", 4, "stem"), relu("r0"),
        conv("c1a", w(4, 4, 3, 3), padding=1), relu("r1a"), conv("c1b", w(4, 4, 3, 3), padding=1),
        bn("bn1b", 4, "c1b"), {"kind": "add", "name": "add1", "inputs": ["bn1b", "r0"]}, relu("r1"),
        conv("c2a", w(6, 4, 3, 3), padding=1, stride=2), relu("r2a"), conv("c2b", w(6, 6, 3, 3), padding=1),
        {**conv("proj", w(6, 4, 1, 1), stride=2), "inputs": ["r1"]}, bn("bn2s", 6, "proj"),
        {"kind": "add", "name": "add2", "inputs": ["c2b", "bn2s"]}, relu("r2"),
        conv("b1", w(3, 6, 1, 1)), relu("rb1"), {**conv("b2", w(4, 6, 1, 1)), "inputs": ["r2"]}, relu("rb2"),
        {"kind": "concat", "name": "cat", "inputs": ["rb1", "rb2"]}, conv("mix", w(5, 7, 1, 1)), relu("rm"),
        {"kind": "global_avgpool", "name": "gap"}, {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "fc", "weight": w(3, 5), "bias": np.zeros(3)},
    ])  # fmt: skip


def test_graph_layers_read_their_inputs():
    # add: element-wise sum; concat: channels joined; global_avgpool: the mean of each map, shape (C, 1, 1)
    x = np.arange(8.0).reshape(1, 2, 2, 2)  # channel 0: 0 1 2 3 (mean 1.5), channel 1: 4 5 6 7 (mean 5.5)
    net = annlib.ANN((2, 2, 2), [
        {"kind": "relu", "name": "r"},
        {"kind": "add", "name": "sum", "inputs": ["r", "input"]},
        {"kind": "concat", "name": "cat", "inputs": ["sum", "r"]},
        {"kind": "global_avgpool", "name": "gap"},
    ])  # fmt: skip
    assert net.sources == [("input",), ("r", "input"), ("sum", "r"), ("cat",)]
    assert net.shapes == [(2, 2, 2), (2, 2, 2), (4, 2, 2), (4, 1, 1)]
    y, outputs = annlib.forward(net, x, return_all=True)
    np.testing.assert_array_equal(outputs[1], 2 * x)
    np.testing.assert_array_equal(outputs[2][0, 2:], x[0])
    np.testing.assert_array_equal(y.ravel(), [3.0, 11.0, 1.5, 5.5])


@pytest.mark.parametrize(
    "layers, message",
    [
        ([{"kind": "relu", "name": "r", "inputs": ["later"]}, {"kind": "relu", "name": "later"}],
         "'r' (relu): inputs = 'later' is neither 'input' nor a layer listed before it"),
        ([{"kind": "add", "name": "a", "inputs": ["input"]}], "inputs = ['input'] must be a list of two or more"),
        ([{"kind": "relu", "name": "r", "inputs": ["input", "input"]}], "must be a list of one layer name"),
        ([{"kind": "relu", "name": "r"}, {"kind": "add", "name": "a", "inputs": ["r", "r"]}], "names a layer twice"),
        ([{"kind": "maxpool", "name": "p", "k": 2}, {"kind": "add", "name": "a", "inputs": ["p", "input"]}],
         "'a' (add): inputs = ['p', 'input'] differ in shape: 'p' (1, 2, 2), 'input' (1, 4, 4)"),
        ([{"kind": "flatten", "name": "f"}, {"kind": "concat", "name": "c", "inputs": ["input", "f"]}],
         "differ beyond the channel axis"),
        ([{"kind": "relu", "name": "input"}], "no layer may be named 'input'"),
    ],
)
def test_graph_layers_are_validated(layers, message):
    with pytest.raises(annlib.ANNError, match=re.escape(message)):
        annlib.ANN((1, 4, 4), layers)


def test_graph_save_load_roundtrip(tmp_path):
    net = random_graph(np.random.default_rng(0))
    annlib.save(net, tmp_path / "g.npz")
    back = annlib.load(tmp_path / "g.npz")
    assert back.sources == net.sources and back.layer("add1")["inputs"] == ("bn1b", "r0")
    x = np.random.default_rng(1).uniform(0, 1, (3, 2, 8, 8))
    np.testing.assert_array_equal(annlib.forward(back, x), annlib.forward(net, x))


def test_fold_batchnorm_in_a_graph():
    rng = np.random.default_rng(2)
    net = random_graph(rng)
    folded = fold_batchnorm(net)
    assert not any(layer["kind"] == "batchnorm" for layer in folded.layers)
    assert folded.layer("add1")["inputs"] == ("c1b", "r0") and folded.layer("add2")["inputs"] == ("c2b", "proj")
    x = rng.uniform(0, 1, (5, 2, 8, 8))
    np.testing.assert_allclose(annlib.forward(folded, x), annlib.forward(net, x), rtol=1e-10, atol=1e-10)
    # a batchnorm away from its conv: the layer after it keeps reading the folded conv, not its new neighbour
    away = annlib.ANN((1, 4, 4), [
        conv("a", [[[[1.0]]]]), conv("b", [[[[2.0]]]], inputs=["input"]),
        {"kind": "batchnorm", "name": "bn", "inputs": ["a"], "gamma": [2.0], "beta": [1.0], "mean": [0.0],
         "var": [0.75], "eps": 0.25},
        {"kind": "add", "name": "sum", "inputs": ["bn", "b"]}, {"kind": "relu", "name": "r"},
    ])  # fmt: skip
    folded = fold_batchnorm(away)
    assert folded.sources == [("input",), ("input",), ("a", "b"), ("sum",)]
    np.testing.assert_array_equal(annlib.forward(folded, np.ones((1, 1, 4, 4))), np.full((1, 1, 4, 4), 5.0))


@pytest.mark.parametrize("percentile", [99.9, "max"])
def test_normalize_a_graph(percentile):
    # Every unit's calibration percentile becomes 1; both weight layers of an add are normalized to the add's
    # lambda; the identity shortcut becomes a 1x1 conv of weight (lambda_in / lambda_out) I; after the concat,
    # the next layer undoes each branch's own lambda; the readout is the original over its lambda.
    rng = np.random.default_rng(3)
    net = fold_batchnorm(random_graph(rng))
    calib = rng.uniform(0, 1, (40, 2, 8, 8))
    normed, lambdas = normalize(net, calib, percentile)
    assert list(lambdas) == ["stem", "c1a", "c1b", "add1_identity1", "add1", "c2a", "c2b", "proj", "add2", "b1", "b2",
                             "mix", "fc"]  # fmt: skip
    assert lambdas["c1b"] == lambdas["add1_identity1"] == lambdas["add1"] and lambdas["proj"] == lambdas["add2"]
    identity = normed.layer("add1_identity1")
    assert identity["inputs"] == ("r0",) and normed.layer("add1")["inputs"] == ("c1b", "add1_identity1")
    np.testing.assert_allclose(identity["weight"][:, :, 0, 0], np.eye(4) * lambdas["stem"] / lambdas["add1"],
                               rtol=1e-15)  # fmt: skip
    _, acts = annlib.forward(normed, calib, return_all=True)
    p = 100 if percentile == "max" else percentile
    for name in ("stem", "c1a", "add1", "c2a", "add2", "b1", "b2", "mix", "fc"):
        z = acts[[layer["name"] for layer in normed.layers].index(name)]
        assert np.percentile(z[z > 0], p) == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(annlib.forward(normed, calib) * lambdas["fc"], annlib.forward(net, calib),
                               rtol=1e-10, atol=1e-10)  # fmt: skip
    scales = np.repeat([lambdas["b1"], lambdas["b2"]], [3, 4])[:, None, None]  # the concat's channels' lambdas
    np.testing.assert_allclose(normed.layer("mix")["weight"], net.layer("mix")["weight"] * scales / lambdas["mix"])


def residual_net(shortcut_from="r0", channels=2):
    """stem conv 1x1 (1->channels, weights 1) relu | conv 1x1 (weight I) + the shortcut, relu | flatten linear
    (4 * channels -> 2): on 1x2x2 inputs x in [0, 1] with max 1, lambda_stem = 1 and add = 2 a (lambda 2)."""
    return annlib.ANN((1, 2, 2), [
        conv("stem", np.ones((channels, 1, 1, 1))), {"kind": "relu", "name": "r0"},
        conv("cb", np.eye(channels)[:, :, None, None]),
        {"kind": "add", "name": "add", "inputs": ["cb", shortcut_from]}, {"kind": "relu", "name": "r1"},
        {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "fc", "weight": np.tile([[1.0], [-1.0]], (1, 4 * channels)), "bias": [0.0, 4.0]},
    ])  # fmt: skip


RES_X = np.array([[[1.0, 0.5], [0.0, 0.25]]])[:, None]  # (1, 1, 2, 2): u3.2 codes [[4, 2], [0, 1]]


def test_residual_block_by_hand():
    # Normalization ("max"): stem a = x, lambda 1; add z = cb(a) + a = 2a, lambda 2: cb and the identity become
    # 1/2 I.  fc: y = [sum(z), 4 - sum(z)] = [7, -3] on RES_X (z = 2a on both channels), lambda 7.
    # Formats (input u3.2): stem w = 1 -> s8.6 (1 * 2**7 = 128 > 127), Vm frac 8, threshold 256, codes 64.
    # cb and identity: 1/2 -> s8.7 (64), both currents frac 7: common, the add s24.7, threshold 128.
    # Currents: cb 64 s (bound 64: s8.7) + identity 64 s (s8.7): the add register holds any sum, s9.7.
    in_fmt = QFormat(3, 2, signed=False)
    layers, lambdas = convert(residual_net(), RES_X, in_fmt, percentile="max")
    assert lambdas == {"stem": 1.0, "cb": 2.0, "add_identity1": 2.0, "add": 2.0, "fc": 7.0}
    entries = {e["name"]: e for e in layers}
    assert [e["kind"] for e in layers] == ["conv", "conv", "conv", "add", "flatten", "linear"]
    assert entries["stem"]["threshold"] == 256 and entries["stem"]["input"] == "analog"
    for name in ("cb", "add_identity1"):
        assert (entries[name]["add"], entries[name]["weight_format"]) == ("add", QFormat(8, 7))
        np.testing.assert_array_equal(entries[name]["weight"][:, :, 0, 0], [[64, 0], [0, 64]])
        assert "vm_format" not in entries[name] and "threshold" not in entries[name]
    assert entries["add_identity1"]["inputs"] == ("stem",) and entries["add"]["inputs"] == ("cb", "add_identity1")
    assert (entries["add"]["vm_format"], entries["add"]["threshold"]) == (QFormat(24, 7), 128)
    network = to_network(layers, (1, 2, 2))
    assert [(layer.name, type(layer).__name__, layer.inputs) for layer in network.layers] == [
        ("stem", "Conv2d", None), ("stem_if", "IF", None), ("cb", "Conv2d", None),
        ("add_identity1", "Conv2d", ("stem_if",)), ("add", "Add", ("cb", "add_identity1")), ("add_if", "IF", None),
        ("flat", "Flatten", None), ("fc", "Linear", None), ("fc_if", "IF", None)]  # fmt: skip
    add = network.layer("add")
    assert (add.format, add.overflow.name) == (QFormat(9, 7), "SAT")
    # stem: I = 64 * code = [256, 128, 0, 64] per step against 256: spikes every 1, 2, never, 4 steps;
    # the add's current is 128 per stem spike (64 + 64), exactly its threshold: it fires when the stem fires.
    result = network.run(quantize_input(RES_X, in_fmt), 8, record=["stem_if.spikes", "add.out", "add_if.spikes"])
    stem = result.traces[("stem_if", "spikes")]
    np.testing.assert_array_equal(stem.sum(axis=0)[0, 0].ravel(), [8, 4, 0, 2])
    np.testing.assert_array_equal(result.traces[("add", "out")], 128 * stem)
    np.testing.assert_array_equal(result.traces[("add_if", "spikes")], stem)


def test_identity_shortcut_of_the_analog_input_and_of_an_average_pool_share_the_current_frac():
    # add(cb(relu), input): the identity reads u3.2 codes (frac 2), cb spikes (frac 0): weight fracs 5 and 7,
    # current frac 7 both.  add(cb(relu(pool)), pool): the identity reads the sum pool's codes (frac 2 for 2x2).
    in_fmt = QFormat(3, 2, signed=False)
    layers, _ = convert(residual_net("input", channels=1), RES_X, in_fmt, percentile="max")
    entries = {e["name"]: e for e in layers}
    assert (entries["cb"]["weight_format"].frac, entries["add_identity1"]["weight_format"].frac) == (7, 5)
    assert entries["add"]["vm_format"].frac == 7 and entries["add_identity1"]["input"] == "analog"
    network = to_network(layers, (1, 2, 2))
    assert network.layer("add").format.frac == 7
    pooled = annlib.ANN((1, 4, 4), [
        conv("stem", np.ones((2, 1, 1, 1))), {"kind": "relu", "name": "r0"},
        {"kind": "avgpool", "name": "pool", "k": 2}, conv("cb", np.eye(2)[:, :, None, None]),
        {"kind": "relu", "name": "r1"}, conv("cc", np.eye(2)[:, :, None, None]),
        {"kind": "add", "name": "add", "inputs": ["cc", "pool"]}, {"kind": "relu", "name": "r2"},
    ])  # fmt: skip
    x = np.random.default_rng(4).integers(0, 5, (6, 1, 4, 4)) / 4
    layers, _ = convert(pooled, x, in_fmt, percentile="max")
    entries = {e["name"]: e for e in layers}
    fracs = {name: entries[name]["weight_format"].frac for name in ("cc", "add_identity1")}
    assert fracs["add_identity1"] + 2 == fracs["cc"] == entries["add"]["vm_format"].frac
    network = to_network(layers, (1, 4, 4))
    assert network.layer("add").format.frac == fracs["cc"] and isinstance(network.layer("pool"), SumPool)
    network.run(quantize_input(x, in_fmt), 4)


@pytest.mark.parametrize("seed", range(4))
def test_a_converted_graph_tracks_the_float_model(seed):
    # The random graph's SNN (8-bit weights, T = 64): the readout's V / (T * threshold), its mean current in
    # units of 1.0, follows the normalized float output image by image (each class's mean over the images
    # removed: random weights give every image nearly the same class offsets).
    rng = np.random.default_rng(seed)
    net = random_graph(rng)
    x = rng.integers(0, 17, (60, 2, 8, 8)) / 16
    layers, lambdas = convert(net, x, QFormat(5, 4, signed=False))
    network = to_network(layers, net.input_shape)
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds.count("Add") == 2 and kinds.count("Concat") == 1
    gap = network.layer("gap")  # the whole 4x4 map, its code the exact mean (frac 4)
    assert isinstance(gap, SumPool) and (gap.kernel, gap.out_format) == ((4, 4), QFormat(5, 4, signed=False))
    result = network.run(quantize_input(x, QFormat(5, 4, signed=False)), 64)
    snn = result.outputs["v"] / (64 * network.layer("fc_if").threshold)
    ann = annlib.forward(net, x) / lambdas["fc"]
    centered = [a - a.mean(axis=0) for a in (snn, ann)]
    assert np.corrcoef(centered[0].ravel(), centered[1].ravel())[0, 1] > 0.95
    assert result.overflows.sum() == 0


def test_graphs_that_cannot_be_converted_are_refused():
    ok = residual_net()
    layers = [dict(layer) for layer in ok.layers]
    with pytest.raises(ConversionError, match=r"'flat' \(flatten\) cannot follow add 'add'"):
        fold_batchnorm(annlib.ANN((1, 2, 2), layers[:4] + layers[5:]))
    twice = layers[:5] + [{"kind": "relu", "name": "r2", "inputs": ["cb"]}] + layers[5:]
    with pytest.raises(ConversionError, match=r"'cb' \(conv\) is read by \['add', 'r2'\]"):
        fold_batchnorm(annlib.ANN((1, 2, 2), twice))
    unread = layers[:2] + [conv("lost", np.ones((1, 2, 1, 1))), dict(layers[2], inputs=["r0"])] + layers[3:]
    with pytest.raises(ConversionError, match="'lost' \\(conv\\) is read by no layer"):
        fold_batchnorm(annlib.ANN((1, 2, 2), unread))
    with pytest.raises(ConversionError, match="add 'add': input 'r0' is relu, not a conv/linear layer"):
        quantize_parameters(ok, choose_formats(ok, QFormat(3, 2, signed=False)), QFormat(3, 2, signed=False))
    normed, _ = normalize(ok, RES_X, "max")
    formats = choose_formats(normed, QFormat(3, 2, signed=False))
    formats["add"] = {"vm": QFormat(24, 6)}
    with pytest.raises(ConversionError, match="add 'add': vm format s24.6 must have frac 7, the frac of the current"):
        quantize_parameters(normed, formats, QFormat(3, 2, signed=False))


def test_pools_in_graphs_must_read_a_neuron_alone():
    stem = [conv("stem", np.ones((2, 1, 1, 1))), {"kind": "relu", "name": "r0"}]
    pool_after_concat = annlib.ANN((1, 4, 4), stem + [
        conv("c", np.eye(2)[:, :, None, None]), {"kind": "relu", "name": "r1"},
        {"kind": "concat", "name": "cat", "inputs": ["r0", "r1"]}, {"kind": "maxpool", "name": "pool", "k": 2},
        {"kind": "flatten", "name": "f"}, {"kind": "linear", "name": "fc", "weight": np.ones((2, 16)), "bias": [0, 1]},
    ])  # fmt: skip
    x = np.random.default_rng(5).uniform(0, 1, (4, 1, 4, 4))
    layers, _ = convert(pool_after_concat, x, QFormat(9, 8, signed=False))
    with pytest.raises(ConversionError, match="pool 'pool' follows concat: a spiking pool reads one neuron layer"):
        to_network(layers, (1, 4, 4))
    shared = annlib.ANN((1, 4, 4), stem + [
        {"kind": "maxpool", "name": "pool", "k": 2}, {"kind": "flatten", "name": "f"},
        {"kind": "flatten", "name": "g", "inputs": ["r0"]}, {"kind": "concat", "name": "cat", "inputs": ["f", "g"]},
        {"kind": "linear", "name": "fc", "weight": np.ones((2, 40)), "bias": [0, 1]},
    ])  # fmt: skip
    layers, _ = convert(shared, x, QFormat(9, 8, signed=False))
    assert to_network(layers, (1, 4, 4), "count_gate").layer("g").inputs == ("stem_if",)
    with pytest.raises(ConversionError, match=r"'pooled_neuron': pool 'pool' is not the only reader of unit 'stem' "
                                              r"\(also \['g'\]\)"):
        to_network(layers, (1, 4, 4), "pooled_neuron")


#: Bit-exact SNN accuracy of the committed digits model on the 500 test images, T = 32, count
#: gating, Vm readout, reset by subtraction, 8-bit weights (calibration: refmodel/data's 200
#: images): measured 0.966 (483 of 500; float 0.972, 486).
DIGITS_SNN_ACCURACY_FLOOR = 0.96


@pytest.fixture(scope="module")
def digits_snn():
    """The demo's conversion (8-bit weights, reset by subtraction) with count gating, run once
    for T = 32 on the 500 test images: (float ANN correct count, run_variant's figures, n)."""
    model, data = load_data()
    x, labels = data["x_test"][:, None] / 16.0, data["y_test"].astype(np.int64)
    float_correct = int((annlib.forward(model, x).argmax(axis=1) == labels).sum())
    layers, _ = convert(model, data["x_calib"][:, None] / 16.0, INPUT_FORMAT, weight_bits=8)
    network = to_network(layers, model.input_shape, "count_gate", reset="subtract")
    assert {layer.weight_format.bits for layer in network.layers if hasattr(layer, "weight_format")} == {8}
    figures = run_variant(network, quantize_input(x, INPUT_FORMAT), labels, (1, 2, 4, 8, 16, 32))
    return float_correct, figures, len(labels)


def test_committed_digits_model_snn_accuracy(digits_snn):
    _, figures, n = digits_snn
    assert figures["correct"][32] >= DIGITS_SNN_ACCURACY_FLOOR * n


def test_committed_digits_model_meets_the_one_point_target(digits_snn):
    # The issue's target: SNN test accuracy within 1 percentage point of the float ANN at some T <= 32,
    # compared in integers: 100 * correct_snn / n >= 100 * correct_float / n - 1.
    float_correct, figures, n = digits_snn
    assert any(within_one_point(correct, float_correct, n) for correct in figures["correct"].values())
    assert n == 500 and within_one_point(float_correct - 5, float_correct, n)  # exactly 1 point below
    assert not within_one_point(float_correct - 6, float_correct, n)


def test_package_model_is_the_committed_model():
    assert (ROOT / "refmodel" / "data" / "digits_cnn.npz").read_bytes() == (DIGITS / "digits_cnn.npz").read_bytes()
