#!/usr/bin/env bash
# Makes docs/images/export_vcd_gtkwave.png (docs/rtl-flow.md §7): refmodel export-vcd of the golden
# file conv_if_vmpool.h5, opened in GTKWave on a virtual X display (Xvfb) with a save file that
# opens the scopes and shows one pooling window's neurons (if1 c3 y2 x6..x7, pool1 c3 y1 x3),
# captured with ImageMagick's import.  Needs refmodel, gtkwave, xvfb and imagemagick
# (Debian: apt-get install gtkwave xvfb imagemagick).  Run from the repository's root.
set -euo pipefail
out=docs/images/export_vcd_gtkwave.png
work=$(mktemp -d)
trap 'kill "${gtkwave_pid:-}" "${xvfb_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
refmodel export-vcd vectors/golden/conv_if_vmpool.h5 "$work/waves.vcd"
top=conv_if_vmpool
# trace flags: 28 binary, 24 decimal, 424 signed decimal (GTKWave's TR_* bits, right-justified)
cat > "$work/waves.gtkw" <<EOF
[dumpfile] "waves.vcd"
[size] 1200 540
[pos] 0 0
[treeopen] $top.
[treeopen] $top.if1.
[treeopen] $top.if1.n0.
[sst_width] 190
[signals_width] 330
[sst_expanded] 1
[sst_vpaned_height] 290
@28
$top.clk
@24
$top.timestep
@424
$top.conv1.n0.current.c3_y2_x6[15:0]
$top.if1.n0.v_pre.c3_y2_x6[15:0]
@28
$top.if1.n0.spikes.c3_y2_x6
@424
$top.if1.n0.v_post.c3_y2_x6[15:0]
$top.if1.n0.v_pre.c3_y2_x7[15:0]
@28
$top.if1.n0.spikes.c3_y2_x7
@24
$top.pool1.n0.index.c3_y1_x3[1:0]
@28
$top.pool1.n0.spikes.c3_y1_x3
EOF
echo 'gtkwave::/Time/Zoom/Zoom_Best_Fit' > "$work/zoom.tcl"
echo 'hier_max_level 4' > "$work/gtkwaverc"
display=:$((90 + RANDOM % 100))
Xvfb "$display" -screen 0 1200x540x24 >/dev/null 2>&1 & xvfb_pid=$!
sleep 2
(cd "$work" && DISPLAY=$display exec gtkwave -r gtkwaverc -S zoom.tcl waves.vcd waves.gtkw >/dev/null 2>&1) &
gtkwave_pid=$!
sleep 8
DISPLAY=$display import -window root -colors 32 "PNG8:$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
