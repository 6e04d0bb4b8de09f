`timescale 1ns / 1ps
// One 2x2 window of vm_maxpool2x2 (refmodel's WinnerSpikePool, docs/pooling.md §2.1): four
// potentials and spikes, position p = ky*2 + kx at vm[p*VM_BITS +: VM_BITS] and spikes[p];
// index = the first p of the largest potential, out = spikes[index].
module vm_maxpool2x2_unit #(
    parameter VM_BITS = 16,
    parameter VM_SIGNED = 1
) (
    input [4*VM_BITS-1:0] vm,
    input [3:0] spikes,
    output out,
    output [1:0] index
);
    function signed [VM_BITS:0] key(input [VM_BITS-1:0] v);
        key = VM_SIGNED ? {v[VM_BITS-1], v} : {1'b0, v};
    endfunction

    wire signed [VM_BITS:0] v0 = key(vm[0 +: VM_BITS]), v1 = key(vm[VM_BITS +: VM_BITS]),
                            v2 = key(vm[2*VM_BITS +: VM_BITS]), v3 = key(vm[3*VM_BITS +: VM_BITS]);
    // strict > keeps the first position on ties
    wire signed [VM_BITS:0] m01 = v1 > v0 ? v1 : v0;
    wire signed [VM_BITS:0] m012 = v2 > m01 ? v2 : m01;
    assign index = v3 > m012 ? 2'd3 : v2 > m01 ? 2'd2 : v1 > v0 ? 2'd1 : 2'd0;
    assign out = spikes[index];
endmodule
