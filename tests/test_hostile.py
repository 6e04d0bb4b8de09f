"""Hostile input and interrupted work (docs/spec.md "Limits", docs/vectors.md §6): every bad
spec, size, target or signal ends in one line and a documented exit status, allocates nothing
it cannot hold, and leaves no file behind."""

import errno
import glob
import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmodel import RefmodelError
from refmodel.files import AtomicOutput, OutputError, remove_stale
from refmodel.fixed import Rounding, shift_right
from refmodel.generate import generate
from refmodel.limits import ResourceError, human_bytes, memory_limit
from refmodel.network import NetworkError
from refmodel.spec import load_spec
from tests.test_cli_gen import ROOT, refmodel

RECIPE = ROOT / "vectors" / "recipes" / "conv_if_vmpool.toml"
#: The address space each refusing command runs in: an allocation of what it refuses would fail.
ADDRESS_SPACE = 2 << 30


def _spec(tmp_path, name="s.toml", **replace):
    """The conv_if_vmpool recipe (its .npz beside it) with ``old=new`` text replacements."""
    shutil.copy(RECIPE.with_suffix(".npz"), tmp_path / "conv_if_vmpool.npz")
    text = RECIPE.read_text()
    for old, new in replace.values():
        assert old in text, old
        text = text.replace(old, new)
    (tmp_path / name).write_text(text)
    return tmp_path / name


def _bounded(*args, cwd=None):
    """``refmodel ARGS`` in a process whose address space is ADDRESS_SPACE."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "refmodel.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE)))


def _one_line(run, status=2):
    assert run.returncode == status, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    return run.stderr.strip()


def _temporaries(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# ----------------------------------------------------------------------------- sizes
BOMBS = {
    "padding": ({"p": ("padding = 1", "padding = 100000")},
                "layer 'conv1': padding = (100000, 100000) needs 320.0 GB of memory (one padded input sample "
                "(1x200008x200008) 320.0 GB); the limit is"),
    "input_shape": ({"s": ("input_shape = [1, 8, 8]", "input_shape = [1, 100000, 100000]")},
                    "network 'conv_if_vmpool': input_shape = (1, 100000, 100000) needs 80.0 GB of memory"),
    "spec timesteps": ({"t": ("timesteps = 8", "timesteps = 1000000000000")},
                       "stimulus.timesteps = 1000000000000 must be an integer in 1..16777216"),
    "spec batch": ({"n": ("batch = 2", "batch = 1000000000")},
                   "stimulus.batch = 1000000000 must be an integer in 1..16777216"),
    "batch the memory refuses": ({"n": ("batch = 2", "batch = 10000000")},
                                 "network 'conv_if_vmpool': batch = 10000000 needs "),
}


@pytest.mark.parametrize("name", BOMBS)
def test_a_size_too_large_is_refused_before_anything_is_allocated(tmp_path, name):
    replace, message = BOMBS[name]
    spec = _spec(tmp_path, **replace)
    for command in (("gen", spec, "--out", tmp_path / "v.h5"), ("cost", spec)):
        line = _one_line(_bounded(*command))
        assert message in line and line.startswith(f"refmodel {command[0]}: error: ")
    assert sorted(os.listdir(tmp_path)) == ["conv_if_vmpool.npz", "s.toml"]


def test_gen_timesteps_beyond_the_cap_is_one_line(tmp_path):
    line = _one_line(_bounded("gen", RECIPE, "--out", tmp_path / "v.h5", "--timesteps", 10**12))
    assert line == ("refmodel gen: error: argument --timesteps: must be in 1..16777216, got 1000000000000 "
                    "(see refmodel gen --help)")


def test_the_memory_limit_is_the_override_then_the_smaller_of_ram_and_ulimit(monkeypatch):
    monkeypatch.setenv("REFMODEL_MAX_BYTES", "12345")
    assert memory_limit() == (12345, "REFMODEL_MAX_BYTES")
    monkeypatch.setenv("REFMODEL_MAX_BYTES", "lots")
    with pytest.raises(RefmodelError, match="REFMODEL_MAX_BYTES = 'lots' must be a number of bytes >= 1"):
        memory_limit()
    monkeypatch.delenv("REFMODEL_MAX_BYTES")
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit, source = memory_limit()
    assert limit <= physical and source in ("physical memory", "the address-space limit, ulimit -v")


def test_a_run_larger_than_the_limit_names_batch_or_timesteps(monkeypatch):
    network = load_spec(RECIPE).network
    counts = human_bytes(8 * len(network.layers) * 10**6)  # a streamed run's part in T alone: the overflow counts
    monkeypatch.setenv("REFMODEL_MAX_BYTES", str(10**6))
    with pytest.raises(ResourceError, match=rf"^network 'conv_if_vmpool': timesteps = 1000000 needs .*per-timestep "
                                            rf"counts {counts}.*; the limit is 1.0 MB \(REFMODEL_MAX_BYTES\)$"):
        network.check_run(1, 10**6, keep_traces=False)
    with pytest.raises(ResourceError, match=r"^network 'conv_if_vmpool': batch = 1000 needs .*\(layer state"):
        network.check_run(1000, 1, keep_traces=False)
    with pytest.raises(ResourceError, match=r"timesteps = 100 needs .*traces"):  # traces kept in memory
        network.run(np.zeros((2, 1, 8, 8), np.int64), 100, record="all")


def _npz_with_a_huge_header(path, members, huge):
    """An .npz of ``members`` (name -> array) plus, under the name ``huge``, a member whose .npy
    header claims 10**6 x 10**6 int64 values (8 TB) followed by a few bytes."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, values in members.items():
            buffer = io.BytesIO()
            np.save(buffer, values)
            archive.writestr(f"{name}.npy", buffer.getvalue())
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": "<i8", "fortran_order": False, "shape": (10**6, 10**6)})
        archive.writestr(f"{huge}.npy", buffer.getvalue() + bytes(64))


