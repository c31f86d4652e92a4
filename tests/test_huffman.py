"""HUFFMAN codec (spec §8.3): the Numba kernels against the naive reference, round trips, the
compression property, and hostile payloads."""
from __future__ import annotations

import functools
import heapq
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive_huffman as naive
from naive_huffman import random_lengths
from dcformat.codecs import huffman
from dcformat.constants import Codec
from dcformat.errors import (
    CorruptFileError,
    CountMismatchError,
    DCFormatError,
    EncodingError,
    HuffmanTableError,
    TruncatedFileError,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_symbols(rng, lengths, count):
    present = np.flatnonzero(lengths)
    weights = rng.random(present.size) ** 3
    return rng.choice(present, size=count, p=weights / weights.sum()).astype(np.uint16)


def decode(payload, count, element_size=2, bound=None):
    return huffman.decode(payload, count, element_size, 0, bound)


def entropy_bits(symbols):
    p = np.bincount(symbols) / symbols.size
    p = p[p > 0]
    return -symbols.size * float(np.sum(p * np.log2(p)))


def unlimited_huffman_lengths(frequencies):
    """Textbook Huffman (merge the two lightest trees) without a length limit."""
    heap = [(f, s, (s,)) for s, f in enumerate(frequencies)]
    heapq.heapify(heap)
    lengths = [0] * len(frequencies)
    while len(heap) > 1:
        (fa, sa, a), (fb, _, b) = heapq.heappop(heap), heapq.heappop(heap)
        for s in a + b:
            lengths[s] += 1
        heapq.heappush(heap, (fa + fb, sa, a + b))
    return lengths


@functools.lru_cache(maxsize=None)
def optimal_cost(frequencies: tuple, max_length: int) -> int:
    """Minimum Σ f × length over complete codes of at most ``max_length`` bits, by exhaustive
    dynamic programming over how many symbols (most frequent first) end at each depth."""
    f = sorted(frequencies, reverse=True)
    n = len(f)
    suffix = [sum(f[i:]) for i in range(n + 1)]

    @functools.lru_cache(maxsize=None)
    def best(depth, placed, slots):  # `slots` free nodes at `depth`, `placed` symbols above it
        if placed == n:
            return 0 if slots == 0 else math.inf
        if depth > max_length or slots > n - placed:
            return math.inf
        return suffix[placed] + min(best(depth + 1, placed + m, 2 * (slots - m))
                                    for m in range(min(slots, n - placed) + 1))

    return best(1, 0, 2)


# --------------------------------------------------------------------------------------------
# Worked examples


def test_worked_example_exact_bytes():
    """Spec worked example: A:1 B:2 C:3 D:3 (symbols 0 … 3), stream A B C D A, one lane."""
    lengths = [1, 2, 3, 3]
    assert list(huffman.canonical_codes(lengths)) == [0b0, 0b10, 0b110, 0b111]
    payload = huffman.serialize(np.array([0, 1, 2, 3, 0], np.uint8), lengths, 1)
    # header 03 01 0000 04000000; lengths 1,2,3,3 as 5-bit fields: 0x18C41 -> 41 8C 01;
    # lane length 2; codes 0 10 110 111 0 in stream order, LSB first: DA 01.
    assert payload.hex(" ") == "03 01 00 00 04 00 00 00 41 8c 01 02 00 00 00 da 01"
    assert payload == naive.encode([0, 1, 2, 3, 0], lengths, 1)
    assert decode(payload, 5, 1).tolist() == [0, 1, 2, 3, 0]


def test_canonical_codes_rfc1951_example():
    """RFC 1951 §3.2.2: lengths (3,3,3,3,3,2,4,4) for A … H."""
    codes = huffman.canonical_codes([3, 3, 3, 3, 3, 2, 4, 4])
    assert list(codes) == [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]


def test_canonical_codes_single_symbol_and_absent():
    assert list(huffman.canonical_codes([0, 0, 1])) == [0, 0, 0]
    assert list(huffman.canonical_codes([2, 0, 1, 2])) == [0b10, 0, 0b0, 0b11]


@pytest.mark.parametrize("seed", range(20))
def test_canonical_codes_match_naive(seed):
    rng = np.random.default_rng(seed)
    lengths = random_lengths(rng, int(rng.integers(1, 300)), int(rng.integers(1, 17)))
    codes = huffman.canonical_codes(lengths)
    reference = naive.canonical_codes(lengths.tolist())
    assert {s: (int(lengths[s]), int(codes[s])) for s in np.flatnonzero(lengths)} == reference


# --------------------------------------------------------------------------------------------
# Kernels against the naive reference


@pytest.mark.parametrize("seed", range(40))
def test_kernels_match_naive(seed):
    rng = np.random.default_rng(seed)
    lane_count = seed % 8 + 1
    alphabet = int(rng.choice([1, 2, 3, 17, 256, 1000]))
    lengths = random_lengths(rng, alphabet, int(rng.integers(1, 17)))
    count = int(rng.choice([1, 2, lane_count - 1 or 1, lane_count + 1, 97, 1001, 3000]))
    symbols = random_symbols(rng, lengths, count)
    payload = huffman.serialize(symbols, lengths, lane_count)
    assert payload == naive.encode(symbols.tolist(), lengths.tolist(), lane_count)
    assert decode(payload, count).tolist() == symbols.tolist()
    assert naive.decode(payload, count) == symbols.tolist()


def test_empty_later_lanes():
    lengths = np.array([1, 2, 2], np.uint8)
    symbols = np.array([0, 1, 2], np.uint16)
    payload = huffman.serialize(symbols, lengths, 8)  # S = 1: lanes 3 … 7 are empty
    assert payload == naive.encode(symbols.tolist(), lengths.tolist(), 8)
    assert list(huffman.parse_table(payload).lane_lengths) == [1, 1, 1, 0, 0, 0, 0, 0]
    assert decode(payload, 3).tolist() == [0, 1, 2]


def test_one_symbol_alphabet():
    symbols = np.full(20, 5, np.uint8)
    payload = huffman.encode(symbols, 1).payload
    table = huffman.parse_table(payload)
    assert table.max_length == 1 and table.lengths.tolist() == [0] * 5 + [1]
    assert list(table.lane_lengths) == [3]  # 20 one-bit codes `0`
    assert payload.endswith(b"\x00\x00\x00")
    assert decode(payload, 20, 1).tolist() == [5] * 20


def test_full_65536_symbol_alphabet():
    rng = np.random.default_rng(7)
    flat = np.full(65536, 16, np.uint8)
    symbols = rng.integers(0, 65536, 5000).astype(np.uint16)
    payload = huffman.serialize(symbols, flat, 3)
    assert payload == naive.encode(symbols.tolist(), flat.tolist(), 3)
    assert np.array_equal(decode(payload, 5000), symbols)
    skewed = random_lengths(rng, 65536, 16, present=40000)
    symbols = random_symbols(rng, skewed, 5000)
    payload = huffman.serialize(symbols, skewed, 4)
    assert payload == naive.encode(symbols.tolist(), skewed.tolist(), 4)
    assert naive.decode(payload, 5000) == symbols.tolist()
    assert np.array_equal(decode(payload, 5000), symbols)


@pytest.mark.parametrize("max_length", [2, 5, 11, 12, 15, 16])
def test_long_streams_match_original(max_length):
    """The interleaved fast loop (long lanes) and its hand-over to the careful tail."""
    rng = np.random.default_rng(max_length)
    lengths = random_lengths(rng, 1 << min(max_length, 10), max_length)
    for lane_count in (1, 2, 3, 4, 5, 8):
        count = 20_000 + lane_count
        symbols = random_symbols(rng, lengths, count)
        payload = huffman.serialize(symbols, lengths, lane_count)
        assert np.array_equal(decode(payload, count), symbols)


# --------------------------------------------------------------------------------------------
# Code lengths


@pytest.mark.parametrize("seed", range(30))
def test_code_lengths_optimal(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 13))
    frequencies = rng.integers(1, 1000, n) ** int(rng.integers(1, 4))
    max_length = int(rng.integers(math.ceil(math.log2(n)), n + 1))
    lengths = huffman.code_lengths(frequencies, max_length)
    huffman.check_lengths(lengths, int(lengths.max()))
    assert lengths.max() <= max_length
    assert int(np.dot(frequencies, lengths)) == optimal_cost(tuple(frequencies.tolist()), max_length)


