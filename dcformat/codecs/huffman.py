"""HUFFMAN (spec §8.3): canonical Huffman codes, given by their lengths, in independent lanes.

Payload, integers little-endian::

    size                          field
    1                             max_length     the longest code length, 1 … 16
    1                             lane_count     1 … 8
    2                             reserved       zero
    4                             alphabet_size  1 … 65536; symbols are 0 … alphabet_size − 1
    ceil(5 × alphabet_size / 8)   code lengths   5 bits per symbol, LSB-first bit stream; 0 = absent
    4 × lane_count                lane lengths   bytes of each lane
    variable                      lanes          one after the other

Lengths: with ``K`` non-zero lengths, ``K = 1`` needs length 1 (code ``0``); ``K >= 2`` needs
Kraft's equality ``Σ 2^−length = 1``. Codes are canonical (DEFLATE): by (length, symbol), each the
previous plus one, shifted left by the difference of lengths. With ``S = ceil(count / lane_count)``
lane ``j`` codes symbols ``j×S … min((j+1)×S, count) − 1``, each code most significant bit first in
an LSB-first bit stream, then zero padding to a whole byte; nothing more.

The writer uses one lane below :data:`MULTI_LANE_MIN_COUNT` symbols (the lane lengths cost 4 bytes
each) and :data:`DEFAULT_LANES` lanes from there on, which lets the decoder overlap four
independent decoders in one loop.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from ..constants import ELEMENT_DTYPE, MAX_CODE_LENGTH, MAX_HUFFMAN_ALPHABET, MAX_HUFFMAN_LANES, Codec
from ..errors import (
    CorruptFileError,
    CountMismatchError,
    EncodingError,
    HuffmanTableError,
    TruncatedFileError,
)
from .. import kernels as _kernels
from ..kernels import small as _codes  # the kernels' error codes, without importing Numba
from . import EncodedStream, Prepared
from .plain import check_out

CODEC = Codec.HUFFMAN
DEFAULT_LANES = 4
MULTI_LANE_MIN_COUNT = 4096
SHORT_CODES_MIN_COUNT = 16384
"""From this many symbols on, the writer shortens the longest codes when that costs little (see
:func:`table_lengths`)."""
SHORT_CODES_BITS = 11
SHORT_CODES_TOLERANCE = 1 / 1024
LENGTH_BITS = 5
_HEADER = struct.Struct("<BBHI")  # max_length, lane_count, reserved, alphabet_size


class HuffmanTable(NamedTuple):
    """A parsed and validated HUFFMAN header."""

    max_length: int
    lengths: np.ndarray  # uint8, one per symbol of the alphabet
    lane_lengths: np.ndarray  # int64, bytes of each lane
    lanes_offset: int  # where the first lane starts in the payload


# --------------------------------------------------------------------------------------------
# Code lengths and canonical codes


def code_lengths(frequencies, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Optimal code lengths of at most ``max_length`` bits for symbol ``frequencies``.

    Minimises ``Σ frequency × length`` under the limit (package-merge). Absent symbols (frequency 0)
    get 0; a single present symbol gets length 1. Among equal frequencies a lower symbol never gets
    a longer code than a higher one. Returns uint8 lengths, one per entry of ``frequencies``.
    """
    freq = np.asarray(frequencies)
    if freq.ndim != 1 or freq.dtype.kind not in "ui" or (freq.size and freq.min() < 0):
        raise EncodingError("frequencies must be a 1-D array of non-negative integers")
    if not 1 <= max_length <= MAX_CODE_LENGTH:
        raise EncodingError(f"max_length {max_length} is outside 1 … {MAX_CODE_LENGTH}")
    present = np.flatnonzero(freq)
    if present.size == 0:
        raise EncodingError("no symbol has a non-zero frequency")
    if present.size > 1 << max_length:
        raise EncodingError(f"{present.size} symbols do not fit codes of {max_length} bits")
    lengths = np.zeros(freq.size, np.uint8)
    if present.size == 1:
        lengths[present] = 1
        return lengths
    order = present[np.lexsort((-present, freq[present]))]  # lightest first; ties: higher symbol
    lengths[order] = _kernels.jit("huffman").package_merge(freq[order].astype(np.int64), max_length)
    return lengths


