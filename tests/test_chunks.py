"""refmodel.vectors.chunks: refmodel's own shuffle + deflate is what HDF5 reads (and, with zlib,
what HDF5 itself stores), and files stay deterministic."""

import hashlib

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refmodel.vectors.chunks import COMPRESSIONS, ChunkWriter, compression, filter_chunk
from refmodel.vectors.schema import VectorFileError

DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64)


def _libraries():
    """The deflate libraries to test: zlib, and libdeflate (skipped, saying so, when absent)."""
    try:
        import deflate  # noqa: F401

        found = []
    except ImportError:
        found = [pytest.mark.skip(reason="the deflate package (libdeflate) is not installed")]
    return ["zlib", pytest.param("libdeflate", marks=found)]


def _dataset(f, name, shape, dtype, steps, how=None):
    how = how or compression("fast", "zlib")
    return f.create_dataset(name, shape=(steps, *shape), dtype=dtype, chunks=(1, *shape), shuffle=how.filtered,
                            compression="gzip" if how.filtered else None,
                            compression_opts=how.level if how.filtered else None, track_times=False)  # fmt: skip


def _chunk(dtype, shape, seed):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max, (1, *shape), dtype=dtype, endpoint=True)


@pytest.mark.parametrize("choice", ["fast", "small"])
@given(st.sampled_from(DTYPES), st.lists(st.integers(1, 7), min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_zlib_chunk_is_what_hdf5_stores(tmp_path_factory, choice, dtype, shape, seed):
    x, how = _chunk(dtype, shape, seed), compression(choice, "zlib")
    with h5py.File(tmp_path_factory.mktemp("c") / "h.h5", "w") as f:
        d = _dataset(f, "x", shape, dtype, 1, how)
        d[0] = x[0]  # through HDF5's own filters
        assert d.id.read_direct_chunk((0,) * (len(shape) + 1)) == (0, filter_chunk(x, how))


@pytest.mark.parametrize("library", _libraries())
@pytest.mark.parametrize("choice", COMPRESSIONS)
@given(st.sampled_from(DTYPES), st.lists(st.integers(1, 7), min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_every_chunk_reads_back_through_hdf5(tmp_path_factory, choice, library, dtype, shape, seed):
    x, how = _chunk(dtype, shape, seed), compression(choice, library)
    with h5py.File(tmp_path_factory.mktemp("c") / "h.h5", "w") as f:
        d = _dataset(f, "x", shape, dtype, 1, how)
        d.id.write_direct_chunk((0,) * (len(shape) + 1), filter_chunk(x, how), filter_mask=0)
        np.testing.assert_array_equal(d[()], x)  # HDF5's own unshuffle + inflate (Adler-32 checked)
        assert filter_chunk(x, how) == filter_chunk(x.copy(), how)


@pytest.mark.parametrize("library", _libraries())
def test_deflate_stream_does_not_depend_on_threads(library):
    """The same chunks deflated in one thread and in four at once give the same bytes."""
    from concurrent.futures import ThreadPoolExecutor

    how = compression("fast", library)
    rng = np.random.default_rng(5)
    chunks = [rng.integers(0, 2 ** (4 * i % 17 + 1), (64, 32, 8), np.int32) for i in range(16)]
    alone = [filter_chunk(c, how) for c in chunks]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(filter_chunk, chunks, [how] * len(chunks))) == alone


def test_compression_is_described_and_checked():
    assert compression("none").describe() == "none: no filter"
    assert compression("fast", "zlib").describe().startswith("fast: shuffle + deflate level 1, zlib (zlib ")
    with pytest.raises(VectorFileError, match="compression 'tiny' is not one of fast, small, none"):
        compression("tiny")


@pytest.mark.parametrize("threads", [1, 2])
def test_chunks_read_back_and_bytes_do_not_depend_on_threads(tmp_path, threads):
    rng = np.random.default_rng(3)
    data = {"a": rng.integers(-(2**20), 2**20, (5, 4, 6, 6)).astype(np.int32), "b": rng.integers(0, 2, (5, 33), np.uint8)}
    digests = []
    for run in range(2):
        path = tmp_path / f"{threads}_{run}.h5"
        writer = ChunkWriter(compression("fast", "zlib"), threads=threads if run else 3 - threads, max_pending=1000)
        with h5py.File(path, "w") as f:
            dsets = {k: _dataset(f, k, v.shape[1:], v.dtype, v.shape[0]) for k, v in data.items()}
            for t in range(5):
                for k, v in data.items():
                    writer.submit(dsets[k], (t,) + (0,) * (v.ndim - 1), v[t : t + 1].copy())
            writer.close()
        with h5py.File(path, "r") as f:
            for k, v in data.items():
                np.testing.assert_array_equal(f[k][...], v)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_submit_refuses_a_chunk_of_another_shape_or_dtype(tmp_path):
    writer = ChunkWriter(compression("fast"), threads=1)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        d = _dataset(f, "x", (3,), np.int16, 2)
        with pytest.raises(ValueError, match=r"/x: chunk int32 \(1, 3\) is not int16 \(1, 3\)"):
            writer.submit(d, (0, 0), np.zeros((1, 3), np.int32))
        with pytest.raises(ValueError, match=r"chunk int16 \(3,\) is not"):
            writer.submit(d, (0, 0), np.zeros(3, np.int16))
    writer.close()
