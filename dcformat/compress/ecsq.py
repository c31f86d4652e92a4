"""Entropy-constrained scalar quantization (ECSQ): a uniform grid whose cells Huffman coding pays for.

At high rate, a uniform grid followed by an entropy coder is within 0.25 bit per weight of the
Gaussian rate–distortion bound (``½·log2(πe/6)``), and closer than any fixed-size codebook at the
same error: its many rarely used outer cells cost almost nothing once entropy-coded, and every
cell is as narrow as the inner ones (Gish & Pierce 1968; Choi et al., "Towards the limit of network
quantization", ICLR 2017, §4 uniform quantization + Huffman). The format needs nothing new: the
cells a tensor actually uses become an ordinary codebook (any ``k`` up to 65536), and the writer's
Huffman coding of the indices is the entropy coder.

:func:`uniform_quantize` maps each value to its cell (``step``, ``deadzone``: see
:mod:`dcformat.kernels.ecsq`) and stores each used cell as the mean of its values (centroid
reconstruction: the lowest squared error the cells allow), rounded to float32; cell 0 — the dead
zone around zero — is stored as exact zero (``ZERO_INDEX``), so the writer may choose CSR when
most weights fall in it. :class:`GridStats` gives the error and the symbol counts of a step from
sorted distinct values without building the tensor (the budget search tries many steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..tensors import ZERO_INDEX, CodebookTensor
from ._checks import as_finite_array, check_real

__all__ = ["uniform_quantize", "grid_stats", "GridStats", "MAX_CELLS"]

MAX_CELLS = 65536
"""The format's largest codebook (cell 0 is not in it)."""


def _kernels():
    from ..kernels import jit

    return jit("ecsq")


@dataclass(frozen=True)
class GridStats:
    """One step over sorted distinct values: cells, their float32 values, counts and squared error."""

    cells: np.ndarray
    """Occupied cells, increasing (float64 integers)."""
    values: np.ndarray
    """Stored value of each cell: float32 of its mean; exactly 0 for cell 0."""
    counts: np.ndarray
    """Values per cell (float64)."""
    err2: float
    """``Σ (x − x̂)²`` over every value, in float64."""

    @property
    def k(self) -> int:
        """Codebook entries: the occupied cells other than cell 0."""
        return int(self.cells.size - np.count_nonzero(self.cells == 0))

    def symbol_counts(self) -> np.ndarray:
        """Counts per codebook entry, then the count of cell 0 (the zero symbol) last."""
        zero = self.cells == 0
        return np.append(self.counts[~zero], self.counts[zero].sum())


def grid_stats(u: np.ndarray, counts: np.ndarray, step: float, deadzone: float = 0.5,
               dtype=np.float32, codebook_dtype=np.float32) -> GridStats:
    """:class:`GridStats` of a step for sorted distinct ``u`` (float32 or float64) with
    multiplicities ``counts``; the stored values are rounded through ``codebook_dtype`` (a float16
    codebook: :attr:`GridStats.values` stay float32, their error is that of the float16 ones; a
    value past float16's range gives an infinite error), then ``dtype`` (the decoded tensor's)."""
    cells, n, s1, s2 = _kernels().grid_cells(u, counts, float(step), float(deadzone))
    base = cells * step
    values = (base + s1 / n).astype(np.float32)
    values[cells == 0] = 0.0
    stored = values
    if np.dtype(codebook_dtype) != np.float32:
        with np.errstate(over="ignore"):
            stored = values.astype(codebook_dtype)
    with np.errstate(invalid="ignore"):
        q = stored.astype(dtype).astype(np.float64) - base  # stored value as an offset from the grid point
    if not np.isfinite(q).all():
        return GridStats(cells, values, n, math.inf)
    err2 = float(np.maximum(s2 - 2 * q * s1 + q * q * n, 0.0).sum())
    return GridStats(cells, values, n, err2)


def uniform_quantize(w, step: float, deadzone: float = 0.5) -> CodebookTensor:
    """``w`` on a uniform grid of ``step`` (dead zone ``deadzone`` steps either side of zero), each
    used cell stored as the float32 mean of its values; the zero cell as ``ZERO_INDEX``.

    Raises ``ValueError`` when the grid would need more than :data:`MAX_CELLS` codebook entries.
    """
    arr = as_finite_array(w, "w")
    step = check_real(step, "step", positive=True)
    deadzone = check_real(deadzone, "deadzone")
    if not 0 <= deadzone <= 8:
        raise ValueError(f"deadzone must be in [0, 8] steps, not {deadzone}")
    wide = np.float64 if arr.dtype == np.float64 else np.float32
    flat = arr.astype(wide, copy=False).reshape(-1)
    dtype = arr.dtype if arr.dtype in (np.float16, np.float32, np.float64) \
        or arr.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2") \
        else np.dtype(np.float32)
    if flat.size == 0:
        return CodebookTensor(np.zeros(1, np.float32), np.zeros(arr.shape, np.int32), dtype)
    u, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    u = u.astype(np.float64) + 0.0
    return from_sorted(u, inverse.reshape(-1), counts, step, deadzone, arr.shape, dtype)


