"""A slow, obviously-correct HUFFMAN codec (spec §8.3) in pure Python, bit by bit.

Written from the spec text alone, as a reference for the Numba kernels: lists of bits, a dict from
(length, code) to symbol, and every rule of §8.3 checked where the text states it. Errors are
:class:`NaiveError` with a short reason.
"""
from __future__ import annotations

import numpy as np

MAX_CODE_LENGTH = 16
MAX_HUFFMAN_LANES = 8


class NaiveError(Exception):
    """The payload is corrupted (spec §8.3)."""


# Bit streams (spec §1): bit 0 of a stream is bit 0 (value 1) of its first byte.


def bytes_to_bits(data: bytes) -> list[int]:
    return [(byte >> i) & 1 for byte in data for i in range(8)]


def bits_to_bytes(bits: list[int]) -> bytes:
    bits = bits + [0] * (-len(bits) % 8)  # zero padding to a whole byte
    return bytes(sum(bits[i + k] << k for k in range(8)) for i in range(0, len(bits), 8))


def value_bits(value: int, width: int) -> list[int]:
    """A ``width``-bit value, least significant bit first."""
    return [(value >> i) & 1 for i in range(width)]


def code_bits(code: int, length: int) -> list[int]:
    """A Huffman code, most significant bit first."""
    return [(code >> (length - 1 - i)) & 1 for i in range(length)]


def canonical_codes(lengths: list[int]) -> dict[int, tuple[int, int]]:
    """symbol -> (length, code), exactly as §8.3 states it."""
    max_length = max(lengths)
    count = [0] * (max_length + 1)
    for length in lengths:
        if length:
            count[length] += 1
    count[0] = 0
    next_code = [0] * (max_length + 1)
    code = 0
    for length in range(1, max_length + 1):
        code = (code + count[length - 1]) << 1
        next_code[length] = code
    codes = {}
    for length in range(1, max_length + 1):
        for symbol, symbol_length in enumerate(lengths):
            if symbol_length == length:
                codes[symbol] = (length, next_code[length])
                next_code[length] += 1
    return codes


def lane_ranges(count: int, lane_count: int) -> list[range]:
    per_lane = -(-count // lane_count)  # S = ceil(count / lane_count)
    return [range(min(j * per_lane, count), min((j + 1) * per_lane, count)) for j in range(lane_count)]


def encode(symbols: list[int], lengths: list[int], lane_count: int) -> bytes:
    """The payload of ``symbols`` with code ``lengths`` (written as given, valid or not)."""
    codes = canonical_codes(lengths)
    length_bits = []
    for length in lengths:
        length_bits += value_bits(length, 5)
    lanes = []
    for lane in lane_ranges(len(symbols), lane_count):
        bits = []
        for i in lane:
            bits += code_bits(codes[symbols[i]][1], codes[symbols[i]][0])
        lanes.append(bits_to_bytes(bits))
    header = bytes([max(lengths), lane_count, 0, 0]) + len(lengths).to_bytes(4, "little")
    lane_lengths = b"".join(len(lane).to_bytes(4, "little") for lane in lanes)
    return header + bits_to_bytes(length_bits) + lane_lengths + b"".join(lanes)


def decode(payload: bytes, count: int, element_size: int = 2, bound: int | None = None) -> list[int]:
    """Decode ``count`` symbols, raising :class:`NaiveError` for anything §8.3 calls corrupted."""
    payload = bytes(payload)
    if count > 8 * len(payload):
        raise NaiveError("count > 8 × length")
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(payload):
            raise NaiveError("payload ends early")
        pos += n
        return payload[pos - n:pos]

    max_length, lane_count = take(1)[0], take(1)[0]
    reserved = int.from_bytes(take(2), "little")
    alphabet_size = int.from_bytes(take(4), "little")
    if not 1 <= max_length <= MAX_CODE_LENGTH:
        raise NaiveError("max_length")
    if not 1 <= lane_count <= MAX_HUFFMAN_LANES:
        raise NaiveError("lane_count")
    if reserved != 0:
        raise NaiveError("reserved")
    if not 1 <= alphabet_size <= min(65536, 256 ** element_size):
        raise NaiveError("alphabet_size")
    if bound is not None and alphabet_size > bound:
        raise NaiveError("alphabet_size > bound")
    length_bits = bytes_to_bits(take((5 * alphabet_size + 7) // 8))
    lengths = [sum(length_bits[5 * s + i] << i for i in range(5)) for s in range(alphabet_size)]
    if any(length_bits[5 * alphabet_size:]):
        raise NaiveError("code-length padding")
    check_lengths(lengths, max_length)
    lane_lengths = [int.from_bytes(take(4), "little") for _ in range(lane_count)]
    lanes = [take(n) for n in lane_lengths]
    if pos != len(payload):
        raise NaiveError("bytes after the lanes")
    decoding = {code: symbol for symbol, code in canonical_codes(lengths).items()}
    out = []
    for lane, lane_range in zip(lanes, lane_ranges(count, lane_count)):
        out += decode_lane(lane, len(lane_range), decoding, max_length)
    return out


def check_lengths(lengths: list[int], max_length: int) -> None:
    present = [length for length in lengths if length]
    if any(length > max_length for length in lengths) or max_length not in lengths:
        raise NaiveError("lengths vs max_length")
    if len(present) == 1:
        if present[0] != 1:
            raise NaiveError("single symbol length")
    elif sum(2.0 ** -length for length in present) != 1.0:  # exact: powers of two, few terms
        raise NaiveError("Kraft")


def decode_lane(lane: bytes, n: int, decoding: dict, max_length: int) -> list[int]:
    bits = bytes_to_bits(lane)
    i = 0
    out = []
    for _ in range(n):
        length, code = 0, 0
        while (length, code) not in decoding:
            if length == max_length:
                raise NaiveError("no code matches")
            if i == len(bits):
                raise NaiveError("lane ends early")
            code = code << 1 | bits[i]
            length += 1
            i += 1
        out.append(decoding[(length, code)])
    if len(lane) != (i + 7) // 8:
        raise NaiveError("lane length is not the bytes its codes need")
    if any(bits[i:]):
        raise NaiveError("lane padding")
    return out


def random_lengths(rng, alphabet, max_length, present=None):
    """Valid code lengths: a random complete code (or one symbol) over a random subset."""
    present = present or int(rng.integers(1, min(alphabet, 1 << max_length) + 1))
    symbols = np.sort(rng.choice(alphabet, size=present, replace=False))
    lengths = np.zeros(alphabet, np.uint8)
    if present == 1:
        lengths[symbols] = 1
        return lengths
    leaves = [0] * (max_length + 1)  # leaves per depth: split a leaf at a random depth
    leaves[0] = 1
    for _ in range(present - 1):
        depths = [d for d in range(max_length) if leaves[d]]
        d = depths[int(rng.integers(len(depths)))]
        leaves[d] -= 1
        leaves[d + 1] += 2
    lengths[symbols] = rng.permutation(np.repeat(np.arange(max_length + 1), leaves))
    return lengths
