"""1-D k-means kernels: Lloyd's on sorted distinct values, and nearest-centroid labels.

:func:`dcformat.compress.kmeans_1d` and the error-budget search (:mod:`dcformat.pack.budget`)
run Lloyd's on the *sorted distinct* values ``u`` of a tensor with their multiplicities
``counts``. A 1-D cluster is then a contiguous run of ``u``, so a round of Lloyd's costs
O(k log m): cut ``u`` between consecutive centroids (binary search), take each cluster's mean from
prefix sums. In numpy a round is ~20 small array operations (~50 µs of interpreter time); 300
rounds for each of dozens of candidate codebooks made that the cost of a budget search.

Every function here computes exactly what the numpy version it replaced did, operation for
operation (the same float64 sums in the same order), so results are bit-identical; the tests
compare them with that numpy version (``tests/naive_kmeans.py``). Plain ``@njit(cache=True,
nogil=True)`` functions over typed arrays; the callers check their inputs.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def prefix_sums(u, counts):
    """``(cum_n, cum_s)``: running totals of ``counts`` and ``counts * u``, each with a leading 0.

    ``u``: float32 or float64 values; ``counts``: any integer type. Sequential float64 sums, as
    ``numpy.cumsum`` of ``counts.astype(float64) * u.astype(float64)``: each product is rounded once
    in float64, whatever the input types. ``cum_n[i]`` is the weight of ``u[:i]``."""
    m = u.shape[0]
    cum_n = np.empty(m + 1)
    cum_s = np.empty(m + 1)
    cum_n[0] = 0.0
    cum_s[0] = 0.0
    n = 0.0
    s = 0.0
    for i in range(m):
        n += np.float64(counts[i])
        s += np.float64(np.int64(counts[i])) * np.float64(u[i])
        cum_n[i + 1] = n
        cum_s[i + 1] = s
    return cum_n, cum_s


@numba.njit(cache=True, nogil=True)
def _first_above(u, x, hint):
    """``numpy.searchsorted(u, x, side="right")`` (the first index with ``u[i] > x``), searched
    outward from ``hint`` (galloping): a cut moves by a few values from one round to the next."""
    m = u.shape[0]
    h = min(max(hint, 0), m)
    if h < m and u[h] <= x:  # the answer is above h
        lo = h + 1
        step = 1
        while lo + step - 1 < m and u[lo + step - 1] <= x:
            lo += step
            step *= 2
        hi = min(lo + step - 1, m)
    else:  # the answer is at most h
        hi = h
        step = 1
        while hi - step >= 0 and u[hi - step] > x:
            hi -= step
            step *= 2
        lo = max(hi - step + 1, 0)
    while lo < hi:
        mid = (lo + hi) // 2
        if u[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def cuts(u, c, hints):
    """``cuts[j]``: how many values of ``u`` are nearest to ``c[:j+1]`` (ties to the lower centroid).

    The cut between ``a = c[j]`` and ``b = c[j+1]`` starts at their midpoint (searched from
    ``hints[j]``, the previous round's cut, when ``hints`` has one per cut) and moves a step at a
    time until the last value below it prefers ``a`` (``|x - a| <= |x - b|``) and the first value
    above it prefers ``b``; then a running maximum (a no-op unless centroids are within an ulp)."""
    m = u.shape[0]
    k = c.shape[0]
    out = np.empty(max(k - 1, 0), np.int64)
    hinted = hints.shape[0] == k - 1
    running = np.int64(0)
    for j in range(k - 1):
        a = c[j]
        b = c[j + 1]
        cut = np.int64(_first_above(u, 0.5 * (a + b), hints[j] if hinted else m // 2))
        while True:
            last = u[max(cut - 1, 0)]
            down = cut > 0 and abs(last - a) > abs(last - b)
            first = u[min(cut, m - 1)]
            up = (not down) and cut < m and abs(first - a) <= abs(first - b)
            if down:
                cut -= 1
            elif up:
                cut += 1
            else:
                break
        running = max(running, cut)
        out[j] = running
    return out


@numba.njit(cache=True, nogil=True)
def _run_bound(u, centroid, lo, hi, t, strict, falling):
    """Binary search over ``d = |u[lo:hi] − centroid|`` for where ``d > t`` (``strict``) or ``d >= t``
    stops holding (``falling``: ``d`` non-increasing, the test holds on a prefix; returns its end)
    or starts holding (``d`` non-decreasing, the test holds on a suffix; returns its start)."""
    while lo < hi:
        mid = (lo + hi) // 2
        x = abs(u[mid] - centroid)
        holds = x > t if strict else x >= t
        if holds == falling:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _relocate_empty(u, bounds, c, empty):
    """Move each empty cluster's centroid onto one of the values farthest from their own centroid.

    Distances ``d = |u − c[owner]|`` are to the (updated) centroid of each value's cluster. The
    ``e`` values taken (``e`` empty clusters) are the first ``e`` of a stable sort by decreasing
    distance: every value farther than ``t``, the ``e``-th largest distance, then the lowest values
    at exactly ``t``. Within a cluster ``d`` falls, then rises (below, then above its centroid),
    so its ``e`` largest distances lie among its first and last ``e`` values, and the values at
    distance ``t`` form at most one run on each side (binary search): O(k (e + log m)) instead of
    O(m). Returns the centroids sorted and distinct (``numpy.unique``)."""
    k = c.shape[0]
    e = 0
    for j in range(k):
        e += empty[j]
    # the candidates: the first and last e values of each cluster
    size = 0
    for j in range(k):
        size += min(bounds[j + 1] - bounds[j], 2 * e)
    cand = np.empty(size)
    n = 0
    for j in range(k):
        lo, hi = bounds[j], bounds[j + 1]
        for i in range(lo, hi):
            if i - lo >= e and hi - i > e:
                continue
            cand[n] = abs(u[i] - c[j])
            n += 1
    t = np.partition(cand, size - e)[size - e]
    far = np.empty(e)
    taken = 0
    for j in range(k):  # every value farther than t: among the candidates
        lo, hi = bounds[j], bounds[j + 1]
        for i in range(lo, hi):
            if i - lo >= e and hi - i > e:
                continue
            if abs(u[i] - c[j]) > t:
                far[taken] = u[i]
                taken += 1
    for j in range(k):  # then the lowest values at distance t, in order
        if taken == e:
            break
        lo, hi = bounds[j], bounds[j + 1]
        if lo == hi:
            continue
        split = lo + np.searchsorted(u[lo:hi], c[j], side="right")  # u[lo:split] <= c[j] < u[split:hi]
        # below c[j] d falls: the run of d == t starts where d > t ends and stops where d >= t ends;
        # above c[j] d rises: it starts where d >= t starts and stops where d > t starts.
        for side_lo, side_hi, falling in ((lo, split, True), (split, hi, False)):
            start = _run_bound(u, c[j], side_lo, side_hi, t, falling, falling)
            stop = _run_bound(u, c[j], side_lo, side_hi, t, not falling, falling)
            for i in range(start, min(stop, start + e - taken)):
                far[taken] = u[i]
                taken += 1
    out = c.copy()
    taken = 0
    for j in range(k):
        if empty[j]:
            out[j] = far[taken]
            taken += 1
    return np.unique(out)


@numba.njit(cache=True, nogil=True)
def lloyd_sorted(u, counts, cum_n, cum_s, c0, iters):
    """Lloyd's on sorted distinct ``u`` with multiplicities ``counts``, from sorted distinct ``c0``.

    ``cum_n, cum_s = prefix_sums(u, counts)``. At most ``iters`` rounds, stopping when the
    partition repeats. A round: cut, then each cluster's mean from the prefix sums; clusters left
    empty are relocated (:func:`_relocate_empty`); means rounded out of order (values an ulp apart)
    are merged. If the last partition still holds, the means are summed again directly over each
    cluster (no prefix-sum cancellation). Returns the centroids (float64, sorted, distinct)."""
    m = u.shape[0]
    c = c0.copy()
    bounds = np.empty(0, np.int64)
    have_bounds = False
    for _ in range(iters):
        k = c.shape[0]
        new_bounds = np.empty(k + 1, np.int64)
        new_bounds[0] = 0
        new_bounds[1:k] = cuts(u, c, bounds[1:-1] if bounds.shape[0] == k + 1 else bounds[:0])
        new_bounds[k] = m
        if have_bounds and new_bounds.shape[0] == bounds.shape[0] and np.all(new_bounds == bounds):
            break
        bounds = new_bounds
        have_bounds = True
        empty = np.zeros(k, np.bool_)
        any_empty = False
        for j in range(k):
            n_in = cum_n[bounds[j + 1]] - cum_n[bounds[j]]
            if n_in > 0:
                c[j] = (cum_s[bounds[j + 1]] - cum_s[bounds[j]]) / n_in
            else:
                empty[j] = True
                any_empty = True
        if any_empty:
            c = _relocate_empty(u, bounds, c, empty)
            have_bounds = False  # the partition will change: no convergence test on the next round
        else:
            ordered = True
            for j in range(k - 1):
                if c[j + 1] - c[j] <= 0:
                    ordered = False
            if not ordered:
                c = np.unique(c)
                have_bounds = False
    if have_bounds:
        for j in range(c.shape[0]):
            n_in = 0.0
            s_in = 0.0
            for i in range(bounds[j], bounds[j + 1]):
                n_in += np.float64(counts[i])
                s_in += counts[i] * u[i]
            if n_in > 0:
                c[j] = s_in / n_in
    return c


@numba.njit(cache=True, nogil=True)
def nearest_sorted(u, c, labels):
    """``labels[i]``: the index of the entry of sorted distinct ``c`` nearest to ``u[i]``, for
    sorted ``u``; an exact tie in float64 distance goes to the lower index. One merge pass.

    Returns which entries of ``c`` own a value."""
    m = u.shape[0]
    k = c.shape[0]
    used = np.zeros(k, np.bool_)
    hi = 0
    for i in range(m):
        x = u[i]
        while hi < k and c[hi] < x:  # hi: the first entry >= x
            hi += 1
        lo = max(hi - 1, 0)
        h = min(hi, k - 1)
        label = h if abs(x - c[h]) < abs(x - c[lo]) else lo
        labels[i] = label
        used[label] = True
    return used


@numba.njit(cache=True, nogil=True)
def cluster_totals(labels, counts, u, decoded, k):
    """Per label: the weight of its values; and the weighted squared error ``Σ counts (u − decoded[label])²``."""
    weight = np.zeros(k)
    err2 = 0.0
    for i in range(labels.shape[0]):
        label = labels[i]
        weight[label] += counts[i]
        diff = u[i] - decoded[label]
        err2 += counts[i] * diff * diff
    return weight, err2


@numba.njit(cache=True, nogil=True)
def masked_counts(inverse, mask, m):
    """``numpy.bincount(inverse[mask], minlength=m)``: how often each distinct value is kept."""
    out = np.zeros(m, np.int64)
    for i in range(inverse.shape[0]):
        if mask[i]:
            out[inverse[i]] += 1
    return out


_U32 = np.uint64(0xFFFFFFFF)
_SIGN = np.uint64(0x80000000)
_SHIFT = np.uint64(32)


@numba.njit(cache=True, nogil=True)
def value_keys(bits):
    """For the bit patterns of finite float32 values: 64-bit keys ``(monotone value) << 32 | position``.

    Sorting the keys sorts the values (``-0.0`` counts as ``+0.0``), equal values by position."""
    n = bits.shape[0]
    out = np.empty(n, np.uint64)
    for i in range(n):
        b = np.uint64(bits[i])
        if b == _SIGN:  # -0.0
            b = np.uint64(0)
        key = (b ^ _U32) if b & _SIGN else (b | _SIGN)  # negative values in reverse order
        out[i] = (key << _SHIFT) | np.uint64(i)
    return out


@numba.njit(cache=True, nogil=True)
def unique_from_keys(keys):
    """From sorted :func:`value_keys`: the distinct values (float32 bit patterns, zero as ``+0.0``),
    each position's index among them, and their counts — ``numpy.unique``'s three results."""
    n = keys.shape[0]
    m = 0
    for i in range(n):
        if i == 0 or (keys[i] >> _SHIFT) != (keys[i - 1] >> _SHIFT):
            m += 1
    values = np.empty(m, np.uint32)
    counts = np.zeros(m, np.int64)
    inverse = np.empty(n, np.int64)
    g = -1
    for i in range(n):
        key = keys[i] >> _SHIFT
        if i == 0 or key != (keys[i - 1] >> _SHIFT):
            g += 1
            values[g] = np.uint32((key ^ _SIGN) if key & _SIGN else (key ^ _U32))
        counts[g] += 1
        inverse[np.int64(keys[i] & _U32)] = g
    return values, inverse, counts


@numba.njit(cache=True, nogil=True)
def magnitude_threshold(u, counts, n_prune):
    """For sorted distinct ``u`` with multiplicities ``counts``: the ``n_prune``-th smallest ``|u|``
    (counting multiplicities; ``n_prune >= 1``) and how many values lie strictly below it."""
    m = u.shape[0]
    right = np.int64(np.searchsorted(u, 0.0, side="left"))  # u[right:] >= 0, ascending in |u|
    left = right - 1  # u[:right] < 0, ascending in |u| going left
    seen = np.int64(0)
    t = 0.0
    while seen < n_prune:
        if left < 0 or (right < m and abs(u[right]) <= abs(u[left])):
            t = abs(u[right])
            seen += counts[right]
            right += 1
        else:
            t = abs(u[left])
            seen += counts[left]
            left -= 1
    below = np.int64(0)
    for i in range(m):
        if abs(u[i]) < t:
            below += counts[i]
    return t, below


@numba.njit(cache=True, nogil=True)
def magnitude_keep(x, t, ties):
    """Keep-mask of ``x``: prune every ``|x| < t``, and the first ``ties`` (lowest positions) of
    ``|x| == t``."""
    n = x.shape[0]
    keep = np.empty(n, np.bool_)
    for i in range(n):
        a = abs(np.float64(x[i]))
        if a < t:
            keep[i] = False
        elif a == t and ties > 0:
            keep[i] = False
            ties -= 1
        else:
            keep[i] = True
    return keep


# ---------------------------------------------------------------------------------------------
# Lean helpers of the error-budget search: sorted distinct values without an inverse, kept counts
# from a threshold, and per-element codebook indices straight from the values (no n-sized
# intermediate arrays: the search of a 200 MB tensor must fit in a few times its size).


@numba.njit(cache=True, nogil=True)
def count_distinct(s):
    """How many distinct values sorted ``s`` holds (``-0.0`` and ``+0.0`` are one)."""
    m = 0
    for i in range(s.shape[0]):
        if i == 0 or s[i] != s[i - 1]:
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def sorted_distinct(s, counts_out):
    """For sorted finite values ``s``: write the distinct values (``-0.0`` merged into ``+0.0``) to
    the front of ``s`` in place and their multiplicities to ``counts_out``; return how many."""
    n = s.shape[0]
    m = 0
    i = 0
    while i < n:
        x = s[i]
        j = i + 1
        while j < n and s[j] == x:
            j += 1
        s[m] = x + 0.0  # -0.0 + 0.0 is +0.0
        counts_out[m] = j - i
        m += 1
        i = j
    return m


@numba.njit(cache=True, nogil=True)
def tie_kept(x, t, ties):
    """How many values equal to ``-t`` and to ``+t`` :func:`magnitude_keep` keeps (it prunes the
    first ``ties`` of ``|x| == t`` by position): ``(kept at -t, kept at +t)``; for ``t == 0`` both
    count the zeros."""
    neg = 0
    pos = 0
    for i in range(x.shape[0]):
        a = abs(np.float64(x[i]))
        if a == t:
            if ties > 0:
                ties -= 1
            elif x[i] < 0:
                neg += 1
            else:
                pos += 1
    if t == 0.0:
        return neg + pos, neg + pos
    return neg, pos


@numba.njit(cache=True, nogil=True)
def kept_values(u, counts, t, neg_t, pos_t, u_out, c_out):
    """The kept distinct values of a magnitude threshold ``t``: every ``|u| > t`` with its count,
    ``±t`` with the counts :func:`tie_kept` gives (dropped when 0). Returns how many."""
    m = 0
    for i in range(u.shape[0]):
        a = abs(np.float64(u[i]))
        if a > t:
            c = counts[i]
        elif a == t:
            c = neg_t if u[i] < 0 else pos_t
        else:
            continue
        if c > 0:
            u_out[m] = u[i]
            c_out[m] = c
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def nearest_used(u, c):
    """Which entries of sorted distinct float64 ``c`` are the nearest (ties: lower) of some ``u``."""
    m = u.shape[0]
    k = c.shape[0]
    used = np.zeros(k, np.bool_)
    hi = 0
    for i in range(m):
        x = np.float64(u[i])
        while hi < k and c[hi] < x:
            hi += 1
        lo = max(hi - 1, 0)
        h = min(hi, k - 1)
        used[h if abs(x - c[h]) < abs(x - c[lo]) else lo] = True
    return used


@numba.njit(cache=True, nogil=True)
def nearest_totals(u, counts, c, decoded):
    """:func:`nearest_sorted` then :func:`cluster_totals` in one pass, without the labels: per entry
    of ``c`` the weight of its values, and ``Σ counts (u − decoded[label])²`` (same order of sums)."""
    m = u.shape[0]
    k = c.shape[0]
    weight = np.zeros(k)
    err2 = 0.0
    hi = 0
    for i in range(m):
        x = np.float64(u[i])
        while hi < k and c[hi] < x:
            hi += 1
        lo = max(hi - 1, 0)
        h = min(hi, k - 1)
        label = h if abs(x - c[h]) < abs(x - c[lo]) else lo
        w = np.float64(np.int64(counts[i]))
        weight[label] += w
        diff = x - decoded[label]
        err2 += w * diff * diff
    return weight, err2


@numba.njit(cache=True, nogil=True)
def _nearest_one(x, c):
    """The index of the entry of sorted distinct ``c`` nearest to ``x`` (ties: the lower one), as
    :func:`nearest_sorted` labels it."""
    k = c.shape[0]
    lo_i = 0
    hi_i = k
    while lo_i < hi_i:  # the first entry >= x
        mid = (lo_i + hi_i) // 2
        if c[mid] < x:
            lo_i = mid + 1
        else:
            hi_i = mid
    hi = lo_i
    lo = max(hi - 1, 0)
    h = min(hi, k - 1)
    return h if abs(x - c[h]) < abs(x - c[lo]) else lo


@numba.njit(cache=True, nogil=True)
def codebook_indices(x, c, pruned, t, ties, out):
    """Per value of ``x``, the index of its nearest entry of sorted distinct float64 ``c`` (int32
    ``out``); with ``pruned``, -1 where :func:`magnitude_keep` (``t``, ``ties``) prunes."""
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        if pruned:
            a = abs(v)
            if a < t:
                out[i] = -1
                continue
            if a == t and ties > 0:
                ties -= 1
                out[i] = -1
                continue
        out[i] = _nearest_one(v, c)
    return out


@numba.njit(cache=True, nogil=True)
def prefix_checkpoints(u, counts, every):
    """:func:`prefix_sums` kept at every ``every``-th index only (``ck[q]`` = the sums of the
    first ``q * every`` values): :func:`_cum` continues the same sequential sums from there, so
    the totals it gives are those of the full prefix sums bit for bit, in ``1 / every`` of the
    memory."""
    m = u.shape[0]
    q = m // every + 1
    ck_n = np.empty(q)
    ck_s = np.empty(q)
    n = 0.0
    s = 0.0
    for i in range(m):
        if i % every == 0:
            ck_n[i // every] = n
            ck_s[i // every] = s
        w = np.float64(np.int64(counts[i]))
        n += w
        s += w * np.float64(u[i])
    if m % every == 0:
        ck_n[m // every] = n
        ck_s[m // every] = s
    return ck_n, ck_s


@numba.njit(cache=True, nogil=True)
def _cum(u, counts, ck_n, ck_s, every, i):
    """``(cum_n[i], cum_s[i])`` of :func:`prefix_sums` from :func:`prefix_checkpoints`."""
    q = i // every
    n = ck_n[q]
    s = ck_s[q]
    for t in range(q * every, i):
        w = np.float64(np.int64(counts[t]))
        n += w
        s += w * np.float64(u[t])
    return n, s


@numba.njit(cache=True, nogil=True)
def lloyd_rounds(u, counts, ck_n, ck_s, every, c, bounds, have_bounds, rounds):
    """Up to ``rounds`` rounds of :func:`lloyd_sorted`'s loop from its state ``(c, bounds,
    have_bounds)``, the prefix sums read from :func:`prefix_checkpoints` (``every = 1``: the full
    prefix sums); returns the new state, the rounds run and whether the partition repeated (the
    loop is over). Running :func:`lloyd_sorted`'s ``iters`` rounds as slices of this, then
    :func:`lloyd_finish`, gives its result bit for bit; the caller may stop between slices."""
    m = u.shape[0]
    done = 0
    converged = False
    while done < rounds:
        k = c.shape[0]
        new_bounds = np.empty(k + 1, np.int64)
        new_bounds[0] = 0
        new_bounds[1:k] = cuts(u, c, bounds[1:-1] if bounds.shape[0] == k + 1 else bounds[:0])
        new_bounds[k] = m
        if have_bounds and new_bounds.shape[0] == bounds.shape[0] and np.all(new_bounds == bounds):
            converged = True
            break
        done += 1
        bounds = new_bounds
        have_bounds = True
        empty = np.zeros(k, np.bool_)
        any_empty = False
        n0, s0 = _cum(u, counts, ck_n, ck_s, every, bounds[0])
        for j in range(k):
            n1, s1 = _cum(u, counts, ck_n, ck_s, every, bounds[j + 1])
            n_in = n1 - n0
            if n_in > 0:
                c[j] = (s1 - s0) / n_in
            else:
                empty[j] = True
                any_empty = True
            n0, s0 = n1, s1
        if any_empty:
            c = _relocate_empty(u, bounds, c, empty)
            have_bounds = False
        else:
            ordered = True
            for j in range(k - 1):
                if c[j + 1] - c[j] <= 0:
                    ordered = False
            if not ordered:
                c = np.unique(c)
                have_bounds = False
    return c, bounds, have_bounds, done, converged


@numba.njit(cache=True, nogil=True)
def lloyd_finish(u, counts, c, bounds, have_bounds):
    """:func:`lloyd_sorted`'s last step: if the last partition still holds, each mean summed again
    directly over its cluster."""
    if have_bounds:
        for j in range(c.shape[0]):
            n_in = 0.0
            s_in = 0.0
            for i in range(bounds[j], bounds[j + 1]):
                w = np.float64(np.int64(counts[i]))
                n_in += w
                s_in += w * np.float64(u[i])
            if n_in > 0:
                c[j] = s_in / n_in
    return c


@numba.njit(cache=True, nogil=True)
def _pairwise_leaf(u, counts, start, n):
    """numpy's pairwise summation of a block of at most 128 terms ``counts[i] * (u[i] * u[i])``."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            x = np.float64(u[i])
            res += np.float64(np.int64(counts[i])) * (x * x)
        return res
    r = np.empty(8)
    for j in range(8):
        x = np.float64(u[start + j])
        r[j] = np.float64(np.int64(counts[start + j])) * (x * x)
    i = 8
    while i < n - (n % 8):
        for j in range(8):
            x = np.float64(u[start + i + j])
            r[j] += np.float64(np.int64(counts[start + i + j])) * (x * x)
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        x = np.float64(u[start + i])
        res += np.float64(np.int64(counts[start + i])) * (x * x)
        i += 1
    return res


