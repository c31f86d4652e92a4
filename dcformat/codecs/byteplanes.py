"""BYTEPLANES (spec §8.5): the elements split into byte planes, each stored with its own codec.

As ZipNN does for floating-point weights: the exponent bytes of trained weights have low entropy,
the mantissa bytes almost none, so each plane gets the codec that suits it.

Payload, integers little-endian::

    size                 field               meaning
    1                    transform           0: none; 1: rotate
    1                    plane_count         MUST equal element_size (2, 4 or 8)
    2                    reserved            zero
    8 × plane_count      plane descriptors   each: codec u8 (PLAIN, HUFFMAN or ZSTD),
                                             3 reserved bytes (zero), length u32
    variable             planes              plane 0, plane 1, … one after the other

Plane ``j`` holds byte ``j`` (``j = 0`` the least significant) of every element: ``count`` bytes,
coded as a stream of ``count`` one-byte elements (bound 256). With ``transform = 1`` each element
``x`` of ``B = 8 × element_size`` bits was rotated left by one bit before the split,
``t = (x << 1 | x >> (B − 1)) mod 2^B``, so for IEEE floats the most significant plane holds the
exponent and the sign moves to bit 0; the decoder rotates back,
``x = t >> 1 | (t & 1) << (B − 1)``.
Another plane codec, ``element_size`` 1, a ``transform`` above 1, a ``plane_count`` other than
``element_size``, non-zero reserved bytes, or plane lengths that do not add up to the payload:
corrupted. No ``param`` (MUST be 0).
"""
from __future__ import annotations

import struct

import numpy as np

from ..constants import Codec, PlaneTransform
from ..errors import CorruptFileError, CountMismatchError, EncodingError, TruncatedFileError
from . import EncodedStream, Prepared, get_codec, prepare_smallest
from .plain import as_elements, check_count, check_out, element_dtype

CODEC = Codec.BYTEPLANES
PLANE_CODECS = frozenset({Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD})
"""Codecs a plane may use."""
PLANE_BOUND = 256
"""The role bound of a plane's elements (bytes): HUFFMAN's largest alphabet for a plane."""
HEADER_SIZE = 4
PLANE_DESCRIPTOR_SIZE = 8
_HEADER = struct.Struct("<BBH")
_PLANE = struct.Struct("<B3sI")


def rotate_left(x: np.ndarray) -> np.ndarray:
    """``t = (x << 1 | x >> (B − 1)) mod 2^B`` elementwise, ``B`` the bits of ``x``'s dtype."""
    bits = 8 * x.dtype.itemsize
    return (x << x.dtype.type(1)) | (x >> x.dtype.type(bits - 1))


