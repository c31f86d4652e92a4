"""Parse and validate the preamble, trailer and index of a dcf file (spec §3–§5).

Reads nothing but the fixed-size ends of the file and the index, and imports neither Numba nor a
codec: this is all ``dcinfo`` needs, so inspecting a file pays no JIT compile time.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import crc32
from .constants import (
    EXTENSION_CRITICAL,
    EXTENSION_FLAGS,
    EXTENSIONS_MINOR,
    MAGIC,
    MAX_ATTACHMENTS,
    MAX_EXTENSION_RECORDS,
    MAX_ALIGNMENT_LOG2,
    MAX_BITPACK_WIDTH,
    MAX_CHUNK_ELEMENTS,
    MAX_CODEBOOK_SIZE,
    MAX_EMPTY_SHAPE_PRODUCT,
    MAX_INDEX_BITS,
    MAX_INDEX_LENGTH,
    MAX_METADATA_ENTRIES,
    MAX_NAME_LENGTH,
    MAX_RANK,
    MAX_TENSOR_ELEMENTS,
    MAX_TENSORS,
    MAX_ZSTD_EXPANSION,
    PREAMBLE_SIZE,
    TRAILER_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    DTYPE_MINOR,
    FLOAT8_DTYPES,
    CodebookDType,
    Codec,
    DType,
    ExtensionType,
    Layout,
    Role,
    ValueCoding,
)
from .errors import (
    BadMagicError,
    ChecksumError,
    CorruptFileError,
    CountMismatchError,
    LimitExceededError,
    OffsetError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from .extensions import AttachmentInfo, parse_attachment
from .structures import CHUNK_ROLES, ChunkInfo, StreamInfo, TensorInfo


class Header(NamedTuple):
    """Everything a reader knows about a file before it reads a stream."""

    version: tuple[int, int]
    alignment_log2: int
    file_length: int
    index_offset: int
    index_length: int
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]
    aliases: dict[str, str] = {}
    """Version 1.1 (spec §4.6.2): alias name -> the name of its target tensor, in record order."""
    attachments: dict[str, AttachmentInfo] = {}
    """Version 1.1 (spec §4.6.1): attachment name -> its record, in record order."""
    skipped_extensions: tuple[int, ...] = ()
    """The types of the non-critical extension records this reader does not know, skipped."""


class _Cursor:
    """Reads fields from the index; running past its end is a truncated file."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise TruncatedFileError(f"index ends inside {what}")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.take(8, what))[0]

    def text(self, size: int, what: str) -> str:
        raw = self.take(size, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFileError(f"{what} is not valid UTF-8") from None


def read_header(buffer, *, check_crc: bool = True) -> Header:
    """Parse the preamble, trailer and index of the dcf file held in ``buffer`` (bytes-like)."""
    view = memoryview(buffer)
    length = len(view)
    if length < PREAMBLE_SIZE + TRAILER_SIZE:
        if length >= 4 and bytes(view[:4]) != MAGIC:
            raise BadMagicError("not a dcf file (bad magic)")
        raise TruncatedFileError(f"file is {length} bytes, shorter than preamble and trailer (32)")
    magic, major, minor, alignment_log2 = struct.unpack_from("<4sHHB", view, 0)
    if magic != MAGIC:
        raise BadMagicError("not a dcf file (bad magic)")
    if major != VERSION_MAJOR:
        raise UnsupportedVersionError(
            f"format version {major}.{minor} is not supported (this reader implements {VERSION_MAJOR}.x)"
        )
    if any(view[9:16]):
        raise CorruptFileError("reserved bytes of the preamble are not zero")
    if alignment_log2 > MAX_ALIGNMENT_LOG2:
        raise CorruptFileError(f"alignment_log2 {alignment_log2} exceeds {MAX_ALIGNMENT_LOG2}")
    index_length, index_crc, end_magic = struct.unpack_from("<QI4s", view, length - TRAILER_SIZE)
    if end_magic != MAGIC:
        raise TruncatedFileError("trailer magic missing: the file is truncated or not a dcf file")
    if index_length < 8 or index_length > MAX_INDEX_LENGTH:
        raise LimitExceededError(f"index length {index_length} outside 8..{MAX_INDEX_LENGTH}")
    index_offset = length - TRAILER_SIZE - index_length
    if index_offset < PREAMBLE_SIZE:
        raise TruncatedFileError(f"index length {index_length} is larger than the file allows")
    index = bytes(view[index_offset:index_offset + index_length])
    if check_crc and crc32(index) != index_crc:
        raise ChecksumError("index checksum mismatch")
    metadata, tensors, extensions = _parse_index(index, minor)
    aliases, attachments, skipped = extensions
    _place_streams(view, tensors, attachments, alignment_log2, index_offset)
    return Header((major, minor), alignment_log2, length, index_offset, index_length, metadata, tensors,
                  aliases, attachments, skipped)


def _parse_index(index: bytes, minor: int = 0):
    cur = _Cursor(index)
    tensor_count = cur.u32("tensor_count")
    metadata_count = cur.u32("metadata_count")
    if tensor_count > MAX_TENSORS:
        raise LimitExceededError(f"tensor_count {tensor_count} exceeds {MAX_TENSORS}")
    if metadata_count > MAX_METADATA_ENTRIES:
        raise LimitExceededError(f"metadata_count {metadata_count} exceeds {MAX_METADATA_ENTRIES}")
    metadata: dict[str, str] = {}
    for _ in range(metadata_count):
        key_length = cur.u16("metadata key length")
        if not 1 <= key_length <= MAX_NAME_LENGTH:
            raise CorruptFileError(f"metadata key length {key_length} outside 1..{MAX_NAME_LENGTH}")
        key = cur.text(key_length, "metadata key")
        value = cur.text(cur.u32("metadata value length"), f"metadata value of {key!r}")
        if key in metadata:
            raise CorruptFileError(f"metadata key {key!r} appears twice")
        metadata[key] = value
    tensors: dict[str, TensorInfo] = {}
    for _ in range(tensor_count):
        tensor = _parse_tensor(cur, minor)
        if tensor.name in tensors:
            raise CorruptFileError(f"tensor name {tensor.name!r} appears twice")
        tensors[tensor.name] = tensor
    extensions = _parse_extensions(cur, tensors) if minor >= EXTENSIONS_MINOR else ({}, {}, ())
    if cur.pos != len(index):
        raise CorruptFileError(f"{len(index) - cur.pos} bytes left over at the end of the index")
    return metadata, tensors, extensions


def _parse_extensions(cur: _Cursor, tensors: dict[str, TensorInfo]):
    """The extension section of a 1.1 index (spec §4.6): ``(aliases, attachments, skipped types)``."""
    count = cur.u32("extension_count")
    if count > MAX_EXTENSION_RECORDS:
        raise LimitExceededError(f"extension_count {count} exceeds {MAX_EXTENSION_RECORDS}")
    if count * 8 > len(cur.data) - cur.pos:
        raise TruncatedFileError(f"index too short for {count} extension records")
    names = list(tensors)
    aliases: dict[str, str] = {}
    attachments: dict[str, AttachmentInfo] = {}
    skipped: list[int] = []
    for _ in range(count):
        record_type = cur.u16("extension record type")
        flags = cur.u16("extension record flags")
        payload = cur.take(cur.u32("extension record length"), f"extension record of type {record_type}")
        if flags & ~EXTENSION_CRITICAL:
            raise CorruptFileError(f"extension record of type {record_type}: reserved flag bits {flags:#06x} set")
        if record_type == 0:
            raise CorruptFileError("extension record type 0 is reserved")
        try:
            known = ExtensionType(record_type)
        except ValueError:
            if flags & EXTENSION_CRITICAL:
                raise CorruptFileError(
                    f"critical extension record of unknown type {record_type}: this reader implements format "
                    f"{VERSION_MAJOR}.{VERSION_MINOR} and must not read a file it would misread") from None
            skipped.append(record_type)
            continue
        if flags != EXTENSION_FLAGS[known]:
            raise CorruptFileError(f"{known.name} extension record has flags {flags}, not {EXTENSION_FLAGS[known]}")
        if known == ExtensionType.ATTACHMENT:
            info = parse_attachment(payload)
            if info.name in attachments:
                raise CorruptFileError(f"attachment name {info.name!r} appears twice")
            if len(attachments) >= MAX_ATTACHMENTS:
                raise LimitExceededError(f"more than MAX_ATTACHMENTS ({MAX_ATTACHMENTS}) attachments")
            attachments[info.name] = info
        else:
            name, target = _parse_alias(payload, len(names))
            if name in tensors or name in aliases:
                raise CorruptFileError(f"alias name {name!r} is already the name of "
                                       f"{'a tensor' if name in tensors else 'an alias'}")
            if len(tensors) + len(aliases) >= MAX_TENSORS:
                raise LimitExceededError(f"tensors and aliases together exceed MAX_TENSORS ({MAX_TENSORS})")
            aliases[name] = names[target]
    return aliases, attachments, tuple(skipped)


def _parse_alias(payload: bytes, tensor_count: int) -> tuple[str, int]:
    """An ALIAS record's payload (spec §4.6.2): ``(name, target index)``."""
    sub = _Cursor(payload)
    try:
        name_length = sub.u16("alias name length")
        if not 1 <= name_length <= MAX_NAME_LENGTH:
            raise CorruptFileError(f"alias name length {name_length} outside 1..{MAX_NAME_LENGTH}")
        name = sub.text(name_length, "alias name")
        target = sub.u32("alias target")
    except TruncatedFileError:
        raise CorruptFileError(f"an alias record of {len(payload)} bytes ends inside a field") from None
    if sub.pos != len(payload):
        raise CorruptFileError(f"alias record of {name!r} has {len(payload) - sub.pos} bytes left over")
    if target >= tensor_count:
        raise CorruptFileError(f"alias {name!r} targets tensor {target}, but the file has {tensor_count} tensors")
    return name, target


def _product_of_nonzero(shape) -> int:
    n = 1
    for dim in shape:
        n *= dim or 1
    return n


def _enum(kind, value: int, what: str):
    try:
        return kind(value)
    except ValueError:
        raise CorruptFileError(f"{what} has unknown value {value}") from None


def _parse_tensor(cur: _Cursor, minor: int = 0) -> TensorInfo:
    name_length = cur.u16("tensor name length")
    if not 1 <= name_length <= MAX_NAME_LENGTH:
        raise CorruptFileError(f"tensor name length {name_length} outside 1..{MAX_NAME_LENGTH}")
    name = cur.text(name_length, "tensor name")
    dtype = _enum(DType, cur.u8("dtype"), f"dtype of {name!r}")
    if DTYPE_MINOR.get(dtype, 0) > minor:  # spec §3.3: a value of a later version than the file's
        raise CorruptFileError(f"dtype of {name!r} has value {int(dtype)} ({dtype.name}), which needs format "
                               f"version 1.{DTYPE_MINOR[dtype]}, but the file is version 1.{minor}")
    rank = cur.u8("rank")
    if rank > MAX_RANK:
        raise LimitExceededError(f"rank {rank} of {name!r} exceeds {MAX_RANK}")
    shape = tuple(cur.u64("shape") for _ in range(rank))
    if 0 in shape:  # spec §4.2: numel is 0, whatever the other dimensions (in any order)
        numel = 0
        if _product_of_nonzero(shape) > MAX_EMPTY_SHAPE_PRODUCT:
            raise LimitExceededError(
                f"{name!r}: empty tensor of shape {shape}: the product of its non-zero dimensions "
                f"exceeds MAX_EMPTY_SHAPE_PRODUCT ({MAX_EMPTY_SHAPE_PRODUCT})")
    else:
        numel = 1
        for dim in shape:
            numel *= dim  # Python ints cannot overflow; the bound is checked next
            if numel > MAX_TENSOR_ELEMENTS:
                raise LimitExceededError(f"{name!r} has more than {MAX_TENSOR_ELEMENTS} elements")
    layout = _enum(Layout, cur.u8("layout"), f"layout of {name!r}")
    value_coding = _enum(ValueCoding, cur.u8("value_coding"), f"value coding of {name!r}")
    index_bits = cur.u8("index_bits")
    codebook_dtype = cur.u8("codebook_dtype")
    codebook_size = cur.u32("codebook_size")
    chunk_count = cur.u32("chunk_count")

    if layout == Layout.CSR:
        if rank < 2:
            raise CorruptFileError(f"{name!r}: CSR needs rank >= 2, got rank {rank}")
        if not 1 <= index_bits <= MAX_INDEX_BITS:
            raise CorruptFileError(f"{name!r}: index_bits {index_bits} outside 1..{MAX_INDEX_BITS}")
    elif index_bits != 0:
        raise CorruptFileError(f"{name!r}: index_bits must be zero for a dense tensor")
    if value_coding == ValueCoding.CODEBOOK:
        if dtype not in (DType.F32, DType.F16, DType.BF16, DType.F64) and dtype not in FLOAT8_DTYPES:
            raise CorruptFileError(f"{name!r}: codebook coding needs a float dtype, got {dtype.name}")
        codebook_kind = _enum(CodebookDType, codebook_dtype, f"codebook dtype of {name!r}")
        if DTYPE_MINOR.get(DType(codebook_dtype), 0) > minor:
            raise CorruptFileError(f"codebook dtype of {name!r} has value {codebook_dtype} ({codebook_kind.name}), which "
                                   f"needs format version 1.{DTYPE_MINOR[DType(codebook_dtype)]}, but the file is "
                                   f"version 1.{minor}")
        if (dtype in FLOAT8_DTYPES or codebook_kind in FLOAT8_DTYPES) and int(codebook_kind) != int(dtype):
            raise CorruptFileError(f"{name!r}: a {dtype.name} tensor cannot have a {codebook_kind.name} codebook "
                                   "(a float8 tensor's codebook is of its own dtype, and only its)")
        if not 1 <= codebook_size <= MAX_CODEBOOK_SIZE:
            raise LimitExceededError(f"{name!r}: codebook size {codebook_size} outside 1..{MAX_CODEBOOK_SIZE}")
    elif codebook_dtype or codebook_size:
        raise CorruptFileError(f"{name!r}: codebook fields must be zero for raw values")
    if numel == 0:
        if layout != Layout.DENSE or value_coding != ValueCoding.RAW or chunk_count:
            raise CorruptFileError(f"{name!r}: an empty tensor must be dense, raw, with no chunks")
    elif chunk_count == 0:
        raise CountMismatchError(f"{name!r} has elements but no chunks")

    codebook = _parse_stream(cur, Role.CODEBOOK) if value_coding == ValueCoding.CODEBOOK else None
    if codebook is not None and codebook.count != codebook_size:
        raise CountMismatchError(f"{name!r}: codebook stream has {codebook.count} values, expected {codebook_size}")

    rows = shape[0] if layout == Layout.CSR else numel
    cols = numel // shape[0] if layout == Layout.CSR and shape[0] else 0
    if layout == Layout.CSR and shape[0] == 0:
        raise CorruptFileError(f"{name!r}: empty tensor stored as CSR")
    roles = CHUNK_ROLES[layout]
    # Every chunk entry takes at least 8 + 24 bytes: a count the index cannot hold is corrupt
    # before we loop over it.
    if chunk_count * (8 + 24 * len(roles)) > len(cur.data) - cur.pos:
        raise TruncatedFileError(f"{name!r}: index too short for {chunk_count} chunks")
    chunks = []
    start = 0
    for _ in range(chunk_count):
        extent = cur.u64("chunk extent")
        if extent == 0:
            raise CorruptFileError(f"{name!r}: chunk with zero extent")
        covered = extent * cols if layout == Layout.CSR else extent
        if covered > MAX_CHUNK_ELEMENTS:
            raise LimitExceededError(f"{name!r}: chunk covers {covered} elements, limit {MAX_CHUNK_ELEMENTS}")
        if start + extent > rows:
            raise CountMismatchError(f"{name!r}: chunk extents exceed {'rows' if layout else 'elements'} ({rows})")
        streams = tuple(_parse_stream(cur, role) for role in roles)
        if layout == Layout.DENSE and streams[0].count != extent:
            raise CountMismatchError(f"{name!r}: values stream has {streams[0].count} elements, chunk has {extent}")
        if layout == Layout.CSR:
            row_counts, gaps, values = streams
            if row_counts.count != extent:
                raise CountMismatchError(f"{name!r}: row count stream has {row_counts.count} rows, chunk has {extent}")
            if gaps.count != values.count:
                raise CountMismatchError(f"{name!r}: {gaps.count} gaps but {values.count} values")
            if gaps.count > extent * cols:
                raise CountMismatchError(f"{name!r}: {gaps.count} entries in a chunk of {extent * cols} elements")
        chunks.append(ChunkInfo(start, extent, streams))
        start += extent
    if start != rows and numel:
        raise CountMismatchError(f"{name!r}: chunk extents add up to {start}, expected {rows}")
    return TensorInfo(
        name, dtype, shape, layout, value_coding, index_bits, codebook_dtype, codebook_size, codebook, tuple(chunks)
    )


_MAX_COUNT_PER_BYTE = {
    Codec.PLAIN: 1,  # length = count x element_size (§8.1)
    Codec.BITPACK: 8,  # length = ceil(count x width / 8), width >= 1 (§8.2)
    Codec.HUFFMAN: 8,  # count <= 8 x length (§8.3)
    Codec.ZSTD: MAX_ZSTD_EXPANSION,  # count x element_size <= 65536 x length (§8.4)
    Codec.BYTEPLANES: MAX_ZSTD_EXPANSION,  # each plane is PLAIN, HUFFMAN or ZSTD (§8.5)
}
"""The most elements one stored byte of each codec can decode to, whatever the element size."""


def max_count(codec: Codec, length: int) -> int:
    """The most elements a stream of ``codec`` and ``length`` stored bytes can decode to (spec §9)."""
    return _MAX_COUNT_PER_BYTE[codec] * length


def _parse_stream(cur: _Cursor, role: Role) -> StreamInfo:
    codec_id, param, reserved, crc, count, length = struct.unpack("<BBHIQQ", cur.take(24, "stream descriptor"))
    codec = _enum(Codec, codec_id, f"{role.value} stream codec")
    if reserved:
        raise CorruptFileError(f"reserved field of a {role.value} stream descriptor is not zero")
    if codec == Codec.BITPACK:
        if not 1 <= param <= MAX_BITPACK_WIDTH:
            raise CorruptFileError(f"bit width {param} outside 1..{MAX_BITPACK_WIDTH}")
    elif param:
        raise CorruptFileError(f"param of a {codec.name} stream must be zero")
    if count == 0 and (codec != Codec.PLAIN or length):
        raise CorruptFileError(f"an empty {role.value} stream must be PLAIN with length 0")
    if count > _MAX_COUNT_PER_BYTE[codec] * length:
        # Spec §8: a count the stored bytes cannot hold is corrupted. Checked here, before any
        # buffer for the tensor is allocated, so a dense tensor's size is bounded by its streams.
        raise CountMismatchError(
            f"a {codec.name} {role.value} stream of {length} bytes cannot hold {count} elements")
    return StreamInfo(role, codec, param, crc, count, length)


def _place_streams(view, tensors: dict[str, TensorInfo], attachments: dict[str, AttachmentInfo],
                   alignment_log2: int, index_offset: int) -> None:
    """Compute every stream's offset (spec §5): the tensors' streams, then the attachments', in
    record order; check padding is zero and nothing is left over."""
    align = 1 << alignment_log2
    position = PREAMBLE_SIZE

    def place(stream: StreamInfo, name: str) -> StreamInfo:
        nonlocal position
        if stream.length:
            start = -(-position // align) * align
            if start > index_offset or any(view[position:start]):
                raise OffsetError(f"{name!r}: padding before a {stream.role.value} stream is not zero")
            position = start
        if position + stream.length > index_offset:
            raise OffsetError(f"{name!r}: a {stream.role.value} stream runs past the data section")
        placed = stream._replace(offset=position)
        position += stream.length
        return placed

    for name, tensor in list(tensors.items()):
        codebook = place(tensor.codebook, name) if tensor.codebook is not None else None
        chunks = tuple(c._replace(streams=tuple(place(s, name) for s in c.streams)) for c in tensor.chunks)
        tensors[name] = tensor._replace(codebook=codebook, chunks=chunks)
    for name, attachment in list(attachments.items()):
        attachments[name] = attachment._replace(stream=place(attachment.stream, f"attachment {name}"))
    if position != index_offset:
        raise OffsetError(f"data section has {index_offset - position} bytes that belong to no stream")
