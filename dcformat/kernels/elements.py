"""Kernels over whole streams of decoded elements: codebook lookup (spec §7.2) and the merging of
byte planes (spec §8.5).

Plain ``@njit(cache=True, nogil=True)`` functions over typed numpy arrays, no Python objects inside
(``nogil``: chunks decode on several threads at once). Each replaces a chain of numpy passes and
temporaries with one pass that writes straight into the caller's output.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def take(table, symbols, out):
    """``out[i] = table[symbols[i]]``; returns -1, or the index of the first symbol that is
    ``>= len(table)`` (``out`` is then partly written). ``len(out) == len(symbols)``."""
    k = table.shape[0]
    for i in range(symbols.shape[0]):
        s = np.int64(symbols[i])
        if s >= k:
            return i
        out[i] = table[s]
    return -1


def merge_planes(planes, rotate, out):
    """``out[i]`` from its bytes ``planes[j, i]`` (``j = 0`` the least significant), then rotated
    right by one bit if ``rotate``: ``x = t >> 1 | (t & 1) << (B - 1)`` with ``B = 8 × P`` bits.

    ``planes`` is a C-contiguous ``P x len(out)`` uint8 array, ``P`` (2, 4 or 8) the byte size of
    ``out``'s elements (uint16, uint32, uint64).
    """
    kernel = {2: _merge2, 4: _merge4, 8: _merge8}[planes.shape[0]]
    kernel(planes, bool(rotate), out)


# One kernel per plane count, in the element width itself: loops the compiler vectorizes.

@numba.njit(cache=True, nogil=True)
def _merge2(planes, rotate, out):
    one, top = np.uint16(1), np.uint16(15)
    for i in range(out.shape[0]):
        t = np.uint16(planes[0, i]) | (np.uint16(planes[1, i]) << np.uint16(8))
        out[i] = ((t >> one) | ((t & one) << top)) if rotate else t


@numba.njit(cache=True, nogil=True)
def _merge4(planes, rotate, out):
    one, top = np.uint32(1), np.uint32(31)
    for i in range(out.shape[0]):
        t = (np.uint32(planes[0, i]) | (np.uint32(planes[1, i]) << np.uint32(8))
             | (np.uint32(planes[2, i]) << np.uint32(16)) | (np.uint32(planes[3, i]) << np.uint32(24)))
        out[i] = ((t >> one) | ((t & one) << top)) if rotate else t


@numba.njit(cache=True, nogil=True)
def _merge8(planes, rotate, out):
    one, top = np.uint64(1), np.uint64(63)
    for i in range(out.shape[0]):
        t = np.uint64(0)
        for j in range(8):
            t |= np.uint64(planes[j, i]) << np.uint64(8 * j)
        out[i] = ((t >> one) | ((t & one) << top)) if rotate else t


def split_planes(values, rotate, planes):
    """The inverse of :func:`merge_planes`: ``planes[j, i]`` = byte ``j`` of ``values[i]``, after
    rotating it left by one bit if ``rotate`` (``t = x << 1 | x >> (B - 1)``).

    ``values``: uint16, uint32 or uint64; ``planes``: C-contiguous ``P x len(values)`` uint8.
    """
    kernel = {2: _split2, 4: _split4, 8: _split8}[planes.shape[0]]
    kernel(values, bool(rotate), planes)


@numba.njit(cache=True, nogil=True)
def _split2(values, rotate, planes):
    one, top, mask = np.uint16(1), np.uint16(15), np.uint16(0xFF)
    for i in range(values.shape[0]):
        x = values[i]
        t = ((x << one) | (x >> top)) if rotate else x
        planes[0, i] = np.uint8(t & mask)
        planes[1, i] = np.uint8(t >> np.uint16(8))


@numba.njit(cache=True, nogil=True)
def _split4(values, rotate, planes):
    one, top, mask = np.uint32(1), np.uint32(31), np.uint32(0xFF)
    for i in range(values.shape[0]):
        x = values[i]
        t = ((x << one) | (x >> top)) if rotate else x
        planes[0, i] = np.uint8(t & mask)
        planes[1, i] = np.uint8((t >> np.uint32(8)) & mask)
        planes[2, i] = np.uint8((t >> np.uint32(16)) & mask)
        planes[3, i] = np.uint8(t >> np.uint32(24))


@numba.njit(cache=True, nogil=True)
def _split8(values, rotate, planes):
    one, top, mask = np.uint64(1), np.uint64(63), np.uint64(0xFF)
    for i in range(values.shape[0]):
        x = values[i]
        t = ((x << one) | (x >> top)) if rotate else x
        for j in range(8):
            planes[j, i] = np.uint8((t >> np.uint64(8 * j)) & mask)
