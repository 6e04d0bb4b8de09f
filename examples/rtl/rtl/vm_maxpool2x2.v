// 2x2 membrane-potential max-pooling with the winner's spike, stride 2, bit-exact to refmodel's
// WinnerSpikePool (docs/pooling.md §2.1): per window of positions p = ky*2 + kx,
//   p* = the first p holding max V[p];  out = s[p*];  index = p*
// V is the neuron layer's v_pre (or v_post, as the layer's vm_stage says); inputs and outputs
// are row-major (c, y, x) of one sample; rows/columns beyond the last whole window are unused.
// Combinational: one vm_maxpool2x2_unit per window.
`timescale 1ns / 1ps
module vm_maxpool2x2 #(
    parameter C = 1,
    parameter H = 2,
    parameter W = 2,
    parameter VM_BITS = 16,
    parameter VM_SIGNED = 1
) (
    input [C*H*W*VM_BITS-1:0] vm,
    input [C*H*W-1:0] spikes,
    output [C*(H/2)*(W/2)-1:0] out,
    output [C*(H/2)*(W/2)*2-1:0] index
);
    localparam HO = H / 2, WO = W / 2;

    genvar c, oy, ox;
    generate
        for (c = 0; c < C; c = c + 1) begin : channel
            for (oy = 0; oy < HO; oy = oy + 1) begin : row
                for (ox = 0; ox < WO; ox = ox + 1) begin : column
                    localparam TL = (c*H + 2*oy)*W + 2*ox;  // input index of window position 0
                    localparam O = (c*HO + oy)*WO + ox;
                    vm_maxpool2x2_unit #(.VM_BITS(VM_BITS), .VM_SIGNED(VM_SIGNED)) unit (
                        .vm({vm[(TL+W+1)*VM_BITS +: VM_BITS], vm[(TL+W)*VM_BITS +: VM_BITS],
                             vm[(TL+1)*VM_BITS +: VM_BITS], vm[TL*VM_BITS +: VM_BITS]}),
                        .spikes({spikes[TL+W+1], spikes[TL+W], spikes[TL+1], spikes[TL]}),
                        .out(out[O]), .index(index[O*2 +: 2]));
                end
            end
        end
    endgenerate
endmodule

// One window: four potentials and spikes, position p at vm[p*VM_BITS +: VM_BITS] and spikes[p].
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
