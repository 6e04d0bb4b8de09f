"""The cost model: the seed papers' claims from first principles, measured counts against counts
taken independently from recorded spikes, vector files and the ``refmodel cost`` command."""

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmodel import cost
from refmodel.errors import PlacedError
from refmodel.fixed import QFormat
from refmodel.generate import generate
from refmodel.stimulus import make_stimulus
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
from refmodel.testing import POOL_KINDS, networks, stimuli
from refmodel.vectors import VectorFile, VectorFileError, VectorWriter
from tests.test_cli_gen import refmodel

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


#: The rows of the DT-SCNN table in docs/cost-model.md: (label, figure).
DT_ROWS = (
    ("weights", "weights"), ("weight bits (8-bit)", "weight_bits"), ("Vms (neurons)", "neurons"),
    ("Vm bits (16-bit)", "vm_bits"), ("MACs per timestep", "macs"),
    ("dense weight reads per timestep (bits)", "weight_read_bits"),
    ("Vm reads (= writes) per timestep (bits)", "vm_read_bits"),
    ("threshold compares per timestep", "threshold_compares"), ("spike buffer bits (conv part)", "spike_buffer_bits"),
)  # fmt: skip


def closed_form(plan, dual):
    """The conv part's figures per sample from the channel list alone: 3x3 taps (padding
    included in the MACs), 8-bit weights, 16-bit Vms read and written once per timestep, one
    compare per threshold, and a spike buffer after every conv stage holding its spikes (1 bit)
    or, after a pool, its 3-bit avg codes."""
    c_in, hw = 3, 32
    f = dict.fromkeys((key for _, key in DT_ROWS), 0)
    for c, pool in plan:
        c_out = 2 * c if dual else c  # spike channels
        f["weights"] += 9 * c_in * c
        f["neurons"] += c * hw * hw
        f["macs"] += 9 * c_in * c * hw * hw
        f["threshold_compares"] += (2 if dual else 1) * c * hw * hw
        if pool:
            hw //= 2
        f["spike_buffer_bits"] += (3 if pool else 1) * c_out * hw * hw
        c_in = c_out
    f["weight_bits"], f["weight_read_bits"] = 8 * f["weights"], 8 * f["macs"]
    f["vm_bits"] = f["vm_read_bits"] = 16 * f["neurons"]
    return f


def conv_figures(network):
    """The DT table's figures of ``network``'s conv part (the layers before the Flatten)."""
    layers = cost.estimate(network).layers
    part = layers[: [la.kind for la in layers].index("flatten")]
    figures = {}
    for _, key in DT_ROWS:
        section = "memory" if key in cost.MEMORY else "static"
        figures[key] = sum(getattr(la, section)[key] for la in part)
    assert figures["vm_read_bits"] == sum(la.static["vm_write_bits"] for la in part)
    return figures


def markdown_table(header, rows):
    """A markdown table as docs/cost-model.md writes it: first column left, the others right."""
    lines = [header, ("---",) + (("---:",) * (len(header) - 1))] + list(rows)
    lines = ["|" + "|".join(cell if set(cell) <= set("-:") else f" {cell} " for cell in line) + "|" for line in lines]
    return "\n".join(lines)


def doc_text():
    return (ROOT / "docs" / "cost-model.md").read_text()


@pytest.fixture(scope="module")
def dt_and_baseline():
    return conv_figures(cifar_net(DT_CONV, True)), conv_figures(cifar_net(BASELINE_CONV, False))


def test_dt_scnn_halves_conv_weights_vms_and_macs(dt_and_baseline):
    dt, base = dt_and_baseline
    assert dt == closed_form(DT_CONV, True)
    assert base == closed_form(BASELINE_CONV, False)
    headline = ("weights", "neurons", "macs")
    assert [dt[k] for k in headline] == [1_660_176, 249_856, 298_598_400]  # the issue: 1,660,176; 249,856; ~298.6 M
    assert [base[k] for k in headline] == [3_320_352, 499_712, 597_196_800]  # 3,320,352; 499,712; ~597.2 M
    for key in ("weights", "weight_bits", "neurons", "vm_bits", "macs", "weight_read_bits", "vm_read_bits"):
        assert 2 * dt[key] == base[key], key
    # two compares per DT neuron, and both hand 2C channels on: compares and buffers are not halved
    assert dt["threshold_compares"] == 2 * dt["neurons"] == base["threshold_compares"]
    assert dt["spike_buffer_bits"] == base["spike_buffer_bits"]


