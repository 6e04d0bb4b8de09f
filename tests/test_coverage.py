"""Functional coverage (docs/coverage.md): Network.run(..., coverage=True) against its twin
(tests/oracle/coverage.py, which counts every bin again from the network twin's run) on random
chain and graph networks; unreachable bins never hit; coverage changes no result; hand-built
networks whose hits are derived by hand in each test; merging runs; the network input's bins."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refmodel.coverage import Coverage, input_coverage
from refmodel.encode import make_encoder
from refmodel.fixed import QFormat
from refmodel.layers import (
    IF,
    LIF,
    Add,
    AvgPool,
    Conv2d,
    CountGatePool,
    DualThreshold,
    Linear,
    LoihiLIF,
    PooledNeuronPool,
    SumPool,
    WinnerSpikePool,
)
from refmodel.network import Network
from refmodel.testing import POOL_KINDS, assert_bit_exact, graph_networks, networks, stimuli
from tests.oracle import coverage as twin_coverage
from tests.oracle import network as twin

S8, S16 = QFormat(8), QFormat(16)
SPIKES = QFormat(1, 0, signed=False)
W2 = QFormat(2)  # weights -2..1: enough for identity weights


# --------------------------------------------------------------------------- Network.run == twin
def assert_coverage_equals_twin(network, stimulus, timesteps):
    """Every layer, bin and channel of ``Network.run(coverage=True)`` equals the twin's count;
    every bin refmodel proves unreachable has no hit; returns the run."""
    result = network.run(stimulus, timesteps, coverage=True)
    expected = twin_coverage.count(network, twin.run(network, stimulus, timesteps))
    got = result.coverage.layers
    assert list(got) == list(expected), f"layers with bins: refmodel {list(got)}, twin {list(expected)}"
    for name, bins in expected.items():
        layer = got[name]
        assert layer.kind == network.layer(name).kind
        assert set(layer.hits) == set(bins), f"layer {name!r}: bins {sorted(layer.hits)} != doc's {sorted(bins)}"
        assert list(layer.hits) == list(bins), f"layer {name!r}: bins not in the doc's order"
        for b, counts in bins.items():
            assert layer.hits[b].dtype == np.int64
            assert_bit_exact(np.array(counts, np.int64), layer.hits[b], layer=name, signal=b, axes=("c",))
        for b, why in layer.unreachable.items():
            assert sum(bins[b]) == 0, f"layer {name!r} bin {b!r} marked unreachable ({why}) has {bins[b]} hits"
    return result


@settings(max_examples=80)
@given(networks(errors=False), st.integers(1, 5), st.data())
def test_chains_equal_twin(network, timesteps, data):
    assert_coverage_equals_twin(network, data.draw(stimuli(network, timesteps)), timesteps)


@pytest.mark.parametrize("pool", POOL_KINDS)
@settings(max_examples=12)
@given(timesteps=st.integers(2, 5), data=st.data())
def test_chains_with_each_pool_equal_twin(pool, timesteps, data):
    """Pools follow image stages only: make sure each variant is drawn."""
    network = data.draw(networks(image=True, max_stages=2, pool_kinds=(pool,), errors=False))
    assume(any(layer.kind == pool for layer in network.layers))
    assert_coverage_equals_twin(network, data.draw(stimuli(network, timesteps)), timesteps)


@settings(max_examples=40)
@given(graph_networks(errors=False), st.integers(1, 4), st.data())
def test_graphs_equal_twin(network, timesteps, data):
    assert_coverage_equals_twin(network, data.draw(stimuli(network, timesteps)), timesteps)


@settings(max_examples=40)
@given(st.one_of(networks(max_stages=2, errors=False), graph_networks(errors=False)), st.integers(1, 4), st.data())
def test_coverage_changes_no_result(network, timesteps, data):
    """The same traces, overflows, spike counts and outputs with and without coverage; without
    it the Result holds none."""
    stimulus = data.draw(stimuli(network, timesteps))
    plain = network.run(stimulus, timesteps, record="all")
    covered = network.run(stimulus, timesteps, record="all", coverage=True)
    assert plain.coverage is None and isinstance(covered.coverage, Coverage) and covered.coverage.runs == 1
    assert list(plain.traces) == list(covered.traces)
    for key, values in plain.traces.items():
        assert_bit_exact(values, covered.traces[key], layer=key[0], signal=key[1])
    assert_bit_exact(plain.overflows, covered.overflows, signal="overflows", axes=("t", "layer"))
    assert set(plain.spike_counts) == set(covered.spike_counts)
    for name, counts in plain.spike_counts.items():
        assert_bit_exact(counts, covered.spike_counts[name], layer=name, signal="spike_count")
    assert set(plain.outputs) == set(covered.outputs)
    for name, values in plain.outputs.items():
        assert_bit_exact(values, covered.outputs[name], signal=name)


# --------------------------------------------------------------------------- hand-built networks
def covered(network, stimulus, timesteps):
    """The run's Coverage, after checking that the twin counts the same (a second opinion: the
    expected values of each test are derived by hand)."""
    return assert_coverage_equals_twin(network, np.asarray(stimulus, np.int64), timesteps).coverage


def hits(coverage, layer) -> dict:
    """{bin: [hits per channel]} of ``layer``."""
    return {b: c.tolist() for b, c in coverage.layers[layer].hits.items()}


def driven(neuron, currents, input_format=S8, acc=None):
    """``neuron`` fed exactly ``currents`` (T, C) through an identity linear layer (sample 0);
    returns the run's Coverage."""
    currents = np.asarray(currents, np.int64)
    channels = currents.shape[1]
    fc = Linear(name="fc", weight=np.eye(channels, dtype=np.int64), weight_format=W2, acc_format=acc,
                overflow="SAT")
    network = Network([fc, neuron], (channels,), input_format)
    return covered(network, currents[:, None, :], len(currents))


