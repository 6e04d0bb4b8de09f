// Plain Verilog testbench of if1_top. It replays the $readmemh files of refmodel export-hex:
// sample by sample (reset between samples), one timestep per clock, it drives conv1's current
// and compares v_pre, spikes and v_post with refmodel's, every timestep. The first mismatch is
// printed as refmodel reports it, and the simulation fails (vvp exit status 1).
// Plusargs: +hex=DIR (export-hex output), +config_sha256=SHA256 (from its manifest.json).
`timescale 1ns / 1ps
`include "refmodel_params.vh"

module tb_if1;
    localparam T = `REFMODEL_TIMESTEPS, B = `REFMODEL_BATCH;
    localparam N = `REFMODEL_if1_OUT_SIZE, H = `REFMODEL_if1_OUT_H, W = `REFMODEL_if1_OUT_W;
    localparam IB = `REFMODEL_conv1_CURRENT_BITS, VB = `REFMODEL_if1_VM_BITS;

    reg clk = 1'b0, rst = 1'b1, step = 1'b0;
    reg [N*IB-1:0] current;
    wire [N-1:0] spikes;
    wire [N*VB-1:0] v_pre, v_post;
    if1_top dut (.clk(clk), .rst(rst), .step(step), .current(current),
                 .spikes(spikes), .v_pre(v_pre), .v_post(v_post));
    always #5 clk = ~clk;

    reg [IB-1:0] current_hex [0:B*N-1];
    reg [VB-1:0] v_pre_hex [0:B*N-1], v_post_hex [0:B*N-1];
    reg spikes_hex [0:B*N-1];
    reg [8*1024-1:0] dir;
    reg [255:0] config_sha256;
    integer t, n, i, bad, first;
    reg signed [64:0] first_expected, first_got;

    task fail;
        begin
`ifdef __ICARUS__
            $finish_and_return(1);
`else
            $finish;
`endif
        end
    endtask

    function [8*1024-1:0] hex_file(input [8*16-1:0] layer_key, input [8*16-1:0] signal, input integer t);
        reg [8*1024-1:0] path;
        begin
            $sformat(path, "%0s/traces/%0s/%0s/t%04d.hex", dir, layer_key, signal, t);
            hex_file = path;
        end
    endfunction

    function signed [64:0] vm_value(input [VB-1:0] code);
        if (`REFMODEL_if1_VM_SIGNED) vm_value = $signed(code);
        else vm_value = code;
    endfunction

    task differ(input integer i, input signed [64:0] expected, input signed [64:0] got);
        begin
            if (bad == 0) begin
                first = i;
                first_expected = expected;
                first_got = got;
            end
            bad = bad + 1;
        end
    endtask

    task verdict(input [8*8-1:0] signal);  // after comparing one signal of (t, n)
        if (bad) begin
            $display("layer if1, signal %0s: first mismatch at t=%0d n=%0d c=%0d y=%0d x=%0d: expected %0d, got %0d (%0d of %0d values differ)",
                     signal, t, n, first / (H*W), first / W % H, first % W, first_expected, first_got, bad, N);
            fail;
        end
    endtask

    initial begin
        if (!$value$plusargs("hex=%s", dir) || !$value$plusargs("config_sha256=%h", config_sha256)) begin
            $display("tb_if1: give +hex=DIR +config_sha256=SHA256");
            fail;
        end
        if (config_sha256 !== `REFMODEL_CONFIG_SHA256 || `REFMODEL_TIMESTEP_DIGITS != 4) begin
            $display("tb_if1: the hex files (config sha256 %h) and refmodel_params.vh (%h) are not of one run",
                     config_sha256, `REFMODEL_CONFIG_SHA256);
            fail;
        end
        for (n = 0; n < B; n = n + 1) begin
            @(negedge clk) rst = 1'b1;
            @(negedge clk) rst = 1'b0;
            for (t = 0; t < T; t = t + 1) begin
                $readmemh(hex_file(`REFMODEL_conv1_KEY, "current", t), current_hex);
                $readmemh(hex_file(`REFMODEL_if1_KEY, "v_pre", t), v_pre_hex);
                $readmemh(hex_file(`REFMODEL_if1_KEY, "spikes", t), spikes_hex);
                $readmemh(hex_file(`REFMODEL_if1_KEY, "v_post", t), v_post_hex);
                for (i = 0; i < N; i = i + 1) current[i*IB +: IB] = current_hex[n*N + i];
                step = 1'b1;
                @(posedge clk) #1;
                bad = 0;
                for (i = 0; i < N; i = i + 1)
                    if (v_pre[i*VB +: VB] !== v_pre_hex[n*N + i])
                        differ(i, vm_value(v_pre_hex[n*N + i]), vm_value(v_pre[i*VB +: VB]));
                verdict("v_pre");
                for (i = 0; i < N; i = i + 1)
                    if (spikes[i] !== spikes_hex[n*N + i]) differ(i, spikes_hex[n*N + i], spikes[i]);
                verdict("spikes");
                for (i = 0; i < N; i = i + 1)
                    if (v_post[i*VB +: VB] !== v_post_hex[n*N + i])
                        differ(i, vm_value(v_post_hex[n*N + i]), vm_value(v_post[i*VB +: VB]));
                verdict("v_post");
                @(negedge clk) step = 1'b0;
            end
        end
        $display("tb_if1: PASS: v_pre, spikes and v_post of %0d neurons equal refmodel's over %0d timesteps x %0d samples",
                 N, T, B);
        $finish;
    end
endmodule
