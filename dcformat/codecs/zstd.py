"""ZSTD (spec §8.4): one Zstandard frame (RFC 8878), whose content is the PLAIN form of the
elements.

The frame MUST state its ``Frame_Content_Size``, equal to ``count × element_size``, and the payload
MUST hold nothing after the frame (no second frame, no skippable frame). ``count × element_size``
greater than ``MAX_ZSTD_EXPANSION × length`` (65536) is corrupted: no valid frame expands that much
(an RLE block, the densest, turns 4 bytes into at most 128 KiB), so the decoder refuses such a
claim before it allocates anything. No ``param`` (MUST be 0).

Writer choices: the frame states its content size, and carries neither a checksum (the stream
descriptor's CRC-32 already covers the stored bytes) nor a dictionary id. The reader accepts a
frame with a content checksum (libzstd verifies it) and refuses one that needs a dictionary.

Reader, in order: the expansion bound; the frame magic (a skippable frame is refused); the frame
header's content size, which must be stated and equal ``count × element_size``; then one-shot
decompression into a buffer of exactly that size, which fails if the frame would produce more or
less, or leaves input unused. Every ``zstandard.ZstdError`` becomes a :class:`CorruptFileError`.
"""
from __future__ import annotations

import numpy as np
import zstandard

from ..constants import MAX_ZSTD_EXPANSION, Codec
from ..errors import CorruptFileError, CountMismatchError, EncodingError, LimitExceededError
from . import EncodedStream, _done
from .plain import as_elements, check_count, check_out, element_dtype

CODEC = Codec.ZSTD

FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
"""Magic number of a Zstandard frame (RFC 8878 §3.1.1), little-endian 0xFD2FB528."""


def encode(elements, element_size: int, level: int = 19) -> EncodedStream:
    """Compress the PLAIN form of the elements into one frame at ``level`` (zstd's levels, up to
    22; 19 by default). Raises :class:`EncodingError` for no elements (they must be PLAIN)."""
    a = as_elements(elements, element_size)
    if a.size == 0:
        raise EncodingError("a stream of 0 elements must use PLAIN, not ZSTD")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) \
            or not -(1 << 17) <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise EncodingError(f"zstd level must be an integer up to "
                            f"{zstandard.MAX_COMPRESSION_LEVEL}, got {level!r}")
    compressor = zstandard.ZstdCompressor(level=int(level), write_content_size=True,
                                          write_checksum=False, write_dict_id=False)
    return EncodedStream(CODEC, 0, compressor.compress(a))


PROBE_LEVEL = 1
"""The fast level :func:`prepare` tries first."""
PROBE_MIN_BYTES = 8192
"""Streams up to this size are always compressed at the asked level: cheap, and where zstd's high
levels gain most over a probe (on the MiniLM streams, no probe below this size ever lost a byte)."""


def prepare(elements, element_size: int, *, limit: int | None = None, level: int = 19) -> Prepared | None:
    """Compress at ``level``, unless a fast probe says the result would not come under ``limit``.

    For a stream of more than :data:`PROBE_MIN_BYTES` bytes with ``limit`` given (the best size
    another codec reached), it first compresses at :data:`PROBE_LEVEL`; if that is larger than
    ``limit``, it returns None without the slow compression. A guess, since a high level can beat
    the probe by a few per cent; measured on MiniLM: its Deep Compression file came out the same
    to the byte (some 1,900 streams where zstd was a candidate, a tenth of the zstd time), its
    lossless file 0.008 % larger.
    """
    a = as_elements(elements, element_size)
    if limit is not None and a.nbytes > PROBE_MIN_BYTES and isinstance(level, (int, np.integer)) \
            and not isinstance(level, bool) and level > PROBE_LEVEL:
        probe = zstandard.ZstdCompressor(level=PROBE_LEVEL, write_content_size=True,
                                         write_checksum=False, write_dict_id=False)
        if len(probe.compress(a)) > limit:
            return None
    return _done(encode(a, element_size, level))


def decode(payload, count: int, element_size: int, param: int = 0, bound=None, out=None) -> np.ndarray:
    """``count`` elements from one frame stating ``count × element_size`` bytes of content."""
    dtype = element_dtype(element_size)
    count = check_count(count, param, CODEC)
    payload = memoryview(payload).cast("B")
    expected = count * dtype.itemsize
    if expected > MAX_ZSTD_EXPANSION * len(payload):
        raise LimitExceededError(
            f"ZSTD stream of {len(payload)} bytes cannot hold {expected} bytes "
            f"(more than {MAX_ZSTD_EXPANSION} per stored byte)")
    if bytes(payload[:4]) != FRAME_MAGIC:
        raise CorruptFileError("ZSTD stream does not start with a Zstandard frame")
    try:
        content_size = zstandard.get_frame_parameters(payload).content_size
    except zstandard.ZstdError as e:
        raise CorruptFileError(f"ZSTD stream: bad frame header ({e})") from None
    if content_size == zstandard.CONTENTSIZE_UNKNOWN:
        raise CorruptFileError("ZSTD frame does not state its content size")
    if content_size != expected:
        raise CountMismatchError(
            f"ZSTD frame states {content_size} bytes of content, not {expected}")
    try:
        raw = zstandard.ZstdDecompressor().decompress(
            payload, max_output_size=expected, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise CorruptFileError(f"ZSTD stream: {e}") from None
    if len(raw) != expected:  # libzstd already checks this; kept as the spec's rule, cheaply
        raise CorruptFileError(f"ZSTD frame decoded to {len(raw)} bytes, not {expected}")
    out = check_out(out, count, dtype)
    out[...] = np.frombuffer(raw, dtype=dtype)
    return out
