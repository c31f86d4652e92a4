"""Bits where the model needs them: one global size target shared out across tensors.

A per-tensor budget gives every matrix the same relative error, whatever the matrix does. With a
total size instead, each tensor's share should follow what its error costs the model. Each tensor
offers the points a budget sweep found (:func:`dcformat.pack.sweep.budget_sweep`: for each budget,
the bytes and exact error of ``dcpack --max-error``'s pick) — its rate–distortion curve. The
model-level distortion is ``D = Σ_t s_t · e_t² · ‖W_t‖²`` with ``e_t`` the tensor's relative error
and ``s_t`` its sensitivity: 1 without data (squared weight error), or, from calibration inputs
(:func:`dcformat.torch.calibrate`), the mean Fisher / Gauss–Newton diagonal of the model's output
over the tensor's weights (Choi et al. 2017 and SqueezeLLM weight k-means by the same
second-order term; here it weights whole tensors).

:func:`allocate` minimises ``D`` under ``Σ bytes ≤ target``: one point per tensor, a multiple-choice
knapsack, solved by dynamic programming over the bytes (in units of ``target / UNITS``, each pick
rounded up, so the result always fits; exact for targets below ``UNITS`` bytes). Equal slopes
(reverse water-filling) give the same picks wherever the curves are convex; the programme also
handles the steps where they are not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import PackError


UNITS = 1 << 16
"""The dynamic programme counts bytes in units of ``target / UNITS`` (rounded up per pick)."""


@dataclass
class Allocation:
    """Per tensor, the index of the sweep budget whose pick it takes; the total and the distortion."""

    picks: dict[str, int]
    bytes: int
    distortion: float


def allocate(result, target_bytes: int, sensitivity: dict | None = None, norms2: dict | None = None) -> Allocation:
    """The per-tensor picks of sweep ``result`` with the least weighted distortion whose tensors
    take at most ``target_bytes`` (the searched tensors' streams and index entries; the others and
    the file's fixed bytes are outside it).

    ``sensitivity``: per tensor name, ``s_t`` (default 1); ``norms2``: ``‖W_t‖²`` (default 1: the
    distortion is then the sum of squared relative errors). Raises :class:`PackError` when even
    the smallest picks exceed the target.
    """
    if isinstance(target_bytes, bool) or not isinstance(target_bytes, (int, np.integer)) or target_bytes <= 0:
        raise PackError(f"target_bytes must be a positive integer, not {target_bytes!r}")
    weights = {n: (sensitivity or {}).get(n, 1.0) * (norms2 or {}).get(n, 1.0) for n in result.searched}
    if any(not (w >= 0 and math.isfinite(w)) for w in weights.values()):
        raise PackError("sensitivities and norms must be finite and >= 0")
    curves = {n: [(o.bytes, weights[n] * o.error ** 2) for o in result.outcomes[n]] for n in result.searched}
    picks = allocate_curves(curves, target_bytes)
    spent = sum(curves[n][i][0] for n, i in picks.items())
    distortion = sum(curves[n][i][1] for n, i in picks.items())
    return Allocation(picks, int(spent), float(distortion))


def smallest_bytes(curves: dict) -> int:
    """The bytes of the cheapest point of every curve together: the smallest reachable total."""
    return int(sum(min(int(b) for b, _ in pts) for pts in curves.values()))


def allocate_curves(curves: dict, target_bytes: int) -> dict[str, int]:
    """Per curve name, the index of the point ``(bytes, distortion)`` it takes, so that the bytes add
    up to at most ``target_bytes`` and the distortions to the least such sum: the multiple-choice
    knapsack, by dynamic programming over bytes counted in units of ``target_bytes / UNITS`` (each
    point's bytes rounded up, so every solution found fits; exact below ``UNITS`` bytes).

    Raises :class:`PackError` when even the cheapest points exceed the target."""
    if isinstance(target_bytes, bool) or not isinstance(target_bytes, (int, np.integer)) or target_bytes <= 0:
        raise PackError(f"target_bytes must be a positive integer, not {target_bytes!r}")
    for name, pts in curves.items():
        if not pts:
            raise PackError(f"{name!r} has no point to choose from")
        if any(not (b >= 0 and d >= 0 and math.isfinite(d)) for b, d in pts):
            raise PackError(f"{name!r}: bytes and distortions must be finite and >= 0")
    smallest = smallest_bytes(curves)
    if smallest > target_bytes:
        raise PackError(f"the smallest picks take {smallest:,} bytes, more than the target {target_bytes:,}")
    unit = max(1, -(-int(target_bytes) // UNITS))
    cap = int(target_bytes) // unit
    best = np.zeros(cap + 1)
    choice = []
    for n, pts in curves.items():
        new = np.full(cap + 1, np.inf)
        arg = np.zeros(cap + 1, np.int32)
        costs = [-(-int(b) // unit) for b, _ in pts]
        for i, ((_, d), c) in enumerate(zip(pts, costs)):
            if c > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[c:] = best[:cap + 1 - c] + d
            better = cand < new
            new[better] = cand[better]
            arg[better] = i
        best = new
        choice.append((n, arg, costs))
    if not np.isfinite(best[cap]):
        raise PackError(f"no allocation fits the target {target_bytes:,} bytes")
    picks, c = {}, cap
    for n, arg, costs in reversed(choice):
        i = int(arg[c])
        picks[n] = i
        c -= costs[i]
    return {n: picks[n] for n in curves}


# ---------------------------------------------------------------------------------------------
# The points of one tensor: every encoding the error-budget search can store, with its model cost

POINT_BUDGETS = tuple(float(f"{0.002 * 1.5 ** i:.3g}") for i in range(15))
"""Budgets at which the uniform-grid candidate is placed (0.002 to about 0.58, 50% apart): its rungs
among the points. The k-means candidates (pruned or not) are the search's frontier (all of them
with per-weight sensitivities)."""


@dataclass(frozen=True)
class Point:
    """One encoding of a tensor: its policy, bytes in the file (streams and index entry), relative
    error ``‖W − Ŵ‖ / ‖W‖`` and model-level distortion (see :func:`tensor_points`)."""

    policy: object
    bytes: int
    error: float
    distortion: float

    @property
    def pruned(self) -> bool:
        return bool(getattr(self.policy, "sparsity", None))


def weighted_error2(array: np.ndarray, decoded: np.ndarray, h) -> float:
    """``Σ h_i (w_i − ŵ_i)²`` in float64 (``h`` a number or an array of the tensor's shape)."""
    d = np.asarray(decoded, np.float64) - np.asarray(array, np.float64)
    d *= d
    if np.ndim(h) == 0:
        return float(h) * float(d.sum())
    return float(np.dot(d.reshape(-1), np.asarray(h, np.float64).reshape(-1)))


def pareto(points: list) -> list:
    """The points not beaten by a cheaper (or equally cheap) one of lower or equal distortion,
    sorted by bytes."""
    out, best = [], math.inf
    for p in sorted(points, key=lambda p: (p.bytes, p.distortion, p.error)):
        if p.distortion < best:
            out.append(p)
            best = p.distortion
    return out


def tensor_points(array: np.ndarray, sensitivity=None, *, search: str = "sparsity+bits",
                  budgets=POINT_BUDGETS, extra=None, frontier_only: bool = True) -> list[Point]:
    """Every encoding of ``array`` the error-budget search stores — raw, the frontier of pruning ×
    k-means (:class:`dcformat.pack.budget.TensorSearch`, as ``dcpack --max-error`` weighs them) and
    the uniform grid at each of ``budgets`` — built and encoded for real, with its distortion:

    - ``sensitivity`` None: the squared relative error ``e²``;
    - a number ``s``: ``s · ‖W − Ŵ‖²``;
    - an array ``h`` of the tensor's shape (per-weight sensitivities): ``Σ h_i (w_i − ŵ_i)²``.

    ``extra``: more ``(policy, stored)`` candidates to measure the same way (e.g. sensitivity-weighted
    codebooks, :mod:`dcformat.compress.weighted`; ``policy`` any object naming them). Returns the
    Pareto frontier in (bytes, distortion) (``frontier_only=False``: every point measured): a pruned
    encoding is among the points only where it costs the model less than every unpruned one of as
    few bytes, and so the allocation picks pruning only where it pays.
    """
    from ..compress import relative_error
    from ..encoding import encode_tensor
    from .budget import TensorSearch, _measure, _measure_grid, encoded_bytes, frontier
    from .packer import encoding_for
    from .recipe import Policy, is_float

    if sensitivity is not None and np.ndim(sensitivity) and np.shape(sensitivity) != array.shape:
        raise PackError(f"a per-weight sensitivity must have the tensor's shape {array.shape}, "
                        f"not {np.shape(sensitivity)}")
    norm2 = float(np.square(np.asarray(array, np.float64)).sum()) if is_float(array) else 0.0

    def cost(stored, error):
        if sensitivity is None:
            return error ** 2
        if error == 0:
            return 0.0
        if np.ndim(sensitivity) == 0:
            return float(sensitivity) * error ** 2 * norm2
        decoded = stored.decode() if hasattr(stored, "decode") else stored
        return weighted_error2(array, decoded, sensitivity)

    if not is_float(array):
        return [Point(_lossless_policy(), encoded_bytes(encode_tensor(array)), 0.0, 0.0)]
    tensor = TensorSearch(array, search)
    points = []
    # The search's frontier is by plain relative error: with per-weight sensitivities an encoding off
    # it (a pruning of weights that do not matter) may be the cheapest to the model, so all count.
    candidates = tensor.candidates()
    for c in candidates if np.ndim(sensitivity) else frontier(candidates):
        stored, _, error, size = _measure(tensor, c.policy)
        points.append(Point(c.policy, size, error, cost(stored, error)))
        del stored
    if tensor.shareable:
        memo = {}
        for budget in budgets:
            got = _measure_grid(tensor, budget, memo=memo)
            if got is not None:
                points.append(Point(got[0], got[4], got[3], cost(got[1], got[3])))
        del memo
    for policy, stored in extra or ():
        pruned = bool(getattr(policy, "sparsity", None))
        writer_policy = policy if isinstance(policy, Policy) else Policy()
        encoded = encode_tensor(stored, encoding_for(array, stored, writer_policy, pruned=pruned))
        error = relative_error(array, stored.decode() if hasattr(stored, "decode") else stored)
        points.append(Point(policy, encoded_bytes(encoded), error, cost(stored, error)))
    return pareto(points) if frontier_only else points


def _lossless_policy():
    from .recipe import Policy

    return Policy()