def test_docs_show_the_dt_scnn_table(dt_and_baseline):
    dt, base = dt_and_baseline
    rows = [(label, f"{dt[key]:,}", f"{base[key]:,}", str(Fraction(dt[key], base[key]))) for label, key in DT_ROWS]
    table = markdown_table(("conv layers, per sample", "DT-SCNN", "baseline", "DT / baseline"), rows)
    assert table in doc_text(), table


# --------------------------------------------------------------------------- Vm max-pooling (Nguyen et al. 2020)
VGG = (64, 64, "pool", 128, 128, "pool", 256, 256, "pool")
VGG_HEAD = (512, 10)  # FC widths, the last a readout
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
    layers += fc_head(c_in * hw * hw, VGG_HEAD)
    return Network(layers, (3, 32, 32), QFormat(8, 0, signed=False), name=variant)


VARIANTS = ("count_gate", "winner_spike", "pooled_neuron")
#: The rows of the Vm max-pooling table in docs/cost-model.md: (label, figure).
VGG_ROWS = (
    ("counter bits (one {bits}-bit counter per pooled input neuron, {pooled:,})", "counter_bits"),
    ("Vm bits", "vm_bits"), ("spike buffer bits", "spike_buffer_bits"),
    ("state bits (Vm + counters + spike buffers)", "state_bits"),
    ("counter increments per timestep (bound)", "counter_increments"),
    ("counter reads per timestep (bits, bound)", "counter_read_bits"),
    ("counter writes per timestep (bits, bound)", "counter_write_bits"),
    ("pool compares per timestep", "pool_ops"), ("threshold compares per timestep", "threshold_compares"),
    ("Vm write bits per timestep (bound)", "vm_write_bits"),
)  # fmt: skip


def vgg_closed_form(variant):
    """The table's figures from the layer list alone: a 16-bit Vm per neuron (convs and
    the FC head), one 8-bit counter per input neuron of a count-gated pool, incremented, read
    and written every timestep; 3 compares per 2x2 window, the pooled neuron's threshold
    compare per window and its write-back of the window's 4 Vms; a spike buffer after every
    stage a pool does not consume (the readout's output is its Vm, not a spike buffer)."""
    neurons = pooled = buffer = 0
    c, hw = 3, 32
    for item, following in zip(VGG, VGG[1:] + (None,)):
        if item == "pool":
            pooled += c * hw * hw
            hw //= 2
            buffer += c * hw * hw
        else:
            c = item
            neurons += c * hw * hw
            buffer += 0 if following == "pool" else c * hw * hw
    neurons += sum(VGG_HEAD)
    buffer += sum(VGG_HEAD[:-1])
    windows = pooled // 4
    gate, pooled_neuron = variant == "count_gate", variant == "pooled_neuron"
    counters = COUNT_BITS * pooled if gate else 0
    return {
        "counter_bits": counters, "vm_bits": 16 * neurons, "spike_buffer_bits": buffer,
        "state_bits": 16 * neurons + counters + buffer, "counter_increments": pooled if gate else 0,
        "counter_read_bits": counters, "counter_write_bits": counters, "pool_ops": 3 * windows,
        "threshold_compares": neurons + (windows if pooled_neuron else 0),
        "vm_write_bits": 16 * neurons + (windows * 4 * 16 if pooled_neuron else 0),
    }  # fmt: skip


def vgg_figures(total):
    """The table's figures from a network's total cost."""
    figures = {key: {**total.memory, **total.static}.get(key) for _, key in VGG_ROWS}
    figures["state_bits"] = sum(total.memory[k] for k in ("vm_bits", "counter_bits", "spike_buffer_bits"))
    return figures


