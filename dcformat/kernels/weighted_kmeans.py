"""Sensitivity-weighted 1-D quantizer kernels: weighted Lloyd's, a weighted uniform grid, and ECVQ.

:mod:`dcformat.compress.weighted` quantizes a tensor whose weights matter unequally: each weight
``i`` has a sensitivity ``h_i`` (the diagonal of the output's Fisher or Hessian), and the error to
minimise is ``Σ h_i (w_i − ŵ_i)²`` (Choi et al., "Towards the limit of network quantization",
ICLR 2017, Hessian-weighted k-means; SqueezeLLM's sensitivity-weighted k-means). On the sorted
distinct values ``u`` of a tensor, with ``hw[j]`` the sum of ``h`` over the weights equal to
``u[j]`` and ``n[j]`` their count, every kernel here works on those few arrays:

- :func:`weighted_lloyd`: Lloyd's with weights ``hw``; a 1-D cluster is a run of ``u`` cut at the
  midpoints of consecutive centroids (binary search), its centroid the ``hw``-weighted mean (from
  prefix sums); a centroid whose cluster weighs nothing stays where it is.
- :func:`grid_weighted`: the cells of a uniform grid (as :mod:`dcformat.kernels.ecsq`) with the
  ``hw``-weighted mean of each cell, the counts and the weighted squared error.
- :func:`ecvq_assign`: the entropy-constrained assignment of Chou, Lookabaugh and Gray (1989): each
  value goes to the codeword minimising ``hw (u − c)² + λ n ℓ`` with ``ℓ = −log2 p`` its code length.

``tests/test_weighted.py`` compares each with a plain numpy loop.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def prefix(u, hw):
    """Running sums of ``hw`` and ``hw * u`` (float64), each with a leading 0."""
    m = u.shape[0]
    ch = np.zeros(m + 1)
    cs = np.zeros(m + 1)
    for i in range(m):
        ch[i + 1] = ch[i] + hw[i]
        cs[i + 1] = cs[i] + hw[i] * u[i]
    return ch, cs


@numba.njit(cache=True, nogil=True)
def _cuts(u, c, out):
    """``out[j]`` = first index of ``u`` above the midpoint of ``c[j-1]`` and ``c[j]`` (``out[0] = 0``,
    ``out[k] = m``): cluster ``j`` is ``u[out[j]:out[j+1]]``; ties go to the lower centroid."""
    k = c.shape[0]
    m = u.shape[0]
    out[0] = 0
    out[k] = m
    for j in range(1, k):
        mid = 0.5 * (c[j - 1] + c[j])
        lo = out[j - 1]
        hi = m
        while lo < hi:  # first index with u > mid
            h = (lo + hi) >> 1
            if u[h] <= mid:
                lo = h + 1
            else:
                hi = h
        out[j] = lo


@numba.njit(cache=True, nogil=True)
def weighted_lloyd(u, hw, init, iters):
    """``(centroids, labels, rounds)``: Lloyd's on sorted ``u`` weighted by ``hw`` from the sorted
    centroids ``init``, at most ``iters`` rounds (stops when no centroid moves); ``labels[j]`` is the
    cluster of ``u[j]`` (int32). Centroids stay sorted (a weighted mean lies inside its run)."""
    k = init.shape[0]
    c = init.copy()
    ch, cs = prefix(u, hw)
    cuts = np.empty(k + 1, np.int64)
    rounds = 0
    for _ in range(iters):
        _cuts(u, c, cuts)
        moved = False
        for j in range(k):
            a = cuts[j]
            b = cuts[j + 1]
            wsum = ch[b] - ch[a]
            if b > a and wsum > 0:
                v = (cs[b] - cs[a]) / wsum
                if v != c[j]:
                    c[j] = v
                    moved = True
        rounds += 1
        if not moved:
            break
    _cuts(u, c, cuts)
    labels = np.empty(u.shape[0], np.int32)
    for j in range(k):
        for i in range(cuts[j], cuts[j + 1]):
            labels[i] = j
    return c, labels, rounds


@numba.njit(cache=True, nogil=True)
def grid_weighted(u, hw, n, step, deadzone):
    """``(cells, values, counts, err2)`` of a uniform grid over sorted ``u``: the occupied cells
    (float64 integers, increasing; cell as in :func:`dcformat.kernels.ecsq.cell_of`), each cell's
    ``hw``-weighted mean (its plain mean where its weights sum to 0; exactly 0 for cell 0), the
    counts ``n`` per cell, and ``Σ hw (u − value)²``."""
    m = u.shape[0]
    cells = np.empty(m)
    vals = np.empty(m)
    cnt = np.empty(m)
    wsum = np.empty(m)
    plain = np.empty(m)
    k = -1
    last = np.nan
    for i in range(m):
        a = abs(u[i]) / step + 1.0 - deadzone
        c = np.floor(a) if a > 0 else 0.0
        if u[i] < 0:
            c = -c
        if c != last:
            k += 1
            cells[k] = c
            vals[k] = 0.0
            cnt[k] = 0.0
            wsum[k] = 0.0
            plain[k] = 0.0
            last = c
        d = u[i] - c * step
        vals[k] += hw[i] * d
        wsum[k] += hw[i]
        plain[k] += n[i] * d
        cnt[k] += n[i]
    k += 1
    for j in range(k):
        if cells[j] == 0:
            vals[j] = 0.0
        elif wsum[j] > 0:
            vals[j] = cells[j] * step + vals[j] / wsum[j]
        else:
            vals[j] = cells[j] * step + plain[j] / cnt[j]
    err2 = 0.0
    j = 0
    for i in range(m):
        a = abs(u[i]) / step + 1.0 - deadzone
        c = np.floor(a) if a > 0 else 0.0
        if u[i] < 0:
            c = -c
        while cells[j] != c:
            j += 1
        e = u[i] - vals[j]
        err2 += hw[i] * e * e
    return cells[:k].copy(), vals[:k].copy(), cnt[:k].copy(), err2


@numba.njit(cache=True, nogil=True)
def ecvq_assign(u, hw, n, c, lengths, lam, labels):
    """Entropy-constrained assignment: ``labels[i]`` = the ``j`` minimising
    ``hw[i] (u[i] − c[j])² + lam n[i] lengths[j]`` over sorted codewords ``c`` (ties: the lower
    ``j``). Searched outward from the nearest codeword, stopping where the distortion alone already
    exceeds the best cost. Returns the total cost."""
    k = c.shape[0]
    m = u.shape[0]
    total = 0.0
    near = 0
    for i in range(m):
        x = u[i]
        while near + 1 < k and abs(c[near + 1] - x) < abs(c[near] - x):
            near += 1
        while near > 0 and abs(c[near - 1] - x) <= abs(c[near] - x):
            near -= 1
        best = near
        d0 = x - c[near]
        bcost = hw[i] * d0 * d0 + lam * n[i] * lengths[near]
        j = near - 1
        while j >= 0:
            d = x - c[j]
            dist = hw[i] * d * d
            if dist > bcost:
                break
            cost = dist + lam * n[i] * lengths[j]
            if cost <= bcost:
                bcost = cost
                best = j
            j -= 1
        j = near + 1
        while j < k:
            d = x - c[j]
            dist = hw[i] * d * d
            if dist > bcost:
                break
            cost = dist + lam * n[i] * lengths[j]
            if cost < bcost:
                bcost = cost
                best = j
            j += 1
        labels[i] = best
        total += bcost
    return total


@numba.njit(cache=True, nogil=True)
def cluster_stats(labels, u, hw, n, k):
    """Per cluster: ``Σ hw``, ``Σ hw·u``, ``Σ n`` and the plain ``Σ n·u`` (float64)."""
    sw = np.zeros(k)
    su = np.zeros(k)
    sn = np.zeros(k)
    snu = np.zeros(k)
    for i in range(u.shape[0]):
        j = labels[i]
        sw[j] += hw[i]
        su[j] += hw[i] * u[i]
        sn[j] += n[i]
        snu[j] += n[i] * u[i]
    return sw, su, sn, snu
