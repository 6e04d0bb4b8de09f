// Layer pool1 of the network in refmodel_params.vh (refmodel export-sv), after neuron layer
// if1, as a vm_maxpool2x2: every parameter comes from the header.
`timescale 1ns / 1ps
`include "refmodel_params.vh"

module pool1_top (
    input [`REFMODEL_pool1_IN_SIZE*`REFMODEL_if1_VM_BITS-1:0] vm,
    input [`REFMODEL_pool1_IN_SIZE-1:0] spikes,
    output [`REFMODEL_pool1_OUT_SIZE-1:0] out,
    output [`REFMODEL_pool1_OUT_SIZE*`REFMODEL_pool1_INDEX_BITS-1:0] index
);
    /* verilator lint_off UNUSEDPARAM */  // read by the cocotb testbench
    localparam [255:0] CONFIG_SHA256 = `REFMODEL_CONFIG_SHA256;
    /* verilator lint_on UNUSEDPARAM */

    initial if (`REFMODEL_pool1_KIND != "winner_spike" || `REFMODEL_pool1_KERNEL_Y != 2 || `REFMODEL_pool1_KERNEL_X != 2
                || `REFMODEL_pool1_STRIDE_Y != 2 || `REFMODEL_pool1_STRIDE_X != 2) begin
        $display("pool1_top: layer pool1 is not a 2x2, stride 2 winner_spike pool");
        $finish;
    end

    vm_maxpool2x2 #(
        .C(`REFMODEL_pool1_IN_C), .H(`REFMODEL_pool1_IN_H), .W(`REFMODEL_pool1_IN_W),
        .VM_BITS(`REFMODEL_if1_VM_BITS), .VM_SIGNED(`REFMODEL_if1_VM_SIGNED)
    ) pool (.vm(vm), .spikes(spikes), .out(out), .index(index));
endmodule
