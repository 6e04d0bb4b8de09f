"""Pooling layers: kernels == pure-Python twin bit for bit, and the properties of docs/pooling.md."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refmodel.fixed import FixedOverflowError, QFormat, shift_right
from refmodel.layers.base import LayerError
from refmodel.layers.neurons import IF, DualThreshold
from refmodel.layers.pooling import AvgPool, CountGatePool, OrPool, PooledNeuronPool, SumPool, WinnerSpikePool
from tests.modes import OVERFLOWS, ROUNDINGS
from tests.oracle import pooling as oracle


# ---------------------------------------------------------------------------- strategies
@st.composite
def geometries(draw, overlap=True, power_of_two=False):
    """(shape, kernel, stride or None): small (N, C, H, W) holding at least one window."""
    sides = st.sampled_from([1, 2, 4]) if power_of_two else st.integers(1, 3)
    kh, kw = draw(sides), draw(sides)
    stride = draw(st.none() | st.tuples(st.integers(1 if overlap else kh, 4), st.integers(1 if overlap else kw, 4)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(kh, 7)), draw(st.integers(kw, 7)))
    return shape, (kh, kw), stride


def spike_seqs(shape, steps):
    return st.lists(arrays(np.uint8, shape, elements=st.integers(0, 1)), min_size=steps[0], max_size=steps[1])


def vm_arrays(shape, lo=-6, hi=6):
    """Values in [lo, hi]: mostly within ±6 of 0 or of a bound (ties are frequent), some anywhere."""
    near = [st.integers(max(lo, -6), min(hi, 6)), st.integers(lo, min(hi, lo + 6)), st.integers(max(lo, hi - 6), hi)]
    return arrays(np.int64, shape, elements=st.one_of(*near, st.integers(lo, hi)))


INT64 = (-(2**63), 2**63 - 1)


def qformats(max_bits=12, signed=None):
    return st.builds(
        QFormat,
        bits=st.integers(1, min(max_bits, 12)) | st.integers(1, max_bits),
        frac=st.integers(-2, 4),
        signed=st.booleans() if signed is None else st.just(signed),
    )


def windows(a, layer):
    """``a`` (N, C, H, W) -> (N, C, Ho, Wo, kh*kw), positions row-major; numpy, independent of the twin."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    view = np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    return view.reshape(view.shape[:4] + (kh * kw,))


def assert_same_overflow(kernel_error, twin_error):
    assert tuple(int(i) for i in kernel_error.index) == twin_error.index
    assert kernel_error.value == twin_error.value


# ---------------------------------------------------------------------------- kernel == twin
def dual(shape):
    """The spike shape of a dual-threshold layer whose Vm has ``shape``: [s1, s2], 2C channels."""
    n, c, h, w = shape
    return n, 2 * c, h, w


@given(geometries(), st.sampled_from(["pre", "post"]), st.booleans(), st.data())
def test_winner_spike_matches_twin(geometry, vm, after_dual_threshold, data):
    vm_shape, kernel, stride = geometry
    shape = dual(vm_shape) if after_dual_threshold else vm_shape
    layer = WinnerSpikePool(name="pool", kernel=kernel, stride=stride, vm_stage=vm)
    state = layer.init_state(shape)
    for spikes in data.draw(spike_seqs(shape, (1, 3))):
        v_pre, v_post = data.draw(vm_arrays(vm_shape, *INT64)), data.draw(vm_arrays(vm_shape, *INT64))
        step = layer.step(state, spikes=spikes, v_pre=v_pre, v_post=v_post)
        out, index = oracle.winner_spike(spikes.tolist(), (v_pre if vm == "pre" else v_post).tolist(),
                                         layer.kernel, layer.stride)
        assert step.out.dtype == np.uint8 and step.out.shape == layer.batch_output_shape(shape)
        assert step.out.tolist() == out
        assert step.index.tolist() == index
        assert step.v is None and step.overflows == 0


@given(geometries(), st.integers(1, 3), st.data())
def test_count_gate_matches_twin(geometry, count_bits, data):
    shape, kernel, stride = geometry
    layer = CountGatePool(name="gate", kernel=kernel, stride=stride, count_bits=count_bits)
    state = layer.init_state(shape)
    counts = state["count"].tolist()
    for spikes in data.draw(spike_seqs(shape, (1, 10))):
        step = layer.step(state, spikes=spikes)
        out, index, lost = oracle.count_gate(spikes.tolist(), counts, count_bits, layer.kernel, layer.stride)
        assert step.out.tolist() == out
        assert step.index.tolist() == index
        assert step.overflows == lost
        assert state["count"].tolist() == counts


