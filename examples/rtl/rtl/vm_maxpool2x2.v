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