def imaged(neuron, pool, currents, input_format=S8):
    """``neuron`` then ``pool`` over a (C, H, W) map fed exactly ``currents`` (T, C, H, W) (an
    identity 1x1 conv); returns the run's Coverage."""
    currents = np.asarray(currents, np.int64)
    channels = currents.shape[1]
    conv = Conv2d(name="conv", weight=np.eye(channels, dtype=np.int64).reshape(channels, channels, 1, 1),
                  weight_format=W2)
    network = Network([conv, neuron, pool], currents.shape[1:], input_format)
    return covered(network, currents[:, None], len(currents))


def test_if_lands_on_its_threshold():
    """θ = (4, 5), ">=", subtract.  Channel 0, currents 4 2 2 3 1 0: V = 4* (fire, 0), 2, 4* (0),
    3, 4* (0), 0: on θ 3 times.  Channel 1, currents 1 every step: V = 1 2 3 4 5* (0) 1: once."""
    layer = IF(name="n", vm=S8, threshold=(4, 5), overflow="SAT")
    cov = driven(layer, [[4, 1], [2, 1], [2, 1], [3, 1], [1, 1], [0, 1]])
    got = hits(cov, "n")
    assert got["v_at_threshold"] == [3, 1]
    assert got["v_sat_high"] == got["v_sat_low"] == [0, 0]  # V stays in -128..127
    unreachable = cov.layers["n"].unreachable
    assert {b: unreachable[b] for b in ("v_wrap_high", "v_wrap_low")} == {"v_wrap_high": "overflow is SAT",
                                                                          "v_wrap_low": "overflow is SAT"}
    assert unreachable["v_min_clamped"] == "no v_min"
    assert unreachable["reset_to_value"] == "reset is 'subtract'"
    assert unreachable["refractory_start"] == unreachable["refractory_end"] == "refractory is 0"
    assert {"v_sat_high", "v_sat_low", "v_at_threshold"}.isdisjoint(unreachable)
    assert ("n", "v_sat_high") in cov.holes() and ("n", "v_at_threshold") not in cov.holes()


# s4 holds -8..7.  Currents 5 5 3 -20 -1 9 from V = 0, θ = 7 (reset none):
#   SAT:  5, 10 > 7 -> 7 (high), 10 -> 7 (high), -13 < -8 -> -8 (low), -9 -> -8 (low), 1:  V = 7 twice
#   WRAP: 5, 10 -> -6 (high), -3, -23 -> -7 (low: -23 + 16), -8 (in range), 1
CURRENTS_S4 = [[5], [5], [3], [-20], [-1], [9]]


@pytest.mark.parametrize("overflow, expected", [
    ("SAT", {"v_sat_high": 2, "v_sat_low": 2, "v_wrap_high": 0, "v_wrap_low": 0, "v_at_threshold": 2}),
    ("WRAP", {"v_sat_high": 0, "v_sat_low": 0, "v_wrap_high": 1, "v_wrap_low": 1, "v_at_threshold": 0}),
])  # fmt: skip
def test_vm_register_overflows_high_and_low(overflow, expected):
    cov = driven(IF(name="n", vm=QFormat(4), threshold=7, reset="none", overflow=overflow), CURRENTS_S4)
    assert {b: sum(c) for b, c in hits(cov, "n").items() if b in expected} == expected
    other = "wrap" if overflow == "SAT" else "sat"
    unreachable = cov.layers["n"].unreachable
    assert all(unreachable[f"v_{other}_{side}"] == f"overflow is {overflow}" for side in ("high", "low"))


def test_sat_sym_excludes_the_most_negative_code():
    """A current of -8 into s4 from V = 0: SAT holds -8, SAT_SYM (-7..7) does not (one low write)."""
    sat = driven(IF(name="n", vm=QFormat(4), threshold=7, reset="none", overflow="SAT"), [[-8]])
    sym = driven(IF(name="n", vm=QFormat(4), threshold=7, reset="none", overflow="SAT_SYM"), [[-8]])
    assert (sat.hit("n", "v_sat_low"), sym.hit("n", "v_sat_low")) == (0, 1)