def integrate(v, currents, fmt):
    """The preceding layer integrates only (reset "none") and keeps its Vm in ``fmt`` by saturating."""
    v[...] = np.clip(v.astype(object) + currents, fmt.min_int, fmt.max_int).astype(np.int64)  # exact sum


@given(geometries(overlap=False), qformats(max_bits=63).filter(lambda f: f.max_int >= 1), st.data())
def test_pooled_neuron_matches_twin(geometry, fmt, data):
    shape, kernel, stride = geometry
    overflow = data.draw(OVERFLOWS)
    layer = PooledNeuronPool(
        name="vmpool", kernel=kernel, stride=stride, vm=fmt, overflow=overflow,
        threshold=data.draw(st.integers(1, min(fmt.max_int, 6)) | st.integers(1, fmt.max_int)),
        compare=data.draw(st.sampled_from([">=", ">"])),
    )
    state = layer.init_state(shape)
    v = np.zeros(shape, np.int64)
    for _ in range(data.draw(st.integers(1, 5))):
        integrate(v, data.draw(vm_arrays(shape, -fmt.max_int, fmt.max_int)), fmt)
        twin_v = v.tolist()
        try:
            out, vmax, index, events = oracle.pooled_neuron(twin_v, layer.threshold, layer.compare, fmt, overflow,
                                                            layer.kernel, layer.stride)
        except oracle.OracleOverflowAt as twin_error:
            before = v.copy()
            with pytest.raises(FixedOverflowError) as kernel_error:
                layer.step(state, v_state=v)
            assert_same_overflow(kernel_error.value, twin_error)
            assert (v == before).all(), "a step that raises leaves v_state unchanged"
            return
        step = layer.step(state, v_state=v)
        assert step.out.dtype == np.uint8
        assert step.out.tolist() == out
        assert step.v.tolist() == vmax
        assert step.index.tolist() == index
        assert step.overflows == events
        assert v.tolist() == twin_v


@given(geometries(), st.data())
def test_or_pool_matches_twin(geometry, data):
    shape, kernel, stride = geometry
    layer = OrPool(name="orpool", kernel=kernel, stride=stride)
    state = layer.init_state(shape)
    for spikes in data.draw(spike_seqs(shape, (1, 3))):
        step = layer.step(state, spikes=spikes)
        assert step.out.dtype == np.uint8
        assert step.out.tolist() == oracle.or_pool(spikes.tolist(), layer.kernel, layer.stride)


@given(geometries(power_of_two=True), qformats(max_bits=5), OVERFLOWS, st.data())
def test_sum_and_avg_pool_match_twin(geometry, fmt, overflow, data):
    shape, kernel, stride = geometry
    average = data.draw(st.booleans())
    if average:
        log2_area = (kernel[0] * kernel[1]).bit_length() - 1
        fmt = QFormat(fmt.bits, data.draw(st.integers(0, log2_area)), fmt.signed)
        rounding = data.draw(ROUNDINGS)
        layer = AvgPool(name="avg", kernel=kernel, stride=stride, out_format=fmt, overflow=overflow, rounding=rounding)
    else:
        layer = SumPool(name="sum", kernel=kernel, stride=stride, out_format=fmt, overflow=overflow)
    state = layer.init_state(shape)
    for spikes in data.draw(spike_seqs(shape, (1, 3))):
        try:
            if average:
                out, events = oracle.avg_pool(spikes.tolist(), layer.kernel, layer.stride, fmt, rounding, overflow)
            else:
                out, events = oracle.sum_pool(spikes.tolist(), layer.kernel, layer.stride, fmt, overflow)
        except oracle.OracleOverflowAt as twin_error:
            with pytest.raises(FixedOverflowError) as kernel_error:
                layer.step(state, spikes=spikes)
            assert_same_overflow(kernel_error.value, twin_error)
            continue
        step = layer.step(state, spikes=spikes)
        assert step.out.dtype == np.int64 and layer.out_format == fmt
        assert step.out.tolist() == out
        assert step.overflows == events


# ---------------------------------------------------------------------------- properties
def fire(v, theta, compare):
    return (v >= theta if compare == ">=" else v > theta).astype(np.uint8)


