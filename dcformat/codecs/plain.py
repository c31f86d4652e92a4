"""PLAIN (spec §8.1): the elements, each ``element_size`` bytes, little-endian.

``length`` MUST equal ``count × element_size``. PLAIN is also the one codec of a stream with
``count = 0`` (``length = 0``, spec §8). No ``param`` (MUST be 0).

This module also holds the element helpers the other codecs share: :func:`as_elements` (writer
side) and :func:`check_count` (reader side).
"""
from __future__ import annotations

import numpy as np

from ..constants import ELEMENT_DTYPE, Codec
from ..errors import CorruptFileError, CountMismatchError, EncodingError
from . import EncodedStream, Prepared

CODEC = Codec.PLAIN


def element_dtype(element_size: int) -> np.dtype:
    """The little-endian unsigned dtype of ``element_size`` (1, 2, 4 or 8) bytes."""
    try:
        return ELEMENT_DTYPE[element_size]
    except (KeyError, TypeError):
        raise ValueError(f"element_size must be 1, 2, 4 or 8, got {element_size!r}") from None


def as_elements(elements, element_size: int) -> np.ndarray:
    """``elements`` as a C-contiguous 1-D array of the little-endian dtype of ``element_size``.

    Accepts any unsigned integer dtype; raises :class:`EncodingError` for another dtype, another
    shape, or a value that does not fit in ``element_size`` bytes.
    """
    try:
        dtype = element_dtype(element_size)
    except ValueError as e:
        raise EncodingError(str(e)) from None
    a = np.asarray(elements)
    if a.ndim != 1:
        raise EncodingError(f"stream elements must be a 1-D array, got {a.ndim}-D")
    if a.dtype.kind != "u":
        raise EncodingError(f"stream elements must be unsigned integers, got {a.dtype}")
    if a.dtype.itemsize > dtype.itemsize and a.size and int(a.max()) >> (8 * dtype.itemsize):
        raise EncodingError(f"an element does not fit in {element_size} bytes")
    return np.ascontiguousarray(a, dtype=dtype)


def check_count(count: int, param: int, codec: Codec) -> int:
    """Reader checks shared by every codec but PLAIN: ``count >= 1`` (a stream of no elements MUST
    be PLAIN, spec §8) and ``param == 0`` (spec §4.5; BITPACK checks its own ``param``)."""
    count = int(count)
    if count < 0:
        raise ValueError(f"negative count {count}")
    if count == 0:
        raise CorruptFileError(f"a stream of 0 elements must use PLAIN, not {codec.name}")
    if codec != Codec.BITPACK and param != 0:
        raise CorruptFileError(f"{codec.name} stream with param {param}: must be 0")
    return count


def check_out(out, count: int, dtype: np.dtype) -> np.ndarray:
    """The ``out`` argument of a codec's ``decode``, checked; a new array when ``out`` is None."""
    dtype = np.dtype(dtype).newbyteorder("=")
    if out is None:
        return np.empty(count, dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != (count,) \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise TypeError(f"out must be a writable C-contiguous 1-D {dtype} array of {count} elements")
    return out


def encode(elements, element_size: int) -> EncodedStream:
    """Store the elements as they are, little-endian."""
    return EncodedStream(CODEC, 0, as_elements(elements, element_size).tobytes())


def prepare(elements, element_size: int, *, limit: int | None = None) -> Prepared:
    """``count × element_size`` bytes, known before encoding (``limit`` is not used)."""
    a = as_elements(elements, element_size)
    return Prepared(a.nbytes, lambda: EncodedStream(CODEC, 0, a.tobytes()))


def decode(payload, count: int, element_size: int, param: int = 0, bound=None, out=None) -> np.ndarray:
    """``count`` elements from exactly ``count × element_size`` bytes (a new, writable array, or
    ``out``)."""
    dtype = element_dtype(element_size)
    count = int(count)
    if count < 0:
        raise ValueError(f"negative count {count}")
    if param != 0:
        raise CorruptFileError(f"PLAIN stream with param {param}: must be 0")
    payload = memoryview(payload).cast("B")
    if len(payload) != count * dtype.itemsize:
        raise CountMismatchError(
            f"PLAIN stream of {count} elements of {element_size} bytes has {len(payload)} bytes, "
            f"not {count * dtype.itemsize}")
    out = check_out(out, count, dtype)
    out[...] = np.frombuffer(payload, dtype=dtype)
    return out
