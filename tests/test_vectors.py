"""HDF5 vector files: write/read round trip, determinism, validation errors, compare, hex export."""

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmodel.encode import SEED_MAX, RateEncoder, make_encoder
from refmodel.fixed import QFormat
from refmodel.generate import generate
from refmodel.stimulus import make_stimulus
from refmodel.layers import IF, Conv2d, SumPool
from refmodel.network import Network, NetworkError
from refmodel.spec import Spec, StimulusSpec, load_spec, network_config
from refmodel.testing import assert_bit_exact, networks, pack_bits, unpack_bits
from refmodel.vectors import VectorFile, VectorFileError, VectorWriter, compare_files, export_hex, first_mismatch, reseal
from refmodel.files import OutputError
from refmodel.vectors import chunks, hexport
from refmodel.vectors.chunks import compression
from tests.oracle import network as twin

T, N = 5, 2
CONFIG = {"layers": [{"name": "conv1", "kind": "conv"}, {"name": "fc", "kind": "linear"}], "timesteps": T}
S8_4, S16_4, S24_8, U8_8, U1 = QFormat(8, 4), QFormat(16, 4), QFormat(24, 8), QFormat(8, 8, False), QFormat(1, 0, False)


def sample_data(seed=0):
    """Synthetic integer data of a two-layer network, written through the generic writer API
    (the files of ``refmodel gen`` are tested at the end of this module)."""
    rng = np.random.default_rng(seed)
    return {
        "input": rng.integers(0, 256, (N, 1, 4, 4)),
        "conv1/weight": rng.integers(-128, 128, (2, 1, 3, 3)),
        "conv1/bias": rng.integers(-2000, 2000, (2,)),
        "conv1/threshold": np.int64(300),
        "fc/weight": rng.integers(-128, 128, (3, 32)),
        "conv1/current": rng.integers(-32768, 32768, (T, N, 2, 4, 4)),
        "conv1/v_pre": rng.integers(-32768, 32768, (T, N, 2, 4, 4)),
        "conv1/spikes": rng.integers(0, 2, (T, N, 2, 4, 4)),
        "fc/v_post": rng.integers(-(1 << 23), 1 << 23, (T, N, 3)),
        "logits": rng.integers(-(1 << 23), 1 << 23, (N, 3)),
        "saturation": rng.integers(0, 5, (T,)),
    }


def write_sample(path, data=None, config=CONFIG, threads=2, compression="fast"):
    """Write ``data`` (default sample_data()) as a vector file, streaming traces step by step."""
    d = sample_data() if data is None else data
    encoder = RateEncoder(d["input"], U8_8)
    with VectorWriter(path, config=config, seed=7, timesteps=T, batch=N, threads=threads,
                      compression=compression) as w:
        w.add_layer("conv1", "conv", input_shape=(1, 4, 4), output_shape=(2, 4, 4), attrs={"stride": 1, "pad": [1, 1]})
        w.add_layer("fc", "linear", input_shape=(32,), output_shape=(3,), attrs={"reset": "subtract"})
        w.write_param("conv1", "weight", d["conv1/weight"], S8_4, axes=("co", "ci", "ky", "kx"))
        w.write_param("conv1", "bias", d["conv1/bias"], S16_4)
        w.write_param("conv1", "threshold", d["conv1/threshold"], QFormat(12, 0, False))
        w.write_param("fc", "weight", d["fc/weight"], S8_4)
        w.write_stimulus(encoder)
        w.declare_trace("conv1", "current", (2, 4, 4), S16_4)
        w.declare_trace("conv1", "v_pre", (2, 4, 4), S16_4)
        w.declare_trace("conv1", "spikes", (2, 4, 4), U1)
        w.declare_trace("fc", "v_post", (3,), S24_8)
        for t in range(T):
            w.write_stimulus_step(t, encoder.step())
            for name in ("conv1/current", "conv1/v_pre", "conv1/spikes", "fc/v_post"):
                layer, signal = name.split("/")
                w.write_step(layer, signal, t, d[name][t])
        w.write_output("logits", d["logits"], S24_8, axes=("n", "k"))
        w.write_counts("conv1", "saturation", d["saturation"])
    return d


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "golden.h5"
    return path, write_sample(path)


# ----------------------------------------------------------------------------- round trip
def test_round_trip(sample):
    path, d = sample
    with VectorFile(path) as vf:
        assert (vf.timesteps, vf.batch, vf.seed, vf.config) == (T, N, 7, CONFIG)
        assert [(la.name, la.kind, la.index, la.key) for la in vf.layers] == [
            ("conv1", "conv", 0, "000_conv1"), ("fc", "linear", 1, "001_fc")]
        conv = vf.layer("conv1")
        assert (conv.input_shape, conv.output_shape, conv.attrs) == ((1, 4, 4), (2, 4, 4), {"stride": 1, "pad": [1, 1]})
        assert vf.layer("fc").attrs == {"reset": "subtract"}
        assert conv.params == ("bias", "threshold", "weight") and conv.signals == ("current", "spikes", "v_pre")
        for key in ("conv1/weight", "conv1/bias", "conv1/threshold", "fc/weight"):
            values, fmt = vf.param(*key.split("/"))
            np.testing.assert_array_equal(values, d[key])
        values, fmt = vf.param("conv1", "weight")
        assert (values.dtype, fmt) == (np.int8, S8_4)
        assert vf.info("layers/000_conv1/params/weight").axes == ("co", "ci", "ky", "kx")
        assert vf.param("conv1", "threshold")[0].dtype == np.uint16
        for name in ("conv1/current", "conv1/v_pre", "conv1/spikes", "fc/v_post"):
            np.testing.assert_array_equal(vf.trace(*name.split("/")), d[name])
            np.testing.assert_array_equal(vf.trace(*name.split("/"), t=3), d[name][3])
        assert vf.trace("conv1", "spikes").dtype == np.uint8 and vf.trace("fc", "v_post").dtype == np.int32
        assert vf.trace_info("conv1", "v_pre").axes == ("t", "n", "c", "y", "x")
        logits, fmt = vf.output("logits")
        np.testing.assert_array_equal(logits, d["logits"])
        assert fmt == S24_8 and vf.outputs == ("logits",)
        np.testing.assert_array_equal(vf.counts("conv1")["saturation"], d["saturation"])
        assert vf.counts("fc") == {}
        x, fmt = vf.stimulus()
        np.testing.assert_array_equal(x, d["input"])
        assert (fmt, vf.encoding, vf.encoding_params) == (U8_8, "rate", {"full_scale": 256})
        again = make_encoder(vf.encoding, x, fmt, **vf.encoding_params).run(T)
        np.testing.assert_array_equal(vf.stimulus_spikes(), again)


