"""cocotb testbench of pool1_top: replays the refmodel vector file named by $REFMODEL_VECTORS.

Every timestep and sample it drives if1's recorded spikes and Vm (v_pre or v_post, as pool1's
vm_stage says) and compares the pooled spikes and the winner index with refmodel's through
``refmodel.testing.assert_bit_exact``, which fails with the first mismatch in refmodel's form.
"""

import os

import cocotb
from cocotb.triggers import Timer

from refmodel.testing import assert_bit_exact, pack_bits, unpack_bits
from refmodel.vectors import VectorFile

SIGNALS = (("out", "spikes"), ("index", "index"))  # (port, refmodel signal)


@cocotb.test()
async def pool1_matches_refmodel(dut):
    with VectorFile(os.environ["REFMODEL_VECTORS"]) as vf:
        assert dut.CONFIG_SHA256.value.to_unsigned() == int(vf.config_sha256, 16), \
            "refmodel_params.vh was not exported from this vector file"
        pool = vf.layer("pool1")
        vm_signal = "v_" + pool.attrs["vm_stage"]
        vm, vm_fmt = vf.trace("if1", vm_signal), vf.trace_info("if1", vm_signal).fmt
        spikes = vf.trace("if1", "spikes")
        expected = {s: vf.trace("pool1", s) for _, s in SIGNALS}
        formats = {s: vf.trace_info("pool1", s).fmt for _, s in SIGNALS}
    size = expected["spikes"][0, 0].size
    for t in range(vm.shape[0]):
        for n in range(vm.shape[1]):
            dut.vm.value = pack_bits(vm[t, n], vm_fmt.bits)
            dut.spikes.value = pack_bits(spikes[t, n], 1)
            await Timer(1, unit="ns")
            for port, s in SIGNALS:
                fmt = formats[s]
                got = unpack_bits(getattr(dut, port).value.to_unsigned(), size, fmt.bits, fmt.signed)
                assert_bit_exact(expected[s][t, n], got.reshape(pool.output_shape), layer="pool1", signal=s,
                                 at={"t": t, "n": n})
    dut._log.info("pool1: spikes and index equal refmodel's over %d timesteps x %d samples", *vm.shape[:2])