def test_npz_members_are_read_only_when_named_and_their_header_first(tmp_path):
    with np.load(RECIPE.with_suffix(".npz")) as data:
        arrays = {k: data[k] for k in data.files}
    spec = _spec(tmp_path)
    _npz_with_a_huge_header(tmp_path / "conv_if_vmpool.npz", arrays, "unused")  # a member no layer names
    run = _bounded("gen", spec, "--out", tmp_path / "v.h5")
    assert run.returncode == 0, run.stderr
    del arrays["fc.weight"]
    _npz_with_a_huge_header(tmp_path / "conv_if_vmpool.npz", arrays, "fc.weight")
    line = _one_line(_bounded("gen", spec, "--out", tmp_path / "w.h5"))
    assert "arrays['fc.weight'] = (1000000, 1000000) needs 8.0 TB of memory (the array 8.0 TB)" in line


# ----------------------------------------------------------------------------- malformed text
MALFORMED = {
    "binary": (os.urandom(64) + b"\xff", "is not UTF-8 text (byte 0x"),
    "latin-1": (b'name = "caf\xe9"\n', "is not UTF-8 text (byte 0xe9 at offset 11); a spec is a TOML file"),
    "nested thousands deep": (b"x = " + b"[" * 5000 + b"]" * 5000, "nests arrays or tables too deep"),
    "not TOML": (b"[[layers]\n", "is not valid TOML"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_spec_text_is_one_line(tmp_path, name):
    data, message = MALFORMED[name]
    (tmp_path / "s.toml").write_bytes(data)
    for command in (("gen", tmp_path / "s.toml", "--out", tmp_path / "v.h5"), ("cost", tmp_path / "s.toml")):
        assert message in _one_line(refmodel(*command))


SPEC_ERRORS = {
    "ragged weight list": ({"w": ('weight = "conv1.weight"', "weight = [[[[1, 2], [3]]]]")},
                           "layer 'conv1': weight = '[...]' is not a rectangular array"),
    "bool weights": ({"w": ('weight = "conv1.weight"', "weight = [[[[true, false, true], [true, true, true], "
                                                       "[false, false, false]]]]")},
                     "layer 'conv1': weight = array of shape (1, 1, 3, 3) must be integer codes, got dtype bool"),
    "network name with NUL": ({"n": ('name = "conv_if_vmpool"', 'name = "a\\u0000b"')},
                              "network 'a\\x00b': name = 'a\\x00b' must be a non-empty name of ASCII letters"),
    "network name with a slash": ({"n": ('name = "conv_if_vmpool"', 'name = "a/b"')}, "network 'a/b': name ="),
    "network name with a newline": ({"n": ('name = "conv_if_vmpool"', 'name = "a\\nb"')}, "network 'a\\nb': name ="),
    "arrays above the spec's directory": ({"a": ('arrays = "conv_if_vmpool.npz"', 'arrays = "../x/conv_if_vmpool.npz"')},
                                         "arrays = '../x/conv_if_vmpool.npz' leaves the spec's directory; give an "
                                         "absolute path"),
    "a kind that is a list": ({"k": ('kind = "conv2d"', "kind = [1]")}, "kind = [1] must be one of conv2d"),
}


@pytest.mark.parametrize("name", SPEC_ERRORS)
def test_bad_spec_content_is_one_line(tmp_path, name):
    replace, message = SPEC_ERRORS[name]
    assert message in _one_line(refmodel("gen", _spec(tmp_path, **replace), "--out", tmp_path / "v.h5"))


def test_an_absolute_arrays_path_is_taken_as_written(tmp_path):
    spec = _spec(tmp_path, a=('arrays = "conv_if_vmpool.npz"', f'arrays = "{RECIPE.with_suffix(".npz")}"'))
    assert load_spec(spec).network.layer("conv1").weight.shape == (4, 1, 3, 3)


NPZ_ERRORS = {
    "truncated": (lambda good: good[:500], "is not an .npz archive (not a zip file, or a truncated one)"),
    "not a zip": (lambda good: b"hello\n", "is not an .npz archive"),
    "a member cut short": (None, "arrays['fc.weight'] = 'conv_if_vmpool.npz' cannot be read: the .npz is damaged "
                                 "or truncated (EOF: reading array data"),
}


@pytest.mark.parametrize("name", NPZ_ERRORS)
def test_a_damaged_npz_is_one_line(tmp_path, name):
    import io
    import zipfile

    edit, message = NPZ_ERRORS[name]
    spec = _spec(tmp_path)
    npz = tmp_path / "conv_if_vmpool.npz"
    if edit is not None:
        npz.write_bytes(edit(npz.read_bytes()))
    else:
        with np.load(RECIPE.with_suffix(".npz")) as data, zipfile.ZipFile(npz, "w") as archive:
            for key in data.files:
                buffer = io.BytesIO()
                np.save(buffer, data[key])
                archive.writestr(f"{key}.npy", buffer.getvalue()[:-10] if key == "fc.weight" else buffer.getvalue())
    assert message in _one_line(refmodel("gen", spec, "--out", tmp_path / "v.h5"))


def test_a_directory_in_place_of_a_file_is_named_as_such(tmp_path):
    (tmp_path / "d").mkdir()
    assert _one_line(refmodel("inspect", tmp_path / "d")).endswith(f"{tmp_path / 'd'}: is a directory, not a vector file")
    assert _one_line(refmodel("cost", tmp_path / "d")).endswith("is a directory, not a spec")
    (tmp_path / "f").write_text("x")
    generate(load_spec(RECIPE), tmp_path / "v.h5")
    assert _one_line(refmodel("export-hex", tmp_path / "v.h5", tmp_path / "f")).endswith(
        "f: exists and is a file, not a directory")


def test_python_api_errors_name_the_place():
    network = load_spec(RECIPE).network
    with pytest.raises(NetworkError, match=r"^network 'conv_if_vmpool': record = 5 must be None"):
        network.resolve_record(5)
    with pytest.raises(NetworkError, match="stimulus = array of shape .0, 1, 8, 8. holds no sample"):
        network.run(np.zeros((0, 1, 8, 8), np.int64), 2)
    x = np.array([-(2**63), -1, 0, 5, 2**63 - 1])
    for n in (65, 1000, 2**70):  # |x| / 2**n < 1/2: floor gives -1 below 0, every other rounding 0
        for rounding in Rounding:
            expected = [-1 if rounding == Rounding.TRN and v < 0 else 0 for v in x.tolist()]
            assert shift_right(x, n, rounding).tolist() == expected, (n, rounding)


@given(st.data())
def test_hostile_specs_raise_refmodel_errors_only(tmp_path_factory, data):
    """Random edits of a valid spec (values of every type and size, keys removed, duplicated or
    unknown, nesting, bytes): loading and generating either works or raises a RefmodelError."""
    tmp = tmp_path_factory.mktemp("hostile")
    lines = RECIPE.read_text().splitlines()
    shutil.copy(RECIPE.with_suffix(".npz"), tmp / "conv_if_vmpool.npz")
    value = st.recursive(
        st.one_of(st.integers(-(2**70), 2**70).map(str), st.sampled_from(["0", "-1", "1e400", "nan", "inf", "1.5",
                  "true", "1979-05-27", '""', '"SAT"', '"conv1.weight"', "{}", "{bits = 99}", "[]", "10000000"]),
                  st.text(max_size=8).map(json.dumps)),
        lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.dictionaries(st.sampled_from(["bits", "frac", "signed", "x"]), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"),
        max_leaves=6)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        edit = data.draw(st.sampled_from(["value", "delete", "duplicate", "unknown", "deep"]))
        key = lines[i].split("=")[0].strip() if "=" in lines[i] else None
        if edit == "value" and key:
            lines[i] = f"{key} = {data.draw(value)}"
        elif edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "unknown":
            lines.insert(i, f"{data.draw(st.sampled_from(['zz', 'kind', 'layers', 'stimulus']))} = {data.draw(value)}")
        elif edit == "deep" and key:
            depth = data.draw(st.integers(1, 3000))
            lines[i] = f"{key} = {'[' * depth}1{']' * depth}"
    text = "\n".join(lines).encode()
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]
    (tmp / "s.toml").write_bytes(text)
    try:
        spec = load_spec(tmp / "s.toml")
        generate(spec, tmp / "v.h5", timesteps=2)
    except RefmodelError:
        pass
    assert _temporaries(tmp) == []


# ----------------------------------------------------------------------------- targets
def _special_files(tmp_path):
    """A FIFO, a socket, a directory and /dev/null: paths that are not regular files."""
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    (tmp_path / "dir").mkdir()
    return sock, {"fifo": "a FIFO", "sock": "a socket", "dir": "a directory", "/dev/null": "a character device"}


def test_outputs_refuse_what_is_not_a_regular_file(tmp_path):
    generate(load_spec(RECIPE), tmp_path / "v.h5")
    sock, special = _special_files(tmp_path)
    try:
        for name, kind in special.items():
            target = Path(name) if name.startswith("/") else tmp_path / name
            for command in (("gen", RECIPE, "--out", target), ("export-sv", tmp_path / "v.h5", target)):
                line = _one_line(refmodel(*command))
                assert line.endswith(f"{target}: exists and is {kind}; refmodel replaces only regular files"), line
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
        assert stat.S_ISSOCK(os.stat(tmp_path / "sock").st_mode) and (tmp_path / "dir").is_dir()
    finally:
        sock.close()
    assert _temporaries(tmp_path) == []


def test_symlinks_are_written_through_only_with_force(tmp_path):
    (tmp_path / "kept.h5").write_bytes(b"old")
    os.symlink("kept.h5", tmp_path / "link.h5")
    assert _one_line(refmodel("gen", RECIPE, "--out", tmp_path / "link.h5")).endswith(
        "link.h5: is a symbolic link; refmodel does not write through one unless forced (--force)")
    assert (tmp_path / "kept.h5").read_bytes() == b"old"
    assert refmodel("gen", RECIPE, "--out", tmp_path / "link.h5", "--force").returncode == 0
    assert os.path.islink(tmp_path / "link.h5")  # the link stays; the file it names is the new one
    assert refmodel("inspect", tmp_path / "kept.h5").returncode == 0
    os.symlink("new.h5", tmp_path / "dangling.h5")
    assert refmodel("export-sv", tmp_path / "kept.h5", tmp_path / "dangling.h5", "--force").returncode == 0
    assert (tmp_path / "new.h5").read_text().startswith("// Parameters of network")


def test_messages_name_the_users_path_not_a_temporary(tmp_path):
    (tmp_path / "out").mkdir()
    assert _one_line(refmodel("gen", RECIPE, "--out", tmp_path / "out")).endswith(
        f"{tmp_path / 'out'}: exists and is a directory; refmodel replaces only regular files")
    assert _one_line(refmodel("gen", RECIPE, "--out", "")).endswith("output path '' is not a file name")


# ----------------------------------------------------------------------------- interrupted work
def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {f".v.h5.{dead_pid}.0123abcd.tmp": False, f".v.h5.{os.getpid()}.0123abcd.tmp": True,
             f".v.h5.{dead_pid}.tmp": True, f".v.h5.x.{dead_pid}.0123abcd.tmp": True,  # not of this target's form
             f".w.h5.{dead_pid}.0123abcd.tmp": True}  # another target's
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / f".v.h5.{dead_pid}.fedcba98.tmp").mkdir()  # a dead export-hex's directory
    remove_stale(str(tmp_path), "v.h5")
    assert sorted(os.listdir(tmp_path)) == sorted(name for name, kept in names.items() if kept)


def test_a_failing_write_leaves_nothing_and_says_which_path(tmp_path):
    with pytest.raises(OutputError, match=f"^no space left writing {tmp_path / 'x'}$"):
        with AtomicOutput(tmp_path / "x"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert os.listdir(tmp_path) == []


def _start_gen(target, timesteps=100000):
    """refmodel gen of the recipe over many timesteps, SIGINT at its default (a child of a
    non-interactive shell may start with it ignored); waits until its temporary file exists."""
    run = subprocess.Popen([sys.executable, "-m", "refmodel.cli", "gen", str(RECIPE), "--out", str(target),
                            "--timesteps", str(timesteps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not glob.glob(str(target.parent / f".{target.name}.{run.pid}.*.tmp")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # into the timestep loop
    return run


@pytest.mark.parametrize("sig, status, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_mid_gen_exits_with_one_line_and_leaves_the_old_file(tmp_path, sig, status, word):
    target = tmp_path / "v.h5"
    target.write_bytes(b"the previous file")
    run = _start_gen(target)
    run.send_signal(sig)
    _, err = run.communicate(timeout=60)
    assert run.returncode == status and err == f"refmodel gen: {word}\n"
    assert target.read_bytes() == b"the previous file" and _temporaries(tmp_path) == []


def test_after_a_sigkill_the_next_write_removes_the_temporary(tmp_path):
    target = tmp_path / "v.h5"
    run = _start_gen(target)
    run.kill()
    run.communicate()
    assert len(_temporaries(tmp_path)) == 1
    assert refmodel("gen", RECIPE, "--out", target).returncode == 0
    assert _temporaries(tmp_path) == [] and os.listdir(tmp_path) == ["v.h5"]


@pytest.fixture
def small_disk(tmp_path):
    """A 40 kB tmpfs (root only; smaller than each file written to it), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(small_disk, tmp_path):
    generate(load_spec(RECIPE), tmp_path / "v.h5")
    for command, target in ((("gen", RECIPE, "--out"), "v.h5"), (("export-hex", tmp_path / "v.h5"), "hex"),
                            (("gen", RECIPE, "--timesteps", "40", "--out"), "w.h5")):
        line = _one_line(refmodel(*command, small_disk / target))
        assert line.endswith(f"error: no space left writing {small_disk / target}"), line
        assert os.listdir(small_disk) == []
