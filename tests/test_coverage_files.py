"""Coverage in vector files (format version 3) and ``refmodel coverage``: the writer/reader
round trip, generate()'s coverage group (deterministic bytes, --no-coverage), older versions
without it, the reader's refusals, merging files on the command line, --require, and the UCIS,
cocotb-coverage YAML and HTML exports read back with their own readers."""

import dataclasses
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest

from refmodel import cli
from refmodel.coverage import Coverage, CoverageError, LayerCoverage
from refmodel.encode import AnalogEncoder
from refmodel.fixed import QFormat
from refmodel.generate import generate
from refmodel.spec import load_spec
from refmodel.stimulus import build_stimulus
from refmodel.vectors import VectorFile, VectorFileError, VectorWriter, reseal
from refmodel.vectors import FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "vectors" / "recipes"
SMALL = dict(timesteps=4, batch=1)


@pytest.fixture(scope="module")
def spec():
    return load_spec(RECIPES / "conv_if_vmpool.toml")


@pytest.fixture(scope="module")
def runs(spec, tmp_path_factory):
    """Two run files of conv_if_vmpool (seeds 1 and 2: other random inputs) and their coverage."""
    folder = tmp_path_factory.mktemp("runs")
    paths = []
    for seed in (1, 2):
        path = folder / f"seed{seed}.h5"
        generate(spec, path, seed=seed, **SMALL)
        paths.append(path)
    return paths


def _coverage(path):
    with VectorFile(path) as vf:
        return vf.coverage()


