"""refmodel export-vcd and check --vcd (refmodel/waves.py, docs/rtl-flow.md §6): the VCD file,
parsed back with vcdvcd (a reader independent of pyvcd, which writes it), holds every value of
the vector file's traces at its timestep; too many signals are refused before anything is
written; the mismatch VCD of a corrupted file shows golden and other part at the corrupted
timestep."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from refmodel import cli
from refmodel.vectors import VectorFile, reseal

vcdvcd = pytest.importorskip("vcdvcd", reason="vcdvcd (the test extra) reads the VCD files back")
pytest.importorskip("vcd", reason="pyvcd (the waves extra) writes the VCD files")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "vectors" / "golden" / "conv_if_vmpool.h5"
NET = "conv_if_vmpool"
EVERY_GOLDEN = sorted((ROOT / "vectors" / "golden").glob("*.h5"))


def _main(capsys, *args):
    status = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def _value(code: str, bits: int, signed: bool) -> int:
    """A VCD binary value as the integer its format means (two's complement when signed)."""
    value = int(code, 2)
    return value - (1 << bits) if signed and value >> (bits - 1) else value


def _at(signal, time):
    """The value of a vcdvcd signal at ``time`` (its last change at or before it)."""
    return [v for t, v in signal.tv if t <= time][-1]


def _traces(path):
    """{(layer, signal): (values (T, N, ...), fmt, element axes)} of every trace of a vector file."""
    with VectorFile(path) as vf:
        return {(la.name, s): (vf.trace(la.name, s), vf.trace_info(la.name, s).fmt, vf.trace_info(la.name, s).axes[2:])
                for la in vf.layers for s in la.signals}


def _element(axes, index):
    return "_".join(f"{a}{i}" for a, i in zip(axes, index))


@pytest.mark.parametrize("golden", EVERY_GOLDEN, ids=[p.stem for p in EVERY_GOLDEN])
def test_every_vcd_value_equals_the_vector_files_trace(golden, tmp_path, capsys):
    out = tmp_path / "out.vcd"
    status, text, _ = _main(capsys, "export-vcd", golden, out, "--max-signals", 10_000)
    assert status == 0, text
    traces = _traces(golden)
    with VectorFile(golden) as vf:
        net, T, N = vf.network.name, vf.timesteps, vf.batch
    wave = vcdvcd.VCDVCD(str(out))
    assert (wave.timescale["magnitude"], wave.timescale["unit"]) == (100, "ps")
    expected_names = {f"{net}.clk", f"{net}.timestep"}
    checked = 0
    for (layer, signal), (values, fmt, axes) in traces.items():
        for n in range(N):
            for index in np.ndindex(*values.shape[2:]):
                name = f"{net}.{layer}.n{n}.{signal}.{_element(axes, index)}"
                expected_names.add(name)
                var = wave[name]
                assert int(var.size) == fmt.bits
                for t in range(T):
                    assert _value(_at(var, 10 * t), fmt.bits, fmt.signed) == values[(t, n) + index], (name, t)
                    checked += 1
    assert set(wave.signals) == expected_names
    assert checked == sum(v.size for v, _, _ in traces.values())
    assert f"{len(expected_names) - 2} signals over {T} timesteps" in text
    # the clock rises at each timestep's start (t ns = 10 units of 100 ps) and falls half-way
    assert wave[f"{net}.clk"].tv == [(time, bit) for t in range(T) for time, bit in ((10 * t, "1"), (10 * t + 5, "0"))]
    assert [(time, int(v, 2)) for time, v in wave[f"{net}.timestep"].tv] == [(10 * t, t) for t in range(T)]
    assert wave.endtime == 10 * T


def test_the_vcd_bytes_are_the_same_every_time_and_carry_no_date(tmp_path, capsys):
    for name in ("a.vcd", "b.vcd"):
        assert _main(capsys, "export-vcd", GOLDEN, tmp_path / name)[0] == 0
    data = (tmp_path / "a.vcd").read_bytes()
    assert data == (tmp_path / "b.vcd").read_bytes()
    assert b"$date" not in data
    with VectorFile(GOLDEN) as vf:  # the header records each signal's format
        formats = [f"{la.name}.{s} {vf.trace_info(la.name, s).fmt}" for la in vf.layers for s in la.signals]
    header = data.split(b"$end")[0].decode()
    assert all(f in header for f in formats)


def test_a_selection_writes_only_its_layers_signals_and_samples(tmp_path, capsys):
    out = tmp_path / "if1.vcd"
    status, text, err = _main(capsys, "export-vcd", GOLDEN, out, "--layers", "if1,pool1", "--signals", "v_pre,spikes",
                              "--samples", "1")
    assert status == 0, err
    traces = _traces(GOLDEN)
    wave = vcdvcd.VCDVCD(str(out))
    expected = {f"{NET}.clk", f"{NET}.timestep"}
    for layer, signal in (("if1", "v_pre"), ("if1", "spikes"), ("pool1", "spikes")):
        values, fmt, axes = traces[(layer, signal)]
        for index in np.ndindex(*values.shape[2:]):
            name = f"{NET}.{layer}.{signal}.{_element(axes, index)}"  # one sample: no sample scope
            expected.add(name)
            assert [_value(_at(wave[name], 10 * t), fmt.bits, fmt.signed) for t in range(values.shape[0])] \
                == [values[(t, 1) + index] for t in range(values.shape[0])]
    assert set(wave.signals) == expected


@pytest.mark.parametrize("option, value, message", [
    ("--layers", "nope", "no layer 'nope'"),
    ("--layers", "flat", "layer 'flat' has no recorded trace"),
    ("--signals", "index,vm", "no layer chosen records a signal 'vm'"),
    ("--samples", "2", "sample 2 is not in the file (batch 2"),
    ("--samples", "one", "--samples one: give sample numbers"),
])
def test_a_bad_selection_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, option, value, message):
    status, _, err = _main(capsys, "export-vcd", GOLDEN, tmp_path / "out.vcd", option, value)
    assert status == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_file_without_traces_exits_2_saying_so(tmp_path, capsys):
    from refmodel.generate import generate
    from refmodel.spec import load_spec

    bare = tmp_path / "bare.h5"
    generate(load_spec(ROOT / "vectors" / "recipes" / "conv_if_vmpool.toml"), bare, timesteps=1, record=None)
    status, _, err = _main(capsys, "export-vcd", bare, tmp_path / "out.vcd")
    assert status == 2 and "the file records no trace" in err
    assert [p.name for p in tmp_path.iterdir()] == ["bare.h5"]


