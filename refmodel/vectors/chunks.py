"""Compressed HDF5 chunks, filtered by refmodel in worker threads and written in order.

Every non-empty dataset of a vector file declares HDF5's standard ``shuffle`` and ``deflate``
(level 1) filters, which every HDF5 reader (h5py, h5dump, MATLAB, ...) undoes.  h5py would apply
them in the writing thread, one chunk after the other.  ``ChunkWriter`` applies the same two
filters itself:

* shuffle: the chunk's bytes regrouped by byte position, ``out[j·n + i] = in[i·s + j]`` for n
  elements of s bytes (nothing for 1-byte elements);
* deflate: a zlib stream at level 1 (zlib, not a faster deflate such as ISA-L's igzip, whose
  output for the same chunk was seen to vary from run to run: files must not);

in a pool of threads (zlib runs without the GIL, beside the simulation), and hands the results
to HDF5 with ``write_direct_chunk`` in the order they were submitted, so that a file's bytes
depend only on what was written, never on thread timing.  The zlib stream carries an Adler-32
checksum of the chunk, which the reader's inflate verifies.  A chunk submitted with
``digest=True`` is also hashed in the worker (``values_digest``): the writer's content digest
of a stepped dataset is made of these.
"""

from __future__ import annotations

import collections
import itertools
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from refmodel.vectors.schema import GZIP_LEVEL, values_digest

__all__ = ["filter_chunk", "ChunkWriter"]


def filter_chunk(chunk: np.ndarray) -> bytes:
    """The bytes HDF5 stores for ``chunk`` under the shuffle + deflate pipeline."""
    data = np.ascontiguousarray(chunk)
    if data.itemsize > 1:
        data = data.view(np.uint8).reshape(-1, data.itemsize).T
    return zlib.compress(np.ascontiguousarray(data).data, GZIP_LEVEL)


def _filter_and_hash(chunk: np.ndarray, digest: bool):
    return filter_chunk(chunk), values_digest(chunk) if digest else None


class ChunkWriter:
    """Filters chunks in ``threads`` worker threads and writes them in submission order.

    At most ``max_pending`` bytes of unwritten chunks are held: ``submit`` waits for the oldest
    before it takes more.  ``flush`` writes everything pending; ``close`` also stops the threads.
    ``digests`` maps ``(dataset name, offset)`` to the ``values_digest`` of each written chunk
    that was submitted with ``digest=True``.
    """

    def __init__(self, threads: int = 2, max_pending: int = 256 << 20):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refmodel-chunks")
        self._pending = collections.deque()  # (dataset, offset, nbytes, future), oldest first
        self._pending_bytes = 0
        self._max_pending = max_pending
        self.digests = {}

    def submit(self, dset, offset: tuple, chunk: np.ndarray, digest: bool = False) -> None:
        """Queue ``chunk`` (the dataset's dtype and chunk shape, owned by the writer from now on)
        for the chunk of ``dset`` that starts at ``offset`` (``digest``: hash it too)."""
        if chunk.dtype != dset.dtype or chunk.shape != dset.chunks:
            raise ValueError(f"{dset.name}: chunk {chunk.dtype} {chunk.shape} is not {dset.dtype} {dset.chunks}")
        self._pending.append((dset, offset, chunk.nbytes, self._pool.submit(_filter_and_hash, chunk, digest)))
        self._pending_bytes += chunk.nbytes
        self._write_done(wait=self._pending_bytes > self._max_pending)

    def submit_array(self, dset, data: np.ndarray) -> None:
        """Queue the whole of ``dset`` (``data``, of its shape and dtype, owned by the writer from
        now on), chunk by chunk; an edge
        chunk is padded with zeros (the fill value) to the full chunk shape, as HDF5 stores it."""
        if data.shape != dset.shape:
            raise ValueError(f"{dset.name}: data of shape {data.shape} is not the dataset's {dset.shape}")
        grid = [range(0, n, c) for n, c in zip(dset.shape, dset.chunks)]
        for offset in itertools.product(*grid):
            part = data[tuple(slice(o, o + c) for o, c in zip(offset, dset.chunks))]
            if part.shape != dset.chunks:
                full = np.zeros(dset.chunks, data.dtype)
                full[tuple(slice(0, n) for n in part.shape)] = part
                part = full
            self.submit(dset, offset, np.ascontiguousarray(part))

    def _write_done(self, wait: bool) -> None:
        """Write the finished chunks at the head of the queue (waiting for the oldest if ``wait``)."""
        while self._pending and (wait or self._pending[0][3].done()):
            dset, offset, nbytes, future = self._pending.popleft()
            data, digest = future.result()
            dset.id.write_direct_chunk(offset, data, filter_mask=0)
            if digest is not None:
                self.digests[(dset.name, offset)] = digest
            self._pending_bytes -= nbytes
            wait = wait and self._pending_bytes > self._max_pending

    def flush(self) -> None:
        """Write every pending chunk."""
        while self._pending:
            self._write_done(wait=True)

    def close(self, discard: bool = False) -> None:
        """Write (or, with ``discard``, drop) what is pending and stop the threads."""
        if discard:
            self._pending.clear()
            self._pending_bytes = 0
        else:
            self.flush()
        self._pool.shutdown(wait=True, cancel_futures=discard)
