"""Conv2d / Linear / Flatten descriptions: validation that names layer, field and value, and the
network-level checks that need them."""

import numpy as np
import pytest

from refmodel import QFormat
from refmodel.layers import IF, Conv2d, Flatten, LayerError, Linear, LoihiLIF
from refmodel.network import Network

W = np.ones((2, 1, 3, 3), np.int64)
S8 = QFormat(8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weight=W * 200), r"layer 'c': weight = array of shape \(2, 1, 3, 3\) .*weight\[0, 0, 0, 0\] = 200"),
        (dict(weight=W.astype(float)), "must be integer codes, got dtype float64"),
        (dict(weight=W[0]), "must have 4 dimensions, got 3"),
        (dict(stride=0), "stride = 0 must be >= 1"),
        (dict(padding=-1), "padding = -1 must be >= 0"),
        (dict(padding=1.5), "padding = 1.5 must be an integer or a pair of integers"),
        (dict(groups=3), "groups = 3 must be >= 1 and divide K = 2"),
        (dict(bias=np.zeros(2, np.int64)), "bias_format = None a bias needs its declared format"),
        (dict(bias=np.zeros(3, np.int64), bias_format=S8), r"must have shape \(2,\)"),
        (dict(bias_format=S8), "given without a bias"),
        (dict(overflow="CLIP"), "overflow = 'CLIP' unknown Overflow mode"),
        (dict(acc_apply="never"), "acc_apply = 'never' must be one of"),
        (dict(acc_format=8), "acc_format = 8 must be a QFormat or None"),
        (
            dict(bias=np.array([3, 9]), bias_format=S8, acc_format=QFormat(4), overflow="SAT"),
            r"bias\[1\] = 9 does not fit the accumulator s4.0 \(-8..7\)",
        ),
        (dict(name="a b"), "name = 'a b' must be a non-empty name"),
    ],
)
def test_conv2d_refuses_bad_fields(kwargs, message):
    with pytest.raises(LayerError, match=message):
        Conv2d(**{"name": "c", "weight": W, "weight_format": S8, **kwargs})


def test_a_bias_outside_the_accumulator_is_fine_when_applied_once():
    layer = Linear(name="l", weight=np.ones((2, 3), np.int64), weight_format=S8, bias=np.array([9, 0]),
                   bias_format=S8, acc_format=QFormat(4), overflow="SAT", acc_apply="once")
    out, overflows = layer.forward(np.zeros((1, 3), np.int64))
    assert out.tolist() == [[7, 0]] and overflows == 1


def test_shapes_are_checked_when_the_network_is_built():
    conv = Conv2d(name="c", weight=W, weight_format=S8)
    with pytest.raises(LayerError, match="layer 'c': weight = .* expects 1 input channels, the input has 2"):
        Network([conv, IF(name="n", vm=QFormat(16), threshold=9)], (2, 5, 5), S8)
    with pytest.raises(LayerError, match=r"kernel 3x3 exceeds padded input 2x2"):
        Network([conv, IF(name="n", vm=QFormat(16), threshold=9)], (1, 2, 2), S8)
    with pytest.raises(LayerError, match=r"layer 'l': weight = .* expects \(4,\) inputs, got \(3,\)"):
        Network([Linear(name="l", weight=np.ones((2, 4), np.int64), weight_format=S8)], (3,), S8)


def test_a_network_cannot_end_with_flatten():
    layers = [Conv2d(name="c", weight=W, weight_format=S8), IF(name="n", vm=QFormat(16), threshold=9), Flatten(name="f")]
    with pytest.raises(LayerError, match="layer 'f': position = 'flatten' a network cannot end with a flatten layer"):
        Network(layers, (1, 4, 4), S8)


def test_loihi_input_must_fit_16_bits_at_build_time():
    fc = Linear(name="fc", weight=np.full((2, 3), 127, np.int64), weight_format=S8)
    lif = LoihiLIF(name="lif", du=0, dv=0, vth=10)
    Network([fc, lif], (3,), QFormat(6, signed=False))  # |I| <= 3 * 127 * 63 = 24003: fits
    with pytest.raises(LayerError, match="layer 'lif': input current = 's18.0' can leave Loihi's 16-bit a_in range"):
        Network([fc, lif], (3,), QFormat(8, signed=False))  # 3 * 127 * 255 = 97155
