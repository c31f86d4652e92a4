"""Error budgets: per tensor, the smallest encoding whose relative error stays within a bound.

:func:`choose` looks at every candidate of one tensor — raw (lossless), and magnitude pruning
(``SPARSITIES``) × k-means sharing (``BITS``), and sharing without pruning through the wider
codebooks of ``UNPRUNED_BITS`` (``search="bits"``: no pruning) — and returns the
smallest one whose relative error ``‖W − Ŵ‖ / ‖W‖`` is at most the budget. The relative-index
width of a pruned candidate is chosen by the writer, as always.

How, fast enough for a 22M-parameter checkpoint (MiniLM: about 10 s on 2 cores):

1. The tensor is sorted once (:func:`unique_values`: one SIMD sort of 64-bit keys); the pruning
   masks come from the sorted values too (a threshold, then one pass), equal to
   :func:`~dcformat.compress.magnitude_mask`'s. Every candidate's k-means runs on the sorted
   distinct kept values with their counts — the computation :func:`~dcformat.compress.kmeans_1d`
   does (linear init, Lloyd's, 300 rounds; compiled, :mod:`dcformat.kernels.kmeans`), so the
   stored tensor equals what ``compress_tensor`` gives for the candidate's policy. (An
   MSE-optimal codebook was tried: lower error per bit, but
   its evenly used symbols entropy-code worse; linear init's rarely used tail centroids cost
   little after Huffman, and the files were 1.7x larger at the same budget.) Its error comes
   from the same sorted values, and its size is *estimated* from symbol counts (order-0 entropy
   plus code table, or bit-packing; for CSR, the gaps at the best index width, fillers
   included) plus the codebook.
2. The candidates whose estimate is not beaten by a cheaper candidate of lower error form the
   *frontier* (it does not depend on the budget).
3. Of the frontier candidates within the budget (error computed exactly on the decoded tensor),
   each is encoded for real, and the one with the fewest bytes in the file (streams plus its
   index entry) wins.

4. One more candidate lands on the budget instead of stopping at the power-of-two codebook below
   it: a uniform grid (entropy-constrained scalar quantization, :mod:`dcformat.compress.ecsq`; the
   cells used become the codebook, the writer's Huffman coding the entropy coder). Its step is the
   coarsest rung of a fixed ladder (``2 ** (j / STEPS_PER_OCTAVE)``) whose error fits, found by
   bisection; its exact error is checked on the stored tensor (a rung finer when rounding puts it
   just over). On MiniLM it wins every matrix at budgets 0.01–0.1 (5–20% fewer bytes).

To answer several budgets, :class:`BudgetSearch` keeps one tensor's search: candidates estimated
once, each measured once, when the first budget that may admit it comes (:func:`sweep` is built on
it); :class:`Searches` keeps them by tensor name for ``pack(..., searches=)`` and the sweep.

Monotone: the frontier, each candidate's error and each candidate's real bytes do not depend on
the budget, and a looser budget admits a superset of the frontier; the grid candidate of a looser
budget sits on a coarser rung of the same ladder (its error grows with the step), which on real
tensors never costs more bytes (tested on MiniLM matrices over 13 budgets). Everything is
deterministic, so the same budget gives the same file.
"""
from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass

import numpy as np

from ..compress import relative_error
from ..compress.ecsq import MAX_CELLS, from_values, grid_stats
from ..compress.sharing import _kmeans_kernels, _lloyd_sorted  # kmeans_1d's, on values sorted once
from ..encoding import EncodedTensor, Encoding, encode_tensor, raw_gap_histogram
from ..tensors import ZERO_INDEX, CodebookTensor
from ..parallel import check_stop
from ..writer import DCFWriter, serialize_index
from . import facts
from .recipe import SEARCHES, Policy, is_float

SPARSITIES = facts.SEARCH_SPARSITIES
BITS = facts.PRUNED_BITS
UNPRUNED_BITS = facts.UNPRUNED_BITS
"""Codebooks above 8 bits serve tight budgets (below ~0.03), where raw storage was the only
alternative; pruning a quarter of the weights already costs more error than that, so pruned
candidates stop at 8 bits."""
MAX_INDEX_BITS = 16
KMEANS_ITERS = Policy().iters
SEARCH_SHARE = 0.8
"""Share of a tensor's progress given to estimating its candidates (the rest: measuring them)."""


