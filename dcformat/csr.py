"""CSR with relative column indices (spec §6.2): build a chunk's entries, and scatter them back.

A chunk of a CSR tensor is a matrix of ``rows`` x ``cols`` elements; each row is stored as a list of
*entries* (gap, value). The gap is the number of columns skipped since the previous entry of the
row (the first entry's gap is its column); it holds at most ``2 ** index_bits - 1``, and a writer
inserts a *filler* entry (gap ``2 ** index_bits - 1``, zero value) whenever the distance to the next
non-zero is larger. Three streams hold a chunk: ROW_COUNTS (entries per row, uint32), GAPS (uint8 if
``index_bits <= 8``, else uint16) and VALUES.

These functions work on *element bit patterns*: pass a uint8/16/32/64 view of the tensor's elements
(``a.view(np.uint32)`` for float32). An element is zero when its bit pattern is all zeros, so
``-0.0`` is a non-zero and is stored (spec §1).

Worked example of spec §6.2, ``index_bits = 2``, the row ``[0 5 0 0 0 0 0 0 0 0 7 0]``:
``csr_encode`` gives row_counts ``[4]``, gaps ``[1 3 3 0]`` and sources ``[1 -1 -1 10]``, so the
values are ``5 0 0 7``.
"""
from __future__ import annotations

import numpy as np

from .constants import MAX_INDEX_BITS
from .errors import CorruptFileError, CountMismatchError, EncodingError
from . import kernels
from .kernels import small as _codes  # the kernels' error codes, without importing Numba

_UINT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64))


def gaps_dtype(index_bits: int) -> np.dtype:
    """Element type of the GAPS stream (spec §4.5): uint8 if ``index_bits <= 8``, else uint16."""
    return np.dtype(np.uint8) if index_bits <= 8 else np.dtype(np.uint16)


def _check_chunk(chunk_bits_2d) -> np.ndarray:
    a = np.asarray(chunk_bits_2d)
    if a.ndim != 2:
        raise EncodingError(f"a CSR chunk must be a 2-D array, got {a.ndim}-D")
    if a.dtype.newbyteorder("=") not in _UINT_DTYPES:
        raise EncodingError(
            f"a CSR chunk must be given as element bit patterns (uint8/16/32/64), got {a.dtype}")
    if a.shape[1] > np.iinfo(np.uint32).max:
        raise EncodingError(f"{a.shape[1]} columns: a row count would not fit its uint32")
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def _check_index_bits(index_bits) -> int:
    if isinstance(index_bits, bool) or not isinstance(index_bits, (int, np.integer)) \
            or not 1 <= index_bits <= MAX_INDEX_BITS:
        raise EncodingError(
            f"index_bits must be an integer 1 … {MAX_INDEX_BITS}, got {index_bits!r}")
    return int(index_bits)


