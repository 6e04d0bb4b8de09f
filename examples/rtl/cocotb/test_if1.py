"""cocotb testbench of if1_top: replays the refmodel vector file named by $REFMODEL_VECTORS.

Sample by sample (reset between samples), one timestep per clock, it drives conv1's recorded
current and compares v_pre, spikes and v_post with refmodel's at every timestep through
``refmodel.testing.assert_bit_exact``, which fails with the first mismatch in refmodel's form.
"""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from refmodel.testing import assert_bit_exact, pack_bits, unpack_bits
from refmodel.vectors import VectorFile

SIGNALS = ("v_pre", "spikes", "v_post")


@cocotb.test()
async def if1_matches_refmodel(dut):
    with VectorFile(os.environ["REFMODEL_VECTORS"]) as vf:
        assert dut.CONFIG_SHA256.value.to_unsigned() == int(vf.config_sha256, 16), \
            "refmodel_params.vh was not exported from this vector file"
        current, current_fmt = vf.trace("conv1", "current"), vf.trace_info("conv1", "current").fmt
        expected = {s: vf.trace("if1", s) for s in SIGNALS}
        formats = {s: vf.trace_info("if1", s).fmt for s in SIGNALS}
        shape = vf.layer("if1").output_shape
    size = current[0, 0].size
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.step.value = 0
    for n in range(current.shape[1]):
        await FallingEdge(dut.clk)
        dut.rst.value = 1
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        for t in range(current.shape[0]):
            dut.current.value = pack_bits(current[t, n], current_fmt.bits)
            dut.step.value = 1
            await RisingEdge(dut.clk)
            await ReadOnly()
            for s in SIGNALS:
                fmt = formats[s]
                got = unpack_bits(getattr(dut, s).value.to_unsigned(), size, fmt.bits, fmt.signed).reshape(shape)
                assert_bit_exact(expected[s][t, n], got, layer="if1", signal=s, at={"t": t, "n": n})
            await FallingEdge(dut.clk)
            dut.step.value = 0
    dut._log.info("if1: v_pre, spikes and v_post equal refmodel's over %d timesteps x %d samples", *current.shape[:2])
