"""Helpers for users' own bit-exact tests of a design against the golden model.

``assert_bit_exact`` needs only the runtime dependencies.  The hypothesis strategies below
(``qformats``, ``conv2d_layers``, ``linear_layers``, ``neuron_layers``, ``pool_layers``,
``networks``, ``graph_networks``, ``stimuli``) need hypothesis, which comes with the ``test`` extra
(``pip install 'refmodel[test]'``); calling one without it raises an ImportError that says so.
A worked example is in docs/testing.md.

Coverage (docs/coverage.md): ``bins_of(network)`` lists every bin of a network with why it is
unreachable; ``target_bins(coverage, bins)`` hands the hits of bins to ``hypothesis.target`` so
that a property test searches for inputs that hit them; ``assert_hit(coverage, bins)`` fails,
naming the bins, when a test's inputs never hit them.

Every strategy draws valid descriptions only (they build without error).  Overflow fields
take WRAP, SAT and SAT_SYM; ``errors=True`` adds ERROR, whose runs may then raise
``FixedOverflowError`` (the golden model refusing a value, which a DUT model may be tested on
too).
"""

from __future__ import annotations

import math

import numpy as np

from refmodel.fixed import QFormat, Rounding
from refmodel.layers import (
    IF,
    Add,
    Concat,
    LIF,
    AvgPool,
    Conv2d,
    CountGatePool,
    DualThreshold,
    Flatten,
    Linear,
    LoihiLIF,
    OrPool,
    PooledNeuronPool,
    SumPool,
    WinnerSpikePool,
    kinds_of,
)
from refmodel.network import Network
from refmodel.vectors.compare import first_mismatch

__all__ = [
    "assert_bit_exact",
    "pack_bits",
    "unpack_bits",
    "qformats",
    "conv2d_layers",
    "linear_layers",
    "neuron_layers",
    "pool_layers",
    "networks",
    "graph_networks",
    "stimuli",
    "NEURON_KINDS",
    "POOL_KINDS",
    "bins_of",
    "target_bins",
    "assert_hit",
]

NEURON_KINDS = kinds_of("neuron")
POOL_KINDS = kinds_of("pool")
_OVERFLOWS = ("WRAP", "SAT", "SAT_SYM")
_ROUNDINGS = tuple(r.name for r in Rounding)


def assert_bit_exact(expected, actual, *, layer=None, signal=None, axes=None, at=None):
    """Raise AssertionError with the first-mismatch report unless the integer arrays are equal.

    Dtypes may differ (equal values are equal); ``axes`` names the dimensions in the report
    (default t, n, c, y, x); ``at`` gives the fixed leading coordinates of a slice, e.g.
    ``at={"t": t, "n": n}`` for the (c, y, x) values of one timestep and sample
    (``first_mismatch``).  Non-integer arrays are refused with ValueError.
    """
    mismatch = first_mismatch(expected, actual, axes, at=at, layer=layer, signal=signal)
    if mismatch is not None:
        raise AssertionError(str(mismatch))


def pack_bits(values, bits: int) -> int:
    """The integers ``values`` (row-major) packed into one bus value, as RTL ports and Verilog
    concatenations ``{e[K-1], ..., e[0]}`` hold them: element ``k`` in bits ``[k*bits +: bits]``,
    as its two's-complement code.  Refuses a value outside the signed or unsigned ``bits`` range."""
    flat = [int(v) for v in np.asarray(values).ravel()]
    lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
    bad = next((k for k, v in enumerate(flat) if not lo <= v <= hi), None)
    if bad is not None:
        raise ValueError(f"pack_bits: element {bad} = {flat[bad]} does not fit {bits} bits")
    mask = (1 << bits) - 1
    return sum((v & mask) << (k * bits) for k, v in enumerate(flat))


def unpack_bits(value: int, count: int, bits: int, signed: bool) -> np.ndarray:
    """The ``count`` elements of the bus value ``value`` packed as ``pack_bits`` does, decoded as
    signed (two's complement) or unsigned ``bits``-wide codes: an int64 array."""
    value, mask = int(value), (1 << bits) - 1
    if not 0 <= value < 1 << (count * bits):
        raise ValueError(f"unpack_bits: {value:#x} is not a {count * bits}-bit bus value")
    codes = [(value >> (k * bits)) & mask for k in range(count)]
    if signed:
        codes = [c - (1 << bits) if c >> (bits - 1) else c for c in codes]
    return np.array(codes, dtype=np.int64)