def _compressions():
    """Every compression, and "fast" made by each deflate library (libdeflate skipped, saying
    so, when the deflate package is not installed)."""
    try:
        import deflate  # noqa: F401

        marks = []
    except ImportError:
        marks = [pytest.mark.skip(reason="the deflate package (libdeflate) is not installed")]
    return [pytest.param(compression("fast", "zlib"), id="fast-zlib"), pytest.param(compression("small", "zlib"),
            id="small-zlib"), pytest.param("none", id="none"),
            *(pytest.param(compression(c, "libdeflate") if not marks else c, id=f"{c}-libdeflate", marks=marks)
              for c in ("fast", "small"))]  # fmt: skip


@pytest.mark.parametrize("how", _compressions())
def test_identical_inputs_give_identical_bytes(tmp_path, how):
    write_sample(tmp_path / "a.h5", compression=how)
    time.sleep(1.1)  # any stored timestamp would now differ
    write_sample(tmp_path / "b.h5", compression=how)
    write_sample(tmp_path / "c.h5", threads=1, compression=how)  # chunks compressed by one thread instead of two
    write_sample(tmp_path / "d.h5", threads=4, compression=how)
    first = (tmp_path / "a.h5").read_bytes()
    assert all((tmp_path / f"{n}.h5").read_bytes() == first for n in "bcd")


@pytest.mark.parametrize("how", _compressions())
def test_every_compression_reads_back_the_same_values_and_names_itself(tmp_path, how):
    """The file of each compression holds the same values and digests as the file of any other,
    passes verify(), and records how it was compressed."""
    d = write_sample(tmp_path / "x.h5", compression=how)
    write_sample(tmp_path / "none.h5", compression="none")
    assert compare_files(tmp_path / "none.h5", tmp_path / "x.h5").equal
    described = how.describe() if not isinstance(how, str) else "none: no filter"
    with VectorFile(tmp_path / "x.h5") as vf, VectorFile(tmp_path / "none.h5") as plain:
        vf.verify()
        assert vf.compression == described
        assert [i.digest for i in vf.datasets()] == [i.digest for i in plain.datasets()]
        np.testing.assert_array_equal(vf.trace("conv1", "v_pre"), d["conv1/v_pre"])
    with h5py.File(tmp_path / "x.h5", "r") as f:
        trace = f["traces/000_conv1/v_pre"]
        assert trace.chunks == (1, N, 2, 4, 4)
        assert (trace.compression, trace.shuffle) == (("gzip", True) if described != "none: no filter" else (None, False))


def test_a_dataset_that_deflate_does_not_shrink_is_stored_without_filters(tmp_path):
    """docs/vectors.md §5: random values are stored unfiltered; a dataset under 1 KiB contiguous."""
    rng = np.random.default_rng(1)
    noise, zeros = rng.integers(-128, 128, (64, 64, 9)), np.zeros((64, 64, 9), np.int64)
    with VectorWriter(tmp_path / "x.h5", config={}, seed=0, timesteps=1, batch=1) as w:
        w.add_layer("l", "conv", input_shape=(1,), output_shape=(1,))
        w.write_param("l", "noise", noise, QFormat(8))
        w.write_param("l", "zeros", zeros, QFormat(8))
        w.write_param("l", "few_zeros", np.zeros(1023, np.int64), QFormat(8))
        w.write_param("l", "kib_zeros", np.zeros(512, np.int64), QFormat(16))
        w.write_stimulus(make_encoder("analog", np.array([[3]]), S8_4))
    with h5py.File(tmp_path / "x.h5", "r") as f:
        params = f["layers/000_l/params"]
        assert params["noise"].compression is None and params["few_zeros"].compression is None
        assert params["few_zeros"].chunks is None and params["kib_zeros"].chunks == (512,)  # under 1 KiB: contiguous
        assert params["zeros"].compression == "gzip" and params["kib_zeros"].compression == "gzip"
        np.testing.assert_array_equal(params["noise"][()], noise)
    VectorFile(tmp_path / "x.h5").verify()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint16])
@pytest.mark.parametrize("at, value", [(0, 128), (70_000, -129), (99_999, 300)])
def test_a_large_array_is_checked_value_by_value(tmp_path, dtype, at, value):
    """Arrays of NARROW_MIN_SIZE values and more take the one-pass range check and cast: the same
    codes, and the same refusal naming the first value outside the format."""
    values = np.random.default_rng(at).integers(0, 100, 100_000).astype(dtype)
    with VectorWriter(tmp_path / "x.h5", config={}, seed=0, timesteps=1, batch=1) as w:
        w.add_layer("l", "conv", input_shape=(1,), output_shape=(1,))
        w.write_param("l", "w", values, QFormat(8))
        if np.iinfo(dtype).min <= value <= np.iinfo(dtype).max:
            values[at] = value
            with pytest.raises(VectorFileError, match=rf"parameter 'v'\[{at}\] = {value} does not fit s8.0"):
                w.write_param("l", "v", values, QFormat(8))
        w.write_stimulus(make_encoder("analog", np.array([[3]]), S8_4))
    with VectorFile(tmp_path / "x.h5") as vf:
        stored, _ = vf.param("l", "w")
        assert stored.dtype == np.int8 and np.array_equal(stored, np.random.default_rng(at).integers(0, 100, 100_000))