def _main(capsys, *args):
    """``refmodel ARGS`` in this process: (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


# ----------------------------------------------------------------------------- writer and reader
def _handmade():
    """A coverage of the network input and two layers, bins in an order that is not alphabetical,
    bins of different channel counts, a reason that is not ASCII."""
    return Coverage({
        "input": LayerCoverage("input", {"pixel_zero": np.array([3], np.int64), "pixel_min": np.array([0], np.int64)},
                               {"pixel_min": "unsigned input"}),
        "if1": LayerCoverage("if", {"v_sat_high": np.array([0, 7, 2**40], np.int64),
                                    "v_at_threshold": np.array([0, 0, 0], np.int64),
                                    "reset_to_value": np.array([0, 0, 0], np.int64),
                                    "a_first": np.array([5], np.int64)},
                             {"reset_to_value": "reset is 'subtract' \u2013 never to a value"}),
        "pool": LayerCoverage("or", {"window_tie": np.array([1, 2], np.int64)}),
    })


def _write(path, coverage=None, layers=(("if1", "if"), ("pool", "or"))):
    """A small (non-run) vector file with ``layers`` and, when given, ``coverage``."""
    encoder = AnalogEncoder(np.array([[0, 1, 255]]), QFormat(8, 0, False))
    with VectorWriter(path, config={"what": "a test"}, seed=0, timesteps=1, batch=1) as w:
        for name, kind in layers:
            w.add_layer(name, kind, input_shape=(3,), output_shape=(3,))
        w.write_stimulus(encoder)
        if coverage is not None:
            w.write_coverage(coverage)


def test_round_trip_keeps_counts_kinds_reasons_and_bin_order(tmp_path):
    path = tmp_path / "c.h5"
    written = _handmade()
    _write(path, written)
    with VectorFile(path) as vf:
        assert vf.format_version == FORMAT_VERSION
        read = vf.coverage()
        vf.verify()
    assert read.runs == 1 and list(read.layers) == ["input", "if1", "pool"]
    for name, want in written.layers.items():
        got = read.layers[name]
        assert got.kind == want.kind
        assert list(got.hits) == list(want.hits)  # the report order, not the alphabetical one
        for b, counts in want.hits.items():
            assert got.hits[b].dtype == np.int64 and got.hits[b].tolist() == counts.tolist()
        assert got.unreachable == want.unreachable
        assert got.runs == {b: int(counts.any()) for b, counts in want.hits.items()}
    with h5py.File(path) as h5:  # the stored form, as docs/vectors.md §5.6 specifies it
        assert list(h5["coverage"]) == ["000_if1", "001_pool", "input"]
        group = h5["coverage/000_if1"]
        assert group.attrs["bins"].decode() == "v_sat_high v_at_threshold reset_to_value a_first"
        assert group.attrs["kind"].decode() == "if"
        assert group.attrs["unreachable"].decode() == json.dumps(
            {"reset_to_value": "reset is 'subtract' \u2013 never to a value"}, sort_keys=True, separators=(",", ":"),
            ensure_ascii=True)
        assert group.attrs["v_sat_high"].dtype == np.int64 and group.attrs["v_sat_high"].tolist() == [0, 7, 2**40]
        assert sorted(group.attrs) == ["a_first", "bins", "kind", "reset_to_value", "unreachable", "v_at_threshold",
                                       "v_sat_high"]


def test_the_writer_checks_everything_before_writing(tmp_path):
    bad = [
        (Coverage({"ghost": LayerCoverage("if", {"b": np.array([1])})}), "unknown layer 'ghost'"),
        (Coverage({"if1": LayerCoverage("if", {"b": np.array([1.5])})}), "bin 'b' must be a non-empty 1-D integer"),
        (Coverage({"if1": LayerCoverage("if", {"b": np.array([[1]])})}), "bin 'b' must be a non-empty 1-D integer"),
        (Coverage({"if1": LayerCoverage("if", {"b": np.array([2, -1])})}), "bin 'b' channel 1 = -1"),
        (Coverage({"if1": LayerCoverage("if", {"kind": np.array([1])})}), "bin name 'kind' is reserved"),
        (Coverage({"if1": LayerCoverage("if", {"b": np.array([1])}, {"c": "why"})}), "unreachable bin 'c'"),
        (Coverage({"input": LayerCoverage("if", {"b": np.array([1])})}), "kind 'if'; the network input's"),
    ]
    encoder = AnalogEncoder(np.array([[0, 1, 255]]), QFormat(8, 0, False))
    path = tmp_path / "c.h5"
    with VectorWriter(path, config={}, seed=0, timesteps=1, batch=1) as w:
        w.add_layer("if1", "if", input_shape=(3,), output_shape=(3,))
        w.write_stimulus(encoder)
        # the valid part of each refused coverage comes first: nothing of it may be written
        for coverage, message in bad:
            coverage.layers = {"if1": LayerCoverage("if", {"ok": np.array([1])}), **coverage.layers}
            with pytest.raises(VectorFileError, match=message):
                w.write_coverage(coverage)
        w.write_coverage(Coverage({"if1": LayerCoverage("if", {"ok": np.array([4])})}))
        with pytest.raises(VectorFileError, match="the coverage is already written"):
            w.write_coverage(Coverage({"if1": LayerCoverage("if", {"ok": np.array([4])})}))
    assert _coverage(path).layers["if1"].hits["ok"].tolist() == [4]


# ----------------------------------------------------------------------------- generate
def test_generate_writes_the_run_coverage_with_the_input_first(spec, runs):
    with VectorFile(runs[0]) as vf:
        coverage = vf.coverage()
        x, fmt = vf.stimulus()
        names = [la.name for la in vf.layers]
        kinds = {la.name: la.kind for la in vf.layers}
    assert list(coverage.layers)[0] == "input"
    assert [name for name in coverage.layers if name != "input"] == [n for n in names if n in coverage.layers]
    for name, cov in coverage.layers.items():
        assert cov.kind == ("input" if name == "input" else kinds[name])
    # the input's bins, counted here from the stored input (analog u8.0: full scale is 255)
    assert fmt == QFormat(8, 0, False)
    per_channel = x.reshape(x.shape[0], x.shape[1], -1)
    assert coverage.layers["input"].hits["pixel_zero"].tolist() == (per_channel == 0).sum(axis=(0, 2)).tolist()
    assert coverage.layers["input"].hits["pixel_full_scale"].tolist() == (per_channel == 255).sum(axis=(0, 2)).tolist()
    # the layers' bins are those of the same run without a file
    stim = dataclasses.replace(spec.stimulus, seed=1, **SMALL)
    _, stimulus = build_stimulus(spec, stim)
    run = spec.network.run(stimulus, stim.timesteps, coverage=True).coverage
    for name, cov in run.layers.items():
        got = coverage.layers[name]
        assert list(got.hits) == list(cov.hits) and got.unreachable == cov.unreachable
        assert all(np.array_equal(got.hits[b], c) for b, c in cov.hits.items())


def test_generate_is_deterministic_and_no_coverage_leaves_the_group_out(spec, runs, tmp_path):
    again = tmp_path / "again.h5"
    generate(spec, again, seed=1, **SMALL)
    assert again.read_bytes() == runs[0].read_bytes()
    bare = tmp_path / "bare.h5"
    generate(spec, bare, seed=1, coverage=False, **SMALL)
    with VectorFile(bare) as vf:
        assert vf.format_version == FORMAT_VERSION and vf.coverage() is None
    with h5py.File(bare) as h5:
        assert "coverage" not in h5


def test_gen_no_coverage_option(capsys, tmp_path):
    for option, present in (("--no-coverage", False), (None, True)):
        out = tmp_path / f"{present}.h5"
        args = ["gen", RECIPES / "conv_if_vmpool.toml", "--out", out, "--timesteps", 2, "--batch", 1]
        status, _, err = _main(capsys, *(args + ([option] if option else [])))
        assert status == 0, err
        with h5py.File(out) as h5:
            assert ("coverage" in h5) is present


# ----------------------------------------------------------------------------- older versions, refusals
@pytest.fixture(scope="module")
def version_2(tmp_path_factory):
    """A version-2 file: tests/data/format3_loihi_lif.h5 without its coverage group, numbered 2
    (docs/vectors.md §11: that is all that version 3 changed)."""
    path = tmp_path_factory.mktemp("v2") / "v2.h5"
    shutil.copy(ROOT / "tests" / "data" / "format3_loihi_lif.h5", path)
    with h5py.File(path, "r+") as h5:
        del h5["coverage"]
        h5.attrs["format_version"] = np.int64(2)
    reseal(path)
    return path


def test_versions_1_and_2_still_read_without_coverage(version_2):
    olds = [version_2, ROOT / "tests" / "data" / "format1_loihi_lif.h5"]
    olds += [p for p in sorted((ROOT / "vectors" / "golden").glob("*.h5")) if h5py.File(p).attrs["format_version"] < 3]
    for path in olds:
        with VectorFile(path) as vf:
            assert vf.format_version in (1, 2)
            assert vf.coverage() is None
            vf.verify()


def test_a_coverage_group_in_a_version_2_file_is_refused(version_2, tmp_path):
    path = tmp_path / "v2.h5"
    shutil.copy(version_2, path)
    with h5py.File(path, "a") as h5:
        h5.create_group("coverage/input").attrs["kind"] = "input"
    reseal(path)
    with pytest.raises(VectorFileError, match=r"unknown root members \['coverage'\] .*coverage only from a later "):
        VectorFile(path)


def _edited(source, tmp_path, edit):
    path = tmp_path / "edited.h5"
    shutil.copy(source, path)
    with h5py.File(path, "a") as h5:
        edit(h5)
    reseal(path)  # an edit on purpose: the reader refuses what it changes, not the digest
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda h5: h5.create_group("coverage/999_ghost"), "unexpected group /coverage/999_ghost"),
    (lambda h5: h5.create_group("coverage/input/more"), "unexpected group /coverage/input/more"),
    (lambda h5: h5.create_dataset("coverage/input/x", data=np.zeros(2, np.int64)), "unexpected dataset"),
    (lambda h5: h5.create_dataset("coverage/x", data=np.zeros(2, np.int64)), "unexpected dataset /coverage/x"),
])
def test_stray_members_of_the_coverage_group_are_refused_on_opening(runs, tmp_path, edit, message):
    with pytest.raises(VectorFileError, match=message):
        VectorFile(_edited(runs[0], tmp_path, edit))


@pytest.mark.parametrize("edit, message", [
    (lambda h5: h5["coverage/input"].attrs.__setitem__("extra", np.array([1], np.int64)),
     r"attributes \['extra'\] are not bins"),
    (lambda h5: h5["coverage/001_if1"].attrs.__setitem__("kind", "lif"), "'kind' = 'lif'; the layer is 'if'"),
    (lambda h5: h5["coverage/input"].attrs.__setitem__("bins", "pixel_zero pixel_min pixel_full_scale"),
     r"attributes \['random_period'\] are not bins"),
    (lambda h5: h5["coverage/input"].attrs.__setitem__("pixel_zero", np.array([1], np.int32)),
     "'pixel_zero' = .* is not a non-empty int64 array"),
    (lambda h5: h5["coverage/input"].attrs.__setitem__("pixel_zero", np.int64(1)),
     "'pixel_zero' = .* is not a non-empty int64 array"),
    (lambda h5: h5["coverage/input"].attrs.__setitem__("pixel_zero", np.array([-1], np.int64)), "negative count"),
    (lambda h5: h5["coverage/input"].attrs.__setitem__("unreachable", '{"pixel_zero": "x"}'), "canonical JSON"),
    (lambda h5: h5["coverage/input"].attrs.__setitem__("unreachable", '{"nobin":"x"}'), "canonical JSON"),
])
def test_bad_coverage_attributes_are_refused_when_read(runs, tmp_path, edit, message):
    with VectorFile(_edited(runs[0], tmp_path, edit)) as vf:
        with pytest.raises(VectorFileError, match=message) as err:
            vf.coverage()
        assert str(vf.path) in str(err.value)
        with pytest.raises(VectorFileError, match=message):
            vf.verify()


def test_an_unresealed_coverage_edit_is_damage(runs, tmp_path):
    path = tmp_path / "damaged.h5"
    shutil.copy(runs[0], path)
    with h5py.File(path, "a") as h5:
        h5["coverage/001_if1"].attrs["v_sat_high"] = h5["coverage/001_if1"].attrs["v_sat_high"] + 1
    with pytest.raises(VectorFileError, match="metadata_sha256 does not match"):
        VectorFile(path)


# ----------------------------------------------------------------------------- refmodel coverage
def _table_hits(text):
    """{(layer, bin): hits} of the printed table."""
    rows = {}
    for line in text.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 4 and cells[0].endswith(")"):
            rows[(cells[0].split(" (")[0], cells[1])] = int(cells[2])
    return rows


def test_merging_two_files_sums_their_hits(capsys, runs):
    a, b = _coverage(runs[0]), _coverage(runs[1])
    status, out, err = _main(capsys, "coverage", *runs)
    assert err == "" and status == 0
    printed = _table_hits(out)
    expected = {(layer, name): int(a.layers[layer].hits[name].sum()) + int(b.layers[layer].hits[name].sum())
                for layer in a.layers for name in a.layers[layer].hits}
    assert printed == expected
    assert out.rstrip().endswith("over 2 runs")
    # per channel: the library's merge equals the channel-wise sums
    from refmodel.coverage_report import read_coverage

    merged, config = read_coverage(runs)
    assert config["network"]["name"] == "conv_if_vmpool" and merged.runs == 2
    for layer, cov in merged.layers.items():
        for name, counts in cov.hits.items():
            assert counts.tolist() == (a.layers[layer].hits[name] + b.layers[layer].hits[name]).tolist()
            assert cov.runs[name] == int(a.layers[layer].hits[name].any()) + int(b.layers[layer].hits[name].any())
    status, out, _ = _main(capsys, "coverage", *runs, "--per-channel")
    assert status == 0 and "per channel" in out


def test_require(capsys, runs):
    a, b = _coverage(runs[0]), _coverage(runs[1])
    total = {(layer, name): int(cov.hits[name].sum()) + int(b.layers[layer].hits[name].sum())
             for layer, cov in a.layers.items() for name in cov.hits}
    unreachable = {(layer, name): why for layer, cov in a.layers.items() for name, why in cov.unreachable.items()
                   if name in b.layers[layer].unreachable}
    holes = [pair for pair, n in total.items() if n == 0 and pair not in unreachable]
    hit = [pair for pair, n in total.items() if n > 0]
    assert holes and hit and unreachable  # the small run leaves each kind of bin
    status, out, _ = _main(capsys, "coverage", *runs, "--require", "all")
    assert status == 1
    assert out.splitlines()[-1] == (f"--require not met: {len(holes)} required bin{'s' if len(holes) != 1 else ''} "
                                    f"never hit: " + ", ".join(f"{la}.{bi}" for la, bi in holes))
    status, _, _ = _main(capsys, "coverage", *runs, "--require", ",".join(f"{la}.{bi}" for la, bi in hit))
    assert status == 0
    both = f"{hit[0][0]}.{hit[0][1]},{holes[0][0]}.{holes[0][1]}"
    status, out, _ = _main(capsys, "coverage", *runs, "--require", both)
    assert status == 1 and out.splitlines()[-1].endswith(f"never hit: {holes[0][0]}.{holes[0][1]}")
    (layer, name), why = next(iter(unreachable.items()))
    status, out, err = _main(capsys, "coverage", *runs, "--require", f"{layer}.{name}")
    assert status == 2 and out == ""
    assert err == (f"refmodel coverage: error: --require '{layer}.{name}': the bin is unreachable ({why}), no run can "
                   f"hit it; require only reachable bins\n")
    for item, message in (("if1.nothing", "layer 'if1' (if) has no bin 'nothing'"), ("ghost.x", "LAYER one of"),
                          ("if1", "write LAYER.BIN")):
        status, _, err = _main(capsys, "coverage", *runs, "--require", item)
        assert status == 2 and message in err and err.count("\n") == 1


def test_files_without_coverage_or_of_another_network_are_refused(capsys, runs, version_2, tmp_path):
    from refmodel.coverage_report import read_coverage

    other = tmp_path / "other.h5"
    generate(load_spec(RECIPES / "loihi_lif.toml"), other, timesteps=2, batch=1)
    bare = tmp_path / "bare.h5"
    generate(load_spec(RECIPES / "conv_if_vmpool.toml"), bare, coverage=False, **SMALL)
    for first, path, message in (
            (runs[0], bare, f"{bare}: holds no coverage (format version {FORMAT_VERSION}, written with --no-coverage)"),
            (other, version_2, f"{version_2}: holds no coverage (format version 2, older than version 3)")):
        status, out, err = _main(capsys, "coverage", first, path)
        assert status == 2 and out == "" and err.count("\n") == 1
        assert err.startswith("refmodel coverage: error: ") and message in err, err
    with pytest.raises(CoverageError, match=f"{other}: network 'loihi_lif'"):
        read_coverage([runs[0], other])
    # the command reports files of several networks network by network, and exports only one network's
    status, out, err = _main(capsys, "coverage", runs[0], other, runs[1])
    assert status == 0 and err == ""
    assert [line for line in out.splitlines() if line.startswith("== network")] == [
        "== network conv_if_vmpool: 2 files", "== network loihi_lif: 1 file"]
    status, out, err = _main(capsys, "coverage", runs[0], other, "--html", str(tmp_path / "x.html"))
    assert status == 2 and "export the coverage of one network" in err and not (tmp_path / "x.html").exists()


# ----------------------------------------------------------------------------- exports
@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory):
    """The exports of the two files merged, written twice (for determinism): HTML, and UCIS and
    YAML where their libraries (the optional extra 'coverage') are installed."""
    import importlib.util

    options = {"html": "--html"}
    options |= {"xml": "--ucis"} if importlib.util.find_spec("ucis") else {}
    options |= {"yml": "--yaml"} if importlib.util.find_spec("yaml") else {}
    folder = tmp_path_factory.mktemp("exports")
    written = []
    for i in range(2):
        names = {kind: folder / f"{i}.{kind}" for kind in options}
        status = cli.main(["coverage", *map(str, runs)] + [arg for kind, option in options.items()
                                                           for arg in (option, str(names[kind]))])
        assert status == 0
        written.append(names)
    return written


def _expected(runs):
    a, b = _coverage(runs[0]), _coverage(runs[1])
    return {(layer, name): (int(cov.hits[name].sum()) + int(b.layers[layer].hits[name].sum()),
                            name in cov.unreachable and name in b.layers[layer].unreachable)
            for layer, cov in a.layers.items() for name in cov.hits}


def test_exports_are_deterministic(exports):
    for kind in exports[0]:  # every export written (html always; xml and yml with the extra)
        assert exports[0][kind].read_bytes() == exports[1][kind].read_bytes()


def test_ucis_export_reads_back_with_pyucis(runs, exports):
    pytest.importorskip("ucis")
    from ucis import UCIS_COVERGROUP, UCIS_COVERINSTANCE, UCIS_COVERPOINT, UCIS_CVGBIN, UCIS_IGNOREBIN, UCIS_INSTANCE
    from ucis.history_node_kind import HistoryNodeKind
    from ucis.xml.xml_factory import XmlFactory

    db = XmlFactory.read(str(exports[0]["xml"]))  # (validates the file against the UCIS schema first)
    (top,) = list(db.scopes(UCIS_INSTANCE))
    assert top.getScopeName() == "conv_if_vmpool"
    kinds = {layer: cov.kind for layer, cov in _coverage(runs[0]).layers.items()}
    found = {}
    for group in top.scopes(UCIS_COVERGROUP):
        for instance in group.scopes(UCIS_COVERINSTANCE):
            assert kinds[instance.getScopeName()] == group.getScopeName()  # a covergroup type per kind
            for point in instance.scopes(UCIS_COVERPOINT):
                (item,) = list(point.coverItems(UCIS_CVGBIN | UCIS_IGNOREBIN))
                data = item.getCoverData()
                assert item.getName() == "hit"
                found[(instance.getScopeName(), point.getScopeName())] = (int(data.data), data.type == UCIS_IGNOREBIN)
    assert found == _expected(runs)
    nodes = list(db.getHistoryNodes(HistoryNodeKind.ALL))
    assert [(node.getLogicalName(), node.getSeed()) for node in nodes] == [(str(runs[0]), "1"), (str(runs[1]), "2")]


def test_yaml_export_reads_back_and_merges_with_cocotb_coverage(runs, exports, tmp_path):
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(exports[0]["yml"].read_text())
    expected = _expected(runs)
    points = {tuple(key.split(".")[1:]): entry for key, entry in data.items() if key.count(".") == 2}
    assert points.keys() == {pair for pair, (_, ignored) in expected.items() if not ignored}
    for pair, entry in points.items():
        assert entry["bins:_hits"] == {"hit": expected[pair][0]}
        assert entry["coverage"] == int(expected[pair][0] > 0) and entry["size"] == 1 and entry["at_least"] == 1
    reachable = len(points)
    assert data["conv_if_vmpool"]["size"] == reachable
    assert data["conv_if_vmpool"]["coverage"] == sum(1 for e in points.values() if e["coverage"])
    coverage = pytest.importorskip("cocotb_coverage.coverage")
    singles = []
    for i, run in enumerate(runs):
        singles.append(tmp_path / f"{i}.yml")
        assert cli.main(["coverage", str(run), "--yaml", str(singles[-1])]) == 0
    merged = tmp_path / "merged.yml"
    coverage.merge_coverage(lambda *_: None, str(merged), *map(str, singles))
    assert yaml.safe_load(merged.read_text()) == data  # cocotb-coverage's merge of the files = refmodel's


def test_yaml_entries_have_the_fields_cocotb_coverage_writes(exports, tmp_path):
    yaml = pytest.importorskip("yaml")
    coverage = pytest.importorskip("cocotb_coverage.coverage")
    point = coverage.CoverPoint("refmodel_fields_check.group.point", bins=["hit"])
    point(lambda value: None)("hit")
    theirs = tmp_path / "theirs.yml"
    coverage.coverage_db.export_to_yaml(str(theirs))
    reference = yaml.safe_load(theirs.read_text())
    ours = yaml.safe_load(exports[0]["yml"].read_text())
    entry = ours["conv_if_vmpool.if1.v_sat_high"]
    assert entry.keys() == reference["refmodel_fields_check.group.point"].keys()
    assert entry["type"] == reference["refmodel_fields_check.group.point"]["type"]
    assert ours["conv_if_vmpool.if1"].keys() == reference["refmodel_fields_check.group"].keys()
    assert ours["conv_if_vmpool"]["type"] == reference["refmodel_fields_check"]["type"]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.titles, self._in_title = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.titles.append(data)


def test_html_report_is_self_contained_and_names_every_bin(runs, exports):
    page = _Page()
    page.feed(exports[0]["html"].read_text())
    tags = {tag for tag, _ in page.tags}
    assert "script" not in tags and "link" not in tags and "img" not in tags and "svg" in tags
    assert not [attrs for _, attrs in page.tags if any(k in ("src", "href") and not v.startswith("#")
                                                       for k, v in attrs.items())]
    text = "".join(page.text)
    expected = _expected(runs)
    a = _coverage(runs[0])
    for (layer, name), (hits, ignored) in expected.items():
        assert f"{layer} " in text and name in text
        if ignored:  # an unreachable bar's tooltip gives the reason
            assert f"{name}: unreachable: {a.layers[layer].unreachable[name]}" in page.titles
        elif hits == 0:
            assert f"{name}: HOLE (never hit)" in page.titles
        else:
            assert f"{name}: {hits} hits" in page.titles
    fills = [attrs.get("fill") for tag, attrs in page.tags if tag == "rect"]
    assert fills.count("#d5d5d5") == sum(ignored for _, ignored in expected.values())


def test_a_missing_export_library_is_one_line_naming_the_extra(capsys, runs, monkeypatch, tmp_path):
    for module, option, package in (("ucis", "--ucis", "pyucis"), ("yaml", "--yaml", "pyyaml")):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # import then raises ImportError
            status, out, err = _main(capsys, "coverage", runs[0], option, tmp_path / "x")
        assert status == 2 and out == "" and not (tmp_path / "x").exists()
        assert err == (f"refmodel coverage: error: {option} needs the Python package {package}: install refmodel's "
                       f"extra 'coverage' (pip install 'refmodel[coverage]')\n")
