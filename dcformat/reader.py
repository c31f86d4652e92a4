"""Decode tensors from a dcf file: ``DCFReader`` (lazy, memory-mapped) and ``decode_tensor``.

Every value read from the file is checked before a kernel indexes with it: stream bounds and
checksums here, payload lengths in each codec, element bounds right after decoding.
"""
from __future__ import annotations

import mmap
import os
import zlib

import numpy as np

from .codecs import get_codec
from .constants import DEFAULT_MAX_TENSOR_BYTES, DTYPE_SIZE, ELEMENT_DTYPE, CodebookDType, Codec, DType, Layout, Role, ValueCoding
from .errors import ChecksumError, CorruptFileError, CountMismatchError, DCFormatError, LimitExceededError
from .index_reader import Header, read_header
from .structures import StreamInfo, TensorInfo, element_bound, element_size, numpy_dtype
from .tensors import CodebookTensor


def decode_stream(buffer, stream: StreamInfo, tensor: TensorInfo, *, verify: bool = True) -> np.ndarray:
    """Decode one stream of ``tensor`` to its elements, checked against the role's bound."""
    payload = memoryview(buffer)[stream.offset:stream.offset + stream.length]
    if verify and zlib.crc32(payload) != stream.crc32:
        raise ChecksumError(f"{tensor.name!r}: {stream.role.value} stream checksum mismatch")
    size = element_size(stream.role, tensor)
    bound = element_bound(stream.role, tensor)
    if stream.count == 0:
        return np.zeros(0, ELEMENT_DTYPE[size])
    elements = get_codec(stream.codec).decode(payload, stream.count, size, stream.param, bound)
    if elements.shape != (stream.count,) or elements.dtype != ELEMENT_DTYPE[size]:
        raise CountMismatchError(f"{tensor.name!r}: {stream.role.value} stream decoded to a wrong size")
    if bound is not None and stream.codec != Codec.HUFFMAN and elements.max() >= bound:
        raise CorruptFileError(
            f"{tensor.name!r}: {stream.role.value} element {int(elements.max())} exceeds its bound {bound - 1}"
        )
    return elements


def _codebook_bits(buffer, tensor: TensorInfo, verify: bool) -> np.ndarray:
    """The codebook converted to the tensor's dtype, as unsigned bit patterns (spec §7.2)."""
    raw = decode_stream(buffer, tensor.codebook, tensor, verify=verify)
    source = np.dtype("<f4") if tensor.codebook_dtype == CodebookDType.F32 else np.dtype("<f2")
    target = numpy_dtype(tensor.dtype)
    values = raw.view(source)
    if target != source:
        with np.errstate(over="ignore", invalid="ignore"):
            values = values.astype(target)
    return np.ascontiguousarray(values).view(ELEMENT_DTYPE[DTYPE_SIZE[tensor.dtype]])


def check_tensor_size(tensor: TensorInfo, max_tensor_bytes: int) -> None:
    size = tensor.numel * DTYPE_SIZE[tensor.dtype]
    if size > max_tensor_bytes:
        raise LimitExceededError(
            f"{tensor.name!r} decodes to {size} bytes, over this reader's limit of {max_tensor_bytes}"
        )