@pytest.fixture(scope="module")
def vgg_costs():
    return {v: cost.estimate(vgg_net(v)).total() for v in VARIANTS}


def test_vm_max_pooling_needs_no_counters(vgg_costs):
    figures = {v: vgg_figures(vgg_costs[v]) for v in VARIANTS}
    for v in VARIANTS:
        assert figures[v] == vgg_closed_form(v), v
    gate, winner, pooled = (figures[v] for v in VARIANTS)
    pooled_inputs = 64 * 32 * 32 + 128 * 16 * 16 + 256 * 8 * 8  # the neurons feeding the three pools
    assert gate["counter_bits"] == COUNT_BITS * pooled_inputs == 917_504
    assert winner["counter_bits"] == pooled["counter_bits"] == 0
    # everything else is stored alike: the saving is exactly the counters
    for key in cost.MEMORY:
        if key != "counter_bits":
            assert len({vgg_costs[v].memory[key] for v in VARIANTS}) == 1, key
    assert gate["state_bits"] - winner["state_bits"] == gate["counter_bits"]
    assert winner["counter_read_bits"] == winner["counter_write_bits"] == winner["counter_increments"] == 0


def test_docs_show_the_vm_max_pooling_table(vgg_costs):
    figures = {v: vgg_figures(vgg_costs[v]) for v in VARIANTS}
    gate = figures["count_gate"]
    labels = {"bits": COUNT_BITS, "pooled": gate["counter_increments"]}
    rows = [(label.format(**labels), *(f"{figures[v][key]:,}" for v in VARIANTS)) for label, key in VGG_ROWS]
    table = markdown_table(("per sample", "count gating", "winner spike (Vm)", "pooled neuron (Vm)"), rows)
    assert table in doc_text(), table
    saving = (f"saves the {gate['counter_bits']:,} counter bits — {gate['counter_bits'] / gate['state_bits']:.1%} of "
              f"the count-gated network's state and a quarter ({gate['counter_bits'] / gate['vm_bits']:.1%}) of its Vm")
    assert saving in " ".join(doc_text().split()), saving


# --------------------------------------------------------------------------- measured = counted from traces
def walk_taps(layer, shape):
    """(outgoing synapses of every input neuron, multiply-accumulates of one forward pass with
    the taps on the padding), by walking every output and kernel tap."""
    fan_out, macs = np.zeros(shape, np.int64), 0
    if isinstance(layer, Linear):
        for _ in range(layer.weight.shape[0]):
            for f in range(shape[0]):
                fan_out[f] += 1
                macs += 1
        return fan_out, macs
    c, h, w = shape
    k, cg, kh, kw = layer.weight.shape
    (sy, sx), (py, px) = layer.stride, layer.padding
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    for ko in range(k):
        group = ko // (k // layer.groups)
        for ci in range(cg):
            for oy in range(ho):
                for ox in range(wo):
                    for i in range(kh):
                        for j in range(kw):
                            macs += 1
                            y, x = oy * sy + i - py, ox * sx + j - px
                            if 0 <= y < h and 0 <= x < w:
                                fan_out[group * cg + ci, y, x] += 1
    return fan_out, macs


@given(
    c=st.integers(1, 3), groups=st.sampled_from([1, 2]), k_per_group=st.integers(1, 3),
    h=st.integers(3, 7), w=st.integers(3, 7), kh=st.integers(1, 3), kw=st.integers(1, 3),
    sy=st.integers(1, 3), sx=st.integers(1, 3), py=st.integers(0, 2), px=st.integers(0, 2),
)  # fmt: skip
def test_fan_out_equals_walking_every_tap(c, groups, k_per_group, h, w, kh, kw, sy, sx, py, px):
    weight = np.zeros((k_per_group * groups, c, kh, kw), np.int8)
    layer = Conv2d("c", weight, W8, stride=(sy, sx), padding=(py, px), groups=groups)
    shape = (c * groups, h, w)
    np.testing.assert_array_equal(layer.fan_out(shape), walk_taps(layer, shape)[0])


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


