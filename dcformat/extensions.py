"""Version 1.1's extension records (spec §4.6): attachments (files stored byte-exact beside the
tensors) and aliases (a second name for a tensor entry, for tied weights).

Shared by the index reader (parsing and checking the records), the reader (decoding an
attachment), the writer (encoding one) and the tools that write attachments to a folder
(:func:`attachment_name_problem`, :func:`attachment_path`). Imports no codec at module level.
"""
from __future__ import annotations

import os
import struct
from typing import NamedTuple

import numpy as np

from .constants import (
    ATTACHMENT_CODECS,
    DEFAULT_MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENT_BYTES,
    MAX_NAME_LENGTH,
    Codec,
    Role,
)
from .errors import ChecksumError, CorruptFileError, CountMismatchError, EncodingError, LimitExceededError
from .structures import StreamInfo

ATTACHMENT_ALPHABET = 256
"""The HUFFMAN alphabet bound of an attachment stream: its elements are bytes (spec §4.6.1)."""


class AttachmentInfo(NamedTuple):
    """One ATTACHMENT record (spec §4.6.1): the file's name, its size in bytes and its stream
    (whose ``offset`` the index reader computed, spec §5)."""

    name: str
    size: int
    stream: StreamInfo


def attachment_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid attachment name (spec §4.6.1), or None when it is one.

    A valid name is a relative POSIX path of 1 … MAX_NAME_LENGTH bytes of UTF-8 whose components
    (split at ``/``) are non-empty, not ``.`` or ``..``, and hold no backslash, no colon and no
    control character (U+0000 … U+001F, U+007F … U+009F): it names the same file inside a folder on
    every operating system, and never one outside it."""
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    if not 1 <= len(raw) <= MAX_NAME_LENGTH:
        return f"must be 1..{MAX_NAME_LENGTH} bytes of UTF-8"
    for ch in name:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"holds the control character U+{code:04X}"
        if ch in "\\:":
            return f"holds {ch!r} (a path separator or drive mark outside POSIX)"
    if name.startswith("/"):
        return "is an absolute path (starts with '/')"
    for part in name.split("/"):
        if part == "":
            return "has an empty path component ('//' or a trailing '/')"
        if part in (".", ".."):
            return f"has a {part!r} path component"
    return None


def attachment_path(folder: str | os.PathLike, name: str) -> str:
    """Where attachment ``name`` goes inside ``folder``: the name checked again (a file written by
    another tool may break the rules) and the result checked to lie inside ``folder``."""
    problem = attachment_name_problem(name)
    if problem is not None:
        raise CorruptFileError(f"attachment name {name[:80]!r} {problem}")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, *name.split("/")))
    if os.path.commonpath([root, path]) != root:  # a symbolic link inside the folder pointing out
        raise CorruptFileError(f"attachment {name!r} would be written outside {os.fspath(folder)!r}")
    return path


def parse_attachment(payload: bytes) -> AttachmentInfo:
    """An ATTACHMENT record's payload (spec §4.6.1), checked; its stream's offset is not known yet."""
    if len(payload) < 2:
        raise CorruptFileError("an attachment record ends inside its name length")
    (name_length,) = struct.unpack_from("<H", payload, 0)
    if not 1 <= name_length <= MAX_NAME_LENGTH:
        raise CorruptFileError(f"attachment name length {name_length} outside 1..{MAX_NAME_LENGTH}")
    expected = 2 + name_length + 8 + 24
    if len(payload) != expected:
        raise CorruptFileError(f"an attachment record with a name of {name_length} bytes has {expected} bytes "
                               f"of payload, not {len(payload)}")
    try:
        name = payload[2:2 + name_length].decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError("attachment name is not valid UTF-8") from None
    problem = attachment_name_problem(name)
    if problem is not None:
        raise CorruptFileError(f"attachment name {name[:80]!r} {problem}")
    size, codec_id, param, reserved, crc, count, length = struct.unpack_from("<QBBHIQQ", payload, 2 + name_length)
    if size > MAX_ATTACHMENT_BYTES:
        raise LimitExceededError(f"attachment {name!r} has {size} bytes, over MAX_ATTACHMENT_BYTES "
                                 f"({MAX_ATTACHMENT_BYTES})")
    try:
        codec = Codec(codec_id)
    except ValueError:
        raise CorruptFileError(f"stream codec of attachment {name!r} has unknown value {codec_id}") from None
    if codec not in ATTACHMENT_CODECS:
        raise CorruptFileError(f"attachment {name!r} uses {codec.name}: an attachment stream is PLAIN, "
                               "HUFFMAN or ZSTD")
    if param or reserved:
        raise CorruptFileError(f"param and reserved field of attachment {name!r}'s stream must be zero")
    if count != size:
        raise CountMismatchError(f"attachment {name!r} has {size} bytes but its stream {count} elements")
    if count == 0 and (codec != Codec.PLAIN or length):
        raise CorruptFileError(f"the stream of the empty attachment {name!r} must be PLAIN with length 0")
    from .index_reader import max_count  # the §8 bound of a stream of `length` bytes

    if count > max_count(codec, length):
        raise CountMismatchError(f"a {codec.name} attachment stream of {length} bytes cannot hold {count} bytes")
    return AttachmentInfo(name, size, StreamInfo(Role.ATTACHMENT, codec, 0, crc, count, length))


def decode_attachment(buffer, info: AttachmentInfo, *, verify: bool = True,
                      max_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> bytes:
    """The bytes of attachment ``info`` of the file held in ``buffer``: the size checked against
    ``max_bytes`` before anything is allocated, the CRC-32 checked (``verify``) before decoding."""
    from .checksum import crc32
    from .codecs import get_codec

    if info.size > max_bytes:
        raise LimitExceededError(f"attachment {info.name!r} has {info.size} bytes, over this reader's limit of "
                                 f"{max_bytes} (max_attachment_bytes)")
    stream = info.stream
    payload = memoryview(buffer)[stream.offset:stream.offset + stream.length]
    if verify and crc32(payload) != stream.crc32:
        raise ChecksumError(f"attachment {info.name!r}: stream checksum mismatch")
    if stream.count == 0:
        return b""
    elements = get_codec(stream.codec).decode(payload, stream.count, 1, 0, ATTACHMENT_ALPHABET)
    if elements.shape != (stream.count,):
        raise CountMismatchError(f"attachment {info.name!r} decoded to a wrong size")
    return elements.tobytes()


def attachment_record(name: str, size: int, stream: StreamInfo) -> bytes:
    """The payload of an ATTACHMENT record (spec §4.6.1)."""
    raw = name.encode("utf-8")
    return (struct.pack("<H", len(raw)) + raw + struct.pack("<Q", size)
            + struct.pack("<BBHIQQ", stream.codec, 0, 0, stream.crc32, stream.count, stream.length))


def alias_record(name: str, target: int) -> bytes:
    """The payload of an ALIAS record (spec §4.6.2)."""
    raw = name.encode("utf-8")
    return struct.pack("<H", len(raw)) + raw + struct.pack("<I", target)


def extension_record(record_type: int, flags: int, payload: bytes) -> bytes:
    """One extension record (spec §4.6): type, flags, length, payload."""
    return struct.pack("<HHI", record_type, flags, len(payload)) + payload


def attachment_codecs(allowed: tuple[str, ...] | None) -> list[Codec]:
    """The codecs an attachment may use within ``allowed`` (codec names; None: any): PLAIN always,
    HUFFMAN and ZSTD when allowed."""
    names = {"plain", "huffman", "zstd"} if allowed is None else set(allowed) | {"plain"}
    return [c for c in (Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD) if c.name.lower() in names]


def encode_attachment(data, codecs: list[Codec]):
    """``data`` (bytes-like) as an attachment stream with the smallest of ``codecs``: an
    :class:`~dcformat.codecs.EncodedStream`."""
    from .codecs import EncodedStream, encode_smallest

    raw = bytes(memoryview(data).cast("B")) if not isinstance(data, bytes) else data
    if len(raw) > MAX_ATTACHMENT_BYTES:
        raise EncodingError(f"an attachment holds at most {MAX_ATTACHMENT_BYTES} bytes, not {len(raw)}")
    if not raw:
        return EncodedStream(Codec.PLAIN, 0, b"")
    elements = np.frombuffer(raw, np.uint8)
    level = 19 if len(raw) <= 1 << 18 else 9 if len(raw) <= 1 << 22 else 3
    return encode_smallest(elements, 1, codecs, {Codec.ZSTD: {"level": level}})