@given(geometries(), st.integers(-5, 5), st.integers(-5, 5), st.sampled_from([">=", ">"]), st.data())
def test_winner_on_pre_reset_vm_with_shared_threshold_is_or_pooling(geometry, theta1, theta2, compare, data):
    """Also after a dual-threshold layer: each map [s1, s2] has its own shared threshold."""
    shape, kernel, stride = geometry
    winner = WinnerSpikePool(name="winner", kernel=kernel, stride=stride, vm_stage="pre")
    either = OrPool(name="orpool", kernel=kernel, stride=stride)
    for _ in range(data.draw(st.integers(1, 3))):
        v_pre = data.draw(vm_arrays(shape))
        for spikes in (fire(v_pre, theta1, compare),
                       np.concatenate((fire(v_pre, theta1, compare), fire(v_pre, theta2, compare)), axis=1)):
            got = winner.step({}, spikes=spikes, v_pre=v_pre).out
            assert got.tolist() == either.step({}, spikes=spikes).out.tolist()


@given(geometries(), st.sampled_from([">=", ">"]), st.booleans(), st.data())
def test_winner_on_pre_reset_vm_is_or_pooling_after_refmodel_neuron_layers(geometry, compare, dual_threshold, data):
    """Through refmodel's IF (reset by subtraction) or DualThreshold layers, per-channel thresholds."""
    shape, kernel, stride = geometry
    thresholds = st.lists(st.integers(-4, 8), min_size=shape[1], max_size=shape[1]).map(tuple)
    if dual_threshold:
        neuron = DualThreshold(name="dt", vm=QFormat(16), theta1=data.draw(thresholds), theta2=data.draw(thresholds),
                               compare=compare, overflow="SAT")
    else:
        neuron = IF(name="if1", vm=QFormat(16), threshold=data.draw(thresholds), compare=compare, overflow="SAT")
    winner = WinnerSpikePool(name="winner", kernel=kernel, stride=stride, vm_stage="pre")
    either = OrPool(name="orpool", kernel=kernel, stride=stride)
    neuron_state = neuron.init_state(shape)
    for _ in range(data.draw(st.integers(1, 6))):
        out = neuron.step(neuron_state, data.draw(vm_arrays(shape)))
        got = winner.step({}, spikes=out.spikes, v_pre=out.v_pre, v_post=out.v_post, v_state=neuron_state["v"])
        assert got.out.tolist() == either.step({}, spikes=out.spikes).out.tolist()


@given(geometries(overlap=False), st.integers(1, 12), st.sampled_from([">=", ">"]), st.integers(1, 40),
       st.booleans(), st.data())
def test_pooled_neuron_spike_count_under_constant_currents(geometry, theta, compare, steps, if_layer, data):
    """N_T = min(T, #{n >= 1 : n·θ ⋄ T·M}) with M = max current of the window (docs/pooling.md).

    The integrator is the test's own or refmodel's IF layer with reset "none" (the interface of §1)."""
    shape, kernel, stride = geometry
    fmt = QFormat(32)
    layer = PooledNeuronPool(name="vmpool", kernel=kernel, stride=stride, vm=fmt, threshold=theta, compare=compare)
    neuron = IF(name="if1", vm=fmt, threshold=theta, reset="none")
    currents = data.draw(arrays(np.int64, shape, elements=st.integers(0, 2 * theta)))
    v = np.zeros(shape, np.int64)
    neuron_state = neuron.init_state(shape)
    count = np.zeros(layer.batch_output_shape(shape), np.int64)
    for _ in range(steps):
        if if_layer:
            out = neuron.step(neuron_state, currents)
            step = layer.step({}, spikes=out.spikes, v_pre=out.v_pre, v_post=out.v_post, v_state=neuron_state["v"])
        else:
            integrate(v, currents, fmt)
            step = layer.step({}, v_state=v)
        count += step.out
    total = steps * windows(currents, layer).max(axis=-1)
    multiples = total // theta if compare == ">=" else np.maximum(0, -(-total // theta) - 1)
    assert count.tolist() == np.minimum(steps, multiples).tolist()
    # the corollary stated in the docs, for windows with M <= θ
    small = total <= steps * theta
    n_theta, tm = count[small] * theta, total[small]
    if compare == ">=":  # N·θ <= T·M < (N + 1)·θ
        assert ((n_theta <= tm) & (tm < n_theta + theta)).all()
    else:  # N·θ < T·M <= (N + 1)·θ, or N = T·M = 0
        assert (((n_theta < tm) & (tm <= n_theta + theta)) | ((n_theta == 0) & (tm == 0))).all()


