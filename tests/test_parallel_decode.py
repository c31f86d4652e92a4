"""Parallel decoding (dcformat.parallel, the reader's plan of one job per chunk): the same arrays on
any number of threads, errors raised as a serial decoder raises them, the shared output memory of
``load_file``, and the decode kernels compiled to release the GIL."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import dcformat
from dcformat import parallel
from dcformat.errors import ChecksumError, CorruptFileError


def _model(seed=0):
    """Every layout and value coding, in many chunks of over ``INLINE_COST`` bytes each."""
    rng = np.random.default_rng(seed)
    sparse = rng.laplace(0, 0.05, size=(600, 500)).astype(np.float32)
    sparse[rng.random(sparse.shape) < 0.9] = 0
    shared = dcformat.CodebookTensor(
        np.linspace(-1, 1, 31, dtype=np.float32),
        np.where(rng.random((400, 700)) < 0.85, -1, rng.integers(0, 31, (400, 700))).astype(np.int32))
    dense_shared = dcformat.CodebookTensor(np.linspace(-1, 1, 300, dtype=np.float32),
                                           rng.integers(0, 300, (300, 400)).astype(np.int32))
    tensors = {
        "sparse": sparse,
        "shared": shared,
        "dense_shared": dense_shared,
        "raw": rng.laplace(0, 0.05, size=(700, 300)).astype(np.float32),
        "half": rng.standard_normal((256, 512)).astype(np.float16),
        "ints": rng.integers(-5, 5, size=300_000).astype(np.int64),
        "small": np.arange(7, dtype=np.float32),
    }
    chunk = {"chunk_elements": 40_000}
    encodings = {name: dict(chunk) for name in tensors}
    encodings["sparse"].update(layout="csr")
    encodings["shared"].update(layout="csr")
    encodings["dense_shared"].update(layout="dense")
    encodings["raw"].update(codecs=("byteplanes",))
    encodings["half"].update(codecs=("zstd", "plain"))
    encodings["ints"].update(codecs=("bitpack", "huffman"))
    return tensors, encodings


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    tensors, encodings = _model()
    path = tmp_path_factory.mktemp("parallel") / "model.dcf"
    dcformat.save_file(tensors, path, encodings=encodings)
    expected = {k: (v.decode() if isinstance(v, dcformat.CodebookTensor) else v) for k, v in tensors.items()}
    return path, expected


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_every_thread_count_gives_the_same_arrays(model_file, threads):
    path, expected = model_file
    with dcformat.open(path, threads=threads) as f:
        assert max(len(i.chunks) for i in f.tensors_info()) >= 5
        for name, want in expected.items():
            assert _same(f.get_tensor(name), want), name
    loaded = dcformat.load_file(path, threads=threads)
    assert list(loaded) == list(expected)
    for name, want in expected.items():
        assert _same(loaded[name], want), name


def test_load_file_arrays_share_one_aligned_allocation(model_file):
    path, expected = model_file
    loaded = dcformat.load_file(path)
    bases = {id(a.base if a.base is not None else a) for a in loaded.values()}
    addresses = sorted((a.ctypes.data, a.nbytes) for a in loaded.values())
    assert all(address % 64 == 0 for address, _ in addresses)
    assert all(a + n <= b for (a, n), (b, _) in zip(addresses, addresses[1:]))  # no overlap
    assert all(a.flags.writeable and a.flags.c_contiguous for a in loaded.values())
    loaded["raw"][...] = 0  # writing one leaves the others alone
    assert _same(loaded["sparse"], expected["sparse"])
    del bases


def test_get_tensor_from_many_user_threads(model_file):
    path, expected = model_file
    errors = []
    with dcformat.open(path, threads=2) as f:
        def work(name):
            try:
                for _ in range(3):
                    assert _same(f.get_tensor(name), expected[name])
            except BaseException as error:  # noqa: BLE001
                errors.append(error)

        workers = [threading.Thread(target=work, args=(name,)) for name in expected for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert errors == []


def _corrupt(path, tmp_path, name, chunk_index, flips=1):
    """A copy of the file with a byte of one stream of one chunk flipped."""
    data = bytearray(path.read_bytes())
    with dcformat.open(path) as f:
        stream = f.info(name).chunks[chunk_index].streams[-1]
    for k in range(flips):
        data[stream.offset + stream.length // 2 + k] ^= 0xFF
    out = tmp_path / f"bad_{name}_{chunk_index}.dcf"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_a_bad_chunk_fails_the_tensor_on_any_thread_count(model_file, tmp_path, threads):
    path, _ = model_file
    bad = _corrupt(path, tmp_path, "sparse", 3)
    with pytest.raises(ChecksumError, match="sparse"):
        dcformat.load_file(bad, threads=threads)
    with dcformat.open(bad, threads=threads) as f:
        with pytest.raises(ChecksumError, match="sparse"):
            f.get_tensor("sparse")
        f.get_tensor("shared")  # other tensors still decode


def test_the_first_error_in_file_order_is_raised(model_file, tmp_path):
    path, _ = model_file
    data = bytearray(path.read_bytes())
    with dcformat.open(path) as f:
        late = f.info("raw").chunks[-1].streams[-1]
        early = f.info("sparse").chunks[-1].streams[-1]
    for s in (late, early):
        data[s.offset + s.length // 2] ^= 0xFF
    bad = tmp_path / "two.dcf"
    bad.write_bytes(bytes(data))
    for _ in range(3):
        with pytest.raises(ChecksumError, match="'sparse'"):
            dcformat.load_file(bad, threads=2)


def test_unverified_corruption_is_still_caught_in_parallel(model_file, tmp_path):
    path, _ = model_file
    data = bytearray(path.read_bytes())
    with dcformat.open(path) as f:
        gaps = f.info("shared").chunks[2].streams[1]  # every gap the largest: rows overflow
    data[gaps.offset:gaps.offset + gaps.length] = b"\xff" * gaps.length
    bad = tmp_path / "gaps.dcf"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        dcformat.load_file(bad, threads=2, verify=False)


# --------------------------------------------------------------------------------------------
# run_jobs itself

def test_run_jobs_runs_everything_once_and_orders_errors():
    seen = []
    lock = threading.Lock()

    def job(i, fail=False):
        def run():
            with lock:
                seen.append(i)
            if fail:
                raise ValueError(i)
        return run

    big = parallel.INLINE_COST
    jobs = [(big * 16 if i % 2 else 10, job(i)) for i in range(40)]
    parallel.run_jobs(jobs, threads=2)
    assert sorted(seen) == list(range(40))
    jobs = [(big * 16, job(0)), (big * 16, job(1, fail=True)), (10, job(2, fail=True)), (big * 16, job(3, fail=True))]
    with pytest.raises(ValueError, match="1"):
        parallel.run_jobs(jobs, threads=2)
    with pytest.raises(ValueError, match="1"):
        parallel.run_jobs(jobs, threads=1)


def test_imap_ordered_keeps_order_bounds_what_is_pending_and_raises_in_turn():
    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    started = []

    def work(i):
        with lock:
            started.append(i)
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.002 * (i % 3))
        with lock:
            running["now"] -= 1
        if i == 7:
            raise ValueError(i)
        return i * i

    assert list(parallel.imap_ordered(work, range(7), [1] * 7, threads=3, window=0)) == [i * i for i in range(7)]
    assert running["most"] <= 3
    results = parallel.imap_ordered(work, range(12), [1] * 12, threads=2, window=0)
    assert [next(results) for _ in range(7)] == [i * i for i in range(7)]
    with pytest.raises(ValueError, match="7"):
        next(results)
    # window=0: never more than `threads` results waiting, so item 11 cannot have started
    # when item 7 was taken; once the error is raised, nothing new starts.
    time.sleep(0.05)
    assert 11 not in started
    # A wide window lets cheap items run on past an expensive one still pending.
    first_done = threading.Event()
    late = []

    def slow_first(i):
        if i == 0:
            first_done.wait(5)  # held until a cheap item behind it has run
        else:
            late.append(i)
            if len(late) == 5:
                first_done.set()
        return i

    consumed = parallel.imap_ordered(slow_first, range(10), [100] + [1] * 9, threads=2, window=200)
    assert list(consumed) == list(range(10)) and first_done.is_set()
    assert list(parallel.imap_ordered(work, range(3), [1] * 3, threads=1)) == [0, 1, 4]


def test_threads_setting(monkeypatch):
    monkeypatch.setenv("DCFORMAT_THREADS", "3")
    assert parallel.default_threads() == 3
    monkeypatch.setenv("DCFORMAT_THREADS", "zero")
    assert parallel.default_threads() >= 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            parallel.resolve_threads(bad)
    with pytest.raises(ValueError):
        dcformat.DCFReader(dcformat.save({}), threads=0)


def test_decode_kernels_release_the_gil():
    from dcformat.kernels import jit

    kernels = [(jit("huffman"), "decode_lanes"), (jit("huffman"), "build_table"), (jit("bitpack"), "unpack"),
               (jit("csr"), "scatter"), (jit("csr"), "scatter_take"), (jit("elements"), "take"),
               (jit("elements"), "_merge4"), (jit("elements"), "_split4")]
    for module, name in kernels:
        assert getattr(module, name).targetoptions.get("nogil") is True, name
