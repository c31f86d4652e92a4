"""Write dcf files: :class:`DCFWriter`, a streaming writer (spec §2–§5).

Tensors are encoded and written one at a time, so a file larger than memory can be written; the
index goes last. Writing to a path is atomic: the bytes go to a temporary file in the same
directory, which is flushed, fsynced and renamed over the target only when the writer closes
cleanly. An exception or :meth:`DCFWriter.abort` leaves the old file (or no file) in place.

A writer that is killed (SIGKILL, power loss) cannot remove its temporary file; the next writer
to the same target removes it once that process is gone (:mod:`dcformat.atomic`).
"""
from __future__ import annotations

import os
import struct
from typing import Any

from .atomic import AtomicFile, AtomicWriter
from .checksum import crc32
from .codecs import EncodedStream
from .constants import (
    EXTENSION_FLAGS,
    EXTENSIONS_MINOR,
    FLOAT8_DTYPES,
    FLOAT8_MINOR,
    MAGIC,
    MAX_ATTACHMENTS,
    MAX_ALIGNMENT_LOG2,
    MAX_INDEX_LENGTH,
    MAX_METADATA_ENTRIES,
    MAX_NAME_LENGTH,
    MAX_TENSORS,
    VERSION_MAJOR,
    VERSION_MINOR,
    ExtensionType,
    Role,
)
from .encoding import EncodedTensor, Encoding, encode_tensor
from .arrays import as_array, check_tensor
from .errors import EncodingError, EncodingTypeError
from .extensions import (
    alias_record,
    attachment_codecs,
    attachment_name_problem,
    attachment_record,
    encode_attachment,
    extension_record,
)
from .profiles import METADATA_KEY as PROFILE_KEY
from .profiles import get_profile
from .structures import CHUNK_ROLES, ChunkInfo, StreamInfo, TensorInfo


def _check_name(name, what: str) -> bytes:
    """``name`` as the UTF-8 bytes the index stores; a clear error naming it when it cannot be."""
    if not isinstance(name, str):
        raise EncodingTypeError(f"{what} {name!r} must be a str, not {type(name).__name__}")
    raw = _utf8(name, what)
    if not 1 <= len(raw) <= MAX_NAME_LENGTH:
        raise EncodingError(f"{what} {name[:40]!r} must be 1..{MAX_NAME_LENGTH} bytes of UTF-8")
    return raw


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, from os.fsdecode or a bad decode
        raise EncodingError(f"{what} {text[:80]!r} is not valid UTF-8 text: character {exc.start} is a lone "
                            f"surrogate ({exc.object[exc.start]!r})") from None


def check_names(tensors, metadata=None) -> None:
    """Check every tensor name, and ``metadata``, as :class:`DCFWriter` would, before anything is
    written (and the torch tensors that can be refused without converting them)."""
    if metadata is not None:
        DCFWriter._check_metadata(metadata)
    for name, tensor in tensors.items():
        _check_name(name, "tensor name")
        check_tensor(name, tensor)


def serialize_index(metadata: dict[str, str], tensors: list[TensorInfo], extensions: list[bytes] | None = None) -> bytes:
    """The index bytes (spec §4) for ``metadata`` and ``tensors`` in file order; with
    ``extensions`` (a list of whole extension records, spec §4.6; an empty list included), the
    extension section of a version 1.1 index follows the tensor entries."""
    out = [struct.pack("<II", len(tensors), len(metadata))]
    for key, value in metadata.items():
        raw_key = _check_name(key, "metadata key")
        raw_value = value.encode("utf-8")
        out.append(struct.pack("<H", len(raw_key)) + raw_key + struct.pack("<I", len(raw_value)) + raw_value)
    for t in tensors:
        raw_name = t.name.encode("utf-8")
        out.append(struct.pack("<H", len(raw_name)) + raw_name)
        out.append(struct.pack("<BB", t.dtype, len(t.shape)) + b"".join(struct.pack("<Q", d) for d in t.shape))
        out.append(struct.pack("<BBBBII", t.layout, t.value_coding, t.index_bits, t.codebook_dtype,
                               t.codebook_size, len(t.chunks)))
        if t.codebook is not None:
            out.append(_descriptor(t.codebook))
        for chunk in t.chunks:
            out.append(struct.pack("<Q", chunk.extent) + b"".join(_descriptor(s) for s in chunk.streams))
    if extensions is not None:
        out.append(struct.pack("<I", len(extensions)))
        out.extend(extensions)
    return b"".join(out)


