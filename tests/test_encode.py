"""Input encoders: Numba kernels == pure-Python twin, hand-derived values, the C reference."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmodel import encode
from refmodel.encode import AnalogEncoder, RandomEncoder, RateEncoder, make_encoder
from refmodel.fixed import FixedPointError, QFormat
from refmodel.stimulus import random_codes
from refmodel.spec import SpecError
from tests.oracle import encode as oracle

U32 = st.integers(0, 2**32 - 1)
U8_8 = QFormat(8, 8, False)


def pixels(full_scale, max_size=12):
    return st.lists(st.integers(0, full_scale), min_size=1, max_size=max_size)


@given(U32)
def test_scalar_kernels_match_oracle(v):
    assert encode.mix32(v) == oracle.mix32(v)
    assert encode.xorshift32(v) == oracle.xorshift32(v)


@given(U32, st.integers(0, 2**32 - 1))
def test_seed_state_matches_oracle_and_is_never_zero(seed, p):
    assert encode.seed_state(seed, p) == oracle.seed_state(seed, p) != 0


@given(st.data(), st.integers(0, 20), st.integers(1, 1000))
def test_rate_matches_oracle(data, timesteps, full_scale):
    x = data.draw(pixels(full_scale))
    fmt = QFormat(max(full_scale.bit_length(), 1), 0, False)
    got = RateEncoder(np.array([x]), fmt, full_scale=full_scale).run(timesteps)
    assert got.dtype == np.uint8 and got.shape == (timesteps, 1, len(x))
    assert got[:, 0].tolist() == oracle.rate(x, timesteps, full_scale)


@given(st.data(), st.integers(0, 20), U32, st.integers(0, 32))
def test_random_matches_oracle(data, timesteps, seed, k):
    x = data.draw(pixels(1 << k))
    got = RandomEncoder(np.array([x]).reshape(1, -1), QFormat(33, 0, False), seed=seed, full_scale=1 << k)
    assert got.run(timesteps)[:, 0].tolist() == oracle.random(x, timesteps, seed, k)


@given(st.data(), st.integers(1, 40), st.integers(1, 300))
def test_rate_spike_count_is_floor_of_rate(data, timesteps, full_scale):
    x = np.array([data.draw(pixels(full_scale))])
    spikes = RateEncoder(x, QFormat(16, 0, False), full_scale=full_scale).run(timesteps)
    np.testing.assert_array_equal(spikes.sum(0), timesteps * x // full_scale)


def test_hand_derived_values():
    # xorshift32 from 1: 1 ^ 1<<13 = 0x2001; ^ >>17 leaves it; ^ 0x2001<<5 = 0x40020 -> 0x42021.
    assert encode.xorshift32(1) == 0x42021 == 270369
    # mix32(0) = 0, so the pixel whose hash input is 0 gets the fallback state 0x9E3779B9.
    seed = 42
    p = (-seed * pow(0x9E3779B9, -1, 2**32) - 1) % 2**32
    assert (seed + 0x9E3779B9 * (p + 1)) % 2**32 == 0
    assert encode.seed_state(seed, p) == 0x9E3779B9


# The first states and spikes for seed 42, u8.8 pixels (0, 100, 200), as printed by the C
# reference in docs/encoding.md (compiled with gcc, independently of the Python code).
C_STATES = [0x14353FE3, 0xF8AA0EBD, 0x808BF41F, 0xCAE9C6E7, 0x96C3B263, 0x3F05087B,
            0xB49EA05D, 0xF17BE6A4, 0x5F4EC8BE, 0x723332F7, 0x384B2E13, 0x4D7039D2]
C_SPIKES = [[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 1]]


def test_known_seed_first_outputs():
    enc = RandomEncoder(np.array([[0, 100, 200]]), U8_8, seed=42)
    assert [encode.seed_state(42, p) for p in range(3)] == [0xEE467F55, 0xA7C9A4B2, 0xED18B612]
    states, spikes = [], []
    for _ in range(4):
        spikes.append(enc.step()[0].tolist())
        states += enc.state.tolist()
    assert (states, spikes) == (C_STATES, C_SPIKES)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_reference_in_docs_reproduces_the_encoder(tmp_path):
    doc = (Path(__file__).parents[1] / "docs" / "encoding.md").read_text()
    source = re.search(r"```c\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "enc.c").write_text(source)
    subprocess.run(["cc", "-std=c99", "-Wall", "-o", str(tmp_path / "enc"), str(tmp_path / "enc.c")], check=True)
    lines = subprocess.run([str(tmp_path / "enc")], check=True, capture_output=True, text=True).stdout.split("\n")
    rows = [[(int(h, 16), int(z)) for h, z in re.findall(r"([0-9a-f]{8})->(\d)", line)]
            for line in lines if "->" in line]
    assert [h for row in rows for h, _ in row] == C_STATES
    assert [[z for _, z in row] for row in rows] == C_SPIKES
    assert lines[:2] == [f"source {fmt}: {' '.join(map(str, random_codes((3,), fmt, 42)))}" for fmt in (U8_8, QFormat(4))]
    assert lines[:2] == ["source u8.8: 132 252 78", "source s4.0: -4 4 6"]  # the output the page shows
    assert "\n".join(lines) in doc  # the page shows the whole output


@given(U32, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_random_source_and_encoder_start_apart(seed, i, p):
    """The random source seeds element i with seed ^ 2**31, the encoder pixel p with seed: the
    states coincide only when p - i = 2**31 (mod 2**32), never for indices below 2**31."""
    assert encode.seed_state(seed ^ 2**31, i) != encode.seed_state(seed, p)
    assert encode.seed_state(seed ^ 2**31, i) == encode.seed_state(seed, (i + 2**31) % 2**32)


def test_random_source_matches_its_definition():
    """code(i) = min_int + xorshift32(seed_state(seed ^ 2**31, i)) % span, from the oracle's generator."""
    fmt = QFormat(5, 2)  # min_int -16, span 32
    expected = [-16 + oracle.xorshift32(oracle.seed_state(7 ^ 2**31, i)) % 32 for i in range(12)]
    assert random_codes((2, 6), fmt, 7).ravel().tolist() == expected
    with pytest.raises(SpecError, match=r"seed = 4294967296 must be an integer in 0..4294967295"):
        random_codes((2,), fmt, 2**32)


