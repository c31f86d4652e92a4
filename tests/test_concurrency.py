"""Many readers at once: threads sharing one ``dcformat.open`` reader, threads with a reader each,
and processes, all decoding the same file at the same time, get the right tensors.

The file mixes every layout, value coding and codec, with several chunks per tensor (so one
``get_tensor`` already runs chunk jobs on the decoding thread pool, inside threads of its own).
"""
import hashlib
import pathlib
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dcformat
import fuzz_helpers as fh

ROOT = pathlib.Path(__file__).resolve().parent.parent
THREADS = 8
PROCESSES = 4
ROUNDS = 3


def _tensors():
    rng = np.random.default_rng(7)
    pruned = rng.normal(size=(300, 400)).astype(np.float32)
    pruned[rng.random(pruned.shape) > 0.1] = 0
    shared = dcformat.CodebookTensor(np.linspace(-1, 1, 16, dtype=np.float32),
                                     np.where(rng.random((256, 300)) < 0.2, rng.integers(0, 16, (256, 300)), -1))
    wide = dcformat.CodebookTensor(rng.normal(size=1000).astype(np.float32), rng.integers(0, 1000, 50_000))
    return {
        "dense_zstd": (rng.normal(size=120_000).astype(np.float32), {"codecs": ("zstd",), "chunk_elements": 30_000}),
        "dense_byteplanes": (rng.normal(size=(100, 500)).astype(np.float16), {"codecs": ("byteplanes",), "chunk_elements": 9000}),
        "csr_raw": (pruned, {"layout": "csr", "codebook": "never", "chunk_elements": 20_000}),
        "csr_codebook": (shared, {"layout": "csr", "codecs": ("huffman", "bitpack"), "chunk_elements": 15_000}),
        "dense_codebook_16bit": (wide, {"layout": "dense", "chunk_elements": 12_000}),
        "ints": (rng.integers(-50, 50, 70_000).astype(np.int64), {"chunk_elements": 20_000}),
        "flags": (rng.random(5000) < 0.5, {}),
        "scalar": (np.float64(3.5), {}),
    }


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    spec = _tensors()
    path = tmp_path_factory.mktemp("concurrency") / "model.dcf"
    dcformat.save_file({k: v for k, (v, _) in spec.items()}, path, encodings={k: e for k, (_, e) in spec.items()})
    with dcformat.open(path) as f:  # the truth: decoded once, serially, on one thread
        assert sum(len(i.chunks) for i in f.tensors_info()) > 20
        expected = {name: f.get_tensor(name) for name in f.keys()}
    for name, (value, _) in spec.items():
        want = value.decode() if isinstance(value, dcformat.CodebookTensor) else np.asarray(value)
        assert np.array_equal(expected[name], want), name
    return path, expected


def _digest(arrays: dict) -> dict:
    return {name: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() + str(a.dtype) + str(a.shape)
            for name, a in arrays.items()}


def _run_threads(worker):
    start = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda i: (start.wait(), worker(i))[1], range(THREADS)))


@pytest.mark.parametrize("backend", fh.BACKENDS)
def test_threads_sharing_one_reader(model_file, backend):
    """With the Numba kernels (nogil, so truly in parallel) and with their numpy twins (what a
    fresh process uses for small streams)."""
    path, expected = model_file
    with fh.kernel_backend(backend), dcformat.open(path) as reader:
        def worker(i):
            names = list(expected)[i % len(expected):] + list(expected)[:i % len(expected)]
            got = {}
            for _ in range(ROUNDS):
                for name in names:
                    got[name] = reader.get_tensor(name)
                    assert np.array_equal(got[name], expected[name]), name
                    if reader.info(name).value_coding:
                        ct = reader.get_codebook_tensor(name)
                        assert ct.indices.shape == expected[name].shape
            return _digest(got)

        digests = _run_threads(worker)
    assert all(d == _digest(expected) for d in digests)


def test_threads_with_a_reader_each(model_file):
    path, expected = model_file

    def worker(i):
        got = {}
        for _ in range(ROUNDS):
            with dcformat.open(path) as reader:
                for name in reversed(list(expected)) if i % 2 else expected:
                    got[name] = reader.get_tensor(name)
        return _digest(got)

    assert all(d == _digest(expected) for d in _run_threads(worker))


def test_threads_loading_whole_files(model_file):
    path, expected = model_file
    data = path.read_bytes()
    results = _run_threads(lambda i: _digest(dcformat.load_file(path) if i % 2 else dcformat.load(data)))
    assert all(d == _digest(expected) for d in results)


def test_threads_with_their_own_decode_threads(model_file):
    """Readers asking for several tensors at once (their chunks share the decoding pool) from
    several threads at once."""
    path, expected = model_file
    with dcformat.open(path) as reader:
        if not hasattr(reader, "get_tensors"):
            pytest.skip("this reader has no get_tensors")

        def worker(i):
            return _digest(reader.get_tensors(list(expected)))

        assert all(d == _digest(expected) for d in _run_threads(worker))


_PROCESS = """
import hashlib, sys, numpy as np, dcformat
with dcformat.open(sys.argv[1]) as f:
    for _ in range(3):
        for name in f.keys():
            a = f.get_tensor(name)
            print(name, hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() + str(a.dtype) + str(a.shape))
"""


def test_processes_reading_at_once(model_file):
    path, expected = model_file
    want = _digest(expected)
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(PROCESSES)]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        lines = [line.split(" ", 1) for line in out.splitlines()]
        assert len(lines) == 3 * len(want)
        assert [name for name, digest in lines if want[name] != digest] == []


def test_closing_one_reader_leaves_the_others_alone(model_file):
    """Readers of the same file are independent: one closed (by its thread) while others read."""
    path, expected = model_file
    readers = [dcformat.open(path) for _ in range(THREADS)]

    def worker(i):
        if i == 0:
            readers[0].close()
            return True
        for name in expected:
            assert np.array_equal(readers[i].get_tensor(name), expected[name])
        return True

    try:
        assert all(_run_threads(worker))
    finally:
        for r in readers:
            r.close()


def test_closing_a_shared_reader_while_threads_read(model_file):
    """close() from one thread while others decode: each read either completes with the right
    tensor or fails with ValueError (as a closed file does), never a crash or a DCFormatError
    that would blame the file."""
    path, expected = model_file
    for attempt in range(5):
        reader = dcformat.open(path)
        outcomes = []
        go = threading.Barrier(THREADS + 1)

        def worker():
            go.wait()
            for name in expected:
                try:
                    outcomes.append(np.array_equal(reader.get_tensor(name), expected[name]))
                except ValueError:
                    outcomes.append("closed")

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        go.wait()
        reader.close()
        for t in threads:
            t.join()
        assert all(o is True or o == "closed" for o in outcomes), outcomes
    with pytest.raises(ValueError):
        reader.get_tensor("scalar")
