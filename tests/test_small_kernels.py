"""The numpy kernels for small streams (dcformat.kernels.small) against their Numba twins: same
outputs, same error codes, on valid and on corrupted input; and a fresh process that reads a small
file never loads Numba."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import dcformat
from dcformat import kernels
from dcformat.codecs import huffman
from dcformat.kernels import small
from dcformat.kernels import bitpack as jit_bitpack
from dcformat.kernels import csr as jit_csr
from dcformat.kernels import elements as jit_elements
from dcformat.kernels import huffman as jit_huffman
from naive_huffman import random_lengths

SEEDS = range(30)


def test_error_codes_match_the_numba_modules():
    for name in ("OK", "ERR_TRUNCATED", "ERR_INVALID_CODE", "ERR_PADDING", "ERR_LEFTOVER"):
        assert getattr(small, name) == getattr(jit_huffman, name)
    for name in ("ERR_COUNT", "ERR_POSITION", "ERR_SYMBOL"):
        assert getattr(small, name) == getattr(jit_csr, name)
    assert (small.ENTRY_SHIFT, small.LENGTH_MASK) == (jit_huffman.ENTRY_SHIFT, jit_huffman.LENGTH_MASK)


@pytest.mark.parametrize("seed", SEEDS)
def test_unpack(seed):
    rng = np.random.default_rng(seed)
    width = int(rng.integers(1, 33))
    count = int(rng.integers(0, 300))
    data = rng.integers(0, 256, size=int(rng.integers(0, (count * width + 7) // 8 + 3)), dtype=np.uint8)
    dtype = np.uint32 if width > 16 else rng.choice([np.uint16, np.uint32, np.uint64])
    want, got = np.empty(count, dtype), np.full(count, 7, dtype)
    jit_bitpack.unpack(data, width, want)
    small.unpack(data, width, got)
    assert np.array_equal(want, got)


@pytest.mark.parametrize("seed", SEEDS)
def test_build_table(seed):
    rng = np.random.default_rng(seed)
    lengths = random_lengths(rng, int(rng.integers(1, 300)), int(rng.integers(1, 13)))
    max_length = int(lengths.max())
    assert np.array_equal(small.build_table(lengths, max_length), jit_huffman.build_table(lengths, max_length))
    codes = huffman._reversed_codes(huffman.canonical_codes(lengths), lengths)
    assert np.array_equal(small.build_table(lengths, max_length),
                          jit_huffman.decode_table(lengths, codes, max_length))


def _both_decodes(data, count):
    """Run both decode_lanes on the lanes of a parsed payload; return (jit, small) results."""
    parsed = huffman.parse_table(data)
    lookup = jit_huffman.build_table(parsed.lengths.astype(np.uint8), parsed.max_length)
    ends = parsed.lanes_offset + np.cumsum(parsed.lane_lengths)
    starts = ends - parsed.lane_lengths
    per_lane = -(-count // parsed.lane_lengths.size)
    complete = np.count_nonzero(parsed.lengths) >= 2
    results = []
    for module in (jit_huffman, small):
        out = np.zeros(count, np.uint16)
        code = module.decode_lanes(data, starts, ends, lookup, parsed.max_length, per_lane, complete, out)
        results.append((tuple(int(c) for c in code), out))
    return results


@pytest.mark.parametrize("seed", SEEDS)
def test_decode_lanes_valid_and_corrupted(seed):
    rng = np.random.default_rng(seed)
    lengths = random_lengths(rng, int(rng.integers(1, 200)), int(rng.integers(1, 17)))
    present = np.flatnonzero(lengths)
    count = int(rng.integers(1, 3000))
    symbols = rng.choice(present, size=count).astype(np.uint16)
    payload = bytearray(huffman.serialize(symbols, lengths, int(rng.integers(1, 9))))
    (ok, out_jit), (ok_small, out_small) = _both_decodes(np.frombuffer(bytes(payload), np.uint8), count)
    assert ok == ok_small == (0, 0)
    assert np.array_equal(out_jit, symbols) and np.array_equal(out_small, symbols)
    # Corrupt the lane bytes only (the table parse is the codec's job, not the kernels'):
    parsed = huffman.parse_table(np.frombuffer(bytes(payload), np.uint8))
    lanes_start = parsed.lanes_offset
    for _ in range(20):
        bad = bytearray(payload)
        if len(bad) > lanes_start:
            for _ in range(int(rng.integers(1, 4))):
                bad[int(rng.integers(lanes_start, len(bad)))] = int(rng.integers(0, 256))
        claimed = count + int(rng.integers(-2, 3)) if rng.random() < 0.3 else count
        claimed = max(1, claimed)
        (code_jit, out_jit), (code_small, out_small) = _both_decodes(np.frombuffer(bytes(bad), np.uint8), claimed)
        assert code_jit == code_small
        if code_jit == (0, 0):
            assert np.array_equal(out_jit, out_small)


@pytest.mark.parametrize("seed", SEEDS)
def test_scatter_and_scatter_take(seed):
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(0, 6)), int(rng.integers(0, 40))
    row_counts = rng.integers(0, max(1, cols // 2) + 2, size=rows).astype(np.uint32)
    n = int(row_counts.sum()) + (int(rng.integers(-1, 2)) if rng.random() < 0.2 else 0)
    n = max(0, n)
    gaps = rng.integers(0, 4 if rng.random() < 0.7 else 40, size=n).astype(np.uint8)
    table = rng.integers(1, 2**32, size=int(rng.integers(1, 20)), dtype=np.uint32)
    symbols = rng.integers(0, table.size + (1 if rng.random() < 0.3 else 0), size=n).astype(np.uint8)
    values = rng.integers(0, 2**32, size=n, dtype=np.uint32)
    size = rows * cols + (1 if rng.random() < 0.05 else 0)
    for fn in (lambda m, o: m.scatter(row_counts, gaps, values, cols, o),
               lambda m, o: m.scatter_take(row_counts, gaps, symbols, table, cols, o)):
        out_jit, out_small = np.full(size, 5, np.uint32), np.full(size, 9, np.uint32)
        code_jit, code_small = fn(jit_csr, out_jit), fn(small, out_small)
        assert tuple(map(int, code_jit)) == tuple(map(int, code_small))
        if int(code_jit[0]) == 0:
            assert np.array_equal(out_jit, out_small)


@pytest.mark.parametrize("seed", SEEDS)
def test_take_and_merge_planes(seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 2**16, size=int(rng.integers(1, 40)), dtype=np.uint16)
    symbols = rng.integers(0, table.size + (2 if rng.random() < 0.3 else 0), size=200).astype(np.uint8)
    got, want = np.zeros(200, np.uint16), np.zeros(200, np.uint16)
    bad_jit, bad_small = jit_elements.take(table, symbols, want), small.take(table, symbols, got)
    assert bad_jit == bad_small
    if bad_jit < 0:
        assert np.array_equal(got, want)
    for size, dtype in ((2, np.uint16), (4, np.uint32), (8, np.uint64)):
        planes = rng.integers(0, 256, size=(size, 333), dtype=np.uint8)
        for rotate in (False, True):
            a, b = np.empty(333, dtype), np.empty(333, dtype)
            jit_elements.merge_planes(planes, rotate, a)
            small.merge_planes(planes, rotate, b)
            assert np.array_equal(a, b)


def test_codecs_pick_numpy_only_while_numba_is_absent(monkeypatch):
    assert kernels.for_count("huffman", 10) is jit_huffman  # this test process has Numba loaded
    monkeypatch.delitem(sys.modules, "numba")
    assert kernels.for_count("huffman", 10) is small
    assert kernels.for_count("huffman", kernels.SMALL_COUNT + 1) is jit_huffman


def test_small_path_decodes_every_codec_like_the_compiled_one(monkeypatch, tmp_path):
    rng = np.random.default_rng(3)
    w = rng.laplace(0, 0.05, size=(64, 300)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    tensors = {"sparse": w, "dense": rng.laplace(0, 0.05, size=(50, 70)).astype(np.float32),
               "shared": dcformat.CodebookTensor(np.linspace(-1, 1, 31, dtype=np.float32),
                                                 np.where(rng.random((40, 90)) < 0.8, -1,
                                                          rng.integers(0, 31, (40, 90))).astype(np.int32)),
               "ints": rng.integers(0, 9, size=5000).astype(np.int64)}
    encodings = {"dense": {"codecs": ("bitpack", "byteplanes")}}
    data = dcformat.save(tensors, encodings=encodings)
    compiled = dcformat.load(data)
    monkeypatch.delitem(sys.modules, "numba")
    assert kernels.for_count("csr", 1) is small
    assert all(np.array_equal(compiled[k], v) for k, v in dcformat.load(data).items())


def test_a_fresh_process_reads_a_small_file_without_numba(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.laplace(0, 0.05, size=(300, 784)).astype(np.float32)
    w[np.abs(w) < np.quantile(np.abs(w), 0.92)] = 0
    path = tmp_path / "lenet.dcf"
    dcformat.save_file({"ip1.weight": w, "ip1.bias": np.zeros(300, np.float32)}, path)
    code = ("import sys, numpy as np, dcformat; t = dcformat.load_file(sys.argv[1]); "
            "print(int('numba' in sys.modules), float(np.abs(t['ip1.weight']).sum()))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    numba_loaded, total = out.stdout.split()
    assert numba_loaded == "0"
    assert float(total) == pytest.approx(float(np.abs(w).sum()), rel=1e-6)