def test_v_min_clamps():
    """v_min = -3; currents -2 -2 1 -5 0: V = -2, -4 -> -3 (clamped), -2, -7 -> -3 (clamped), -3
    (not below v_min: not clamped)."""
    layer = IF(name="n", vm=S8, threshold=100, reset="none", v_min=-3, overflow="SAT")
    cov = driven(layer, [[-2], [-2], [1], [-5], [0]])
    assert hits(cov, "n")["v_min_clamped"] == [2]
    assert "v_min_clamped" not in cov.layers["n"].unreachable
    at_bottom = driven(IF(name="n", vm=S8, threshold=100, reset="none", v_min=-128, overflow="SAT"), [[-100], [-100]])
    assert at_bottom.layers["n"].unreachable["v_min_clamped"] == "v_min = -128 is the register's minimum"
    assert at_bottom.hit("n", "v_min_clamped") == 0  # -200 saturates to -128: a write below, no clamp
    assert at_bottom.hit("n", "v_sat_low") == 1


def test_reset_to_value():
    """θ = 3, reset to -2; currents 3 1 4 5 0 2: V = 3* (-> -2), -1, 3* (-> -2), 3* (-> -2), -2, 0."""
    cov = driven(IF(name="n", vm=S8, threshold=3, reset="value", reset_value=-2, overflow="SAT"),
                 [[3], [1], [4], [5], [0], [2]])
    assert hits(cov, "n")["reset_to_value"] == [3]
    assert hits(cov, "n")["v_at_threshold"] == [3]


def test_refractory_start_and_end():
    """θ = 2, reset zero, refractory 2, current 2 every step: fires at t = 0 (counter 2), held at
    t = 1 (2 -> 1) and t = 2 (counter 1: its last held step, an end), fires at t = 3, held 4, 5
    (end), fires at t = 6: 3 starts, 2 ends; V = θ only when it integrates (3 times)."""
    cov = driven(IF(name="n", vm=S8, threshold=2, reset="zero", refractory=2, overflow="SAT"), [[2]] * 7)
    got = hits(cov, "n")
    assert (got["refractory_start"], got["refractory_end"], got["v_at_threshold"]) == ([3], [2], [3])


def test_lif_shift_leak_tie_and_leak_to_zero():
    """leak_first, δ = RND(V / 2) (a tie rounds up), leak(V) = V - δ.
    Channel 0, currents 3 0 0 0 0: t0 leak(0) = 0, V = 3; t1 3/2 = 1.5 a tie, δ = 2, V = 1; t2
    1/2 a tie, δ = 1, V = 0 (leaked to zero); t3, t4 V = 0: no tie (0/2), no leak to zero.
    Channel 1, currents -3 0 0 0 0: t1 -3/2 = -1.5 a tie, δ = -1, V = -2; t2 -2/2 = -1 exact, V = -1;
    t3, t4 -1/2 a tie, δ = 0, V stays -1: 3 ties, never zero."""
    layer = LIF(name="n", vm=S8, threshold=100, reset="none", overflow="SAT", leak="shift", leak_shift=1,
                leak_rounding="RND")
    cov = driven(layer, [[3, -3], [0, 0], [0, 0], [0, 0], [0, 0]])
    assert hits(cov, "n")["leak_tie"] == [2, 3]
    assert hits(cov, "n")["leak_to_zero"] == [1, 0]
    trn = LIF(name="n", vm=S8, threshold=100, reset="none", overflow="SAT", leak="shift", leak_shift=1)
    cov = driven(trn, [[3, -3], [0, 0]])
    assert cov.layers["n"].unreachable["leak_tie"] == "leak_rounding TRN has no tie rule"
    assert "leak_to_zero" not in cov.layers["n"].unreachable


@pytest.mark.parametrize("rounding, vm, to_zero", [("TRN", S8, [0, 1]), ("TRN_ZERO", S8, None),
                                                   ("TRN", QFormat(8, signed=False), None)])
def test_lif_shift_by_two_leaks_to_zero_only_from_minus_one_under_trn(rounding, vm, to_zero):
    """leak_first, δ = round(V / 4), leak(V) = V - δ.  Channel 0, currents 1 0: V = 1, then
    1/4 rounds to 0 (every mode): V stays 1.  Channel 1, currents -1 0: V = -1, then TRN's
    floor(-1/4) = -1 takes V to 0 (TRN_ZERO's 0 keeps it; an unsigned Vm saturates -1 to 0
    instead); so the bin is unreachable but for TRN on a signed Vm."""
    layer = LIF(name="n", vm=vm, threshold=100, reset="none", overflow="SAT", leak="shift", leak_shift=2,
                leak_rounding=rounding)
    cov = driven(layer, [[1, -1], [0, 0]])
    if to_zero is None:
        assert cov.layers["n"].unreachable["leak_to_zero"].startswith("leak_shift >= 2 without min_step")
        assert hits(cov, "n")["leak_to_zero"] == [0, 0]
    else:
        assert "leak_to_zero" not in cov.layers["n"].unreachable
        assert hits(cov, "n")["leak_to_zero"] == to_zero


