"""Uniform-grid (ECSQ) kernels: the cells of a grid over sorted distinct values, in one pass.

:mod:`dcformat.compress.ecsq` quantizes a tensor to a uniform grid of step ``step`` with a dead
zone: a value ``x`` falls in cell ``sign(x) * max(0, floor(|x| / step + 1 - deadzone))`` (cell 0
holds ``|x| < deadzone * step``; ``deadzone = 0.5`` is plain rounding to the nearest grid point).
The search of :mod:`dcformat.pack.budget` evaluates many steps of one tensor; on the sorted
distinct values ``u`` (multiplicities ``counts``) the cells are contiguous runs, so one pass gives
each occupied cell's count and the first two moments of ``u - cell * step`` (offsets from the grid
point keep the sums accurate). ``tests/naive_ecsq.py`` computes the same in numpy.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def cell_of(x, step, deadzone):
    """The cell of one value (see the module docstring)."""
    a = abs(x) / step + 1.0 - deadzone
    c = np.floor(a) if a > 0 else 0.0
    return -c if x < 0 else c


@numba.njit(cache=True, nogil=True)
def grid_cells(u, counts, step, deadzone):
    """``(cells, n, s1, s2)`` for the occupied cells of sorted ``u``, in increasing order:
    ``n`` the total count, ``s1``/``s2`` the sums of ``counts * d`` and ``counts * d**2`` with
    ``d = u - cell * step``."""
    m = u.shape[0]
    occupied = 0  # a first pass counts the cells, so that only they are allocated
    last = np.nan
    for i in range(m):
        c = cell_of(u[i], step, deadzone)
        if c != last:
            occupied += 1
            last = c
    cells = np.empty(occupied, np.float64)
    n = np.empty(occupied, np.float64)
    s1 = np.empty(occupied, np.float64)
    s2 = np.empty(occupied, np.float64)
    k = -1
    last = np.nan
    for i in range(m):
        c = cell_of(u[i], step, deadzone)
        if c != last:
            k += 1
            cells[k] = c
            n[k] = 0.0
            s1[k] = 0.0
            s2[k] = 0.0
            last = c
        d = u[i] - c * step
        w = np.float64(counts[i])
        n[k] += w
        s1[k] += w * d
        s2[k] += w * d * d
    return cells, n, s1, s2


@numba.njit(cache=True, nogil=True)
def grid_labels(u, step, deadzone, cells):
    """For each of sorted ``u``, the position of its cell in the sorted ``cells`` (int64)."""
    m = u.shape[0]
    out = np.empty(m, np.int64)
    j = 0
    for i in range(m):
        c = cell_of(u[i], step, deadzone)
        while cells[j] != c:
            j += 1
        out[i] = j
    return out


@numba.njit(cache=True, nogil=True)
def grid_indices(x, step, deadzone, cells, table, out):
    """Per value of ``x`` (any order), ``table[position of its cell in the sorted cells]`` (int32
    ``out``): :func:`grid_labels` without going through the sorted distinct values."""
    k = cells.shape[0]
    for i in range(x.shape[0]):
        c = cell_of(np.float64(x[i]), step, deadzone)
        lo = 0
        hi = k
        while lo < hi:  # the first cell >= c (c is one of them)
            mid = (lo + hi) // 2
            if cells[mid] < c:
                lo = mid + 1
            else:
                hi = mid
        out[i] = table[lo]
    return out