def counted_from_traces(network, traces, stimulus, timesteps):
    """The event-driven figures of a run, counted from its recorded (T, N, ...) spike traces:
    ``{layer: {quantity: int}}``.  A synaptic layer does |v| accumulates per input value v and
    outgoing synapse (on an analog network input: every MAC of every timestep); a count-gated
    pool increments one counter per input spike; a pooled neuron that fires writes its
    window's Vms back."""
    per_step = stimulus.ndim == 2 + len(network.input_shape)
    values = stimulus if per_step else np.broadcast_to(stimulus, (timesteps, *stimulus.shape))
    dense = network.input_format != QFormat(1, 0, signed=False)  # an analog input
    counted = {}
    for i, layer in enumerate(network.layers):
        shape_in = network.shapes[i][0]
        if isinstance(layer, (Conv2d, Linear)):
            fan_out, macs = walk_taps(layer, shape_in)
            if dense:
                synops = macs * values.shape[0] * values.shape[1]
            else:
                magnitudes = np.abs(values.astype(np.int64)).sum(axis=(0, 1)).reshape(shape_in)
                synops = int((magnitudes * fan_out).sum())
            counted[layer.name] = {"synops": synops, "event_weight_read_bits": synops * layer.weight_format.bits}
            dense = False
        elif isinstance(layer, CountGatePool):
            spikes = int(values.astype(np.int64).sum())
            counted[layer.name] = {"counter_increments": spikes, "counter_write_bits": spikes * layer.count_bits}
        elif isinstance(layer, PooledNeuronPool):
            fired = int(traces[(layer.name, "spikes")].astype(np.int64).sum())
            kh, kw = layer.kernel
            counted[layer.name] = {"vm_write_bits": fired * kh * kw * layer.vm.bits}
        if not isinstance(layer, (Conv2d, Linear, Flatten)):
            values = traces[(layer.name, "spikes")]
    return counted


def check_measured(result, stimulus):
    """``cost.measure`` of a run recorded with its spikes: counts == counted_from_traces, the rest == static x T x N."""
    measured = cost.measure(result, stimulus)
    assert (measured.timesteps, measured.batch, measured.measured_from) == (result.timesteps, result.batch, "run")
    counted = counted_from_traces(result.network, result.traces, stimulus, result.timesteps)
    for name, quantities in counted.items():
        for key, value in quantities.items():
            assert measured.layer(name).measured[key] == value, (name, key)
    check_bounds(measured)
    return counted


@pytest.mark.parametrize("which", [0, 1])
def test_measured_counts_equal_counts_from_recorded_spikes(which):
    rng = np.random.default_rng(7 + which)
    network = small_nets(rng)[which]
    T, N = 6, 3
    stimulus = rng.integers(0, 2, (T, N, *network.input_shape)).astype(np.uint8)
    counted = check_measured(network.run(stimulus, T, record="spikes"), stimulus)
    # the hand-built nets are active: every count they exercise is non-zero
    assert all(value > 0 for quantities in counted.values() for value in quantities.values()), counted
    pools = {"counter_increments", "counter_write_bits"} if which == 0 else {"vm_write_bits"}
    assert {key for quantities in counted.values() for key in quantities} == {"synops", "event_weight_read_bits"} | pools


@settings(max_examples=20)
@given(networks(max_stages=2), st.integers(1, 3), st.data())
def test_measured_counts_of_random_networks_equal_counts_from_their_traces(network, timesteps, data):
    """Analog and spike inputs, every neuron kind (LoihiLIF included), Flatten, a final synapse."""
    stimulus = data.draw(stimuli(network, timesteps))
    check_measured(network.run(stimulus, timesteps, record="spikes"), stimulus)