def test_fast_without_libdeflate_is_zlib_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "_libdeflate", lambda: None)
    assert compression("fast").describe().startswith("fast: shuffle + deflate level 1, zlib (zlib ")
    with pytest.raises(VectorFileError, match=r"libdeflate is not installed \(pip install deflate"):
        compression("fast", "libdeflate")
    write_sample(tmp_path / "a.h5")
    write_sample(tmp_path / "b.h5", compression=compression("fast", "zlib"))
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_attribute_order_does_not_change_the_bytes(tmp_path):
    for name, attrs in (("a.h5", {"stride": 1, "pad": 0}), ("b.h5", {"pad": 0, "stride": 1})):
        with VectorWriter(tmp_path / name, config={"b": 1, "a": [2]}, seed=0, timesteps=1, batch=1) as w:
            w.add_layer("l", "conv", input_shape=(1,), output_shape=(1,), attrs=attrs)
            w.write_stimulus(make_encoder("analog", np.array([[3]]), S8_4))
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_file_is_gzip_chunked_per_timestep(sample):
    path, _ = sample
    with h5py.File(path) as f:
        dset = f["traces/000_conv1/v_pre"]
        assert dset.compression == "gzip" and dset.chunks == (1, N, 2, 4, 4)
        assert f["stimulus/spikes"].chunks == (1, N, 1, 4, 4)
        assert f.attrs["config_json"].decode() == json.dumps(CONFIG, sort_keys=True, separators=(",", ":"))
        string = f.attrs.get_id("config_json").get_type()  # docs/vectors.md §2: fixed-length UTF-8, not in the global heap
        assert isinstance(string, h5py.h5t.TypeStringID) and not string.is_variable_str()
        assert string.get_cset() == h5py.h5t.CSET_UTF8 and string.get_size() == len(f.attrs["config_json"])


# ----------------------------------------------------------------------------- writer refusals
def _writer(path):
    w = VectorWriter(path, config={}, seed=0, timesteps=2, batch=1)
    w.add_layer("l", "conv", input_shape=(2,), output_shape=(2,))
    return w


@pytest.mark.parametrize("call, message", [
    (lambda w: w.write_param("l", "w", np.array([0.5, 1.0]), S8_4), "never store floats"),
    (lambda w: w.write_param("l", "w", np.array([3, 128]), S8_4), r"w'\[1\] = 128 does not fit s8.4"),
    (lambda w: w.write_param("nope", "w", np.array([1]), S8_4), "unknown layer 'nope'"),
    (lambda w: w.add_layer("l", "conv", input_shape=(1,), output_shape=(1,)), "already added"),
    (lambda w: w.add_layer("m", "conv", input_shape=(1,), output_shape=(1,), attrs={"leak": 0.5}), "leak"),
    (lambda w: w.add_layer("a/b", "conv", input_shape=(1,), output_shape=(1,)), "not a valid name"),
    (lambda w: (w.declare_trace("l", "v", (2,), S8_4), w.write_step("l", "v", 0, np.zeros((1, 3), int))),
     r"shape \(1, 3\) differs from the declared \(1, 2\)"),
    (lambda w: (w.declare_trace("l", "v", (2,), S8_4), w.write_step("l", "v", 2, np.zeros((1, 2), int))),
     "timestep must be an integer in 0..1"),
    (lambda w: (w.declare_trace("l", "v", (2,), S8_4), w.write_step("l", "v", 0, np.array([[0, -200]]))),
     r"traces/000_l/v\[t=0\]\[0, 1\] = -200"),
    (lambda w: w.write_counts("l", "sat", np.array([1, -1])), "cannot be negative"),
    (lambda w: w.write_param("l", "w", np.array([1, 2]), S8_4, axes=("a", "b")), "axes .* must be 1 identifiers"),
])
def test_writer_refuses_bad_input(tmp_path, call, message):
    w = _writer(tmp_path / "x.h5")
    with pytest.raises(VectorFileError, match=message):
        call(w)
    w.abort()
    assert os.listdir(tmp_path) == []


def test_incomplete_file_is_refused_and_not_written(tmp_path):
    w = _writer(tmp_path / "x.h5")
    w.write_stimulus(RateEncoder(np.array([[1, 2]]), U8_8))
    w.write_stimulus_step(0, np.zeros((1, 2), np.uint8))
    with pytest.raises(VectorFileError, match=r"stimulus/spikes misses 1 of 2 timesteps \(first t=1\)"):
        w.close()
    assert os.listdir(tmp_path) == []


def test_closed_writer_refuses_writes(tmp_path):
    w = _writer(tmp_path / "x.h5")
    w.abort()
    with pytest.raises(VectorFileError, match="x.h5: the writer is closed"):
        w.add_layer("m", "conv", input_shape=(1,), output_shape=(1,))


def test_exception_mid_write_leaves_nothing(tmp_path):
    target = tmp_path / "v.h5"
    with pytest.raises(RuntimeError, match="simulator crashed"):
        with VectorWriter(target, config={}, seed=0, timesteps=2, batch=1) as w:
            w.add_layer("l", "conv", input_shape=(2,), output_shape=(2,))
            raise RuntimeError("simulator crashed")
    assert os.listdir(tmp_path) == []


def test_failed_rewrite_keeps_the_old_file(sample):
    path, _ = sample
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with VectorWriter(path, config={}, seed=0, timesteps=2, batch=1):
            raise RuntimeError("interrupted")
    assert path.read_bytes() == before and os.listdir(path.parent) == [path.name]


