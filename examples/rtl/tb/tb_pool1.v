// Plain Verilog testbench of pool1_top. It replays the $readmemh files of refmodel export-hex:
// every timestep and sample it drives if1's spikes and Vm (v_pre or v_post, as pool1's vm_stage
// says) and compares the pooled spikes and the winner index with refmodel's. The first mismatch
// is printed as refmodel reports it, and the simulation fails (vvp exit status 1).
// Plusargs: +hex=DIR (export-hex output), +config_sha256=SHA256 (from its manifest.json).
`timescale 1ns / 1ps
`include "refmodel_params.vh"

module tb_pool1;
    localparam T = `REFMODEL_TIMESTEPS, B = `REFMODEL_BATCH;
    localparam N = `REFMODEL_pool1_IN_SIZE, M = `REFMODEL_pool1_OUT_SIZE;
    localparam HO = `REFMODEL_pool1_OUT_H, WO = `REFMODEL_pool1_OUT_W;
    localparam VB = `REFMODEL_if1_VM_BITS, PB = `REFMODEL_pool1_INDEX_BITS;

    reg [N*VB-1:0] vm;
    reg [N-1:0] spikes;
    wire [M-1:0] out;
    wire [M*PB-1:0] index;
    pool1_top dut (.vm(vm), .spikes(spikes), .out(out), .index(index));

    reg [VB-1:0] vm_hex [0:B*N-1];
    reg spikes_hex [0:B*N-1], out_hex [0:B*M-1];
    reg [PB-1:0] index_hex [0:B*M-1];
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
            $display("layer pool1, signal %0s: first mismatch at t=%0d n=%0d c=%0d y=%0d x=%0d: expected %0d, got %0d (%0d of %0d values differ)",
                     signal, t, n, first / (HO*WO), first / WO % HO, first % WO, first_expected, first_got, bad, M);
            fail;
        end
    endtask

    initial begin
        if (!$value$plusargs("hex=%s", dir) || !$value$plusargs("config_sha256=%h", config_sha256)) begin
            $display("tb_pool1: give +hex=DIR +config_sha256=SHA256");
            fail;
        end
        if (config_sha256 !== `REFMODEL_CONFIG_SHA256 || `REFMODEL_TIMESTEP_DIGITS != 4) begin
            $display("tb_pool1: the hex files (config sha256 %h) and refmodel_params.vh (%h) are not of one run",
                     config_sha256, `REFMODEL_CONFIG_SHA256);
            fail;
        end
        for (t = 0; t < T; t = t + 1) begin
            $readmemh(hex_file(`REFMODEL_if1_KEY, `REFMODEL_pool1_VM_STAGE == "pre" ? "v_pre" : "v_post", t), vm_hex);
            $readmemh(hex_file(`REFMODEL_if1_KEY, "spikes", t), spikes_hex);
            $readmemh(hex_file(`REFMODEL_pool1_KEY, "spikes", t), out_hex);
            $readmemh(hex_file(`REFMODEL_pool1_KEY, "index", t), index_hex);
            for (n = 0; n < B; n = n + 1) begin
                for (i = 0; i < N; i = i + 1) begin
                    vm[i*VB +: VB] = vm_hex[n*N + i];
                    spikes[i] = spikes_hex[n*N + i];
                end
                #1;
                bad = 0;
                for (i = 0; i < M; i = i + 1)
                    if (out[i] !== out_hex[n*M + i]) differ(i, out_hex[n*M + i], out[i]);
                verdict("spikes");
                for (i = 0; i < M; i = i + 1)
                    if (index[i*PB +: PB] !== index_hex[n*M + i]) differ(i, index_hex[n*M + i], index[i*PB +: PB]);
                verdict("index");
            end
        end
        $display("tb_pool1: PASS: spikes and index of %0d windows equal refmodel's over %0d timesteps x %0d samples",
                 M, T, B);
        $finish;
    end
endmodule