def decode_tensor(buffer, tensor: TensorInfo, *, verify: bool = True,
                  max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> np.ndarray:
    """Decode ``tensor`` (an index entry of the file held in ``buffer``) to a numpy array."""
    check_tensor_size(tensor, max_tensor_bytes)
    out_bits = np.zeros(tensor.numel, ELEMENT_DTYPE[DTYPE_SIZE[tensor.dtype]])
    table = _codebook_bits(buffer, tensor, verify) if tensor.value_coding == ValueCoding.CODEBOOK else None
    for chunk in tensor.chunks:
        _decode_chunk(buffer, tensor, chunk, table, out_bits, verify)
    return out_bits.view(numpy_dtype(tensor.dtype)).reshape(tensor.shape)


def _decode_chunk(buffer, tensor, chunk, table, out_bits, verify) -> None:
    if tensor.layout == Layout.DENSE:
        values = decode_stream(buffer, chunk.streams[0], tensor, verify=verify)
        out_bits[chunk.start:chunk.start + chunk.extent] = table[values] if table is not None else values
        return
    from .csr import csr_decode

    counts_stream, gaps_stream, values_stream = chunk.streams
    row_counts = decode_stream(buffer, counts_stream, tensor, verify=verify)
    if int(row_counts.sum(dtype=np.uint64)) != gaps_stream.count:
        raise CountMismatchError(
            f"{tensor.name!r}: row counts add up to {int(row_counts.sum(dtype=np.uint64))}, "
            f"but the chunk has {gaps_stream.count} entries"
        )
    gaps = decode_stream(buffer, gaps_stream, tensor, verify=verify)
    values = decode_stream(buffer, values_stream, tensor, verify=verify)
    if table is not None:
        values = table[values]
    cols = tensor.cols
    start = chunk.start * cols
    region = out_bits[start:start + chunk.extent * cols]
    csr_decode(row_counts, gaps, values, chunk.extent, cols, out=region)


def decode_codebook_tensor(buffer, tensor: TensorInfo, *, verify: bool = True,
                           max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> CodebookTensor:
    """Decode a CODEBOOK tensor to its codebook and per-element indices (-1 for a zero element).

    Elements that a file stores with a symbol whose codebook value is zero (fillers, or a dense
    zero symbol) come back as that symbol's index, not -1; positions with no entry come back -1.
    """
    if tensor.value_coding != ValueCoding.CODEBOOK:
        raise DCFormatError(f"{tensor.name!r} is not stored with a codebook")
    check_tensor_size(tensor, max_tensor_bytes)
    raw = decode_stream(buffer, tensor.codebook, tensor, verify=verify)
    codebook = raw.view("<f4" if tensor.codebook_dtype == CodebookDType.F32 else "<f2").copy()
    index_dtype = np.int32
    indices = np.full(tensor.numel, -1, index_dtype)
    symbols_plus_one = np.arange(1, tensor.codebook_size + 1, dtype=np.uint32)
    for chunk in tensor.chunks:
        if tensor.layout == Layout.DENSE:
            values = decode_stream(buffer, chunk.streams[0], tensor, verify=verify)
            indices[chunk.start:chunk.start + chunk.extent] = values
            continue
        from .csr import csr_decode

        counts_stream, gaps_stream, values_stream = chunk.streams
        row_counts = decode_stream(buffer, counts_stream, tensor, verify=verify)
        if int(row_counts.sum(dtype=np.uint64)) != gaps_stream.count:
            raise CountMismatchError(f"{tensor.name!r}: row counts do not add up to the entries")
        gaps = decode_stream(buffer, gaps_stream, tensor, verify=verify)
        symbols = decode_stream(buffer, values_stream, tensor, verify=verify)
        cols = tensor.cols
        region = np.zeros(chunk.extent * cols, np.uint32)
        csr_decode(row_counts, gaps, symbols_plus_one[symbols], chunk.extent, cols, out=region)
        indices[chunk.start * cols:(chunk.start + chunk.extent) * cols] = region.astype(np.int64) - 1
    return CodebookTensor(codebook, indices.reshape(tensor.shape), numpy_dtype(tensor.dtype))


class DCFReader:
    """A dcf file opened lazily: the index is parsed at once, tensors are decoded on request.

    Use as a context manager (``with dcformat.open(path) as f: f.get_tensor(name)``). The file is
    memory-mapped; a tensor's streams are read only when that tensor is asked for.
    """

    def __init__(self, source, *, verify: bool = True, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
        self._file = None
        self._mmap = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._buffer = memoryview(source)
            self.path = None
        else:
            self.path = os.fspath(source)
            self._file = open(self.path, "rb")
            size = os.fstat(self._file.fileno()).st_size
            if size == 0:
                self._buffer = memoryview(b"")
            else:
                self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                self._buffer = memoryview(self._mmap)
        self.verify = verify
        self.max_tensor_bytes = max_tensor_bytes
        try:
            self.header: Header = read_header(self._buffer, check_crc=verify)
        except BaseException:
            self.close()
            raise

    # -- the safetensors-like surface -------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self.header.tensors)

    def metadata(self) -> dict[str, str]:
        return dict(self.header.metadata)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.header.tensors[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in this file") from None

    def tensors_info(self) -> list[TensorInfo]:
        return list(self.header.tensors.values())

    def get_tensor(self, name: str) -> np.ndarray:
        return decode_tensor(self._buffer, self.info(name), verify=self.verify, max_tensor_bytes=self.max_tensor_bytes)

    def get_codebook_tensor(self, name: str) -> CodebookTensor:
        return decode_codebook_tensor(
            self._buffer, self.info(name), verify=self.verify, max_tensor_bytes=self.max_tensor_bytes
        )

    def __contains__(self, name: str) -> bool:
        return name in self.header.tensors

    def __iter__(self):
        return iter(self.header.tensors)

    def __len__(self) -> int:
        return len(self.header.tensors)

    def verify_all(self) -> None:
        """Decode every tensor, checking every checksum and every rule; raise on the first fault."""
        for tensor in self.header.tensors.values():
            decode_tensor(self._buffer, tensor, verify=True, max_tensor_bytes=self.max_tensor_bytes)

    def close(self) -> None:
        buffer, self._buffer = getattr(self, "_buffer", None), memoryview(b"")
        if buffer is not None:
            buffer.release()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # a view is still alive (in a traceback, say): the mapping closes when it goes
            self._mmap = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "DCFReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
