"""The command line through a subprocess: every command's help, `refmodel gen` (vectors written,
deterministic bytes, clear errors, the progress bar) and `refmodel cost --from-vectors`.
``refmodel()`` runs the command line for the other CLI tests too."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refmodel.stimulus import make_stimulus
from refmodel.spec import load_spec
from refmodel.vectors import VectorFile

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "vectors" / "recipes" / "conv_if_vmpool.toml"
COMMANDS = ("demo", "gen", "inspect", "check", "export-hex", "export-sv", "export-vcd", "cost", "sweep", "sweep-report")


def refmodel(*args):
    """``refmodel ARGS...`` in a fresh interpreter: the CompletedProcess (text stdout and stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "refmodel.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT)


def test_help_lists_every_command_and_each_has_its_own():
    run = refmodel("--help")
    assert run.returncode == 0 and "``" not in run.stdout
    for command in COMMANDS:
        assert f"\n    {command} " in run.stdout or f"\n    {command}\n" in run.stdout
        sub = refmodel(command, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: refmodel {command}")
        description = sub.stdout.split("\n\n")[1]  # the paragraph after the usage lines
        assert not description.startswith(("positional arguments", "options")) and "``" not in sub.stdout


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


@pytest.mark.parametrize("choice", ["fast", "small", "none"])
def test_gen_is_byte_deterministic(tmp_path, choice):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert refmodel("gen", RECIPE, "--out", a, "--compression", choice).returncode == 0
    assert refmodel("gen", RECIPE, "--out", b, "--compression", choice).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    with VectorFile(a) as vf:
        assert vf.compression.startswith(f"{choice}: ")


def test_gen_files_of_every_compression_hold_the_same_run(tmp_path):
    for choice in ("fast", "small", "none"):
        assert refmodel("gen", RECIPE, "--out", tmp_path / f"{choice}.h5", "--compression", choice).returncode == 0
    assert refmodel("check", tmp_path / "none.h5", tmp_path / "fast.h5").returncode == 0
    assert refmodel("check", tmp_path / "none.h5", tmp_path / "small.h5").returncode == 0
    assert (tmp_path / "none.h5").stat().st_size > (tmp_path / "fast.h5").stat().st_size
    run = refmodel("gen", RECIPE, "--out", tmp_path / "x.h5", "--compression", "tiny")
    assert run.returncode == 2 and "invalid choice: 'tiny'" in run.stderr and not (tmp_path / "x.h5").exists()


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


@pytest.mark.parametrize("args, message", [
    (("gen", RECIPE, "--out", "/nonexistent/dir/v.h5"),
     "refmodel gen: error: /nonexistent/dir/v.h5: its directory /nonexistent/dir does not exist"),
    (("gen", RECIPE, "--out", "{tmp}/v.h5", "--timesteps", "0"), "argument --timesteps: must be in 1..16777216, got 0"),
    (("gen", RECIPE, "--out", "{tmp}/v.h5", "--batch", "-1"), "argument --batch: must be in 1..16777216, got -1"),
    (("gen", RECIPE, "--out", "{tmp}/v.h5", "--seed", "5000000000"),
     "argument --seed: must be in 0..4294967295, got 5000000000"),
    (("cost", RECIPE, "--static", "--timesteps", "0"), "argument --timesteps: must be in 1..16777216, got 0"),
    (("cost", "--static"), "refmodel cost: error: the cost needs SPEC, or --from-vectors FILE"),
])  # fmt: skip
def test_bad_arguments_and_unwritable_files_exit_2_with_one_line(tmp_path, args, message):
    run = refmodel(*(str(a).format(tmp=tmp_path) for a in args))
    assert run.returncode == 2 and run.stdout == "" and run.stderr.count("\n") == 1
    assert run.stderr.startswith(f"refmodel {args[0]}: error: ") and message in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_progress_bar(tmp_path):
    pytest.importorskip("tqdm", reason="the bar is tqdm's (extras sweep and test); without it there is none")
    run = refmodel("gen", RECIPE, "--out", tmp_path / "v.h5", "--timesteps", 3, "--progress")
    assert run.returncode == 0, run.stderr
    # tqdm's line, redrawn ("\r", read here as a newline) at the start, after timesteps (at most every 0.1 s) and
    # at the end
    draws = [(d.split("|")[0], d.split("|")[2].split()[0]) for d in run.stderr.strip("\n").split("\n")]
    assert draws[0] == ("conv_if_vmpool:   0%", "0/3") and draws[-1] == ("conv_if_vmpool: 100%", "3/3")
    assert set(draws) <= {(f"conv_if_vmpool: {p:>3}%", f"{t}/3") for t, p in enumerate((0, 33, 67, 100))}
    assert refmodel("gen", RECIPE, "--out", tmp_path / "w.h5", "--timesteps", 3).stderr == ""  # not a terminal


def test_without_tqdm_there_is_no_progress_bar(tmp_path):
    (tmp_path / "tqdm.py").write_text("raise ImportError('no tqdm here')\n")  # found before the installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = subprocess.run([sys.executable, "-m", "refmodel.cli", "gen", str(RECIPE), "--out", str(tmp_path / "v.h5"),
                          "--timesteps", "3", "--progress"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.startswith(f"wrote {tmp_path / 'v.h5'}: 3 timesteps")


def test_inspect_shows_spike_rates_without_recorded_traces(tmp_path):
    out = tmp_path / "v.h5"
    assert refmodel("gen", RECIPE, "--out", out, "--record", "none").returncode == 0
    spec = load_spec(RECIPE)
    stimulus = make_stimulus(spec, 2, 1).x  # the recipe's batch and seed
    result = spec.network.run(stimulus, 8)
    run = refmodel("inspect", out)
    assert run.returncode == 0, run.stderr
    assert "trace" not in run.stdout
    for layer in ("if1", "pool1"):
        assert f"spike rate {result.spike_rate(layer):.4f}" in run.stdout


def test_cost_from_a_vector_file_alone(tmp_path):
    out = tmp_path / "v.h5"
    assert refmodel("gen", RECIPE, "--out", out).returncode == 0
    alone, with_spec = refmodel("cost", "--from-vectors", out, "--format", "json"), \
        refmodel("cost", RECIPE, "--from-vectors", out, "--format", "json")
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == with_spec.stdout and '"measured_from"' in alone.stdout


def test_a_closed_output_pipe_ends_the_command_quietly(tmp_path):
    """`refmodel cost SPEC | head -1`: the reader goes after one line; no traceback, status 141."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-m", "refmodel.cli", "cost", str(RECIPE), "--static"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, cwd=ROOT) as process:
        process.stdout.close()  # the reader is gone before the command writes
        stderr = process.stderr.read()
    assert process.returncode == 141 and stderr == b""


def test_the_command_caps_the_openmp_spin_unless_set(monkeypatch, capsys):
    """cli.main sets GOMP_SPINCOUNT (cli.SPIN_COUNT) for Numba's OpenMP threads unless the
    environment sets it; importing refmodel sets nothing."""
    from refmodel import cli

    recipe = str(ROOT / "vectors" / "recipes" / "loihi_lif.toml")
    for given, expected in ((None, cli.SPIN_COUNT), ("77", "77")):
        if given is None:
            monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        else:
            monkeypatch.setenv("GOMP_SPINCOUNT", given)
        assert cli.main(["cost", recipe]) == 0 and "loihi_lif" in capsys.readouterr().out
        assert os.environ["GOMP_SPINCOUNT"] == expected
    code = "import os, refmodel.generate; print('GOMP_SPINCOUNT' in os.environ)"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout == "False\n"