def canonical_codes(lengths) -> np.ndarray:
    """The canonical codes of code ``lengths`` (spec §8.3, as DEFLATE); 0 for absent symbols.

    ``code = 0``; for each length ``L`` from 1 up, ``next_code[L] = code = (code + count[L−1]) << 1``
    with ``count[0] = 0``; symbols of length ``L`` take ``next_code[L], next_code[L] + 1, …`` in
    increasing symbol order. Returns uint32 codes, one per symbol.
    """
    lengths = np.asarray(lengths, np.int64)
    if lengths.size == 0:
        return np.zeros(0, np.uint32)
    count = np.bincount(lengths, minlength=int(lengths.max()) + 1)
    count[0] = 0
    next_code = np.zeros(count.size, np.int64)
    code = 0
    for length in range(1, count.size):
        code = (code + int(count[length - 1])) << 1
        next_code[length] = code
    order = np.argsort(lengths, kind="stable")  # by length, then by symbol
    sorted_lengths = lengths[order]
    rank = np.arange(lengths.size) - np.searchsorted(sorted_lengths, sorted_lengths, side="left")
    codes = np.zeros(lengths.size, np.int64)
    codes[order] = next_code[sorted_lengths] + rank
    codes[lengths == 0] = 0
    return codes.astype(np.uint32)


