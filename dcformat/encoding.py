"""How a tensor is encoded: the caller's choices (:class:`Encoding`) and the automatic ones.

The default is lossless: a plain array comes back bit-exact. The library may store it sparse (all-
zero elements left out), with a codebook of its distinct values, and entropy coded, choosing
whatever is smallest. Loss happens only when the caller hands over a :class:`CodebookTensor`
(weights already shared) or asks for a float16 codebook.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .codecs import EncodedStream, encode_smallest
from .constants import (
    DTYPE_SIZE,
    ELEMENT_DTYPE,
    FLOAT8_DTYPES,
    FLOAT_DTYPES,
    MAX_CHUNK_ELEMENTS,
    MAX_CODEBOOK_SIZE,
    MAX_EMPTY_SHAPE_PRODUCT,
    MAX_INDEX_BITS,
    CodebookDType,
    Codec,
    DType,
    Layout,
    Role,
    ValueCoding,
    symbol_size,
)
from .errors import EncodingError
from .parallel import check_stop, map_ordered
from .structures import dtype_of, numpy_dtype
from .tensors import CodebookTensor

_CODEC_NAMES = {c.name.lower(): c for c in Codec}

DEFAULT_CHUNK_ELEMENTS = 2**20
"""Elements per chunk when :attr:`Encoding.chunk_elements` is None, except for what
:data:`RAW_FLOAT_CHUNK_ELEMENTS` names."""
RAW_FLOAT_CHUNK_ELEMENTS = {4: 2**18, 8: 2**18}
"""Elements per chunk of dense float32/float64 tensors stored RAW (as byte planes), by element
size: each chunk has its own plane codecs and Huffman tables, which follow the exponents' local
statistics (a row block of an embedding) better in 1 MiB chunks than in 4 MiB ones. Measured on
MiniLM float32: 21 KB smaller than 2**20-element chunks, as fast to decode; float16 and bfloat16
(1 byte of exponent per 2) gain less than the extra tables cost, and keep 2**20."""


@dataclass(frozen=True)
class Encoding:
    """Per-tensor encoding choices; every field defaults to the automatic (smallest) choice.

    layout: ``"auto"``, ``"dense"`` or ``"csr"`` (rank >= 2 only).
    index_bits: CSR relative-index width 1..16, or ``"auto"`` (fewest estimated bits, fillers
        included).
    codecs: names of the stream codecs a writer may use (``"plain"``, ``"bitpack"``,
        ``"huffman"``, ``"zstd"``, ``"byteplanes"``); ``None`` allows all. A stream that none of
        them can hold is stored PLAIN. The planes of a BYTEPLANES stream use the allowed ones
        among PLAIN, HUFFMAN and ZSTD (PLAIN always), or all three if ``codecs`` names none of them.
    codebook: for plain float32/float16 arrays, ``"auto"`` stores a codebook of the distinct values
        when that is smaller (lossless), ``"never"`` keeps raw values.
    codebook_dtype: ``"float32"`` or ``"float16"`` for the codebook of a CodebookTensor; ``None``
        keeps the CodebookTensor's own dtype. Asking for float16 rounds the codebook (lossy).
    chunk_elements: target elements per chunk (spec §4.4), or ``None`` for the writer's default
        (2**20 elements; 2**18 for dense float32/float64 byte planes, see
        :data:`RAW_FLOAT_CHUNK_ELEMENTS`).
    zstd_level: zstd level, or ``None`` to choose by stream size (19 small, 9 medium, 3 large).
    huffman_lanes: Huffman lanes per stream, or ``None`` for the codec's default.
    in_place: when the tensor is stored DENSE with RAW values, store its VALUES PLAIN (the
        elements' little-endian bytes) in one chunk (chunks of ``MAX_CHUNK_ELEMENTS`` beyond that,
        contiguous in any file whose alignment divides their byte length), so that with an
        alignment the tensor can be used in place from a memory map. ``chunk_elements`` and
        ``codecs`` then apply to the tensor's other encodings only (codebook, CSR).
    """

    layout: str = "auto"
    index_bits: int | str = "auto"
    codecs: tuple[str, ...] | None = None
    codebook: str = "auto"
    codebook_dtype: str | None = None
    chunk_elements: int | None = None
    zstd_level: int | None = None
    huffman_lanes: int | None = None
    in_place: bool = False

    def __post_init__(self):
        if self.layout not in ("auto", "dense", "csr"):
            raise EncodingError(f"layout must be 'auto', 'dense' or 'csr', not {self.layout!r}")
        if self.index_bits != "auto" and not (
            isinstance(self.index_bits, (int, np.integer)) and 1 <= self.index_bits <= MAX_INDEX_BITS
        ):
            raise EncodingError(f"index_bits must be 'auto' or 1..{MAX_INDEX_BITS}, not {self.index_bits!r}")
        if self.codecs is not None:
            unknown = [c for c in self.codecs if c not in _CODEC_NAMES]
            if unknown:
                raise EncodingError(f"unknown codecs {unknown}; known: {sorted(_CODEC_NAMES)}")
        if self.codebook not in ("auto", "never"):
            raise EncodingError(f"codebook must be 'auto' or 'never', not {self.codebook!r}")
        if self.codebook_dtype not in (None, "float32", "float16"):
            raise EncodingError(f"codebook_dtype must be None, 'float32' or 'float16', not {self.codebook_dtype!r}")
        if self.chunk_elements is not None and not (
            isinstance(self.chunk_elements, (int, np.integer)) and 1 <= self.chunk_elements <= MAX_CHUNK_ELEMENTS
        ):
            raise EncodingError(f"chunk_elements must be 1..{MAX_CHUNK_ELEMENTS}")
        if not isinstance(self.in_place, bool):
            raise EncodingError(f"in_place must be True or False, not {self.in_place!r}")

    @classmethod
    def coerce(cls, value) -> "Encoding":
        if value is None:
            return cls()
        if isinstance(value, Encoding):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise EncodingError(f"an encoding must be an Encoding or a dict, not {type(value).__name__}")

    def allowed(self, candidates) -> list[Codec]:
        """The codecs among ``candidates`` this encoding allows; PLAIN when none is left."""
        if self.codecs is None:
            return list(candidates)
        allowed = {_CODEC_NAMES[c] for c in self.codecs}
        return [c for c in candidates if c in allowed] or [Codec.PLAIN]


class EncodedTensor(NamedTuple):
    """A tensor ready for the writer: its index fields and its streams in file order."""

    dtype: DType
    shape: tuple[int, ...]
    layout: Layout
    value_coding: ValueCoding
    index_bits: int
    codebook_dtype: int
    codebook_size: int
    codebook: tuple[EncodedStream, int] | None  # (stream, count)
    chunks: list[tuple[int, list[tuple[EncodedStream, int]]]]  # (extent, [(stream, count), ...])


# --------------------------------------------------------------------------------------------
# Stream codec choice

_SYMBOL_CODECS = (Codec.BITPACK, Codec.HUFFMAN, Codec.ZSTD, Codec.PLAIN)
_WIDE_VALUE_CODECS = (Codec.PLAIN, Codec.BYTEPLANES, Codec.ZSTD)
_PLANE_CODECS = (Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD)


def _zstd_level(encoding: Encoding, nbytes: int) -> int:
    if encoding.zstd_level is not None:
        return encoding.zstd_level
    if nbytes <= 1 << 18:
        return 19
    if nbytes <= 1 << 22:
        return 9
    return 3


def encode_elements(elements: np.ndarray, element_size: int, encoding: Encoding, *, symbols: bool) -> tuple[EncodedStream, int]:
    """Encode a stream's elements with the smallest allowed codec; returns (stream, count)."""
    elements = np.ascontiguousarray(elements, dtype=ELEMENT_DTYPE[element_size])
    candidates = _SYMBOL_CODECS if symbols or element_size == 1 else _WIDE_VALUE_CODECS
    options = {Codec.ZSTD: {"level": _zstd_level(encoding, elements.nbytes)}}
    if encoding.huffman_lanes is not None:
        options[Codec.HUFFMAN] = {"lanes": encoding.huffman_lanes}
    # The planes keep to the allowed codecs among PLAIN, HUFFMAN and ZSTD (a zstd-less decoder must
    # not meet ZSTD inside them); codecs that name none of the three leave the planes all three.
    plane_codecs = list(_PLANE_CODECS)
    if encoding.codecs is not None and any(c.name.lower() in encoding.codecs for c in _PLANE_CODECS):
        plane_codecs = [c for c in _PLANE_CODECS if c == Codec.PLAIN or c.name.lower() in encoding.codecs]
    options[Codec.BYTEPLANES] = {"plane_codecs": plane_codecs, "plane_options": {Codec.ZSTD: options[Codec.ZSTD]}}
    try:
        stream = encode_smallest(elements, element_size, encoding.allowed(candidates), options)
    except EncodingError:  # no allowed codec can hold these elements: PLAIN always can
        stream = encode_smallest(elements, element_size, [Codec.PLAIN])
    return stream, len(elements)