# ----------------------------------------------------------------------------- reader errors
def _edit(path, fn):
    """Edit the file with h5py and reseal it: the reader's checks see the edit, not damage."""
    with h5py.File(path, "r+") as f:
        fn(f)
    reseal(path)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.attrs.__setitem__("format_version", np.int64(5)),
     "format version 5 is not supported .this reader reads versions 1, 2, 3, 4."),
    (lambda f: f.__delitem__("stimulus/input"), "missing dataset /stimulus/input"),
    (lambda f: f.__delitem__("stimulus/spikes"), "missing dataset /stimulus/spikes"),
    (lambda f: f.__delitem__("outputs"), "missing group /outputs"),
    (lambda f: f.attrs.__delitem__("seed"), "missing root attribute 'seed'"),
    (lambda f: f.attrs.__setitem__("config_json", '{"x":1}'), "config_sha256 .* does not match"),
    (lambda f: f["layers/001_fc"].attrs.__setitem__("index", np.int64(5)), "do not match its place 1"),
    (lambda f: f.create_group("extra"), r"unknown root members \['extra'\]"),
    (lambda f: f["traces/000_conv1/v_pre"].attrs.__delitem__("bits"), "v_pre: missing or invalid format"),
    (lambda f: f.create_dataset("counts/000_conv1/x", data=np.zeros(3, np.int64)), "counts/000_conv1/x"),
])
def test_invalid_files_give_clear_errors(sample, edit, message):
    path, _ = sample
    _edit(path, edit)
    with pytest.raises(VectorFileError, match=message) as err:
        VectorFile(path)
    assert str(path) in str(err.value)


def test_truncated_file(sample):
    path, _ = sample
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VectorFileError, match="damaged or truncated HDF5 file"):
        VectorFile(path)


def _flip_in_chunk(path, mask):
    """XOR byte 5 of chunk 2 of conv1's v_pre trace in the file at ``path`` with ``mask``."""
    with h5py.File(path) as f:
        offset = f["traces/000_conv1/v_pre"].id.get_chunk_info(2).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 5] ^= mask
    path.write_bytes(bytes(data))


def test_damaged_chunk_is_detected(sample):
    path, _ = sample
    _flip_in_chunk(path, 0xFF)
    with VectorFile(path) as vf:
        vf.trace("conv1", "v_pre", t=1)
        with pytest.raises(VectorFileError, match="cannot read /traces/000_conv1/v_pre, the file is damaged"):
            vf.trace("conv1", "v_pre", t=2)


def test_a_damaged_unfiltered_chunk_is_found_by_its_digest(tmp_path):
    """Under --compression none no checksum guards a chunk: the content digest does."""
    path = tmp_path / "none.h5"
    write_sample(path, compression="none")
    _flip_in_chunk(path, 0x01)
    with VectorFile(path) as vf:
        with pytest.raises(VectorFileError, match="v_pre: its values do not match their SHA-256 digest"):
            vf.verify()