def test_lif_mul_leak_tie():
    """leak(V) = RND_CONV(3V / 4): V = 2 -> 6/4 = 1.5, a tie to the even 2, every step after the first."""
    layer = LIF(name="n", vm=S8, threshold=100, reset="none", overflow="SAT", leak="mul", leak_mult=3, leak_shift=2,
                leak_rounding="RND_CONV")
    cov = driven(layer, [[2], [0], [0]])
    assert (cov.hit("n", "leak_tie"), cov.hit("n", "leak_to_zero")) == (2, 0)


def test_dual_threshold_outcomes():
    """">=", reset zero by "either".  Channel 0 (θ1 = 2, θ2 = 4), currents 1 2 5 2 -1 0 5:
    V = 1 (neither, > 0), 3 (s1 only), 5 (both), 2 (s1 only, on θ1), -1, -1 (neither, not > 0), 4
    (both, on θ2).  Channel 1 (θ1 = 4, θ2 = 2), currents 2 1 4 0 0 3 0: V = 2 (s2 only, on θ2),
    1 (neither, > 0), 5 (both), 0, 0, 3 (s2 only), 0."""
    layer = DualThreshold(name="dt", vm=S8, theta1=(2, 4), theta2=(4, 2), reset="zero", reset_by="either",
                          overflow="SAT")
    cov = driven(layer, [[1, 2], [2, 1], [5, 4], [2, 0], [-1, 0], [0, 3], [5, 0]])
    got = hits(cov, "dt")
    assert {b: got[b] for b in ("s1_only", "s2_only", "both", "neither_positive", "v_at_theta1", "v_at_theta2")} == {
        "s1_only": [2, 0], "s2_only": [0, 2], "both": [2, 1], "neither_positive": [1, 1],
        "v_at_theta1": [1, 0], "v_at_theta2": [1, 1]}  # fmt: skip
    assert got["leak_tie"] == got["leak_to_zero"] == [0, 0]
    unreachable = cov.layers["dt"].unreachable
    assert {"s1_only", "s2_only"}.isdisjoint(unreachable)
    assert unreachable["leak_to_zero"] == "no leak" and unreachable["reset_to_value"] == "reset is 'zero'"
    ordered = DualThreshold(name="dt", vm=S8, theta1=2, theta2=4, reset="zero", overflow="SAT")
    cov = driven(ordered, [[1, 2], [5, 5]])  # channel 0: V = 1, 6 (both); channel 1: 2 (s1 only, -> 0), 5 (both)
    assert cov.layers["dt"].unreachable["s2_only"] == "theta2 >= theta1 in every channel: s2 implies s1"
    assert "s1_only" not in cov.layers["dt"].unreachable
    assert (hits(cov, "dt")["s1_only"], hits(cov, "dt")["both"]) == ([0, 1], [1, 1])


def test_winner_spike_pool_tie_silent_and_changed_winner():
    """One 2x2 window (p = 0..3), IF θ = 3, reset zero, ranked by v_pre.  Currents per step
    [1 1 0 0], [0 3 0 0], [0 0 0 0], [2 1 0 0]: v_pre = [1 1 0 0] (max at p0 and p1: a tie; winner
    p0; no spike: silent), [1 4 0 0] (p1 fires; winner p1: changed), [1 0 0 0] (winner p0: changed;
    silent), [3 1 0 0] (p0 fires; winner p0, unchanged)."""
    steps = [[1, 1, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0], [2, 1, 0, 0]]
    cov = imaged(IF(name="n", vm=S8, threshold=3, reset="zero", overflow="SAT"),
                 WinnerSpikePool(name="pool", kernel=2), np.reshape(steps, (4, 1, 2, 2)))
    assert hits(cov, "pool") == {"window_tie": [1], "window_silent": [2], "winner_changed": [2]}


def test_count_gate_counters_reach_their_top():
    """1-bit counters (top 1), a 1x2 window; IF θ = 1, reset zero passes the 0/1 currents as
    spikes [0 0], [0 1], [1 0], [1 1]: counters [0 0] (tie, silent), [0 1] (one at top; winner p1:
    changed), [1 1] (two at top, tie; winner p0: changed), [1 1] (increments lost; two at top,
    tie; p0 unchanged): at top 0 + 1 + 2 + 2 = 5."""
    steps = [[0, 0], [0, 1], [1, 0], [1, 1]]
    cov = imaged(IF(name="n", vm=S8, threshold=1, reset="zero", overflow="SAT"),
                 CountGatePool(name="pool", kernel=(1, 2), count_bits=1), np.reshape(steps, (4, 1, 1, 2)))
    assert hits(cov, "pool") == {"window_tie": [3], "window_silent": [1], "winner_changed": [2], "counter_at_max": [5]}


