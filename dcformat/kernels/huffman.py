"""Canonical Huffman kernels (spec §1 bit order, §8.3 HUFFMAN).

A lane is a bit stream read least significant bit first (bit 0 of the stream is bit 0 of its first
byte); each code is written into it with its *most significant* bit first, as in DEFLATE. So a
code of length ``L`` appears in the stream as its bit-reversal: the kernels work with
*reversed codes* and the decoder looks the next ``max_length`` stream bits up in a table of
``2 ** max_length`` entries, ``symbol << ENTRY_SHIFT | length`` (0: no code, possible only when the
table has one symbol).

Plain ``@njit(cache=True, nogil=True)`` functions over typed numpy arrays, no Python objects inside
(``nogil``: a reader decodes chunks on several threads at once). They do
not validate tables: :mod:`dcformat.codecs.huffman` checks everything of §8.3 first. Even so,
:func:`decode_lanes` never reads outside a lane's bytes, whatever they hold, and reports what it
finds wrong as an error code (``OK``, ``ERR_*``) instead of raising.

Numba gotcha kept in mind throughout: ``uint64 op int64`` is ``float64`` in Numba, so every
operand of 64-bit bit arithmetic is cast to ``np.uint64`` explicitly.
"""
from __future__ import annotations

import sys

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

ENTRY_SHIFT = 5
LENGTH_MASK = 31

OK = 0
ERR_TRUNCATED = 1  # a lane ends before its symbols are decoded
ERR_INVALID_CODE = 2  # bits that match no code (only with a one-symbol table)
ERR_PADDING = 3  # a non-zero padding bit after a lane's last code
ERR_LEFTOVER = 4  # a lane holds more bytes than its codes need

_U64 = np.uint64
_REFILL_BITS = 56  # a refill leaves 56 … 63 valid bits in the buffer
_REFILL_BYTES = 7  # so one refill advances the byte position by at most 7


# --------------------------------------------------------------------------------------------
# Code lengths


@numba.njit(cache=True, nogil=True)
def package_merge(weights, max_length):
    """Optimal code lengths of at most ``max_length`` bits for ``weights`` (int64, increasing).

    Package-merge (Larmore and Hirschberg 1990): ``2 <= len(weights) <= 2 ** max_length``.
    Returns uint8 lengths in the order of ``weights``; the lighter a weight, the longer (or equal)
    its length. Ties between a leaf and a package go to the leaf, which keeps codes short.
    """
    n = weights.shape[0]
    is_package = np.zeros((max_length, 2 * n), np.bool_)  # row d: the list of depth d + 1
    current = weights.copy()  # the deepest list holds the leaves only
    for depth in range(max_length - 2, -1, -1):
        packages = current[0:current.shape[0] - 1:2] + current[1::2]
        current = _merge(weights, packages, is_package[depth])
    lengths = np.zeros(n, np.uint8)
    need = 2 * n - 2  # the items the shallowest list contributes to an optimal code
    for depth in range(max_length):
        leaves = 0
        for i in range(need):
            if not is_package[depth, i]:
                leaves += 1
        lengths[:leaves] += np.uint8(1)  # leaves among the first `need` items are a prefix
        need = 2 * (need - leaves)  # each chosen package needs its two items one level deeper
    return lengths


@numba.njit(cache=True, nogil=True)
def _merge(leaves, packages, is_package):
    """Merge two increasing lists (leaves first on ties), marking packages in ``is_package``."""
    merged = np.empty(leaves.shape[0] + packages.shape[0], np.int64)
    i = j = 0
    for k in range(merged.shape[0]):
        if j == packages.shape[0] or (i < leaves.shape[0] and leaves[i] <= packages[j]):
            merged[k] = leaves[i]
            i += 1
        else:
            merged[k] = packages[j]
            is_package[k] = True
            j += 1
    return merged


# --------------------------------------------------------------------------------------------
# Encoding


@numba.njit(cache=True, nogil=True)
def lane_bits(symbols, lengths, lane_count, per_lane):
    """Code bits of each lane: lane ``j`` codes ``symbols[j*per_lane : (j+1)*per_lane]``."""
    bits = np.zeros(lane_count, np.int64)
    n = symbols.shape[0]
    for j in range(lane_count):
        total = np.int64(0)
        for i in range(min(j * per_lane, n), min((j + 1) * per_lane, n)):
            total += lengths[symbols[i]]
        bits[j] = total
    return bits