@pytest.mark.parametrize("pool", POOL_KINDS)
@settings(max_examples=4)
@given(timesteps=st.integers(1, 3), data=st.data())
def test_measured_counts_after_each_pool_kind_equal_counts_from_traces(pool, timesteps, data):
    network = data.draw(networks(max_stages=2, image=True, pool_kinds=(pool,)))
    assume(any(getattr(layer, "kind", None) == pool for layer in network.layers))
    stimulus = data.draw(stimuli(network, timesteps))
    check_measured(network.run(stimulus, timesteps, record="spikes"), stimulus)


def test_a_sum_wrapped_to_a_negative_code_counts_its_magnitude():
    """A signed 2-bit sum pool under WRAP turns a window of 4, 3, 2, 1 spikes into 0, -1, -2, 1:
    the next layer still does |code| accumulates per synapse (bound: |min_int| = 2 per input)."""
    one = np.ones((1, 1, 1, 1), np.int8)
    network = Network([
        Conv2d("conv", one, W8), IF(name="if1", vm=V16, threshold=1),
        SumPool(name="pool", kernel=2, out_format=QFormat(2), overflow="WRAP"),
        Flatten("flat"), Linear("fc", np.ones((3, 1), np.int8), W8),
        IF(name="readout", vm=V16, threshold=100, reset="none"),
    ], (1, 2, 2), SPIKE, name="wrap")  # fmt: skip
    spikes = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], np.uint8).reshape(4, 1, 1, 2, 2)
    result = network.run(spikes, 4, record="spikes")
    assert result.traces[("pool", "spikes")].ravel().tolist() == [0, -1, -2, 1]
    assert check_measured(result, spikes)["fc"]["synops"] == 3 * (0 + 1 + 2 + 1)
    assert cost.estimate(network).layer("fc").static["synops"] == 3 * 2
    # without the trace, the summed codes (-2) cannot give Σ|code|: measure reruns the network
    unrecorded = network.run(spikes, 4)
    assert unrecorded.spike_counts["pool"].sum() == -2
    assert cost.measure(unrecorded, spikes).layer("fc").measured["synops"] == 12


WRAP_SPEC = """
name = "wrap"
input_shape = [1, 2, 2]
input_format = {bits = 1, frac = 0, signed = false}
stimulus = {encoding = "random", format = {bits = 8, frac = 8, signed = false}, batch = 2, timesteps = 6, seed = 1}
layers = [
  {kind = "conv2d", name = "conv", weight = [[[[1]]]], weight_format = {bits = 8}},
  {kind = "if", name = "if1", vm = {bits = 16}, threshold = 1},
  {kind = "sum", name = "pool", kernel = 2, out_format = {bits = 2, frac = 0, signed = true}, overflow = "WRAP"},
  {kind = "flatten", name = "flat"},
  {kind = "linear", name = "fc", weight = [[1], [1], [1]], weight_format = {bits = 8}},
  {kind = "if", name = "readout", vm = {bits = 16}, threshold = 100, reset = "none"},
]
"""


def test_wrapped_codes_are_counted_from_a_spec_and_a_vector_file(tmp_path):
    (tmp_path / "wrap.toml").write_text(WRAP_SPEC)
    spec = load_spec(tmp_path / "wrap.toml")
    figures = cost.measure_spec(spec)
    stim = spec.stimulus
    spikes = make_stimulus(spec, stim.batch, stim.seed).run(stim.timesteps)
    result = spec.network.run(spikes, stim.timesteps, record="spikes")
    assert result.traces[("pool", "spikes")].min() < 0  # the stimulus does wrap some sums
    counted = check_measured(result, spikes)
    assert figures.layer("fc").measured["synops"] == counted["fc"]["synops"]
    generate(spec, tmp_path / "wrap.h5")
    with VectorFile(tmp_path / "wrap.h5") as vf:
        assert vf.cost() == figures.sections() == cost.measure_vectors(spec.network, vf).sections()