@dataclass(frozen=True)
class Candidate:
    """One encoding of a tensor: its policy, its relative error, and its estimated bytes."""

    policy: Policy
    error: float
    estimate: float


@dataclass
class Choice:
    """The encoding :func:`choose` picked, ready for :meth:`DCFWriter.add_encoded`."""

    policy: Policy
    stored: object
    """The array itself (raw) or the :class:`CodebookTensor` written."""
    encoded: EncodedTensor
    error: float
    bytes: int
    """Bytes the tensor adds to the file: its streams and its index entry."""
    candidates: int
    """Candidates looked at (estimated)."""
    frontier: int
    """Frontier candidates (not beaten by a cheaper one of lower error)."""


def _stream_bits(hist: np.ndarray) -> float:
    """Bits of a symbol stream: Huffman (entropy + 5-bit code lengths) or bit-packing, the cheaper."""
    hist = np.asarray(hist, np.float64)
    used = np.flatnonzero(hist)
    if used.size == 0:
        return 0.0
    alphabet = int(used[-1]) + 1
    total = hist.sum()
    p = hist[used] / total
    entropy = float(-(hist[used] * np.log2(p)).sum())
    return min(entropy + 5 * alphabet, total * max(1, (alphabet - 1).bit_length()))


def _csr_bits(gap_hist: np.ndarray, value_hist: np.ndarray, zero_symbol: int) -> float:
    """Estimated bits of CSR gaps and values at the best index width, fillers included."""
    gaps = np.arange(len(gap_hist))
    best = math.inf
    for b in range(1, MAX_INDEX_BITS + 1):
        width = 1 << b
        fillers = int(((gaps >> b) * gap_hist).sum())
        hist = np.bincount(gaps & (width - 1), weights=gap_hist, minlength=width)
        hist[width - 1] += fillers
        values = value_hist.astype(np.float64).copy()
        values[zero_symbol] += fillers
        best = min(best, _stream_bits(hist) + _stream_bits(values))
        if fillers == 0:
            break
    return best


def unique_values(flat: np.ndarray):
    """``numpy.unique(flat, return_inverse=True, return_counts=True)`` for a 1-D float array, with
    zero as ``+0.0`` in the distinct values (``numpy.unique`` merges ``-0.0`` and ``+0.0`` and keeps
    whichever it sorted first; :func:`~dcformat.compress.kmeans_1d` does the same).

    For finite float32 and fewer than 2**32 values, by one sort of 64-bit keys (the value's bits
    made monotone, then its position): numpy sorts integers with SIMD, several times faster than
    the ``argsort`` inside ``numpy.unique``."""
    n = flat.size
    if flat.dtype != np.float32 or n == 0 or n >= 1 << 32 or not np.isfinite(flat).all():
        u, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        return u + u.dtype.type(0), inverse.reshape(-1), counts
    kernels = _kmeans_kernels()
    keys = kernels.value_keys(flat.view(np.uint32))
    keys.sort()
    bits, inverse, counts = kernels.unique_from_keys(keys)
    return bits.view(np.float32), inverse, counts


SUMS_EVERY = 16
"""Lloyd's prefix sums are kept at every 16th kept value (``prefix_checkpoints``): 1 byte per value
instead of 16, the same sums."""
CHUNK = 1 << 22
"""Elements per pass of the passes over a whole tensor that allocate (finiteness, norms)."""


def _all_finite(flat: np.ndarray) -> bool:
    return all(bool(np.isfinite(flat[i:i + CHUNK]).all()) for i in range(0, flat.size, CHUNK))


def sorted_values(flat: np.ndarray):
    """The sorted distinct values of a 1-D float array (zero as ``+0.0``) and their counts, in the
    array's dtype and int32 (int64 past 2**31 elements): ``numpy.unique(flat, return_counts=True)``
    with ``-0.0`` merged into ``+0.0``, from one sort of a copy (no inverse, no 64-bit keys: about
    twice the array at the peak)."""
    kernels = _kmeans_kernels()
    s = flat.copy()
    s.sort()
    counts = np.empty(kernels.count_distinct(s), np.int32 if s.size < 1 << 31 else np.int64)
    m = kernels.sorted_distinct(s, counts)
    if m <= s.size // 2:  # few distinct values: give the rest back
        return s[:m].copy(), counts
    return s[:m], counts


