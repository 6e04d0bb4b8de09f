"""Compressed HDF5 chunks, filtered by refmodel in worker threads and written in a fixed order.

A vector file stores its chunks under one of three **compressions** (docs/vectors.md §5):

* ``fast`` (the default) and ``small``: HDF5's standard ``shuffle`` and ``deflate`` filters,
  which every HDF5 reader (h5py, h5dump, MATLAB, ...) undoes.  Shuffle regroups a chunk's bytes
  by byte position, ``out[j·n + i] = in[i·s + j]`` for n elements of s bytes (nothing for 1-byte
  elements); deflate is a zlib stream, made by libdeflate (the optional ``deflate`` package,
  ``pip install refmodel[fast]``) or, when that is not installed, by the standard library's
  zlib, at the level of ``LEVELS``.
* ``none``: no filter; a chunk is its values' bytes.

h5py would apply the filters in the writing thread, one chunk after the other.
``ChunkWriter`` applies them itself in a pool of threads (both deflate libraries run without
the GIL, beside the simulation) and hands the results to HDF5 with ``write_direct_chunk`` in
the order they were submitted, at points that depend only on what was submitted (never on
thread timing), so that a file's bytes depend only on what was written and on the
compressor, which the file names (``Compression.describe``).  Each deflate stream depends only
on the chunk, the library's version and the level: neither libdeflate nor zlib has
CPU-dependent or timing-dependent output (ISA-L's igzip was seen to vary from run to run, and
zlib-ng's CPU-dispatched match finders are not promised to agree: neither is used).  The zlib
stream carries an Adler-32 checksum of the chunk, which the reader's inflate verifies.

The pool also computes the content digests (``values_digest``) of the chunks and arrays it is
asked to hash: the writer's dataset digests are made of these.
"""

from __future__ import annotations

import collections
import itertools
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from refmodel.vectors.schema import VectorFileError, values_digest

__all__ = ["COMPRESSIONS", "LEVELS", "Compression", "compression", "filter_chunk", "ChunkWriter"]

#: The compression choices, the default first.
COMPRESSIONS = ("fast", "small", "none")
#: Deflate level of each choice per library (measured: docs/performance.md, "Network simulation").
LEVELS = {"fast": {"libdeflate": 1, "zlib": 1}, "small": {"libdeflate": 6, "zlib": 6}}
#: A dataset written at once is filtered when it has at least TINY bytes and deflate makes its
#: first SAMPLE bytes smaller than SHRINK of them.
TINY, SAMPLE, SHRINK = 1 << 10, 64 << 10, 0.95


def _libdeflate():
    """``(version text, zlib_compress)`` of the ``deflate`` package, or None when not installed."""
    try:
        import deflate
    except ImportError:
        return None
    return f"deflate {deflate.__version__}", deflate.zlib_compress


