"""Slow references for the k-means kernels (dcformat/kernels/kmeans.py): numpy, one step at a time.

These are the numpy implementations dcformat used before the kernels were compiled; the kernels
must give bit-identical centroids and labels.
"""
from __future__ import annotations

import numpy as np


def nearest_sorted(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of the sorted, distinct float64 array ``c`` for each of ``x``.

    The nearest entry is one of the two that bracket ``x``; an exact tie in float64 distance goes
    to the lower entry (the lower index). O(len(x) log len(c)).
    """
    hi = np.searchsorted(c, x, side="left")  # c[hi - 1] < x <= c[hi]
    lo = np.maximum(hi - 1, 0)
    np.minimum(hi, c.size - 1, out=hi)
    return np.where(np.abs(x - c[hi]) < np.abs(x - c[lo]), hi, lo)


def lloyd_sorted(u, counts, c, iters):
    """Lloyd's on the sorted distinct values ``u`` with multiplicities ``counts``, from ``c``."""
    c = np.array(c, dtype=np.float64)
    m = u.size
    cum_n = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    cum_s = np.concatenate([[0.0], np.cumsum(counts * u)])
    bounds = None
    for _ in range(iters):
        cuts = cuts_of(u, c)
        new_bounds = np.concatenate([[0], cuts, [m]])
        if bounds is not None and np.array_equal(new_bounds, bounds):
            break
        bounds = new_bounds
        n_in = cum_n[bounds[1:]] - cum_n[bounds[:-1]]
        filled = n_in > 0
        c[filled] = (cum_s[bounds[1:]] - cum_s[bounds[:-1]])[filled] / n_in[filled]
        if not filled.all():
            c = relocate_empty(u, bounds, c, ~filled)
            bounds = None  # the partition will change: no convergence test on the next round
        elif np.any(np.diff(c) <= 0):  # means of values an ulp apart, rounded out of order
            c = np.unique(c)
            bounds = None
    if bounds is not None:  # the same means, summed directly rather than from prefix sums
        cluster = np.repeat(np.arange(c.size), np.diff(bounds))
        n_in = np.bincount(cluster, weights=counts, minlength=c.size)
        s_in = np.bincount(cluster, weights=counts * u, minlength=c.size)
        filled = n_in > 0
        c[filled] = s_in[filled] / n_in[filled]
    return c


def cuts_of(u, c):
    """For sorted distinct ``u`` and sorted ``c``: ``cuts[j]`` values of ``u`` are nearest to ``c[:j+1]``.

    The cut between ``a = c[j]`` and ``b = c[j+1]`` is found at their midpoint by ``searchsorted``
    and then moved (rarely, and by a step or two) until it agrees with the float64 comparison
    ``|x - a| <= |x - b|`` that defines "nearest, ties to the lower centroid" everywhere else.
    """
    a, b = c[:-1], c[1:]
    cuts = np.searchsorted(u, 0.5 * (a + b), side="right")
    m = u.size
    while True:
        last = u[np.maximum(cuts - 1, 0)]  # the last value on the low side must prefer a
        down = (cuts > 0) & (np.abs(last - a) > np.abs(last - b))
        first = u[np.minimum(cuts, m - 1)]  # the first value on the high side must prefer b
        up = (cuts < m) & (np.abs(first - a) <= np.abs(first - b)) & ~down
        if not (down.any() or up.any()):
            return np.maximum.accumulate(cuts)  # a no-op unless centroids are within an ulp
        cuts = cuts - down + up


def relocate_empty(u, bounds, c, empty):
    """Move each empty cluster's centroid onto one of the distinct values farthest from theirs.

    Distances are to the updated centroids of the clusters the values were just assigned to;
    the ``e`` farthest distinct values are taken (ties: the lower value). Returns ``c`` sorted,
    without duplicates (in the unlikely case that a chosen value equals another centroid).
    """
    owner = np.repeat(np.arange(c.size), np.diff(bounds))
    far = np.argsort(-np.abs(u - c[owner]), kind="stable")[: int(empty.sum())]
    c[empty] = u[far]
    return np.unique(c)


def finalize(u, c):
    """Round centroids to float32, merge duplicates, assign, and drop centroids that own nothing."""
    centroids = np.unique(np.asarray(c, dtype=np.float64).astype(np.float32))
    while True:
        labels = nearest_sorted(u, centroids.astype(np.float64))
        used = np.zeros(centroids.size, dtype=bool)
        used[labels] = True
        if used.all():
            return centroids, labels
        centroids = centroids[used]
