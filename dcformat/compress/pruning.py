"""Pruning masks (Deep Compression stage 1), numpy only.

Every function returns a boolean mask of the weight's shape that is **True where a weight is
kept** and False where it is pruned. The same functions serve post-training packing and the
training-time methods in :mod:`dcformat.torch`, which convert tensors to numpy and back.

Counting rule: pruning a fraction ``sparsity`` of ``n`` weights prunes exactly
``round(sparsity * n)`` of them (Python's :func:`round`, i.e. halves round to even), the ones with
the smallest magnitude ``|w|``. Ties in ``|w|`` are broken by position: among equal magnitudes the
weight with the lower flat (C-order) index is pruned first, so masks are deterministic.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._checks import as_finite_array, check_real, check_sparsity

__all__ = ["magnitude_mask", "threshold_mask", "global_masks", "filter_masks", "sparsity_of"]


def _count_pruned(n: int, sparsity: float) -> int:
    return min(n, int(round(sparsity * n)))


def _smallest_mask(a: np.ndarray, n_prune: int) -> np.ndarray:
    """Keep-mask of a 1-D magnitude array ``a`` with its ``n_prune`` smallest entries pruned.

    O(n): a partition finds the ``n_prune``-th smallest magnitude ``t``; every entry below ``t``
    is pruned, and of the entries equal to ``t`` the ones with the lowest indices fill the count.
    """
    keep = np.ones(a.shape, dtype=bool)
    if n_prune == 0:
        return keep
    t = np.partition(a, n_prune - 1)[n_prune - 1]
    below = a < t
    keep[below] = False
    ties = np.flatnonzero(a == t)
    keep[ties[: n_prune - int(below.sum())]] = False
    return keep


def magnitude_mask(w, sparsity: float) -> np.ndarray:
    """Keep the largest ``|w|``; prune exactly ``round(sparsity * w.size)`` weights.

    Ties in magnitude are broken by flat index (the lower index is pruned first).
    Raises ``ValueError`` for a sparsity outside [0, 1) or a ``w`` with NaN or infinity.
    """
    arr = as_finite_array(w, "w")
    s = check_sparsity(sparsity)
    n_prune = _count_pruned(arr.size, s)
    if arr.dtype in (np.float32, np.float64):  # |w| is exact in its own dtype: no float64 copies
        return _smallest_magnitudes_mask(arr.reshape(-1), n_prune).reshape(arr.shape)
    a = np.abs(arr.astype(np.float64, copy=False)).ravel()
    return _smallest_mask(a, n_prune).reshape(arr.shape)


MASK_BLOCK = 1 << 20
"""Elements compared at a time by :func:`_smallest_magnitudes_mask`."""


def _smallest_magnitudes_mask(flat: np.ndarray, n_prune: int) -> np.ndarray:
    """:func:`_smallest_mask` of ``abs(flat)`` (float32 or float64, finite), the same mask, in
    one copy of the magnitudes plus the mask: the copy is partitioned in place for the threshold
    and freed, then the magnitudes are compared block by block (a 187 MB tensor peaked at 4.3× its
    size through float64 copies, now at 1.25×)."""
    keep = np.ones(flat.shape, dtype=bool)
    if n_prune == 0:
        return keep
    a = np.abs(flat)
    a.partition(n_prune - 1)
    t = a[n_prune - 1]
    del a
    below = 0
    for start in range(0, flat.size, MASK_BLOCK):
        block = keep[start:start + MASK_BLOCK]
        np.greater_equal(np.abs(flat[start:start + MASK_BLOCK]), t, out=block)
        below += block.size - int(np.count_nonzero(block))
    need = n_prune - below  # of the entries equal to t, the lowest indices are pruned
    for start in range(0, flat.size, MASK_BLOCK):
        if need <= 0:
            break
        ties = np.flatnonzero(np.abs(flat[start:start + MASK_BLOCK]) == t)[:need]
        keep[start + ties] = False
        need -= ties.size
    return keep


def threshold_mask(w, quality: float) -> np.ndarray:
    """Deep Compression's Caffe rule: prune ``|w| < quality * std(w)``.

    ``std`` is the population standard deviation (ddof = 0) of all elements of ``w``, computed in
    float64, zeros included (so a tensor pruned before counts its zeros). A weight exactly at the
    threshold is kept. ``quality`` must be finite and >= 0; 0 keeps everything.
    """
    arr = as_finite_array(w, "w")
    q = check_real(quality, "quality", nonnegative=True)
    a = np.abs(arr.astype(np.float64, copy=False))
    if a.size == 0:
        return np.ones(arr.shape, dtype=bool)
    return ~(a < q * float(np.std(arr.astype(np.float64, copy=False))))


def global_masks(weights: Mapping[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """One magnitude threshold over all tensors in ``weights`` (name -> array).

    Exactly ``round(sparsity * N)`` weights are pruned in total, ``N`` being the number of elements
    of all tensors together; every kept weight has ``|w|`` >= every pruned one, in every layer.
    Ties are broken by the mapping's order, then by flat index (earlier is pruned first).
    Returns a dict with the same keys, each a boolean mask of that tensor's shape.
    """
    if not isinstance(weights, Mapping) or len(weights) == 0:
        raise ValueError("weights must be a non-empty mapping of name -> array")
    s = check_sparsity(sparsity)
    arrays = {name: as_finite_array(w, f"weights[{name!r}]") for name, w in weights.items()}
    flat = np.concatenate([np.abs(a.astype(np.float64, copy=False)).ravel() for a in arrays.values()])
    keep = _smallest_mask(flat, _count_pruned(flat.size, s))
    out, start = {}, 0
    for name, a in arrays.items():
        out[name] = keep[start : start + a.size].reshape(a.shape)
        start += a.size
    return out


def filter_masks(w, sparsity: float) -> np.ndarray:
    """Prune each output filter (row of ``w.reshape(w.shape[0], -1)``) to the same ratio.

    Every row of ``m`` elements loses exactly ``round(sparsity * m)`` weights, its smallest in
    magnitude (ties: lower index in the row first). ``w`` needs at least 2 dimensions: the first
    is the output dimension (torch's ``Linear`` and ``Conv`` layouts).
    """
    arr = as_finite_array(w, "w")
    s = check_sparsity(sparsity)
    if arr.ndim < 2:
        raise ValueError(f"filter_masks needs a weight of at least 2 dimensions, got shape {arr.shape}")
    rows = np.abs(arr.astype(np.float64, copy=False)).reshape(arr.shape[0], -1)
    n_prune = _count_pruned(rows.shape[1], s)
    keep = np.ones(rows.shape, dtype=bool)
    if n_prune and rows.size:
        order = np.argsort(rows, axis=1, kind="stable")
        np.put_along_axis(keep, order[:, :n_prune], False, axis=1)
    return keep.reshape(arr.shape)


def sparsity_of(mask) -> float:
    """The fraction of pruned elements: of False in a boolean mask, of exact zeros otherwise.

    An empty array has sparsity 0.0.
    """
    arr = np.asarray(mask)
    if arr.size == 0:
        return 0.0
    if arr.dtype == np.bool_:
        return 1.0 - np.count_nonzero(arr) / arr.size
    arr = as_finite_array(arr, "mask")
    return 1.0 - np.count_nonzero(arr) / arr.size