def test_generate_counts_wrapped_codes_in_its_one_run(tmp_path, monkeypatch):
    """Without the pool's trace in the file, generate sums Σ|code| as the run goes: the network
    runs once, and the file's cost is the cost measured from the recorded trace."""
    (tmp_path / "wrap.toml").write_text(WRAP_SPEC)
    spec = load_spec(tmp_path / "wrap.toml")
    runs = []
    run = Network.run
    monkeypatch.setattr(Network, "run", lambda self, *a, **k: runs.append(k.get("record")) or run(self, *a, **k))
    generate(spec, tmp_path / "none.h5", record="none")
    assert len(runs) == 1
    monkeypatch.undo()
    with VectorFile(tmp_path / "none.h5") as vf:
        assert vf.record == () and vf.cost() == cost.measure_spec(spec).sections()


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
    assert conv1.static["synops"] == int(walk_taps(net.layers[0], (1, 8, 8))[0].sum())
    assert conv1.memory["weight_bits"] == 18 * 8 and conv1.memory["bias_bits"] == 0
    assert if1.memory == {**dict.fromkeys(cost.MEMORY, 0), "neurons": 168, "vm_bits": 168 * 12}
    assert if1.static["vm_read_bits"] == if1.static["vm_write_bits"] == 168 * 12
    windows = 3 * 3 * 4
    assert pool1.static["pool_ops"] == 3 * windows and pool1.static["threshold_compares"] == windows
    assert pool1.memory["spike_buffer_bits"] == windows
    assert figures.layer("lif2").static["leak_ops"] == 4 * 3 * 4
    assert figures.layer("lif2").memory["spike_buffer_bits"] == 0  # the sum pool consumes it in place
    assert figures.layer("pool2").memory["spike_buffer_bits"] == 4 * 3 * 2 * 2  # 2-bit sums
    assert figures.layer("conv3").static["synops"] == 2 * int(walk_taps(net.layers[6], (4, 3, 2))[0].sum())
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


def test_a_vm_readout_has_no_spike_buffer():
    """Only the last layer with reset "none" outputs its Vm; a spiking last layer, or an
    integrator inside the network, hands its spikes on through a buffer."""
    def net(last_reset):
        layers = [linear("fc1", 3, 4), IF(name="if1", vm=V16, threshold=5, reset="none"),
                  linear("fc2", 2, 3), IF(name="out", vm=V16, threshold=5, reset=last_reset)]  # fmt: skip
        return cost.estimate(Network(layers, (4,), SPIKE))

    for reset, buffer in (("none", 0), ("subtract", 2)):
        figures = net(reset)
        assert figures.layer("if1").memory["spike_buffer_bits"] == 3
        assert figures.layer("out").memory["spike_buffer_bits"] == buffer, reset
        assert figures.layer("out").memory["vm_bits"] == 2 * 16


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


def cost_error(call, *args, **kwargs) -> PlacedError:
    with pytest.raises(PlacedError) as err:
        call(*args, **kwargs)
    return err.value


def test_errors_name_the_network_the_field_and_the_value():
    network = load_spec(RECIPES[0]).network
    for field, value in (("timesteps", 0), ("batch", True), ("timesteps", 2.0)):
        err = cost_error(cost.estimate, network, **{field: value})
        assert str(err) == f"network {network.name!r}: {field} = {value!r} must be an integer >= 1"
        assert (err.place, err.layer, err.field, err.value) == ("network", network.name, field, value)


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
        err = cost_error(cost.measure_vectors, spec.network, vf, timesteps=3)
        assert str(err) == f"network 'count_gate': timesteps = 3 differs from the vector file's T = {vf.timesteps}"
        assert (err.place, err.layer, err.field, err.value) == ("network", "count_gate", "timesteps", 3)
        err = cost_error(cost.measure_vectors, load_spec(ROOT / "vectors" / "recipes" / "dt_t1.toml").network, vf)
        assert str(err) == f"network 'dt_t1': vector file = {vf.path!r} was not generated from this network (configs differ)"
    bare = tmp_path / "bare.h5"
    generate(spec, bare, record=["if1.v_pre"])
    with VectorFile(bare) as vf:
        err = cost_error(cost.measure_vectors, spec.network, vf)
        assert str(err) == f"layer 'if1': record = 'if1.spikes' is not in {vf.path} (the measured cost counts these outputs: record them)"
        assert (err.place, err.layer, err.field, err.value) == ("layer", "if1", "record", "if1.spikes")


