"""BITPACK (spec §8.2): each element in ``param`` bits, least significant bit first.

``param`` is the width, 1 … 32 (``MAX_BITPACK_WIDTH``), and MUST NOT exceed ``8 × element_size``.
Elements follow each other without gaps in one bit stream (spec §1): bit 0 of the stream is bit 0
of its first byte. ``length`` MUST equal ``ceil(count × param / 8)``; the padding bits of the last
byte MUST be zero. Anything else is corrupted.
"""
from __future__ import annotations

import numpy as np

from ..constants import MAX_BITPACK_WIDTH, Codec
from ..errors import CorruptFileError, CountMismatchError, EncodingError
from .. import kernels
from . import EncodedStream, Prepared, _done
from .plain import as_elements, check_count, check_out, element_dtype

CODEC = Codec.BITPACK


def packed_size(count: int, width: int) -> int:
    """``ceil(count × width / 8)``: the exact length of a BITPACK stream."""
    return (count * width + 7) // 8


def encode(elements, element_size: int, width: int | None = None) -> EncodedStream:
    """Pack the elements in ``width`` bits each; ``param`` is the width.

    ``width=None`` takes the least width that holds the largest element, at least 1. Raises
    :class:`EncodingError` for no elements (they must be PLAIN), an element of 2 ** 32 or more, or a
    ``width`` too small for an element, above 32 or above ``8 × element_size``.
    """
    a = as_elements(elements, element_size)
    if a.size == 0:
        raise EncodingError("a stream of 0 elements must use PLAIN, not BITPACK")
    needed = max(1, int(a.max()).bit_length())
    if width is None:
        width = needed
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
        raise EncodingError(f"BITPACK width must be an integer, got {width!r}")
    width = int(width)
    if not 1 <= width <= min(MAX_BITPACK_WIDTH, 8 * element_size):
        raise EncodingError(
            f"BITPACK width must be 1 … {min(MAX_BITPACK_WIDTH, 8 * element_size)} for "
            f"{element_size}-byte elements, got {width}")
    if needed > width:
        raise EncodingError(f"an element needs {needed} bits, more than the width {width}")
    out = np.empty(packed_size(a.size, width), np.uint8)
    kernels.jit("bitpack").pack(a, width, out)
    return EncodedStream(CODEC, width, out.tobytes())


def prepare(elements, element_size: int, *, limit: int | None = None, width: int | None = None) -> Prepared:
    """The exact size, ``ceil(count × width / 8)``, before packing (``limit`` is not used)."""
    a = as_elements(elements, element_size)
    if a.size == 0:
        raise EncodingError("a stream of 0 elements must use PLAIN, not BITPACK")
    needed = max(1, int(a.max()).bit_length())
    chosen = needed if width is None else width
    if isinstance(chosen, bool) or not isinstance(chosen, (int, np.integer)) \
            or not needed <= chosen <= min(MAX_BITPACK_WIDTH, 8 * element_size):
        return _done(encode(a, element_size, width))  # raises the encoder's own error
    return Prepared(packed_size(a.size, int(chosen)), lambda: encode(a, element_size, int(chosen)))


def decode(payload, count: int, element_size: int, param: int, bound=None, out=None) -> np.ndarray:
    """``count`` elements of ``param`` bits each, after checking the width, the exact length and
    the padding bits."""
    dtype = element_dtype(element_size)
    count = check_count(count, param, CODEC)
    width = int(param)
    if not 1 <= width <= MAX_BITPACK_WIDTH or width > 8 * element_size:
        raise CorruptFileError(
            f"BITPACK width {width}: must be 1 … {MAX_BITPACK_WIDTH} and at most "
            f"{8 * element_size} for {element_size}-byte elements")
    data = np.frombuffer(memoryview(payload).cast("B"), dtype=np.uint8)
    expected = packed_size(count, width)
    if data.size != expected:
        raise CountMismatchError(
            f"BITPACK stream of {count} elements of {width} bits has {data.size} bytes, "
            f"not {expected}")
    used = (count * width) % 8
    if used and data[-1] >> used:
        raise CorruptFileError("BITPACK stream: non-zero padding bits in its last byte")
    out = check_out(out, count, dtype)
    kernels.for_count("bitpack", count).unpack(data, width, out)
    return out
