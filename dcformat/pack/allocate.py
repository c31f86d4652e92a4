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
    smallest = sum(min(b for b, _ in pts) for pts in curves.values())
    if smallest > target_bytes:
        raise PackError(f"the smallest picks take {smallest:,} bytes, more than the target {target_bytes:,}")

    # Multiple-choice knapsack by dynamic programming over bytes counted in units of `unit` (each
    # pick's bytes rounded up, so every solution found fits the target): exact when unit is 1.
    unit = max(1, -(-int(target_bytes) // UNITS))
    cap = int(target_bytes) // unit
    best = np.zeros(cap + 1)
    choice = []
    for n, pts in curves.items():
        new = np.full(cap + 1, np.inf)
        arg = np.zeros(cap + 1, np.int16)
        for i, (b, d) in enumerate(pts):
            c = -(-int(b) // unit)
            if c > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[c:] = best[:cap + 1 - c] + d
            better = cand < new
            new[better] = cand[better]
            arg[better] = i
        best = new
        choice.append((n, arg, [-(-int(b) // unit) for b, _ in pts]))
    if not np.isfinite(best[cap]):
        raise PackError(f"no allocation fits the target {target_bytes:,} bytes")
    picks, c = {}, cap
    for n, arg, costs in reversed(choice):
        i = int(arg[c])
        picks[n] = i
        c -= costs[i]
    spent = sum(curves[n][i][0] for n, i in picks.items())
    distortion = sum(curves[n][i][1] for n, i in picks.items())
    return Allocation(picks, int(spent), float(distortion))