def test_pooled_neuron_subtraction_goes_negative():
    """A 1x2 window, θ = 4 (">="), integrator V: currents [5 1]: V = [5 1] fires, V - θ = [1 -3]
    (one negative); [1 0]: [2 -3], no fire; [0 4]: [2 1]; [2 3]: [4 4] fires with a tie (winner
    p0), [0 0] (0 is not negative); [0 6]: [0 6] fires, winner p1 (changed), [-4 2] (negative)."""
    layer = IF(name="n", vm=S8, threshold=100, reset="none", overflow="SAT")
    pool = PooledNeuronPool(name="pool", kernel=(1, 2), threshold=4, vm=S8, overflow="SAT")
    steps = [[5, 1], [1, 0], [0, 4], [2, 3], [0, 6]]
    cov = imaged(layer, pool, np.reshape(steps, (5, 1, 1, 2)))
    assert hits(cov, "pool") == {"window_tie": [1], "winner_changed": [1], "subtract_negative": [2],
                                 "v_wrap_low": [0], "v_sat_low": [0]}
    assert cov.layers["pool"].unreachable["v_wrap_low"] == "overflow is SAT"


@pytest.mark.parametrize("overflow, beyond", [("SAT", "v_sat_low"), ("WRAP", "v_wrap_low")])
def test_pooled_neuron_subtraction_below_the_register(overflow, beyond):
    """s4 (-8..7), θ = 7: currents [7 -5] fire the window, V - θ = [0 -12]: -12 is below -8."""
    layer = IF(name="n", vm=QFormat(4), threshold=7, reset="none", overflow=overflow)
    pool = PooledNeuronPool(name="pool", kernel=(1, 2), threshold=7, vm=QFormat(4), overflow=overflow)
    cov = imaged(layer, pool, np.reshape([7, -5], (1, 1, 1, 2)))
    assert (cov.hit("pool", beyond), cov.hit("pool", "subtract_negative")) == (1, 1)


def spiking_pool(pool, spikes):
    """``pool`` over the spikes (T, H, W) of one channel: IF θ = 1, reset zero passes 0/1 currents."""
    spikes = np.asarray(spikes)
    return imaged(IF(name="n", vm=S8, threshold=1, reset="zero", overflow="SAT"), pool, spikes[:, None])


def test_sum_pool_full_silent_and_beyond_its_output():
    """A 1x2 window into u1 (0..1) under SAT: spikes [0 0] (silent), [1 1] (full: 2 > 1, above),
    [1 0], [1 1] (full, above)."""
    pool = SumPool(name="pool", kernel=(1, 2), out_format=QFormat(1, 0, signed=False), overflow="SAT")
    cov = spiking_pool(pool, [[[0, 0]], [[1, 1]], [[1, 0]], [[1, 1]]])
    assert hits(cov, "pool") == {"window_silent": [1], "window_full": [2], "out_wrap_high": [0],
                                 "out_sat_high": [2], "round_tie": [0]}
    assert cov.layers["pool"].unreachable["round_tie"] == "the window sum is not shifted"
    wide = SumPool(name="pool", kernel=(1, 2), out_format=QFormat(2, 0, signed=False), overflow="SAT")
    cov = spiking_pool(wide, [[[1, 1]]])
    assert cov.layers["pool"].unreachable["out_sat_high"] == "a full window's code 2 fits u2.0"


def test_avg_pool_rounding_tie():
    """Area 2, frac 0: the sum shifted by 1 under RND.  Spikes [1 0] (1/2: a tie), [1 1] (full,
    2/2 = 1), [0 1] (a tie), [0 0] (silent).  u2 holds a full window's code 1."""
    pool = AvgPool(name="pool", kernel=(1, 2), out_format=QFormat(2, 0, signed=False), rounding="RND", overflow="SAT")
    cov = spiking_pool(pool, [[[1, 0]], [[1, 1]], [[0, 1]], [[0, 0]]])
    assert hits(cov, "pool") == {"window_silent": [1], "window_full": [1], "out_wrap_high": [0],
                                 "out_sat_high": [0], "round_tie": [2]}
    assert cov.layers["pool"].unreachable["out_sat_high"] == "a full window's code 1 fits u2.0"
    trn = AvgPool(name="pool", kernel=(1, 2), out_format=QFormat(2, 0, signed=False), rounding="TRN", overflow="SAT")
    assert spiking_pool(trn, [[[1, 0]]]).layers["pool"].unreachable["round_tie"] == "rounding TRN has no tie rule"


# s4 accumulator (-8..7, near the top: 6..7, near the bottom: -8..-7), SAT, weights k0 = [5 2 -1],
# k1 = [0 0 0] (no nonzero term: never a write).  Samples (t, n):
#   (0, 0) x = [1 1 1]:    each: 5, 7 (near top), 6 (near top)        once: 6 (near top)
#   (0, 1) x = [1 2 0]:    each: 5, 9 (above), the zero term no write once: 9 (above)
#   (1, 0) x = [-1 -1 3]:  each: -5, -7 (near bottom), -10 (below)   once: -10 (below)
#   (1, 1) x = [0 0 0]:    each: no write (zero_input)                once: 0 (zero_input)
ACC_STIMULUS = [[[1, 1, 1], [1, 2, 0]], [[-1, -1, 3], [0, 0, 0]]]


