"""Measures of a compression step: reconstruction error, entropy, parameter compression rate."""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..tensors import CodebookTensor
from ._checks import as_finite_array

__all__ = ["relative_error", "entropy_bits", "pcr"]


_BLOCK = 1 << 20
"""Elements per block of :func:`relative_error`: its float64 working copies stay at a few MiB."""


def relative_error(w, w_hat) -> float:
    """``||w - w_hat|| / ||w||`` (Frobenius norms, float64).

    ``w_hat`` may be an array of ``w``'s shape or a :class:`~dcformat.tensors.CodebookTensor`
    (its ``codebook[indices]``, zero at index -1, in its dtype). When ``w`` is all zero the error is
    0.0 if ``w_hat`` is all zero too and ``inf`` otherwise. Sums of squares are taken block by block
    (``_BLOCK`` elements), so memory stays small whatever the size of ``w``.
    """
    a = as_finite_array(w, "w")
    if isinstance(w_hat, CodebookTensor):
        shape = w_hat.shape
        table = np.append(w_hat.codebook.astype(w_hat.dtype).astype(np.float64), 0.0)
        indices = w_hat.indices.reshape(-1)

        def hat(start, stop):
            block = indices[start:stop]
            return table[np.where(block < 0, table.size - 1, block)]
    else:
        b = as_finite_array(w_hat, "w_hat")
        shape = b.shape
        flat_b = b.reshape(-1)

        def hat(start, stop):
            return flat_b[start:stop].astype(np.float64)
    if a.shape != shape:
        raise ValueError(f"w has shape {a.shape} but w_hat has shape {shape}")
    flat_a = a.reshape(-1)
    num2 = den2 = 0.0
    for start in range(0, flat_a.size, _BLOCK):
        stop = min(start + _BLOCK, flat_a.size)
        x = flat_a[start:stop].astype(np.float64)
        d = x - hat(start, stop)
        # squares summed by numpy, not np.dot: a BLAS dot may start threads that spin for a while
        # after each call and take the cores that other tensors are being packed on.
        num2 += float(np.multiply(d, d, out=d).sum())
        den2 += float(np.multiply(x, x, out=x).sum())
    num, den = math.sqrt(num2), math.sqrt(den2)
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def entropy_bits(symbols) -> float:
    """Order-0 entropy of the symbol sequence, in bits **in total**: ``-sum_i log2(p(s_i))``.

    ``p`` is each symbol's frequency in ``symbols`` (any shape, any dtype ``numpy.unique``
    sorts). This is the size an ideal order-0 entropy coder reaches, without its table;
    0.0 for an empty or constant sequence.
    """
    arr = np.asarray(symbols).ravel()
    if arr.size == 0:
        return 0.0
    _, counts = np.unique(arr, return_counts=True)
    counts = counts.astype(np.float64)
    return float(max(-(counts * np.log2(counts / arr.size)).sum(), 0.0))


def pcr(params: int, nonzeros: int) -> float:
    """Parameter compression rate ``params / nonzeros`` (e.g. Dynamic Network Surgery's 108x).

    ``inf`` when no parameter is left.
    """
    for name, v in (("params", params), ("nonzeros", nonzeros)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if params == 0:
        raise ValueError("params must be > 0")
    if nonzeros > params:
        raise ValueError(f"nonzeros ({nonzeros}) cannot exceed params ({params})")
    return float("inf") if nonzeros == 0 else params / nonzeros