class TensorSearch:
    """The candidates of one floating-point tensor, sharing one sort of its values.

    A candidate's k-means is :func:`~dcformat.compress.kmeans_1d`'s (linear init, Lloyd's, the
    policy's 300 rounds) run on the sorted distinct kept values and their counts, so the stored
    tensor equals ``compress_tensor(array, policy)``'s; its error is summed over those values.

    Memory: the tensor, its sorted distinct values (in its own float dtype) and their counts, and
    while a candidate's k-means runs, its kept values and their float64 prefix sums. Nothing of the
    tensor's size is kept per candidate (a codebook is its centroids; a pruning mask is a threshold);
    :meth:`build` makes the indices straight from the values.
    """

    def __init__(self, array: np.ndarray, search: str = "sparsity+bits"):
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}, not {search!r}")
        self.array = array
        self.sparsities = SPARSITIES if search == "sparsity+bits" else (0.0,)
        wide = np.float64 if array.dtype == np.float64 else np.float32
        flat = np.ascontiguousarray(array).astype(wide, copy=False).reshape(-1)
        self.flat = flat
        self.shareable = array.size > 0 and _all_finite(flat)
        if not self.shareable:
            return
        self._values = sorted_values(flat)
        self.norm2 = _kmeans_kernels().pairwise_norm2(*self._values)
        self._grid_tables: dict[tuple, object] = {}
        self._rules: dict[float, tuple | None] = {}
        self._codebooks: dict[tuple, np.ndarray] = {}
        self._sums: tuple | None = None  # (sparsity, prefix sums) of the kept values last clustered

    @property
    def u(self) -> np.ndarray:
        """The sorted distinct values (zero as ``+0.0``), in the tensor's float dtype (float32 for
        the 16-bit ones); sorted again if :meth:`release_values` dropped them."""
        if self._values is None:
            self._values = sorted_values(self.flat)
        return self._values[0]

    @property
    def counts(self) -> np.ndarray:
        """How often each of :attr:`u` occurs."""
        self.u
        return self._values[1]

    def release_values(self) -> None:
        """Drop the sorted values and counts (about twice the tensor when its values are distinct):
        building a k-means candidate needs only its codebook, a grid only its table, which
        :meth:`grid_table` keeps; anything else sorts the values again."""
        self._values = None

    def grid_table(self, policy: Policy):
        """The :class:`~dcformat.compress.ecsq.GridStats` of a grid policy, kept for :meth:`build`."""
        key = (policy.step, policy.codebook_dtype)
        if key not in self._grid_tables:
            self._grid_tables[key] = grid_stats(self.u, self.counts, policy.step, 0.5, self.array.dtype,
                                                np.float16 if policy.codebook_dtype == "float16" else np.float32)
        return self._grid_tables[key]

    def _rule(self, sparsity: float):
        """``(t, ties)`` of ``magnitude_mask(array, sparsity)``: prune ``|x| < t`` and the first
        ``ties`` of ``|x| == t``; None for sparsity 0 (no mask)."""
        if sparsity not in self._rules:
            rule = None
            if sparsity > 0:
                n_prune = min(self.array.size, int(round(sparsity * self.array.size)))
                if n_prune == 0:
                    rule = (-1.0, 0)  # a mask that keeps everything
                else:
                    t, below = _kmeans_kernels().magnitude_threshold(self.u, self.counts, n_prune)
                    rule = (float(t), int(n_prune - below))
            self._rules[sparsity] = rule
        return self._rules[sparsity]

    def mask(self, sparsity: float) -> np.ndarray | None:
        """``magnitude_mask(array, sparsity)`` (None for 0), from the sorted values: one pass."""
        rule = self._rule(sparsity)
        if rule is None:
            return None
        return _kmeans_kernels().magnitude_keep(self.flat, rule[0], rule[1]).reshape(self.array.shape)

    def _kept(self, sparsity: float):
        """Sorted distinct kept values, their counts, and whether the candidate prunes (a mask)."""
        rule = self._rule(sparsity)
        if rule is None or rule[0] < 0:
            return self.u, self.counts, rule is not None
        t, ties = rule
        neg, pos = _kmeans_kernels().tie_kept(self.flat, t, ties)
        u, counts = self.u, self.counts
        a = int(np.searchsorted(u, -t, side="left"))  # u[:a] < -t
        b = int(np.searchsorted(u, t, side="right"))  # u[b:] > t
        mid_u, mid_c = [], []
        for i in sorted({i for i in (a, b - 1) if a <= i < b}):  # the values at -t and +t (one when t is 0)
            c = neg if u[i] < 0 else pos
            if abs(float(u[i])) == t and c > 0:
                mid_u.append(u[i])
                mid_c.append(c)
        us = np.concatenate([u[:a], np.array(mid_u, u.dtype), u[b:]])
        cs = np.concatenate([counts[:a], np.array(mid_c, counts.dtype), counts[b:]])
        return us, cs, True

    def _kmeans(self, sparsity: float, k: int, kept=None) -> np.ndarray:
        """The codebook of ``kmeans_1d(kept values, k)`` (linear init, Lloyd's) from the pre-sorted
        kept values: its sorted float32 centroids, each the nearest of some kept value."""
        key = (sparsity, k)
        if key in self._codebooks:
            return self._codebooks[key]
        us, cs, _ = kept if kept is not None else self._kept(sparsity)
        if us.size <= k:
            c = us
        else:
            if self._sums is None or self._sums[0] != sparsity:
                self._sums = None
                self._sums = (sparsity, (*_kmeans_kernels().prefix_checkpoints(us, cs, SUMS_EVERY), SUMS_EVERY))
            c = _lloyd_sorted(us, cs, np.linspace(float(us[0]), float(us[-1]), k), KMEANS_ITERS, self._sums[1])
        centroids = np.unique(np.asarray(c, dtype=np.float64).astype(np.float32))
        while True:
            used = _kmeans_kernels().nearest_used(us, centroids.astype(np.float64))
            if used.all():
                break
            centroids = centroids[used]
        self._codebooks[key] = centroids
        return centroids

    def candidates(self, step=None, sparsities=None) -> list[Candidate]:
        """Raw, then every (sparsity, bits) candidate with its error and estimated bytes.

        ``sparsities``: those of the search's sparsities to estimate (default: all of them, in
        order); each sparsity's candidates do not depend on the others'.
        ``step(fraction)``, if given, is called after each candidate with its share of the whole
        (they add up to 1); between candidates a stop request (Ctrl-C) raises
        :class:`~dcformat.parallel.Stopped`."""
        n = self.array.size
        out = [Candidate(Policy(), 0.0, float(self.array.nbytes))]
        if not self.shareable:
            return out
        kernels = _kmeans_kernels()
        sparsities = self.sparsities if sparsities is None else tuple(sparsities)
        steps = sum(len(UNPRUNED_BITS if s == 0 else BITS) for s in sparsities)
        for sparsity in sparsities:
            kept = self._kept(sparsity)
            us, cs, pruned = kept
            if us.size == 0:
                continue
            removed2 = max(self.norm2 - kernels.pairwise_norm2(us, cs), 0.0)
            kept_total = int(cs.sum())
            gap_hist = None
            if pruned and self.array.ndim >= 2:
                mask = self.mask(sparsity)
                gap_hist = raw_gap_histogram(mask.reshape(mask.shape[0], -1))
                del mask
            for bits in BITS if pruned else UNPRUNED_BITS:
                policy = Policy.from_dict({"sparsity": sparsity, "bits": bits} if pruned else {"bits": bits})
                centroids = self._kmeans(sparsity, policy.centroids(pruned), kept)
                decoded = centroids.astype(self.array.dtype).astype(np.float64)
                hist, err2 = kernels.nearest_totals(us, cs, centroids.astype(np.float64), decoded)
                err2 += removed2
                error = math.sqrt(err2 / self.norm2) if self.norm2 > 0 else (0.0 if err2 == 0 else math.inf)
                size = _stream_bits(np.append(hist, n - kept_total) if pruned else hist)
                if gap_hist is not None:
                    size = min(size, _csr_bits(gap_hist, np.append(hist, 0.0), centroids.size))
                out.append(Candidate(policy, error, size / 8 + 4 * centroids.size))
                check_stop()
                if step is not None:
                    step(1 / steps)
            # The kept values of one sparsity and their prefix sums take ~4 words per distinct value:
            # one sparsity's at a time (build() needs only the codebook and the threshold).
            del kept, us, cs
            self._sums = None
        return out

    def build(self, policy: Policy, zero_entry: bool = False):
        """The stored tensor of a candidate policy: equal to ``compress_tensor(array, policy)``'s
        (``zero_entry``: a grid's zero cell as an explicit codebook entry where the writer stores
        the same streams either way, :func:`~dcformat.compress.ecsq.from_values`)."""
        if policy.lossless:
            return self.array
        if policy.share == "uniform":
            return from_values(self.flat, None, None, policy.step, 0.5, self.array.shape,
                               self.array.dtype, np.float16 if policy.codebook_dtype == "float16" else np.float32,
                               zero_entry=zero_entry, stats=self.grid_table(policy))
        sparsity = policy.sparsity or 0.0
        rule = self._rule(sparsity)
        centroids = self._kmeans(sparsity, policy.centroids(rule is not None))
        t, ties = rule if rule is not None else (0.0, 0)
        indices = np.empty(self.flat.size, np.int32)
        _kmeans_kernels().codebook_indices(self.flat, centroids.astype(np.float64), rule is not None, t, ties, indices)
        return CodebookTensor(centroids, indices.reshape(self.array.shape), self.array.dtype)