def rotate_right(t: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rotate_left`: ``x = t >> 1 | (t & 1) << (B − 1)``."""
    bits = 8 * t.dtype.itemsize
    return (t >> t.dtype.type(1)) | ((t & t.dtype.type(1)) << t.dtype.type(bits - 1))


def _prepare_planes(a: np.ndarray, transform: PlaneTransform, plane_codecs, plane_options) -> Prepared:
    """Size the payload of ``a`` under ``transform``, each plane's codec chosen; ``finish()`` encodes."""
    from ..kernels import jit

    size = a.dtype.itemsize
    planes = np.empty((size, a.size), np.uint8)  # row j: byte j of every (transformed) element
    jit("elements").split_planes(a, transform == PlaneTransform.ROTATE, planes)
    prepared = []
    for j in range(size):
        plane = prepare_smallest(planes[j], 1, plane_codecs, plane_options)
        if plane.size > 0xFFFFFFFF:
            raise EncodingError("a byte plane is over 4 GiB; use smaller chunks")
        prepared.append(plane)

    def finish() -> EncodedStream:
        descriptors, payloads = [], []
        for plane in prepared:
            stream = plane.finish()
            if Codec(stream.codec) not in PLANE_CODECS or stream.param != 0:
                raise EncodingError(f"plane codec {stream.codec} cannot be stored in BYTEPLANES")
            descriptors.append(_PLANE.pack(stream.codec, b"\0\0\0", len(stream.payload)))
            payloads.append(stream.payload)
        return EncodedStream(CODEC, 0, b"".join([_HEADER.pack(transform, size, 0), *descriptors, *payloads]))

    return Prepared(HEADER_SIZE + PLANE_DESCRIPTOR_SIZE * size + sum(p.size for p in prepared), finish)


def prepare(elements, element_size: int, *, limit: int | None = None, transform: int | None = None,
            plane_codecs=(Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD), plane_options=None) -> Prepared:
    """The exact size of :func:`encode`'s payload; ``finish()`` encodes only the planes it chose.

    Every plane of every transform tried is sized (which costs a counting pass per plane, and for
    ZSTD candidates a compression); only the winning transform's planes are then encoded.
    ``limit`` is accepted for the codec interface and not used.
    """
    if element_size not in (2, 4, 8):
        raise EncodingError(f"BYTEPLANES needs 2-, 4- or 8-byte elements, got {element_size!r}")
    a = as_elements(elements, element_size)
    if a.size == 0:
        raise EncodingError("a stream of 0 elements must use PLAIN, not BYTEPLANES")
    try:
        plane_codecs = tuple(Codec(c) for c in plane_codecs)
    except ValueError as e:
        raise EncodingError(str(e)) from None
    if not plane_codecs or not set(plane_codecs) <= PLANE_CODECS:
        raise EncodingError(f"plane codecs must be among PLAIN, HUFFMAN, ZSTD, got {plane_codecs}")
    if transform is None:
        transforms = (PlaneTransform.NONE, PlaneTransform.ROTATE)
    else:
        try:
            transforms = (PlaneTransform(transform),)
        except ValueError:
            raise EncodingError(f"unknown BYTEPLANES transform {transform!r}") from None
    best = None
    for t in transforms:
        prepared = _prepare_planes(a, t, plane_codecs, plane_options)
        if best is None or prepared.size < best.size:
            best = prepared
    return best


def encode(elements, element_size: int, transform: int | None = None,
           plane_codecs=(Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD),
           plane_options=None) -> EncodedStream:
    """Split into byte planes and code each with the smallest of ``plane_codecs``.

    ``transform``: ``PlaneTransform.NONE`` (0), ``ROTATE`` (1), or ``None`` to try both and keep the
    smaller payload (ties go to NONE). ``plane_codecs``: candidates for every plane, a subset of
    PLAIN, HUFFMAN and ZSTD, tried by :func:`dcformat.codecs.encode_smallest`; ``plane_options``
    maps a codec to its encode options (e.g. ``{Codec.ZSTD: {"level": 3}}``). Raises
    :class:`EncodingError` for ``element_size`` 1 or no elements.
    """
    return prepare(elements, element_size, transform=transform, plane_codecs=plane_codecs,
                   plane_options=plane_options).finish()


def decode(payload, count: int, element_size: int, param: int = 0, bound=None, out=None) -> np.ndarray:
    """``count`` elements from their byte planes, after validating the whole header."""
    count = check_count(count, param, CODEC)
    if element_size not in (2, 4, 8):
        raise CorruptFileError(
            f"BYTEPLANES stream of {element_size}-byte elements: must be 2, 4 or 8")
    dtype = element_dtype(element_size)
    payload = memoryview(payload).cast("B")
    if len(payload) < HEADER_SIZE:
        raise TruncatedFileError(f"BYTEPLANES stream of {len(payload)} bytes: no header")
    transform, plane_count, reserved = _HEADER.unpack_from(payload, 0)
    if transform not in (PlaneTransform.NONE, PlaneTransform.ROTATE):
        raise CorruptFileError(f"unknown BYTEPLANES transform {transform}")
    if plane_count != element_size:
        raise CorruptFileError(f"BYTEPLANES plane_count {plane_count}, element_size {element_size}")
    if reserved:
        raise CorruptFileError("BYTEPLANES header: non-zero reserved bytes")
    start = HEADER_SIZE + PLANE_DESCRIPTOR_SIZE * plane_count
    if len(payload) < start:
        raise TruncatedFileError("BYTEPLANES stream ends inside its plane descriptors")
    planes = []
    for j in range(plane_count):
        codec, reserved, length = _PLANE.unpack_from(
            payload, HEADER_SIZE + PLANE_DESCRIPTOR_SIZE * j)
        if codec not in PLANE_CODECS:
            raise CorruptFileError(
                f"BYTEPLANES plane {j}: codec {codec} is not PLAIN, HUFFMAN or ZSTD")
        if reserved != b"\0\0\0":
            raise CorruptFileError(f"BYTEPLANES plane {j}: non-zero reserved bytes")
        planes.append((Codec(codec), start, length))
        start += length
    if start != len(payload):
        raise CountMismatchError(
            f"BYTEPLANES plane lengths add up to {start} bytes with the header, the payload has "
            f"{len(payload)}")
    scratch = None
    for j, (codec, offset, length) in enumerate(planes):
        # Each plane codec checks its length against count before it allocates; the planes are
        # allocated only once plane 0 has shown that its bytes can hold count elements.
        plane = get_codec(codec).decode(payload[offset:offset + length], count, 1, 0, PLANE_BOUND,
                                        out=None if scratch is None else scratch[j])
        if plane.shape != (count,):
            raise CountMismatchError(f"BYTEPLANES plane {j} decoded to {plane.shape[0]} bytes")
        if scratch is None:
            scratch = np.empty((plane_count, count), np.uint8)
            scratch[0] = plane
    # one pass: byte j of an element is plane j (little-endian), then the rotation undone
    from ..kernels import for_count

    out = check_out(out, count, dtype)
    for_count("elements", count).merge_planes(scratch, transform == PlaneTransform.ROTATE, out)
    return out