@pytest.mark.parametrize("acc_apply, expected", [
    ("each", {"acc_sat_high": [1, 0], "acc_sat_low": [1, 0], "acc_near_high": [2, 0], "acc_near_low": [1, 0]}),
    ("once", {"acc_sat_high": [1, 0], "acc_sat_low": [1, 0], "acc_near_high": [1, 0], "acc_near_low": [0, 0]}),
])  # fmt: skip
def test_accumulator_saturates_and_comes_near_its_bounds(acc_apply, expected):
    fc = Linear(name="fc", weight=np.array([[5, 2, -1], [0, 0, 0]]), weight_format=QFormat(4), acc_format=QFormat(4),
                overflow="SAT", acc_apply=acc_apply)
    cov = covered(Network([fc], (3,), S8), ACC_STIMULUS, 2)
    assert hits(cov, "fc") == expected | {"acc_wrap_high": [0, 0], "acc_wrap_low": [0, 0], "zero_input": [1]}
    assert cov.layers["fc"].unreachable == {"acc_wrap_high": "overflow is SAT", "acc_wrap_low": "overflow is SAT"}


def test_accumulator_range_proof():
    """Weights [1 1] on spikes (0..1): every partial sum lies in 0..2, far inside s8 (-128..127):
    every acc bin is unreachable by the range proof or the mode; zero_input is not."""
    fc = Linear(name="fc", weight=np.array([[1, 1]]), weight_format=W2, acc_format=S8, overflow="SAT")
    cov = covered(Network([fc], (2,), SPIKES), np.array([[[1, 1], [0, 0]]] * 3, np.int64), 3)
    unreachable = cov.layers["fc"].unreachable
    proof = "every partial sum lies in 0..2 (range proof)"
    assert unreachable == {"acc_wrap_high": "overflow is SAT", "acc_wrap_low": "overflow is SAT",
                           "acc_sat_high": proof, "acc_sat_low": proof, "acc_near_high": proof, "acc_near_low": proof}
    assert hits(cov, "fc")["zero_input"] == [3]  # sample 1 silent at each of the 3 steps
    assert cov.holes() == []
    exact = Linear(name="fc", weight=np.array([[1, 1]]), weight_format=W2)
    cov = covered(Network([exact], (2,), SPIKES), np.ones((1, 2), np.int64), 1)
    assert all(cov.layers["fc"].unreachable[b] == "exact accumulator (no acc_format)" for b in cov.layers["fc"].hits
               if b.startswith("acc_"))


def test_wrap_each_range_proof_when_both_sides_hold():
    """Under WRAP the proof is claimed when it holds on both sides: weights [1 -1] on spikes keep
    every partial sum in -1..1, inside s8; weights [1 1 1] reach 3 > 1 in s2 (-2..1), so neither
    side is claimed (a wrap at the top moves the register toward the bottom)."""
    fc = Linear(name="fc", weight=np.array([[1, -1]]), weight_format=W2, acc_format=S8, overflow="WRAP")
    proof = "every partial sum lies in -1..1 (range proof)"
    assert covered(Network([fc], (2,), SPIKES), np.ones((1, 2), np.int64), 1).layers["fc"].unreachable == {
        "acc_wrap_high": proof, "acc_wrap_low": proof, "acc_sat_high": "overflow is WRAP",
        "acc_sat_low": "overflow is WRAP", "acc_near_high": proof, "acc_near_low": proof}
    assert covered(_wrap_network([1, 1, 1]), np.ones((1, 3), np.int64), 1).layers["fc"].unreachable == {
        "acc_sat_high": "overflow is WRAP", "acc_sat_low": "overflow is WRAP"}


def test_conv_zero_input_per_sample():
    """A 2x2 conv on 1x3x3 spikes, samples of 3 steps: zero_input counts each silent sample once
    per step (not per channel, not per output position): silent (t, n) = (0, 0), (1, 0), (1, 1), (2, 1)."""
    conv = Conv2d(name="conv", weight=np.ones((2, 1, 2, 2), np.int64), weight_format=QFormat(2, 0, signed=False))
    stimulus = np.zeros((3, 2, 1, 3, 3), np.int64)
    stimulus[0, 1, 0, 2, 2] = stimulus[2, 0, 0, 0, 1] = 1
    cov = covered(Network([conv], (1, 3, 3), SPIKES), stimulus, 3)
    assert hits(cov, "conv")["zero_input"] == [4]


# s2 accumulator (-2..1; near the top 0..1, near the bottom -2..-1) under WRAP, "each", on spikes 1:
#   weights [1 1 1]:     writes 1 (near top), 2 (above: -> -2), -1 (near bottom)
#   weights [1 1 -1 -1]: writes 1 (near top), 2 (above: -> -2), -3 (below: -> 1), 0 (near top)
WRAP_CASES = {
    "near_low after a wrap": ([1, 1, 1],
                              {"acc_wrap_high": 1, "acc_wrap_low": 0, "acc_near_high": 1, "acc_near_low": 1}),
    "wrap_low after a wrap": ([1, 1, -1, -1],
                              {"acc_wrap_high": 1, "acc_wrap_low": 1, "acc_near_high": 2, "acc_near_low": 0}),
}