# --------------------------------------------------------------------------------------------
# Tensors


def _bits_view(array: np.ndarray) -> np.ndarray:
    """The elements of ``array`` as unsigned bit patterns, flattened (C order, little-endian)."""
    size = array.dtype.itemsize
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.reshape(-1).view(ELEMENT_DTYPE[size])


def _entropy_bits(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(-(counts * np.log2(counts / total)).sum())


def raw_gap_histogram(nonzero: np.ndarray) -> np.ndarray:
    """Histogram of the zeros skipped before each non-zero of a 2-D bool mask, per row (spec §6.2)."""
    from .kernels import jit

    return jit("csr").gap_histogram(np.ascontiguousarray(nonzero, dtype=np.bool_))


def _stream_bits(hist: np.ndarray) -> float:
    """Estimated bits of a symbol stream: Huffman (entropy + 5-bit code lengths) or bit-packing."""
    used = np.flatnonzero(hist)
    if used.size == 0:
        return 0.0
    alphabet = int(used[-1]) + 1
    packed = float(hist.sum()) * max(1, (alphabet - 1).bit_length())
    return min(_entropy_bits(hist) + 5 * alphabet, packed)


def choose_index_bits(gap_hist: np.ndarray, value_hist: np.ndarray | None, raw_value_bits: float,
                      zero_symbol: int | None) -> int:
    """The relative-index width with the fewest estimated bits, fillers included.

    For width ``b`` a raw gap ``G`` becomes ``G >> b`` fillers (gap ``2**b - 1``, value zero) and one
    entry with gap ``G & (2**b - 1)``. Each stream's cost is estimated as the cheaper of Huffman
    (order-0 entropy plus its table) and bit-packing; raw values cost ``raw_value_bits`` each.
    """
    gaps = np.arange(len(gap_hist))
    best, best_cost = 1, np.inf
    nnz = int(gap_hist.sum())
    for b in range(1, MAX_INDEX_BITS + 1):
        width = 1 << b
        fillers = int(((gaps >> b) * gap_hist).sum())
        hist = np.bincount(gaps & (width - 1), weights=gap_hist, minlength=width)
        hist[width - 1] += fillers
        cost = _stream_bits(hist)
        if value_hist is not None:
            values = value_hist.astype(np.float64).copy()
            values[zero_symbol] += fillers
            cost += _stream_bits(values)
        else:
            cost += (nnz + fillers) * raw_value_bits
        if cost < best_cost:
            best, best_cost = b, cost
        if fillers == 0:
            break  # wider gaps only cost more from here on
    return best


def encode_tensor(tensor, encoding: Encoding | None = None, *, threads: int | None = None) -> EncodedTensor:
    """Encode a numpy array or a :class:`CodebookTensor` into streams (in memory).

    The chunks are encoded on ``threads`` threads (None: :func:`dcformat.parallel.default_threads`);
    the bytes do not depend on it."""
    encoding = Encoding.coerce(encoding)
    if isinstance(tensor, CodebookTensor):
        return _encode_codebook_tensor(tensor, encoding, threads)
    array = np.asarray(tensor)
    try:
        dtype = dtype_of(array.dtype)
    except KeyError:
        raise EncodingError(f"dtype {array.dtype} cannot be stored in a dcf file") from None
    if array.ndim > 8:
        raise EncodingError(f"rank {array.ndim} exceeds the format's limit of 8")
    bits = _bits_view(array)
    shape = tuple(int(d) for d in array.shape)
    if array.size == 0:
        if int(np.prod([d for d in shape if d], dtype=object)) > MAX_EMPTY_SHAPE_PRODUCT:
            raise EncodingError(f"empty shape {shape}: its non-zero dimensions multiply past what readers accept")
        return EncodedTensor(dtype, shape, Layout.DENSE, ValueCoding.RAW, 0, 0, 0, None, [])
    codebook_values = None
    if encoding.codebook == "auto" and dtype in (DType.F32, DType.F16, DType.BF16):
        codebook_values = _distinct_values(bits, count_all=dtype == DType.BF16)
    def raw():
        return _Plan(dtype, shape, encoding, bits != 0, bits, None, None, 0, threads).encode()

    if codebook_values is None:
        return raw()
    if dtype == DType.BF16:  # a table lookup: much faster than a binary search
        lookup = np.zeros(1 << 16, np.int32)
        lookup[codebook_values] = np.arange(len(codebook_values), dtype=np.int32)
        symbols = lookup[bits]
    else:
        symbols = _symbols(codebook_values, bits)
    zero = np.searchsorted(codebook_values, 0)
    zero_symbol = int(zero) if zero < len(codebook_values) and codebook_values[zero] == 0 else None
    if dtype != DType.BF16:
        codebook_dtype = CodebookDType.F32 if dtype == DType.F32 else CodebookDType.F16
        return _Plan(dtype, shape, encoding, bits != 0, symbols, zero_symbol, codebook_values, codebook_dtype,
                     threads).encode()
    # bfloat16 has no codebook type of its own: its values are exact in a float32 codebook (the
    # upper half of a binary32, spec §4.3), whose two low byte planes cost next to nothing.
    codebook_bits = codebook_values.astype(np.uint32) << np.uint32(16)
    if not _bf16_codebook_exact(codebook_bits, codebook_values):
        return raw()
    plan = _Plan(dtype, shape, encoding, bits != 0, symbols, zero_symbol, codebook_bits, CodebookDType.F32,
                 threads, adaptive_chunks=True)
    # A codebook of the distinct values Huffman-codes exponent, sign and mantissa jointly (on
    # MiniLM's large bfloat16 matrices 0.2-0.6 % smaller than byte planes, which code them apart),
    # but its code tables (5 bits per distinct value and chunk) and the codebook must pay for that;
    # both are encoded and the smaller kept (ties: byte planes, faster to decode).
    coded, planes = plan.encode(), raw()
    return coded if _stored(coded) < _stored(planes) else planes


def _bf16_codebook_exact(codebook_bits: np.ndarray, values: np.ndarray) -> bool:
    """Whether a float32 codebook converts back to exactly these bfloat16 bit patterns (spec §7.2:
    round to nearest even); NaN payloads might not."""
    from .structures import numpy_dtype

    with np.errstate(over="ignore", invalid="ignore"):
        back = codebook_bits.view(np.float32).astype(numpy_dtype(DType.BF16))
    return bool(np.array_equal(back.view(np.uint16), values))


def _distinct_values(bits: np.ndarray, count_all: bool = False) -> np.ndarray | None:
    """Sorted distinct bit patterns if a codebook of them is worth trying, else None.

    Worth it when there are at most 65,536 of them and they are few next to the element count (a
    quantized or pruned-and-shared tensor that was saved as a plain array). A sample decides fast
    for ordinary float weights, which have almost as many distinct values as elements.
    ``count_all`` (2-byte patterns only: bfloat16, whose trained weights have a few thousand
    distinct values, too many for the sample's test): count every pattern, in one pass.
    """
    n = bits.size
    if n < 64:
        return None
    if count_all:  # at most 65,536 patterns: count them all
        from .kernels import jit

        counts = jit("huffman").lane_histograms(bits, 1, n, 1 << 16)[0]
        values = np.flatnonzero(counts).astype(bits.dtype)
        return values if values.size <= n // 4 else None
    sample = bits[:: max(1, n // 4096)]
    if np.unique(sample).size > min(MAX_CODEBOOK_SIZE, sample.size // 4):
        return None
    limit = min(MAX_CODEBOOK_SIZE, n // 4)
    values = np.unique(bits[:SLICE_ELEMENTS])
    for start in range(SLICE_ELEMENTS, n, SLICE_ELEMENTS):  # the same set, slice by slice
        if values.size > limit:
            return None  # the union only grows
        check_stop()
        values = np.union1d(values, np.unique(bits[start:start + SLICE_ELEMENTS]))
    if values.size > limit:
        return None
    return values


SLICE_ELEMENTS = 1 << 20
"""Elements per step of the whole-tensor passes of :func:`encode_tensor` (distinct values, their
symbols), with a stop check (Ctrl-C, :func:`dcformat.parallel.check_stop`) between steps: tens of
milliseconds each, where one call over a 30522x384 embedding took 0.5 s and more under load."""


def _symbols(codebook_values: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Each element's index in the sorted ``codebook_values`` (int32), slice by slice."""
    symbols = np.empty(bits.size, np.int32)
    for start in range(0, bits.size, SLICE_ELEMENTS):
        check_stop()
        stop = start + SLICE_ELEMENTS
        symbols[start:stop] = np.searchsorted(codebook_values, bits[start:stop])
    return symbols


def _encode_codebook_tensor(tensor: CodebookTensor, encoding: Encoding, threads: int | None) -> EncodedTensor:
    try:
        dtype = dtype_of(tensor.dtype)
    except KeyError:
        raise EncodingError(f"dtype {tensor.dtype} cannot be stored in a dcf file") from None
    if dtype not in FLOAT_DTYPES:
        raise EncodingError(f"a CodebookTensor needs a float dtype, not {tensor.dtype}")
    codebook = tensor.codebook
    if dtype in FLOAT8_DTYPES:
        bits = _float8_codebook(codebook, dtype, encoding)
        codebook_dtype = CodebookDType(int(dtype))
    else:
        wanted = encoding.codebook_dtype or codebook.dtype.name
        with np.errstate(over="ignore"):
            codebook = codebook.astype(np.float32 if wanted == "float32" else np.float16)
        codebook_dtype = CodebookDType.F32 if codebook.dtype == np.float32 else CodebookDType.F16
        bits = codebook.view(ELEMENT_DTYPE[codebook.itemsize])
    zero = np.flatnonzero(bits == 0)
    zero_symbol = int(zero[0]) if zero.size else None
    indices = tensor.indices.reshape(-1).astype(np.int32, copy=False)  # no copy of int32 indices
    shape = tuple(int(d) for d in tensor.shape)
    if indices.size == 0:
        return EncodedTensor(dtype, shape, Layout.DENSE, ValueCoding.RAW, 0, 0, 0, None, [])
    plan = _Plan(dtype, shape, encoding, indices >= 0, indices, zero_symbol, bits, codebook_dtype, threads)
    return plan.encode()


def _float8_codebook(codebook: np.ndarray, dtype: DType, encoding: Encoding) -> np.ndarray:
    """The codes of a float8 tensor's codebook (spec §7.2, version 1.2: stored in the tensor's own
    float8 type): a codebook of that type as it is; a float32 or float16 one (``codebook_dtype``
    "float16" rounds it to float16 first) rounded to the float8 type, to nearest, ties to even."""
    from .conversion import float32_to_float8

    if codebook.dtype == numpy_dtype(dtype):
        return np.ascontiguousarray(codebook).view(np.uint8)
    if encoding.codebook_dtype == "float16":
        with np.errstate(over="ignore"):
            codebook = codebook.astype(np.float16)
    try:
        return float32_to_float8(codebook.astype(np.float32), dtype)
    except ValueError as exc:
        raise EncodingError(f"a codebook value cannot be stored as {dtype.name}: {exc}") from None


_PLAIN_ONLY = Encoding(codecs=("plain",))


class _Plan:
    """Chooses layout and index width for one tensor, then encodes it chunk by chunk.

    ``elements``: per element, the raw bit pattern (RAW) or the codebook symbol (CODEBOOK, with -1
    for an element left out). ``kept``: the elements that are not zero.
    """

    def __init__(self, dtype, shape, encoding, kept, elements, zero_symbol, codebook_bits, codebook_dtype,
                 threads=None, adaptive_chunks=False):
        self.dtype, self.shape, self.encoding, self.threads = dtype, shape, encoding, threads
        self.adaptive_chunks = adaptive_chunks  # dense symbols: chunk bounds from their statistics
        self.kept, self.elements = kept, elements
        self.zero_symbol, self.codebook_bits, self.codebook_dtype = zero_symbol, codebook_bits, codebook_dtype
        self.numel = int(np.prod(shape, dtype=np.int64)) if shape else 1

    @property
    def coded(self) -> bool:
        return self.codebook_bits is not None

    def encode(self) -> EncodedTensor:
        layout = self.encoding.layout
        can_csr = len(self.shape) >= 2 and self.shape[0] > 0
        if layout == "csr" and not can_csr:
            raise EncodingError(f"CSR needs a tensor of rank >= 2, got shape {self.shape}")
        if layout == "dense" or not can_csr:
            return self._encode(Layout.DENSE)
        if layout == "csr":
            return self._encode(Layout.CSR)
        density = np.count_nonzero(self.kept) / max(1, self.numel)
        dense = self._encode(Layout.DENSE)
        if density > 0.5:
            return dense
        sparse = self._encode(Layout.CSR)
        return sparse if _stored(sparse) < _stored(dense) else dense

    # ------------------------------------------------------------------------------------------
    def _codebook_stream(self, symbols_needed_zero: bool):
        """The codebook (with a zero appended when the layout needs one) and its zero symbol."""
        bits = self.codebook_bits
        zero_symbol = self.zero_symbol
        if symbols_needed_zero and zero_symbol is None:
            if len(bits) >= MAX_CODEBOOK_SIZE:
                raise EncodingError("the codebook has 65,536 values and no zero: no room for the zero symbol")
            zero_symbol = len(bits)
            bits = np.concatenate([bits, np.zeros(1, bits.dtype)])
        stream = encode_elements(bits, bits.dtype.itemsize, self.encoding, symbols=False)
        return stream, len(bits), zero_symbol

    def _chunk_elements(self, layout: Layout) -> int:
        """The caller's chunk size, else the default for this kind of stream (spec §4.4: a writer's
        choice; each chunk has its own streams, so its own code tables)."""
        if self.encoding.chunk_elements is not None:
            return int(self.encoding.chunk_elements)
        if layout == Layout.DENSE and not self.coded and self.dtype in FLOAT_DTYPES:
            return RAW_FLOAT_CHUNK_ELEMENTS.get(DTYPE_SIZE[self.dtype], DEFAULT_CHUNK_ELEMENTS)
        return DEFAULT_CHUNK_ELEMENTS

    def _value_size(self, k: int) -> int:
        return symbol_size(k) if self.coded else DTYPE_SIZE[self.dtype]

    def _encode(self, layout: Layout) -> EncodedTensor:
        if layout == Layout.DENSE:
            return self._encode_dense()
        return self._encode_csr()

    def _encode_dense(self) -> EncodedTensor:
        codebook = None
        k = 0
        elements = self.elements
        if self.coded:
            needs_zero = bool((elements < 0).any())
            codebook, k, zero_symbol = self._codebook_stream(needs_zero)
            if needs_zero:
                elements = np.where(elements < 0, zero_symbol, elements)
        size = self._value_size(k)
        in_place = self.encoding.in_place and not self.coded
        if self.coded and self.adaptive_chunks and self.encoding.chunk_elements is None:
            bounds = adaptive_chunk_bounds(elements, k)
        else:
            step = MAX_CHUNK_ELEMENTS if in_place else self._chunk_elements(Layout.DENSE)
            bounds = list(range(0, self.numel, step)) + [self.numel]
        parts = [elements[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
        encoding = _PLAIN_ONLY if in_place else self.encoding
        streams = map_ordered(lambda part: encode_elements(part, size, encoding, symbols=self.coded),
                              parts, [part.nbytes for part in parts], self.threads)
        chunks = [(len(part), [stream]) for part, stream in zip(parts, streams)]
        return EncodedTensor(
            self.dtype, self.shape, Layout.DENSE, ValueCoding.CODEBOOK if self.coded else ValueCoding.RAW,
            0, int(self.codebook_dtype) if self.coded else 0, k, codebook, chunks,
        )

    def _encode_csr(self) -> EncodedTensor:
        from .csr import csr_encode, gather_values

        rows = self.shape[0]
        cols = self.numel // rows
        kept = self.kept.reshape(rows, cols)
        index_bits = self.encoding.index_bits
        if index_bits == "auto":
            gap_hist = raw_gap_histogram(kept)
            if self.coded:
                k_est = len(self.codebook_bits) + (self.zero_symbol is None)
                zero_est = self.zero_symbol if self.zero_symbol is not None else k_est - 1
                value_hist = np.bincount(self.elements[self.kept.reshape(-1)], minlength=k_est)
                index_bits = choose_index_bits(gap_hist, value_hist, 0.0, zero_est)
            else:
                index_bits = choose_index_bits(gap_hist, None, 8.0 * DTYPE_SIZE[self.dtype], None)
        index_bits = int(index_bits)
        # mark kept elements with a non-zero pattern for the CSR builder
        marks = kept.view(np.uint8)
        rows_per_chunk = max(1, min(rows, self._chunk_elements(Layout.CSR) // max(1, cols)))
        if rows_per_chunk * cols > MAX_CHUNK_ELEMENTS:
            raise EncodingError(f"a row of {cols} elements is too long for CSR; store the tensor dense")
        bounds = [(start, min(rows, start + rows_per_chunk)) for start in range(0, rows, rows_per_chunk)]
        costs = [(stop - start) * cols * self.elements.itemsize for start, stop in bounds]

        def entries(bound):
            start, stop = bound
            return csr_encode(np.ascontiguousarray(marks[start:stop]), index_bits)

        parts = map_ordered(entries, bounds, costs, self.threads)
        any_filler = any(bool((sources < 0).any()) for _, _, sources in parts)
        codebook = None
        k = 0
        zero_symbol = None
        if self.coded:
            codebook, k, zero_symbol = self._codebook_stream(any_filler)
        size = self._value_size(k)

        def chunk_streams(i):
            (start, stop), (row_counts, gaps, sources) = bounds[i], parts[i]
            flat = self.elements[start * cols:stop * cols]
            values = gather_values(flat, sources, zero_symbol or 0)  # no zero symbol: no fillers
            return [
                encode_elements(row_counts, 4, self.encoding, symbols=True),
                encode_elements(gaps, symbol_size(1 << index_bits), self.encoding, symbols=True),
                encode_elements(values, size, self.encoding, symbols=self.coded),
            ]

        streams = map_ordered(chunk_streams, range(len(bounds)), costs, self.threads)
        chunks = [(stop - start, chunk) for (start, stop), chunk in zip(bounds, streams)]
        return EncodedTensor(
            self.dtype, self.shape, Layout.CSR, ValueCoding.CODEBOOK if self.coded else ValueCoding.RAW,
            index_bits, int(self.codebook_dtype) if self.coded else 0, k, codebook, chunks,
        )


ADAPTIVE_BLOCK = 2**16
"""Granularity of :func:`adaptive_chunk_bounds`: chunks start and end on multiples of it."""
ADAPTIVE_MAX_CHUNK = 2**21
"""The longest chunk :func:`adaptive_chunk_bounds` makes."""
_ADAPTIVE_MAX_CELLS = 2**23


def adaptive_chunk_bounds(symbols: np.ndarray, k: int) -> list[int]:
    """Chunk boundaries for dense codebook symbols where the statistics change (spec §4.4: the
    writer chooses each chunk's extent, and each chunk gets its own Huffman table).

    The symbols are cut into blocks of :data:`ADAPTIVE_BLOCK`; a dynamic program then picks the
    split into runs of whole blocks (each at most :data:`ADAPTIVE_MAX_CHUNK` elements) that
    minimises the estimated size: per chunk its order-0 entropy plus its Huffman table (5 bits a
    symbol of its alphabet) and fixed costs (headers, chunk entry, descriptor). On MiniLM's bfloat16
    word embeddings, whose first rows (unused tokens) differ from the rest, this is 26 KB smaller
    than 2**20-element chunks. Returns ``[0, …, len(symbols)]``.
    """
    n = int(symbols.size)
    k = max(1, int(k))
    block = ADAPTIVE_BLOCK
    while (-(-n // block)) * k > _ADAPTIVE_MAX_CELLS:  # bounded memory and time for huge tensors
        block *= 2
    blocks = -(-n // block)
    longest = max(1, min(ADAPTIVE_MAX_CHUNK, MAX_CHUNK_ELEMENTS) // block)
    if blocks <= 1:
        return [0, n]
    histograms = np.zeros((blocks + 1, k), np.int64)  # row b: counts of blocks 0 … b-1
    for b in range(blocks):
        histograms[b + 1] = np.bincount(symbols[b * block:(b + 1) * block], minlength=k)[:k]
    np.cumsum(histograms, axis=0, out=histograms)
    symbol_ids = np.arange(1, k + 1)
    fixed_bits = 8.0 * (8 + 4 * 4 + 8 + 24)  # Huffman header, lane lengths, chunk extent, descriptor
    best = np.zeros(blocks + 1)
    start = np.zeros(blocks + 1, np.int64)
    for j in range(1, blocks + 1):
        first = max(0, j - longest)
        counts = (histograms[j] - histograms[first:j]).astype(np.float64)  # chunk i … j-1, i ≥ first
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            bits = np.where(counts > 0, counts * np.log2(totals / counts), 0.0).sum(axis=1)
        alphabet = (np.where(counts > 0, symbol_ids, 0)).max(axis=1)
        cost = best[first:j] + bits + 5.0 * alphabet + fixed_bits
        i = int(np.argmin(cost))
        best[j], start[j] = cost[i], first + i
    cuts = [blocks]
    while cuts[-1] > 0:
        cuts.append(int(start[cuts[-1]]))
    return [min(n, c * block) for c in reversed(cuts)]


def _stored(encoded: EncodedTensor) -> int:
    total = len(encoded.codebook[0].payload) + 24 if encoded.codebook else 0
    for _, streams in encoded.chunks:
        total += sum(len(s.payload) for s, _ in streams) + 8 + 24 * len(streams)
    return total
