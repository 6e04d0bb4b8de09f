// Plain Verilog testbench of pool1_top. It replays the $readmemh files of refmodel export-hex:
// every timestep and sample it drives if1's spikes and Vm (v_pre or v_post, as pool1's vm_stage
// says) and compares the pooled spikes and the winner index with refmodel's. The first mismatch
// is printed as refmodel reports it, and the simulation fails (exit status 1).
// Plusargs: +hex=DIR (export-hex output), +config_sha256=SHA256 (from its manifest.json),
// +dump=DIR (write spikes and index instead of comparing them: tb/replay.vh).
`timescale 1ns / 1ps
`include "refmodel_params.vh"

module tb_pool1;
    localparam T = `REFMODEL_TIMESTEPS, B = `REFMODEL_BATCH;
    localparam LAYER = "pool1", OUT_SIZE = `REFMODEL_pool1_OUT_SIZE;
    localparam OUT_H = `REFMODEL_pool1_OUT_H, OUT_W = `REFMODEL_pool1_OUT_W;
    localparam N = `REFMODEL_pool1_IN_SIZE, M = OUT_SIZE;
    localparam VB = `REFMODEL_if1_VM_BITS, PB = `REFMODEL_pool1_INDEX_BITS;

    reg [N*VB-1:0] vm;
    reg [N-1:0] spikes;
    wire [M-1:0] out;
    wire [M*PB-1:0] index;
    pool1_top dut (.vm(vm), .spikes(spikes), .out(out), .index(index));

    reg [VB-1:0] vm_hex [0:B*N-1];
    reg spikes_hex [0:B*N-1], out_hex [0:B*M-1];
    reg [PB-1:0] index_hex [0:B*M-1];
    integer dump_fd [0:1];
    `include "replay.vh"

    initial begin
        start;
        if (dumping) begin
            dump_open("spikes", dump_fd[0]);
            dump_open("index", dump_fd[1]);
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
                if (dumping) begin
                    $fwrite(dump_fd[0], "%0d %0d %h\n", t, n, out);
                    $fwrite(dump_fd[1], "%0d %0d %h\n", t, n, index);
                end else begin
                    bad = 0;
                    for (i = 0; i < M; i = i + 1)
                        if (out[i] !== out_hex[n*M + i]) differ(i, out_hex[n*M + i], out[i]);
                    verdict("spikes");
                    for (i = 0; i < M; i = i + 1)
                        if (index[i*PB +: PB] !== index_hex[n*M + i]) differ(i, index_hex[n*M + i], index[i*PB +: PB]);
                    verdict("index");
                end
            end
        end
        if (dumping) begin
            for (i = 0; i < 2; i = i + 1) $fclose(dump_fd[i]);
            $display("tb_pool1: DUMPED: spikes and index of %0d windows over %0d timesteps x %0d samples", M, T, B);
        end else
            $display("tb_pool1: PASS: spikes and index of %0d windows equal refmodel's over %0d timesteps x %0d samples",
                     M, T, B);
        $finish;
    end
endmodule