@numba.njit(cache=True, nogil=True)
def lane_histograms(symbols, lane_count, per_lane, alphabet):
    """Symbol counts of each lane, ``(lane_count, alphabet)`` int64: one pass gives the histogram
    (their sum) and, with the code lengths, every lane's exact size (:func:`lane_bits`).

    Counts into four interleaved tables, so that runs of one symbol do not wait on each other's
    increments. Every symbol must be ``< alphabet``.
    """
    counts = np.zeros((lane_count, alphabet), np.int64)
    partial = np.zeros((4, alphabet), np.int64)
    n = symbols.shape[0]
    for j in range(lane_count):
        start, stop = min(j * per_lane, n), min((j + 1) * per_lane, n)
        partial[:] = 0
        i = start
        while i + 4 <= stop:
            partial[0, symbols[i]] += 1
            partial[1, symbols[i + 1]] += 1
            partial[2, symbols[i + 2]] += 1
            partial[3, symbols[i + 3]] += 1
            i += 4
        while i < stop:
            partial[0, symbols[i]] += 1
            i += 1
        for s in range(alphabet):
            counts[j, s] = partial[0, s] + partial[1, s] + partial[2, s] + partial[3, s]
    return counts


@numba.njit(cache=True, nogil=True)
def encode_lanes(symbols, reversed_codes, lengths, per_lane, lane_offsets, out):
    """Write each lane's codes into ``out`` from ``lane_offsets[j]``, zero padding included.

    ``out`` must hold exactly the bytes :func:`lane_bits` implies (every byte is written).
    """
    count = symbols.shape[0]
    for j in range(lane_offsets.shape[0]):
        pos = lane_offsets[j]
        acc = _U64(0)  # pending bits, the oldest in bit 0; never more than 31 + 16
        nbits = _U64(0)
        for i in range(j * per_lane, min((j + 1) * per_lane, count)):
            s = symbols[i]
            acc |= _U64(reversed_codes[s]) << nbits
            nbits += _U64(lengths[s])
            if nbits >= _U64(32):
                for b in range(4):
                    out[pos + b] = np.uint8((acc >> _U64(8 * b)) & _U64(0xFF))
                pos += 4
                acc >>= _U64(32)
                nbits -= _U64(32)
        while nbits > _U64(0):
            out[pos] = np.uint8(acc & _U64(0xFF))
            pos += 1
            acc >>= _U64(8)
            nbits -= min(nbits, _U64(8))


# --------------------------------------------------------------------------------------------
# Decoding


@numba.njit(cache=True, nogil=True)
def decode_table(lengths, reversed_codes, max_length):
    """The lookup table: entry ``t`` decodes the stream bits ``t`` (next bit in bit 0).

    A code of length ``L`` fills every entry whose low ``L`` bits are its reversed code.
    """
    size = 1 << max_length
    table = np.zeros(size, np.uint32)
    for s in range(lengths.shape[0]):
        length = np.int64(lengths[s])
        if length > 0:
            entry = np.uint32((s << ENTRY_SHIFT) | length)
            for t in range(np.int64(reversed_codes[s]), size, 1 << length):
                table[t] = entry
    return table



@numba.njit(cache=True, nogil=True)
def build_table(lengths, max_length):
    """The lookup table of :func:`decode_table` straight from valid code ``lengths`` (uint8).

    Assigns the canonical codes (spec §8.3: by length, then symbol; ``next_code[L] = (code +
    count[L-1]) << 1``) and fills the table, in one call: per stream this costs a few
    microseconds where the numpy route costs tens. A one-symbol table gives its symbol the code
    ``0`` of length 1, as the spec says.

    Two sequential passes: first a table indexed by the stream bits read most significant bit
    first, where each code owns one contiguous run of entries; then every entry ``t`` takes the
    entry of ``t``'s bit-reversal. Filling the LSB-first table directly writes each code's entries
    ``2 ** L`` apart, a cache line each: 4× slower for the 65,536 entries of 16-bit codes.
    """
    count = np.zeros(max_length + 2, np.int64)
    for s in range(lengths.shape[0]):
        count[lengths[s]] += 1
    count[0] = 0
    next_code = np.zeros(max_length + 2, np.int64)
    code = np.int64(0)
    for length in range(1, max_length + 1):
        code = (code + count[length - 1]) << 1
        next_code[length] = code
    size = np.int64(1) << max_length
    msb_first = np.zeros(size, np.uint32)
    for s in range(lengths.shape[0]):
        length = np.int64(lengths[s])
        if length > 0:
            start = next_code[length] << (max_length - length)
            next_code[length] += 1
            entry = np.uint32((s << ENTRY_SHIFT) | length)
            # min(): stays inside the table even for lengths that break Kraft (callers validate)
            for t in range(min(start, size), min(start + (np.int64(1) << (max_length - length)), size)):
                msb_first[t] = entry
    reverse_byte = np.empty(256, np.int64)
    for b in range(256):
        r = np.int64(0)
        for i in range(8):
            r |= ((b >> i) & 1) << (7 - i)
        reverse_byte[b] = r
    table = np.empty(size, np.uint32)
    drop = 16 - max_length
    for t in range(size):
        table[t] = msb_first[((reverse_byte[t & 255] << 8) | reverse_byte[t >> 8]) >> drop]
    return table