# --------------------------------------------------------------------------- coverage
def bins_of(network: Network) -> dict:
    """{(layer, bin): reason it is unreachable, or None} of every coverage bin of ``network``'s
    layers, in order (the network input's bins come from the encoder: ``refmodel.coverage.input_coverage``)."""
    return {(layer.name, name): layer.unreachable_bins(network.sites[layer.name]).get(name)
            for layer in network.layers for name in layer.coverage_bins}


def _chosen(coverage, bins) -> list:
    """``bins`` as (layer, bin) pairs: given ("LAYER.BIN" or pairs), or every reachable bin."""
    if bins is None:
        return coverage.reachable()
    pairs = [tuple(b.rsplit(".", 1)) if isinstance(b, str) else tuple(b) for b in bins]
    unknown = [f"{layer}.{name}" for layer, name in pairs
               if layer not in coverage.layers or name not in coverage.layers[layer].hits]
    if unknown:
        raise KeyError(f"no such coverage bin: {', '.join(unknown)}")
    return pairs


def target_bins(coverage, bins=None) -> None:
    """``hypothesis.target(hits, label="LAYER.BIN")`` for each bin of ``bins`` ("LAYER.BIN"
    strings or (layer, bin) pairs; None: every reachable bin) of a run's ``Coverage``: hypothesis
    then prefers inputs with more hits (call it inside a ``@given`` test)."""
    from hypothesis import target

    for layer, name in _chosen(coverage, bins):
        target(float(coverage.hit(layer, name)), label=f"{layer}.{name}")


def assert_hit(coverage, bins=None) -> None:
    """AssertionError naming the bins of ``bins`` (as in ``target_bins``) that ``coverage`` never hit."""
    missed = [f"{layer}.{name}" for layer, name in _chosen(coverage, bins) if not coverage.hit(layer, name)]
    if missed:
        raise AssertionError(f"coverage bins never hit: {', '.join(missed)}")


# --------------------------------------------------------------------------- strategies
def _hypothesis():
    """(strategies, extra.numpy), or an ImportError naming the extra to install."""
    try:
        from hypothesis import strategies as st
        from hypothesis.extra import numpy as hnp
    except ImportError as err:
        raise ImportError(
            "the strategies of refmodel.testing need hypothesis: pip install 'refmodel[test]'"
        ) from err
    return st, hnp


def _modes(st, errors):
    return st.sampled_from(_OVERFLOWS + (("ERROR",) if errors else ()))


def _codes(st, hnp, shape, lo, hi):
    """int64 arrays of ``shape`` with values in lo..hi, often near 0 or a bound."""
    near = st.one_of(st.integers(max(lo, -3), min(hi, 3)), st.integers(lo, min(hi, lo + 3)), st.integers(max(lo, hi - 3), hi))
    return hnp.arrays(np.int64, shape, elements=near | st.integers(lo, hi))


def _levels(st, lo, hi):
    """An integer in lo..hi, mostly small and positive (a threshold that the currents reach)."""
    small = [st.integers(max(lo, 1), min(hi, top)) for top in (16, 1024) if hi >= 1 and lo <= top]
    return st.one_of(*small, st.integers(lo, hi))


def _per_channel(st, values, channels):
    """A scalar of ``values`` or (when ``channels`` is known) one per channel."""
    return values if not channels else values | st.tuples(*[values] * channels)


def qformats(bits=(1, 16), frac=(-2, 8), signed=None):
    """QFormats with ``bits`` and ``frac`` in the given inclusive ranges; ``signed``: None (either) or a bool."""
    st, _ = _hypothesis()
    return st.builds(
        QFormat,
        st.integers(*bits),
        st.integers(*frac),
        st.booleans() if signed is None else st.just(signed),
    )


