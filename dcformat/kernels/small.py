"""The decoding kernels again, in numpy and plain Python, for small streams: no JIT at all.

A fresh process pays about a second the first time it calls any Numba function, cached or not
(Numba loads its compiler and, through its BLAS check, scipy). For a file of a few hundred thousand
weights that second is all of the time, so streams of up to :data:`dcformat.kernels.SMALL_COUNT`
elements decode here until something else has loaded Numba (see :func:`dcformat.kernels.for_count`).

Every function has the signature, the results and the error codes of its Numba twin in
``bitpack``, ``huffman``, ``csr`` and ``elements`` (``tests/test_small_kernels.py`` runs both on
the same inputs, corrupted ones included), and, like them, leaves validation of tables and lengths
to the codecs. This module imports nothing beyond numpy.
"""
from __future__ import annotations

import numpy as np

# Error codes, equal to those of the Numba modules.
OK = 0
ERR_TRUNCATED = 1  # huffman: a lane ends before its symbols are decoded
ERR_INVALID_CODE = 2  # huffman: bits that match no code
ERR_PADDING = 3  # huffman: non-zero padding after a lane's last code
ERR_LEFTOVER = 4  # huffman: a lane holds more bytes than its codes need
ERR_COUNT = 1  # csr: the row counts do not add up, or sizes disagree
ERR_POSITION = 2  # csr: an entry's column is >= cols
ERR_SYMBOL = 3  # csr: a symbol is >= len(table)
ENTRY_SHIFT = 5
LENGTH_MASK = 31


# --------------------------------------------------------------------------------------------
# Bit packing (spec §8.2)

def unpack(data, width, out):
    """``len(out)`` values of ``width`` bits from ``data``, least significant bit first; bits past
    the end of ``data`` read as zeros."""
    count = out.shape[0]
    need = count * width
    bits = np.unpackbits(np.asarray(data, np.uint8), bitorder="little")
    if bits.size < need:
        bits = np.concatenate([bits, np.zeros(need - bits.size, np.uint8)])
    bits = bits[:need].reshape(count, width)
    values = np.zeros(count, np.uint64)
    for i in range(width):  # bit i of every value at once
        values |= bits[:, i].astype(np.uint64) << np.uint64(i)
    out[...] = values


# --------------------------------------------------------------------------------------------
# Huffman (spec §8.3)

def build_table(lengths, max_length):
    """The decoding table of valid code ``lengths``: entry ``t`` is ``symbol << 5 | length`` for
    the code whose bits, next bit first, are the low bits of ``t`` (0 where no code matches)."""
    lengths = np.asarray(lengths, np.int64)
    size = 1 << int(max_length)
    count = np.bincount(lengths, minlength=max_length + 1)
    count[0] = 0
    next_code = np.zeros(max_length + 2, np.int64)
    code = 0
    for length in range(1, max_length + 1):
        code = (code + int(count[length - 1])) << 1
        next_code[length] = code
    table = np.zeros(size, np.uint32)
    symbols = np.flatnonzero(lengths)
    order = symbols[np.argsort(lengths[symbols], kind="stable")]  # by length, then symbol
    sorted_lengths = lengths[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_lengths, sorted_lengths, side="left")
    codes = next_code[sorted_lengths] + rank
    reversed_codes = np.zeros_like(codes)  # bit b of a code of length L moves to bit L - 1 - b
    for b in range(int(max_length)):
        within = b < sorted_lengths
        reversed_codes |= np.where(within, ((codes >> b) & 1) << np.where(within, sorted_lengths - 1 - b, 0), 0)
    for length in range(1, max_length + 1):
        pick = sorted_lengths == length
        if not pick.any():
            continue
        entries = ((order[pick] << ENTRY_SHIFT) | length).astype(np.uint32)
        starts = reversed_codes[pick]
        spots = starts[:, None] + np.arange(0, size, 1 << length, dtype=np.int64)[None, :]
        table[spots.ravel()] = np.repeat(entries, size >> length)
    return table


