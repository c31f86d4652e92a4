"""Bit-packing kernels (spec §1 bit order, §8.2 BITPACK).

A stream of ``width``-bit values, least significant bit first: bit 0 of the stream is bit 0 (value
1) of its first byte, and value ``i`` occupies stream bits ``i*width … i*width + width - 1``, its
least significant bit first. The unused high bits of the last byte are padding (zero).

Plain ``@njit(cache=True, nogil=True)`` functions over typed numpy arrays, no Python objects inside
(``nogil``: a reader decodes chunks on several threads at once). They do
not validate: :mod:`dcformat.codecs.bitpack` checks widths, lengths and padding first. Even so,
:func:`unpack` never reads past the end of ``data``, whatever its length.

Numba gotcha kept in mind throughout: ``uint64 op int64`` is ``float64`` in Numba, so every
operand of 64-bit bit arithmetic is cast to ``np.uint64`` explicitly.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def packed_size(count, width):
    """Bytes of ``count`` values of ``width`` bits: ``ceil(count * width / 8)``."""
    return (count * width + 7) // 8


@numba.njit(cache=True, nogil=True)
def pack(values, width, out):
    """Pack ``values`` (any unsigned dtype) in ``width`` bits each (1 … 32) into ``out``.

    ``out`` is a uint8 array of exactly ``ceil(len(values) * width / 8)`` bytes; every byte of it is
    written, the padding bits with zeros. Bits of a value above ``width`` are dropped (the caller
    checks that values fit).
    """
    w = np.uint64(width)
    mask = (np.uint64(1) << w) - np.uint64(1)
    acc = np.uint64(0)  # pending bits, the oldest in bit 0
    nbits = np.uint64(0)  # < 8 between values, so acc never holds more than 7 + 32 bits
    pos = 0
    for i in range(values.shape[0]):
        acc |= (np.uint64(values[i]) & mask) << nbits
        nbits += w
        while nbits >= np.uint64(8):
            out[pos] = np.uint8(acc & np.uint64(0xFF))
            acc >>= np.uint64(8)
            nbits -= np.uint64(8)
            pos += 1
    if nbits > np.uint64(0):
        out[pos] = np.uint8(acc)


@numba.njit(cache=True, nogil=True, inline="always")
def _load64(data, b):
    """The 8 bytes ``data[b:b+8]`` as a little-endian uint64 (LLVM turns this into one load)."""
    return (np.uint64(data[b])
            | (np.uint64(data[b + 1]) << np.uint64(8))
            | (np.uint64(data[b + 2]) << np.uint64(16))
            | (np.uint64(data[b + 3]) << np.uint64(24))
            | (np.uint64(data[b + 4]) << np.uint64(32))
            | (np.uint64(data[b + 5]) << np.uint64(40))
            | (np.uint64(data[b + 6]) << np.uint64(48))
            | (np.uint64(data[b + 7]) << np.uint64(56)))


@numba.njit(cache=True, nogil=True)
def unpack(data, width, out):
    """Unpack ``len(out)`` values of ``width`` bits (1 … 32) from the uint8 array ``data``.

    ``out`` may have any unsigned dtype wide enough for ``width`` bits. Reads only inside ``data``:
    values whose bits lie past its end are read as if the missing bytes were zero (the caller has
    already refused such a stream, since its length must be exact).
    """
    n = data.shape[0]
    count = out.shape[0]
    w = np.uint64(width)
    mask = (np.uint64(1) << w) - np.uint64(1)
    # Fast part: value i starts in byte (i*width) >> 3 and, with its shift of at most 7, ends within
    # that byte + 4 (width <= 32); it is read with one 8-byte load when that byte + 8 <= n, i.e.
    # for i*width < (n - 7) * 8.
    safe = 0
    if n >= 8:
        safe = min(count, ((n - 7) * 8 - 1) // width + 1)
    for i in range(safe):
        p = i * width
        word = _load64(data, p >> 3)
        out[i] = (word >> np.uint64(p & 7)) & mask
    # Tail: byte by byte, never past the end of data.
    for i in range(safe, count):
        p = i * width
        b = p >> 3
        word = np.uint64(0)
        k = 0
        while k < 5 and b + k < n:
            word |= np.uint64(data[b + k]) << np.uint64(8 * k)
            k += 1
        out[i] = (word >> np.uint64(p & 7)) & mask
