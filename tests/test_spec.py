"""TOML specs: the recipes load with the shapes their files describe, any network survives
network -> TOML text -> network, network_config is stable JSON, and bad specs are refused
naming the file or layer, the field and the value."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmodel.fixed import QFormat
from refmodel.spec import SpecError, array_digest, array_fields, kind_of, layer_config, load_spec, network_config, spec_text
from refmodel.testing import assert_bit_exact, graph_networks, networks

RECIPES = Path(__file__).resolve().parents[1] / "vectors" / "recipes"

# per recipe: each layer's (name, kind, input shape, output shape), worked out from the .toml by hand
RECIPE_SHAPES = {
    "coverage_corners": [  # its arrays are inline in the TOML
        ("conv1", "conv2d", (1, 3, 3), (2, 3, 3)),
        ("if1", "if", (2, 3, 3), (2, 3, 3)),
        ("pool1", "winner_spike", (2, 3, 3), (2, 2, 2)),  # 2x2 windows, stride 1
        ("flat", "flatten", (2, 2, 2), (8,)),
        ("fc", "linear", (8,), (4,)),
        ("readout", "lif", (4,), (4,)),
    ],
    "conv_if_vmpool": [
        ("conv1", "conv2d", (1, 8, 8), (4, 8, 8)),  # 3x3, padding 1
        ("if1", "if", (4, 8, 8), (4, 8, 8)),
        ("pool1", "winner_spike", (4, 8, 8), (4, 4, 4)),
        ("flat", "flatten", (4, 4, 4), (64,)),
        ("fc", "linear", (64,), (3,)),
        ("readout", "if", (3,), (3,)),
    ],
    "count_gate": [
        ("conv1", "conv2d", (2, 6, 6), (4, 6, 6)),
        ("if1", "if", (4, 6, 6), (4, 6, 6)),
        ("pool1", "count_gate", (4, 6, 6), (4, 3, 3)),
        ("flat", "flatten", (4, 3, 3), (36,)),
        ("fc", "linear", (36,), (3,)),
        ("readout", "if", (3,), (3,)),
    ],
    "dt_t1": [
        ("conv1", "conv2d", (2, 6, 6), (3, 6, 6)),
        ("dt1", "dual_threshold", (3, 6, 6), (6, 6, 6)),  # [s1, s2]
        ("flat", "flatten", (6, 6, 6), (216,)),
        ("fc", "linear", (216,), (4,)),
        ("readout", "if", (4,), (4,)),
    ],
    "loihi_lif": [
        ("fc", "linear", (12,), (5,)),
        ("lif", "loihi_lif", (5,), (5,)),
    ],
    "resnet_block": [  # a merge's input shape is its inputs merged (its output's)
        ("conv0", "conv2d", (2, 6, 6), (4, 6, 6)),
        ("if0", "if", (4, 6, 6), (4, 6, 6)),
        ("conv1a", "conv2d", (4, 6, 6), (4, 6, 6)),
        ("if1a", "if", (4, 6, 6), (4, 6, 6)),
        ("conv1b", "conv2d", (4, 6, 6), (4, 6, 6)),
        ("skip1", "conv2d", (4, 6, 6), (4, 6, 6)),
        ("add1", "add", (4, 6, 6), (4, 6, 6)),
        ("if1", "if", (4, 6, 6), (4, 6, 6)),
        ("conv2a", "conv2d", (4, 6, 6), (8, 3, 3)),
        ("if2a", "if", (8, 3, 3), (8, 3, 3)),
        ("conv2b", "conv2d", (8, 3, 3), (8, 3, 3)),
        ("proj2", "conv2d", (4, 6, 6), (8, 3, 3)),
        ("add2", "add", (8, 3, 3), (8, 3, 3)),
        ("if2", "if", (8, 3, 3), (8, 3, 3)),
        ("flat", "flatten", (8, 3, 3), (72,)),
        ("fc", "linear", (72,), (3,)),
        ("readout", "if", (3,), (3,)),
    ],
    "concat_branches": [
        ("left", "conv2d", (1, 6, 6), (3, 6, 6)),
        ("left_if", "if", (3, 6, 6), (3, 6, 6)),
        ("left_pool", "winner_spike", (3, 6, 6), (3, 3, 3)),
        ("right", "conv2d", (1, 6, 6), (2, 3, 3)),
        ("right_if", "if", (2, 3, 3), (2, 3, 3)),
        ("cat", "concat", (5, 3, 3), (5, 3, 3)),
        ("flat", "flatten", (5, 3, 3), (45,)),
        ("fc", "linear", (45,), (3,)),
        ("readout", "if", (3,), (3,)),
    ],
}


def test_every_recipe_is_listed():
    assert sorted(p.stem for p in RECIPES.glob("*.toml")) == sorted(RECIPE_SHAPES)


@pytest.mark.parametrize("recipe", sorted(RECIPE_SHAPES))
def test_recipe_loads_with_its_shapes(recipe):
    spec = load_spec(RECIPES / f"{recipe}.toml")
    network = spec.network
    assert network.name == recipe
    got = [(layer.name, kind_of(layer), *shapes) for layer, shapes in zip(network.layers, network.shapes)]
    assert got == RECIPE_SHAPES[recipe]
    if not (RECIPES / f"{recipe}.npz").exists():
        assert spec.arrays == {}, "a recipe with arrays from a file has its .npz"
        return
    # arrays come from the .npz, bit for bit
    with np.load(RECIPES / f"{recipe}.npz") as arrays:
        named = array_fields(network_config(network))
        assert {f"{layer}.{field}" for layer, field in named} == set(arrays.files)
        for layer, field in named:
            values = getattr(network.layer(layer), field)
            assert_bit_exact(arrays[f"{layer}.{field}"], values, layer=layer, signal=field, axes=("k", "c", "y", "x"))


# --------------------------------------------------------------------------- round trip
@settings(max_examples=40)
@given(networks() | graph_networks())
def test_network_survives_a_toml_round_trip(tmp_path_factory, network):
    path = tmp_path_factory.mktemp("spec") / "net.toml"
    path.write_text(spec_text(network)[0])
    loaded = load_spec(path).network
    assert network_config(loaded) == network_config(network)
    assert loaded.shapes == network.shapes and loaded.formats == network.formats
    for layer, field in array_fields(network_config(network)):
        assert_bit_exact(getattr(network.layer(layer), field), getattr(loaded.layer(layer), field), layer=layer,
                         signal=field, axes=("k", "c", "y", "x"))


# --------------------------------------------------------------------------- network_config
@given(st.integers(0, 3), st.integers(1, 3), st.booleans(), st.integers(0, 2**32 - 1))
def test_array_digest_hashes_the_narrowest_width(width, ndim, negative, seed):
    """docs/vectors.md §3: SHA-256 of the values as the narrowest of int8/16/32/64 holding them
    all, row-major little-endian; ``wide``: always int64.  The width is set by the extreme value."""
    bits = 8 << width
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 4, ndim))
    values = rng.integers(-100, 100, shape)
    extreme = -(1 << (bits - 1)) if negative else (1 << (bits - 1)) - 1
    values.flat[rng.integers(values.size)] = extreme
    little = f"<i{bits // 8}"
    assert array_digest(values) == {"shape": list(shape), "sha256": hashlib.sha256(values.astype(little).tobytes()).hexdigest()}
    assert array_digest(values.astype(little)) == array_digest(values)  # the stored dtype does not matter
    assert array_digest(values, wide=True)["sha256"] == hashlib.sha256(values.astype("<i8").tobytes()).hexdigest()
    assert array_digest(np.zeros((0, 3), np.int64)) == {"shape": [0, 3], "sha256": hashlib.sha256(b"").hexdigest()}


def test_network_config_is_stable_json():
    path = RECIPES / "conv_if_vmpool.toml"
    first, second = network_config(load_spec(path).network), network_config(load_spec(path).network)
    text = json.dumps(first, sort_keys=True)
    assert text == json.dumps(second, sort_keys=True) and json.loads(text) == first
    conv = first["layers"][0]
    assert list(conv) == ["kind", "name", "weight", "weight_format", "bias", "bias_format", "stride", "padding",
                          "groups", "acc_format", "overflow", "acc_apply"]  # fmt: skip
    with np.load(RECIPES / "conv_if_vmpool.npz") as arrays:
        weight = arrays["conv1.weight"]
    assert -128 <= weight.min() and weight.max() <= 127  # s8 weights: digested as int8
    assert conv["weight"] == {
        "shape": [4, 1, 3, 3],
        "sha256": hashlib.sha256(weight.astype("<i1").tobytes()).hexdigest(),
    }
    assert conv["weight_format"] == {"bits": 8, "frac": 0, "signed": True}
    assert (conv["overflow"], conv["stride"], conv["padding"]) == ("SAT", [1, 1], [1, 1])
    neuron = first["layers"][1]
    assert (neuron["overflow"], neuron["threshold"], neuron["v_min"]) == ("SAT", 12000, -12000)


def test_network_config_does_not_depend_on_the_array_dtype():
    spec = load_spec(RECIPES / "loihi_lif.toml")
    fc = spec.network.layers[0]
    narrow = type(fc)(name=fc.name, weight=fc.weight.astype(np.int8), weight_format=fc.weight_format)
    assert layer_config(narrow) == layer_config(fc)


# --------------------------------------------------------------------------- errors
GOOD = """
name = "t"
input_shape = [4]
input_format = {bits = 8, signed = false}
arrays = "t.npz"