def decode_lanes(data, lane_starts, lane_ends, table, max_length, per_lane, fast, out):
    """Decode ``len(out)`` symbols from the lanes ``data[lane_starts[j]:lane_ends[j]]``; returns
    ``(error, lane)`` for the first lane in order with an error, else ``(OK, 0)``.

    Per lane, numpy first assembles the 24 bits that start at every byte (zeros past the lane's
    end); a Python loop then follows the codes, one shift, mask and table look-up each (about
    0.15 µs a symbol). ``fast`` is ignored.
    """
    count = out.shape[0]
    mask = (1 << int(max_length)) - 1
    lengths = (table & LENGTH_MASK).tolist()
    values = (table >> ENTRY_SHIFT).tolist()
    for j in range(lane_starts.shape[0]):
        first, last = min(j * per_lane, count), min((j + 1) * per_lane, count)
        start, end = int(lane_starts[j]), int(lane_ends[j])
        available = (end - start) * 8
        lane = np.zeros(end - start + 4, np.uint32)
        lane[:end - start] = data[start:end]
        words = (lane[:-2] | (lane[1:-1] << 8) | (lane[2:] << 16)).tolist()  # max_length + 7 <= 24
        symbols = [0] * (last - first)
        bit = 0
        try:
            # No bounds check in the loop: the position only grows, so a code that runs past the
            # lane shows as a final position past its end (or as an IndexError further on), and
            # an invalid code as a length of 0 (truncation first if the position is past the end).
            for o in range(last - first):
                t = (words[bit >> 3] >> (bit & 7)) & mask
                length = lengths[t]
                if not length:
                    return (ERR_TRUNCATED if bit > available else ERR_INVALID_CODE), j
                symbols[o] = values[t]
                bit += length
        except IndexError:
            return ERR_TRUNCATED, j
        if bit > available:
            return ERR_TRUNCATED, j
        out[first:last] = symbols
        if start + ((bit + 7) >> 3) != end:
            return ERR_LEFTOVER, j
        if bit & 7 and int(data[end - 1]) >> (bit & 7) != 0:
            return ERR_PADDING, j
    return OK, 0


# --------------------------------------------------------------------------------------------
# CSR (spec §6.2)

def _positions(row_counts, gaps, cols, rows, n, out_size):
    """Column of every entry and its row, or an error code: the checks of the Numba scatter."""
    if out_size != rows * cols:
        return ERR_COUNT, None, None
    if int(np.sum(row_counts, dtype=np.int64)) != n:
        return ERR_COUNT, None, None
    row_of = np.repeat(np.arange(rows, dtype=np.int64), np.asarray(row_counts, np.int64))
    steps = np.cumsum(np.asarray(gaps, np.int64) + 1)
    starts = np.cumsum(np.asarray(row_counts, np.int64)) - np.asarray(row_counts, np.int64)
    before = np.concatenate([[0], steps])[starts]  # the running sum where each row begins
    columns = steps - before[row_of] - 1
    return OK, columns, row_of


def _scatter(row_counts, gaps, n_values, cols, out, values_of):
    rows = row_counts.shape[0]
    n = gaps.shape[0]
    if n_values != n:
        return ERR_COUNT, -1
    code, columns, row_of = _positions(row_counts, gaps, cols, rows, n, out.shape[0])
    if code != OK:
        return code, -1
    bad_position = columns >= cols
    values, bad_symbol = values_of()
    bad = bad_position if bad_symbol is None else bad_position | bad_symbol
    if bad.any():
        k = int(np.argmax(bad))
        return (ERR_POSITION if bad_position[k] else ERR_SYMBOL), int(row_of[k])
    out[:] = 0
    out[row_of * cols + columns] = values
    return OK, -1


def scatter(row_counts, gaps, values, cols, out):
    """Rebuild ``len(row_counts)`` rows of ``cols`` elements into the flat ``out``; ``(code, row)``."""
    return _scatter(row_counts, gaps, values.shape[0], cols, out, lambda: (values, None))


def scatter_take(row_counts, gaps, symbols, table, cols, out):
    """:func:`scatter` writing ``table[symbols[k]]``; ``ERR_SYMBOL`` for a symbol ``>= len(table)``."""
    def values_of():
        bad = symbols >= table.shape[0]
        return table[np.where(bad, 0, symbols)], bad

    return _scatter(row_counts, gaps, symbols.shape[0], cols, out, values_of)


# --------------------------------------------------------------------------------------------
# Whole streams

def take(table, symbols, out):
    """``out[i] = table[symbols[i]]``; -1, or the index of the first symbol ``>= len(table)``."""
    bad = symbols >= table.shape[0]
    if bad.any():
        return int(np.argmax(bad))
    np.take(table, symbols, out=out)
    return -1


def merge_planes(planes, rotate, out):
    """``out[i]`` from the bytes ``planes[j, i]``, rotated right by one bit if ``rotate``."""
    dtype = out.dtype
    bits = 8 * dtype.itemsize
    t = np.zeros(out.shape[0], dtype)
    for j in range(planes.shape[0]):
        t |= planes[j].astype(dtype) << dtype.type(8 * j)
    if rotate:
        t = (t >> dtype.type(1)) | ((t & dtype.type(1)) << dtype.type(bits - 1))
    out[...] = t
