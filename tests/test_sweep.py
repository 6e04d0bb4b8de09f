"""`refmodel sweep` (docs/sweep.md): planning (seeds, variants, settings checked before any
work), each job's file byte-identical to `refmodel gen --set ... --seed S`, the manifest (one
entry per job, also when a worker is killed mid-sweep), resumption, --rerun-failed, a DUT in
the loop (check_dut: its three outcomes, and the example RTL), the report."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refmodel.errors import LayerError, SpecError
from refmodel.generate import generate
from refmodel.spec import apply_settings, load_spec, parse_setting
from tests.test_cli_gen import RECIPE, refmodel

distributed = pytest.importorskip("distributed", reason="refmodel sweep needs dask[distributed] (the sweep extra)")

from refmodel import sweep  # noqa: E402
from refmodel.sweep_report import summary, write_plan  # noqa: E402

VARY = ["if1.threshold=8000,12000"]


# --------------------------------------------------------------------------- settings and planning
def test_settings_read_as_toml_values_else_as_text():
    assert parse_setting("if1.threshold=8000") == ("if1.threshold", 8000)
    assert parse_setting("conv1.overflow=WRAP") == ("conv1.overflow", "WRAP")
    assert parse_setting('conv1.overflow="SAT"') == ("conv1.overflow", "SAT")
    assert parse_setting("conv1.acc_format={bits = 12, frac = 1}") == ("conv1.acc_format", {"bits": 12, "frac": 1})
    assert parse_setting("stimulus.range=[0, 9]") == ("stimulus.range", [0, 9])
    for bad in ("if1.threshold", "=3", "if1.threshold="):
        with pytest.raises(SpecError, match="FIELD=VALUE"):
            parse_setting(bad)


def test_a_setting_is_the_spec_written_so(tmp_path):
    """--set of a field gives the file a spec edited by hand gives."""
    edited = tmp_path / RECIPE.name
    text = RECIPE.read_text()
    assert text.count("threshold = 12000") == 1
    edited.write_text(text.replace("threshold = 12000", "threshold = 8000"))
    (tmp_path / "conv_if_vmpool.npz").write_bytes((RECIPE.parent / "conv_if_vmpool.npz").read_bytes())
    generate(load_spec(edited), tmp_path / "edited.h5", seed=3)
    run = refmodel("gen", RECIPE, "--set", "if1.threshold=8000", "--seed", 3, "--out", tmp_path / "set.h5")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "set.h5").read_bytes() == (tmp_path / "edited.h5").read_bytes()


def test_settings_reach_nested_tables_and_the_stimulus_and_name_what_is_wrong():
    spec = load_spec(RECIPE, [("conv1.acc_format.bits", 12), ("stimulus.batch", 3)])
    assert spec.network.layer("conv1").acc_format.bits == 12 and spec.stimulus.batch == 3
    with pytest.raises(SpecError, match="if9.threshold = 1 names no layer; layers: conv1, if1"):
        load_spec(RECIPE, [("if9.threshold", 1)])
    with pytest.raises(SpecError, match=r"if1.vm.bits = 16 is not an inline table"):
        load_spec(RECIPE, [("if1.vm.bits.x", 1)])
    with pytest.raises(LayerError, match="layer 'if1': threshold = 'high'"):
        load_spec(RECIPE, [("if1.threshold", "high")])
    d = {"layers": [{"name": "a", "kind": "if"}]}
    assert apply_settings(d, [("a.threshold", 1)], "x")["layers"][0]["threshold"] == 1
    assert "threshold" not in d["layers"][0]  # the table given is left as it was


def test_seeds_and_variants():
    assert sweep.parse_seeds("0:4") == [0, 1, 2, 3] and sweep.parse_seeds("5,1") == [5, 1]
    for bad in ("4:4", "a:b", "1,1", "-1:2"):
        with pytest.raises(SpecError):
            sweep.parse_seeds(bad)
    variants = sweep.parse_vary(["if1.threshold=1,2", "conv1.acc_format={bits = 12, frac = 0},{bits = 16}"])
    assert variants == [(("if1.threshold", a), ("conv1.acc_format", f)) for a in (1, 2)
                        for f in ({"bits": 12, "frac": 0}, {"bits": 16})]
    assert sweep.parse_vary([]) == [()]
    for bad in (["if1.threshold="], ["if1.threshold=1", "if1.threshold=2"]):
        with pytest.raises(SpecError):
            sweep.parse_vary(bad)
    assert sweep.variant_name(variants[0]) == "if1.threshold=1+conv1.acc_format=_bits=12,frac=0_"
    assert sweep.variant_name(()) == "base"


def test_a_bad_variant_is_refused_before_anything_runs(tmp_path):
    run = refmodel("sweep", RECIPE, "--out", tmp_path / "s", "--seeds", "0:2", "--vary", "if1.threshold=100,99999")
    assert run.returncode == 2
    assert "layer 'if1': threshold = 99999 must be an integer in -32768..32767" in run.stderr
    assert not (tmp_path / "s").exists()


def test_the_directory_must_be_new_empty_or_a_sweeps(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    run = refmodel("sweep", RECIPE, "--out", tmp_path, "--seeds", "0:1")
    assert run.returncode == 2 and "holds files but no sweep.json" in run.stderr


# --------------------------------------------------------------------------- running on Dask
@pytest.fixture(scope="module")
def client():
    with sweep.dask_client(2) as c:
        yield c


def _serial_bytes(job, tmp_path) -> bytes:
    path = tmp_path / "serial" / job.file
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(load_spec(job.spec, job.settings), path, seed=job.seed, record=job.record, compression=job.compression)
    return path.read_bytes()


def _lines(directory):
    return [json.loads(line) for line in (directory / sweep.MANIFEST).read_text().splitlines()]


def test_a_sweep_survives_a_killed_worker_and_resumes_without_work(client, tmp_path):
    directory = tmp_path / "sweep"
    directory.mkdir()
    jobs = sweep.plan(RECIPE, range(8), sweep.parse_vary(VARY))
    assert len(jobs) == 16
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker(entry):
        if killed:
            return
        busy = [address for address, keys in client.processing().items() if keys and address in pids]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(busy[0])

    entries = sweep.run_sweep(jobs, directory, client, on_entry=kill_a_busy_worker)
    assert killed, "no worker was busy to kill"
    lines = _lines(directory)
    assert sorted(e["job"] for e in lines) == sorted(job.name for job in jobs)  # each job exactly once
    assert lines == [json.loads(json.dumps(e)) for e in entries]
    assert {e["result"] for e in lines} == {"generated"}
    for job in jobs:
        written = (directory / job.file).read_bytes()
        assert written == _serial_bytes(job, tmp_path), job.name
    deadline = time.monotonic() + 30
    while set(client.run(os.getpid).values()) == set(pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(client.run(os.getpid).values()) != set(pids.values())  # the killed worker was replaced
    assert sweep.pending(jobs, directory) == []
    (directory / jobs[3].file).write_bytes(b"damaged")
    assert sweep.pending(jobs, directory) == [jobs[3]]  # a file that is not the recorded one is redone


def test_a_failing_job_is_recorded_and_only_failures_rerun(client, tmp_path):
    """if1 saturates on every seed of the recipe: under overflow ERROR the run raises."""
    jobs = sweep.plan(RECIPE, [0, 1], sweep.parse_vary(["if1.overflow=SAT,ERROR"]))
    entries = sweep.run_sweep(jobs, tmp_path, client)
    results = {e["job"]: e["result"] for e in entries}
    assert results == {"if1.overflow=SAT/seed0": "generated", "if1.overflow=SAT/seed1": "generated",
                       "if1.overflow=ERROR/seed0": "refmodel_error", "if1.overflow=ERROR/seed1": "refmodel_error"}
    failed = next(e for e in entries if e["result"] == "refmodel_error")
    assert failed["error"].startswith("FixedOverflowError: IF 'if1': v[") and "under Overflow.ERROR" in failed["error"]
    assert not (tmp_path / failed["file"]).exists()
    assert sweep.pending(jobs, tmp_path) == []
    assert [job.name for job in sweep.pending(jobs, tmp_path, rerun_failed=True)] == \
        ["if1.overflow=ERROR/seed0", "if1.overflow=ERROR/seed1"]


def test_the_command_sweeps_resumes_and_reports(tmp_path):
    out = tmp_path / "sweep"
    args = ("sweep", RECIPE, "--out", out, "--seeds", "0:2", "--vary", *VARY, "--workers", 2)
    first = refmodel(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"sweep of 4 jobs into {out}: 0 done before, 4 to run\n")
    assert f"sweep {out}: 4 jobs of {RECIPE}: 4 generated" in first.stdout
    assert "coverage of 4 files, merged:" in first.stdout and "reachable bins hit" in first.stdout
    for seed in (0, 1):
        gen = refmodel("gen", RECIPE, "--set", "if1.threshold=8000", "--seed", seed, "--out", tmp_path / "g.h5")
        assert gen.returncode == 0
        assert (out / f"if1.threshold=8000/seed{seed}.h5").read_bytes() == (tmp_path / "g.h5").read_bytes()
    manifest = (out / sweep.MANIFEST).read_bytes()
    again = refmodel(*args)
    assert again.returncode == 0 and "4 done before, 0 to run" in again.stdout
    assert (out / sweep.MANIFEST).read_bytes() == manifest
    report = refmodel("sweep-report", out, "--html", tmp_path / "r.html")
    assert report.returncode == 0 and report.stdout.splitlines()[0] == first.stdout.splitlines()[1]
    assert "<h1>Functional coverage of sweep" in (tmp_path / "r.html").read_text()


def test_the_compression_reaches_the_files_and_the_job_key(tmp_path):
    fast, none = (sweep.plan(RECIPE, [0], [()], compression=c) for c in ("fast", "none"))
    assert fast[0].key != none[0].key  # a resume with another compression redoes the job
    out = tmp_path / "sweep"
    run = refmodel("sweep", RECIPE, "--out", out, "--seeds", "0", "--compression", "none", "--workers", 1)
    assert run.returncode == 0, run.stderr
    gen = refmodel("gen", RECIPE, "--seed", 0, "--compression", "none", "--out", tmp_path / "g.h5")
    assert gen.returncode == 0
    assert (out / "base/seed0.h5").read_bytes() == (tmp_path / "g.h5").read_bytes()


def test_the_report_counts_jobs_not_run_yet(tmp_path):
    jobs = sweep.plan(RECIPE, [0, 1], [()])
    write_plan(tmp_path, str(RECIPE), {}, jobs)
    entry = sweep.run_job(jobs[0], str(tmp_path))
    (tmp_path / sweep.MANIFEST).write_text(json.dumps(entry) + "\n" + '{"job": "cut sh')  # an interrupted line
    text, coverages, ok = summary(tmp_path)
    assert text.splitlines()[0] == f"sweep {tmp_path}: 2 jobs of {RECIPE}: 1 generated, 1 not run yet"
    assert not ok and len(coverages) == 1 and coverages[0][0].runs == 1


# --------------------------------------------------------------------------- a DUT in the loop
def _python(code: str) -> str:
    return f"{sys.executable} -c {json.dumps(code)}"


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    path = tmp_path_factory.mktemp("dut") / "golden.h5"
    generate(load_spec(RECIPE), path, seed=4)
    return path


def test_check_dut_with_an_output_file(golden):
    copy = _python("import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])") + " {vectors} {out}"
    assert sweep.check_dut(copy, golden) == {"result": "pass"}
    assert not golden.with_suffix(".dut.h5").exists()  # an equal DUT file is not kept
    edit = _python("import shutil, sys, h5py; from refmodel.vectors import reseal; shutil.copy(sys.argv[1], "
                   "sys.argv[2]); f = h5py.File(sys.argv[2], 'r+'); d = f['traces/001_if1/v_post']; "
                   "d[2, 1, 0, 0, 0] = d[2, 1, 0, 0, 0] + 1; f.close(); reseal(sys.argv[2])") + " {vectors} {out}"
    result = sweep.check_dut(edit, golden)
    assert result["result"] == "mismatch" and result["dut_file"] == "golden.dut.h5"
    assert result["first_mismatch"].startswith(
        "layer if1, signal v_post (traces/001_if1/v_post): first mismatch at t=2 n=1 c=0 y=0 x=0: expected ")
    nothing = _python("pass") + " {vectors} {out}"
    assert sweep.check_dut(nothing, golden) == {"result": "dut_error", "status": 0,
                                                "tail": "the DUT command wrote no golden.dut.h5"}
    crash = _python("import sys; print('boom'); sys.exit(3)") + " {vectors} {out}"
    assert sweep.check_dut(crash, golden) == {"result": "dut_error", "status": 3, "tail": "boom"}


def test_check_dut_self_checking(golden):
    assert sweep.check_dut(_python("import sys; assert sys.argv[1].endswith('golden.h5')") + " {vectors}",
                           golden) == {"result": "pass"}
    assert sweep.check_dut(_python("print('x'); print('first mismatch at t=1'); raise SystemExit(1)"), golden) == \
        {"result": "mismatch", "first_mismatch": "first mismatch at t=1"}
    assert sweep.check_dut(_python("raise SystemExit(2)"), golden)["result"] == "dut_error"
    binary = _python("import sys; sys.stdout.buffer.write(b'bad byte \\xff'); sys.exit(1)")  # not UTF-8
    assert sweep.check_dut(binary, golden) == {"result": "mismatch", "first_mismatch": "bad byte \ufffd"}


def test_a_hanging_dut_is_killed_with_its_children(golden):
    start = time.monotonic()
    result = sweep.check_dut("echo started; sleep 30 & wait", golden, timeout=0.5)
    assert time.monotonic() - start < 10
    assert result == {"result": "dut_error", "status": None, "tail": "killed after 0.5 s\nstarted"}


def test_a_terminated_sweep_keeps_what_finished_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", RECIPE, "--out", out, "--seeds", "0:40", "--workers", 2]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "refmodel.cli", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_read(out / sweep.MANIFEST).splitlines()) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and stderr.strip().splitlines()[-1] == "refmodel sweep: terminated"
    done = len(_lines(out))
    assert 2 <= done < 40
    again = refmodel(*args)
    assert again.returncode == 0 and f"{done} done before, {40 - done} to run" in again.stdout
    assert sorted(e["job"] for e in _lines(out)) == sorted(f"base/seed{s}" for s in range(40))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no half-written file survives


def _read(path) -> str:
    return path.read_text() if path.exists() else ""


RTL_DUT = Path(__file__).resolve().parents[1] / "examples" / "rtl" / "dut.py"
needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None and not os.environ.get("REFMODEL_REQUIRE_RTL"),
                                    reason="the example RTL runs under Icarus Verilog (Debian package iverilog)")


@needs_iverilog
@pytest.mark.parametrize("broken", [False, True], ids=["rtl", "broken-rtl"])
def test_the_example_rtl_in_the_loop(client, tmp_path, broken):
    """The example RTL (examples/rtl/dut.py) passes every job; with its deliberate bug (the Vm
    wraps instead of saturating) every job is a mismatch in if1, reported per job."""
    command = f"{sys.executable} {RTL_DUT}{' --broken' if broken else ''} {{vectors}} {{out}}"
    jobs = sweep.plan(RECIPE, [0, 1, 2], [()], check_cmd=command)
    entries = sweep.run_sweep(jobs, tmp_path, client)
    assert sorted(e["job"] for e in entries) == [f"base/seed{s}" for s in range(3)]
    for entry in entries:
        if not broken:
            assert entry["result"] == "pass" and entry["check"] == {"result": "pass"}
            assert not (tmp_path / "base" / f"seed{entry['seed']}.dut.h5").exists()
            continue
        assert entry["result"] == "mismatch", entry
        assert entry["check"]["first_mismatch"].startswith("layer if1, signal ")
        assert (tmp_path / "base" / entry["check"]["dut_file"]).is_file()
