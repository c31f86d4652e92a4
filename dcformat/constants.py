"""Constants of the dcf format: a mirror of spec/FORMAT.md.

Every enum value and limit here has a row in the spec; ``tests/test_constants.py`` checks that the
two agree. Retired values stay listed as reserved, never reused.
"""
from __future__ import annotations

import enum

import numpy as np

MAGIC = b"\x89DCF"
VERSION_MAJOR = 1
VERSION_MINOR = 2
"""The newest minor version this package reads and writes. Its writer writes the oldest version a
file needs: 1.0 (byte for byte what it always wrote) when it has no extension record and no float8
tensor, 1.1 when it has an extension record (spec §4.6), 1.2 when it has a float8 tensor (§4.3)."""
EXTENSIONS_MINOR = 1
"""The first minor version whose index ends with the extension section (spec §4.6)."""
FLOAT8_MINOR = 2
"""The first minor version with the float8 dtypes F8_E4M3 and F8_E5M2 (spec §4.3)."""
PREAMBLE_SIZE = 16
TRAILER_SIZE = 16
STREAM_DESCRIPTOR_SIZE = 24

# Limits (spec §9). A reader enforces each before it allocates memory that depends on the field.
MAX_INDEX_LENGTH = 104_857_600
MAX_TENSORS = 1_048_576
MAX_METADATA_ENTRIES = 65_536
MAX_NAME_LENGTH = 4_096
MAX_RANK = 8
MAX_TENSOR_ELEMENTS = 2**40
MAX_CHUNK_ELEMENTS = 2**28
MAX_CODEBOOK_SIZE = 65_536
MAX_INDEX_BITS = 16
MAX_CODE_LENGTH = 16
MAX_HUFFMAN_LANES = 8
MAX_HUFFMAN_ALPHABET = 65_536
MAX_BITPACK_WIDTH = 32
MAX_ZSTD_EXPANSION = 65_536
MAX_ALIGNMENT_LOG2 = 12
# Version 1.1 (spec §4.6, §9)
MAX_EXTENSION_RECORDS = 2_097_152
MAX_ATTACHMENTS = 65_536
MAX_ATTACHMENT_BYTES = 2**31

# The reference decoder's own limit (spec §9 allows a lower one): a tensor decoding to more bytes
# than this is refused unless the caller raises the limit.
DEFAULT_MAX_TENSOR_BYTES = 16 * 2**30
# ... and the same for everything one eager load (load_file, get_tensors) decodes together.
DEFAULT_MAX_TOTAL_BYTES = 16 * 2**30
# ... and an attachment (spec §4.6.1) that decodes to more bytes than this (a reader option).
DEFAULT_MAX_ATTACHMENT_BYTES = 2**30
# Another: an empty tensor (a zero dimension) whose other dimensions multiply to more than this is
# refused, since numpy cannot shape even an empty array of 8-byte elements past 2**63 - 1 bytes.
MAX_EMPTY_SHAPE_PRODUCT = 2**60 - 1


class DType(enum.IntEnum):
    """Element types of decoded tensors (spec §4.3). 0 is reserved."""

    F32 = 1
    F16 = 2
    BF16 = 3
    F64 = 4
    I8 = 5
    I16 = 6
    I32 = 7
    I64 = 8
    U8 = 9
    U16 = 10
    U32 = 11
    U64 = 12
    BOOL = 13
    F8_E4M3 = 14
    """Version 1.2: float8 with 4 exponent and 3 significand bits, no infinity (torch.float8_e4m3fn)."""
    F8_E5M2 = 15
    """Version 1.2: float8 with 5 exponent and 2 significand bits, IEEE-like (torch.float8_e5m2)."""


DTYPE_SIZE = {
    DType.F32: 4, DType.F16: 2, DType.BF16: 2, DType.F64: 8,
    DType.I8: 1, DType.I16: 2, DType.I32: 4, DType.I64: 8,
    DType.U8: 1, DType.U16: 2, DType.U32: 4, DType.U64: 8,
    DType.BOOL: 1, DType.F8_E4M3: 1, DType.F8_E5M2: 1,
}
FLOAT8_DTYPES = frozenset({DType.F8_E4M3, DType.F8_E5M2})
FLOAT_DTYPES = frozenset({DType.F32, DType.F16, DType.BF16, DType.F64}) | FLOAT8_DTYPES
DTYPE_MINOR = {DType.F8_E4M3: FLOAT8_MINOR, DType.F8_E5M2: FLOAT8_MINOR}
"""The first minor version of each dtype not in 1.0: a file of an older minor version that uses
one is corrupted (spec §3.3, §4.3)."""


class Layout(enum.IntEnum):
    """How a tensor's elements are laid out (spec §6)."""

    DENSE = 0
    CSR = 1


class ValueCoding(enum.IntEnum):
    """How element values are represented (spec §7)."""

    RAW = 0
    CODEBOOK = 1


class CodebookDType(enum.IntEnum):
    """Element type of a codebook (spec §4.2): same ids as DType. The float8 ones (1.2) are the
    codebook type of a tensor of that dtype, and of no other (spec §7.2)."""

    F32 = 1
    F16 = 2
    F8_E4M3 = 14
    F8_E5M2 = 15


CODEBOOK_DTYPE_SIZE = {CodebookDType.F32: 4, CodebookDType.F16: 2, CodebookDType.F8_E4M3: 1,
                       CodebookDType.F8_E5M2: 1}


class Codec(enum.IntEnum):
    """Stream codecs (spec §8)."""

    PLAIN = 0
    BITPACK = 1
    HUFFMAN = 2
    ZSTD = 3
    BYTEPLANES = 4


class PlaneTransform(enum.IntEnum):
    """BYTEPLANES transforms (spec §8.5)."""

    NONE = 0
    ROTATE = 1


class ExtensionType(enum.IntEnum):
    """Extension record types (spec §4.6). 0 is reserved; 32768 … 65535 are for private use."""

    ATTACHMENT = 1
    ALIAS = 2


EXTENSION_CRITICAL = 0x0001
"""Extension record flag bit 0: a decoder that does not know the record's type refuses the file."""
EXTENSION_FLAGS = {ExtensionType.ATTACHMENT: 0, ExtensionType.ALIAS: EXTENSION_CRITICAL}
"""The flags a record of each known type has (spec §4.6)."""
PRIVATE_EXTENSION_TYPES = range(32768, 65536)
"""Extension types this spec never assigns: for a writer's own records."""
ATTACHMENT_CODECS = frozenset({0, 2, 3})
"""The codecs an attachment stream may use (spec §4.6.1): PLAIN, HUFFMAN, ZSTD."""


class Role(enum.Enum):
    """What a stream holds (spec §4.5). Not stored in the file: implied by the stream's position."""

    CODEBOOK = "codebook"
    VALUES = "values"
    ROW_COUNTS = "row_counts"
    GAPS = "gaps"
    ATTACHMENT = "attachment"


ELEMENT_DTYPE = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
"""Unsigned little-endian numpy dtype of a stream element of a given size in bytes."""


def symbol_size(alphabet: int) -> int:
    """Element size in bytes of a symbol stream over ``alphabet`` symbols (spec §4.5)."""
    return 1 if alphabet <= 256 else 2