def test_code_lengths_limit_fibonacci():
    """Fibonacci frequencies need a 29-bit code unconstrained; the limit of 16 stays optimal."""
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    frequencies = np.array(fib, np.int64)
    assert max(unlimited_huffman_lengths(fib)) == 29
    lengths = huffman.code_lengths(frequencies, 16)
    assert lengths.max() == 16
    huffman.check_lengths(lengths, 16)
    assert int(np.dot(frequencies, lengths)) == optimal_cost(tuple(fib), 16)
    symbols = np.repeat(np.arange(30), np.minimum(fib, 500)).astype(np.uint16)
    payload = huffman.encode(symbols, 2, max_length=16).payload
    assert huffman.parse_table(payload).max_length <= 16
    assert np.array_equal(decode(payload, symbols.size), symbols)


def test_code_lengths_edges():
    assert huffman.code_lengths([0, 0, 7, 0], 16).tolist() == [0, 0, 1, 0]
    assert huffman.code_lengths([3, 9], 1).tolist() == [1, 1]
    assert huffman.code_lengths([5, 5, 5, 5], 16).tolist() == [2, 2, 2, 2]
    assert huffman.code_lengths([4, 2, 1, 1], 16).tolist() == [1, 2, 3, 3]
    assert huffman.code_lengths([1, 1, 1], 16).tolist() == [1, 2, 2]  # ties: lower symbol shorter
    with pytest.raises(EncodingError):
        huffman.code_lengths([0, 0], 16)
    with pytest.raises(EncodingError):
        huffman.code_lengths([1, 1, 1, 1, 1], 2)
    with pytest.raises(EncodingError):
        huffman.code_lengths([1, 1], 17)
    with pytest.raises(EncodingError):
        huffman.code_lengths([1, -1], 16)


