"""The source range of a random stimulus (``[stimulus] range``, ``gen --range``) and
coverage-directed generation with ``--scale`` (docs/coverage.md §7): validation naming field
and value, codes only in lo..hi, the schedule, a hole of seeds alone closed, deterministic
files equal to ``gen --seed S --range LO HI``, and ``--cover`` without ``--scale`` unchanged."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from refmodel import cli
from refmodel.directed import directed, scale_schedule
from refmodel.encode import seed_state, xorshift32
from refmodel.errors import NetworkError, SpecError
from refmodel.fixed import QFormat
from refmodel.generate import generate
from refmodel.spec import Spec, StimulusSpec, load_spec, save_spec
from refmodel.stimulus import SOURCE_SEED_FLIP, random_codes
from refmodel.vectors import VectorFile

RECIPES = Path(__file__).resolve().parents[1] / "vectors" / "recipes"
VMPOOL, CORNERS = RECIPES / "conv_if_vmpool.toml", RECIPES / "coverage_corners.toml"


def _main(capsys, *args):
    """``refmodel ARGS`` in this process: (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def _input(path):
    with VectorFile(path) as vf:
        vf.verify()
        return vf.stimulus()[0], vf.stimulus_spec, vf.coverage()


# ----------------------------------------------------------------------------- [stimulus] range
@pytest.mark.parametrize("value, problem", [
    ([3, 1], "must be two integers [lo, hi] with lo <= hi"),
    ([1], "must be two integers"),
    ([0, 1, 2], "must be two integers"),
    ([0, 2.5], "must be two integers"),
    ([True, 2], "must be two integers"),
    ("0..3", "must be two integers"),
])
def test_a_bad_range_is_refused_naming_field_and_value(value, problem):
    with pytest.raises(SpecError) as err:
        StimulusSpec(range=value)
    assert (err.value.name, err.value.field, err.value.value) == ("[stimulus]", "range", value)
    assert f"range = {value!r} {problem}" in str(err.value)


def test_a_range_needs_a_random_source():
    with pytest.raises(SpecError, match=r"range = \[0, 1\] is set, but the source is 'img': a range applies only"):
        StimulusSpec(source="img", range=[0, 1])


def test_range_in_a_spec_file_its_config_and_its_round_trip(tmp_path):
    spec = load_spec(VMPOOL)
    assert spec.stimulus.range is None and "range" not in spec.stimulus.to_dict()  # config hashes unchanged
    text = VMPOOL.read_text().replace("seed = 1", "seed = 1\nrange = [10, 20]")
    (tmp_path / "r.toml").write_text(text)
    (tmp_path / "conv_if_vmpool.npz").write_bytes((RECIPES / "conv_if_vmpool.npz").read_bytes())
    ranged = load_spec(tmp_path / "r.toml")
    assert ranged.stimulus.range == (10, 20) and ranged.stimulus.to_dict()["range"] == [10, 20]
    save_spec(Spec(ranged.network, ranged.stimulus, {}), tmp_path / "again.toml")
    assert load_spec(tmp_path / "again.toml").stimulus == ranged.stimulus
    (tmp_path / "bad.toml").write_text(text.replace("[10, 20]", "[20, 10]"))
    with pytest.raises(SpecError, match=r"bad.toml': stimulus.range = \[20, 10\] must be two integers"):
        load_spec(tmp_path / "bad.toml")


def test_a_range_beyond_the_format_is_refused_not_clipped(tmp_path):
    spec = load_spec(VMPOOL)
    with pytest.raises(SpecError, match=r"stimulus.range = \[0, 256\] must lie within the codes of u8.0, the format "
                                        r"the source draws: 0..255"):
        generate(spec, tmp_path / "x.h5", range=(0, 256))
    corners = load_spec(CORNERS)  # rate-coded: the range is of the pixel format u2.0
    with pytest.raises(SpecError, match=r"stimulus.range = \[-1, 3\] must lie within the codes of u2.0"):
        generate(corners, tmp_path / "x.h5", range=(-1, 3))
    assert not (tmp_path / "x.h5").exists()


def test_random_codes_draw_lo_plus_the_draw_modulo_the_span():
    fmt = QFormat(8, signed=False)
    full = random_codes((4, 16), fmt, 9)
    assert np.array_equal(random_codes((4, 16), fmt, 9, (0, 255)), full)  # the whole range: the same codes
    draws = [xorshift32(seed_state(9 ^ SOURCE_SEED_FLIP, i)) for i in range(64)]
    assert random_codes((4, 16), fmt, 9, (10, 20)).ravel().tolist() == [10 + d % 11 for d in draws]
    assert np.all(random_codes((3,), fmt, 9, (7, 7)) == 7)


def test_gen_range_writes_codes_only_in_lo_hi(capsys, tmp_path):
    status, out, err = _main(capsys, "gen", VMPOOL, "--out", tmp_path / "r.h5", "--range", 100, 103, "--timesteps", 2)
    assert status == 0, err
    x, stim, _ = _input(tmp_path / "r.h5")
    assert stim.range == (100, 103) and x.shape == (2, 1, 8, 8)
    assert set(np.unique(x)) == {100, 101, 102, 103}  # 128 codes: each of the 4 is drawn
    status, _, err = _main(capsys, "gen", CORNERS, "--out", tmp_path / "c.h5", "--range", 3, 3)
    assert status == 0, err
    x, stim, _ = _input(tmp_path / "c.h5")  # rate-coded: the pixels are all 3 (the full scale: always spiking)
    assert stim.range == (3, 3) and np.all(x == 3)


@pytest.mark.parametrize("args, message", [
    (("--range", 5, 3), "network 'conv_if_vmpool': range = (5, 3) must be two integers [lo, hi] with lo <= hi"),
    (("--range", 0, 300), "stimulus.range = [0, 300] must lie within the codes of u8.0"),
    (("--scale",), "--scale draws the source ranges of --cover; give --cover BINS too"),
    (("--cover", "all", "--scale", "--range", 0, 3), "--scale draws the source range of each run: it cannot be "
                                                      "combined with --range"),
])
def test_gen_refuses_bad_ranges_and_scale_without_cover(capsys, tmp_path, args, message):
    status, _, err = _main(capsys, "gen", VMPOOL, "--out", tmp_path / "x", *args)
    assert status == 2 and message in err and not (tmp_path / "x").exists()


def test_scale_with_a_fixed_source_is_an_error(capsys, tmp_path):
    spec = load_spec(CORNERS)
    img = np.zeros((2, 1, 3, 3), np.int64)
    save_spec(Spec(spec.network, dataclasses.replace(spec.stimulus, source="img"), {"img": img}), tmp_path / "f.toml")
    status, _, err = _main(capsys, "gen", tmp_path / "f.toml", "--out", tmp_path / "out", "--cover", "all", "--scale")
    assert status == 2 and "stimulus.source = 'img' is not 'random': --scale draws the range of a random" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- directed --scale
def test_the_schedule_moves_toward_the_bounds_of_the_code_range():
    vmpool = load_spec(VMPOOL)  # analog u8.0: m = 0, M = 255, d = 255 // 8 = 31
    assert scale_schedule(vmpool) == ((0, 255), (0, 0), (255, 255), (0, 31), (224, 255))
    corners = load_spec(CORNERS)  # s4.0 pixels: m = -8, M = 7, d = 15 // 8 = 1
    signed = dataclasses.replace(corners, stimulus=dataclasses.replace(corners.stimulus, format=QFormat(4)))
    assert scale_schedule(signed) == ((-8, 7), (-8, -8), (7, 7), (-8, -7), (6, 7))


def test_scale_closes_the_zero_input_hole_of_an_analog_first_layer(tmp_path):
    """conv_if_vmpool feeds conv1 random u8.0 codes, 64 per sample: all zero with probability
    256**-64, so seeds alone leave conv1.zero_input a hole.  With --scale, run 1 has seed
    base + 1 = 2 and the range (m, m) = (0, 0): every code is 0 + draw % 1 = 0, an all-zero
    image, which the analog input feeds in each of the T timesteps: zero_input is hit T times."""
    spec = load_spec(VMPOOL)
    spec = dataclasses.replace(spec, stimulus=dataclasses.replace(spec.stimulus, batch=1, timesteps=4))
    seeds = directed(spec, tmp_path / "seeds", ["conv1.zero_input"], budget=5)
    assert (seeds.runs, seeds.hit, seeds.unhit) == (5, (), (("conv1", "zero_input"),))
    scaled = directed(spec, tmp_path / "scaled", ["conv1.zero_input"], budget=5, scale=True)
    assert (scaled.runs, scaled.seeds, scaled.ranges, scaled.hit) == (2, (2,), ((0, 0),), (("conv1", "zero_input"),))
    assert scaled.files == (str(tmp_path / "scaled" / "conv_if_vmpool_seed2_range0_0.h5"),)
    x, stim, coverage = _input(scaled.files[0])
    assert stim.range == (0, 0) and not x.any()
    assert coverage.layers["conv1"].hits["zero_input"].tolist() == [4]


def test_scale_files_are_deterministic_and_equal_gen_seed_range(capsys, tmp_path):
    reports = []
    for folder in ("a", "b"):
        status, out, err = _main(capsys, "gen", CORNERS, "--out", tmp_path / folder, "--cover", "all", "--scale")
        assert status == 0, err
        reports.append(out.replace(str(tmp_path / folder), "DIR"))
    assert reports[0] == reports[1]
    assert reports[0].startswith("2 runs (seeds 1..), 26 of 26 reachable bins hit; wrote 2 files (seeds 1 range "
                                 "0..3, 2 range 0..0): DIR/coverage_corners_seed1_range0_3.h5, "
                                 "DIR/coverage_corners_seed2_range0_0.h5")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name, seed, lo, hi in (("coverage_corners_seed1_range0_3.h5", 1, 0, 3),
                               ("coverage_corners_seed2_range0_0.h5", 2, 0, 0)):
        status, _, err = _main(capsys, "gen", CORNERS, "--out", tmp_path / name, "--seed", seed, "--range", lo, hi)
        assert status == 0, err
        expected = (tmp_path / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() == expected == (tmp_path / "b" / name).read_bytes()


def test_cover_without_scale_is_unchanged(capsys, tmp_path):
    status, out, err = _main(capsys, "gen", CORNERS, "--out", tmp_path / "d", "--cover", "all")
    assert status == 0, err
    assert out.startswith("8 runs (seeds 1..), 26 of 26 reachable bins hit; wrote 2 files (seeds 1, 8): ")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["coverage_corners_seed1.h5",
                                                                  "coverage_corners_seed8.h5"]
    status, _, err = _main(capsys, "gen", CORNERS, "--out", tmp_path / "s8.h5", "--seed", 8)
    assert status == 0, err
    assert (tmp_path / "d" / "coverage_corners_seed8.h5").read_bytes() == (tmp_path / "s8.h5").read_bytes()
    done = directed(load_spec(CORNERS), tmp_path / "e", budget=100)
    assert done.ranges == (None, None) and done.seeds == (1, 8)


def test_directed_scale_refuses_a_fixed_source_in_the_library_too(tmp_path):
    spec = load_spec(CORNERS)
    fixed = Spec(spec.network, dataclasses.replace(spec.stimulus, source="img"), {"img": np.zeros((2, 1, 3, 3))})
    with pytest.raises(NetworkError, match="stimulus.source = 'img' is not 'random'"):
        directed(fixed, tmp_path / "out", budget=3, scale=True)