STEPS_PER_OCTAVE = facts.GRID_STEPS_PER_OCTAVE
"""Grid steps the uniform (ECSQ) candidate may take: ``2 ** (j / STEPS_PER_OCTAVE)`` for integer
``j``, a ladder that depends on neither the tensor nor the budget; one rung changes the rate by
``1 / STEPS_PER_OCTAVE`` bit per weight and the error by about 1%."""


HALF = np.dtype(np.float16)


def _grid_error(tensor: "TensorSearch", j: int, half: bool = False):
    """Estimated relative error and codebook entries of grid rung ``j`` (exact up to float64
    rounding); ``half``: its codebook stored as float16."""
    cache = tensor.__dict__.setdefault("_grid", {})
    key = (j, half) if half else j
    if key not in cache:
        stats = grid_stats(tensor.u, tensor.counts, 2.0 ** (j / STEPS_PER_OCTAVE), 0.5, tensor.array.dtype,
                           HALF if half else np.float32)
        error = math.sqrt(stats.err2 / tensor.norm2) if tensor.norm2 > 0 else (0.0 if stats.err2 == 0 else math.inf)
        cache[key] = (error, stats.k)
    return cache[key]


def grid_rung(tensor: "TensorSearch", max_error: float, half: bool = False) -> int | None:
    """The coarsest rung of the grid ladder whose estimated error is within ``max_error``, found by
    bisection (the error of a uniform grid grows with its step), or None when no rung with at most
    65536 codebook entries fits. Starts from the high-rate estimate ``step = √12 · E · rms``.
    ``half``: the grid whose codebook is stored as float16."""
    if not tensor.shareable or tensor.norm2 <= 0 or max_error <= 0:
        return None
    if half and tensor.array.dtype.name == "bfloat16":  # float16 to bfloat16: not worth a second rounding
        return None
    rms = math.sqrt(tensor.norm2 / tensor.array.size)
    j = round(STEPS_PER_OCTAVE * math.log2(math.sqrt(12) * max_error * rms))
    error = lambda j: _grid_error(tensor, j, half)
    fits = lambda j: _may_fit(Candidate(Policy(), error(j)[0], 0.0), max_error)
    span = STEPS_PER_OCTAVE // 4
    if fits(j):  # bracket: lo fits, hi does not
        lo, hi = j, j + span
        while fits(hi):
            lo, hi, span = hi, hi + 2 * span, 2 * span
            if error(lo)[1] <= 1:  # one value left: coarser steps change nothing
                break
    else:
        lo, hi = j - span, j
        while not fits(lo):
            if error(lo)[1] > MAX_CELLS or lo < -150 * STEPS_PER_OCTAVE:
                return None
            lo, hi, span = lo - 2 * span, lo, 2 * span
    while hi - lo > 1:
        check_stop()
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo if error(lo)[1] <= MAX_CELLS else None