def _load_le64_python(data, pos):
    """``data[pos:pos+8]`` as a little-endian uint64 (caller guarantees ``pos + 8 <= len(data)``)."""
    value = _U64(0)
    for b in range(8):
        value |= _U64(data[pos + b]) << _U64(8 * b)
    return value


@intrinsic
def _load_le64_intrinsic(typingctx, data, pos):
    """One unaligned 8-byte load: 1.6× faster decoding than assembling bytes (LLVM won't merge)."""

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.gep(array.data, [args[1]])
        return builder.load(builder.bitcast(address, ir.IntType(64).as_pointer()), align=1)

    return types.uint64(data, pos), codegen


if sys.byteorder == "little" and not numba.config.DISABLE_JIT:
    _load_le64 = _load_le64_intrinsic
else:
    _load_le64 = numba.njit(inline="always")(_load_le64_python)


@numba.njit(cache=True, nogil=True)
def decode_lanes(data, lane_starts, lane_ends, table, max_length, per_lane, fast, out):
    """Decode ``len(out)`` symbols from the lanes ``data[lane_starts[j]:lane_ends[j]]``.

    Lane ``j`` decodes ``out[j*per_lane : (j+1)*per_lane]``, must end exactly after the byte of its
    last code, and its padding bits must be zero. ``fast`` (complete codes only: every table entry
    valid) enables the interleaved loop. Returns ``(error, lane)``: ``(OK, 0)`` or the first
    ``ERR_*`` found and its lane.
    """
    lane_count = lane_starts.shape[0]
    count = out.shape[0]
    # Per-lane state: next byte to load, bit buffer (next bit in bit 0), valid bits in it, next
    # output index, end of output.
    pos = lane_starts.copy()
    buffers = np.zeros(lane_count, np.uint64)
    nbits = np.zeros(lane_count, np.uint64)
    first = np.empty(lane_count, np.int64)
    last = np.empty(lane_count, np.int64)
    for j in range(lane_count):
        first[j] = min(j * per_lane, count)
        last[j] = min((j + 1) * per_lane, count)
    if fast:
        for g in range(0, lane_count, 4):
            _fast_quad(data, lane_ends, table, max_length, out, pos, buffers, nbits, first, last,
                       _quad(g, lane_count))
    for j in range(lane_count):
        bit = (pos[j] - lane_starts[j]) * 8 - np.int64(nbits[j])  # bits consumed so far
        error = _decode_tail(data, lane_starts[j], lane_ends[j], bit, table, max_length,
                             out, first[j], last[j])
        if error != OK:
            return error, j
    return OK, 0


@numba.njit(cache=True, nogil=True, inline="always")
def _quad(g, lane_count):
    """Lanes ``g … g+3``, repeating the group's lanes past ``lane_count``.

    A repeated lane is decoded twice into the same output with the same result: wasted work, but
    one interleaved loop serves every lane count.
    """
    r = min(4, lane_count - g)
    return g, g + (1 % r), g + (2 % r), g + (3 % r)