def _descriptor(s: StreamInfo) -> bytes:
    return struct.pack("<BBHIQQ", s.codec, s.param, 0, s.crc32, s.count, s.length)


class DCFWriter(AtomicWriter):
    """Write tensors to a dcf file one at a time; the index is written by :meth:`close`.

    ``target`` is a path (written atomically) or a binary file object opened for writing.
    ``metadata`` is a dict of str to str, stored in the index. ``alignment_log2`` aligns every
    stream to ``2 ** alignment_log2`` bytes (None: 0, packed, the smallest file, or the profile's).
    ``profile``: a :class:`dcformat.profiles.Profile` or its name (``"mobile"``): every tensor is
    encoded within it, and its name is stored in the metadata under ``dcformat.profile``.

    Version 1.1 (spec §4.6): :meth:`add_attachment` stores a file (a model's ``config.json``, its
    tokenizer) byte-exact, :meth:`add_alias` a second name for a tensor already added (tied
    weights, stored once). Version 1.2 (spec §4.3): tensors of the float8 dtypes F8_E4M3 and
    F8_E5M2. A file is written as the oldest version that holds it: 1.0, byte for byte as before,
    with none of these; 1.1 with an attachment or an alias and no float8 tensor; 1.2 with a float8
    tensor. The preamble is patched at :meth:`close`; a target that cannot seek needs
    ``version_minor`` (1 or 2), which writes that version from the start, whatever the file holds.

    The writer is a small state machine: ``add`` after ``close`` or ``abort`` raises.
    """

    def __init__(self, target, *, metadata: dict[str, str] | None = None, alignment_log2: int | None = None,
                 profile=None, version_minor: int | None = None):
        self.profile = get_profile(profile)
        least = self.profile.alignment_log2 if self.profile else 0
        if alignment_log2 is None:
            alignment_log2 = least
        if not 0 <= alignment_log2 <= MAX_ALIGNMENT_LOG2:
            raise EncodingError(f"alignment_log2 must be 0..{MAX_ALIGNMENT_LOG2}")
        if alignment_log2 < least:
            raise EncodingError(f"profile {self.profile.name!r} needs alignment_log2 >= {least}")
        self.metadata = self._check_metadata(metadata or {})
        if self.profile:
            if self.metadata.setdefault(PROFILE_KEY, self.profile.name) != self.profile.name:
                raise EncodingError(f"metadata {PROFILE_KEY!r} is {self.metadata[PROFILE_KEY]!r}, "
                                    f"but the profile is {self.profile.name!r}")
        self.alignment = 1 << alignment_log2
        if version_minor not in (None, *range(VERSION_MINOR + 1)):
            raise EncodingError(f"version_minor must be None (what the file needs) or 0..{VERSION_MINOR}")
        self._tensors: list[TensorInfo] = []
        self._names: set[str] = set()
        self._attachments: dict[str, tuple] = {}  # name -> (size, EncodedStream)
        self._aliases: dict[str, str] = {}  # alias -> target
        self._extra_records: list[bytes] = []  # whole records written before the others (golden vectors)
        self._minor = version_minor or 0  # the version_minor the preamble holds
        self._fixed_minor = version_minor is not None
        self._atomic = None
        if isinstance(target, (str, os.PathLike)):
            self._atomic = AtomicFile(target)
            self._file = self._atomic.file
        else:
            self._file = target
        self._position = 0
        self._state = "open"
        self._base = self._seek_base()
        try:
            self._write(MAGIC + struct.pack("<HHB", VERSION_MAJOR, self._minor, alignment_log2) + bytes(7))
        except BaseException:
            self.abort()
            raise

    def _seek_base(self) -> int | None:
        """Where the file starts in the target, if the preamble can be rewritten at close."""
        try:
            if not self._file.seekable() or "a" in str(getattr(self._file, "mode", "")):
                return None
            return self._file.tell()
        except (AttributeError, OSError, ValueError):
            return None

    def _need_extensions(self, what: str) -> None:
        if self._state != "open":
            raise EncodingError(f"cannot add {what} to a writer that is {self._state}")
        self._need_minor(EXTENSIONS_MINOR, what)

    def _need_minor(self, minor: int, what: str) -> None:
        """Check that the file can be of version 1.``minor`` or later, which ``what`` needs."""
        if self._minor >= minor:
            return
        if self._fixed_minor:
            raise EncodingError(f"{what} needs format version 1.{minor}; this writer was asked for 1.{self._minor}")
        if self._base is None:
            raise EncodingError(f"{what} needs format version 1.{minor}, and this target cannot seek "
                                f"back to its preamble: create the writer with version_minor={minor}")

    def _needed_minor(self) -> int:
        """The oldest minor version that holds what was added (spec §3.1, §4.3, §4.6)."""
        if any(t.dtype in FLOAT8_DTYPES for t in self._tensors):
            return FLOAT8_MINOR
        if self._attachments or self._aliases:
            return EXTENSIONS_MINOR
        return 0

    def add_attachment(self, name: str, data, codecs: tuple[str, ...] | None = None) -> None:
        """Store ``data`` (bytes-like) as the attachment ``name`` (spec §4.6.1): a relative POSIX
        path such as ``config.json`` or ``tokenizer/vocab.txt``, unique among the attachments.
        It is encoded now (the smallest of PLAIN, HUFFMAN and ZSTD that ``codecs``, codec names,
        and the profile allow) and written after the tensors' streams when the writer closes."""
        self._need_extensions("an attachment")
        if not isinstance(name, str):
            raise EncodingTypeError(f"attachment name {name!r} must be a str, not {type(name).__name__}")
        problem = attachment_name_problem(name)
        if problem is not None:
            raise EncodingError(f"attachment name {name[:80]!r} {problem}")
        if name in self._attachments:
            raise EncodingError(f"attachment {name!r} is already in this file")
        if len(self._attachments) >= MAX_ATTACHMENTS:
            raise EncodingError(f"a file holds at most {MAX_ATTACHMENTS} attachments")
        try:
            size = memoryview(data).nbytes
        except TypeError:
            raise EncodingTypeError(f"attachment {name!r} must be bytes-like, not {type(data).__name__}") from None
        allowed = attachment_codecs(codecs)
        if self.profile:
            allowed = [c for c in allowed if c in attachment_codecs(self.profile.codecs)]
        stream = encode_attachment(data, allowed)
        self._attachments[name] = (size, stream)

    def add_alias(self, name: str, target: str) -> None:
        """Make ``name`` a second name of the tensor ``target``, already added (spec §4.6.2: tied
        weights, stored once). Readers list ``name`` among the tensors and decode ``target`` for it."""
        self._need_extensions("an alias")
        _check_name(name, "alias name")
        if name in self._names or name in self._aliases:
            raise EncodingError(f"alias name {name!r} is already the name of "
                                f"{'a tensor' if name in self._names else 'an alias'} in this file")
        if not isinstance(target, str) or target not in self._names:
            hint = f" ({target!r} is an alias of {self._aliases[target]!r})" if target in self._aliases else ""
            raise EncodingError(f"alias {name!r}: its target {target!r} is not a tensor added to this writer{hint}")
        if len(self._tensors) + len(self._aliases) >= MAX_TENSORS:
            raise EncodingError(f"a file holds at most {MAX_TENSORS} tensors and aliases together")
        self._aliases[name] = target

    @property
    def aliases(self) -> dict[str, str]:
        """The aliases added so far: name -> target."""
        return dict(self._aliases)

    @property
    def attachments(self) -> list[str]:
        """The names of the attachments added so far."""
        return list(self._attachments)

    @staticmethod
    def _check_metadata(metadata) -> dict[str, str]:
        if not isinstance(metadata, dict):
            raise EncodingError("metadata must be a dict of str to str")
        if len(metadata) > MAX_METADATA_ENTRIES:
            raise EncodingError(f"more than {MAX_METADATA_ENTRIES} metadata entries")
        for key, value in metadata.items():
            _check_name(key, "metadata key")
            if not isinstance(value, str):
                raise EncodingTypeError(f"metadata value of {key!r} must be a str, not {type(value).__name__}")
            _utf8(value, f"metadata value of {key!r}:")
        return dict(metadata)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._position += len(data)

    def _write_stream(self, role: Role, stream: EncodedStream, count: int) -> StreamInfo:
        payload = stream.payload
        if payload:
            pad = -self._position % self.alignment
            if pad:
                self._write(bytes(pad))
        self._write(payload)
        return StreamInfo(role, stream.codec, stream.param, crc32(payload), count, len(payload))

    def add(self, name: str, tensor: Any, encoding: Encoding | dict | None = None) -> TensorInfo:
        """Encode ``tensor`` and write its streams now; returns its index entry.

        ``tensor``: a numpy array, a :class:`~dcformat.tensors.CodebookTensor`, or a torch tensor
        of any dtype the format has (detached, moved to the CPU and made contiguous; its bits are
        stored exactly, see :mod:`dcformat.arrays`). ``encoding``: an :class:`Encoding` or a dict
        of its fields (None: every choice automatic)."""
        if self._state != "open":
            raise EncodingError(f"cannot add a tensor to a writer that is {self._state}")
        _check_name(name, "tensor name")
        if name in self._names:
            raise EncodingError(f"tensor name {name!r} is already in this file")
        if name in self._aliases:
            raise EncodingError(f"tensor name {name!r} is already an alias in this file")
        if len(self._tensors) >= MAX_TENSORS:
            raise EncodingError(f"a file holds at most {MAX_TENSORS} tensors")
        tensor = as_array(name, tensor)
        if self.profile:
            encoding = self.profile.encoding(tensor, encoding)
        encoded = encode_tensor(tensor, encoding)
        return self.add_encoded(name, encoded)

    def add_encoded(self, name: str, encoded: EncodedTensor) -> TensorInfo:
        """Write a tensor that :func:`dcformat.encoding.encode_tensor` already encoded (within the
        writer's profile, if it has one: checked)."""
        if self._state != "open":
            raise EncodingError(f"cannot add a tensor to a writer that is {self._state}")
        if self.profile:
            self.profile.check(encoded)
        if name in self._aliases:
            raise EncodingError(f"tensor name {name!r} is already an alias in this file")
        if encoded.dtype in FLOAT8_DTYPES:
            self._need_minor(FLOAT8_MINOR, f"tensor {name!r} of dtype {encoded.dtype.name}")
        try:
            codebook = self._write_stream(Role.CODEBOOK, *encoded.codebook) if encoded.codebook else None
            chunks = []
            start = 0
            for extent, streams in encoded.chunks:
                roles = CHUNK_ROLES[encoded.layout]
                infos = tuple(self._write_stream(role, s, n) for role, (s, n) in zip(roles, streams))
                chunks.append(ChunkInfo(start, extent, infos))
                start += extent
        except BaseException:
            self.abort()
            raise
        info = TensorInfo(name, encoded.dtype, encoded.shape, encoded.layout, encoded.value_coding,
                          encoded.index_bits, encoded.codebook_dtype, encoded.codebook_size, codebook, tuple(chunks))
        self._tensors.append(info)
        self._names.add(name)
        return info

    @property
    def tensors(self) -> list[TensorInfo]:
        return list(self._tensors)

    def _finish(self) -> None:
        """Write the attachments' streams, the index and the trailer (spec §4.6, §5)."""
        needed = self._needed_minor()
        if needed > self._minor:  # checked by _need_minor: the target can seek
            end = self._file.tell()
            self._file.seek(self._base + 6)
            self._file.write(struct.pack("<H", needed))
            self._file.seek(end)
            self._minor = needed
        extensions = None
        if self._minor >= EXTENSIONS_MINOR:
            extensions = list(self._extra_records)
            for name, (size, stream) in self._attachments.items():
                info = self._write_stream(Role.ATTACHMENT, stream, size)
                extensions.append(extension_record(ExtensionType.ATTACHMENT, EXTENSION_FLAGS[ExtensionType.ATTACHMENT],
                                                   attachment_record(name, size, info)))
            position = {t.name: i for i, t in enumerate(self._tensors)}
            for name, target in self._aliases.items():
                extensions.append(extension_record(ExtensionType.ALIAS, EXTENSION_FLAGS[ExtensionType.ALIAS],
                                                   alias_record(name, position[target])))
        index = serialize_index(self.metadata, self._tensors, extensions)
        if len(index) > MAX_INDEX_LENGTH:
            raise EncodingError(f"the index would be {len(index)} bytes, over {MAX_INDEX_LENGTH}")
        self._write(index + struct.pack("<QI", len(index), crc32(index)) + MAGIC)
        self._file.flush()

    def _closed_error(self) -> Exception:
        return EncodingError("cannot close a writer that was aborted")