def _wrap_network(weights):
    fc = Linear(name="fc", weight=np.array([weights]), weight_format=W2, acc_format=QFormat(2), overflow="WRAP")
    return Network([fc], (len(weights),), SPIKES)


@pytest.mark.parametrize("case", WRAP_CASES)
def test_wrap_each_counts_by_hand(case):
    weights, expected = WRAP_CASES[case]
    cov = _wrap_network(weights).run(np.ones((1, len(weights)), np.int64), 1, coverage=True).coverage
    assert {b: cov.hit("fc", b) for b in expected} == expected


@pytest.mark.parametrize("case", WRAP_CASES)
def test_wrap_each_claims_no_side_when_the_other_side_wraps(case):
    """A wrap moves the register by 2**bits, so a side the exact partial sums never reach can
    still be written after a wrap on the other side: no such bin is marked unreachable."""
    weights, _ = WRAP_CASES[case]
    cov = _wrap_network(weights).run(np.ones((1, len(weights)), np.int64), 1, coverage=True).coverage
    layer = cov.layers["fc"]
    assert {b: layer.total(b) for b in layer.unreachable if layer.total(b)} == {}


@pytest.mark.parametrize("overflow, expected", [
    ("WRAP", {"out_wrap_high": 2, "out_wrap_low": 2, "out_sat_high": 0, "out_sat_low": 0}),
    ("SAT", {"out_wrap_high": 0, "out_wrap_low": 0, "out_sat_high": 2, "out_sat_low": 2}),
    ("SAT_SYM", {"out_wrap_high": 0, "out_wrap_low": 0, "out_sat_high": 2, "out_sat_low": 4}),
])  # fmt: skip
def test_add_overflows(overflow, expected):
    """3x + (-x) = 2x into s3 (-4..3; SAT_SYM -3..3) for x = -3 -2 0 1 2, 2 steps: sums -6
    (below), -4 (below under SAT_SYM only), 0, 2, 4 (above)."""
    def scaled(name, w):
        return Conv2d(name=name, inputs=["input"], weight=np.full((1, 1, 1, 1), w), weight_format=QFormat(4))

    total = Add(name="sum", inputs=["a", "b"], format=QFormat(3), overflow=overflow)
    network = Network([scaled("a", 3), scaled("b", -1), total], (1, 1, 5), S8)
    cov = covered(network, np.array([[[[-3, -2, 0, 1, 2]]]]), 2)
    assert {b: cov.hit("sum", b) for b in expected} == expected


def test_add_of_spikes_cannot_overflow_s3():
    """Two spike maps sum to 0..2: both sides of s3 (-4..3) are out of reach."""
    def branch(name):
        return [Conv2d(name=f"{name}_c", inputs=["input"], weight=np.ones((1, 1, 1, 1), np.int64), weight_format=W2),
                IF(name=name, vm=S8, threshold=1, reset="zero", overflow="SAT")]

    network = Network([*branch("a"), *branch("b"), Add(name="sum", inputs=["a", "b"], format=QFormat(3),
                                                       overflow="SAT")], (1, 2, 2), SPIKES)
    cov = covered(network, np.ones((1, 1, 2, 2), np.int64), 2)
    proof = "the inputs' formats sum to 0..2"
    assert cov.layers["sum"].unreachable == {"out_wrap_high": "overflow is SAT", "out_wrap_low": "overflow is SAT",
                                             "out_sat_high": proof, "out_sat_low": proof}


def test_loihi_u_wraps():
    """du = 0 (u <- trunc0(u·4095/4096) + 64·a_in), dv = 4095 (v <- trunc0(v/4096) + u), bias 0.
    Channel 0 (vth = 2**17 - 1: θ = 8388544), a_in = 32767 (64·a_in = 2097088) five times, then -32768:
      u = 2097088; 2096576 + 2097088 = 4193664; 4192640 + 2097088 = 6289728; 6288192 + 2097088 = 8385280;
      8383232 + 2097088 = 10480320 > 2**23 - 1 (wraps up, to -6296896);
      -6295358 - 2097152 = -8392510 < -2**23 (wraps down, to 8384706).
      v = u + trunc0(v/4096): 2097088, 4194175, 6290751, 8386815, -6294849, 8383170: below θ, never clamped.
    Channel 1 (vth = 1: θ = 64), a_in = 1 1 0 0 0 0:
      t0 u = 64, v = 64 = θ (on the threshold, no spike: ">");  t1 u = 63 + 64 = 127, v = trunc0(64/4096)
      + 127: the decay took v = 64 to 0 (leak_to_zero), v = 127 fires (-> 0); then u = 126, 125, ...
      fire every step from v = 0 (no decay to zero)."""
    layer = LoihiLIF(name="n", du=0, dv=4095, vth=(2**17 - 1, 1))
    a_in = [[32767, 1], [32767, 1], [32767, 0], [32767, 0], [32767, 0], [-32768, 0]]
    cov = driven(layer, a_in, input_format=S16, acc=S16)
    assert hits(cov, "n") == {"u_wrap_high": [1, 0], "u_wrap_low": [1, 0], "v_sat_high": [0, 0], "v_sat_low": [0, 0],
                              "v_at_threshold": [0, 1], "leak_to_zero": [0, 1]}
    still = driven(LoihiLIF(name="n", du=0, dv=0, vth=1), [[1]], input_format=S16, acc=S16)
    assert still.layers["n"].unreachable == {"leak_to_zero": "dv = 0: v does not decay"}