def test_code_lengths_speed():
    import time
    rng = np.random.default_rng(0)
    huffman.code_lengths(rng.integers(1, 100, 256), 16)  # compile or load the cached kernel
    start = time.perf_counter()
    huffman.code_lengths(rng.integers(1, 100, 256), 16)
    small = time.perf_counter() - start
    start = time.perf_counter()
    lengths = huffman.code_lengths(rng.integers(0, 10**6, 65536), 16)
    large = time.perf_counter() - start
    huffman.check_lengths(lengths, int(lengths.max()))
    assert small < 0.05 and large < 1.0


# --------------------------------------------------------------------------------------------
# The codec interface


@SETTINGS
@given(
    data=st.data(),
    element_size=st.sampled_from([1, 2]),
    count=st.integers(1, 3000),
    lanes=st.one_of(st.none(), st.integers(1, 8)),
)
def test_round_trip(data, element_size, count, lanes):
    alphabet = data.draw(st.integers(1, 256 if element_size == 1 else 65536))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    skew = data.draw(st.floats(0.0, 4.0))
    symbols = (rng.random(count) ** (1 + skew) * alphabet).astype(np.uint16)
    present = np.unique(symbols).size
    max_length = data.draw(st.integers(max(1, math.ceil(math.log2(present))), 16))
    elements = symbols.astype(np.uint8 if element_size == 1 else data.draw(st.sampled_from(
        [np.uint16, np.uint32, np.uint64])))
    stream = huffman.encode(elements, element_size, lanes=lanes, max_length=max_length)
    assert stream.codec == Codec.HUFFMAN and stream.param == 0
    table = huffman.parse_table(stream.payload, element_size)
    assert table.lengths.size == int(symbols.max()) + 1 and table.max_length <= max_length
    decoded = decode(stream.payload, count, element_size, bound=table.lengths.size)
    assert decoded.dtype == (np.uint8 if element_size == 1 else np.uint16)
    assert np.array_equal(decoded, symbols)


def test_default_lanes_and_determinism():
    rng = np.random.default_rng(3)
    small = rng.integers(0, 50, 4095).astype(np.uint8)
    large = rng.integers(0, 50, 4096).astype(np.uint8)
    assert huffman.parse_table(huffman.encode(small, 1).payload).lane_lengths.size == 1
    assert huffman.parse_table(huffman.encode(large, 1).payload).lane_lengths.size == 4
    assert huffman.encode(large, 1) == huffman.encode(large.copy(), 1)


@pytest.mark.parametrize("elements, element_size, options", [
    (np.array([1, 65536], np.uint32), 4, {}),
    (np.array([1, 2], np.int16), 2, {}),
    (np.array([1, 65536], np.uint32), 2, {}),
    (np.array([1, 256], np.uint16), 1, {}),
    (np.array([], np.uint8), 1, {}),
    (np.zeros((2, 2), np.uint8), 1, {}),
    (np.array([1, 2], np.uint8), 1, {"lanes": 0}),
    (np.array([1, 2], np.uint8), 1, {"lanes": 9}),
    (np.array([1, 2], np.uint8), 1, {"max_length": 0}),
    (np.array([1, 2], np.uint8), 1, {"max_length": 17}),
    (np.arange(5, dtype=np.uint8), 1, {"max_length": 2}),
])
def test_encode_rejects(elements, element_size, options):
    with pytest.raises(EncodingError):
        huffman.encode(elements, element_size, **options)


# --------------------------------------------------------------------------------------------
# The compression property


