"""The inspect, check and export-hex commands, run through a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_vectors import N, T, sample_data, write_sample

ROOT = Path(__file__).parents[1]


def refmodel(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "refmodel.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    write_sample(tmp / "golden.h5")
    d = sample_data()
    d["conv1/v_pre"][3, 1, 1, 2, 0] += 1
    d["conv1/spikes"][4, 0, 0, 1, 1] ^= 1
    write_sample(tmp / "dut.h5", d)
    return tmp


def test_help_lists_every_command():
    out = refmodel("--help")
    assert out.returncode == 0
    for command in ("inspect", "check", "export-hex", "demo"):
        assert command in out.stdout
    for command in ("inspect", "check", "export-hex"):
        sub = refmodel(command, "--help")
        assert sub.returncode == 0 and f"usage: refmodel {command}" in sub.stdout


def test_inspect(files):
    out = refmodel("inspect", files / "golden.h5")
    assert out.returncode == 0, out.stderr
    assert f"seed 7, timesteps {T}, batch {N}" in out.stdout
    assert "0 conv1 (conv) (1, 4, 4) -> (2, 4, 4)" in out.stdout
    assert "param weight (2, 1, 3, 3) s8.4 [co ci ky kx]" in out.stdout
    spikes = sample_data()["conv1/spikes"]
    assert f"trace spikes (5, 2, 2, 4, 4) u1.0 [t n c y x]  spike rate {spikes.mean():.4f}" in out.stdout
    saturation = sample_data()["saturation"]
    assert f"count saturation: total {saturation.sum()}, max {saturation.max()} per timestep" in out.stdout


def test_check_equal(files):
    out = refmodel("check", files / "golden.h5", files / "golden.h5")
    assert (out.returncode, out.stderr) == (0, "") and "equals" in out.stdout


def test_check_reports_first_mismatch_and_counts(files):
    out = refmodel("check", files / "golden.h5", files / "dut.h5")
    assert out.returncode == 1, out.stderr
    v = int(sample_data()["conv1/v_pre"][3, 1, 1, 2, 0])
    assert (f"first mismatch: layer conv1, signal v_pre (traces/000_conv1/v_pre): first mismatch at "
            f"t=3 n=1 c=1 y=2 x=0: expected {v}, got {v + 1} (1 of 320 values differ)") in out.stdout
    assert "traces/000_conv1/spikes: 1 of 320" in out.stdout and "traces/000_conv1/v_pre: 1 of 320" in out.stdout


def test_check_unreadable_file_exits_2(files, tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    out = refmodel("check", files / "golden.h5", tmp_path / "bad.h5")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("refmodel check: error: ") and "bad.h5" in out.stderr
    assert refmodel("check", files / "golden.h5", tmp_path / "none.h5").returncode == 2


def test_export_hex(files, tmp_path):
    out = refmodel("export-hex", files / "golden.h5", tmp_path / "hex")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "hex" / "manifest.json").read_text())
    assert f"wrote {len(manifest['files'])} hex files" in out.stdout
    assert all((tmp_path / "hex" / e["file"]).is_file() for e in manifest["files"])
    again = refmodel("export-hex", files / "golden.h5", tmp_path / "hex")
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