def test_reading_the_cost_refuses_foreign_members(count_gate_file, tmp_path):
    import shutil

    import h5py

    from refmodel.vectors import reseal

    for member, value, message in (("cost/static/000_conv1", 1.5, "attribute 'x' is a float64; vector file "
                                                                   "attributes are integers and strings"),
                                   ("cost/static/999_ghost", 1, "unexpected group /cost/static/999_ghost")):
        path = tmp_path / "foreign.h5"
        shutil.copy(count_gate_file[1], path)
        with h5py.File(path, "a") as h5:
            h5.require_group(member).attrs["x"] = value
        if isinstance(value, int):
            reseal(path)  # an edit on purpose: the reader refuses what it adds, not the digest
        with pytest.raises(VectorFileError, match=message):
            VectorFile(path)
    for name, value, message in (("macs", np.array([1], np.int64), r"attribute 'macs' must be an int64 array of \d+ "
                                                                    r"figures, one per layer, got array\(\[1\]\)"),
                                 ("layers", "000_conv1 999_ghost", "attribute 'layers' = '000_conv1 999_ghost' must "
                                                                   "name distinct layer groups")):
        path = tmp_path / "malformed.h5"
        shutil.copy(count_gate_file[1], path)
        with h5py.File(path, "a") as h5:
            h5["cost/measured"].attrs[name] = value
        reseal(path)
        with VectorFile(path) as vf, pytest.raises(VectorFileError, match="/cost/measured " + message):
            vf.cost()


def test_write_cost_refuses_non_integers(tmp_path):
    writer = VectorWriter(tmp_path / "x.h5", config={}, seed=0, timesteps=1, batch=1)
    try:
        writer.add_layer("l", "if", input_shape=(1,), output_shape=(1,))
        with pytest.raises(VectorFileError, match="cost/static/l: macs"):
            writer.write_cost({"static": {"l": {"macs": 1.5}}})
        with pytest.raises(VectorFileError, match="unknown layer"):
            writer.write_cost({"static": {"m": {"macs": 1}}})
        writer.add_layer("m", "if", input_shape=(1,), output_shape=(1,))
        with pytest.raises(VectorFileError, match="cost/static: layer 'm' has no 'synops' .every layer of a section"):
            writer.write_cost({"static": {"l": {"macs": 1, "synops": 2}, "m": {"macs": 1}}})
        with pytest.raises(VectorFileError, match="cost/static: the quantity name 'layers' is reserved"):
            writer.write_cost({"static": {"l": {"layers": 1}}})
    finally:
        writer.abort()


# --------------------------------------------------------------------------- command line
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_cli_prints_the_table_of_every_recipe(recipe):
    out = refmodel("cost", recipe)
    assert out.returncode == 0, out.stderr
    network = load_spec(recipe).network
    assert all(f"\n{layer.name} " in out.stdout for layer in network.layers)
    assert "measured over the run" in out.stdout and "\ntotal " in out.stdout


def test_cli_formats_and_sources(count_gate_file):
    spec, path = count_gate_file
    out = refmodel("cost", spec.path, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(cost.measure_spec(spec).to_json())
    out = refmodel("cost", spec.path, "--static", "--timesteps", "5", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout == cost.estimate(spec.network, 5).to_csv()
    out = refmodel("cost", spec.path, "--from-vectors", path, "--format", "json")
    with VectorFile(path) as vf:
        assert json.loads(out.stdout) == json.loads(cost.measure_vectors(spec.network, vf).to_json())
    out = refmodel("cost", ROOT / "vectors" / "recipes" / "dt_t1.toml", "--from-vectors", path)
    assert out.returncode == 2 and "not generated from this network" in out.stderr
