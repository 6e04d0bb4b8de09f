// Plain Verilog testbench of if1_top. It replays the $readmemh files of refmodel export-hex:
// sample by sample (reset between samples), one timestep per clock, it drives conv1's current
// and compares v_pre, spikes and v_post with refmodel's, every timestep. The first mismatch is
// printed as refmodel reports it, and the simulation fails (exit status 1).
// Plusargs: +hex=DIR (export-hex output), +config_sha256=SHA256 (from its manifest.json),
// +dump=DIR (write v_pre, spikes and v_post instead of comparing them: tb/replay.vh).
`timescale 1ns / 1ps
`include "refmodel_params.vh"

module tb_if1;
    localparam T = `REFMODEL_TIMESTEPS, B = `REFMODEL_BATCH;
    localparam LAYER = "if1", OUT_SIZE = `REFMODEL_if1_OUT_SIZE, OUT_H = `REFMODEL_if1_OUT_H, OUT_W = `REFMODEL_if1_OUT_W;
    localparam N = OUT_SIZE;
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
    integer dump_fd [0:2];
    `include "replay.vh"

    function signed [64:0] vm_value(input [VB-1:0] code);
        if (`REFMODEL_if1_VM_SIGNED) vm_value = $signed(code);
        else vm_value = code;
    endfunction

    initial begin
        start;
        if (dumping) begin
            dump_open("v_pre", dump_fd[0]);
            dump_open("spikes", dump_fd[1]);
            dump_open("v_post", dump_fd[2]);
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
                if (dumping) begin
                    $fwrite(dump_fd[0], "%0d %0d %h\n", t, n, v_pre);
                    $fwrite(dump_fd[1], "%0d %0d %h\n", t, n, spikes);
                    $fwrite(dump_fd[2], "%0d %0d %h\n", t, n, v_post);
                end else begin
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
                end
                @(negedge clk) step = 1'b0;
            end
        end
        if (dumping) begin
            for (i = 0; i < 3; i = i + 1) $fclose(dump_fd[i]);
            $display("tb_if1: DUMPED: v_pre, spikes and v_post of %0d neurons over %0d timesteps x %0d samples",
                     N, T, B);
        end else
            $display("tb_if1: PASS: v_pre, spikes and v_post of %0d neurons equal refmodel's over %0d timesteps x %0d samples",
                     N, T, B);
        $finish;
    end
endmodule