def test_pooled_neuron_subtracts_in_the_neuron_layers_vm_in_place():
    """§2.2: v_state is the neuron layer's state["v"], which is also the v_post its step returned,
    so the pool's subtraction shows there.  θ = 4, one 2×2 window, currents 5, 1, 0, 2 into an
    integrating IF: V = 5, 1, 0, 2; m = 5 >= 4 fires and V <- 1, -3, -4, -2."""
    neuron = IF(name="if1", vm=QFormat(8), threshold=4, reset="none")
    pool = PooledNeuronPool(name="vmpool", kernel=2, threshold=4, vm=QFormat(8))
    state = neuron.init_state((1, 1, 2, 2))
    out = neuron.step(state, np.array([[[[5, 1], [0, 2]]]], np.int64))
    step = pool.step({}, spikes=out.spikes, v_pre=out.v_pre, v_post=out.v_post, v_state=state["v"])
    assert (step.out.ravel().tolist(), step.v.ravel().tolist(), step.index.ravel().tolist()) == ([1], [5], [0])
    assert out.v_post is state["v"] and out.v_post.tolist() == [[[[1, -3], [-4, -2]]]]
    assert out.v_pre.tolist() == [[[[5, 1], [0, 2]]]]  # its own array, not written by the pool


@given(geometries(), st.integers(1, 3), st.data())
def test_count_gate_passes_the_spikes_of_the_highest_count(geometry, count_bits, data):
    shape, kernel, stride = geometry
    layer = CountGatePool(name="gate", kernel=kernel, stride=stride, count_bits=count_bits)
    seq = np.array(data.draw(spike_seqs(shape, (1, 10))))
    counts = np.minimum(np.cumsum(seq, axis=0, dtype=np.int64), 2**count_bits - 1)  # this step included
    state = layer.init_state(shape)
    for t, spikes in enumerate(seq):
        step = layer.step(state, spikes=spikes)
        winner = windows(counts[t], layer).argmax(axis=-1)  # numpy: first index of the maximum
        expected = np.take_along_axis(windows(spikes, layer), winner[..., None], axis=-1)[..., 0]
        assert step.index.tolist() == winner.tolist()
        assert step.out.tolist() == expected.tolist()
    assert state["count"].tolist() == counts[-1].tolist()


@given(geometries(power_of_two=True), ROUNDINGS, st.data())
def test_avg_is_sum_shifted_by_log2_area(geometry, rounding, data):
    shape, kernel, stride = geometry
    log2_area = (kernel[0] * kernel[1]).bit_length() - 1
    frac = data.draw(st.integers(0, log2_area))
    sum_layer = SumPool(name="sum", kernel=kernel, stride=stride, out_format=QFormat(8, log2_area, signed=False))
    avg_layer = AvgPool(name="avg", kernel=kernel, stride=stride, out_format=QFormat(8, frac, signed=False),
                        rounding=rounding)
    spikes = data.draw(arrays(np.uint8, shape, elements=st.integers(0, 1)))
    total = sum_layer.step({}, spikes=spikes).out
    assert (total == windows(spikes, sum_layer).sum(axis=-1)).all()
    avg = avg_layer.step({}, spikes=spikes).out
    assert avg.tolist() == shift_right(total, log2_area - frac, rounding).tolist()
    if frac == log2_area:  # the exact mean: same code as the sum
        assert avg.tolist() == total.tolist()