def test_foreign_and_non_hdf5_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(VectorFileError, match="not a refmodel vector file .root attribute 'format' is None"):
        VectorFile(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(VectorFileError, match="notes.txt: not an HDF5 file"):
        VectorFile(text)
    with pytest.raises(VectorFileError, match="missing.h5: no such file"):
        VectorFile(tmp_path / "missing.h5")


# ----------------------------------------------------------------------------- compare
def test_equal_files_compare_equal(sample, tmp_path):
    path, _ = sample
    write_sample(tmp_path / "other.h5")
    result = compare_files(path, tmp_path / "other.h5")
    assert result.equal and result.first is None
    assert all(c == 0 for c, _ in result.counts.values()) and len(result.counts) == 12


def test_single_flipped_bit_is_located(sample, tmp_path):
    path, d = sample
    d["conv1/v_pre"][3, 1, 1, 2, 0] ^= 1 << 4
    expected = int(sample_data()["conv1/v_pre"][3, 1, 1, 2, 0])
    write_sample(tmp_path / "dut.h5", d)
    result = compare_files(path, tmp_path / "dut.h5")
    assert not result.equal and len(result.differences) == 1
    m = result.first
    assert (m.kind, m.layer, m.signal, m.location) == ("value", "conv1", "v_pre", dict(t=3, n=1, c=1, y=2, x=0))
    assert (m.expected, m.got, m.count, m.size) == (expected, expected ^ 16, 1, T * N * 32)
    assert result.counts["traces/000_conv1/v_pre"] == (1, T * N * 32)
    assert f"t=3 n=1 c=1 y=2 x=0: expected {expected}, got {expected ^ 16}" in result.report()


def test_first_mismatch_is_the_earliest_in_causal_order(sample, tmp_path):
    path, d = sample
    d["fc/v_post"][1, 0, 2] += 1  # t = 1, later layer
    d["conv1/spikes"][2, 0, 0, 0, 0] ^= 1  # t = 2, earlier layer
    d["conv1/spikes"][4, 1, 1, 3, 3] ^= 1
    d["logits"][0, 0] += 1
    write_sample(tmp_path / "dut.h5", d)
    result = compare_files(path, tmp_path / "dut.h5")
    assert [(m.signal, m.index[0]) for m in result.differences] == [("v_post", 1), ("spikes", 2), ("logits", 0)]
    assert result.counts["traces/000_conv1/spikes"] == (2, T * N * 32)
    d["conv1/bias"][1] += 1
    write_sample(tmp_path / "dut2.h5", d)
    assert compare_files(path, tmp_path / "dut2.h5").first.signal == "bias"


def test_structural_differences_are_reported(sample, tmp_path):
    path, d = sample
    write_sample(tmp_path / "other.h5", d, config={"other": 1})
    _edit(tmp_path / "other.h5", lambda f: f.__delitem__("traces/001_fc/v_post"))
    result = compare_files(path, tmp_path / "other.h5")
    kinds = sorted((m.kind, m.path) for m in result.differences)
    assert kinds == [("attribute", "config_digest"), ("missing", "traces/001_fc/v_post")]
    assert "missing in the other file" in result.report()


def test_first_mismatch_on_arrays():
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    assert first_mismatch(a, a.astype(np.int64)) is None
    b = a.astype(np.uint8)
    b[1, 2, 0] = 99
    b[1, 2, 3] = 98
    m = first_mismatch(a, b, ("n", "k", "j"))
    assert (m.location, m.expected, m.got, m.count, m.size) == ({"n": 1, "k": 2, "j": 0}, 20, 99, 2, 24)
    assert first_mismatch(a, a[:1]).kind == "shape"
    with pytest.raises(ValueError, match="actual must be an integer array, got dtype float64"):
        first_mismatch(a, a.astype(float))


def test_assert_bit_exact():
    a = np.array([[[-5, 3]]], np.int8)
    assert_bit_exact(a, a.astype(np.int64))
    with pytest.raises(AssertionError, match=r"layer conv1, signal v_post: first mismatch at t=0 n=0 c=1: "
                                             r"expected 3, got 4 \(1 of 2 values differ\)"):
        assert_bit_exact(a, np.array([[[-5, 4]]]), layer="conv1", signal="v_post")


def test_a_slice_is_reported_at_its_place_in_the_whole():
    whole = np.zeros((4, 3, 2, 5, 5), np.int64)  # (t, n, c, y, x)
    dut = whole.copy()
    dut[2, 1, 1, 3, 0] = -7
    m = first_mismatch(whole[2, 1], dut[2, 1], at={"t": 2, "n": 1})
    assert m.location == {"t": 2, "n": 1, "c": 1, "y": 3, "x": 0}
    assert (m.expected, m.got, m.count, m.size) == (0, -7, 1, 50)
    full = first_mismatch(whole, dut)  # the same place as the whole array's own report
    assert (full.location, full.expected, full.got) == (m.location, m.expected, m.got)
    with pytest.raises(AssertionError, match=r"^layer if1, signal v_pre: first mismatch at t=2 n=1 c=1 y=3 x=0: "
                                             r"expected 0, got -7 \(1 of 50 values differ\)$"):
        assert_bit_exact(whole[2, 1], dut[2, 1], layer="if1", signal="v_pre", at={"t": 2, "n": 1})
    assert first_mismatch(whole[2, 1, 1], dut[2, 1, 1], ("row", "col"), at={"t": 2, "n": 1, "c": 1}).location == \
        {"t": 2, "n": 1, "c": 1, "row": 3, "col": 0}


def test_pack_bits_puts_element_k_at_bits_k_times_width():
    assert pack_bits([1, -1], 4) == 0xF1  # element 0 in bits 3..0, element 1 (-1 = 0b1111) in bits 7..4
    assert pack_bits(np.array([[-8, 7], [0, 15]]), 4) == 0xF078  # row-major; 15 fits 4 unsigned bits
    assert pack_bits([1, 0, 1], 1) == 0b101
    assert pack_bits([], 8) == 0
    with pytest.raises(ValueError, match="element 1 = 16 does not fit 4 bits"):
        pack_bits([0, 16], 4)
    with pytest.raises(ValueError, match="element 0 = -9 does not fit 4 bits"):
        pack_bits([-9], 4)
    assert unpack_bits(0xF1, 2, 4, signed=True).tolist() == [1, -1]
    assert unpack_bits(0xF1, 2, 4, signed=False).tolist() == [1, 15]
    with pytest.raises(ValueError, match="0x100 is not a 8-bit bus value"):
        unpack_bits(0x100, 2, 4, signed=False)


@given(st.data())
def test_unpack_bits_inverts_pack_bits(data):
    bits = data.draw(st.integers(1, 64))
    signed = data.draw(st.booleans())
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = data.draw(st.lists(st.integers(lo, hi), max_size=20))
    bus = pack_bits(values, bits)
    assert 0 <= bus < 1 << (bits * max(1, len(values)))
    assert unpack_bits(bus, len(values), bits, signed).tolist() == values


# ----------------------------------------------------------------------------- hex export
def _read_hex(path, bits, signed):
    values = [int(line, 16) for line in path.read_text().split()]
    return [v - (1 << bits) if signed and v >= 1 << (bits - 1) else v for v in values]


def test_hex_lines_twos_complement():
    assert hexport.hex_lines(np.array([-1, -128, 127, 0, 5]), 8) == b"ff\n80\n7f\n00\n05\n"
    assert hexport.hex_lines(np.array([-1, 1]), 5) == b"1f\n01\n"
    assert hexport.hex_lines(np.array([-(1 << 63), (1 << 63) - 1]), 64) == b"8000000000000000\n7fffffffffffffff\n"
    assert hexport.hex_lines(np.array([1, 0], np.uint8), 1) == b"1\n0\n"


@st.composite
def formats_and_values(draw):
    fmt = QFormat(draw(st.integers(1, 64)), draw(st.integers(-8, 8)), draw(st.booleans()))
    values = draw(st.lists(st.integers(fmt.min_int, fmt.max_int), min_size=1, max_size=20))
    return fmt, np.array(values, np.uint64 if fmt.bits == 64 and not fmt.signed else np.int64)


@given(formats_and_values())
def test_any_format_round_trips_through_file_and_hex(tmp_path_factory, fv):
    fmt, values = fv
    path = tmp_path_factory.mktemp("rt") / "v.h5"
    w = _writer(path)
    w.write_param("l", "p", values, fmt)
    w.write_stimulus(make_encoder("analog", np.zeros((1, 1), np.int64), S8_4))
    w.close()
    with VectorFile(path) as vf:
        got, got_fmt = vf.param("l", "p")
    assert got_fmt == fmt and got.dtype.itemsize * 8 == next(b for b in (8, 16, 32, 64) if b >= fmt.bits)
    assert got.tolist() == values.tolist()
    lines = hexport.hex_lines(values, fmt.bits).decode().split()
    assert all(len(line) == -(-fmt.bits // 4) for line in lines)
    codes = [int(h, 16) for h in lines]
    assert [c - (1 << fmt.bits) * (fmt.signed and c >> (fmt.bits - 1)) for c in codes] == values.tolist()


def test_export_hex_round_trip(sample, tmp_path):
    path, d = sample
    manifest = export_hex(path, tmp_path / "hex")
    out = tmp_path / "hex"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    files = {e["file"]: e for e in manifest["files"]}
    assert len(files) == 4 + 1 + T + 3 * T + T + 1 + 1  # params, input, spikes, traces, v_post, logits, counts
    with VectorFile(path) as vf:
        for entry in manifest["files"]:
            values = vf.read(entry["dataset"].lstrip("/"), entry["timestep"])
            got = _read_hex(out / entry["file"], entry["bits"], entry["signed"])
            assert got == values.ravel().tolist() and entry["depth"] == values.size
            assert entry["shape"] == list(values.shape) and len(entry["axes"]) == values.ndim
    weight = files["layers/000_conv1/params/weight.hex"]
    assert (weight["bits"], weight["signed"], weight["digits"], weight["depth"]) == (8, True, 2, 18)
    lines = (out / "layers/000_conv1/params/weight.hex").read_text().split()
    first_negative = int(np.flatnonzero(d["conv1/weight"].ravel() < 0)[0])
    assert lines[first_negative] == f"{d['conv1/weight'].ravel()[first_negative] + 256:02x}"
    v_pre = files["traces/000_conv1/v_pre/t0003.hex"]
    assert (v_pre["timestep"], v_pre["digits"], v_pre["shape"]) == (3, 4, [N, 2, 4, 4])
    first_line = (out / "traces/001_fc/v_post/t0000.hex").read_text().split()[0]
    assert first_line == f"{d['fc/v_post'][0, 0, 0] & 0xFFFFFF:06x}"


def test_export_hex_is_atomic(sample, tmp_path, monkeypatch):
    path, _ = sample
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    with pytest.raises(OutputError, match="exists and is not empty"):
        export_hex(path, tmp_path / "full")
    calls = []

    def failing(values, bits):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return b""

    monkeypatch.setattr(hexport, "hex_lines", failing)
    with pytest.raises(OutputError, match=r"hex: cannot be written \(disk full\)"):
        export_hex(path, tmp_path / "hex")
    assert sorted(os.listdir(tmp_path)) == ["full", "golden.h5"]


# ----------------------------------------------------------------------------- h5dump
@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump (Debian hdf5-tools) is not installed")
@pytest.mark.parametrize("how", _compressions())
def test_h5dump_reads_the_file(tmp_path, how):
    path = tmp_path / "golden.h5"
    d = write_sample(path, compression=how)
    subprocess.run(["h5dump", "-H", str(path)], check=True, capture_output=True)
    out = subprocess.run(["h5dump", "-d", "/layers/000_conv1/params/bias", "-A", "0", str(path)],
                         check=True, capture_output=True, text=True).stdout
    values = [int(v) for v in out.split("DATA {")[1].split("}")[0].split(":")[1].replace(",", " ").split()]
    assert values == d["conv1/bias"].tolist()
    out = subprocess.run(["h5dump", "-d", "/traces/000_conv1/v_pre", str(path)], check=True, capture_output=True,
                         text=True).stdout
    assert f"(0,0,0,0,0): {', '.join(map(str, d['conv1/v_pre'][0, 0, 0, 0]))}" in out
    header = subprocess.run(["h5dump", "-p", "-H", str(path)], check=True, capture_output=True, text=True).stdout
    assert ("COMPRESSION DEFLATE" in header) == (how != "none") and "CHUNKED ( 1, 2, 2, 4, 4 )" in header
    subprocess.run(["h5dump", str(path)], check=True, capture_output=True)  # every dataset reads
    golden = VECTORS / "golden" / "conv_if_vmpool.h5"  # a file of refmodel gen
    out = subprocess.run(["h5dump", "-d", "/layers/001_if1/params/v_min", str(golden)], check=True, capture_output=True,
                         text=True).stdout
    assert "(0): -12000" in out  # a scalar parameter; the recipe's v_min
    subprocess.run(["h5dump", str(golden)], check=True, capture_output=True)  # every dataset decompresses


# ----------------------------------------------------------------------------- files of refmodel gen
VECTORS = Path(__file__).resolve().parents[1] / "vectors"
GOLDEN = sorted(p.stem for p in (VECTORS / "golden").glob("*.h5"))


def file_stimulus(vf):
    """The file's stimulus as Network.run takes it: (N, ...) analog codes or (T, N, ...) spikes."""
    return vf.stimulus()[0] if vf.encoding == "analog" else vf.stimulus_spikes()


@settings(max_examples=12)
@given(networks(max_stages=2), st.integers(1, 4), st.integers(1, 2), st.integers(0, SEED_MAX))
def test_a_generated_file_holds_the_run(tmp_path_factory, network, timesteps, batch, seed):
    """Every trace, count, spike count and output of a gen file equals Network.run(record="all")
    on the file's stimulus, and each parameter dataset holds the layer field of its name."""
    spec = Spec(network, StimulusSpec(batch=batch, timesteps=timesteps, seed=seed), {})
    path = tmp_path_factory.mktemp("gen") / "v.h5"
    generate(spec, path)
    with VectorFile(path) as vf:
        assert vf.verify() > 0
        assert network_config(vf.network) == network_config(network)
        stimulus = vf.stimulus()[0]
        assert_bit_exact(make_stimulus(spec, batch, seed).x, stimulus, axes=("n", "c", "y", "x"))
        result = network.run(stimulus, timesteps, record="all")
        assert {(la.name, s) for la in vf.layers for s in la.signals} == set(result.traces)
        for (layer, signal), values in result.traces.items():
            assert_bit_exact(values, vf.trace(layer, signal), layer=layer, signal=signal)
        for i, layer in enumerate(network.layers):
            assert_bit_exact(result.overflows[:, i], vf.counts(layer.name)["overflow"], layer=layer.name, axes=("t",))
            for name in vf.layer(layer.name).params:
                values, _ = vf.param(layer.name, name)
                field = np.asarray(getattr(layer, name))
                if values.shape != field.shape:  # a scalar field stored once per input channel
                    assert field.ndim == 0 and values.shape == network.shapes[i][0][:1]
                assert_bit_exact(np.broadcast_to(field, values.shape), values, layer=layer.name, signal=name,
                                 axes=vf.info(f"layers/{vf.layer(layer.name).key}/params/{name}").axes)
        assert {la.name for la in vf.layers if la.spike_count} == set(result.spike_counts)
        for name, counts in result.spike_counts.items():
            assert_bit_exact(counts, vf.spike_count(name)[0], layer=name, signal="spike_count", axes=("n", "c", "y", "x"))
        assert set(vf.outputs) == set(result.outputs)
        for name, values in result.outputs.items():
            assert_bit_exact(values, vf.output(name)[0], signal=name, axes=("n", "c", "y", "x"))


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_files_equal_the_twin(name):
    """The committed golden files against the independent twin (tests/oracle/network.py), run
    on each file's stimulus; the file's network is its recipe's."""
    with VectorFile(VECTORS / "golden" / f"{name}.h5") as vf:
        assert network_config(vf.network) == network_config(load_spec(VECTORS / "recipes" / f"{name}.toml").network)
        expected = twin.run(vf.network, file_stimulus(vf), vf.timesteps)
        assert {(la.name, s) for la in vf.layers for s in la.signals} == set(expected.traces)
        for (layer, signal), values in expected.traces.items():
            assert_bit_exact(values, vf.trace(layer, signal), layer=layer, signal=signal)
        for i, la in enumerate(vf.layers):
            assert_bit_exact([row[i] for row in expected.overflows], vf.counts(la.name)["overflow"], layer=la.name,
                             signal="overflow", axes=("t",))
        for layer, counts in expected.spike_counts.items():
            assert_bit_exact(counts, vf.spike_count(layer)[0], layer=layer, signal="spike_count")
        for output, values in expected.outputs.items():
            assert_bit_exact(values, vf.output(output)[0], signal=output, axes=("n", "c", "y", "x"))


def test_a_gen_file_describes_its_layers():
    """What a testbench reads, worked out by hand from vectors/recipes/conv_if_vmpool.toml and loihi_lif.toml."""
    with VectorFile(VECTORS / "golden" / "conv_if_vmpool.h5") as vf:
        conv, if1, pool, fc = (vf.layer(n) for n in ("conv1", "if1", "pool1", "fc"))
        assert conv.attrs == {"stride": [1, 1], "padding": [1, 1], "groups": 1, "acc_format": "s16.0",
                              "overflow": "SAT", "acc_apply": "each"}  # fmt: skip
        assert (vf.info("layers/000_conv1/params/weight").axes, vf.info("layers/004_fc/params/weight").axes) == (
            ("co", "ci", "ky", "kx"), ("co", "ci"))
        assert vf.info("layers/000_conv1/params/bias").axes == ("co",)
        assert if1.attrs == {"vm": "s16.0", "overflow": "SAT", "compare": ">=", "reset": "subtract", "refractory": 0}
        assert if1.params == ("reset_value", "threshold", "v_min")
        assert [(v.tolist(), str(f)) for v, f in (vf.param("if1", p) for p in if1.params)] == [
            (0, "s16.0"), ([12000] * 4, "s16.0"), (-12000, "s16.0")]  # 4 Vm channels
        assert (pool.attrs, pool.params) == ({"kernel": [2, 2], "stride": [2, 2], "vm_stage": "pre"}, ())
        assert fc.attrs == {"overflow": "WRAP", "acc_apply": "each"}
        counts, fmt = vf.spike_count("if1")
        assert counts.shape == (2, 4, 8, 8) and fmt == QFormat(4, 0, False)  # at most T = 8 spikes: 4 bits
        assert vf.output("spike_count")[1] == QFormat(4, 0, False) and vf.output("v")[1] == QFormat(16)
    with VectorFile(VECTORS / "golden" / "loihi_lif.h5") as vf:
        lif = vf.layer("lif")
        got = {p: (vf.param("lif", p)[0].tolist(), str(vf.param("lif", p)[1])) for p in lif.params}
        assert got == {"du": (2047, "u12.0"), "dv": (256, "u12.0"), "vth": ([40] * 5, "u17.0"),
                       "bias_mant": ([3] * 5, "s13.0"), "bias_exp": ([2] * 5, "u3.0")}  # fmt: skip
        assert lif.attrs == {} and vf.spike_count("lif")[1] == QFormat(5, 0, False)  # T = 16 needs 5 bits


def test_spike_count_of_a_sum_pool_output_is_sized_from_its_format(tmp_path):
    """A network ending in a sum pool: spike_count sums T codes of out_format u3.0 (max 7), so
    T = 8 needs 8 * 7 = 56 -> 6 bits.  Every input neuron fires every step here (I = 255 >= 1),
    so each 2x2 window sums 4 per step and 32 over the run, more than 4 bits (bits(T)) hold."""
    network = Network([
        Conv2d(name="conv", weight=np.ones((1, 1, 1, 1), np.int64), weight_format=QFormat(2)),
        IF(name="if1", vm=QFormat(10), threshold=1, overflow="SAT"),
        SumPool(name="pool", kernel=2, out_format=QFormat(3, 0, signed=False)),
    ], (1, 2, 2), QFormat(8, signed=False), name="sums")  # fmt: skip
    spec = Spec(network, StimulusSpec(batch=1, timesteps=8, seed=5), {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("refmodel.stimulus.random_codes", lambda shape, fmt, seed, bounds: np.full(shape, 255))
        generate(spec, tmp_path / "sums.h5")
    with VectorFile(tmp_path / "sums.h5") as vf:
        counts, fmt = vf.output("spike_count")
        assert fmt == QFormat(6, 0, False) and counts.tolist() == [[[[32]]]]


@pytest.fixture
def gen_copy(tmp_path):
    """A writable copy of a golden file (a file of refmodel gen)."""
    def copy(name="conv_if_vmpool"):
        path = tmp_path / f"{name}.h5"
        shutil.copy(VECTORS / "golden" / f"{name}.h5", path)
        return path
    return copy


def _add_dataset(f, path, like):
    f.create_dataset(path, data=f[like][()])
    for key, value in f[like].attrs.items():
        f[path].attrs[key] = value


def _set_config(f, edit):
    config = json.loads(f.attrs["config_json"])
    edit(config)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    f.attrs["config_json"], f.attrs["config_sha256"] = text, hashlib.sha256(text.encode()).hexdigest()


TAMPERED = {
    "weight deleted": (lambda f: f.__delitem__("layers/000_conv1/params/weight"),
                       "missing dataset /layers/000_conv1/params/weight: the config's layer 'conv1' has the array 'weight'"),
    "threshold deleted": (lambda f: f.__delitem__("layers/001_if1/params/threshold"),
                          r"missing dataset /layers/001_if1/params/threshold \(parameter 'threshold' of layer 'if1'"),
    "output deleted": (lambda f: f.__delitem__("outputs/v"), r"missing dataset /outputs/v \(output v"),
    "overflow count deleted": (lambda f: f.__delitem__("counts/001_if1/overflow"), "missing dataset /counts/001_if1/overflow"),
    "spike count deleted": (lambda f: f.__delitem__("counts/002_pool1/spike_count"),
                            "missing dataset /counts/002_pool1/spike_count"),
    "recorded trace deleted": (lambda f: f.__delitem__("traces/001_if1/spikes"),
                               r"missing dataset /traces/001_if1/spikes \(trace if1.spikes of the record list"),
    "dataset added": (lambda f: _add_dataset(f, "outputs/w", "outputs/v"),
                      "unexpected dataset /outputs/w: the config describes no such dataset"),
    "trace not in the record list": (lambda f: _set_config(f, lambda c: c["record"].remove("if1.spikes")),
                                     "unexpected dataset /traces/001_if1/spikes"),
    "weight changed": (lambda f: f["layers/000_conv1/params/weight"].__setitem__((0, 0, 0, 0), 99),
                       "/layers/000_conv1/params/weight does not match the config"),
    "threshold changed": (lambda f: f["layers/001_if1/params/threshold"].__setitem__(0, 11999),
                          r"threshold = \[11999, 12000, 12000, 12000\] differs from the config's \[12000,"),
    "attribute changed": (lambda f: f["layers/001_if1"].attrs.__setitem__("reset", "zero"),
                          "/layers/001_if1 attribute 'reset' = 'zero', the config gives 'subtract'"),
    "format changed": (lambda f: f["traces/001_if1/v_pre"].attrs.__setitem__("bits", np.int32(12)),
                       r"/traces/001_if1/v_pre is \(8, 2, 4, 8, 8\) s12.0 .*; the config describes .* s16.0"),
    "seed changed": (lambda f: f.attrs.__setitem__("seed", np.int64(9)),
                     "root attribute 'seed' = 9 differs from the config's stimulus.seed = 1"),
    "layer renamed in the config": (lambda f: _set_config(f, lambda c: c["network"]["layers"][1].__setitem__("name", "n1")),
                                    r"the layers .* differ from the config's"),
    "cost deleted": (lambda f: f.__delitem__("cost"), "/cost must hold the groups measured, memory and static"),
}  # fmt: skip


@pytest.mark.parametrize("case", TAMPERED, ids=list(TAMPERED))
def test_a_gen_file_that_differs_from_its_config_is_refused(gen_copy, case):
    edit, message = TAMPERED[case]
    path = gen_copy()
    with VectorFile(path):
        pass  # the intact copy reads
    _edit(path, edit)
    with pytest.raises(VectorFileError, match=message) as err:
        VectorFile(path)
    assert str(err.value).startswith(f"{path}: ")


def test_a_random_stimulus_that_differs_from_its_config_is_refused(gen_copy):
    path = gen_copy("loihi_lif")
    _edit(path, lambda f: f["stimulus"].attrs.__setitem__("seed", np.int64(4)))
    with pytest.raises(VectorFileError, match=r"/stimulus attributes .*'seed': 4.* differ from the config's encoder"):
        VectorFile(path)


def test_verify_reads_every_chunk(gen_copy):
    path = gen_copy()
    with VectorFile(path) as vf:
        assert vf.verify() == sum(int(np.prod(i.shape)) for i in vf.datasets())
        offset = vf._h5["traces/001_if1/v_pre"].id.get_chunk_info(5).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 3] ^= 0x40
    path.write_bytes(bytes(data))
    with VectorFile(path) as vf, pytest.raises(VectorFileError, match="cannot read /traces/001_if1/v_pre, the file is damaged"):
        vf.verify()


def test_seeds_are_32_bit(tmp_path):
    """5_000_000_000 and 705_032_704 are the same seed modulo 2**32: the larger one is refused."""
    assert 5_000_000_000 % 2**32 == 705_032_704
    spec = load_spec(VECTORS / "recipes" / "dt_t1.toml")
    with pytest.raises(NetworkError, match=r"^network 'dt_t1': seed = 5000000000 must be an integer in 0..4294967295"):
        generate(spec, tmp_path / "x.h5", seed=5_000_000_000)
    with pytest.raises(VectorFileError, match=r"seed must be an integer in 0..4294967295, got 4294967296"):
        VectorWriter(tmp_path / "y.h5", config={}, seed=2**32, timesteps=1, batch=1)
    assert os.listdir(tmp_path) == []
    generate(spec, tmp_path / "z.h5", seed=705_032_704)
    with VectorFile(tmp_path / "z.h5") as vf:
        assert vf.seed == vf.stimulus_spec.seed == 705_032_704


@pytest.mark.parametrize("timesteps", [0, -2])
def test_timesteps_below_one_name_the_network(tmp_path, timesteps):
    spec = load_spec(VECTORS / "recipes" / "loihi_lif.toml")
    with pytest.raises(NetworkError, match=rf"^network 'loihi_lif': timesteps = {timesteps} must be an integer in 1..16777216$"):
        generate(spec, tmp_path / "x.h5", timesteps=timesteps)
