"""ANN description, float forward pass and the float side of ANN -> SNN conversion."""

import importlib.util
import pathlib

import numpy as np
import pytest

from refmodel import ann as annlib
from refmodel.convert import (
    SPIKE_FORMAT,
    ConversionError,
    choose_formats,
    convert,
    fold_batchnorm,
    normalize,
    quantize_input,
    quantize_parameters,
)
from refmodel.fixed import FixedOverflowError, QFormat

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
        SPIKE_FORMAT,
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
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    _, _, x_test, y_test = train.load_split()
    net = annlib.load(DIGITS / "digits_cnn.npz")
    accuracy = float((annlib.forward(net, x_test).argmax(axis=1) == y_test).mean())
    assert len(y_test) == 500 and accuracy >= DIGITS_FLOAT_ACCURACY_FLOOR
    assert accuracy == net.meta["float_test_accuracy"]
    np.testing.assert_allclose(
        annlib.forward(fold_batchnorm(net), x_test), annlib.forward(net, x_test), rtol=1e-10, atol=1e-10
    )