def _reversed_codes(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each code's ``length`` bits in reverse order: the order they take in an LSB-first stream."""
    c = codes.astype(np.uint32)
    for shift, mask in ((1, 0x5555), (2, 0x3333), (4, 0x0F0F), (8, 0x00FF)):
        c = ((c & mask) << shift) | ((c >> shift) & mask)  # reverses the low 16 bits
    return (c >> (16 - lengths.astype(np.uint32))).astype(np.uint32)


def check_lengths(lengths: np.ndarray, max_length: int) -> None:
    """Raise :class:`HuffmanTableError` unless ``lengths`` form a valid table (spec §8.3).

    Every length is 0 … ``max_length`` and one equals it; one present symbol has length 1; two or
    more satisfy Kraft's equality.
    """
    if not 1 <= max_length <= MAX_CODE_LENGTH:
        raise HuffmanTableError(f"Huffman max_length {max_length} is outside 1 … {MAX_CODE_LENGTH}")
    present = lengths[lengths > 0].astype(np.int64)
    if present.size == 0:
        raise HuffmanTableError("Huffman table has no symbol")
    longest = int(present.max())
    if longest != max_length:
        raise HuffmanTableError(f"Huffman code length {longest} but max_length {max_length}")
    if present.size == 1:
        if longest != 1:
            raise HuffmanTableError(f"single Huffman symbol has length {longest}, not 1")
        return
    kraft = int(np.sum(np.left_shift(1, max_length - present)))
    if kraft != 1 << max_length:
        kind = "over-subscribed" if kraft > 1 << max_length else "incomplete"
        raise HuffmanTableError(f"Huffman code lengths are {kind} (Kraft sum {kraft}/{1 << max_length})")


# --------------------------------------------------------------------------------------------
# Table serialization


def _pack_lengths(lengths: np.ndarray) -> bytes:
    """5 bits per length, least significant bit first, zero padding (spec §1 bit order)."""
    bits = (lengths.astype(np.uint8)[:, None] >> np.arange(LENGTH_BITS, dtype=np.uint8)) & 1
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


def _unpack_lengths(data: np.ndarray, alphabet_size: int) -> np.ndarray:
    bits = np.unpackbits(data, bitorder="little")
    if bits[LENGTH_BITS * alphabet_size:].any():
        raise HuffmanTableError("non-zero padding after the Huffman code lengths")
    weights = (1 << np.arange(LENGTH_BITS)).astype(np.uint8)
    return bits[:LENGTH_BITS * alphabet_size].reshape(alphabet_size, LENGTH_BITS) @ weights


def parse_table(payload, element_size: int = 2, bound: int | None = None) -> HuffmanTable:
    """Parse and validate a HUFFMAN payload's header, code lengths and lane lengths.

    Checks everything §8.3 says of them: ranges, reserved bytes, ``alphabet_size`` against
    ``bound`` and against ``element_size``, the lengths, and that the payload length is exactly
    the sum of its parts. Raises a :class:`CorruptFileError` subclass.
    """
    data = np.frombuffer(payload, np.uint8)
    if data.size < _HEADER.size:
        raise TruncatedFileError("HUFFMAN payload ends inside its header")
    max_length, lane_count, reserved, alphabet_size = _HEADER.unpack_from(data)
    if not 1 <= max_length <= MAX_CODE_LENGTH:
        raise HuffmanTableError(f"Huffman max_length {max_length} is outside 1 … {MAX_CODE_LENGTH}")
    if not 1 <= lane_count <= MAX_HUFFMAN_LANES:
        raise CorruptFileError(f"Huffman lane_count {lane_count} is outside 1 … {MAX_HUFFMAN_LANES}")
    if reserved:
        raise CorruptFileError("non-zero reserved field in a HUFFMAN header")
    limit = min(MAX_HUFFMAN_ALPHABET, 1 << (8 * element_size))
    if not 1 <= alphabet_size <= limit:
        raise HuffmanTableError(f"Huffman alphabet_size {alphabet_size} is outside 1 … {limit}")
    if bound is not None and alphabet_size > bound:
        raise HuffmanTableError(f"Huffman alphabet_size {alphabet_size} exceeds the bound {bound}")
    lengths_end = _HEADER.size + (LENGTH_BITS * alphabet_size + 7) // 8
    lanes_offset = lengths_end + 4 * lane_count
    if data.size < lanes_offset:
        raise TruncatedFileError("HUFFMAN payload ends inside its code or lane lengths")
    lengths = _unpack_lengths(data[_HEADER.size:lengths_end], alphabet_size)
    check_lengths(lengths, max_length)
    lane_lengths = data[lengths_end:lanes_offset].view("<u4").astype(np.int64)
    total = lanes_offset + int(lane_lengths.sum())
    if data.size < total:
        raise TruncatedFileError(f"HUFFMAN payload has {data.size} bytes, its parts {total}")
    if data.size > total:
        raise CorruptFileError(f"HUFFMAN payload has {data.size} bytes, its parts only {total}")
    return HuffmanTable(max_length, lengths, lane_lengths, lanes_offset)


def serialize(symbols: np.ndarray, lengths: np.ndarray, lane_count: int) -> bytes:
    """The HUFFMAN payload of ``symbols`` coded with the table ``lengths`` in ``lane_count`` lanes.

    ``lengths`` (one per symbol of the alphabet) must form a valid table and give every symbol of
    ``symbols`` a code; raises :class:`EncodingError` otherwise.
    """
    lengths = np.asarray(lengths, np.uint8)
    symbols = np.ascontiguousarray(symbols)
    if not 1 <= lengths.size <= MAX_HUFFMAN_ALPHABET:
        raise EncodingError(f"Huffman alphabet of {lengths.size} symbols")
    if not 1 <= lane_count <= MAX_HUFFMAN_LANES:
        raise EncodingError(f"lanes must be 1 … {MAX_HUFFMAN_LANES}, not {lane_count}")
    if symbols.size == 0 or symbols.max() >= lengths.size \
            or np.bincount(symbols, minlength=lengths.size)[lengths == 0].any():
        raise EncodingError("symbols without a code in the table (or no symbols)")
    try:
        check_lengths(lengths, int(lengths.max()))
    except HuffmanTableError as error:
        raise EncodingError(str(error)) from None
    per_lane = -(-symbols.size // lane_count)
    lane_bytes = (_kernels.jit("huffman").lane_bits(symbols, lengths, lane_count, per_lane) + 7) // 8
    return _serialize(symbols, lengths, lane_count, lane_bytes)


def _serialize(symbols, lengths, lane_count, lane_bytes) -> bytes:
    """:func:`serialize` without its checks, given each lane's exact bytes."""
    if lane_bytes.max() > 0xFFFF_FFFF:
        raise EncodingError("a Huffman lane longer than 4 GiB")
    reversed_codes = _reversed_codes(canonical_codes(lengths), lengths)
    per_lane = -(-symbols.size // lane_count)
    lane_offsets = np.concatenate(([0], np.cumsum(lane_bytes)[:-1])).astype(np.int64)
    lanes = np.empty(int(lane_bytes.sum()), np.uint8)
    _kernels.jit("huffman").encode_lanes(symbols, reversed_codes, lengths, per_lane, lane_offsets, lanes)
    header = _HEADER.pack(int(lengths.max()), lane_count, 0, lengths.size)
    return header + _pack_lengths(lengths) + lane_bytes.astype("<u4").tobytes() + lanes.tobytes()


# --------------------------------------------------------------------------------------------
# The codec interface


def table_lengths(frequencies, count: int) -> np.ndarray:
    """The writer's code lengths: optimal, but with the longest code shortened to the fewest bits
    from :data:`SHORT_CODES_BITS` up that cost at most :data:`SHORT_CODES_TOLERANCE` (0.1 %) more
    coded bits, for streams of :data:`SHORT_CODES_MIN_COUNT` symbols or more.

    The decoder's table has ``2 ** max_length`` entries of 4 bytes: 8 KiB at 11 bits stays in the
    L1 cache and is built in a microsecond, 256 KiB at 16 bits does neither. On MiniLM's Deep
    Compression file (optimal codes up to 16 bits) this costs 668 bytes (0.03 %) and a third of
    the time spent building tables and decoding lanes.
    """
    best = code_lengths(frequencies, MAX_CODE_LENGTH)
    if count < SHORT_CODES_MIN_COUNT or int(best.max()) <= SHORT_CODES_BITS:
        return best
    frequencies = np.asarray(frequencies, np.int64)
    budget = float((frequencies * best).sum()) * (1 + SHORT_CODES_TOLERANCE)
    present = int(np.count_nonzero(frequencies))
    for bits in range(max(SHORT_CODES_BITS, (present - 1).bit_length()), int(best.max())):
        lengths = code_lengths(frequencies, bits)
        if float((frequencies * lengths).sum()) <= budget:
            return lengths
    return best


def prepare(elements, element_size: int, *, limit: int | None = None, lanes: int | None = None,
            max_length: int | None = None) -> Prepared:
    """The exact size of :func:`encode`'s payload, from one counting pass; ``finish()`` encodes.

    ``limit`` is accepted for the codec interface and not used: the size is exact and cheap.
    """
    if element_size not in ELEMENT_DTYPE:
        raise EncodingError(f"element_size must be 1, 2, 4 or 8, not {element_size}")
    symbols = np.asarray(elements)
    if symbols.ndim != 1 or symbols.dtype.kind != "u" or symbols.size == 0:
        raise EncodingError("HUFFMAN encodes a non-empty 1-D array of unsigned integers")
    alphabet = int(symbols.max()) + 1
    if alphabet > min(MAX_HUFFMAN_ALPHABET, 1 << (8 * element_size)):
        raise EncodingError(f"HUFFMAN symbols must be below 65536 and fit {element_size} bytes")
    if max_length is not None and not 1 <= max_length <= MAX_CODE_LENGTH:
        raise EncodingError(f"max_length {max_length} is outside 1 … {MAX_CODE_LENGTH}")
    symbols = np.ascontiguousarray(symbols, ELEMENT_DTYPE[min(element_size, 2)])
    if lanes is None:
        lanes = 1 if symbols.size < MULTI_LANE_MIN_COUNT else DEFAULT_LANES
    if not 1 <= lanes <= MAX_HUFFMAN_LANES:
        raise EncodingError(f"lanes must be 1 … {MAX_HUFFMAN_LANES}, not {lanes}")
    per_lane = -(-symbols.size // lanes)
    counts = _kernels.jit("huffman").lane_histograms(symbols, lanes, per_lane, alphabet)
    frequencies = counts.sum(axis=0)
    if max_length is None:
        lengths = table_lengths(frequencies, symbols.size)
    else:
        lengths = code_lengths(frequencies, max_length)
    lane_bytes = (counts @ lengths.astype(np.int64) + 7) // 8
    if lane_bytes.max() > 0xFFFF_FFFF:
        raise EncodingError("a Huffman lane longer than 4 GiB")
    size = _HEADER.size + (LENGTH_BITS * alphabet + 7) // 8 + 4 * lanes + int(lane_bytes.sum())
    return Prepared(size, lambda: EncodedStream(CODEC, 0, _serialize(symbols, lengths, lanes, lane_bytes)))


def encode(elements, element_size: int, *, lanes: int | None = None,
           max_length: int | None = None) -> EncodedStream:
    """Huffman-code ``elements`` (unsigned, < 65536) with optimal codes of at most ``max_length`` bits
    (None: :func:`table_lengths`, optimal up to 16 bits unless shorter codes cost under 0.1 %).

    The alphabet is ``0 … max(elements)``. ``lanes`` defaults to 1 below
    :data:`MULTI_LANE_MIN_COUNT` elements, else :data:`DEFAULT_LANES`. Raises
    :class:`EncodingError` for anything HUFFMAN cannot hold (so a writer tries other codecs).
    Deterministic: the same input gives the same bytes.
    """
    return prepare(elements, element_size, lanes=lanes, max_length=max_length).finish()


def decode(payload, count: int, element_size: int, param: int, bound: int | None, out=None) -> np.ndarray:
    """Decode ``count`` symbols; validates the whole payload first (spec §8.3).

    Raises :class:`HuffmanTableError` for a bad table, :class:`TruncatedFileError` for a payload or
    lane that ends early, :class:`CountMismatchError` for a ``count`` the bytes cannot hold, and
    :class:`CorruptFileError` for the rest (bad fields, invalid codes, padding, leftover bytes).
    """
    if element_size not in ELEMENT_DTYPE:
        raise CorruptFileError(f"HUFFMAN stream with element_size {element_size}")
    if param != 0:
        raise CorruptFileError(f"HUFFMAN stream with param {param}")
    data = np.frombuffer(payload, np.uint8)
    data.flags.writeable = False  # one kernel specialization for bytes, bytearray and mmap
    if not 1 <= count <= 8 * data.size:
        raise CountMismatchError(f"HUFFMAN stream of {data.size} bytes cannot hold {count} symbols")
    table = parse_table(data, element_size, bound)
    kernels = _kernels.for_count("huffman", count)
    lookup = kernels.build_table(table.lengths.astype(np.uint8, copy=False), table.max_length)
    lane_ends = table.lanes_offset + np.cumsum(table.lane_lengths)
    lane_starts = lane_ends - table.lane_lengths
    per_lane = -(-count // table.lane_lengths.size)
    # A lane needs at most max_length bits a symbol: a longer lane is corrupted (§8.3). Refused
    # before a kernel spends time, or scratch memory (~128 bytes a lane byte in numpy), on it.
    lane_symbols = np.clip(count - per_lane * np.arange(table.lane_lengths.size), 0, per_lane)
    too_long = table.lane_lengths > (lane_symbols * table.max_length + 7) // 8
    if too_long.any():
        j = int(np.argmax(too_long))
        raise CorruptFileError(f"HUFFMAN lane {j}: bytes after its last code ({int(table.lane_lengths[j])} "
                               f"bytes for {int(lane_symbols[j])} symbols of at most {table.max_length} bits)")
    complete = np.count_nonzero(table.lengths) >= 2
    # symbols are below 65536: the kernel writes 1- or 2-byte symbols, widened after for wider roles
    if element_size <= 2:
        out = symbols = check_out(out, count, ELEMENT_DTYPE[element_size])
    else:
        out = check_out(out, count, ELEMENT_DTYPE[element_size])
        symbols = np.empty(count, ELEMENT_DTYPE[2])
    error, lane = kernels.decode_lanes(data, lane_starts, lane_ends, lookup, table.max_length,
                                       per_lane, complete, symbols)
    if error != _codes.OK:
        raise _ERRORS[error](f"HUFFMAN lane {lane}: {_MESSAGES[error]}")
    if symbols is not out:
        out[...] = symbols
    return out


_ERRORS = {
    _codes.ERR_TRUNCATED: TruncatedFileError,
    _codes.ERR_INVALID_CODE: CorruptFileError,
    _codes.ERR_PADDING: CorruptFileError,
    _codes.ERR_LEFTOVER: CorruptFileError,
}
_MESSAGES = {
    _codes.ERR_TRUNCATED: "ends before its symbols are decoded",
    _codes.ERR_INVALID_CODE: "bits that match no code",
    _codes.ERR_PADDING: "non-zero padding bits",
    _codes.ERR_LEFTOVER: "bytes after its last code",
}
