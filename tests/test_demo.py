"""``refmodel demo`` end to end on a reduced setting (100 images, T up to 8)."""

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest

from refmodel import cost
from refmodel.cli import build_parser
from refmodel.convert import convert, quantize_input, to_network
from refmodel.demo import INPUT_FORMAT, VARIANTS, label, load_data, run_demo
from refmodel.spec import kind_of, load_spec, network_config
from refmodel.vectors import VectorFile
from tests.test_cli_gen import refmodel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("demo")
    text = io.StringIO()
    return run_demo(out=text, outdir=outdir, quick=True), text.getvalue(), outdir


def test_quick_demo_prints_the_tables_and_writes_its_files(quick):
    figures, text, outdir = quick
    assert figures["timesteps"] == (1, 2, 4, 8)
    assert "float ANN test accuracy" in text and "SNN test accuracy" in text and "synaptic ops" in text
    assert list(figures["variants"]) == [label(p, r) for p, r in VARIANTS]
    for name, res in figures["variants"].items():
        assert name in text
        assert set(res["accuracy"]) == set(res["synops"]) == {1, 2, 4, 8}
        assert res["overflows"] == 0 and res["vm_bits"] > 0
        assert res["counter_bits"] > 0 if name.startswith("count_gate") else res["counter_bits"] == 0
    with VectorFile(figures["vectors"]) as vf:
        assert (vf.timesteps, vf.batch) == (8, 4)
        assert vf.trace("fc_if", "v_post").shape[:2] == (8, 4)
    if importlib.util.find_spec("matplotlib"):
        assert figures["plot"] == outdir / "accuracy_vs_timesteps.png"
        assert figures["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert figures["plot"] is None and "matplotlib is not installed" in text


def test_accuracy_per_timestep_and_synops_match_separate_runs(quick):
    # Reading accuracy at T from one long run must equal a run of exactly T steps, and the
    # synaptic ops up to T_max must be refmodel.cost's measured synops of that run.
    figures, _, _ = quick
    model, data = load_data()
    layers, _ = convert(model, data["x_calib"][:, None] / 16.0, INPUT_FORMAT)
    x = quantize_input(data["x_test"][:100, None] / 16.0, INPUT_FORMAT)
    network = to_network(layers, model.input_shape, "pooled_neuron", count_bits=4, overflow="SAT")
    res = figures["variants"]["pooled_neuron"]
    for t in (2, 8):
        result = network.run(x, t)
        assert res["accuracy"][t] == float((result.prediction() == data["y_test"][:100]).mean())
    measured = cost.measure(result, x)
    first = measured.layers[0].measured["synops"]  # the analog first layer: dense MACs, left out
    assert res["synops"][8] == pytest.approx((measured.total().measured["synops"] - first) / 100)


def test_quick_demo_spec_is_the_vectors_network_and_refmodel_cost_prints_its_layers(quick, tmp_path):
    figures, text, _ = quick
    spec = figures["spec"]
    assert f"refmodel cost {spec} --timesteps 8" in text
    model, data = load_data()
    layers, _ = convert(model, data["x_calib"][:, None] / 16.0, INPUT_FORMAT)
    network = to_network(layers, model.input_shape, "count_gate", count_bits=4, overflow="SAT", name="digits_count_gate")
    loaded = load_spec(spec)
    assert network_config(loaded.network) == network_config(network)
    np.testing.assert_array_equal(loaded.arrays["digits"], quantize_input(data["x_test"][:4, None] / 16.0, INPUT_FORMAT))
    with VectorFile(figures["vectors"]) as vf:
        assert vf.config["network"] == network_config(network)
    gen = refmodel("gen", spec, "--out", tmp_path / "again.h5")
    assert gen.returncode == 0, gen.stderr
    assert (tmp_path / "again.h5").read_bytes() == figures["vectors"].read_bytes()
    run = refmodel("cost", spec, "--timesteps", 8)
    assert run.returncode == 0, run.stderr
    assert "cost of network 'digits_count_gate': T = 8 timesteps, batch N = 4; measured from a run" in run.stdout
    table = run.stdout.split("operations per sample and timestep (static bound)\n")[1].split("\n\n")[0]
    rows = [line.split()[:2] for line in table.splitlines()[1:]]
    assert rows[: len(network.layers)] == [[layer.name, kind_of(layer)] for layer in network.layers]


def test_demo_out_option():
    assert build_parser().parse_args(["demo", "--out", "here"]).out == "here"
    assert build_parser().parse_args(["demo"]).out == "refmodel-demo"