@dataclass(frozen=True)
class Compression:
    """How chunks are stored: ``choice`` (one of ``COMPRESSIONS``), the deflate ``library``
    ("libdeflate", "zlib"; None for ``none``), its ``version`` and ``level``."""

    choice: str
    library: str | None = None
    version: str = ""
    level: int = 0

    @property
    def filtered(self) -> bool:
        """Whether chunks go through shuffle + deflate."""
        return self.library is not None

    def describe(self) -> str:
        """The text a file records (root attribute ``compression``), e.g. ``fast: shuffle +
        deflate level 1, libdeflate (deflate 0.9.0)``."""
        if not self.filtered:
            return f"{self.choice}: no filter"
        return f"{self.choice}: shuffle + deflate level {self.level}, {self.library} ({self.version})"

    def deflate(self, data) -> bytes:
        """The zlib stream of ``data`` at this level."""
        if self.library == "libdeflate":
            return _libdeflate()[1](data, self.level)
        return zlib.compress(data, self.level)

    def shrinks(self, values: np.ndarray) -> bool:
        """Whether shuffle + deflate make the first ``SAMPLE`` bytes of ``values`` smaller than
        ``SHRINK`` of their size: a dataset written at once that they do not shrink (random
        weights: 0.998), or of fewer than ``TINY`` bytes (a few hundred bytes to save, at
        0.1 ms per deflate call: libdeflate sets up its compressor each time), is stored
        without filter, which costs no deflating and reads as well.  It depends on the values
        only: the same values get the same storage."""
        if not self.filtered or values.nbytes < TINY:
            return False
        sample = np.ascontiguousarray(values).reshape(-1)[: max(1, SAMPLE // values.itemsize)]
        return len(self.deflate(_shuffled(sample).data)) < SHRINK * sample.nbytes


def compression(choice: str = "fast", library: str | None = None) -> Compression:
    """The ``Compression`` of ``choice``: libdeflate when the ``deflate`` package is installed,
    else zlib (``library`` forces one; libdeflate when it is not installed is an error)."""
    if choice not in COMPRESSIONS:
        raise VectorFileError(f"compression {choice!r} is not one of {', '.join(COMPRESSIONS)}")
    if choice == "none":
        return Compression("none")
    found = _libdeflate()
    library = library or ("libdeflate" if found else "zlib")
    if library == "libdeflate":
        if found is None:
            raise VectorFileError("libdeflate is not installed (pip install deflate, or refmodel[fast])")
        version = found[0]
    elif library == "zlib":
        version = f"zlib {zlib.ZLIB_RUNTIME_VERSION}"
    else:
        raise VectorFileError(f"unknown deflate library {library!r} (libdeflate or zlib)")
    return Compression(choice, library, version, LEVELS[choice][library])


def _shuffled(chunk: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(chunk)
    if data.itemsize > 1:
        data = np.ascontiguousarray(data.view(np.uint8).reshape(-1, data.itemsize).T)
    return data


def filter_chunk(chunk: np.ndarray, how: Compression) -> bytes:
    """The bytes HDF5 stores for ``chunk`` under ``how``'s filter pipeline."""
    if not how.filtered:
        return np.ascontiguousarray(chunk).tobytes()
    return how.deflate(_shuffled(chunk).data)


def _filter_and_hash(chunk: np.ndarray, how: Compression, digest: bool):
    return filter_chunk(chunk, how), values_digest(chunk) if digest else None


class ChunkWriter:
    """Filters chunks in ``threads`` worker threads and writes them in submission order.

    Chunks are written only at points that follow from the submissions alone: when more than
    ``max_pending`` bytes of submitted chunks are unwritten (then the oldest, waiting for each,
    until at most half of that is left) and at ``flush``.  ``close`` also stops the threads.
    ``digests`` maps each key submitted with a digest to its ``values_digest`` once written.
    """

    def __init__(self, how: Compression, threads: int = 2, max_pending: int = 256 << 20):
        self.how = how
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refmodel-chunks")
        self._pending = collections.deque()  # (dataset, offset, nbytes, key, future), oldest first
        self._pending_bytes = 0
        self._max_pending = max_pending
        self._shapes = {}  # dataset id -> (dtype, chunk shape): h5py asks HDF5 at each access
        self.digests = {}

    def declare(self, dset, chunks: tuple) -> None:
        """Note the chunk shape of ``dset`` (so that h5py need not ask HDF5 for it at each chunk)."""
        self._shapes[dset.id] = (dset.dtype, tuple(chunks))

    def submit(self, dset, offset: tuple, chunk: np.ndarray, key=None, how: Compression | None = None) -> None:
        """Queue ``chunk`` (the dataset's dtype and chunk shape, owned by the writer from now on)
        for the chunk of ``dset`` that starts at ``offset`` (``key``: hash it too, under that key;
        ``how``: the dataset's filters, if not the writer's)."""
        if dset.id not in self._shapes:
            self.declare(dset, dset.chunks)
        dtype, shape = self._shapes[dset.id]
        if chunk.dtype != dtype or chunk.shape != shape:
            raise ValueError(f"{dset.name}: chunk {chunk.dtype} {chunk.shape} is not {dtype} {shape}")
        future = self._pool.submit(_filter_and_hash, chunk, how or self.how, key is not None)
        self._pending.append((dset, offset, chunk.nbytes, key, future))
        self._pending_bytes += chunk.nbytes
        if self._pending_bytes > self._max_pending:
            self._write(self._max_pending // 2)

    def submit_array(self, dset, data: np.ndarray, chunks: tuple, how: Compression | None = None) -> None:
        """Queue the whole of ``dset`` (``data``, of its shape and dtype, owned by the writer from
        now on), in chunks of shape ``chunks`` (the dataset's; ``how``: as ``submit``); an edge
        chunk is padded with zeros (the fill value) to the full chunk shape, as HDF5 stores it."""
        self.declare(dset, chunks)
        grid = [range(0, n, c) for n, c in zip(data.shape, chunks)]
        for offset in itertools.product(*grid):
            part = data[tuple(slice(o, o + c) for o, c in zip(offset, chunks))]
            if part.shape != chunks:
                full = np.zeros(chunks, data.dtype)
                full[tuple(slice(0, n) for n in part.shape)] = part
                part = full
            self.submit(dset, offset, np.ascontiguousarray(part), how=how)

    def hash(self, values: np.ndarray):
        """A future of ``values_digest(values)`` (``values`` owned by the writer from now on)."""
        return self._pool.submit(values_digest, values)

    def _write(self, keep: int) -> None:
        """Write the oldest chunks, waiting for each, until at most ``keep`` bytes are pending."""
        while self._pending and self._pending_bytes > keep:
            dset, offset, nbytes, key, future = self._pending.popleft()
            data, digest = future.result()
            dset.id.write_direct_chunk(offset, data, filter_mask=0)
            if key is not None:
                self.digests[key] = digest
            self._pending_bytes -= nbytes

    def flush(self) -> None:
        """Write every pending chunk."""
        self._write(-1)

    def close(self, discard: bool = False) -> None:
        """Write (or, with ``discard``, drop) what is pending and stop the threads."""
        if discard:
            self._pending.clear()
            self._pending_bytes = 0
        else:
            self.flush()
        self._pool.shutdown(wait=True, cancel_futures=discard)
