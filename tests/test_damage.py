"""Damaged vector files (docs/vectors.md §7): every single-bit flip is refused or reads back
identical; links, missing chunks, re-encoded values and edited attributes are refused."""

import random
import shutil

import h5py
import pytest

from refmodel.generate import generate
from refmodel.spec import load_spec
from refmodel.vectors import VectorFile, VectorFileError, compare_files, export_hex, export_sv, reseal
from refmodel.vectors.summary import summarize
from tests.test_cli_gen import ROOT, refmodel

#: A small run file: rate-coded input spikes, conv, IF, winner-spike pool (every kind of dataset).
TINY = """name = "tiny"
input_shape = [1, 4, 4]
input_format = {bits = 1, frac = 0, signed = false}

[stimulus]
encoding = "rate"
format = {bits = 8, frac = 8, signed = false}
timesteps = 3
seed = 5

[[layers]]
kind = "conv2d"
name = "conv1"
weight = [[[[1, -2], [3, 4]]], [[[-1, 2], [0, 1]]]]
weight_format = {bits = 4}

[[layers]]
kind = "if"
name = "if1"
vm = {bits = 8}
threshold = 3

[[layers]]
kind = "winner_spike"
name = "pool1"
kernel = 3
stride = 3
"""
#: Bit flips tried in CI (each reads the whole file: ~20 ms); many more were tried by hand.
FLIPS = 400


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny")
    (directory / "tiny.toml").write_text(TINY)
    generate(load_spec(directory / "tiny.toml"), directory / "tiny.h5")
    return directory / "tiny.h5"


def _everything(path):
    """All a reader gets from the file, after verify(): header, layers, every value, the
    cost, the summary."""
    with VectorFile(path) as vf:
        vf.verify()
        seen = {k: getattr(vf, k) for k in ("config_json", "seed", "timesteps", "batch", "format_version",
                                            "refmodel_version", "encoding", "encoding_params", "layers", "outputs")}
        seen["datasets"] = vf.datasets()
        seen["values"] = {info.path: vf.read(info.path).tolist() for info in vf.datasets()}
        seen["cost"] = vf.cost()
        seen["summary"] = summarize(vf).replace(str(path), "FILE")
        return seen


def test_every_single_bit_flip_is_refused_or_changes_nothing(tiny, tmp_path):
    original, data = _everything(tiny), tiny.read_bytes()
    rng = random.Random(0)
    outcomes = {"refused": 0, "identical": 0}
    for bit in rng.sample(range(8 * len(data)), FLIPS):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << bit % 8
        path = tmp_path / "flipped.h5"
        path.write_bytes(damaged)
        try:
            assert _everything(path) == original, f"bit {bit} changed what the file reads as"
            outcomes["identical"] += 1
        except VectorFileError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > FLIPS // 2  # most bytes of a file matter


@pytest.mark.parametrize("link", ["soft", "external", "hard"])
def test_links_are_refused(tiny, tmp_path, link):
    path = tmp_path / "linked.h5"
    shutil.copy(tiny, path)
    shutil.copy(tiny, tmp_path / "other.h5")
    with h5py.File(path, "r+") as f:
        del f["layers/000_conv1/params/weight"]
        f["layers/000_conv1/params/weight"] = {
            "soft": h5py.SoftLink("/traces/000_conv1/current"),
            "external": h5py.ExternalLink(str(tmp_path / "other.h5"), "/layers/000_conv1/params/weight"),
            "hard": f["layers/001_if1/params/threshold"],
        }[link]
    if link == "hard":
        message = "/layers/000_conv1/params/weight has more than one name"
    else:
        message = f"/layers/000_conv1/params/weight is a {link.capitalize()}Link; a vector file holds hard links only"
    with pytest.raises(VectorFileError, match=message):
        VectorFile(path)


def test_an_object_the_schema_does_not_name_is_refused(tiny, tmp_path):
    path = tmp_path / "extra.h5"
    shutil.copy(tiny, path)
    with h5py.File(path, "r+") as f:
        f.create_group("stimulus/notes")
    reseal(path)
    with pytest.raises(VectorFileError, match="unexpected group /stimulus/notes: the schema names no such object"):
        VectorFile(path)


def test_a_missing_chunk_is_found_though_it_reads_as_zeros(tiny, tmp_path):
    """A trace whose timestep-1 chunk was never stored reads as the fill value; even with a
    digest recomputed over those zeros, the chunk index gives it away."""
    path = tmp_path / "hole.h5"
    shutil.copy(tiny, path)
    name = "traces/001_if1/v_pre"
    with h5py.File(path, "r+") as f:
        old = f[name]
        values, attrs = old[()], dict(old.attrs)
        del f[name]
        new = f.create_dataset(name, shape=values.shape, dtype=values.dtype, chunks=old.chunks, shuffle=True,
                               compression="gzip", compression_opts=1, fillvalue=0, track_times=False)
        for t in (0, 2):
            new[t] = values[t]
        for key, value in attrs.items():
            new.attrs[key] = value
    reseal(path)
    with VectorFile(path) as vf:
        with pytest.raises(VectorFileError, match=f"/{name} has no chunk for timestep 1: the file is damaged"):
            vf.read(name, 1)
        with pytest.raises(VectorFileError, match=rf"/{name} has 2 chunks \(2 distinct\).* needs 3"):
            vf.verify()