def grid_policy(j: int, half: bool = False) -> Policy:
    spec = {"step": 2.0 ** (j / STEPS_PER_OCTAVE)}
    if half:
        spec["codebook_dtype"] = "float16"
    return Policy.from_dict(spec)


GRIDS = (False, True)
"""The grid candidates, measured in this order: the codebook in float32, then in float16 (half the
codebook's bytes, for a rounding of its values that moves the step a few rungs at most; at tight
budgets, where the codebook has thousands of entries, the smaller file)."""


def _measure_grid(tensor: "TensorSearch", max_error: float, profile=None, memo=None, keep: bool = True,
                  half: bool = False, lean: bool = False):
    """The grid candidate for ``max_error``: its coarsest rung whose *exact* error fits (rungs below
    the estimated one are tried when float rounding puts it just over), measured as :func:`_measure`
    does; ``(policy, stored, encoded, error, bytes)`` or None (``keep=False``: stored and encoded
    are None, not kept). ``half``: the grid with a float16 codebook."""
    j = grid_rung(tensor, max_error, half)
    while j is not None:
        check_stop()
        key = (j, profile, half)
        if memo is not None and key in memo:
            got = memo[key]
        else:
            policy = grid_policy(j, half)
            got = (policy,) + _measure(tensor, policy, profile, lean)
            if not keep:
                got = (policy, None, None) + got[3:]
            if memo is not None:
                memo[key] = got
        if got[3] <= max_error:
            return got
        j -= 1
    return None


