"""Weight sharing (Deep Compression stage 2) and power-of-two codebooks (INQ).

One implementation of each primitive, used both when packing a trained model and by the
training-time methods in :mod:`dcformat.torch`:

- :func:`kmeans_1d` clusters the surviving weights of a layer into ``k`` shared values;
- :func:`quantize_to_codebook` maps values to their nearest codebook entry;
- :func:`share_weights` does both for one tensor and returns a :class:`~dcformat.tensors.CodebookTensor`;
- :func:`power_of_two_codebook` and :func:`inq_quantize` give INQ's levels and rounding rule.

All arithmetic is float64; codebooks are returned as float32, and labels always refer to the
float32 codebook actually returned (each value's nearest entry, ties to the lower index).
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..tensors import ZERO_INDEX, CodebookTensor
from ._checks import as_finite_array, as_float64, as_mask, check_int, check_real

__all__ = [
    "kmeans_1d",
    "quantize_to_codebook",
    "share_weights",
    "linear_codebook",
    "power_of_two_codebook",
    "inq_quantize",
]

INITS = ("linear", "density", "random")
METHODS = ("auto", "lloyd", "exact")
EXACT_MAX_TABLE_ENTRIES = 2**27
"""Largest ``k * (m + 1)`` that ``method="exact"`` accepts (its int32 backtracking table: 512 MiB)."""

_F32_MAX = float(np.finfo(np.float32).max)


# ---------------------------------------------------------------------------------------------
# Codebooks and nearest-entry assignment


def linear_codebook(lo: float, hi: float, k: int) -> np.ndarray:
    """``k`` float32 values evenly spaced from ``lo`` to ``hi`` inclusive (``numpy.linspace``).

    Deep Compression's "linear" initialisation. ``k = 1`` gives ``[lo]``. Raises ``ValueError``
    when the values would not be distinct in float32 (``lo >= hi`` with ``k > 1``, or a range too
    narrow for ``k`` float32 values).
    """
    lo = check_real(lo, "lo")
    hi = check_real(hi, "hi")
    k = check_int(k, "k", 1)
    if max(abs(lo), abs(hi)) > _F32_MAX:
        raise ValueError("lo and hi must lie in the float32 range")
    cb = np.linspace(lo, hi, k).astype(np.float32)
    if k > 1 and not np.all(np.diff(cb) > 0):
        raise ValueError(f"linear_codebook({lo}, {hi}, {k}): needs lo < hi and k distinct float32 values")
    return cb


def quantize_to_codebook(values, codebook) -> np.ndarray:
    """For each value, the index of its nearest codebook entry (int32, same shape as ``values``).

    Distances are computed in float64. The codebook need not be sorted and may repeat values; an
    exact tie in distance goes to the entry with the lower index.
    """
    x = as_float64(values, "values")
    cb = as_float64(codebook, "codebook")
    if cb.ndim != 1 or cb.size == 0:
        raise ValueError(f"codebook must be a non-empty 1-D array, got shape {cb.shape}")
    order = np.argsort(cb, kind="stable")
    sorted_cb = cb[order]
    first = np.concatenate([[True], sorted_cb[1:] != sorted_cb[:-1]])
    c, owner = sorted_cb[first], order[first]  # each distinct value with its lowest index
    flat = x.ravel()
    hi = np.searchsorted(c, flat, side="left")
    lo = np.maximum(hi - 1, 0)
    np.minimum(hi, c.size - 1, out=hi)
    d_lo, d_hi = np.abs(flat - c[lo]), np.abs(flat - c[hi])
    take_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (owner[hi] < owner[lo]))
    return owner[np.where(take_hi, hi, lo)].astype(np.int32).reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# 1-D k-means


def kmeans_1d(values, k: int, init="linear", *, iters: int = 300, seed: int = 0, method: str = "auto"):
    """Cluster 1-D ``values`` into at most ``k`` shared values (Deep Compression §3).

    Returns ``(centroids, labels)``: ``centroids`` a sorted, strictly increasing float32 array of
    ``k' <= k`` values; ``labels`` an int32 array with one entry per value (``values`` is
    flattened), each the index of the value's nearest centroid (ties to the lower index).

    ``values`` are the weights to share, normally the surviving (non-zero) weights of one layer;
    they must be finite and inside the float32 range.

    ``method``:

    - ``"lloyd"`` (also ``"auto"``, which today always means Lloyd's so that ``init`` keeps the
      meaning the paper studies): Lloyd's algorithm from ``init``, at most ``iters`` rounds of
      assign + update, stopping as soon as no assignment changes. The values are sorted once
      (``numpy.unique``, O(n log n)); since each 1-D cluster is a contiguous run of sorted values,
      a round cuts the sorted values at the midpoints between consecutive centroids
      (``searchsorted``; a value exactly on a midpoint goes to the lower centroid) and takes the
      new means from prefix sums: O(k log n) per round, so many rounds cost little. Lloyd's
      converges slowly in 1-D, and the default of 30 rounds is often far from converged: on 2M
      Gaussian weights with k = 32 and linear init, 30 rounds leave 2.4x the optimal inertia,
      300 rounds 1.014x, 1000 rounds 1.0001x (0.2 s in all three cases, the sort dominating);
      pass ``iters=1000`` or more for a converged codebook. The final
      centroids are recomputed by direct summation over their clusters (no prefix-sum
      cancellation).
      Empty clusters are relocated: after an update, each centroid that received no value moves
      onto one of the distinct values farthest from their own (updated) centroid (ties: the lower
      value), as scikit-learn does. Without this, linear init on pruned (bimodal) weights leaves
      every centroid that starts in the pruned gap empty for good (a third of a 5-bit codebook at
      90% sparsity). A centroid that still owns no value at the end is dropped.
    - ``"exact"``: the optimal k-means partition (minimum inertia) by dynamic programming over the
      ``m`` distinct sorted values (as Ckmeans.1d.dp), with the divide-and-conquer speed-up that
      the monotone split points allow: O(k m log m) time and a ``4 k (m+1)``-byte int32
      backtracking table, refused above ``EXACT_MAX_TABLE_ENTRIES`` entries. With k = 32 on one
      core: about 0.3 s for m = 10^5 and 3.5 s for m = 10^6 (Lloyd's: 0.04 s and 0.25 s), once
      compiled (Numba, cached on disk). ``init``, ``iters``, ``seed`` are ignored.

    ``init`` (Lloyd's only): ``"linear"`` — ``k`` points evenly spaced in [min, max], the paper's
    default and best; ``"density"`` — the values at the mid-quantiles ``(i + 1/2) / k`` of the
    data's CDF (equal mass per initial cluster; equal quantiles collapse, so fewer than ``k``
    centroids can start); ``"random"`` — ``k`` observations drawn without replacement from
    ``values`` with ``numpy.random.default_rng(seed)``, repeats skipped so the ``k`` are distinct;
    or an array of ``k`` distinct initial centroids (e.g. the previous codebook).

    When ``values`` holds ``k`` or fewer distinct values, the centroids are exactly those values
    (inertia 0) whatever the method. Centroids are never duplicated: two centroids that round to
    the same float32 are merged. Deterministic for given arguments.
    """
    x = as_float64(values, "values").ravel()
    if x.size == 0:
        raise ValueError("values is empty: nothing to cluster")
    if np.abs(x).max() > _F32_MAX:
        raise ValueError("values must lie inside the float32 range (centroids are float32)")
    k = check_int(k, "k", 1)
    iters = check_int(iters, "iters", 0)
    seed = check_int(seed, "seed", 0)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    init_array = None
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS} or an array of centroids, got {init!r}")
    else:
        init_array = as_float64(init, "init")
        if init_array.ndim != 1 or init_array.size != k:
            raise ValueError(f"an init array must be 1-D with k = {k} values, got shape {init_array.shape}")
        init_array = np.sort(init_array)
        if np.any(np.diff(init_array) == 0):
            raise ValueError("init centroids must be distinct")

    u, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    u += 0.0  # -0.0 and +0.0 are one value, which numpy.unique keeps as whichever it sorted first
    inverse = inverse.ravel()
    if u.size <= k:
        c = u
    elif method == "exact":
        c = _exact_centroids(u, counts, k)
    else:
        c0 = init_array if init_array is not None else _initial_centroids(u, counts, inverse, k, init, seed)
        c = _lloyd_sorted(u, counts, c0, iters)
    centroids, labels_u = _finalize(u, c)
    return centroids, labels_u[inverse].astype(np.int32)


def _initial_centroids(u, counts, inverse, k, init, seed):
    """Sorted distinct float64 initial centroids (at most ``k``) for Lloyd's."""
    if init == "linear":
        return np.linspace(u[0], u[-1], k)
    n = int(counts.sum())
    if init == "density":
        ranks = np.floor((np.arange(k) + 0.5) * (n / k)).astype(np.int64)
        return np.unique(u[np.searchsorted(np.cumsum(counts), np.minimum(ranks, n - 1), side="right")])
    # "random": draw observations in a seeded random order; keep the first k distinct values.
    perm = np.random.default_rng(seed).permutation(n)
    if u.size == n:  # all values distinct: the first k draws are the k centroids
        return np.sort(u[inverse[perm[:k]]])
    take = 2 * k
    while True:
        codes = inverse[perm[:take]]
        distinct, first = np.unique(codes, return_index=True)
        if distinct.size >= k or take >= n:
            return np.sort(u[distinct[np.argsort(first, kind="stable")[:k]]])
        take *= 2


def _kmeans_kernels():
    """The compiled k-means kernels (:mod:`dcformat.kernels.kmeans`), loaded on first use."""
    from ..kernels import jit

    return jit("kmeans")


def _lloyd_sorted(u, counts, c, iters, sums=None):
    """Lloyd's on the sorted distinct values ``u`` with multiplicities ``counts``, from ``c``.

    ``sums``: ``prefix_sums(u, counts)`` when the caller already has them (several codebooks of
    the same values), or ``(*prefix_checkpoints(u, counts, every), every)``: the same sums kept at
    every ``every``-th value only. ``u`` may be float32 (the budget search keeps a float32 tensor's values so):
    every sum is float64 either way, with the same result. Compiled:
    :func:`dcformat.kernels.kmeans.lloyd_sorted`'s rounds, run in slices of a few tens of
    milliseconds with a stop check (Ctrl-C, :func:`dcformat.parallel.check_stop`) between them;
    the result does not depend on the slicing."""
    from ..parallel import check_stop

    kernels = _kmeans_kernels()
    u = np.ascontiguousarray(u)
    if u.dtype not in (np.float32, np.float64):
        u = u.astype(np.float64)
    counts = np.ascontiguousarray(counts)
    if counts.dtype not in (np.int32, np.int64):
        counts = counts.astype(np.int64)
    if sums is None:
        ck_n, ck_s, every = *kernels.prefix_sums(u, counts), 1
    else:  # prefix_sums(u, counts), or prefix_checkpoints(u, counts, every) and every
        ck_n, ck_s, every = sums if len(sums) == 3 else (*sums, 1)
    c = np.array(c, dtype=np.float64)
    bounds, have_bounds = np.empty(0, np.int64), False
    left, rounds = int(iters), 4
    while left > 0:
        started = time.perf_counter()
        c, bounds, have_bounds, done, converged = kernels.lloyd_rounds(
            u, counts, ck_n, ck_s, int(every), c, bounds, have_bounds, min(rounds, left))
        left -= done
        if converged:
            break
        check_stop()
        elapsed = time.perf_counter() - started
        if elapsed < SLICE_SECONDS / 4:
            rounds *= 2
        elif elapsed > SLICE_SECONDS:
            rounds = max(1, rounds // 2)
    return kernels.lloyd_finish(u, counts, c, bounds, have_bounds)


SLICE_SECONDS = 0.05
"""About how long one compiled slice of Lloyd's rounds runs before a stop check."""


def _finalize(u, c):
    """Round centroids to float32, merge duplicates, assign, and drop centroids that own nothing.

    ``u`` is sorted; labels are int64, each value's nearest centroid (ties to the lower one)."""
    kernels = _kmeans_kernels()
    u = np.ascontiguousarray(u, dtype=np.float64)
    centroids = np.unique(np.asarray(c, dtype=np.float64).astype(np.float32))
    labels = np.empty(u.size, np.int64)
    while True:
        used = kernels.nearest_sorted(u, centroids.astype(np.float64), labels)
        if used.all():
            return centroids, labels
        centroids = centroids[used]


def _exact_centroids(u, counts, k):
    m = u.size
    if k * (m + 1) > EXACT_MAX_TABLE_ENTRIES:
        raise ValueError(
            f"method='exact' with k={k} over {m} distinct values needs a {4 * k * (m + 1)}-byte table "
            f"(limit {4 * EXACT_MAX_TABLE_ENTRIES}); use method='lloyd'"
        )
    w = counts.astype(np.float64)
    shift = float(np.dot(w, u) / w.sum())  # centring keeps the sum-of-squares costs accurate
    bounds = _dp_kernel()(u - shift, w, k)
    cluster = np.repeat(np.arange(k), np.diff(bounds))
    return np.bincount(cluster, weights=w * u, minlength=k) / np.bincount(cluster, weights=w, minlength=k)


def _optimal_bounds(x, w, k):
    """Optimal split of sorted distinct ``x`` (weights ``w``) into ``k`` contiguous clusters.

    Returns ``bounds`` (int64, k + 1 entries): cluster ``q`` is ``x[bounds[q]:bounds[q + 1]]``.
    ``D[q][i]``, the least within-cluster sum of squares of the first ``i`` points in ``q``
    clusters, is ``min_j D[q-1][j] + cost(j, i)``; the best ``j`` is non-decreasing in ``i``, so
    each layer is filled by divide and conquer over ``i`` (O(m log m) per layer). Ties go to the
    smallest ``j``. Costs come from prefix sums of ``w``, ``w x`` and ``w x^2``.
    """
    m = x.shape[0]
    cw = np.zeros(m + 1)
    c1 = np.zeros(m + 1)
    c2 = np.zeros(m + 1)
    for i in range(m):
        cw[i + 1] = cw[i] + w[i]
        c1[i + 1] = c1[i] + w[i] * x[i]
        c2[i + 1] = c2[i] + w[i] * x[i] * x[i]
    prev = np.zeros(m + 1)
    cur = np.zeros(m + 1)
    for i in range(1, m + 1):
        prev[i] = max(c2[i] - c1[i] * c1[i] / cw[i], 0.0)
    back = np.zeros((k, m + 1), dtype=np.int32)
    stack = np.empty((256, 4), dtype=np.int64)
    for q in range(2, k + 1):
        # cur[i] for i in q..m; the last cluster starts at j in q-1..i-1.
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = q, m, q - 1, m - 1
        top = 1
        while top > 0:
            top -= 1
            ilo, ihi, jlo, jhi = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
            mid = (ilo + ihi) // 2
            best = np.inf
            best_j = jlo
            for j in range(jlo, min(jhi, mid - 1) + 1):
                s = c1[mid] - c1[j]
                v = prev[j] + max(c2[mid] - c2[j] - s * s / (cw[mid] - cw[j]), 0.0)
                if v < best:
                    best = v
                    best_j = j
            cur[mid] = best
            back[q - 1, mid] = best_j
            if mid + 1 <= ihi:
                stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = mid + 1, ihi, best_j, jhi
                top += 1
            if ilo <= mid - 1:
                stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = ilo, mid - 1, jlo, best_j
                top += 1
        prev, cur = cur, prev
    bounds = np.zeros(k + 1, dtype=np.int64)
    bounds[k] = m
    i = m
    for q in range(k, 1, -1):
        i = back[q - 1, i]
        bounds[q - 1] = i
    return bounds


_jitted_bounds = None


def _dp_kernel():
    """``_optimal_bounds`` compiled by Numba (cache=True); imported on first use only."""
    global _jitted_bounds
    if _jitted_bounds is None:
        import numba

        _jitted_bounds = numba.njit(cache=True, nogil=True)(_optimal_bounds)
    return _jitted_bounds


# ---------------------------------------------------------------------------------------------
# Weight sharing of one tensor


def _decoded_dtype(dtype: np.dtype) -> np.dtype:
    if dtype in (np.float16, np.float32, np.float64) or dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        return dtype
    return np.dtype(np.float32)


def share_weights(
    w,
    mask,
    bits: int | None = None,
    k: int | None = None,
    init="linear",
    method: str = "auto",
    *,
    iters: int = 300,
    seed: int = 0,
) -> CodebookTensor:
    """Share the kept weights of ``w`` through a k-means codebook; pruned positions index -1.

    ``mask`` (boolean, ``w``'s shape, True = kept) selects the weights to cluster; ``None`` keeps
    every non-zero weight. Give the codebook size as ``bits`` (1 <= bits <= 16) or as ``k``
    (1..65536 centroids), or both if they agree (``k = 2 ** bits``). ``bits`` counts every symbol an
    index takes, the zero of the pruned positions included: ``2 ** bits`` centroids when every
    position is kept, ``2 ** bits - 1`` and the zero symbol otherwise, so the indices fit ``bits``
    bits either way. A kept weight that is exactly zero is clustered
    like any other. ``init``, ``method``, ``iters``, ``seed``: see :func:`kmeans_1d`.

    The indices are int16 (int32 above 32,767 centroids: half the memory of int32 for the other
    codebooks). The codebook is float32 with ``k' <= k`` sorted entries; ``dtype`` of the result is ``w``'s
    float dtype (float32 for integer input). When nothing is kept the codebook is ``[0.0]`` and
    every index is -1.
    """
    arr = as_finite_array(w, "w")
    keep = arr != 0 if mask is None else as_mask(mask, arr.shape)
    if bits is None and k is None:
        raise ValueError("give the codebook size as bits or k")
    if bits is not None:
        bits = check_int(bits, "bits", 1, 16)
        if k is not None and check_int(k, "k", 1) != 2**bits:
            raise ValueError(f"k = {k} disagrees with bits = {bits} (k must be 2**bits)")
        k = max(1, 2**bits - (0 if keep.all() else 1))  # the zero symbol is one of the 2**bits
    k = check_int(k, "k", 1, 65536)
    indices = np.full(arr.shape, ZERO_INDEX, dtype=np.int16 if k <= np.iinfo(np.int16).max else np.int32)
    if keep.any():
        codebook, labels = kmeans_1d(arr[keep], k, init, iters=iters, seed=seed, method=method)
        indices[keep] = labels
    else:
        codebook = np.zeros(1, dtype=np.float32)
    return CodebookTensor(codebook, indices, _decoded_dtype(arr.dtype))


# ---------------------------------------------------------------------------------------------
# Incremental Network Quantization (Zhou et al., ICLR 2017, arXiv 1702.03044)


def _inq_n1(s: float) -> int:
    """INQ's ``n1 = floor(log2(4 s / 3))``, exactly: the largest ``n`` with ``3 * 2**n <= 4 * s``."""
    n = math.floor(math.log2(4.0 * s / 3.0))
    while math.ldexp(3.0, n + 1) <= 4.0 * s:
        n += 1
    while math.ldexp(3.0, n) > 4.0 * s:
        n -= 1
    return n


def power_of_two_codebook(max_abs: float, bits: int) -> np.ndarray:
    """INQ's non-zero levels for a layer with ``s = max|W| = max_abs``, as sorted float32.

    ``n1 = floor(log2(4 s / 3))``, ``n2 = n1 + 1 - 2**(bits-1) / 2``; the levels are ``±2**n`` for
    ``n = n2 .. n1``: ``2**(bits-2)`` exponents, ``2**(bits-1)`` values (bits = 5: 8 exponents,
    16 values), ordered ``-2**n1 .. -2**n2, 2**n2 .. 2**n1``. Zero is not in the codebook: INQ's
    extra zero level is the pruned index -1 of a :class:`CodebookTensor`.
    ``bits`` must be 2..16 and every level a float32 (exponents -149..127).
    """
    s = check_real(max_abs, "max_abs", positive=True)
    bits = check_int(bits, "bits", 2, 16)
    if s > _F32_MAX:
        raise ValueError("max_abs must lie inside the float32 range")
    n1 = _inq_n1(s)
    n2 = n1 + 1 - 2 ** (bits - 2)
    if n2 < -149 or n1 > 127:
        raise ValueError(f"levels 2**{n2} .. 2**{n1} (max_abs={s}, bits={bits}) do not fit float32")
    p = np.ldexp(1.0, np.arange(n2, n1 + 1))
    return np.concatenate([-p[::-1], p]).astype(np.float32)


def inq_quantize(w, bits: int, *, max_abs: float | None = None) -> CodebookTensor:
    """Round every weight to INQ's power-of-two levels (Zhou et al. 2017, eq. 4).

    With ``P`` the non-negative levels ``{0, 2**n2, ..., 2**n1}`` of
    :func:`power_of_two_codebook` and ``alpha < beta`` adjacent in ``P``:
    ``w_hat = beta * sgn(w)`` if ``(alpha + beta) / 2 <= |w| < 3 beta / 2``, else 0. The
    intervals tile ``[2**(n2-1), 3 * 2**(n1-1))`` exactly: a weight below half the smallest level
    becomes 0 (index -1), one exactly on a boundary goes to the larger magnitude, and since
    ``s < 3 * 2**(n1-1)`` by the choice of ``n1`` no weight of the layer lies above the top.

    ``s = max|w|`` unless ``max_abs`` is given (INQ fixes the levels from the pretrained layer
    and keeps them through every incremental step); a weight beyond the top interval, possible
    only with a ``max_abs`` below ``max|w|``, saturates at ``±2**n1`` rather than becoming 0.
    An all-zero ``w`` (without ``max_abs``) gives codebook ``[0.0]`` and every index -1.
    """
    arr = as_finite_array(w, "w")
    a = np.abs(arr.astype(np.float64, copy=False))
    if max_abs is None:
        s = float(a.max()) if a.size else 0.0
        if s == 0.0:
            return CodebookTensor(np.zeros(1, np.float32), np.full(arr.shape, ZERO_INDEX, np.int32),
                                  _decoded_dtype(arr.dtype))
    else:
        s = check_real(max_abs, "max_abs", positive=True)
    codebook = power_of_two_codebook(s, bits)
    half = codebook.size // 2
    p = codebook[half:].astype(np.float64)  # 2**n2 .. 2**n1
    lower = np.concatenate([[p[0] / 2], (p[:-1] + p[1:]) / 2])  # (alpha + beta) / 2 per level
    level = np.searchsorted(lower, a, side="right") - 1  # -1: below the smallest interval
    negative = arr.astype(np.float64, copy=False) < 0
    indices = np.where(level < 0, ZERO_INDEX, np.where(negative, half - 1 - level, half + level))
    return CodebookTensor(codebook, indices.astype(np.int32), _decoded_dtype(arr.dtype))