@numba.njit(cache=True, nogil=True)
def pairwise_norm2(u, counts):
    """``float((counts * u.astype(float64) ** 2).sum())`` bit for bit as numpy computes it (pairwise
    summation in one inner loop: blocks of at most 128 terms, halves cut at a multiple of 8), without
    the two float64 arrays of ``u``'s size. The recursion runs on an explicit stack."""
    starts = np.empty(128, np.int64)
    sizes = np.empty(128, np.int64)
    stage = np.empty(128, np.int64)
    left = np.empty(128)
    starts[0], sizes[0], stage[0] = 0, u.shape[0], 0
    top = 1
    ret = 0.0
    while top > 0:
        f = top - 1
        n = sizes[f]
        if n <= 128:
            ret = _pairwise_leaf(u, counts, starts[f], n)
            top -= 1
            continue
        n2 = n // 2
        n2 -= n2 % 8
        if stage[f] == 0:
            stage[f] = 1
            starts[top], sizes[top], stage[top] = starts[f], n2, 0
            top += 1
        elif stage[f] == 1:
            left[f] = ret
            stage[f] = 2
            starts[top], sizes[top], stage[top] = starts[f] + n2, n - n2, 0
            top += 1
        else:
            ret = left[f] + ret
            top -= 1
    return 0.0 + ret
