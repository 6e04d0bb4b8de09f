"""A property test of a design-under-test model against refmodel (docs/testing.md).

The DUT here is a numpy model of a small accelerator datapath: a fully connected layer of
int8 weights on 0/1 input spikes, into integrate-and-fire neurons with a 12-bit saturating
membrane register, threshold compare ">=" and reset by subtraction.  Hypothesis draws weights,
thresholds, timesteps and spike trains; refmodel computes the golden spikes; assert_bit_exact
reports the first mismatch.  Run:  pytest examples/property_test_example.py
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmodel.fixed import QFormat
from refmodel.layers import IF, Linear
from refmodel.network import Network
from refmodel.testing import assert_bit_exact, stimuli

VM_BITS = 12


def dut_linear_if(weight, threshold, spikes, overflow="SAT"):
    """The design under test: output spikes (T, N, K) for input spikes (T, N, F)."""
    lo, hi = -(2 ** (VM_BITS - 1)), 2 ** (VM_BITS - 1) - 1
    v = np.zeros((spikes.shape[1], weight.shape[0]), np.int64)
    out = []
    for s in spikes:
        v = v + s.astype(np.int64) @ weight.astype(np.int64).T
        if overflow == "SAT":
            v = np.clip(v, lo, hi)
        else:  # two's complement wrap
            v = (v - lo) % 2**VM_BITS + lo
        fired = v >= threshold
        v = np.where(fired, v - threshold, v)
        out.append(fired.astype(np.uint8))
    return np.stack(out)


@settings(deadline=None)  # the first call compiles refmodel's Numba kernels (about a second)
@given(arrays(np.int8, (4, 8)), st.integers(1, 500), st.integers(1, 8), st.data())
def test_dut_matches_golden(weight, threshold, timesteps, data):
    golden = Network(
        [Linear(name="fc", weight=weight, weight_format=QFormat(8)),
         IF(name="if", vm=QFormat(VM_BITS), threshold=threshold, overflow="SAT")],
        input_shape=(8,), input_format=QFormat(1, signed=False),
    )  # fmt: skip
    spikes = data.draw(stimuli(golden, timesteps, per_step=True))
    expected = golden.run(spikes, timesteps, record="if.spikes").traces[("if", "spikes")]
    assert_bit_exact(expected, dut_linear_if(weight, threshold, spikes), layer="if", signal="spikes")


if __name__ == "__main__":
    test_dut_matches_golden()
    print("the DUT model matches refmodel")
