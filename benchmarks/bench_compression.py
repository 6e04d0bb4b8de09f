"""Speed and size of the deflate choices for vector-file chunks, on the chunks of the network benchmark.

Data (``bench_network``'s networks, batch 16): the chunks of one vgg timestep recorded with
``record="all"`` (every trace, 38 chunks, 48.8 MB in their storage dtypes), the spike traces
among them, and dtscnn's parameters (random 8-bit weights, 6.4 M), each shuffled as HDF5's
shuffle filter does.  Per library and level, in interleaved rounds: the CPU time of the calling
thread to deflate every chunk (median over rounds; ``time.thread_time``, so less sensitive to
other processes than wall time) and the compressed size over the raw size.  Libraries: the
standard library's zlib, libdeflate (the ``deflate`` package) and, when installed, zlib-ng
(``zlib-ng``, for comparison only: refmodel does not use it).

    python benchmarks/bench_compression.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_network import NETWORKS, machine, stimulus  # noqa: E402
from refmodel.spec import StimulusSpec  # noqa: E402
from refmodel.vectors.chunks import _shuffled  # noqa: E402
from refmodel.vectors.layout import run_layout  # noqa: E402
from refmodel.vectors.schema import as_codes  # noqa: E402

LEVELS = {"zlib": (1, 2, 4, 6), "libdeflate": (1, 2, 3, 4, 6, 9), "zlib-ng": (1, 2, 4, 6)}


def libraries() -> dict:
    """{name: (version, compress(data, level))} of the deflate libraries installed."""
    found = {"zlib": (zlib.ZLIB_RUNTIME_VERSION, zlib.compress)}
    try:
        import deflate

        found["libdeflate"] = (f"deflate {deflate.__version__}", deflate.zlib_compress)
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        found["zlib-ng"] = (zlib_ng.ZLIBNG_VERSION, zlib_ng.compress)
    except ImportError:
        pass
    return found


def datasets() -> dict:
    """{name: [shuffled chunk bytes]}: one vgg timestep's traces, its spikes, dtscnn's parameters."""
    build, _ = NETWORKS["vgg"]
    network, x = build(), stimulus()
    record = network.resolve_record("all")
    layout = run_layout(network, StimulusSpec(source="x", batch=x.shape[0], timesteps=2, seed=0), record)
    step = {}

    def sink(layer, signal, t, value):
        if t == 1:
            step[(layer, signal)] = _shuffled(as_codes(value, layout.traces[(layer, signal)].fmt, signal)).tobytes()

    network.run(x, 2, record=record, sink=sink)
    build, _ = NETWORKS["dtscnn"]
    dtscnn = build()
    params = run_layout(dtscnn, StimulusSpec(source="x", batch=x.shape[0], timesteps=1, seed=0), []).layers
    return {
        "vgg traces, one timestep": list(step.values()),
        "vgg spikes, one timestep": [b for (_, signal), b in step.items() if signal == "spikes"],
        "dtscnn parameters": [_shuffled(as_codes(p.values, p.fmt, "p")).tobytes()
                              for group in params for p in group.params.values() if p.values.size > 1],
    }  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    found, data = libraries(), datasets()
    load0 = os.getloadavg()[0]
    cases = [(lib, level) for lib in found for level in LEVELS[lib]]
    seconds = {(name, case): [] for name in data for case in cases}
    sizes = {}
    for _ in range(args.rounds):
        for name, chunks in data.items():
            for lib, level in cases:
                compress = found[lib][1]
                start = time.thread_time()
                out = [compress(chunk, level) for chunk in chunks]
                seconds[(name, (lib, level))].append(time.thread_time() - start)
                sizes[(name, (lib, level))] = sum(map(len, out))
    versions = ", ".join(f"{lib} {version}" for lib, (version, _) in found.items())
    print(f"Machine: {machine()}; {versions}; load average before/after: {load0:.1f}/{os.getloadavg()[0]:.1f}; "
          f"median of {args.rounds} interleaved rounds, CPU time of one thread.\n")
    for name, chunks in data.items():
        raw = sum(map(len, chunks))
        print(f"**{name}** ({len(chunks)} chunks, {raw / 1e6:.1f} MB):\n")
        print("| library | level | CPU ms | MB/s (CPU) | size / raw |\n|---|---:|---:|---:|---:|")
        for lib, level in cases:
            t = statistics.median(seconds[(name, (lib, level))])
            print(f"| {lib} | {level} | {t * 1e3:.1f} | {raw / t / 1e6:.0f} | {sizes[(name, (lib, level))] / raw:.3f} |")
        print()


if __name__ == "__main__":
    main()