def test_streaming_equals_run_and_reset_restarts():
    x = np.arange(24).reshape(2, 3, 4) * 10
    for enc in (RateEncoder(x, U8_8), RandomEncoder(x, U8_8, seed=3)):
        whole = enc.run(6)
        enc.reset()
        np.testing.assert_array_equal(np.stack([enc.step() for _ in range(6)]), whole)
        assert whole.shape == (6, 2, 3, 4)


def test_analog_applies_the_input_every_step():
    x = np.array([[-3, 7]])
    enc = AnalogEncoder(x, QFormat(4, 2))
    np.testing.assert_array_equal(enc.run(3), np.broadcast_to(x, (3, 1, 2)))
    assert (enc.spiking, enc.params, enc.run(0).shape) == (False, {}, (0, 1, 2))


def test_make_encoder_and_params():
    enc = make_encoder("random", np.array([[1, 2]]), U8_8, seed=9)
    assert isinstance(enc, RandomEncoder) and enc.params == {"full_scale": 256, "seed": 9}
    assert make_encoder("rate", np.array([[1]]), U8_8, full_scale=128).params == {"full_scale": 128}


@pytest.mark.parametrize("build, message", [
    (lambda: RateEncoder(np.array([[0, 257]]), QFormat(9, 8, False)), r"input\[0, 1\] = 257 is outside 0..full_scale"),
    (lambda: RateEncoder(np.array([[0.5]]), U8_8), "must be integers, got dtype float64"),
    (lambda: RateEncoder(np.array([[300]]), U8_8, full_scale=1000), r"input\[0, 0\] = 300 does not fit u8.8"),
    (lambda: RateEncoder(np.array([1]), QFormat(8, -1, False)), "frac < 0; pass full_scale"),
    (lambda: RateEncoder(np.array(1), U8_8), "needs a batch axis"),
    (lambda: RandomEncoder(np.array([[1]]), U8_8, seed=1, full_scale=100), "power of two, got 100"),
    (lambda: RandomEncoder(np.array([[1]]), U8_8, seed=-1), r"seed must be an integer in 0..2\*\*32-1"),
    (lambda: make_encoder("poisson", np.array([[1]]), U8_8), "unknown encoding 'poisson'"),
    (lambda: make_encoder("rate", np.array([[1]]), U8_8, seed=1), "rate encoder: bad parameters"),
])
def test_bad_input_is_refused(build, message):
    with pytest.raises(FixedPointError, match=message):
        build()
