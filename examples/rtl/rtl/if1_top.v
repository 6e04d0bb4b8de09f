// Layer if1 of the network in refmodel_params.vh (refmodel export-sv) as an if_neuron_array:
// every parameter comes from the header, so from the vector file the testbenches replay.
`timescale 1ns / 1ps
`include "refmodel_params.vh"

module if1_top (
    input clk,
    input rst,
    input step,
    input [`REFMODEL_if1_IN_SIZE*`REFMODEL_conv1_CURRENT_BITS-1:0] current,
    output [`REFMODEL_if1_OUT_SIZE-1:0] spikes,
    output [`REFMODEL_if1_OUT_SIZE*`REFMODEL_if1_VM_BITS-1:0] v_pre,
    output [`REFMODEL_if1_OUT_SIZE*`REFMODEL_if1_VM_BITS-1:0] v_post
);
    /* verilator lint_off UNUSEDPARAM */  // read by the cocotb testbench
    localparam [255:0] CONFIG_SHA256 = `REFMODEL_CONFIG_SHA256;
    /* verilator lint_on UNUSEDPARAM */

    initial if (`REFMODEL_if1_KIND != "if") begin
        $display("if1_top: layer if1 is a %0s layer, not if", `REFMODEL_if1_KIND);
        $finish;
    end

    if_neuron_array #(
        .N(`REFMODEL_if1_IN_SIZE), .C(`REFMODEL_if1_IN_C),
        .IN_BITS(`REFMODEL_conv1_CURRENT_BITS), .IN_SIGNED(`REFMODEL_conv1_CURRENT_SIGNED),
        .VM_BITS(`REFMODEL_if1_VM_BITS), .VM_SIGNED(`REFMODEL_if1_VM_SIGNED),
        .OVERFLOW(`REFMODEL_if1_OVERFLOW), .COMPARE(`REFMODEL_if1_COMPARE),
        .RESET(`REFMODEL_if1_RESET), .REFRACTORY(`REFMODEL_if1_REFRACTORY),
        .THRESHOLD(`REFMODEL_if1_THRESHOLD)
`ifdef REFMODEL_if1_V_MIN
        , .HAS_V_MIN(1), .V_MIN(`REFMODEL_if1_V_MIN)
`endif
    ) neurons (
        .clk(clk), .rst(rst), .step(step), .current(current),
        .spikes(spikes), .v_pre(v_pre), .v_post(v_post)
    );
endmodule
