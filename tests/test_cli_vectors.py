"""The inspect, check and export-hex commands, run through a subprocess: on files of the
generic writer API and on files of `refmodel gen`."""

import json
import shutil

import h5py
import pytest

from refmodel.vectors import VectorFile, reseal
from tests.test_cli_gen import RECIPE, ROOT, refmodel
from tests.test_vectors import N, T, sample_data, write_sample


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    write_sample(tmp / "golden.h5")
    d = sample_data()
    d["conv1/v_pre"][3, 1, 1, 2, 0] += 1
    d["conv1/spikes"][4, 0, 0, 1, 1] ^= 1
    write_sample(tmp / "dut.h5", d)
    return tmp


def test_inspect(files):
    out = refmodel("inspect", files / "golden.h5")
    assert out.returncode == 0, out.stderr
    assert f"seed 7, timesteps {T}, batch {N}" in out.stdout
    assert "0 conv1 (conv) (1, 4, 4) -> (2, 4, 4)" in out.stdout
    assert "param weight (2, 1, 3, 3) s8.4 [co ci ky kx]" in out.stdout
    spikes = sample_data()["conv1/spikes"]
    assert f"trace spikes (5, 2, 2, 4, 4) u1.0 [t n c y x]  spike rate {spikes.mean():.4f}" in out.stdout
    saturation = sample_data()["saturation"]
    assert f"count saturation: total {saturation.sum()}, max {saturation.max()} per timestep" in out.stdout


def test_check_equal(files):
    out = refmodel("check", files / "golden.h5", files / "golden.h5")
    assert (out.returncode, out.stderr) == (0, "") and "equals" in out.stdout


def test_check_reports_first_mismatch_and_counts(files):
    out = refmodel("check", files / "golden.h5", files / "dut.h5")
    assert out.returncode == 1, out.stderr
    v = int(sample_data()["conv1/v_pre"][3, 1, 1, 2, 0])
    assert (f"first mismatch: layer conv1, signal v_pre (traces/000_conv1/v_pre): first mismatch at "
            f"t=3 n=1 c=1 y=2 x=0: expected {v}, got {v + 1} (1 of 320 values differ)") in out.stdout
    assert "traces/000_conv1/spikes: 1 of 320" in out.stdout and "traces/000_conv1/v_pre: 1 of 320" in out.stdout


def test_check_unreadable_file_exits_2(files, tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    out = refmodel("check", files / "golden.h5", tmp_path / "bad.h5")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("refmodel check: error: ") and "bad.h5" in out.stderr
    assert refmodel("check", files / "golden.h5", tmp_path / "none.h5").returncode == 2


def test_export_hex(files, tmp_path):
    out = refmodel("export-hex", files / "golden.h5", tmp_path / "hex")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "hex" / "manifest.json").read_text())
    assert f"wrote {len(manifest['files'])} hex files" in out.stdout
    assert all((tmp_path / "hex" / e["file"]).is_file() for e in manifest["files"])
    again = refmodel("export-hex", files / "golden.h5", tmp_path / "hex")
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