def _codebook_table(stats: GridStats):
    """The codebook of a grid (its cells' float32 values, coinciding ones merged) and, per cell,
    its index in it (``ZERO_INDEX`` for cell 0)."""
    zero = stats.cells == 0
    codebook, slot = np.unique(stats.values[~zero], return_inverse=True)  # float32 means may coincide
    table = np.full(stats.cells.size, ZERO_INDEX, np.int64)
    table[~zero] = slot.reshape(-1)
    if codebook.size == 0:
        codebook = np.zeros(1, np.float32)
    return codebook.astype(np.float32), table


def _grid_stats_checked(u, counts, step, deadzone, dtype) -> GridStats:
    stats = grid_stats(u, counts, step, deadzone, dtype)
    if stats.k > MAX_CELLS:
        raise ValueError(f"step {step:g} needs {stats.k} codebook entries (at most {MAX_CELLS})")
    return stats


def from_sorted(u, inverse, counts, step, deadzone, shape, dtype) -> CodebookTensor:
    """:func:`uniform_quantize` from ``numpy.unique``'s output (the budget search has it already)."""
    stats = _grid_stats_checked(u, counts, step, deadzone, dtype)
    labels = _kernels().grid_labels(u, float(step), float(deadzone), stats.cells)
    codebook, table = _codebook_table(stats)
    indices = table[labels][inverse].astype(np.int32).reshape(shape)
    return CodebookTensor(codebook, indices, dtype)


def from_values(flat, u, counts, step, deadzone, shape, dtype, codebook_dtype=np.float32,
                zero_entry: bool = False, stats: GridStats | None = None) -> CodebookTensor:
    """:func:`from_sorted` without the inverse: each value of ``flat`` (the tensor, flattened) finds
    its cell itself, and the int32 indices are the only array of the tensor's size made.

    ``codebook_dtype``: float16 rounds the codebook as ``compress_tensor`` does (``ValueError``
    past float16's range). ``zero_entry``: cell 0 as an explicit zero appended to the codebook
    instead of ``ZERO_INDEX``, when that is what the writer stores anyway (the tensor stays dense:
    fewer than half of its values in cell 0, no zero entry already, room for one more): the same
    decoded tensor and the same streams, without the writer's copy of the indices that maps
    ``ZERO_INDEX`` to the zero symbol. ``stats``: the step's :func:`grid_stats` (with
    ``codebook_dtype``), when the caller kept them (``u`` and ``counts`` are then not needed)."""
    if stats is None:
        stats = grid_stats(u, counts, step, deadzone, dtype, codebook_dtype)
    if stats.k > MAX_CELLS:
        raise ValueError(f"step {step:g} needs {stats.k} codebook entries (at most {MAX_CELLS})")
    codebook, table = _codebook_table(stats)
    if np.dtype(codebook_dtype) == np.float16:
        with np.errstate(over="ignore"):
            codebook = codebook.astype(np.float16)
        if not np.isfinite(codebook).all():
            raise ValueError("a codebook value is outside the float16 range")
    if zero_entry:
        zero = stats.cells == 0
        in_zero = float(stats.counts[zero].sum())
        bits = codebook.view(np.uint16 if codebook.itemsize == 2 else np.uint32)
        if 0 < in_zero < flat.size / 2 and codebook.size < MAX_CELLS and not (bits == 0).any():
            table[zero] = codebook.size
            codebook = np.append(codebook, codebook.dtype.type(0))
    indices = np.empty(flat.size, np.int32)
    _kernels().grid_indices(flat, float(step), float(deadzone), stats.cells, table, indices)
    return CodebookTensor(codebook, indices.reshape(shape), dtype)


def gaussian_rate(relative_error: float) -> float:
    """Bits per weight the Gaussian rate–distortion bound needs for a relative error
    ``‖W − Ŵ‖ / ‖W‖``: ``max(0, −log2(relative_error))`` (``R(D) = ½·log2(σ²/D)``)."""
    e = check_real(relative_error, "relative_error")
    return max(0.0, -math.log2(e)) if e > 0 else math.inf
