"""What compiling costs the main job: ``refmodel gen`` of each golden recipe in a fresh
process with an empty numba cache (``NUMBA_CACHE_DIR``: every kernel path it needs is
compiled), then again in a second fresh process with that cache (every kernel loaded).

Each wall time is the whole command: interpreter start, imports, compiling or loading the
kernels, the run and the file; the process's CPU time is given too (the machine is shared).
Both files are checked byte-identical.  ``--top N`` lists the N functions whose compiling
took longest in the first process (CPU seconds of numba's "numba:compile" events, each
without the functions it compiled in turn) and how often each was compiled.

    python benchmarks/bench_compile.py [RECIPE ...] [--top N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_network import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "vectors" / "recipes").glob("*.toml"))

# Run in the measured process: refmodel's command line, with a listener that charges each
# compile's CPU time to its function, less the time of the compiles nested in it.
_PROFILED = """
import collections, json, sys, time
from numba.core import event
seconds, counts, stack = collections.defaultdict(float), collections.Counter(), []
class Charge(event.Listener):
    def on_start(self, ev):
        d = ev.data.get("dispatcher")
        stack.append([d.py_func.__qualname__ if d else str(ev.kind), time.process_time(), 0.0])
    def on_end(self, ev):
        name, start, nested = stack.pop()
        spent = time.process_time() - start
        seconds[name] += spent - nested
        counts[name] += 1
        if stack:
            stack[-1][2] += spent
event.register("numba:compile", Charge())
from refmodel.cli import main
try:
    main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as f:
        json.dump({name: (seconds[name], counts[name]) for name in seconds}, f)
"""


def gen(recipe: Path, cache: str, out: Path, profile: Path | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of ``refmodel gen RECIPE`` in a new process with numba's cache in
    ``cache``; with ``profile``, the compile times per function are written there (JSON)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
    command = ["-c", _PROFILED, str(profile)] if profile else ["-m", "refmodel.cli"]
    before = os.times()
    start = time.perf_counter()
    subprocess.run([sys.executable, *command, "gen", str(recipe), "--out", str(out)], check=True,
                   capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipes", nargs="*", type=Path, default=RECIPES)
    ap.add_argument("--top", type=int, default=0, help="list the N functions that took longest to compile")
    args = ap.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'recipe':20} {'compiling s':>12} {'(CPU s)':>8} {'from the cache s':>17} {'(CPU s)':>8}")
    for recipe in args.recipes:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as tmp:
            profile = Path(tmp) / "compile.json" if args.top else None
            first = gen(recipe, cache, Path(tmp) / "a.h5", profile)
            second = gen(recipe, cache, Path(tmp) / "b.h5")
            assert (Path(tmp) / "a.h5").read_bytes() == (Path(tmp) / "b.h5").read_bytes()
            print(f"{recipe.stem:20} {first[0]:12.1f} {first[1]:8.1f} {second[0]:17.2f} {second[1]:8.2f}")
            if profile:
                compiled = sorted(json.loads(profile.read_text()).items(), key=lambda item: -item[1][0])
                for name, (seconds, count) in compiled[:args.top]:
                    print(f"    {seconds:6.2f} s CPU  {count:2d}x  {name}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