def _distribution(name, rng, n):
    if name.startswith("geometric"):
        ratio = float(name.split("-")[1])
        p = ratio ** np.arange(64)
        return rng.choice(64, size=n, p=p / p.sum())
    return rng.integers(0, int(name.split("-")[1]), n)


@pytest.mark.parametrize("name", ["geometric-0.5", "geometric-0.7", "geometric-0.9",
                                  "uniform-2", "uniform-16", "uniform-256", "uniform-4096",
                                  "uniform-37", "uniform-300"])
def test_compression_within_2_percent_of_entropy(name):
    rng = np.random.default_rng(11)
    symbols = _distribution(name, rng, 20_000).astype(np.uint16)
    payload = huffman.encode(symbols, 2).payload
    table = huffman.parse_table(payload)
    coded_bits = 8 * int(table.lane_lengths.sum())  # lanes only, padding included
    bound = 1.02 * entropy_bits(symbols)
    assert coded_bits <= bound
    assert 8 * len(payload) <= bound + 8 * table.lanes_offset


def test_flat_37_redundancy_is_small():
    """27 symbols of 5 bits and 10 of 6 bits: 195/37 = 5.270 bits vs log2(37) = 5.209 (+1.2%)."""
    lengths = huffman.code_lengths(np.ones(37, np.int64), 16)
    assert sorted(lengths.tolist()) == [5] * 27 + [6] * 10
    assert lengths.mean() / math.log2(37) < 1.012


# --------------------------------------------------------------------------------------------
# Hostile payloads


def _valid_payload(count=300, lane_count=3, seed=0):
    rng = np.random.default_rng(seed)
    lengths = random_lengths(rng, 40, 9, present=30)
    symbols = random_symbols(rng, lengths, count)
    return huffman.serialize(symbols, lengths, lane_count), symbols


def _build(max_length=2, lane_count=1, reserved=0, lengths=(1, 2, 2), lanes=(b"\x1a",),
           alphabet_size=None, lane_lengths=None):
    """A payload with fields as given (nothing checked): by default symbols 0 1 2 -> bits 0 10 11."""
    alphabet_size = len(lengths) if alphabet_size is None else alphabet_size
    lane_lengths = [len(lane) for lane in lanes] if lane_lengths is None else lane_lengths
    length_bits = [bit for length in lengths for bit in naive.value_bits(length, 5)]
    return (struct.pack("<BBHI", max_length, lane_count, reserved, alphabet_size)
            + naive.bits_to_bytes(length_bits)
            + b"".join(struct.pack("<I", n) for n in lane_lengths) + b"".join(lanes))


def test_build_helper_is_valid():
    assert decode(_build(), 3).tolist() == [0, 1, 2]  # 0 10 11 -> 0b11010


def test_every_truncation_raises():
    payload, symbols = _valid_payload()
    assert np.array_equal(decode(payload, symbols.size), symbols)
    for end in range(len(payload)):
        with pytest.raises(DCFormatError):
            decode(payload[:end], symbols.size)


