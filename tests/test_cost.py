"""The cost model: the seed papers' claims from first principles, measured counts against counts
taken independently from recorded spikes, vector files and the ``refmodel cost`` command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmodel import cost
from refmodel.fixed import QFormat
from refmodel.generate import generate
from refmodel.layers import (
    IF,
    LIF,
    AvgPool,
    Conv2d,
    CountGatePool,
    DualThreshold,
    Flatten,
    Linear,
    PooledNeuronPool,
    SumPool,
    WinnerSpikePool,
)
from refmodel.network import SPIKE, Network
from refmodel.spec import load_spec
from refmodel.vectors import VectorFile, VectorFileError, VectorWriter

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "vectors" / "recipes").glob("*.toml"))
W8, V16 = QFormat(8), QFormat(16)


def conv(name, k, c, kernel=3, **kw):
    return Conv2d(name, np.zeros((k, c, kernel, kernel), np.int8), W8, padding=kernel // 2, **kw)


def linear(name, k, f):
    return Linear(name, np.zeros((k, f), np.int8), W8)


def fc_head(features, widths):
    """Flatten, then Linear + IF per width, the last a readout (reset "none")."""
    layers = [Flatten("flat")]
    for i, k in enumerate(widths):
        last = i == len(widths) - 1
        reset = "none" if last else "subtract"
        layers += [linear(f"fc{i}", k, features), IF(name=f"fc{i}_if", vm=V16, threshold=100, reset=reset)]
        features = k
    return layers


# --------------------------------------------------------------------------- DT-SCNN (Lei et al. 2024)
DT_CONV = ((48, False), (128, True), (192, True), (192, False), (128, True))  # (channels, avg-pool after)
BASELINE_CONV = ((96, False), (256, True), (384, True), (384, False), (256, True))


def cifar_net(plan, dual):
    """3x3 convs (pad 1) on 32x32x3; a DT layer feeds 2C spike channels to the next conv."""
    layers, c_in, hw = [], 3, 32
    for i, (c, pool) in enumerate(plan):
        layers.append(conv(f"conv{i}", c, c_in))
        if dual:
            layers.append(DualThreshold(name=f"dt{i}", vm=V16, theta1=100, theta2=200, compare=">", reset="zero"))
        else:
            layers.append(IF(name=f"if{i}", vm=V16, threshold=100))
        c_in = 2 * c if dual else c
        if pool:
            layers.append(AvgPool(name=f"pool{i}", kernel=2, out_format=QFormat(3, 2, signed=False), rounding="TRN"))
            hw //= 2
    layers += fc_head(c_in * hw * hw, (1024, 1024, 10))
    return Network(layers, (3, 32, 32), QFormat(8, 0, signed=False), name="dt" if dual else "baseline")


def closed_form(plan, dual):
    """(conv weights, conv Vms, conv MACs per timestep) from the channel list alone."""
    c_in, hw, weights, vms, macs = 3, 32, 0, 0, 0
    for c, pool in plan:
        weights += 9 * c_in * c
        vms += c * hw * hw
        macs += 9 * c_in * c * hw * hw
        c_in = 2 * c if dual else c
        hw = hw // 2 if pool else hw
    return weights, vms, macs


def conv_figures(network):
    """(conv weights, Vms of the layers after convs, conv MACs per timestep, their compares)."""
    figures = cost.estimate(network)
    convs = [la for la in figures.layers if la.kind == "conv2d"]
    after = [figures.layers[i + 1] for i, la in enumerate(figures.layers) if la.kind == "conv2d"]
    return (
        sum(la.memory["weights"] for la in convs), sum(la.memory["neurons"] for la in after),
        sum(la.static["macs"] for la in convs), sum(la.static["threshold_compares"] for la in after),
    )  # fmt: skip


@pytest.fixture(scope="module")
def dt_and_baseline():
    return conv_figures(cifar_net(DT_CONV, True)), conv_figures(cifar_net(BASELINE_CONV, False))


def test_dt_scnn_halves_conv_weights_vms_and_macs(dt_and_baseline):
    dt, base = dt_and_baseline
    assert dt[:3] == closed_form(DT_CONV, True)
    assert base[:3] == closed_form(BASELINE_CONV, False)
    assert dt[:3] == (1_660_176, 249_856, 298_598_400)  # the issue: 1,660,176; 249,856; ~298.6 M
    assert base[:3] == (3_320_352, 499_712, 597_196_800)  # 3,320,352; 499,712; ~597.2 M
    assert all(2 * d == b for d, b in zip(dt[:3], base[:3]))
    assert dt[3] == 2 * dt[1] == base[3]  # two compares per DT neuron: the compares are not halved


# --------------------------------------------------------------------------- Vm max-pooling (Nguyen et al. 2020)
VGG = (64, 64, "pool", 128, 128, "pool", 256, 256, "pool")
COUNT_BITS = 8


def vgg_net(variant):
    """VGG-style CIFAR-10 net with max-pooling ``variant``: count_gate, winner_spike or pooled_neuron."""
    layers, c_in, hw = [], 3, 32
    for i, item in enumerate(VGG):
        if item == "pool":
            pool = {
                "count_gate": lambda: CountGatePool(name=f"pool{i}", kernel=2, count_bits=COUNT_BITS),
                "winner_spike": lambda: WinnerSpikePool(name=f"pool{i}", kernel=2),
                "pooled_neuron": lambda: PooledNeuronPool(name=f"pool{i}", kernel=2, threshold=100, vm=V16),
            }[variant]()
            layers.append(pool)
            hw //= 2
            continue
        layers.append(conv(f"conv{i}", item, c_in))
        before_pool = i + 1 < len(VGG) and VGG[i + 1] == "pool"
        reset = "none" if variant == "pooled_neuron" and before_pool else "subtract"
        layers.append(IF(name=f"if{i}", vm=V16, threshold=100, reset=reset))
        c_in = item
    layers += fc_head(c_in * hw * hw, (512, 10))
    return Network(layers, (3, 32, 32), QFormat(8, 0, signed=False), name=variant)


@pytest.fixture(scope="module")
def vgg_costs():
    return {v: cost.estimate(vgg_net(v)).total() for v in ("count_gate", "winner_spike", "pooled_neuron")}


def test_vm_max_pooling_needs_no_counters(vgg_costs):
    pooled_inputs, c_in, hw = 0, 3, 32  # neurons feeding a pool, from the channel list
    for item in VGG:
        if item == "pool":
            pooled_inputs += c_in * hw * hw
            hw //= 2
        else:
            c_in = item
    assert pooled_inputs == 64 * 32 * 32 + 128 * 16 * 16 + 256 * 8 * 8 == 114_688
    gate, winner, pooled = vgg_costs["count_gate"], vgg_costs["winner_spike"], vgg_costs["pooled_neuron"]
    assert gate.memory["counter_bits"] == COUNT_BITS * pooled_inputs == 917_504
    assert winner.memory["counter_bits"] == pooled.memory["counter_bits"] == 0
    assert gate.static["counter_increments"] == pooled_inputs
    assert gate.static["counter_read_bits"] == gate.static["counter_write_bits"] == COUNT_BITS * pooled_inputs
    # everything else is stored alike: the saving is exactly the counters
    for key in cost.MEMORY:
        if key != "counter_bits":
            assert gate.memory[key] == winner.memory[key] == pooled.memory[key], key
    windows = pooled_inputs // 4
    assert gate.static["pool_ops"] == winner.static["pool_ops"] == pooled.static["pool_ops"] == 3 * windows
    assert pooled.static["threshold_compares"] == winner.static["threshold_compares"] + windows
    state = {v: sum(c.memory[k] for k in ("vm_bits", "counter_bits", "spike_buffer_bits"))
             for v, c in vgg_costs.items()}  # the docs' table:
    assert state == {"count_gate": 4_739_754, "winner_spike": 3_822_250, "pooled_neuron": 3_822_250}


# --------------------------------------------------------------------------- measured = counted from traces
def naive_fan_out(layer, shape):
    """Outgoing synapses of every input neuron, by walking every output and kernel tap."""
    if isinstance(layer, Linear):
        return np.full(shape, layer.weight.shape[0])
    c, h, w = shape
    k, cg, kh, kw = layer.weight.shape
    (sy, sx), (py, px) = layer.stride, layer.padding
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    out = np.zeros(shape, np.int64)
    for ko in range(k):
        group = ko // (k // layer.groups)
        for ci in range(cg):
            for oy in range(ho):
                for ox in range(wo):
                    for i in range(kh):
                        for j in range(kw):
                            y, x = oy * sy + i - py, ox * sx + j - px
                            if 0 <= y < h and 0 <= x < w:
                                out[group * cg + ci, y, x] += 1
    return out


@given(
    c=st.integers(1, 3), groups=st.sampled_from([1, 2]), k_per_group=st.integers(1, 3),
    h=st.integers(3, 7), w=st.integers(3, 7), kh=st.integers(1, 3), kw=st.integers(1, 3),
    sy=st.integers(1, 3), sx=st.integers(1, 3), py=st.integers(0, 2), px=st.integers(0, 2),
)  # fmt: skip
def test_fan_out_equals_walking_every_tap(c, groups, k_per_group, h, w, kh, kw, sy, sx, py, px):
    weight = np.zeros((k_per_group * groups, c, kh, kw), np.int8)
    layer = Conv2d("c", weight, W8, stride=(sy, sx), padding=(py, px), groups=groups)
    shape = (c * groups, h, w)
    np.testing.assert_array_equal(cost.fan_out(layer, shape), naive_fan_out(layer, shape))


def rand_w(rng, shape, lo=-6, hi=10):
    return rng.integers(lo, hi, shape).astype(np.int8)


def small_nets(rng):
    """Two small spiking nets covering every event-driven count: count gating, DT, groups and
    strides, a pooled neuron, a sum pool feeding a conv, a Linear after Flatten."""
    a = Network([
        Conv2d("conv1", rand_w(rng, (6, 2, 3, 3)), W8, padding=1),
        IF(name="if1", vm=V16, threshold=20),
        CountGatePool(name="pool1", kernel=2, count_bits=3),
        Conv2d("conv2", rand_w(rng, (4, 3, 3, 3), 0, 8), W8, stride=2, padding=1, groups=2),
        DualThreshold(name="dt2", vm=V16, theta1=3, theta2=12),
        Flatten("flat"),
        Linear("fc", rand_w(rng, (5, 32)), W8),
        IF(name="readout", vm=V16, threshold=1000, reset="none", overflow="SAT"),
    ], (2, 9, 9), SPIKE, name="a")  # fmt: skip
    vm = QFormat(12)
    b = Network([
        Conv2d("conv1", rand_w(rng, (3, 1, 2, 3), 0, 6), W8, padding=(0, 1)),
        IF(name="if1", vm=vm, threshold=2047, reset="none", overflow="SAT"),
        PooledNeuronPool(name="pool1", kernel=2, threshold=8, vm=vm, overflow="SAT"),
        Conv2d("conv2", rand_w(rng, (4, 3, 3, 3), 0, 8), W8, padding=1),
        LIF(name="lif2", vm=vm, threshold=10, leak="shift", leak_shift=2),
        SumPool(name="pool2", kernel=(1, 2), out_format=QFormat(2, 0, signed=False)),
        Conv2d("conv3", rand_w(rng, (2, 4, 2, 2)), W8),
        IF(name="if3", vm=vm, threshold=5),
        Flatten("flat"),
        Linear("fc", rand_w(rng, (3, 2 * 2 * 1)), W8),
        IF(name="readout", vm=QFormat(16), threshold=1000, reset="none", overflow="SAT"),
    ], (1, 8, 8), SPIKE, name="b")  # fmt: skip
    return a, b


@pytest.mark.parametrize("which", [0, 1])
def test_measured_counts_equal_counts_from_recorded_spikes(which):
    rng = np.random.default_rng(7 + which)
    network = small_nets(rng)[which]
    T, N = 6, 3
    stimulus = rng.integers(0, 2, (T, N, *network.input_shape)).astype(np.uint8)
    result = network.run(stimulus, T, record="spikes")
    measured = cost.measure(result, stimulus)
    assert (measured.timesteps, measured.batch, measured.measured_from) == (T, N, "run")

    def spikes_into(i):  # every spike (or sum-pool value) entering layer i, per input neuron, over T and N
        j = i - 1
        while j >= 0 and isinstance(network.layers[j], Flatten):
            j -= 1
        arr = stimulus if j < 0 else result.traces[(network.layers[j].name, "spikes")]
        return arr.astype(np.int64).sum(axis=(0, 1)).reshape(network.shapes[i][0])

    seen = set()
    for i, layer in enumerate(network.layers):
        got = measured.layer(layer.name).measured
        if isinstance(layer, (Conv2d, Linear)):
            expected = int((spikes_into(i) * naive_fan_out(layer, network.shapes[i][0])).sum())
            assert expected > 0, layer.name  # the test net is active
            assert got["synops"] == expected, layer.name
            assert got["event_weight_read_bits"] == expected * 8
            seen.add("synops")
        if isinstance(layer, CountGatePool):
            spikes = int(spikes_into(i).sum())
            assert got["counter_increments"] == spikes > 0
            assert got["counter_write_bits"] == spikes * layer.count_bits
            seen.add("counter")
        if isinstance(layer, PooledNeuronPool):
            fired = int(result.traces[(layer.name, "spikes")].sum())
            assert got["vm_write_bits"] == fired * 4 * 12 > 0
            seen.add("pooled")
    assert seen == ({"synops", "counter"} if which == 0 else {"synops", "pooled"})
    check_bounds(measured)


def check_bounds(figures):
    """measured <= static bound x T x N; equal for every figure that does not depend on spikes."""
    event_driven = {"synops", "event_weight_read_bits", "counter_increments", "counter_write_bits", "vm_write_bits"}
    runs = figures.timesteps * figures.batch
    for la in figures.layers:
        for key in cost.PER_STEP:
            bound = la.static[key] * runs
            assert 0 <= la.measured[key] <= bound, (la.name, key)
            if key not in event_driven:
                assert la.measured[key] == bound, (la.name, key)


def test_analog_first_layer_counts_dense_macs():
    spec = load_spec(ROOT / "vectors" / "recipes" / "conv_if_vmpool.toml")
    figures = cost.measure_spec(spec, timesteps=3)
    conv1 = figures.layer("conv1")
    assert conv1.static["synops"] == conv1.static["macs"] == 4 * 8 * 8 * 1 * 9
    assert conv1.measured["synops"] == conv1.static["macs"] * 3 * spec.stimulus.batch
    check_bounds(figures)


def test_static_formulas_of_one_layer_of_each_kind():
    net = small_nets(np.random.default_rng(0))[1]
    figures = cost.estimate(net, timesteps=4)
    conv1, if1, pool1 = (figures.layer(n) for n in ("conv1", "if1", "pool1"))
    assert conv1.static["macs"] == 3 * 7 * 8 * (1 * 2 * 3)  # outputs x fan-in
    assert conv1.static["synops"] == int(naive_fan_out(net.layers[0], (1, 8, 8)).sum())
    assert conv1.memory["weight_bits"] == 18 * 8 and conv1.memory["bias_bits"] == 0
    assert if1.memory == {**dict.fromkeys(cost.MEMORY, 0), "neurons": 168, "vm_bits": 168 * 12}
    assert if1.static["vm_read_bits"] == if1.static["vm_write_bits"] == 168 * 12
    windows = 3 * 3 * 4
    assert pool1.static["pool_ops"] == 3 * windows and pool1.static["threshold_compares"] == windows
    assert pool1.memory["spike_buffer_bits"] == windows
    assert figures.layer("lif2").static["leak_ops"] == 4 * 3 * 4
    assert figures.layer("lif2").memory["spike_buffer_bits"] == 0  # the sum pool consumes it in place
    assert figures.layer("pool2").memory["spike_buffer_bits"] == 4 * 3 * 2 * 2  # 2-bit sums
    assert figures.layer("conv3").static["synops"] == 2 * int(naive_fan_out(net.layers[6], (4, 3, 2)).sum())
    total = figures.total()
    assert total.static["macs"] == sum(la.static["macs"] for la in figures.layers)
    assert total.measured is None and figures.measured_from is None
    dual = DualThreshold(name="dt", vm=V16, theta1=1, theta2=2, leak="shift", leak_shift=1, refractory=5)
    dt = cost.estimate(Network([linear("fc", 3, 4), dual], (4,), SPIKE)).layer("dt")
    assert dt.static["threshold_compares"] == 6 and dt.static["leak_ops"] == 3
    assert dt.memory["refractory_bits"] == 3 * 3 and dt.memory["spike_buffer_bits"] == 6
    dual = DualThreshold(name="dt", vm=V16, theta1=1, theta2=2)
    pooled = Network([conv("c", 3, 1), dual, WinnerSpikePool(name="p", kernel=2)], (1, 4, 6), SPIKE)
    assert cost.estimate(pooled).layer("p").static["pool_ops"] == 3 * 2 * 3 * 3  # one argmax per Vm window


def test_outputs_are_integers_in_every_format():
    spec = load_spec(RECIPES[0])
    figures = cost.measure_spec(spec)
    data = json.loads(figures.to_json())
    assert data == json.loads(json.dumps(figures.to_dict()))
    assert data["total"]["measured"] == figures.total().measured
    rows = figures.to_csv().splitlines()
    assert rows[0] == "layer,kind,section,quantity,value"
    assert len(rows) == 1 + (len(figures.layers) + 1) * (2 * len(cost.PER_STEP) + len(cost.MEMORY))
    assert all(int(row.rsplit(",", 1)[1]) >= 0 for row in rows[1:])
    table = figures.to_table()
    assert all(la.name in table for la in figures.layers) and "static bound x T x N" in table
    with pytest.raises(cost.CostError, match="timesteps = 0"):
        cost.estimate(spec.network, timesteps=0)


# --------------------------------------------------------------------------- vector files
@pytest.fixture(scope="module")
def count_gate_file(tmp_path_factory):
    spec = load_spec(ROOT / "vectors" / "recipes" / "count_gate.toml")
    path = tmp_path_factory.mktemp("cost") / "count_gate.h5"
    generate(spec, path)
    return spec, path


def test_vector_files_store_the_measured_cost(count_gate_file):
    spec, path = count_gate_file
    with VectorFile(path) as vf:
        stored = vf.cost()
        from_traces = cost.measure_vectors(spec.network, vf)
    assert stored == cost.measure_spec(spec).sections()
    assert from_traces.sections() == stored
    assert from_traces.measured_from == str(path)
    check_bounds(from_traces)


def test_measure_vectors_refuses_what_it_cannot_measure(count_gate_file, tmp_path):
    spec, path = count_gate_file
    with VectorFile(path) as vf:
        with pytest.raises(cost.CostError, match="timesteps = 3 differs"):
            cost.measure_vectors(spec.network, vf, timesteps=3)
        with pytest.raises(cost.CostError, match="not generated from this network"):
            cost.measure_vectors(load_spec(ROOT / "vectors" / "recipes" / "dt_t1.toml").network, vf)
    bare = tmp_path / "bare.h5"
    generate(spec, bare, record=["if1.v_pre"])
    with VectorFile(bare) as vf, pytest.raises(cost.CostError, match="layer 'if1': spikes"):
        cost.measure_vectors(spec.network, vf)


def test_reading_the_cost_refuses_foreign_members(count_gate_file, tmp_path):
    import shutil

    import h5py

    for member, value, message in (("cost/static/000_conv1", 1.5, "'x' = 1.5 is not an integer"),
                                   ("cost/static/999_ghost", 1, "is not the group of a layer")):
        path = tmp_path / "foreign.h5"
        shutil.copy(count_gate_file[1], path)
        with h5py.File(path, "a") as h5:
            h5.require_group(member).attrs["x"] = value
        with VectorFile(path) as vf, pytest.raises(VectorFileError, match=message):
            vf.cost()


def test_write_cost_refuses_non_integers(tmp_path):
    writer = VectorWriter(tmp_path / "x.h5", config={}, seed=0, timesteps=1, batch=1)
    try:
        writer.add_layer("l", "if", input_shape=(1,), output_shape=(1,))
        with pytest.raises(VectorFileError, match="cost/static/l: macs"):
            writer.write_cost({"static": {"l": {"macs": 1.5}}})
        with pytest.raises(VectorFileError, match="unknown layer"):
            writer.write_cost({"static": {"m": {"macs": 1}}})
    finally:
        writer.abort()


# --------------------------------------------------------------------------- command line
def refmodel(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "refmodel.cli", "cost", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_cli_prints_the_table_of_every_recipe(recipe):
    out = refmodel(recipe)
    assert out.returncode == 0, out.stderr
    network = load_spec(recipe).network
    assert all(f"\n{layer.name} " in out.stdout for layer in network.layers)
    assert "measured over the run" in out.stdout and "\ntotal " in out.stdout


def test_cli_formats_and_sources(count_gate_file):
    spec, path = count_gate_file
    out = refmodel(spec.path, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(cost.measure_spec(spec).to_json())
    out = refmodel(spec.path, "--static", "--timesteps", "5", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout == cost.estimate(spec.network, 5).to_csv()
    out = refmodel(spec.path, "--from-vectors", path, "--format", "json")
    with VectorFile(path) as vf:
        assert json.loads(out.stdout) == json.loads(cost.measure_vectors(spec.network, vf).to_json())
    out = refmodel(ROOT / "vectors" / "recipes" / "dt_t1.toml", "--from-vectors", path)
    assert out.returncode == 2 and "not generated from this network" in out.stderr