def test_max_signals_refuses_an_export_naming_how_many_signals_it_would_hold(tmp_path, capsys):
    count = sum(int(np.prod(v.shape[1:])) for v, _, _ in _traces(GOLDEN).values())  # elements x samples
    status, _, err = _main(capsys, "export-vcd", GOLDEN, tmp_path / "out.vcd", "--max-signals", count - 1)
    assert status == 2
    assert f"it would hold {count} signals, more than --max-signals {count - 1}" in err
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary
    assert _main(capsys, "export-vcd", GOLDEN, tmp_path / "out.vcd", "--max-signals", count)[0] == 0


@pytest.fixture
def corrupted(tmp_path):
    """A copy of the golden file with if1's v_post at t=5 n=1 c=2 y=3 x=4 one less, resealed."""
    bad = tmp_path / "corrupted.h5"
    shutil.copy(GOLDEN, bad)
    with h5py.File(bad, "r+") as f:
        f["traces/001_if1/v_post"][5, 1, 2, 3, 4] -= 1
    reseal(bad)
    return bad


@pytest.mark.parametrize("window", [8, 2])
def test_check_vcd_shows_golden_and_other_parting_at_the_first_mismatch(corrupted, tmp_path, capsys, window):
    diff = tmp_path / "diff.vcd"
    status, text, _ = _main(capsys, "check", GOLDEN, corrupted, "--vcd", diff, "--window", window)
    assert status == 1
    assert f"wrote {diff}" in text
    golden, bad = _traces(GOLDEN), _traces(corrupted)
    lo, hi = max(0, 5 - window), min(8, 5 + window + 1)
    wave = vcdvcd.VCDVCD(str(diff))
    marker = wave["check.mismatch"]
    assert [(_at(marker, 10 * t)) for t in range(lo, hi)] == ["1" if t == 5 else "0" for t in range(lo, hi)]
    assert wave.begintime == 10 * lo and wave.endtime == 10 * hi
    names = {"check.clk", "check.timestep", "check.mismatch"}
    for signal in ("v_pre", "spikes", "v_post"):
        values, fmt, axes = golden[("if1", signal)]
        for side, file_values in (("golden", values), ("other", bad[("if1", signal)][0])):
            for index in np.ndindex(*values.shape[2:]):
                name = f"check.{side}.if1.n1.{signal}.{_element(axes, index)}"
                names.add(name)
                got = [_value(_at(wave[name], 10 * t), fmt.bits, fmt.signed) for t in range(lo, hi)]
                assert got == [file_values[(t, 1) + index] for t in range(lo, hi)], name
    assert set(wave.signals) == names
    at = [_at(wave[f"check.{side}.if1.n1.v_post.c2_y3_x4"], 50) for side in ("golden", "other")]
    assert [_value(v, 16, True) for v in at] == [golden[("if1", "v_post")][0][5, 1, 2, 3, 4],
                                                 golden[("if1", "v_post")][0][5, 1, 2, 3, 4] - 1]


def test_check_vcd_of_a_large_layer_shows_the_mismatchs_channel(corrupted, tmp_path, capsys):
    diff = tmp_path / "diff.vcd"
    status, _, _ = _main(capsys, "check", GOLDEN, corrupted, "--vcd", diff, "--max-signals", 1000)
    assert status == 1
    elements = {name.rsplit(".", 1)[1] for name in vcdvcd.VCDVCD(str(diff)).signals if ".if1." in name}
    assert elements == {f"c2_y{y}_x{x}" for y in range(8) for x in range(8)}


def test_check_vcd_of_equal_files_writes_nothing(tmp_path, capsys):
    status, text, _ = _main(capsys, "check", GOLDEN, GOLDEN, "--vcd", tmp_path / "diff.vcd")
    assert status == 0 and "not written: no trace value differs" in text
    assert list(tmp_path.iterdir()) == []