def csr_encode(chunk_bits_2d: np.ndarray,
               index_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries of a chunk, fillers included, per spec §6.2.

    ``chunk_bits_2d``: 2-D uint8/16/32/64 array of element bit patterns (``rows`` x ``cols``).
    ``index_bits``: 1 … 16.

    Returns ``(row_counts, gaps, sources)``: ``row_counts`` uint32[rows], the entries of each row;
    ``gaps`` uint8 (``index_bits <= 8``) or uint16, one per entry; ``sources`` int64, one per entry:
    the flat index ``r * cols + c`` of the entry's element in the chunk, or ``-1`` for a filler.
    The VALUES stream is the chunk's elements at ``sources`` with the zero value at fillers (see
    :func:`gather_values`). Two passes (count, then fill), so the outputs are allocated exactly.
    """
    bits = _check_chunk(chunk_bits_2d)
    index_bits = _check_index_bits(index_bits)
    row_counts = np.empty(bits.shape[0], np.uint32)
    _k = kernels.jit("csr")
    total = _k.count_entries(bits, index_bits, row_counts)
    gaps = np.empty(total, gaps_dtype(index_bits))
    sources = np.empty(total, np.int64)
    _k.fill_entries(bits, index_bits, gaps, sources)
    return row_counts, gaps, sources


def gather_values(elements: np.ndarray, sources: np.ndarray, filler) -> np.ndarray:
    """The VALUES of a chunk's entries: ``elements.ravel()[sources]``, ``filler`` where ``-1``.

    ``elements`` is the chunk in any form sharing its C order (bit patterns, or codebook symbols);
    ``filler`` is the value a filler entry stores: the zero bit pattern for RAW values, or the
    symbol of the codebook's zero for CODEBOOK values (spec §7.2).
    """
    flat = np.asarray(elements).reshape(-1)
    sources = np.asarray(sources, dtype=np.int64)
    values = flat[np.maximum(sources, 0)] if flat.size else np.zeros(sources.shape, flat.dtype)
    values[sources < 0] = filler
    return values


def csr_decode(row_counts: np.ndarray, gaps: np.ndarray, values: np.ndarray, rows: int, cols: int,
               out: np.ndarray | None = None, table: np.ndarray | None = None) -> np.ndarray:
    """Rebuild a chunk from its decoded streams, per the decoder of spec §6.2.

    ``row_counts``: uint32[rows]; ``gaps``: uint8 or uint16; ``values``: uint8/16/32/64 element bit
    patterns (or symbols), as many as ``gaps``. ``out``: optional C-contiguous array of
    ``rows * cols`` elements of ``values``' dtype, any shape; every element of it is written (it
    need not be zeroed). Returns the chunk as a ``rows`` x ``cols`` array (a view of ``out`` if
    given). ``table``: optional codebook (1-D unsigned bit patterns): ``values`` are then uint8 or
    uint16 symbols and entry ``k`` writes ``table[values[k]]``, in the same pass (spec §7.2); the
    output has ``table``'s dtype, and a symbol ``>= len(table)`` raises :class:`CorruptFileError`.

    Raises :class:`CountMismatchError` if ``len(row_counts) != rows``, ``len(gaps) != len(values)``
    or the row counts do not add up to the number of entries, and :class:`CorruptFileError` if an
    entry's position is ``>= cols`` (which also catches a row count above ``cols``). Gap values
    themselves are not checked against ``2 ** index_bits`` here: the container checks each stream
    against its role's bound. After an error ``out`` holds partial data and must be discarded.
    """
    rows, cols = int(rows), int(cols)
    if rows < 0 or cols < 0:
        raise ValueError(f"negative chunk shape {rows} x {cols}")
    row_counts = np.asarray(row_counts)
    gaps = np.asarray(gaps)
    values = np.asarray(values)
    if row_counts.ndim != 1 or row_counts.dtype.newbyteorder("=") != np.uint32:
        raise TypeError(f"row_counts must be a 1-D uint32 array, got {row_counts.dtype}")
    if gaps.ndim != 1 or gaps.dtype.newbyteorder("=") not in (np.uint8, np.uint16):
        raise TypeError(f"gaps must be a 1-D uint8 or uint16 array, got {gaps.dtype}")
    if values.ndim != 1 or values.dtype.newbyteorder("=") not in _UINT_DTYPES:
        raise TypeError(f"values must be a 1-D unsigned integer array, got {values.dtype}")
    if len(row_counts) != rows:
        raise CountMismatchError(f"{len(row_counts)} row counts for {rows} rows")
    if len(gaps) != len(values):
        raise CountMismatchError(f"{len(gaps)} gaps but {len(values)} values")
    dtype = values.dtype.newbyteorder("=")
    if table is not None:
        table = np.asarray(table)
        if table.ndim != 1 or table.dtype.newbyteorder("=") not in _UINT_DTYPES:
            raise TypeError(f"table must be a 1-D unsigned integer array, got {table.dtype}")
        if dtype not in (np.uint8, np.uint16):
            raise TypeError(f"symbols must be uint8 or uint16, got {values.dtype}")
        table = np.ascontiguousarray(table, table.dtype.newbyteorder("="))
        symbol_dtype, dtype = dtype, table.dtype
    if out is None:
        out = np.empty((rows, cols), dtype)
        flat = out.reshape(-1)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != dtype or not out.flags.c_contiguous \
                or not out.flags.writeable or out.size != rows * cols:
            raise TypeError(f"out must be a writable C-contiguous {dtype} array of {rows * cols} "
                            f"elements")
        flat = out.reshape(-1)
    row_counts = np.ascontiguousarray(row_counts, np.uint32)
    gaps = np.ascontiguousarray(gaps, gaps.dtype.newbyteorder("="))
    _k = kernels.for_count("csr", len(gaps))
    if table is None:
        code, row = _k.scatter(row_counts, gaps, np.ascontiguousarray(values, dtype), cols, flat)
    else:
        code, row = _k.scatter_take(row_counts, gaps, np.ascontiguousarray(values, symbol_dtype),
                                    table, cols, flat)
    if code == _codes.ERR_COUNT:
        raise CountMismatchError(
            f"row counts add up to {int(row_counts.sum(dtype=np.uint64))}, not to the {len(gaps)} "
            f"entries")
    if code == _codes.ERR_POSITION:
        raise CorruptFileError(f"CSR row {row}: an entry lies at a column >= {cols}")
    if code == _codes.ERR_SYMBOL:
        raise CorruptFileError(f"CSR row {row}: a symbol is outside the codebook of {len(table)}")
    return flat.reshape(rows, cols)