[stimulus]
batch = 1

[[layers]]
kind = "linear"
name = "fc"
weight = "fc.weight"
weight_format = {bits = 8}

[[layers]]
kind = "if"
name = "out"
vm = {bits = 16}
threshold = 100
"""


def write_spec(tmp_path, text, arrays=True):
    if arrays:
        np.savez(tmp_path / "t.npz", **{"fc.weight": np.ones((2, 4), np.int64)})
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def test_the_good_spec_loads(tmp_path):
    spec = load_spec(write_spec(tmp_path, GOOD))
    assert spec.network.output_shape == (2,) and spec.stimulus.batch == 1
    assert spec.network.layer("out").vm == QFormat(16)


SPEC_ERRORS = {
    "unknown kind": (('kind = "if"', 'kind = "relu"'), ("out", "kind", "relu"), "must be one of conv2d, linear"),
    "unknown field": (("threshold = 100", "threshold = 100\nthreshhold = 5"), ("out", "threshhold", 5), "is not a field of if"),
    "missing array key": (('weight = "fc.weight"', 'weight = "fc.w"'), ("fc", "weight", "fc.w"), "names no array"),
    "bad QFormat table": (("vm = {bits = 16}", "vm = {bits = 16, sign = true}"), ("out", "vm", {"bits": 16, "sign": True}),
                          "is not a QFormat"),
    "QFormat out of range": (("vm = {bits = 16}", "vm = {bits = 0}"), ("out", "vm", {"bits": 0}), "bits must be in 1..64"),
    "missing layer field": (("threshold = 100", ""), ("out", "fields", ["name", "vm"]), "threshold"),
    "unknown top-level key": (('name = "t"', 'name = "t"\nseed = 3'), ("{path}", "seed", 3), "is not a spec key"),
    "missing top-level key": (("input_shape = [4]", ""), ("{path}", "input_shape", None), "is required"),
    "unknown stimulus key": (("batch = 1", "batch = 1\nbatches = 2"), ("{path}", "stimulus.batches", 2), "is not a stimulus key"),
    "unknown encoding": (("batch = 1", 'encoding = "poisson"'), ("{path}", "stimulus.encoding", "poisson"), "must be one of"),
    "unknown source": (("batch = 1", 'source = "pixels"'), ("{path}", "stimulus.source", "pixels"), "neither 'random' nor"),
    "TOML syntax error": (("threshold = 100", "threshold = = 100"), ("{path}", "file", "{path}"), "is not valid TOML"),
    "layer error inside": (("threshold = 100", "threshold = 100\ncompare = '=>'"), ("out", "compare", "=>"), "must be one of"),
    "network error inside": (("input_shape = [4]", "input_shape = [5]"), ("fc", "weight", None), "expects (4,) inputs, got (5,)"),
    "weight outside its format": (("weight_format = {bits = 8}", "weight_format = {bits = 1}"), ("fc", "weight", None),
                                  "has weight[0, 0] = 1, which does not fit s1.0 (range -1..0)"),
    "input_shape not a list": (("input_shape = [4]", 'input_shape = "4"'), ("{path}", "input_shape", "4"),
                               "must be a list of integers >= 1"),
    "batch not an integer": (("batch = 1", 'batch = "two"'), ("{path}", "stimulus.batch", "two"), "must be an integer in 1..16777216"),
    "timesteps below 1": (("batch = 1", "batch = 1\ntimesteps = -2"), ("{path}", "stimulus.timesteps", -2),
                          "must be an integer in 1..16777216"),
    "seed beyond 32 bits": (("batch = 1", "batch = 1\nseed = 5000000000"), ("{path}", "stimulus.seed", 5000000000),
                            "must be an integer in 0..4294967295"),
    "stimulus format not a QFormat": (("batch = 1", "batch = 1\nformat = {bitz = 8}"), ("{path}", "stimulus.format",
                                      {"bitz": 8}), "is not a QFormat table (unknown QFormat keys ['bitz'])"),
}  # fmt: skip


@pytest.mark.parametrize("case", SPEC_ERRORS, ids=list(SPEC_ERRORS))
def test_spec_errors_name_place_field_value(tmp_path, case):
    (old, new), (place, field, value), problem = SPEC_ERRORS[case]
    assert old in GOOD
    path = write_spec(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ValueError) as err:
        load_spec(path)
    assert (err.value.layer, err.value.field) == (place.format(path=path), field)
    if value is not None:
        assert err.value.value == (value.format(path=path) if isinstance(value, str) else value)
    assert problem in str(err.value)
    # the message names the place first (the spec file, or the layer), and only once unless it is the value
    place = "spec" if place == "{path}" else "layer"
    assert str(err.value).startswith(f"{place} {err.value.layer!r}: {field} = ")
    assert str(err.value).count(repr(err.value.layer)) == 1 + (field == "file")  # a file error's value is the file


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert (err.value.layer, err.value.field) == (str(path), "file")
    assert "cannot be read: No such file or directory" in str(err.value)


def test_missing_npz(tmp_path):
    path = write_spec(tmp_path, GOOD, arrays=False)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert (err.value.layer, err.value.field, err.value.value) == (str(path), "arrays", "t.npz")
    assert str(err.value).endswith("arrays = 't.npz' does not exist")


@pytest.mark.parametrize("recipe", [RECIPES / f"{name}.toml" for name in ("conv_if_vmpool", "dt_t1", "resnet_block")],
                         ids=lambda p: p.stem)
def test_a_spec_read_with_its_npz_saves_and_reads_back_the_same(recipe, tmp_path):
    """save_spec of a loaded spec (its .npz's arrays are also the layers'): the same network
    and stimulus, and the same vector file bytes."""
    from refmodel.generate import generate
    from refmodel.spec import save_spec

    spec = load_spec(recipe)
    save_spec(spec, tmp_path / "again.toml")
    again = load_spec(tmp_path / "again.toml")
    assert network_config(again.network) == network_config(spec.network) and again.stimulus == spec.stimulus
    generate(spec, tmp_path / "a.h5")
    generate(again, tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