# ----------------------------------------------------------------------------- files of refmodel gen
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A file written by `refmodel gen` (the conv_if_vmpool recipe: T = 8, N = 2)."""
    path = tmp_path_factory.mktemp("gen") / "golden.h5"
    run = refmodel("gen", RECIPE, "--out", path)
    assert run.returncode == 0, run.stderr
    return path


def test_check_finds_one_flipped_bit_in_a_gen_file(generated, tmp_path):
    dut = tmp_path / "dut.h5"
    shutil.copy(generated, dut)
    with h5py.File(dut, "r+") as f:
        v = f["traces/001_if1/v_post"]
        expected = int(v[5, 1, 2, 3, 4])
        v[5, 1, 2, 3, 4] = expected ^ 1 << 3
    reseal(dut)  # an edit on purpose, not damage
    assert refmodel("check", generated, generated).returncode == 0
    out = refmodel("check", generated, dut)
    assert out.returncode == 1, out.stderr
    assert (f"first mismatch: layer if1, signal v_post (traces/001_if1/v_post): first mismatch at t=5 n=1 c=2 y=3 x=4: "
            f"expected {expected}, got {expected ^ 8} (1 of {8 * 2 * 4 * 8 * 8} values differ)") in out.stdout
    assert "mismatches per signal:\n  traces/001_if1/v_post: 1 of 4096" in out.stdout


def test_export_hex_of_a_gen_file(generated, tmp_path):
    out = refmodel("export-hex", generated, tmp_path / "hex")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "hex" / "manifest.json").read_text())
    files = {e["file"]: e for e in manifest["files"]}
    with VectorFile(generated) as vf:
        # one file per non-stepped dataset, T per trace and stimulus spike dataset
        assert len(files) == sum(vf.timesteps if i.kind in ("trace", "spikes") else 1 for i in vf.datasets())
    # widths and depths from the recipe: Vm s16 (4 hex digits), 4 channels; v_pre (N, C, H, W) = (2, 4, 8, 8)
    entry = files["layers/001_if1/params/threshold.hex"]
    assert (entry["bits"], entry["digits"], entry["depth"], entry["axes"]) == (16, 4, 4, ["c"])
    assert (tmp_path / "hex" / entry["file"]).read_text() == "2ee0\n" * 4  # threshold 12000 = 0x2ee0
    entry = files["traces/001_if1/v_pre/t0007.hex"]
    assert (entry["bits"], entry["depth"], entry["timestep"], entry["shape"]) == (16, 2 * 4 * 8 * 8, 7, [2, 4, 8, 8])
    entry = files["counts/001_if1/spike_count.hex"]
    assert (entry["bits"], entry["signed"], entry["depth"], entry["kind"]) == (4, False, 2 * 4 * 8 * 8, "spike_count")
    weight = files["layers/000_conv1/params/weight.hex"]
    assert (weight["bits"], weight["depth"], weight["axes"]) == (8, 4 * 9, ["co", "ci", "ky", "kx"])


def test_inspect_refuses_a_gen_file_missing_a_dataset(generated, tmp_path):
    copy = tmp_path / "copy.h5"
    shutil.copy(generated, copy)
    with h5py.File(copy, "r+") as f:
        del f["layers/000_conv1/params/weight"]
    reseal(copy)  # an edit on purpose, not damage
    out = refmodel("inspect", copy)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (f"refmodel inspect: error: {copy}: missing dataset /layers/000_conv1/params/weight: "
                          "the config's layer 'conv1' has the array 'weight'\n")


def test_inspect_reads_every_chunk(generated, tmp_path):
    copy = tmp_path / "copy.h5"
    shutil.copy(generated, copy)
    with h5py.File(copy) as f:
        offset = f["traces/001_if1/v_pre"].id.get_chunk_info(6).byte_offset
    data = bytearray(copy.read_bytes())
    data[offset + 1] ^= 0x10
    copy.write_bytes(bytes(data))
    out = refmodel("inspect", copy)
    assert out.returncode == 2 and "cannot read /traces/001_if1/v_pre, the file is damaged" in out.stderr


def test_export_hex_into_a_missing_parent_exits_2(generated, tmp_path):
    out = refmodel("export-hex", generated, tmp_path / "no" / "hex")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"refmodel export-hex: error: {tmp_path / 'no' / 'hex'}: its directory {tmp_path / 'no'} does not exist\n")


def test_export_sv_of_a_gen_file(generated, tmp_path):
    out = refmodel("export-sv", generated, tmp_path / "p.vh")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "p.vh").read_text()
    macros = [line for line in text.splitlines() if line.startswith("`define ")]
    assert out.stdout == f"wrote {len(macros) - 1} macros to {tmp_path / 'p.vh'}\n"  # less the include guard
    with VectorFile(generated) as vf:
        assert f"`define REFMODEL_CONFIG_SHA256 256'h{vf.config_sha256}  //" in text
    # the recipe's threshold 12000 = 0x2ee0 for each of the 4 channels, v_min -12000 = 0xd120 at 16 bits
    assert "`define REFMODEL_if1_THRESHOLD {16'h2ee0, 16'h2ee0, 16'h2ee0, 16'h2ee0}  //" in text
    assert "`define REFMODEL_if1_V_MIN 16'hd120  // s16.0: -12000" in text
    assert '`define REFMODEL_if1_OVERFLOW "SAT"' in text and "`define REFMODEL_pool1_KERNEL_Y 2" in text
    assert "REFMODEL_readout_V_MIN" not in text  # the readout has no v_min: no macro
    assert refmodel("export-sv", generated, tmp_path / "again.vh").returncode == 0
    assert (tmp_path / "again.vh").read_text() == text


def test_export_sv_refuses_a_file_without_a_run_config_or_a_missing_directory(files, generated, tmp_path):
    out = refmodel("export-sv", files / "golden.h5", tmp_path / "p.vh")
    assert out.returncode == 2 and "not a run config of refmodel gen" in out.stderr
    missing = refmodel("export-sv", generated, tmp_path / "no" / "p.vh")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith(f"refmodel export-sv: error: {tmp_path / 'no' / 'p.vh'}: its directory {tmp_path / 'no'} does not exist\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_a_graph_file_names_every_layers_inputs(tmp_path):
    """The residual recipe: the layer groups carry the inputs a layer names (as its spec gives
    them), the RTL header every layer's inputs (by default the previous layer, or "input")."""
    golden = ROOT / "vectors" / "golden" / "resnet_block.h5"
    with VectorFile(golden) as vf:
        assert vf.layer("add1").attrs["inputs"] == "conv1b skip1"
        assert vf.layer("skip1").attrs["inputs"] == "if0"
        assert "inputs" not in vf.layer("if1").attrs  # reads the previous layer, add1
        assert vf.network.sites["if1"].source_names == ("add1",)
    assert refmodel("export-sv", golden, tmp_path / "p.vh").returncode == 0
    text = (tmp_path / "p.vh").read_text()
    for layer, inputs in (("conv0", "input"), ("add2", "conv2b proj2"), ("proj2", "if1"), ("if2", "add2")):
        assert f'`define REFMODEL_{layer}_INPUTS "{inputs}"  //' in text
    assert "`define REFMODEL_add2_INPUT_COUNT 2\n" in text
