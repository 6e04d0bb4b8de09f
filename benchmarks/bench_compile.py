"""What compiling costs the main job: ``refmodel gen`` of each golden recipe in a fresh
process with an empty numba cache (``NUMBA_CACHE_DIR``: every kernel path it needs is
compiled), then again in a second fresh process with that cache (every kernel loaded).

Each wall time is the whole command: interpreter start, imports, compiling or loading the
kernels, the run and the file.  Both files are checked byte-identical.

    python benchmarks/bench_compile.py [RECIPE ...]
"""

from __future__ import annotations

import argparse
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


def gen(recipe: Path, cache: str, out: Path) -> float:
    """Wall seconds of ``refmodel gen RECIPE`` in a new process with numba's cache in ``cache``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refmodel.cli", "gen", str(recipe), "--out", str(out)], check=True,
                   capture_output=True, env=env)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipes", nargs="*", type=Path, default=RECIPES)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"{'recipe':20} {'compiling s':>12} {'from the cache s':>17}")
    for recipe in args.recipes:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as tmp:
            first = gen(recipe, cache, Path(tmp) / "a.h5")
            second = gen(recipe, cache, Path(tmp) / "b.h5")
            assert (Path(tmp) / "a.h5").read_bytes() == (Path(tmp) / "b.h5").read_bytes()
        print(f"{recipe.stem:20} {first:12.1f} {second:17.2f}")


if __name__ == "__main__":
    main()