@numba.njit(cache=True, nogil=True, inline="always")
def _safe_rounds(lane_end, pos, produced, remaining, per_round):
    """Rounds a lane can run without a check: each loads 8 bytes and uses at most 7."""
    available = lane_end - pos
    by_bytes = 0 if available < 8 else (available - 8) // _REFILL_BYTES + 1
    return min(by_bytes, (remaining - produced) // per_round)


@numba.njit(cache=True, nogil=True)
def _fast_quad(data, lane_ends, table, max_length, out, pos, buffers, nbits, first, last, lanes):
    """Decode four lanes in one loop (the CPU overlaps their independent dependency chains).

    Each round refills every buffer to 56+ bits with one 8-byte load, then decodes
    ``56 // max_length`` symbols per lane without a check. Stops when a lane has fewer than 8
    bytes or fewer than a round's symbols left; the state arrays are updated for the tail.
    """
    a, b, c, d = lanes
    per_round = _REFILL_BITS // max_length
    mask = (_U64(1) << _U64(max_length)) - _U64(1)
    shift = _U64(ENTRY_SHIFT)
    lmask = np.uint32(LENGTH_MASK)
    p0, p1, p2, p3 = _U64(pos[a]), _U64(pos[b]), _U64(pos[c]), _U64(pos[d])
    b0, b1, b2, b3 = buffers[a], buffers[b], buffers[c], buffers[d]
    n0, n1, n2, n3 = nbits[a], nbits[b], nbits[c], nbits[d]
    o0, o1, o2, o3 = first[a], first[b], first[c], first[d]
    while True:
        rounds = min(min(_safe_rounds(lane_ends[a], np.int64(p0), o0, last[a], per_round),
                         _safe_rounds(lane_ends[b], np.int64(p1), o1, last[b], per_round)),
                     min(_safe_rounds(lane_ends[c], np.int64(p2), o2, last[c], per_round),
                         _safe_rounds(lane_ends[d], np.int64(p3), o3, last[d], per_round)))
        if rounds <= 0:
            break
        for _ in range(rounds):
            # Refill: OR in 8 bytes above the valid bits, advance by the whole bytes now held.
            b0 |= _load_le64(data, p0) << n0
            p0 += (_U64(63) - n0) >> _U64(3)
            n0 |= _U64(_REFILL_BITS)
            b1 |= _load_le64(data, p1) << n1
            p1 += (_U64(63) - n1) >> _U64(3)
            n1 |= _U64(_REFILL_BITS)
            b2 |= _load_le64(data, p2) << n2
            p2 += (_U64(63) - n2) >> _U64(3)
            n2 |= _U64(_REFILL_BITS)
            b3 |= _load_le64(data, p3) << n3
            p3 += (_U64(63) - n3) >> _U64(3)
            n3 |= _U64(_REFILL_BITS)
            for _ in range(per_round):
                e0 = table[b0 & mask]
                e1 = table[b1 & mask]
                e2 = table[b2 & mask]
                e3 = table[b3 & mask]
                out[o0] = e0 >> shift
                out[o1] = e1 >> shift
                out[o2] = e2 >> shift
                out[o3] = e3 >> shift
                l0, l1, l2, l3 = _U64(e0 & lmask), _U64(e1 & lmask), _U64(e2 & lmask), _U64(e3 & lmask)
                b0 >>= l0
                b1 >>= l1
                b2 >>= l2
                b3 >>= l3
                n0 -= l0
                n1 -= l1
                n2 -= l2
                n3 -= l3
                o0 += 1
                o1 += 1
                o2 += 1
                o3 += 1
    # Store the state for the tail (the copies of a repeated lane hold equal state).
    for lane, p, bb, n, o in ((a, p0, b0, n0, o0), (b, p1, b1, n1, o1), (c, p2, b2, n2, o2),
                              (d, p3, b3, n3, o3)):
        pos[lane] = np.int64(p)
        buffers[lane] = bb
        nbits[lane] = n
        first[lane] = o


@numba.njit(cache=True, nogil=True)
def _decode_tail(data, start, end, bit, table, max_length, out, first, last):
    """Decode ``out[first:last]`` from lane bit ``bit`` on, reading only ``data[start:end]``.

    Peeks ``max_length`` bits (at most 3 bytes), treating bytes past the lane's end as zeros, and
    reports ``ERR_TRUNCATED`` if the code found needs bits the lane does not have. Then checks
    that the lane ends with the byte of its last code and that the padding is zero.
    """
    available = (end - start) * 8
    mask = (1 << max_length) - 1
    for o in range(first, last):
        byte = start + (bit >> 3)
        window = 0
        for k in range(3):
            if byte + k < end:
                window |= np.int64(data[byte + k]) << (8 * k)
        entry = table[(window >> (bit & 7)) & mask]
        length = np.int64(entry & np.uint32(LENGTH_MASK))
        if bit + length > available:
            return ERR_TRUNCATED
        if length == 0:
            return ERR_INVALID_CODE
        out[o] = entry >> np.uint32(ENTRY_SHIFT)
        bit += length
    used = (bit + 7) >> 3
    if start + used != end:
        return ERR_LEFTOVER
    if bit & 7 and data[end - 1] >> (bit & 7) != 0:
        return ERR_PADDING
    return OK
