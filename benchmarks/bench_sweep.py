"""What a Dask sweep gains over running the same jobs serially: ``refmodel sweep`` with
``--workers W`` against the same jobs (a) in one process, one after the other (``run_job``,
what a sweep's worker runs: ``generate`` and the file's SHA-256), with numba's default threads
and with one, and (b) as one ``refmodel gen --set ... --seed S`` process each, one after the
other.  The ratios are to (a) with the default threads, what ``refmodel gen`` runs with.

The jobs: the recipe ``conv_if_vmpool`` at batch 16 and 32 timesteps, seeds 0..S-1 × thresholds
8000 and 12000 (``--seeds``).  The serial runs come first, warm (numba's cache on disk, the
kernels compiled in the process by a first job not timed).  The sweep runs on new workers (with
and without the time to start the LocalCluster; each worker's first job loads the kernels from
numba's cache), then again on the same, now warm, workers: what a long sweep approaches.  Dask's
overhead per job is what the warm workers' wall time exceeds the jobs' own:
(W × sweep wall − Σ job wall) / jobs.

    python benchmarks/bench_sweep.py [--seeds 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numba  # noqa: E402
from bench_network import machine  # noqa: E402

from refmodel import sweep  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "vectors" / "recipes" / "conv_if_vmpool.toml"
FIXED = ["stimulus.batch=16", "stimulus.timesteps=32"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    jobs = sweep.plan(RECIPE, range(args.seeds), sweep.parse_vary(["if1.threshold=8000,12000", *FIXED]))
    print(f"machine: {machine()}")
    print(f"{len(jobs)} jobs: {RECIPE.name} with {', '.join(FIXED)}, seeds 0..{args.seeds - 1} x 2 thresholds")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sweep.run_job(jobs[0], str(tmp / "warm"))  # compiles (or loads) every kernel in this process
        start, cpu = time.perf_counter(), time.process_time()
        in_process = [sweep.run_job(job, str(tmp / "serial")) for job in jobs]
        serial, serial_cpu = time.perf_counter() - start, time.process_time() - cpu
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        start = time.perf_counter()
        in_process += [sweep.run_job(job, str(tmp / "serial1")) for job in jobs]
        serial1 = time.perf_counter() - start
        numba.set_num_threads(threads)
        assert {e["result"] for e in in_process} == {"generated"}, in_process[0]
        start = time.perf_counter()
        for job in jobs:
            sets = [arg for field, value in job.settings for arg in ("--set", f"{field}={value}")]
            out = tmp / "processes" / job.file
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "refmodel.cli", "gen", str(RECIPE), *sets, "--seed", str(job.seed),
                            "--out", str(out)], check=True, capture_output=True)
        processes = time.perf_counter() - start
        start = time.perf_counter()
        with sweep.dask_client(args.workers) as client:
            client.wait_for_workers(args.workers)
            (tmp / "sweep").mkdir()
            started = time.perf_counter()
            entries = sweep.run_sweep(jobs, tmp / "sweep", client)
            swept = time.perf_counter() - started
            total = time.perf_counter() - start
            (tmp / "again").mkdir()
            started = time.perf_counter()
            again = sweep.run_sweep(jobs, tmp / "again", client)  # the same jobs on workers that ran jobs
            warm = time.perf_counter() - started
        assert {e["result"] for e in entries + again} == {"generated"}
        for job in jobs:  # the same bytes all three ways
            same = {(tmp / way / job.file).read_bytes() for way in ("serial", "serial1", "processes", "sweep")}
            assert len(same) == 1, job.name
    work = sum(e["wall_s"] for e in again)
    print(f"{'way':44} {'wall s':>7} {'jobs/s':>7} {'vs serial':>9}")
    for way, wall in ((f"serial, one process, {threads} numba threads", serial),
                      ("serial, one process, 1 numba thread", serial1),
                      ("serial, a refmodel gen process per job", processes),
                      (f"sweep, {args.workers} new workers, with starting them", total),
                      (f"sweep, {args.workers} new workers (started)", swept),
                      (f"sweep, {args.workers} warm workers", warm)):
        print(f"{way:44} {wall:7.2f} {len(jobs) / wall:7.2f} {serial / wall:8.2f}x")
    first = {e["worker"]: e for e in reversed(entries)}  # the first job each new worker ran
    loading = ", ".join(f"{e['wall_s']:.2f}" for e in first.values())
    print(f"the serial process used {serial_cpu / serial:.2f} cores (CPU time / wall time: numba's and the "
          "compression threads)")
    print(f"mean job wall time: serial {1000 * serial / len(jobs):.0f} ms, on a warm worker "
          f"{1000 * work / len(jobs):.0f} ms; a new worker's first job (loading the kernels): "
          f"{loading} s; Dask overhead per job (warm): "
          f"{1000 * (args.workers * warm - work) / len(jobs):.1f} ms")


if __name__ == "__main__":
    main()