# --------------------------------------------------------------------------- merging runs
def test_merge_of_two_runs_is_the_binwise_sum():
    layer = IF(name="n", vm=QFormat(4), threshold=7, reset="none", overflow="SAT")
    fc = Linear(name="fc", weight=np.eye(1, dtype=np.int64), weight_format=W2)
    network = Network([fc, layer], (1,), S8)
    first = network.run(np.array([[[5]], [[5]], [[3]]]), 3, coverage=True).coverage  # V = 5, 7 (high), 7 (high)
    second = network.run(np.array([[[-20]], [[0]], [[7]]]), 3, coverage=True).coverage  # -8 (low), -8, -1
    assert (first.hit("n", "v_sat_high"), first.hit("n", "v_sat_low")) == (2, 0)
    assert (second.hit("n", "v_sat_high"), second.hit("n", "v_sat_low")) == (0, 1)
    merged = first.merged(second)
    assert merged.runs == 2 and list(merged.layers) == list(first.layers)
    for name, cov in merged.layers.items():
        for b, counts in cov.hits.items():
            assert_bit_exact(first.layers[name].hits[b] + second.layers[name].hits[b], counts, layer=name, signal=b)
            assert cov.runs[b] == int(first.layers[name].total(b) > 0) + int(second.layers[name].total(b) > 0)
        assert cov.unreachable == {b: why for b, why in first.layers[name].unreachable.items()
                                   if b in second.layers[name].unreachable}
    assert (merged.layers["n"].runs["v_sat_high"], merged.layers["n"].runs["v_sat_low"]) == (1, 1)
    assert merged.layers["n"].runs["v_at_threshold"] == 1  # only the first run's V reached 7
    assert merged.merged(first).runs == 3


# --------------------------------------------------------------------------- the network input
def test_input_coverage_of_a_rate_encoder():
    """u8 with frac 4: full scale 16.  Channel 0 holds 0, 16, 3 / 0, 0, 16; channel 1 5, 16, 16 /
    0, 1, 2: zeros [3, 1], full scale [2, 2]; a spike encoder's minimum is 0 (pixel_min unreachable)."""
    x = np.array([[[0, 16, 3], [5, 16, 16]], [[0, 0, 16], [0, 1, 2]]])
    cov = input_coverage(make_encoder("rate", x, QFormat(8, 4, signed=False)))
    assert cov.kind == "input"
    assert {b: c.tolist() for b, c in cov.hits.items()} == {"pixel_zero": [3, 1], "pixel_min": [0, 0],
                                                            "pixel_full_scale": [2, 2], "random_period": [0, 0]}
    assert cov.unreachable == {"pixel_min": "the spike encoders take 0..full_scale: the minimum is pixel_zero",
                               "random_period": "the rate encoding draws no random numbers"}
    assert cov.runs == {"pixel_zero": 1, "pixel_min": 0, "pixel_full_scale": 1, "random_period": 0}


def test_input_coverage_of_analog_codes():
    """s4 (-8..7), two samples of 4 features (axis 1: the channels): [-8 7 0 0] and [7 -8 -8 1]."""
    x = np.array([[-8, 7, 0, 0], [7, -8, -8, 1]])
    cov = input_coverage(make_encoder("analog", x, QFormat(4)))
    assert {b: c.tolist() for b, c in cov.hits.items()} == {
        "pixel_zero": [0, 0, 1, 1], "pixel_min": [1, 1, 1, 0], "pixel_full_scale": [1, 1, 0, 0],
        "random_period": [0, 0, 0, 0]}  # fmt: skip
    assert set(cov.unreachable) == {"random_period"}
    unsigned = input_coverage(make_encoder("analog", np.array([[0, 255]]), QFormat(8, signed=False)))
    assert unsigned.unreachable["pixel_min"] == "the input format is unsigned: its minimum is 0"
    assert unsigned.hits["pixel_full_scale"].tolist() == [0, 1]


def test_input_coverage_of_a_random_encoder():
    x = np.array([[4, 0, 4]])
    cov = input_coverage(make_encoder("random", x, QFormat(8, 2, signed=False), seed=7))
    assert cov.hits["pixel_full_scale"].tolist() == [1, 0, 1] and cov.hits["pixel_zero"].tolist() == [0, 1, 0]
    assert "2**24 timesteps" in cov.unreachable["random_period"]
