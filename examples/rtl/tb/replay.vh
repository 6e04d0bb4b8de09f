// What the plain Verilog testbenches share, `include-d inside the testbench module after it
// declares LAYER (the layer's name, a string) and OUT_H, OUT_W, OUT_SIZE (one sample's output
// shape): the plusargs +hex=DIR and +config_sha256=SHA256, export-hex file names, the
// first-mismatch report in refmodel's words (docs/rtl-flow.md §4) and the dump mode: with
// +dump=DIR a testbench compares nothing and writes each output it would compare to
// DIR/<layer>.<signal>.txt, one line "t n BUS" per timestep and sample (BUS: the packed output
// bus in hex, element k in bits [k*W +: W]).
    reg [8*1024-1:0] dir, dump_dir;
    reg [255:0] config_sha256;
    reg dumping;
    integer t, n, i, bad, first;
    reg signed [64:0] first_expected, first_got;

    task fail;
        begin
`ifdef __ICARUS__
            $finish_and_return(1);
`elsif VERILATOR
            $stop;  // which ends a Verilator simulation with exit status 1
`else
            $finish;
`endif
        end
    endtask

    task start;  // read the plusargs; refuse hex files of another run than the header's
        begin
            if (!$value$plusargs("hex=%s", dir) || !$value$plusargs("config_sha256=%h", config_sha256)) begin
                $display("tb_%0s: give +hex=DIR +config_sha256=SHA256", LAYER);
                fail;
            end
            if (config_sha256 !== `REFMODEL_CONFIG_SHA256 || `REFMODEL_TIMESTEP_DIGITS != 4) begin
                $display("tb_%0s: the hex files (config sha256 %h) and refmodel_params.vh (%h) are not of one run",
                         LAYER, config_sha256, `REFMODEL_CONFIG_SHA256);
                fail;
            end
            dumping = $value$plusargs("dump=%s", dump_dir);
        end
    endtask

    task dump_open(input [8*8-1:0] signal, output integer fd);  // open DIR/<layer>.<signal>.txt
        reg [8*1024-1:0] path;
        begin
            $sformat(path, "%0s/%0s.%0s.txt", dump_dir, LAYER, signal);
            fd = $fopen(path, "w");
            if (fd == 0) begin
                $display("tb_%0s: cannot write %0s", LAYER, path);
                fail;
            end
        end
    endtask

    function [8*1024-1:0] hex_file(input [8*16-1:0] layer_key, input [8*16-1:0] signal, input integer t);
        reg [8*1024-1:0] path;
        begin
            $sformat(path, "%0s/traces/%0s/%0s/t%04d.hex", dir, layer_key, signal, t);
            hex_file = path;
        end
    endfunction

    task differ(input integer i, input signed [64:0] expected, input signed [64:0] got);  // one value differs
        begin
            if (bad == 0) begin
                first = i;
                first_expected = expected;
                first_got = got;
            end
            bad = bad + 1;
        end
    endtask

    task verdict(input [8*8-1:0] signal);  // after comparing one signal of (t, n): fail on a mismatch
        if (bad) begin
            $display("layer %0s, signal %0s: first mismatch at t=%0d n=%0d c=%0d y=%0d x=%0d: expected %0d, got %0d (%0d of %0d values differ)",
                     LAYER, signal, t, n, first / (OUT_H*OUT_W), first / OUT_W % OUT_H, first % OUT_W,
                     first_expected, first_got, bad, OUT_SIZE);
            fail;
        end
    endtask