def test_a_value_re_encoded_validly_fails_its_digest_everywhere(tiny, tmp_path):
    path = tmp_path / "edited.h5"
    shutil.copy(tiny, path)
    with h5py.File(path, "r+") as f:  # a well-formed chunk with another value, as a stray write could leave
        f["traces/001_if1/v_post"][1, 0, 0, 0, 0] += 1
    message = "/traces/001_if1/v_post: its values do not match their SHA-256 digest: the file is damaged"
    with VectorFile(path) as vf:
        with pytest.raises(VectorFileError, match=message):
            vf.verify()
        with pytest.raises(VectorFileError, match=message):
            vf.trace("if1", "v_post")
    with pytest.raises(VectorFileError, match=message):
        compare_files(tiny, path)
    with pytest.raises(VectorFileError, match=message):
        export_hex(path, tmp_path / "hex")
    assert not (tmp_path / "hex").exists()
    for command in (("inspect", path), ("check", tiny, path), ("export-hex", path, tmp_path / "hex")):
        run = refmodel(*command)
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    reseal(path)  # the same edit, made on purpose: read as a file that differs by one value
    result = compare_files(tiny, path)
    assert result.first.location == {"t": 1, "n": 0, "c": 0, "y": 0, "x": 0}


def test_an_edited_attribute_fails_the_metadata_digest(tiny, tmp_path):
    path = tmp_path / "attrs.h5"
    shutil.copy(tiny, path)
    with h5py.File(path, "r+") as f:
        f["cost/static"].attrs["macs"] = f["cost/static"].attrs["macs"] + 1
    with pytest.raises(VectorFileError, match="metadata_sha256 does not match the file's attributes: the file is "
                                              "damaged"):
        VectorFile(path)


@pytest.mark.parametrize("version", [1, 3])
def test_an_older_file_is_still_read(version, tmp_path):
    """tests/data/format<V>_loihi_lif.h5: vectors/golden/loihi_lif.h5 as version 1 wrote it (no
    digests) and as version 3 wrote it (int64 array digests in its config, a group per layer in
    each cost section): read, inspected, compared and exported as the current file is, with the
    same config (and for version 3 the same cost); the exports differ only where they name the file's own config_sha256."""
    old = ROOT / "tests" / "data" / f"format{version}_loihi_lif.h5"
    new = ROOT / "vectors" / "golden" / "loihi_lif.h5"
    with VectorFile(old) as vf, VectorFile(new) as current:
        assert vf.format_version == version and vf.verify() > 0
        assert ("version 1: no digests" in summarize(vf)) == (version == 1)
        assert vf.config_sha256 != current.config_sha256 and vf.config == current.config
        if version == 3:  # (version 2 added the cost figure merge_adds)
            assert vf.cost() == current.cost() and vf.coverage().layers.keys() == current.coverage().layers.keys()
        names = {old: vf.config_sha256, new: current.config_sha256}
    assert compare_files(new, old).equal
    exported = {}
    for source in (old, new):
        (tmp_path / source.stem).mkdir()
        export_hex(source, tmp_path / source.stem / "hex")
        export_sv(source, tmp_path / source.stem / "params.vh")
        exported[source] = {str(path.relative_to(tmp_path / source.stem)): path.read_bytes()
                            for path in sorted((tmp_path / source.stem).rglob("*.hex"))}
        header = (tmp_path / source.stem / "params.vh").read_text()
        assert names[source] in header and names[source][:16].upper() in header
        header = header.replace(names[source], "SHA").replace(names[source][:16].upper(), "KEY").splitlines()
        assert header[0].endswith(f"from {source.name}")  # the one line that names the file
        exported[source]["params.vh"] = header[1:]
    assert len(exported[new]) > 10 and exported[old] == exported[new]


def test_written_digests_follow_the_documented_definition(tiny):
    """docs/vectors.md §5: SHA-256 of the values (storage dtype, little-endian, row-major); for a
    trace or the stimulus spikes, SHA-256 of the concatenated digests of its timesteps."""
    import hashlib

    def sha(values):
        return hashlib.sha256(values.astype(values.dtype.newbyteorder("<")).tobytes())

    with h5py.File(tiny, "r") as f:
        for name, dset in f["traces"]["001_if1"].items():
            values = dset[()]
            assert dset.attrs["sha256"].decode() == hashlib.sha256(b"".join(sha(v).digest() for v in values)).hexdigest(), name
        spikes = f["stimulus/spikes"][()]
        assert f["stimulus/spikes"].attrs["sha256"].decode() == hashlib.sha256(b"".join(sha(v).digest() for v in spikes)).hexdigest()
        for path in ("stimulus/input", "layers/000_conv1/params/weight", "counts/001_if1/overflow", "outputs/spike_count"):
            assert f[path].attrs["sha256"].decode() == sha(f[path][()]).hexdigest(), path