# ---------------------------------------------------------------------------- validation
U8 = QFormat(8, signed=False)
S16 = QFormat(16)
INVALID = [
    (WinnerSpikePool, dict(kernel=0), "kernel", 0),
    (WinnerSpikePool, dict(kernel=2, stride=(1, 0)), "stride", (1, 0)),
    (WinnerSpikePool, dict(kernel=2, vm_stage="mid"), "vm_stage", "mid"),
    (CountGatePool, dict(kernel=2, count_bits=0), "count_bits", 0),
    (CountGatePool, dict(kernel=2, count_bits=64), "count_bits", 64),
    (PooledNeuronPool, dict(kernel=2, stride=1, threshold=4, vm=S16), "stride", (1, 1)),
    (PooledNeuronPool, dict(kernel=(2, 3), stride=(2, 2), threshold=4, vm=S16), "stride", (2, 2)),
    (PooledNeuronPool, dict(kernel=2, threshold=0, vm=S16), "threshold", 0),
    (PooledNeuronPool, dict(kernel=2, threshold=2**15, vm=S16), "threshold", 2**15),
    (PooledNeuronPool, dict(kernel=2, threshold=4, vm=QFormat(64)), "vm", QFormat(64)),
    (PooledNeuronPool, dict(kernel=2, threshold=4, vm=16), "vm", 16),
    (PooledNeuronPool, dict(kernel=2, threshold=4, vm=S16, compare="<"), "compare", "<"),
    (PooledNeuronPool, dict(kernel=2, threshold=4, vm=S16, overflow="CLAMP"), "overflow", "CLAMP"),
    (SumPool, dict(kernel=3, out_format=QFormat(64, signed=False)), "out_format", QFormat(64, signed=False)),
    (AvgPool, dict(kernel=3, out_format=U8, rounding="RND"), "kernel", (3, 3)),
    (AvgPool, dict(kernel=2, out_format=QFormat(8, 3, False), rounding="RND"), "out_format", QFormat(8, 3, False)),
    (AvgPool, dict(kernel=2, out_format=U8, rounding="UP"), "rounding", "UP"),
]


@pytest.mark.parametrize("cls, kwargs, field, value", INVALID)
def test_invalid_configuration_names_layer_field_and_value(cls, kwargs, field, value):
    with pytest.raises(LayerError) as error:
        cls(name="pool3", **kwargs)
    assert (error.value.layer, error.value.field, error.value.value) == ("pool3", field, value)
    assert "pool3" in str(error.value) and field in str(error.value) and repr(value) in str(error.value)


def test_modes_are_normalized_from_names():
    layer = AvgPool(name="avg", kernel=2, out_format=U8, rounding="rnd_conv", overflow="sat")
    assert (layer.rounding.name, layer.overflow.name, layer.stride) == ("RND_CONV", "SAT", (2, 2))


BAD_STEPS = [
    (OrPool(name="p", kernel=2), dict(spikes=np.zeros((1, 1, 4, 4), np.int64)), "spikes"),
    (OrPool(name="p", kernel=2), dict(spikes=np.full((1, 1, 4, 4), 2, np.uint8)), "spikes[0, 0, 0, 0]"),
    (WinnerSpikePool(name="p", kernel=2, vm_stage="post"),
     dict(spikes=np.zeros((1, 1, 4, 4), np.uint8), v_post=np.zeros((1, 1, 4, 5), np.int64)), "v_post"),
    (WinnerSpikePool(name="p", kernel=2), dict(spikes=np.zeros((1, 1, 4, 4), np.uint8)), "v_pre"),
    (CountGatePool(name="p", kernel=2, count_bits=4), dict(spikes=np.zeros((1, 1, 4, 4), np.uint8)), 'state["count"]'),
    (PooledNeuronPool(name="p", kernel=2, threshold=3, vm=QFormat(4)),
     dict(v_state=np.full((1, 1, 4, 4), 8, np.int64)), "v_state"),
    (PooledNeuronPool(name="p", kernel=2, threshold=3, vm=QFormat(4)),
     dict(v_state=np.zeros((1, 1, 4, 4), np.int64)[..., ::2]), "v_state"),
    (PooledNeuronPool(name="p", kernel=2, threshold=3, vm=QFormat(4)),
     dict(spikes=np.zeros((1, 2, 4, 4), np.uint8), v_state=np.zeros((1, 1, 4, 4), np.int64)), "spikes"),
    (SumPool(name="p", kernel=2, out_format=U8), dict(spikes=np.zeros((1, 1, 1, 4), np.uint8)), "shape"),
]


@pytest.mark.parametrize("layer, arrays_, field", BAD_STEPS)
def test_invalid_step_input_names_layer_and_field(layer, arrays_, field):
    with pytest.raises(LayerError) as error:
        layer.step({}, **arrays_)
    assert (error.value.layer, error.value.field) == ("p", field)


def test_init_state_refuses_an_input_smaller_than_the_window():
    with pytest.raises(LayerError) as error:
        CountGatePool(name="gate", kernel=(2, 3), count_bits=4).init_state((1, 1, 4, 2))
    assert (error.value.field, error.value.value) == ("shape", (1, 4, 2))  # the per-sample (C, H, W)
