"""Neuron layers against their twin (tests/oracle/neurons.py), properties, hand-derived sequences."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refmodel.fixed import FixedOverflowError, QFormat, Rounding
from refmodel.layers.base import LayerError
from refmodel.layers.neurons import IF, LIF, DualThreshold, LoihiLIF, NeuronStep
from tests import modes
from tests.oracle import neurons as oracle

ROUNDINGS = [r.name for r in Rounding]


# --------------------------------------------------------------------------- strategies
@st.composite
def shapes(draw):
    """(N, C), (N, C, M) or (N, C, H, W), small."""
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (n, c) + tuple(draw(st.lists(st.integers(1, 3), max_size=2)))


def thresholds(fmt, n_ch):
    """A scalar or per-channel threshold in the Vm range, usually positive."""
    one = st.one_of(st.integers(max(fmt.min_int, 0), fmt.max_int), st.integers(fmt.min_int, fmt.max_int))
    return st.one_of(one, st.tuples(*[one] * n_ch))


@st.composite
def leak_fields(draw, fmt, allow_none):
    kinds = (["none"] if allow_none else []) + ["shift", "mul", "linear"]
    kind = draw(st.sampled_from(kinds))
    fields = {"leak": kind, "order": draw(st.sampled_from(["leak_first", "integrate_first"]))}
    if kind in ("shift", "mul"):
        fields["leak_rounding"] = draw(modes.ROUNDINGS)
    if kind == "shift":
        fields["leak_shift"] = draw(st.integers(0, fmt.bits + 2))
        fields["leak_min_step"] = draw(st.booleans())
    elif kind == "mul":
        n = draw(st.integers(0, min(16, 63 - fmt.bits)))
        fields.update(leak_shift=n, leak_mult=draw(st.integers(0, 2**n)))
    elif kind == "linear":
        fields["leak_step"] = draw(st.integers(0, min(fmt.max_int, 2**12)))
    return fields


@st.composite
def neuron_layers(draw, kinds=("IF", "LIF", "DT"), signed=st.booleans()):
    """(layer, shape) over random formats, overflow modes, compares, resets, leaks, options."""
    shape = draw(shapes())
    fmt = QFormat(draw(st.integers(2, 32)), draw(st.integers(-2, 8)), draw(signed))
    overflow = draw(modes.OVERFLOWS)
    lo, hi = fmt.bounds(overflow)
    fields = dict(
        name=draw(st.sampled_from(["n0", "conv1_neurons", "fc"])),
        vm=fmt,
        overflow=overflow,
        compare=draw(st.sampled_from([">=", ">"])),
        reset=draw(st.sampled_from(["subtract", "zero", "value", "none"])),
        reset_value=draw(st.integers(lo, hi)),
        v_min=draw(st.none() | st.integers(lo, hi)),
        refractory=draw(st.sampled_from([0, 0, 1, 2, 3])),
    )
    kind = draw(st.sampled_from(kinds))
    if kind == "IF":
        return IF(threshold=draw(thresholds(fmt, shape[1])), **fields), shape
    if kind == "LIF":
        leak = draw(leak_fields(fmt, allow_none=False))
        return LIF(threshold=draw(thresholds(fmt, shape[1])), **fields, **leak), shape
    leak = draw(leak_fields(fmt, allow_none=True))
    return (
        DualThreshold(
            theta1=draw(thresholds(fmt, shape[1])),
            theta2=draw(thresholds(fmt, shape[1])),
            reset_by=draw(st.sampled_from(["s1", "s2", "either"])),
            **fields,
            **leak,
        ),
        shape,
    )


@st.composite
def stimuli(draw, layer, shape, max_t=6):
    """A random in-range initial state and T currents, sometimes large enough to overflow."""
    state = layer.init_state(shape)
    lo, hi = layer.vm.bounds(layer.overflow)
    state["v"] = draw(hnp.arrays(np.int64, shape, elements=st.integers(lo, hi)))
    if layer.refractory:
        state["refractory"] = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, layer.refractory)))
    span = draw(st.sampled_from([4, hi // 8 + 1, hi + 1, 2 * (hi - lo) + 2]))
    t = draw(st.integers(1, max_t))
    currents = draw(hnp.arrays(np.int64, (t,) + shape, elements=st.integers(-span, span)))
    return state, currents


def run_both(layer, state, currents):
    """Step layer and twin through ``currents``, asserting bit-exact equality at every step.

    Returns the list of NeuronStep; stops after a step where both raised under ERROR.
    """
    twin_state = {k: v.copy() for k, v in state.items()}
    outs = []
    for current in currents:
        before = {k: v.copy() for k, v in state.items()}
        try:
            twin = oracle.step(layer, twin_state, current)
        except oracle.NeuronOverflow as e:
            with pytest.raises(FixedOverflowError) as info:
                layer.step(state, current)
            assert info.value.index == e.index and info.value.value == e.value
            assert layer.name in str(info.value) and f"= {e.value}" in str(info.value)
            assert state.keys() == before.keys()
            for k in state:
                np.testing.assert_array_equal(state[k], before[k])
            return outs
        out = layer.step(state, current)
        spikes, v_pre, v_post, twin_state, overflows = twin
        assert out.spikes.dtype == np.uint8 and out.v_pre.dtype == np.int64 and out.v_post.dtype == np.int64
        np.testing.assert_array_equal(out.spikes, spikes)
        np.testing.assert_array_equal(out.v_pre, v_pre)
        np.testing.assert_array_equal(out.v_post, v_post)
        assert out.overflows == overflows
        assert state.keys() == twin_state.keys()
        for k in state:
            np.testing.assert_array_equal(state[k], twin_state[k])
        outs.append(out)
    return outs


# --------------------------------------------------------------------------- kernel == twin
@given(st.data())
def test_if_lif_dt_match_twin(data):
    layer, shape = data.draw(neuron_layers())
    state, currents = data.draw(stimuli(layer, shape))
    run_both(layer, state, currents)


@given(st.data())
def test_loihi_matches_twin(data):
    shape = data.draw(shapes())
    c = shape[1]
    per_channel = lambda lo, hi: st.one_of(st.integers(lo, hi), st.tuples(*[st.integers(lo, hi)] * c))  # noqa: E731
    layer = LoihiLIF(
        name="loihi",
        du=data.draw(st.integers(0, 4095)),
        dv=data.draw(st.integers(0, 4095)),
        vth=data.draw(per_channel(0, 2**17 - 1)),
        bias_mant=data.draw(per_channel(-4096, 4095)),
        bias_exp=data.draw(per_channel(0, 7)),
    )
    state = {
        "u": data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**23), 2**23 - 1))),
        "v": data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**23) + 1, 2**23 - 1))),
    }
    t = data.draw(st.integers(1, 6))
    currents = data.draw(hnp.arrays(np.int64, (t,) + shape, elements=st.integers(-(2**15), 2**15 - 1)))
    assert len(run_both(layer, state, currents)) == t


# --------------------------------------------------------------------------- properties
@given(st.data())
def test_if_subtract_conserves_charge(data):
    """ΣI = V_T - V_0 + θ·(number of spikes), per neuron, when nothing overflows.

    Vm s16, |θ| <= 100 positive, |I| <= 100, T <= 20: |V| stays below 2100 + 100 < 2**15, so
    nothing overflows; under WRAP / SAT / SAT_SYM an overflow would be counted (not raised).
    """
    shape = data.draw(shapes())
    threshold = data.draw(st.one_of(st.integers(1, 100), st.tuples(*[st.integers(1, 100)] * shape[1])))
    layer = IF(name="if", vm=QFormat(16), threshold=threshold, compare=data.draw(st.sampled_from([">=", ">"])),
               overflow=data.draw(st.sampled_from(["WRAP", "SAT", "SAT_SYM"])))
    state = layer.init_state(shape)
    state["v"][...] = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-100, 100)))
    v0 = state["v"].copy()
    currents = data.draw(hnp.arrays(np.int64, (data.draw(st.integers(1, 20)),) + shape, elements=st.integers(-100, 100)))
    count = np.zeros(shape, np.int64)
    for current in currents:
        out = layer.step(state, current)
        assert out.overflows == 0
        count += out.spikes
    theta = np.asarray(threshold).reshape((1, -1) + (1,) * (len(shape) - 2))
    np.testing.assert_array_equal(currents.sum(axis=0), state["v"] - v0 + theta * count)


@given(st.data())
def test_dt_ordered_thresholds_nest_spike_maps(data):
    """θ2 >= θ1 gives s2 ⊆ s1 at every step; θ1 = θ2 gives s1 = s2."""
    layer, shape = data.draw(neuron_layers(kinds=("DT",)))
    c = shape[1]
    t1 = np.broadcast_to(np.asarray(layer.theta1), (c,))
    t2 = np.broadcast_to(np.asarray(layer.theta2), (c,))
    equal = data.draw(st.booleans())
    theta2 = tuple(int(x) for x in (t1 if equal else np.maximum(t1, t2)))
    layer = DualThreshold(**{**_fields(layer), "theta1": tuple(int(x) for x in t1), "theta2": theta2})
    state, currents = data.draw(stimuli(layer, shape))
    for out in run_both(layer, state, currents):
        s1, s2 = out.spikes[:, :c], out.spikes[:, c:]
        if equal:
            np.testing.assert_array_equal(s1, s2)
        else:
            assert not ((s2 == 1) & (s1 == 0)).any()


def _fields(layer):
    return {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)}


@given(st.data())
def test_shift_leak_of_width_or_more_is_if(data):
    """docs/neurons.md §3: a shift leak with k >= bits is IF when round(V / 2**k) = 0 for every V:
    signed Vm: TRN_ZERO, RND, RND_ZERO, RND_CONV from k = bits, RND_MIN_INF / RND_INF from bits + 1;
    unsigned Vm: TRN, TRN_ZERO from k = bits, the RND modes from bits + 1."""
    signed = data.draw(st.booleans())
    layer, shape = data.draw(neuron_layers(kinds=("IF",), signed=st.just(signed)))
    rounding = data.draw(st.sampled_from([r for r in ROUNDINGS if not signed or r != "TRN"]))
    tie_at_bits = rounding in ("RND_MIN_INF", "RND_INF") if signed else rounding.startswith("RND")
    k = data.draw(st.integers(layer.vm.bits + tie_at_bits, 64))
    lif = LIF(**_fields(layer), leak="shift", leak_shift=k, leak_rounding=rounding,
              order=data.draw(st.sampled_from(["leak_first", "integrate_first"])))  # fmt: skip
    state, currents = data.draw(stimuli(layer, shape))
    lif_state = {key: v.copy() for key, v in state.items()}
    for current in currents:
        try:
            a = layer.step(state, current)
        except FixedOverflowError as e:
            with pytest.raises(FixedOverflowError) as info:
                lif.step(lif_state, current)
            assert (info.value.index, info.value.value) == (e.index, e.value)
            return
        b = lif.step(lif_state, current)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_shift_leak_trn_moves_negative_v_by_one():
    """§3: with TRN, V >>> k = -1 for any negative V, so V - (-1) = V + 1, even for k >= bits;
    a positive V below 2**k does not move; leak_min_step moves it by 1 too."""
    fmt = QFormat(8)
    lif = LIF(name="l", vm=fmt, threshold=127, leak="shift", leak_shift=8, reset="none")
    state = lif.init_state((1, 2))
    state["v"][...] = [[-5, 5]]
    out = lif.step(state, np.zeros((1, 2), np.int64))
    np.testing.assert_array_equal(out.v_post, [[-4, 5]])
    xylo = LIF(name="x", vm=fmt, threshold=127, leak="shift", leak_shift=8, leak_min_step=True, reset="none")
    state = {"v": np.array([[-5, 5]], np.int64)}
    np.testing.assert_array_equal(xylo.step(state, np.zeros((1, 2), np.int64)).v_post, [[-4, 4]])


# --------------------------------------------------------------------------- hand-derived examples
def _run(layer, shape, currents, state=None):
    state = layer.init_state(shape) if state is None else state
    return state, [layer.step(state, np.asarray(c, np.int64).reshape(shape)) for c in currents]


def test_if_reset_modes_by_hand():
    """θ = 5, I = 3 each step, s8: V_pre = 3, 6, ... By hand:
    subtract ">=": V_pre 3, 6, 4, 7, 5 -> spikes 0, 1, 0, 1, 1; V_post 3, 1, 4, 2, 0.
    zero ">":      V_pre 3, 6, 3, 6 -> spikes 0, 1, 0, 1; V_post 3, 0, 3, 0.
    value -2 ">=": V_pre 3, 6, 1, 4, 7 -> spikes 0, 1, 0, 0, 1; V_post 3, -2, 1, 4, -2."""
    cases = [
        (dict(reset="subtract", compare=">="), [3, 6, 4, 7, 5], [0, 1, 0, 1, 1], [3, 1, 4, 2, 0]),
        (dict(reset="zero", compare=">"), [3, 6, 3, 6, 3], [0, 1, 0, 1, 0], [3, 0, 3, 0, 3]),
        (dict(reset="value", reset_value=-2), [3, 6, 1, 4, 7], [0, 1, 0, 0, 1], [3, -2, 1, 4, -2]),
        (dict(reset="none"), [3, 6, 9, 12, 15], [0, 1, 1, 1, 1], [3, 6, 9, 12, 15]),
    ]
    for options, pre, spikes, post in cases:
        _, outs = _run(IF(name="if", vm=QFormat(8), threshold=5, **options), (1, 1), [3] * 5)
        assert [int(o.v_pre[0, 0]) for o in outs] == pre
        assert [int(o.spikes[0, 0]) for o in outs] == spikes
        assert [int(o.v_post[0, 0]) for o in outs] == post


def test_refractory_and_v_min_by_hand():
    """θ = 4, I = 4, refractory 2: fires at t0, silent t1, t2 (V held at 0), fires at t3.
    v_min = -3 with I = -5: V_pre -3, -3 (clamped, not counted)."""
    _, outs = _run(IF(name="r", vm=QFormat(8), threshold=4, refractory=2), (1, 1), [4] * 5)
    assert [int(o.spikes[0, 0]) for o in outs] == [1, 0, 0, 1, 0]
    assert [int(o.v_post[0, 0]) for o in outs] == [0, 0, 0, 0, 0]
    _, outs = _run(IF(name="m", vm=QFormat(8), threshold=4, v_min=-3), (1, 1), [-5, -5])
    assert [int(o.v_pre[0, 0]) for o in outs] == [-3, -3] and sum(o.overflows for o in outs) == 0


def test_overflow_modes_by_hand():
    """s4 (-8..7), θ = 7 not reached with reset none and I = 5 from V = 0: V + I = 5, then 10.
    WRAP: 10 - 16 = -6; SAT: 7; SAT_SYM: 7; each counts one overflow. ERROR raises at the 2nd step."""
    for mode, second in (("WRAP", -6), ("SAT", 7), ("SAT_SYM", 7)):
        _, outs = _run(IF(name="o", vm=QFormat(4), threshold=7, compare=">", reset="none", overflow=mode), (1, 1), [5, 5])
        assert [int(o.v_post[0, 0]) for o in outs] == [5, second]
        assert [o.overflows for o in outs] == [0, 1]
    layer = IF(name="conv3", vm=QFormat(4), threshold=7, compare=">", reset="none", overflow="ERROR")
    state = layer.init_state((1, 2, 2))
    layer.step(state, np.array([[[5, 0], [0, 5]]], np.int64))
    with pytest.raises(FixedOverflowError, match=r"conv3.*v\[0, 0, 0\] = 10") as info:
        layer.step(state, np.array([[[5, 0], [0, 5]]], np.int64))
    assert info.value.index == (0, 0, 0) and info.value.value == 10
    np.testing.assert_array_equal(state["v"], [[[5, 0], [0, 5]]])


def test_dt_reset_by_either_subtracts_highest_crossed_level_by_hand():
    """θ1 = 4, θ2 = 10, ">=", subtract, reset_by either: I = 12 -> both fire, V = 12 - 10 = 2;
    I = 3 -> V = 5, s1 only, V = 5 - 4 = 1.  After linear: (N, F) -> spikes (N, 2F)."""
    layer = DualThreshold(name="dt", vm=QFormat(8), theta1=4, theta2=10, reset_by="either")
    _, outs = _run(layer, (1, 1), [12, 3])
    assert [o.spikes[0].tolist() for o in outs] == [[1, 1], [1, 0]]
    assert [int(o.v_post[0, 0]) for o in outs] == [2, 1]
    state = layer.init_state((2, 3))
    assert layer.step(state, np.zeros((2, 3), np.int64)).spikes.shape == (2, 6)


def test_loihi_du_2047_halves_u():
    """du = 2047: u <- trunc0(u * 2048 / 4096) + a_in * 64 = u / 2 + 64 a_in.
    a_in = 1000 then 0: u = 64000, 32000, 16000, 8000.  dv = 0 (no leak): v = Σu =
    64000, 96000, 112000, 120000; vth = 2**17 - 1 (θ = 8388544) is never crossed."""
    layer = LoihiLIF(name="lo", du=2047, dv=0, vth=2**17 - 1)
    state, outs = _run(layer, (1, 1), [1000, 0, 0, 0])
    assert [int(o.v_pre[0, 0]) for o in outs] == [64000, 96000, 112000, 120000]
    assert int(state["u"][0, 0]) == 8000 and not any(o.spikes.any() for o in outs)


def test_loihi_v_decay_truncates_toward_zero():
    """du = 4095 (u = 64 a_in, no memory), dv = 2048 (v halves toward 0), a_in = -1 once:
    v = -64, -32, -16, -8, -4, -2, -1, 0 (trunc0(-1/2) = 0; a floor would stay at -1)."""
    layer = LoihiLIF(name="lo", du=4095, dv=2048, vth=0)
    _, outs = _run(layer, (1, 1), [-1] + [0] * 7)
    assert [int(o.v_post[0, 0]) for o in outs] == [-64, -32, -16, -8, -4, -2, -1, 0]


def test_loihi_strict_threshold_and_reset():
    """vth = 1 -> θ = 64; du = 4095, dv = 0, a_in = 1 -> u = 64 each step:
    v = 64 (not > 64), 128 (spike, v <- 0), 64, 128 (spike)... u is not reset."""
    layer = LoihiLIF(name="lo", du=4095, dv=0, vth=1)
    state, outs = _run(layer, (1, 1), [1] * 4)
    assert [int(o.v_pre[0, 0]) for o in outs] == [64, 128, 64, 128]
    assert [int(o.spikes[0, 0]) for o in outs] == [0, 1, 0, 1]
    assert int(state["u"][0, 0]) == 64


def test_loihi_saturation_and_wrap_are_counted():
    """v: du = 4095, dv = 0, a_in = 32767 -> u = 2097088 each step; v = 2097088, 4194176,
    6291264, 8388352, then 10485440 saturates to 2**23 - 1 = 8388607 (1 overflow), which is
    > θ = 131071 * 64 = 8388544: spike, v <- 0.
    u: du = 0 from u = 2**23 - 1: 8388607 * 4095 / 4096 = 8386559.0002 -> 8386559, + 2097088
    = 10483647 -> wraps to 10483647 - 2**24 = -6293569 (1 overflow)."""
    layer = LoihiLIF(name="lo", du=4095, dv=0, vth=2**17 - 1)
    _, outs = _run(layer, (1, 1), [32767] * 5)
    assert [int(o.v_pre[0, 0]) for o in outs] == [2097088, 4194176, 6291264, 8388352, 8388607]
    assert [o.overflows for o in outs] == [0, 0, 0, 0, 1] and int(outs[-1].spikes[0, 0]) == 1
    layer = LoihiLIF(name="lo", du=0, dv=4095, vth=2**17 - 1)
    state = {"u": np.array([[2**23 - 1]], np.int64), "v": np.zeros((1, 1), np.int64)}
    out = layer.step(state, np.array([[32767]], np.int64))
    assert int(state["u"][0, 0]) == -6293569 and out.overflows == 1


def test_loihi_u_wraps_in_twos_complement_at_plus_2_23():
    """§5, the documented difference from Lava: u = +2**23 wraps to -2**23, u = -2**23 is kept.

    du = 0: u <- trunc0(u·4095/4096) + 64·a_in.  u0 = ±6553600 = ±1600·4096, so
    u0·4095/4096 = ±1600·4095 = ±6552000 exactly; a_in = ±28697, 64·a_in = ±1836608; the sums
    are +8388608 = 2**23 (wraps to -2**23, counted; Lava keeps +2**23) and -8388608 = -2**23
    (in range, kept; Lava maps it to +2**23).  dv = 0, v0 = 0: v = u = -2**23 in both neurons,
    saturated to -(2**23 - 1) (SAT_SYM, counted twice).  vth = 0: θ = 0, no spike."""
    layer = LoihiLIF(name="lo", du=0, dv=0, vth=0)
    state = {"u": np.array([[6553600, -6553600]], np.int64), "v": np.zeros((1, 2), np.int64)}
    out = layer.step(state, np.array([[28697, -28697]], np.int64))
    assert state["u"].tolist() == [[-(2**23), -(2**23)]]
    assert out.v_pre.tolist() == [[-(2**23 - 1), -(2**23 - 1)]] and out.overflows == 1 + 2
    assert not out.spikes.any()


def test_loihi_input_and_bias_scaling_are_exact():
    """§5: a_in·2**6 and bias_mant·2**bias_exp are exact (in int16 both products below wrap to 0
    or change sign).  du = 4095: u = 64·a_in (no memory); dv = 4095: v0 = 0 stays 0 before the sum.
    Channel 0: a_in = -32768 -> u = -2097152, bias -4096·2**7 = -524288, v = -2621440.
    Channel 1: a_in = 32767 -> u = 2097088, bias 4095·2**7 = 524160, v = 2621248.
    vth = 2**17 - 1: θ = 8388544, no spike; nothing overflows.  a_in outside 16 bits is refused."""
    layer = LoihiLIF(name="lo", du=4095, dv=4095, vth=2**17 - 1, bias_mant=(-4096, 4095), bias_exp=(7, 7))
    state = layer.init_state((1, 2))
    out = layer.step(state, np.array([[-32768, 32767]], np.int64))
    assert state["u"].tolist() == [[-2097152, 2097088]]
    assert out.v_pre.tolist() == [[-2621440, 2621248]] and out.overflows == 0 and not out.spikes.any()
    for a_in in (-32769, 32768):
        with pytest.raises(LayerError, match=rf"lo.*current\[0, 1\] = {a_in}"):
            layer.step(state, np.array([[0, a_in]], np.int64))


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make, field, value",
    [
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=300), "threshold", "300"),
        (lambda: IF(name="conv1", vm=QFormat(8, signed=False), threshold=(1, -2)), "threshold[1]", "-2"),
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=5, compare="=>"), "compare", "'=>'"),
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=5, reset="hard"), "reset", "'hard'"),
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=5, overflow="CLIP"), "overflow", "'CLIP'"),
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=5, overflow="SAT_SYM", v_min=-128), "v_min", "-128"),
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=5, reset_value=200), "reset_value", "200"),
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=5, refractory=-1), "refractory", "-1"),
        (lambda: IF(name="conv1", vm=QFormat(63), threshold=5), "vm", "'s63.0'"),
        (lambda: IF(name="conv1", vm=QFormat(8), threshold=2.5), "threshold", "2.5"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="none"), "leak", "'none'"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="shift"), "leak_shift", "None"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="shift", leak_shift=2, leak_step=1), "leak_step", "1"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="mul", leak_shift=4, leak_mult=17), "leak_mult", "17"),
        (lambda: LIF(name="lif2", vm=QFormat(60), threshold=5, leak="mul", leak_shift=4, leak_mult=1), "leak_shift", "4"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="linear", leak_step=128), "leak_step", "128"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="linear", leak_step=1, leak_min_step=True), "leak_min_step", "True"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="shift", leak_shift=1, leak_rounding="up"), "leak_rounding", "'up'"),
        (lambda: LIF(name="lif2", vm=QFormat(8), threshold=5, leak="shift", leak_shift=1, order="fire_first"), "order", "'fire_first'"),
        (lambda: DualThreshold(name="dt3", vm=QFormat(8), theta1=4, theta2=500), "theta2", "500"),
        (lambda: DualThreshold(name="dt3", vm=QFormat(8), theta1=4, theta2=5, reset_by="none"), "reset_by", "'none'"),
        (lambda: LoihiLIF(name="lo4", du=4096, dv=0, vth=1), "du", "4096"),
        (lambda: LoihiLIF(name="lo4", du=1, dv=0, vth=2**17), "vth", "131072"),
        (lambda: LoihiLIF(name="lo4", du=1, dv=0, vth=1, bias_exp=(0, 8)), "bias_exp[1]", "8"),
    ],
)
def test_invalid_fields_are_refused_naming_layer_field_value(make, field, value):
    with pytest.raises(LayerError) as info:
        make()
    message = str(info.value)
    name = message.split("'")[1]
    assert name in ("conv1", "lif2", "dt3", "lo4")
    assert f"{field} = {value}" in message


@pytest.mark.parametrize("make", [
    lambda name: IF(name=name, vm=QFormat(8), threshold=5),
    lambda name: DualThreshold(name=name, vm=QFormat(8), theta1=4, theta2=5),
    lambda name: LoihiLIF(name=name, du=0, dv=0, vth=1),
])  # fmt: skip
@pytest.mark.parametrize("name", ["conv1.neurons", "", "a b", 7])
def test_layer_names_are_letters_digits_and_underscore(make, name):
    """The same rule as every other layer (refmodel.layers.base.check_name)."""
    with pytest.raises(LayerError) as info:
        make(name)
    assert (info.value.field, info.value.value) == ("name", name)
    assert make("conv1_neurons").name == "conv1_neurons"


def test_step_refuses_bad_inputs_naming_layer_field_value():
    layer = IF(name="fc7", vm=QFormat(8), threshold=(1, 2, 3))
    with pytest.raises(LayerError, match=r"fc7.*threshold.*3 entries.*2 channels"):
        layer.init_state((1, 2))
    state = layer.init_state((1, 3))
    with pytest.raises(LayerError, match=r"fc7.*current = dtype\('int32'\)"):
        layer.step(state, np.zeros((1, 3), np.int32))
    with pytest.raises(LayerError, match=r"fc7.*current.shape = \(3,\)"):
        layer.step(state, np.zeros(3, np.int64))
    with pytest.raises(LayerError, match=r"fc7.*current\[0, 2\] = 4611686018427387905"):
        layer.step(state, np.array([[0, 0, 2**62 + 1]], np.int64))
    state["v"][0, 1] = 128
    with pytest.raises(LayerError, match=r"fc7.*state\['v'\]\[0, 1\] = 128 is outside -128..127"):
        layer.step(state, np.zeros((1, 3), np.int64))
    with pytest.raises(LayerError, match=r"fc7.*state keys = \['u', 'v'\]"):
        layer.step({"u": state["v"], "v": state["v"]}, np.zeros((1, 3), np.int64))
    loihi = LoihiLIF(name="lo", du=0, dv=0, vth=1)
    with pytest.raises(LayerError, match=r"lo.*current\[0, 0\] = 32768"):
        loihi.step(loihi.init_state((1, 1)), np.array([[32768]], np.int64))


def test_step_contract():
    """init_state keys and dtypes; NeuronStep fields; step gives the state new arrays, so the
    arrays of an earlier step are not written by a later step."""
    layer = LIF(name="l", vm=QFormat(12), threshold=9, leak="shift", leak_shift=2, refractory=1)
    state = layer.init_state((2, 2, 3, 3))
    assert set(state) == {"v", "refractory"} and all(a.dtype == np.int64 and not a.any() for a in state.values())
    out = layer.step(state, np.full((2, 2, 3, 3), 10, np.int64))
    assert isinstance(out, NeuronStep) and out.v_post is state["v"]
    kept = [a.copy() for a in out[:3]]
    layer.step(state, np.full((2, 2, 3, 3), 7, np.int64))
    assert state["v"] is not out.v_post
    for a, b in zip(out[:3], kept):
        np.testing.assert_array_equal(a, b)


def test_advance_updates_the_state_in_place():
    """docs/neurons.md §1: advance writes into the state's arrays, so its v_post (= state["v"])
    changes with the next advance; spikes and v_pre are new arrays each step; keep_pre=False
    gives v_pre None.  Same values as step.  V: 0 -> 10 (fires, -9 -> 1) -> 1 + 7 = 8."""
    layer = IF(name="i", vm=QFormat(12), threshold=9)
    state, checked = layer.init_state((1, 2)), layer.init_state((1, 2))
    v = state["v"]
    first = layer.advance(state, np.full((1, 2), 10, np.int64))
    assert first.v_post is v is state["v"] and first.v_post.tolist() == [[1, 1]]
    spikes, v_pre = first.spikes.copy(), first.v_pre.copy()
    second = layer.advance(state, np.full((1, 2), 7, np.int64), keep_pre=False)
    assert state["v"] is v and first.v_post.tolist() == [[8, 8]] and second.v_pre is None
    assert first.spikes.tolist() == spikes.tolist() == [[1, 1]] and first.v_pre.tolist() == v_pre.tolist()
    layer.step(checked, np.full((1, 2), 10, np.int64))
    assert layer.step(checked, np.full((1, 2), 7, np.int64)).v_post.tolist() == state["v"].tolist()