def _synapse_fields(draw, st, hnp, weight_shape, errors, current_bits):
    """Weight, bias and accumulator fields shared by Conv2d and Linear.

    With ``current_bits`` the accumulator is a signed format of at most that many bits, so
    every current fits it (e.g. 16 for a Loihi layer's input)."""
    k = weight_shape[0]
    w_fmt = draw(qformats(bits=(2, 8), frac=(-1, 4)))
    fields = {"weight": draw(_codes(st, hnp, weight_shape, w_fmt.min_int, w_fmt.max_int)), "weight_format": w_fmt}
    if draw(st.booleans()):
        b_fmt = draw(qformats(bits=(1, 8), frac=(-1, 6)))
        fields.update(bias=draw(_codes(st, hnp, (k,), b_fmt.min_int, b_fmt.max_int)), bias_format=b_fmt)
    if current_bits is None and draw(st.booleans()):
        return fields  # exact accumulator
    bias = fields.get("bias", np.zeros(1, np.int64))
    signed = current_bits is not None or bool(bias.min() < 0) or draw(st.booleans())
    # the register starts at the bias (acc_apply="each"): its format holds every bias, under every mode
    min_bits = max(2, int(np.abs(bias).max()).bit_length() + int(signed))
    max_bits = max(min_bits, current_bits or 24)
    fields.update(
        acc_format=QFormat(draw(st.integers(min_bits, max_bits)), 0, signed),
        overflow=draw(_modes(st, errors)),
        acc_apply=draw(st.sampled_from(["each", "once"])),
    )
    return fields


