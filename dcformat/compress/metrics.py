"""Measures of a compression step: reconstruction error, entropy, parameter compression rate."""
from __future__ import annotations

import numbers

import numpy as np

from ..tensors import CodebookTensor
from ._checks import as_float64

__all__ = ["relative_error", "entropy_bits", "pcr"]


def relative_error(w, w_hat) -> float:
    """``||w - w_hat|| / ||w||`` (Frobenius norms, float64).

    ``w_hat`` may be an array of ``w``'s shape or a :class:`~dcformat.tensors.CodebookTensor`
    (decoded first). When ``w`` is all zero the error is 0.0 if ``w_hat`` is all zero too and
    ``inf`` otherwise.
    """
    if isinstance(w_hat, CodebookTensor):
        w_hat = w_hat.decode()
    a = as_float64(w, "w")
    b = as_float64(w_hat, "w_hat")
    if a.shape != b.shape:
        raise ValueError(f"w has shape {a.shape} but w_hat has shape {b.shape}")
    num = float(np.linalg.norm((a - b).ravel()))
    den = float(np.linalg.norm(a.ravel()))
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