def frontier(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates sorted by estimate, keeping each one with a lower error than every cheaper one."""
    out, best = [], math.inf
    for c in sorted(candidates, key=lambda c: (c.estimate, c.error)):
        if c.error < best:
            out.append(c)
            best = c.error
    return out


def encoded_bytes(encoded: EncodedTensor, name: str = "t") -> int:
    """Bytes ``encoded`` adds to a file: its streams plus its index entry."""
    writer = DCFWriter(io.BytesIO())
    info = writer.add_encoded(name, encoded)
    writer.abort()
    return info.stored_bytes + len(serialize_index({}, [info])) - len(serialize_index({}, []))


def _check_budget(max_error) -> float:
    if isinstance(max_error, bool) or not (isinstance(max_error, (int, float)) and max_error >= 0):
        raise ValueError(f"max_error must be a number >= 0, not {max_error!r}")
    return float(max_error)


def _may_fit(candidate: Candidate, max_error: float) -> bool:
    """Whether the estimated error leaves the candidate worth measuring: clearly-over ones are not;
    the exact error, computed on the decoded tensor, decides the borderline ones."""
    return candidate.error <= max_error * (1 + 1e-9) + 1e-12


def _measure(tensor: TensorSearch, policy: Policy, profile=None, lean: bool = False):
    """A candidate built and encoded for real: ``(stored, encoded, exact error, bytes in the file)``;
    within ``profile`` (a :class:`dcformat.profiles.Profile`) when one is given. ``lean`` (without a
    profile): a grid's zero cell is an explicit codebook entry where that gives the same streams
    (one copy of the indices fewer in the writer)."""
    from .packer import encoding_for

    array = tensor.array
    stored = tensor.build(policy, zero_entry=lean and profile is None and policy.layout == "auto")
    if stored is array:
        encoded = encode_tensor(array, profile.encoding(array) if profile else None)
        return stored, encoded, 0.0, encoded_bytes(encoded)
    encoding = encoding_for(array, stored, policy, pruned=policy.prune != "none")
    encoded = encode_tensor(stored, profile.encoding(stored, encoding) if profile else Encoding.coerce(encoding))
    return stored, encoded, relative_error(array, stored), encoded_bytes(encoded)


def choose(array: np.ndarray, max_error: float, *, search: str = "sparsity+bits", profile=None,
           progress=None) -> Choice:
    """The candidate with the fewest bytes in the file among those within ``max_error``.

    Raw storage (error 0) is always a candidate, so there is always a choice. With ``profile`` (a
    :class:`dcformat.profiles.Profile`) every candidate is encoded, and sized, as it stores it.
    ``progress(fraction)``, if given, is called as the search advances (the fractions add up to 1),
    on the thread the search runs on; a stop request (Ctrl-C) raises between candidates.
    """
    max_error = _check_budget(max_error)
    if not is_float(array):
        encoded = encode_tensor(array, profile.encoding(array) if profile else None)
        if progress is not None:
            progress(1.0)
        return Choice(Policy(), array, encoded, 0.0, encoded_bytes(encoded), 1, 1)
    tensor = TensorSearch(array, search)
    done = [0.0]

    def advance(fraction):
        done[0] += fraction
        if progress is not None:
            progress(fraction)

    candidates = tensor.candidates(lambda f: advance(SEARCH_SHARE * f))
    front = frontier(candidates)
    fitting = [c for c in front if _may_fit(c, max_error)]
    for half in GRIDS:  # the grids' tables (and those a rung or two finer), then the sorted values go
        j = grid_rung(tensor, max_error, half)
        for rung in () if j is None else (j, j - 1, j - 2):
            tensor.grid_table(grid_policy(rung, half))
    if tensor.shareable:
        tensor.release_values()
    # Each candidate is built, encoded and sized in turn, and only its numbers are kept: a winner
    # other than the grid (measured last) is built and encoded again at the end (the same bytes),
    # so at most one candidate's indices and streams are in memory at a time.
    best = None  # (bytes, error, policy)
    for c in fitting:
        check_stop()
        encoded, error, size = _measure(tensor, c.policy, profile, lean=True)[1:]
        advance((1 - SEARCH_SHARE) / len(fitting))
        if error <= max_error and (best is None or (size, error) < best[:2]):
            best = (size, error, c.policy)
        del encoded
    assert best is not None  # raw (error 0) is on the frontier: nothing beats its error
    choice = None
    for half in GRIDS:  # the last one measured is kept whole: no second build when it wins
        grid = _measure_grid(tensor, max_error, profile, keep=half == GRIDS[-1], half=half, lean=True)
        if grid is not None and (grid[4], grid[3]) < best[:2]:
            best = (grid[4], grid[3], grid[0])
            choice = Choice(*grid, len(candidates) + len(GRIDS), len(front) + len(GRIDS)) if grid[1] is not None else None
        del grid
    if choice is None:
        size, error, policy = best
        stored, encoded, error_again, size_again = _measure(tensor, policy, profile, lean=True)
        assert (size_again, error_again) == (size, error)  # deterministic: the same candidate again
        grids = len(GRIDS) if policy.share == "uniform" else 0
        choice = Choice(policy, stored, encoded, error, size, len(candidates) + grids, len(front) + grids)
    if progress is not None and done[0] < 1:
        progress(1 - done[0])
    return choice


@dataclass(frozen=True)
class Outcome:
    """What :func:`choose` would pick for one budget: the policy, its exact error and its bytes."""

    policy: Policy
    error: float
    bytes: int


def sweep(array: np.ndarray, budgets, *, search: str = "sparsity+bits") -> list[Outcome]:
    """:func:`choose` for each of ``budgets`` at once (the same picks, tested), from one search.

    The frontier, every candidate's exact error and its real bytes do not depend on the budget,
    so each frontier candidate is measured once, when the first budget that may admit it comes;
    each budget then takes the first candidate with the fewest bytes among those within it, as
    :func:`choose` does (:class:`BudgetSearch`). Nothing is kept but the numbers.
    """
    budgets = [_check_budget(b) for b in budgets]
    kept = BudgetSearch(array)
    return [kept.outcome(budget, search) for budget in budgets]


class BudgetSearch:
    """One tensor's error-budget search, kept to answer any number of budgets under either search.

    Each candidate is estimated once (the pruned ones only once a ``"sparsity+bits"`` search asks
    for them), each candidate and grid rung is built and encoded once, when the first budget that
    may admit it comes, and only its numbers are kept. :meth:`outcome` is what :func:`sweep` gives
    for a budget, :meth:`choice` what :func:`choose` picks (the same policy, stored tensor, encoding
    and bytes; without a profile).

    Memory: the :class:`TensorSearch`, whose sorted values stay (about twice the tensor, where
    :func:`choose` drops them before measuring), and numbers.
    """

    def __init__(self, array: np.ndarray):
        self.array = array
        self.tensor = TensorSearch(array, "sparsity+bits") if is_float(array) else None
        self._raw: Candidate | None = None
        self._by_sparsity: dict[float, list[Candidate]] = {}
        self._measured: dict[Policy, tuple[float, int]] = {}
        self._grids: dict = {}  # _measure_grid's memo
        self._raw_bytes: int | None = None

    def candidates(self, search: str = "sparsity+bits") -> list[Candidate]:
        """:meth:`TensorSearch.candidates` of ``TensorSearch(array, search)``, in the same order."""
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}, not {search!r}")
        wanted = self.tensor.sparsities if search == "sparsity+bits" else (0.0,)
        missing = [s for s in wanted if s not in self._by_sparsity]
        if missing:
            found = self.tensor.candidates(sparsities=missing)
            self._raw = found[0]
            for s in missing:
                self._by_sparsity[s] = [c for c in found[1:] if (c.policy.sparsity or 0.0) == s]
        return [self._raw, *(c for s in wanted for c in self._by_sparsity[s])]

    def _measure(self, policy: Policy) -> tuple[float, int]:
        if policy not in self._measured:
            _, encoded, error, size = _measure(self.tensor, policy, lean=True)
            del encoded
            self._measured[policy] = (error, size)
        return self._measured[policy]

    def outcome(self, max_error: float, search: str = "sparsity+bits") -> Outcome:
        """What :func:`choose` picks for ``max_error``: its policy, exact error and bytes."""
        max_error = _check_budget(max_error)
        if self.tensor is None:
            if self._raw_bytes is None:
                self._raw_bytes = encoded_bytes(encode_tensor(self.array))
            return Outcome(Policy(), 0.0, self._raw_bytes)
        best = None
        for c in frontier(self.candidates(search)):
            check_stop()
            if _may_fit(c, max_error):
                error, size = self._measure(c.policy)
                if error <= max_error and (best is None or (size, error) < (best.bytes, best.error)):
                    best = Outcome(c.policy, error, size)
        assert best is not None  # raw (error 0) is on the frontier and always fits
        for half in GRIDS:
            grid = _measure_grid(self.tensor, max_error, memo=self._grids, keep=False, half=half, lean=True)
            if grid is not None and (grid[4], grid[3]) < (best.bytes, best.error):
                best = Outcome(grid[0], grid[3], grid[4])
        return best

    def choice(self, array: np.ndarray, max_error: float, search: str = "sparsity+bits") -> Choice:
        """``choose(array, max_error, search=search)`` (``array``: this search's tensor), with the
        candidates an earlier budget measured not measured again; the winner is built and encoded."""
        if self.tensor is None:
            return choose(array, max_error, search=search)
        best = self.outcome(max_error, search)
        stored, encoded, error, size = _measure(self.tensor, best.policy, lean=True)
        assert (size, error) == (best.bytes, best.error)  # deterministic: the same candidate again
        if best.policy.lossless:
            stored = array
        grids = len(GRIDS) if best.policy.share == "uniform" else 0
        candidates = self.candidates(search)
        return Choice(best.policy, stored, encoded, error, size, len(candidates) + grids,
                      len(frontier(candidates)) + grids)

    def build(self, policy: Policy):
        """The stored tensor of a policy :meth:`outcome` gave (the array itself when raw)."""
        return self.array if policy.lossless or self.tensor is None else self.tensor.build(policy)

    def stored(self, policy: Policy):
        """``compress_tensor(array, policy)``'s stored tensor, built from this search, when ``policy``
        is one of the (sparsity, bits) candidates it has estimated (their codebooks are kept), else
        None."""
        if self.tensor is None or not self.tensor.shareable or policy.lossless:
            return None
        for sparsity, candidates in self._by_sparsity.items():
            if any(c.policy == policy for c in candidates):
                if sparsity and int(round(sparsity * self.array.size)) == 0:
                    return None  # a mask that prunes nothing: compress_tensor adds no zero symbol
                return self.tensor.build(policy)
        return None


def _same_tensor(a: np.ndarray, b: np.ndarray) -> bool:
    if a is b:
        return True
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(np.array_equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8),
                               np.ascontiguousarray(b).reshape(-1).view(np.uint8)))


class Searches:
    """Error-budget searches kept by tensor name (:class:`BudgetSearch`), for packing or sweeping
    the same tensors at other budgets: ``pack(..., searches=kept)``,
    ``budget_sweep(..., searches=kept)``. The files are the same as without; only what an earlier
    budget searched is not searched again, and a fixed policy that is one of a kept search's
    candidates (``{"sparsity": 0.9, "bits": 5}``) is built from its codebook. A name given
    another tensor gets a new search."""

    def __init__(self):
        self._kept: dict[str, BudgetSearch] = {}
        self._lock = threading.Lock()

    def get(self, name: str, array: np.ndarray) -> BudgetSearch:
        """The kept search of tensor ``name`` (begun if there is none, or if it was of other values)."""
        with self._lock:
            kept = self._kept.get(name)
        if kept is not None and _same_tensor(kept.array, array):
            return kept
        kept = BudgetSearch(array)
        with self._lock:
            self._kept[name] = kept
        return kept

    def stored(self, name: str, array: np.ndarray, policy: Policy):
        """:meth:`BudgetSearch.stored` of the kept search of ``name`` if it holds these values, else None."""
        with self._lock:
            kept = self._kept.get(name)
        if kept is None or not _same_tensor(kept.array, array):
            return None
        return kept.stored(policy)

    def __contains__(self, name: str) -> bool:
        return name in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        """Drop every kept search (and its memory)."""
        with self._lock:
            self._kept.clear()