def conv2d_layers(input_shape, *, name="conv", out_channels=4, kernel=3, errors=False, current_bits=None):
    """Conv2d layers for a per-sample input (C, H, W): up to ``out_channels`` outputs, kernels up
    to ``kernel`` (and the padded input), padding 0..1, stride 1..2, groups dividing C, random
    weight/bias formats, exact or narrow accumulators of every overflow mode and ``acc_apply``."""
    st, hnp = _hypothesis()
    c, h, w = input_shape

    @st.composite
    def build(draw):
        groups = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
        k = groups * draw(st.integers(1, max(1, out_channels // groups)))
        padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
        kh = draw(st.integers(1, min(kernel, h + 2 * padding[0])))
        kw = draw(st.integers(1, min(kernel, w + 2 * padding[1])))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        fields = _synapse_fields(draw, st, hnp, (k, c // groups, kh, kw), errors, current_bits)
        return Conv2d(name=name, stride=stride, padding=padding, groups=groups, **fields)

    return build()


def linear_layers(in_features, *, name="fc", out_features=6, errors=False, current_bits=None):
    """Linear layers for ``in_features`` inputs with up to ``out_features`` outputs (fields as conv2d_layers)."""
    st, hnp = _hypothesis()

    @st.composite
    def build(draw):
        k = draw(st.integers(1, out_features))
        return Linear(name=name, **_synapse_fields(draw, st, hnp, (k, in_features), errors, current_bits))

    return build()


def _leak_fields(draw, st, vm, allow_none):
    leak = draw(st.sampled_from((("none",) if allow_none else ()) + ("shift", "mul", "linear")))
    fields = {"leak": leak, "order": draw(st.sampled_from(["leak_first", "integrate_first"]))}
    if leak in ("shift", "mul"):
        fields["leak_rounding"] = draw(st.sampled_from(_ROUNDINGS))
    if leak == "shift":
        fields.update(leak_shift=draw(st.integers(0, vm.bits + 2)), leak_min_step=draw(st.booleans()))
    elif leak == "mul":
        n = draw(st.integers(0, min(16, 63 - vm.bits)))
        fields.update(leak_shift=n, leak_mult=draw(st.integers(0, 2**n)))
    elif leak == "linear":
        fields["leak_step"] = draw(st.integers(0, min(vm.max_int, 2**12)))
    return fields


def neuron_layers(channels=None, *, name="neuron", kinds=NEURON_KINDS, reset=None, errors=False):
    """Neuron layers of ``kinds`` (names as in spec files: "if", "lif", "dual_threshold",
    "loihi_lif") with random Vm formats, overflow modes, compares, resets (``reset`` fixes it),
    v_min, refractory periods and leaks; with ``channels`` thresholds may be per channel.
    LoihiLIF takes 16-bit currents: give it a synapse drawn with ``current_bits=16``."""
    st, _ = _hypothesis()
    kinds = tuple(kinds)
    if reset is not None:  # LoihiLIF always resets to zero
        kinds = tuple(k for k in kinds if k != "loihi_lif")

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(kinds))
        if kind == "loihi_lif":
            decay = st.sampled_from([0, 2047, 4095]) | st.integers(0, 4095)
            return LoihiLIF(
                name=name, du=draw(decay), dv=draw(decay),
                vth=draw(_per_channel(st, st.integers(0, 64) | st.integers(0, 2**17 - 1), channels)),
                bias_mant=draw(_per_channel(st, st.integers(-64, 64) | st.integers(-4096, 4095), channels)),
                bias_exp=draw(_per_channel(st, st.integers(0, 7), channels)),
            )  # fmt: skip
        vm = QFormat(draw(st.integers(2, 24)), draw(st.integers(0, 4)), draw(st.booleans()))
        overflow = draw(_modes(st, errors))
        lo, hi = vm.bounds(overflow)
        theta = _per_channel(st, _levels(st, vm.min_int, vm.max_int), channels)
        fields = dict(
            name=name, vm=vm, overflow=overflow,
            compare=draw(st.sampled_from([">=", ">"])),
            reset=reset or draw(st.sampled_from(["subtract", "zero", "value", "none"])),
            reset_value=draw(st.integers(lo, hi)),
            v_min=draw(st.none() | st.integers(lo, hi)),
            refractory=draw(st.sampled_from([0, 0, 1, 2])),
        )  # fmt: skip
        if kind == "if":
            return IF(threshold=draw(theta), **fields)
        if kind == "lif":
            return LIF(threshold=draw(theta), **fields, **_leak_fields(draw, st, vm, allow_none=False))
        return DualThreshold(
            theta1=draw(theta), theta2=draw(theta), reset_by=draw(st.sampled_from(["s1", "s2", "either"])),
            **fields, **_leak_fields(draw, st, vm, allow_none=True),
        )  # fmt: skip

    return build()


def _pool_kinds(neuron, kinds) -> tuple:
    """The pool kinds that may follow ``neuron``: a pooled_neuron needs an integrator (reset
    "none") of one Vm map."""
    integrator = neuron is not None and neuron.reset == "none" and neuron.spike_maps == 1
    return tuple(k for k in kinds if k != "pooled_neuron" or integrator)


def pool_layers(input_shape, *, neuron=None, name="pool", kinds=POOL_KINDS, errors=False):
    """Pooling layers for the spikes (C, H, W) of the neuron layer ``neuron`` (needed for
    "pooled_neuron", which takes its Vm format and needs reset "none"): windows up to 3x3
    (avg: power-of-two sides), stride None or 1..3 (pooled_neuron: no overlap)."""
    st, _ = _hypothesis()
    _, h, w = input_shape
    kinds = _pool_kinds(neuron, kinds)
    if not kinds:
        raise ValueError(f"pool_layers: none of the pool kinds can follow {neuron!r}")

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(kinds))
        if kind == "avg":
            kernel = tuple(draw(st.sampled_from([s for s in (1, 2, 4) if s <= side])) for side in (h, w))
        else:
            kernel = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
        low = kernel if kind == "pooled_neuron" else (1, 1)
        stride = draw(st.none() | st.tuples(st.integers(low[0], 3), st.integers(low[1], 3)))
        geometry = dict(name=name, kernel=kernel, stride=stride)
        if kind == "winner_spike":
            return WinnerSpikePool(vm_stage=draw(st.sampled_from(["pre", "post"])), **geometry)
        if kind == "count_gate":
            return CountGatePool(count_bits=draw(st.integers(1, 6)), **geometry)
        if kind == "or":
            return OrPool(**geometry)
        if kind == "pooled_neuron":
            return PooledNeuronPool(
                threshold=draw(_levels(st, 1, neuron.vm.max_int)), vm=neuron.vm, overflow=draw(_modes(st, errors)),
                compare=draw(st.sampled_from([">=", ">"])), **geometry,
            )  # fmt: skip
        if kind == "sum":
            return SumPool(out_format=draw(qformats(bits=(1, 6), frac=(0, 3))), overflow=draw(_modes(st, errors)), **geometry)
        log2_area = int(math.log2(kernel[0] * kernel[1]))
        return AvgPool(
            out_format=draw(qformats(bits=(1, 6), frac=(0, log2_area))), rounding=draw(st.sampled_from(_ROUNDINGS)),
            overflow=draw(_modes(st, errors)), **geometry,
        )  # fmt: skip

    return build()


def networks(*, max_stages=3, image=None, neuron_kinds=NEURON_KINDS, pool_kinds=POOL_KINDS, errors=False):
    """Valid random small Networks: an image (C<=3, H, W<=6) or vector (F<=8) input (``image``
    True, False, or None: either) of spikes (u1.0) or analog codes, then 1..``max_stages`` stages of synapse (conv2d on images, linear
    on vectors) -> neuron layer -> optional pool (images) -> optional flatten, sometimes ending
    with a bare synapse (the output is then its current).  Every kind of ``neuron_kinds`` and
    ``pool_kinds`` may appear; shapes and formats chain."""
    st, _ = _hypothesis()

    @st.composite
    def build(draw):
        if draw(st.booleans()) if image is None else image:
            shape = (draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
        else:
            shape = (draw(st.integers(1, 8)),)
        spikes = QFormat(1, 0, signed=False)
        input_format = draw(st.just(spikes) | qformats(bits=(1, 8), frac=(0, 4)))
        input_shape, layers = shape, []

        def synapse(i, current_bits=None):
            kwargs = dict(name=f"syn{i}", errors=errors, current_bits=current_bits)
            layer = draw(conv2d_layers(shape, **kwargs) if len(shape) == 3 else linear_layers(shape[0], **kwargs))
            layers.append(layer)
            return layer.output_shape(shape)

        integrators = tuple(k for k in neuron_kinds if k in ("if", "lif"))
        kinds_here = tuple(k for k in pool_kinds if k != "pooled_neuron" or integrators)
        stages = draw(st.integers(1, max_stages))
        final_synapse = draw(st.integers(0, 3)) == 0
        for i in range(stages):
            pool_kind = draw(st.sampled_from((None, *kinds_here))) if len(shape) == 3 else None
            kinds, reset = (integrators, "none") if pool_kind == "pooled_neuron" else (neuron_kinds, None)
            kind = draw(st.sampled_from(kinds))
            shape = synapse(i, 16 if kind == "loihi_lif" else None)
            neuron = draw(neuron_layers(shape[0], name=f"neu{i}", kinds=(kind,), reset=reset, errors=errors))
            layers.append(neuron)
            shape = neuron.output_shape(shape)
            if pool_kind is not None:
                pool = draw(pool_layers(shape, neuron=neuron, name=f"pool{i}", kinds=(pool_kind,), errors=errors))
                layers.append(pool)
                shape = pool.output_shape(shape)
            if len(shape) == 3 and (i < stages - 1 or final_synapse) and draw(st.booleans()):
                layers.append(Flatten(name=f"flat{i}"))
                shape = (math.prod(shape),)
        if final_synapse:
            synapse(stages)
        return Network(layers, input_shape, input_format)

    return build()


def graph_networks(*, neuron_kinds=NEURON_KINDS, errors=False):
    """Valid random small networks that are graphs, not chains: an image input (C<=3, H, W
    2..5) of spikes (u1.0) or analog codes, a stem (conv -> neuron), then one block reading the
    stem's spikes, then flatten, a linear layer and a neuron readout.  The block is

    * ``residual``: conv 3x3 (stride 1 or 2) -> neuron -> conv 3x3, plus a shortcut from the
      block input (a 1x1 conv of the same stride: the identity or a projection), summed by an
      ``add`` into a neuron layer's current;
    * ``concat``: two branches conv -> neuron (one may read the network input instead),
      joined by a ``concat``;
    * ``activations``: the stem's spikes and a branch's, summed by an ``add`` into codes.

    Adds get random formats and every overflow mode (``errors``: ERROR too)."""
    st, hnp = _hypothesis()

    @st.composite
    def build(draw):
        c, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.integers(2, 5))
        input_format = draw(st.just(QFormat(1, 0, signed=False)) | qformats(bits=(1, 8), frac=(0, 4)))
        layers, shapes = [], {"input": (c, h, w)}

        def conv(name, source, out_channels, kernel, stride, current_bits=None):
            cin = shapes[source][0]
            weight_shape = (out_channels, cin, kernel, kernel)
            fields = _synapse_fields(draw, st, hnp, weight_shape, errors, current_bits)
            layer = Conv2d(name=name, inputs=(source,), stride=stride, padding=kernel // 2, **fields)
            return add_layer(layer, source)

        def neuron(name, source, kinds=neuron_kinds):
            layer = draw(neuron_layers(shapes[source][0], name=name, kinds=kinds, errors=errors))
            return add_layer(layer, source)

        def add_layer(layer, *sources):
            layers.append(layer)
            shapes[layer.name] = layer.output_shape(*(shapes[s] for s in sources))
            return layer.name

        def merge_format(bits, signed):
            return QFormat(draw(st.integers(*bits)), 0, signed)

        plain = tuple(k for k in neuron_kinds if k != "loihi_lif") or neuron_kinds
        stem = neuron("stem_n", conv("stem", "input", draw(st.integers(1, 3)), 3, 1, current_bits=16), plain)
        block = draw(st.sampled_from(["residual", "concat", "activations"]))
        k, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        if block == "residual":
            main = neuron("a_n", conv("a", stem, k, 3, stride, current_bits=16), plain)
            main = conv("b", main, k, 3, 1, current_bits=16)
            shortcut = conv("skip", stem, k, 1, stride, current_bits=16)
            kind = draw(st.sampled_from(neuron_kinds))
            fmt = merge_format((2, 16 if kind == "loihi_lif" else 20), True)
            total = add_layer(Add(name="sum", inputs=(main, shortcut), format=fmt, overflow=draw(_modes(st, errors))),
                              main, shortcut)
            out = neuron("sum_n", total, (kind,))
        elif block == "concat":
            left = neuron("l_n", conv("l", stem, k, 3, stride, current_bits=16), plain)
            source = draw(st.sampled_from([stem, "input"]))
            right = neuron("r_n", conv("r", source, draw(st.integers(1, 3)), 1, stride, current_bits=16), plain)
            out = add_layer(Concat(name="cat", inputs=(left, right)), left, right)
        else:  # the branch keeps the stem's shape: one spike map per Vm
            single = tuple(kind for kind in plain if kind != "dual_threshold") or ("if",)
            branch = neuron("b_n", conv("b", stem, shapes[stem][0], 3, 1, current_bits=16), single)
            fmt = merge_format((1, 3), draw(st.booleans()))
            out = add_layer(Add(name="sum", inputs=(stem, branch), format=fmt, overflow=draw(_modes(st, errors))),
                            stem, branch)
        flat = add_layer(Flatten(name="flat"), out)
        kind = draw(st.sampled_from(neuron_kinds))
        fc = add_layer(draw(linear_layers(shapes[flat][0], name="fc", errors=errors,
                                          current_bits=16 if kind == "loihi_lif" else None)), flat)
        neuron("readout", fc, (kind,))
        return Network(layers, (c, h, w), input_format)

    return build()


def stimuli(network, timesteps, *, batch=(1, 2), per_step=None):
    """Stimuli for ``network`` over ``timesteps``: integer codes of its input_format, analog
    (N, *input_shape), applied every timestep, or per timestep (T, N, *input_shape);
    ``per_step`` None draws either."""
    st, hnp = _hypothesis()
    fmt = network.input_format

    @st.composite
    def build(draw):
        n = draw(st.integers(*batch))
        varying = draw(st.booleans()) if per_step is None else per_step
        shape = ((timesteps,) if varying else ()) + (n, *network.input_shape)
        return draw(_codes(st, hnp, shape, fmt.min_int, fmt.max_int))

    return build()
