"""The index of a dcf file as small immutable records (spec §4), shared by reader and writer."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .constants import (
    CODEBOOK_DTYPE_SIZE,
    DTYPE_SIZE,
    CodebookDType,
    Codec,
    DType,
    Layout,
    Role,
    ValueCoding,
    symbol_size,
)


class StreamInfo(NamedTuple):
    """One stream descriptor (spec §4.5) plus the offset a reader computed for it (spec §5)."""

    role: Role
    codec: Codec
    param: int
    crc32: int
    count: int
    length: int
    offset: int = 0


class ChunkInfo(NamedTuple):
    """One chunk (spec §4.4): ``start`` is its first element (DENSE) or row (CSR)."""

    start: int
    extent: int
    streams: tuple[StreamInfo, ...]


class TensorInfo(NamedTuple):
    """One tensor entry (spec §4.2)."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    layout: Layout
    value_coding: ValueCoding
    index_bits: int
    codebook_dtype: int
    codebook_size: int
    codebook: StreamInfo | None
    chunks: tuple[ChunkInfo, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def cols(self) -> int:
        return self.numel // self.shape[0] if self.shape and self.shape[0] else _prod(self.shape[1:])

    @property
    def streams(self) -> tuple[StreamInfo, ...]:
        """Every stream of the tensor in file order (spec §5)."""
        head = (self.codebook,) if self.codebook is not None else ()
        return head + tuple(s for chunk in self.chunks for s in chunk.streams)

    @property
    def stored_bytes(self) -> int:
        return sum(s.length for s in self.streams)

    @property
    def entries(self) -> int:
        """CSR: stored entries, fillers included. DENSE: elements."""
        if self.layout == Layout.CSR:
            return sum(c.streams[1].count for c in self.chunks)
        return self.numel


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def element_size(role: Role, tensor: TensorInfo) -> int:
    """Size in bytes of one decoded element of a stream of ``role`` in ``tensor`` (spec §4.5)."""
    if role is Role.CODEBOOK:
        return CODEBOOK_DTYPE_SIZE[CodebookDType(tensor.codebook_dtype)]
    if role is Role.ROW_COUNTS:
        return 4
    if role is Role.GAPS:
        return symbol_size(2**tensor.index_bits)
    if tensor.value_coding == ValueCoding.CODEBOOK:
        return symbol_size(tensor.codebook_size)
    return DTYPE_SIZE[tensor.dtype]


def element_bound(role: Role, tensor: TensorInfo) -> int | None:
    """Exclusive upper bound on the elements of a stream of ``role`` (spec §4.5), or None."""
    if role is Role.ROW_COUNTS:
        return tensor.cols + 1
    if role is Role.GAPS:
        return 2**tensor.index_bits
    if role is Role.VALUES:
        if tensor.value_coding == ValueCoding.CODEBOOK:
            return tensor.codebook_size
        if tensor.dtype == DType.BOOL:
            return 2
    return None


CHUNK_ROLES = {
    Layout.DENSE: (Role.VALUES,),
    Layout.CSR: (Role.ROW_COUNTS, Role.GAPS, Role.VALUES),
}


# numpy dtypes of decoded tensors. BF16 and the float8 types (1.2) come from ml_dtypes, imported
# lazily: header-only readers (dcinfo) never need it. ml_dtypes gives them their numpy type only:
# every conversion of their values the format defines is computed in dcformat.conversion.
_NUMPY_NAMES = {
    DType.F32: "float32", DType.F16: "float16", DType.F64: "float64",
    DType.I8: "int8", DType.I16: "int16", DType.I32: "int32", DType.I64: "int64",
    DType.U8: "uint8", DType.U16: "uint16", DType.U32: "uint32", DType.U64: "uint64",
    DType.BOOL: "bool",
}


def numpy_dtype(dtype: DType) -> np.dtype:
    """The numpy dtype of decoded tensors of ``dtype`` (little-endian)."""
    if dtype in _ML_DTYPES_NAMES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, _ML_DTYPES_NAMES[dtype]))
    return np.dtype(_NUMPY_NAMES[dtype]).newbyteorder("<")


_ML_DTYPES_NAMES = {DType.BF16: "bfloat16", DType.F8_E4M3: "float8_e4m3fn", DType.F8_E5M2: "float8_e5m2"}
"""The dtypes whose numpy type is ml_dtypes', by its name there (also their torch names)."""


def dtype_of(array_dtype: np.dtype) -> DType:
    """The file dtype for a numpy dtype; raises KeyError for dtypes the format lacks."""
    array_dtype = np.dtype(array_dtype)
    for dtype, name in _ML_DTYPES_NAMES.items():
        if array_dtype.name == name:
            return dtype
    for dtype, name in _NUMPY_NAMES.items():
        if array_dtype.name == name:
            return dtype
    raise KeyError(array_dtype.name)


DTYPE_NAMES = {d: d.name for d in DType}
CODEC_NAMES = {c: c.name.lower() for c in Codec}
