"""Slow, obviously-correct references for the kernels, in pure Python (lists and ints).

Each follows the words of spec/FORMAT.md as literally as possible, so that a kernel that agrees
with it agrees with the spec. Also shared checkers for the codec tests (end of file).
"""
from __future__ import annotations

import numpy as np

# --- Bit packing (spec §1, §8.2) -------------------------------------------------------------


def pack_bits(values, width):
    """Bit by bit: value after value, each least significant bit first; bit k of the stream is bit
    k % 8 of byte k // 8; zero padding up to a whole byte."""
    bits = []
    for v in values:
        v = int(v)
        for i in range(width):
            bits.append((v >> i) & 1)
    while len(bits) % 8:
        bits.append(0)
    out = bytearray()
    for k in range(0, len(bits), 8):
        out.append(sum(bits[k + i] << i for i in range(8)))
    return bytes(out)


def unpack_bits(data, count, width):
    """The inverse of :func:`pack_bits`: ``count`` values read bit by bit."""
    data = bytes(data)
    values = []
    k = 0
    for _ in range(count):
        v = 0
        for i in range(width):
            v |= ((data[k // 8] >> (k % 8)) & 1) << i
            k += 1
        values.append(v)
    return values


# --- CSR with relative indices (spec §6.2) ---------------------------------------------------


def csr_encode(matrix, index_bits):
    """``matrix``: list of rows, each a list of ints (0 is zero). Returns ``(row_counts, gaps,
    sources)`` with sources ``(r, c)`` for a non-zero and ``None`` for a filler.

    Spec §6.2: the gap is the number of columns skipped since the previous entry of the row (the
    first entry's gap is its column); at most ``2 ** index_bits - 1``; when the distance to the next
    non-zero is larger, a filler entry (gap ``2 ** index_bits - 1``, value zero) goes first.
    """
    max_gap = 2 ** index_bits - 1
    row_counts, gaps, sources = [], [], []
    for r, row in enumerate(matrix):
        n = 0
        previous = -1  # column of the previous entry of the row
        for c, v in enumerate(row):
            if v == 0:
                continue
            while c - previous - 1 > max_gap:
                previous = previous + max_gap + 1  # the filler sits max_gap columns further on
                gaps.append(max_gap)
                sources.append(None)
                n += 1
            gaps.append(c - previous - 1)
            sources.append((r, c))
            n += 1
            previous = c
        row_counts.append(n)
    return row_counts, gaps, sources


def csr_decode(row_counts, gaps, values, cols):
    """The decoder of spec §6.2, line by line. Raises ValueError where the spec says corrupted."""
    if sum(row_counts) != len(gaps) or len(gaps) != len(values):
        raise ValueError("counts do not match")
    rows = []
    k = 0
    for count in row_counts:
        row = [0] * cols
        position = -1
        for _ in range(count):
            g, v = gaps[k], values[k]
            k += 1
            position = position + g + 1
            if position >= cols:
                raise ValueError("the data is corrupted")
            row[position] = v
        rows.append(row)
    return rows


def filler_count(matrix, index_bits):
    """Fillers that :func:`csr_encode` inserts, counted by running it."""
    _, _, sources = csr_encode(matrix, index_bits)
    return sum(s is None for s in sources)


# --- Byte planes (spec §8.5) -----------------------------------------------------------------


def rotate_left(x, bits):
    return ((x << 1) | (x >> (bits - 1))) % (1 << bits)


def rotate_right(t, bits):
    return (t >> 1) | ((t & 1) << (bits - 1))


# --- Shared checkers for codec tests ---------------------------------------------------------


def check_hostile(decode, payload, count, element_size, param, bound=None, flips=64, seed=0):
    """Every truncation and ``flips`` random byte flips of ``payload`` either raise a
    :class:`DCFormatError` subclass or decode to ``count`` elements of the right dtype."""
    from dcformat.constants import ELEMENT_DTYPE
    from dcformat.errors import DCFormatError

    def attempt(data):
        try:
            out = decode(data, count, element_size, param, bound)
        except DCFormatError:
            return
        assert out.dtype == ELEMENT_DTYPE[element_size] and out.shape == (count,)

    payload = bytes(payload)
    for n in range(len(payload)):
        attempt(payload[:n])
    rng = np.random.default_rng(seed)
    for _ in range(flips if payload else 0):
        data = bytearray(payload)
        for i in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[i] ^= int(rng.integers(1, 256))
        attempt(bytes(data))
