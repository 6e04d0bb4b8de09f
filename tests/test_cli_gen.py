"""`refmodel gen` through a subprocess: vectors written, deterministic bytes, clear errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from refmodel.vectors import VectorFile

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "vectors" / "recipes" / "conv_if_vmpool.toml"


def refmodel(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "refmodel.cli", *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_gen_writes_a_valid_file_with_the_overrides(tmp_path):
    out = tmp_path / "v.h5"
    run = refmodel("gen", RECIPE, "--out", out, "--timesteps", 3, "--batch", 1, "--seed", 7, "--record", "if1")
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and "spike rates: if1" in run.stdout
    with VectorFile(out) as vf:
        assert (vf.timesteps, vf.batch, vf.seed) == (3, 1, 7)
        assert vf.trace("if1", "spikes").shape == (3, 1, 4, 8, 8)
        assert set(np.unique(vf.trace("if1", "spikes"))) <= {0, 1}
        assert vf.config["record"] == ["if1.v_pre", "if1.v_post", "if1.spikes"]


def test_gen_is_byte_deterministic(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert refmodel("gen", RECIPE, "--out", a).returncode == 0
    assert refmodel("gen", RECIPE, "--out", b).returncode == 0
    assert a.read_bytes() == b.read_bytes()


def test_gen_refuses_bad_input_without_leaving_a_file(tmp_path):
    out = tmp_path / "v.h5"
    run = refmodel("gen", RECIPE, "--out", out, "--record", "if1.bogus")
    assert run.returncode == 2
    assert "record = 'if1.bogus' matches no signal" in run.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(RECIPE.read_text().replace('kind = "if"', 'kind = "iff"', 1).replace(
        'arrays = "conv_if_vmpool.npz"', f'arrays = "{RECIPE.parent / "conv_if_vmpool.npz"}"'))
    run = refmodel("gen", bad, "--out", out)
    assert run.returncode == 2 and "layer 'if1': kind = 'iff' must be one of" in run.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_help_lists_every_command():
    run = refmodel("--help")
    for command in ("gen", "inspect", "check", "export-hex", "demo"):
        assert command in run.stdout
    assert refmodel("gen", "--help").returncode == 0