def test_random_byte_flips_agree_with_naive():
    """A damaged payload raises a DCFormatError or decodes to `count` symbols: the same as the
    naive reference decodes (or rejects) it."""
    rng = np.random.default_rng(5)
    for trial in range(300):
        payload, symbols = _valid_payload(count=int(rng.integers(1, 120)),
                                          lane_count=int(rng.integers(1, 9)), seed=trial % 7)
        damaged = bytearray(payload)
        for _ in range(int(rng.integers(1, 4))):
            damaged[int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        try:
            expected = naive.decode(bytes(damaged), symbols.size)
        except naive.NaiveError:
            expected = None
        try:
            decoded = decode(bytes(damaged), symbols.size)
        except DCFormatError:
            assert expected is None, trial
        else:
            assert decoded.shape == symbols.shape and decoded.tolist() == expected, trial


def test_random_flips_of_long_lanes_never_crash():
    """Damage inside long lanes exercises the fast loop on garbage."""
    rng = np.random.default_rng(9)
    payload, symbols = _valid_payload(count=30_000, lane_count=4, seed=1)
    for _ in range(200):
        damaged = bytearray(payload)
        for _ in range(int(rng.integers(1, 6))):
            damaged[int(rng.integers(len(damaged)))] = int(rng.integers(256))
        try:
            decoded = decode(bytes(damaged), symbols.size)
        except DCFormatError:
            continue
        assert decoded.shape == symbols.shape


@pytest.mark.parametrize("payload, count, error", [
    (_build(lengths=(1, 1, 2), lanes=(b"\x02",)), 3, HuffmanTableError),  # over-subscribed
    (_build(lengths=(1, 2, 0), lanes=(b"\x02",)), 2, HuffmanTableError),  # incomplete
    (_build(lengths=(1, 2, 3)), 3, HuffmanTableError),  # 3 > max_length 2
    (_build(max_length=3), 3, HuffmanTableError),  # no length equals max_length
    (_build(max_length=2, lengths=(2,)), 3, HuffmanTableError),  # one symbol, length 2
    (_build(max_length=1, lengths=(0, 0)), 3, HuffmanTableError),  # no symbol
    (_build(max_length=0), 3, HuffmanTableError),
    (_build(max_length=17), 3, HuffmanTableError),
    (_build(lane_count=0, lanes=()), 3, CorruptFileError),
    (_build(lane_count=9, lanes=(b"\x1a",) + (b"",) * 8), 3, CorruptFileError),
    (_build(reserved=1), 3, CorruptFileError),
    (_build(alphabet_size=0, lengths=()), 3, HuffmanTableError),
    (_build(alphabet_size=65537, lengths=()), 3, HuffmanTableError),
    (_build() + b"\x00", 3, CorruptFileError),  # bytes after the parts
    (_build(lanes=(b"\x1a\x00",)), 3, CorruptFileError),  # a lane longer than its codes
    (_build(lanes=(b"\x3a",)), 3, CorruptFileError),  # non-zero padding in the lane
    (_build()[:-1], 3, TruncatedFileError),
    (_build(lanes=(b"\xff",)), 5, TruncatedFileError),  # 2 2 2 2, then the lane ends
    (_build(lane_lengths=(2,)), 3, TruncatedFileError),
    (_build(max_length=1, lengths=(1,), lanes=(b"\x02",)), 3, CorruptFileError),  # invalid code
    (_build(), 8 * 15 + 1, CountMismatchError),  # count > 8 × length
    (_build(), 0, CorruptFileError),
])
def test_corrupted(payload, count, error):
    with pytest.raises(error):
        decode(payload, count)


def test_code_length_padding_must_be_zero():
    payload = bytearray(_build())  # 15 length bits in 2 bytes: bit 15 is padding
    payload[9] |= 0x80
    with pytest.raises(HuffmanTableError):
        decode(bytes(payload), 3)


def test_alphabet_bounds():
    payload = _build()  # alphabet_size 3
    assert decode(payload, 3, bound=3).tolist() == [0, 1, 2]
    with pytest.raises(HuffmanTableError):
        decode(payload, 3, bound=2)
    big = huffman.serialize(np.array([0, 300], np.uint16), np.array([1] + [0] * 299 + [1]), 1)
    assert decode(big, 2).tolist() == [0, 300]
    with pytest.raises(HuffmanTableError):
        decode(big, 2, element_size=1)


def test_bad_descriptor_fields():
    payload = _build()
    with pytest.raises(CorruptFileError):
        huffman.decode(payload, 3, 2, 1, None)  # param must be 0
    with pytest.raises(CorruptFileError):
        huffman.decode(payload, 3, 3, 0, None)  # element_size 1, 2, 4 or 8


def test_wide_elements_hold_small_symbols():
    """Row counts are 4-byte elements; HUFFMAN codes them while they stay below 65536."""
    counts = np.array([0, 3, 3, 7, 65535, 3], np.uint32)
    stream = huffman.encode(counts, 4)
    out = huffman.decode(stream.payload, counts.size, 4, 0, None)
    assert out.dtype == np.dtype("<u4") and np.array_equal(out, counts)


def test_fast_loop_lane_errors():
    """Errors in long lanes: a lane that ends early, leftover bytes, lanes shifted by a byte."""
    payload, symbols = _valid_payload(count=40_000, lane_count=4, seed=2)
    table = huffman.parse_table(payload)
    start = table.lanes_offset - 16
    lane_lengths = table.lane_lengths.copy()
    for delta in ((-1, 1, 0, 0), (0, 0, 1, -1), (1, 0, 0, -1)):
        damaged = bytearray(payload)
        damaged[start:start + 16] = (lane_lengths + np.array(delta)).astype("<u4").tobytes()
        with pytest.raises(DCFormatError):
            decode(bytes(damaged), symbols.size)
    with pytest.raises(TruncatedFileError):
        decode(payload, symbols.size + 4 * 9)  # 9 symbols more per lane than 7 padding bits hold
    with pytest.raises(CorruptFileError):
        decode(payload, symbols.size - 4 * 20)  # 20 symbols less per lane: bytes left over
