// An array of N integrate-and-fire neurons, bit-exact to refmodel's IF layer (docs/neurons.md §2)
// with reset by subtraction, no leak, no refractory period:
//   V1 = cast(V + I);  if v_min set and V1 < v_min: V1 = v_min;  v_pre = V1;
//   s = V1 >= theta (or >);  V = s ? cast(V1 - theta) : V1          (v_post = V)
// cast: OVERFLOW "SAT" clamps to the Vm range, "WRAP" keeps the low VM_BITS bits.
// `define BUG_NO_SATURATION (examples/rtl/dut.py --broken) plants a deliberate bug for the tests:
// cast keeps the low bits even under "SAT".
// Neuron i (row-major c, y, x of one sample) is in channel i / (N / C); V starts at 0 (rst).
// One timestep per clock cycle with step = 1; outputs are registered.
`timescale 1ns / 1ps
module if_neuron_array #(
    parameter N = 1,
    parameter C = 1,
    parameter IN_BITS = 16,
    parameter IN_SIGNED = 1,
    parameter VM_BITS = 16,
    parameter VM_SIGNED = 1,
    parameter OVERFLOW = "SAT",
    parameter COMPARE = ">=",
    parameter RESET = "subtract",
    parameter REFRACTORY = 0,
    parameter [C*VM_BITS-1:0] THRESHOLD = 0,  // per channel: channel c at [c*VM_BITS +: VM_BITS]
    parameter HAS_V_MIN = 0,
    parameter [VM_BITS-1:0] V_MIN = 0
) (
    input clk,
    input rst,
    input step,
    input [N*IN_BITS-1:0] current,
    output reg [N-1:0] spikes,
    output reg [N*VM_BITS-1:0] v_pre,
    output reg [N*VM_BITS-1:0] v_post
);
    // every intermediate is exact in W signed bits
    localparam W = (IN_BITS > VM_BITS ? IN_BITS : VM_BITS) + 2;
    localparam signed [W-1:0] LO = VM_SIGNED ? {{(W-VM_BITS+1){1'b1}}, {(VM_BITS-1){1'b0}}} : {W{1'b0}};
    localparam signed [W-1:0] HI = VM_SIGNED ? {{(W-VM_BITS+1){1'b0}}, {(VM_BITS-1){1'b1}}}
                                             : {{(W-VM_BITS){1'b0}}, {VM_BITS{1'b1}}};
    localparam PER_CHANNEL = N / C;

    /* verilator lint_off WIDTH */  // string parameters compared with literals of other lengths
    localparam SATURATE = OVERFLOW == "SAT", GREATER_EQUAL = COMPARE == ">=";
    initial begin
        if (!(OVERFLOW == "SAT" || OVERFLOW == "WRAP") || !(COMPARE == ">=" || COMPARE == ">")
                || RESET != "subtract" || REFRACTORY != 0 || VM_BITS < 2 || N % C != 0) begin
            $display("if_neuron_array: unsupported parameters OVERFLOW %0s COMPARE %0s RESET %0s REFRACTORY %0d VM_BITS %0d N %0d C %0d",
                     OVERFLOW, COMPARE, RESET, REFRACTORY, VM_BITS, N, C);
            $finish;
        end
    end
    /* verilator lint_on WIDTH */

    function signed [W-1:0] vm_ext(input [VM_BITS-1:0] v);
        vm_ext = VM_SIGNED ? {{(W-VM_BITS){v[VM_BITS-1]}}, v} : {{(W-VM_BITS){1'b0}}, v};
    endfunction

    function [VM_BITS-1:0] cast(input signed [W-1:0] x);
`ifndef BUG_NO_SATURATION
        if (SATURATE)
            cast = x < LO ? LO[VM_BITS-1:0] : x > HI ? HI[VM_BITS-1:0] : x[VM_BITS-1:0];
        else
`endif
            cast = x[VM_BITS-1:0];
    endfunction

    genvar i;
    generate
        for (i = 0; i < N; i = i + 1) begin : neuron
            wire [IN_BITS-1:0] in = current[i*IN_BITS +: IN_BITS];
            wire signed [W-1:0] in_ext = IN_SIGNED ? {{(W-IN_BITS){in[IN_BITS-1]}}, in} : {{(W-IN_BITS){1'b0}}, in};
            wire signed [W-1:0] theta = vm_ext(THRESHOLD[(i / PER_CHANNEL)*VM_BITS +: VM_BITS]);
            wire [VM_BITS-1:0] integrated = cast(vm_ext(v_post[i*VM_BITS +: VM_BITS]) + in_ext);
            wire [VM_BITS-1:0] v1 = HAS_V_MIN && vm_ext(integrated) < vm_ext(V_MIN) ? V_MIN : integrated;
            wire fire = GREATER_EQUAL ? vm_ext(v1) >= theta : vm_ext(v1) > theta;
            always @(posedge clk) begin
                if (rst) begin
                    spikes[i] <= 1'b0;
                    v_pre[i*VM_BITS +: VM_BITS] <= {VM_BITS{1'b0}};
                    v_post[i*VM_BITS +: VM_BITS] <= {VM_BITS{1'b0}};
                end else if (step) begin
                    spikes[i] <= fire;
                    v_pre[i*VM_BITS +: VM_BITS] <= v1;
                    v_post[i*VM_BITS +: VM_BITS] <= fire ? cast(vm_ext(v1) - theta) : v1;
                end
            end
        end
    endgenerate
endmodule
