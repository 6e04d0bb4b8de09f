"""What the content digests of vector format 2 cost, beside what writing and reading cost.

One vgg vector file of ``bench_network`` (batch 16, record="all") is written; then, in this
process and one thread, over the very arrays the file stores (each trace and the parameters,
in their storage dtypes, a timestep at a time as the writer hands them on):

* ``sha256``: the content digests (``values_digest``, as the writer computes them);
* ``deflate``: the shuffle + deflate filter of the same chunks (``filter_chunk``, under the
  default compression ``fast``);
* ``generate``: the whole main job, ``generate(record="all")``, wall time;
* ``verify``: ``VectorFile(path).verify()``, which reads every chunk and checks every digest.

    python benchmarks/bench_digest.py [--timesteps 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py

from bench_network import BATCH, machine, stimulus, vgg
from refmodel.generate import generate
from refmodel.spec import Spec, StimulusSpec
from refmodel.vectors import VectorFile
from refmodel.vectors.chunks import compression, filter_chunk
from refmodel.vectors.schema import values_digest


def stored_chunks(path):
    """Every dataset of the file as the writer hands it over: traces a timestep at a time."""
    chunks = []
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.size:
                data = obj[()]
                chunks.extend(data if name.startswith("traces/") else [data])

        f.visititems(visit)
    return chunks


def cpu(f, items):
    t = time.process_time()
    for item in items:
        f(item)
    return time.process_time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timesteps", type=int, default=4)
    args = ap.parse_args()
    network, x = vgg(), stimulus()
    spec = Spec(network, StimulusSpec(source="x", batch=BATCH, timesteps=args.timesteps, seed=0), {"x": x})
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "vgg.h5"
        generate(spec, path, record="all")  # warms the kernels
        t = time.perf_counter()
        generate(spec, path, record="all")
        gen = time.perf_counter() - t
        t = time.perf_counter()
        VectorFile(path).verify()
        verify = time.perf_counter() - t
        chunks = stored_chunks(path)
        size = path.stat().st_size
    nbytes = sum(c.nbytes for c in chunks)
    how = compression("fast")
    sha, deflate = cpu(values_digest, chunks), cpu(lambda chunk: filter_chunk(chunk, how), chunks)
    print(f"machine: {machine()}; compression {how.describe()}")
    print(f"vgg, batch {BATCH}, T = {args.timesteps}, record='all': {len(chunks)} chunks, "
          f"{nbytes / 1e6:.1f} MB of values, file {size / 1e6:.1f} MB")  # fmt: skip
    print(f"sha256 of every value:   {sha:6.3f} s CPU ({nbytes / sha / 1e9:.2f} GB/s)")
    print(f"deflate of every chunk:  {deflate:6.3f} s CPU ({nbytes / deflate / 1e9:.2f} GB/s); sha256 = {sha / deflate:.1%} of it")
    print(f"generate (wall):         {gen:6.3f} s; sha256 = {sha / gen:.1%} of it (CPU over wall, an upper bound)")
    print(f"verify (wall):           {verify:6.3f} s; sha256 = {sha / verify:.1%} of it")


if __name__ == "__main__":
    main()
