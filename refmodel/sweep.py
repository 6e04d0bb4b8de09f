"""Sweeps: the vector files of a spec over seeds × variants, generated on Dask, optionally
each checked against a DUT, recorded in a manifest that a rerun resumes (docs/sweep.md).

A *variant* is a tuple of settings ``(FIELD, value)`` applied to the spec (``if1.threshold``,
``conv1.overflow``, ``stimulus.batch``: ``refmodel.spec.apply_settings``); a *job* is one
variant and one seed, and writes exactly the file ``refmodel gen SPEC --set FIELD=VALUE ...
--seed S`` writes.  Workers write the files into the sweep directory themselves (a path every
worker can reach); the client appends one JSON line per finished job to ``manifest.jsonl``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from refmodel.encode import SEED_MAX
from refmodel.errors import RefmodelError, SpecError

__all__ = ["SweepError", "Job", "parse_seeds", "parse_vary", "plan", "run_job", "pending", "run_sweep", "read_manifest",
           "MANIFEST", "FAILED"]

MANIFEST = "manifest.jsonl"
#: The results of a job that ``--rerun-failed`` redoes (the others: "generated" without a
#: DUT, "pass" with one).
FAILED = ("mismatch", "dut_error", "refmodel_error", "lost")
#: Lines of a failing DUT command's output kept in the manifest.
TAIL_LINES = 20


class SweepError(RefmodelError):
    """A sweep that cannot be planned or run as asked."""


@dataclass(frozen=True)
class Job:
    """One file of a sweep: ``settings`` ((field, value), ...) and ``seed`` applied to the spec
    at ``spec`` (an absolute path), written to ``file`` (relative to the sweep directory), and
    with ``compression`` (``generate``'s), and the DUT command run on it (``check_dut``, killed
    after ``check_timeout`` seconds).  ``key`` is the SHA-256 of everything that decides the job's
    outcome (the spec's and its arrays' bytes, the settings, the seed, the record, the
    compression, the DUT command, refmodel's version)."""

    spec: str
    settings: tuple
    seed: int
    file: str
    record: object
    compression: str
    check_cmd: str | None
    check_timeout: float | None
    key: str

    @property
    def name(self) -> str:
        return self.file[:-len(".h5")]


# --------------------------------------------------------------------------- planning
def parse_seeds(text: str) -> list:
    """``A:B`` (the seeds A..B-1) or ``S1,S2,...``, each in 0..SEED_MAX, none twice."""
    try:
        if ":" in text:
            lo, hi = (int(part) for part in text.split(":"))
            seeds = list(range(lo, hi))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise SpecError("--seeds", "seeds", text, "must be A:B (seeds A..B-1) or a list S1,S2,...") from None
    if not seeds or len(set(seeds)) != len(seeds) or not all(0 <= s <= SEED_MAX for s in seeds):
        raise SpecError("--seeds", "seeds", text, f"must give at least one seed, each in 0..{SEED_MAX} and once")
    return seeds


def _split_values(text: str) -> list:
    """``text`` split at the commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [part.strip() for part in parts + [text[start:]]]


def parse_vary(texts) -> list:
    """The variants of ``--vary FIELD=V1,V2,...`` options: the cross product of their values,
    each a tuple of (field, value); one empty variant without any."""
    from refmodel.spec import parse_setting

    axes = []
    for text in texts:
        field, _, values = text.partition("=")
        choices = [parse_setting(f"{field}={value}", "--vary") for value in _split_values(values)] if values else []
        if not choices or not all(choices) or field.strip() in (axis[0][0] for axis in axes):
            raise SpecError("--vary", "vary", text, "must be FIELD=V1,V2,... with a field varied once")
        axes.append(choices)
    return [tuple(variant) for variant in itertools.product(*axes)]


def variant_name(settings) -> str:
    """A directory name for a variant: ``if1.threshold=8000+conv1.overflow=WRAP`` (characters
    other than letters, digits and ``._=,+-`` become ``_``), ``base`` without settings."""
    from refmodel.spec import _toml

    text = "+".join(f"{field}={value if isinstance(value, str) else _toml(value).replace(' ', '')}"
                    for field, value in settings)
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:200] or "base"


def _file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan(spec_path, seeds, variants, *, record="all", compression="fast", check_cmd=None, check_timeout=None) -> list:
    """The jobs of a sweep, variants × seeds in that order; every variant is loaded and its
    run checked (``generate.prepared``) first, so a bad variant is refused, naming its field
    and value, before anything runs."""
    from refmodel import __version__
    from refmodel.generate import prepared
    from refmodel.spec import load_spec

    spec_path = Path(spec_path).resolve()
    base = load_spec(spec_path)
    sources = _file_sha256(spec_path)
    if getattr(base.arrays, "path", None) is not None:  # the .npz of the spec's arrays
        sources += _file_sha256(base.arrays.path)
    names = [variant_name(settings) for settings in variants]
    if len(set(names)) != len(names):
        raise SpecError("--vary", "vary", names, "gives two variants the same name")
    jobs = []
    for settings, name in zip(variants, names):
        prepared(load_spec(spec_path, settings), seed=seeds[0], record=record)  # a seed changes no size
        for seed in seeds:
            identity = json.dumps([sources, settings, seed, record, compression, check_cmd, __version__])
            jobs.append(Job(str(spec_path), settings, seed, f"{name}/seed{seed}.h5", record, compression, check_cmd,
                            check_timeout, hashlib.sha256(identity.encode()).hexdigest()))
    return jobs


# --------------------------------------------------------------------------- one job (on a worker)
def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-TAIL_LINES:])


def _run_command(text: str, timeout: float | None) -> tuple:
    """(exit status, its output) of the shell command ``text``; on ``timeout`` (seconds) its
    whole process group is killed and the status is None."""
    with subprocess.Popen(text, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return None, output
    return process.returncode, output


def check_dut(command: str, vectors: Path, timeout: float | None = None) -> dict:
    """Run the DUT command on the vector file ``vectors`` and judge it: {"result": "pass" |
    "mismatch" | "dut_error", ...}.  ``{vectors}`` in the command becomes the file's path and
    ``{out}`` the path of the vector file the DUT must write, which ``compare_files`` then
    holds against the golden file (kept beside it unless equal).  Without ``{out}`` the command
    checks itself, as ``refmodel check`` does: exit status 0 equal, 1 a mismatch (its last
    output line reported), anything else a DUT error.  A command still running after
    ``timeout`` seconds is killed (with its children) and is a DUT error."""
    from refmodel.vectors import VectorFileError, compare_files

    out = vectors.with_suffix(".dut.h5")
    text = command.replace("{vectors}", shlex.quote(str(vectors))).replace("{out}", shlex.quote(str(out)))
    with contextlib.suppress(FileNotFoundError):
        out.unlink()  # never judge a file of an earlier run
    status, output = _run_command(text, timeout)
    output = _tail(output)
    if status is None:
        return {"result": "dut_error", "status": None, "tail": f"killed after {timeout} s\n{output}".strip()}
    if "{out}" not in command:
        if status == 0:
            return {"result": "pass"}
        if status == 1:
            return {"result": "mismatch", "first_mismatch": output.splitlines()[-1] if output else ""}
        return {"result": "dut_error", "status": status, "tail": output}
    if status != 0:
        return {"result": "dut_error", "status": status, "tail": output}
    if not out.is_file():
        return {"result": "dut_error", "status": 0, "tail": f"the DUT command wrote no {out.name}\n{output}".strip()}
    try:
        comparison = compare_files(vectors, out)
    except (VectorFileError, OSError) as err:
        return {"result": "dut_error", "status": 0, "tail": f"its output {out.name} cannot be read: {err}"}
    if comparison.equal:
        out.unlink()
        return {"result": "pass"}
    first = comparison.first
    return {"result": "mismatch", "first_mismatch": str(first), "dut_file": out.name}


def run_job(job: Job, directory: str) -> dict:
    """Generate the job's file in ``directory`` (and check the DUT on it): its manifest entry.
    Never raises for a bad job: a refmodel error (or any exception) is the entry's result."""
    from refmodel.generate import generate
    from refmodel.spec import load_spec

    start = time.perf_counter()
    entry = {"job": job.name, "variant": dict(job.settings), "seed": job.seed, "file": job.file, "key": job.key}
    path = Path(directory) / job.file
    try:
        spec = load_spec(job.spec, job.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = generate(spec, path, seed=job.seed, record=job.record, compression=job.compression)
        coverage = result.coverage
        entry |= {
            "sha256": _file_sha256(path),
            "spike_rates": {name: round(result.spike_rate(name), 6) for name in result.spike_counts},
            "overflows": {layer.name: int(result.overflows[:, i].sum()) for i, layer in enumerate(spec.network.layers)},
            "coverage": {"percent": round(coverage.percent(), 2), "reachable": len(coverage.reachable()),
                         "holes": [f"{layer}.{name}" for layer, name in coverage.holes()]},
            "result": "generated",
        }  # fmt: skip
        if job.check_cmd:
            entry["check"] = check_dut(job.check_cmd, path, job.check_timeout)
            entry["result"] = entry["check"]["result"]
    except Exception as err:  # noqa: BLE001 - any failure of one job is that job's result, not the sweep's
        entry |= {"result": "refmodel_error", "error": f"{type(err).__name__}: {err}"}
    entry |= {"wall_s": round(time.perf_counter() - start, 4), "worker": _worker_name()}
    return entry


# --------------------------------------------------------------------------- the manifest
def read_manifest(directory) -> dict:
    """{job name: its last entry} of ``directory``'s manifest (a later line supersedes an
    earlier one of the same job; a line cut short by an interrupted client is ignored)."""
    entries = {}
    path = Path(directory) / MANIFEST
    if not path.exists():
        return entries
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "job" in entry:
                entries[entry["job"]] = entry
    return entries


def is_done(job: Job, entry: dict | None, directory: Path, rerun_failed: bool) -> bool:
    """Whether a rerun skips ``job``: its last entry is of the same job key and either failed
    (unless ``rerun_failed``) or names a file that exists with the recorded SHA-256."""
    if entry is None or entry.get("key") != job.key:
        return False
    if entry.get("result") in FAILED:
        return not rerun_failed
    path = directory / job.file
    return path.is_file() and _file_sha256(path) == entry.get("sha256")


# --------------------------------------------------------------------------- running on Dask
#: The environment of a local worker, set before it imports numba: one Numba thread, and an
#: OpenMP runtime that sleeps instead of spinning between parallel regions (measured, two
#: workers on two cores: 0.09 s per job instead of 0.3-0.4 s, docs/sweep.md).
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None):
    """A ``distributed.Client``: of the cluster at ``scheduler``, else of a LocalCluster of
    ``workers`` processes (default: this machine's cores), one thread and one Numba thread each
    (``WORKER_ENV`` is in each worker's environment before it imports numba; jobs run in
    parallel across workers instead of threads within one).  A job whose worker dies is
    retried once (the scheduler's ``allowed-failures``), then reported as lost."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    workers = workers or os.cpu_count() or 1
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                         env=WORKER_ENV, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


def pending(jobs, directory, rerun_failed=False) -> list:
    """The jobs of ``jobs`` that a run of the sweep in ``directory`` must do (``is_done``)."""
    directory = Path(directory).resolve()
    previous = read_manifest(directory)
    return [job for job in jobs if not is_done(job, previous.get(job.name), directory, rerun_failed)]


def run_sweep(jobs, directory, client, on_entry=None) -> list:
    """Run ``jobs`` on the Dask ``client``, appending each finished job's entry to the manifest
    as it arrives (``on_entry(entry)`` after each); returns the entries.  A job whose worker
    was lost for good is recorded as "lost"."""
    from distributed import as_completed

    directory = Path(directory).resolve()
    futures = {client.submit(run_job, job, str(directory), pure=False): job for job in jobs}
    entries = []
    with open(directory / MANIFEST, "a", encoding="utf-8") as manifest:
        for future in as_completed(futures):
            job = futures[future]
            try:
                entry = future.result()
            except Exception as err:  # noqa: BLE001 - a lost worker (KilledWorker) or a lost connection
                entry = {"job": job.name, "variant": dict(job.settings), "seed": job.seed, "file": job.file,
                         "key": job.key, "result": "lost", "error": f"{type(err).__name__}: {err}"}
            manifest.write(json.dumps(entry, sort_keys=True) + "\n")
            manifest.flush()
            entries.append(entry)
            if on_entry is not None:
                on_entry(entry)
    return entries
