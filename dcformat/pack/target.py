"""``dcpack --target-size``: the file of a given size whose errors cost the model least.

:func:`pack_to_size` measures, per weight tensor, every encoding the error-budget search can store
(:func:`dcformat.pack.allocate.tensor_points`: raw, pruning × k-means, the uniform grid at many
steps; bytes counted for real), prices each by its model-level distortion, shares the bytes left
after the other tensors and the file's own fields out across tensors (:func:`allocate_curves`, an
exact knapsack), then packs the picks with :func:`dcformat.pack.packer.pack` as a recipe of one
rule per tensor. The file always lands within the target: its real size is checked, and when the
parts outside the weight tensors (metadata, a folder's attached files) take more than estimated,
the allocation is redone with the difference.

The distortion of a tensor's encoding:

- with sensitivities (``sensitivity=``: a file of :mod:`dcformat.pack.sensitivity`, or a dict),
  per weight: ``Σ h_i (w_i − ŵ_i)²``; per tensor: ``s_t ‖W − Ŵ‖²`` — the second-order cost of the
  error in the model's output that calibration measured;
- without data: ``ρ_t · e_t²`` with ``e_t`` the tensor's relative error and ``ρ_t`` its role: 1 for a
  matrix, :data:`EMBEDDING_WEIGHT` for a token embedding table (a lookup: its error stays in the rows
  of the tokens present, where a matrix's reaches every later layer; the presets give those tables
  a looser budget for the same reason). See :data:`DATA_FREE` for how this was chosen.

Pruned encodings compete with unpruned ones by that distortion per byte: a tensor is pruned only
where pruning is the cheaper way to the model's error (see :func:`tensor_points`).
"""
from __future__ import annotations

import fnmatch
import math
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

from .allocate import POINT_BUDGETS, allocate_curves, smallest_bytes, tensor_points
from .errors import PackError, TargetTooSmall

__all__ = ["parse_size", "pack_to_size", "TargetPlan", "TargetTooSmall", "EMBEDDING_WEIGHT", "DATA_FREE"]

EMBEDDING_WEIGHT = 0.1
"""Without data, a token embedding table's squared relative error counts this much against a
matrix's: about ``(0.015 / 0.05)²``, the ratio of the safe preset's two budgets."""
DATA_FREE = "squared relative error per tensor, token embedding tables weighted 0.1"
"""What the allocation weighs without a sensitivity file (stated in dcpack's summary)."""

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_size(text: str):
    """``("bytes", n)`` for ``12000000``, ``12MB``, ``11.5 MiB``, ``800kB``; ``("ratio", r)`` for
    ``8x`` (the file ``r`` times smaller than the dense tensors). Raises ``ValueError``."""
    s = str(text).strip().lower().replace("_", "").replace(",", "")
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", s)
    if m is None:
        raise ValueError(f"not a size: {text!r} (bytes, 12MB, 5MiB, or a ratio such as 8x)")
    value, unit = float(m.group(1)), m.group(2)
    if unit in ("x", "×"):
        if not value > 1:
            raise ValueError(f"a ratio must be above 1, not {text!r}")
        return "ratio", value
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {m.group(2)!r} in {text!r} (B, kB, MB, GB, KiB, MiB, GiB, or x for a ratio)")
    n = int(math.floor(value * _UNITS[unit]))
    if n <= 0:
        raise ValueError(f"a size must be positive, not {text!r}")
    return "bytes", n


def _escape(name: str) -> str:
    """A shell pattern matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def is_embedding(name: str) -> bool:
    from .recipe import EMBEDDING_PATTERNS

    return any(fnmatch.fnmatchcase(name, p) for p in EMBEDDING_PATTERNS)


@dataclass
class TargetPlan:
    """The allocation behind a ``--target-size`` file."""

    target_bytes: int
    file_bytes: int = 0
    smallest_bytes: int = 0
    """The smallest file this search reaches (every tensor at its cheapest point)."""
    picks: dict = field(default_factory=dict)
    """Per searched tensor, the :class:`~dcformat.pack.allocate.Point` it takes."""
    weighting: str = ""
    notes: list[str] = field(default_factory=list)
    rounds: int = 0
    points: dict = field(default_factory=dict, repr=False)
    """Per searched tensor, every point measured (for another call at another size)."""

    @property
    def pruned(self) -> int:
        return sum(1 for p in self.picks.values() if p.pruned)


def _load_sensitivity(sensitivity, tensors, searched, notes):
    from .sensitivity import check_sensitivities, load_sensitivities

    where = "sensitivity"
    if isinstance(sensitivity, (str, os.PathLike)):
        where = os.fspath(sensitivity)
        sensitivity = load_sensitivities(sensitivity)
    elif not isinstance(sensitivity, dict):
        raise PackError(f"sensitivity must be a file path or a dict, not {type(sensitivity).__name__}")
    got = check_sensitivities(sensitivity, tensors, searched, where)
    missing = [n for n in searched if n not in got]
    if missing:  # a number per weight like the others': the median of the tensors' means
        fill = float(np.median([float(np.mean(s, dtype=np.float64)) for s in got.values()]))
        for n in missing:
            got[n] = np.float64(fill)
        notes.append(f"{len(missing)} of the {len(searched)} searched tensors have no sensitivity in {where} "
                     f"(first: {missing[0]}): they take the median of the others' ({fill:.3g} per weight)")
    per_weight = sum(1 for s in got.values() if np.ndim(s))
    kind = "per weight" if per_weight == len(got) else ("per tensor" if per_weight == 0 else "per weight and per tensor")
    return got, kind, where


def plan_points(tensors: dict, searched, sensitivity=None, *, search="sparsity+bits", progress=False, threads=None,
                budgets=POINT_BUDGETS):
    """``{name: [Point]}`` for the searched tensors (:func:`tensor_points`), the tensors searched on
    ``threads`` threads with at most 1.5 times the largest in flight."""
    from ..parallel import imap_ordered, resolve_threads
    from .packer import _progress

    sizes = [int(tensors[n].size) for n in searched]
    out = {}

    def one(name):
        s = None if sensitivity is None else sensitivity.get(name)
        return name, tensor_points(tensors[name], s, search=search, budgets=budgets)

    if not searched:
        return out
    if resolve_threads(threads) > 1:  # compile the kernels on this thread first (not in two at once)
        tensor_points(np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64), budgets=(0.1,))
    with _progress(sum(sizes), "measuring", progress) as bar:
        for name, pts in imap_ordered(one, list(searched), sizes, resolve_threads(threads), limit=1.5 * max(sizes)):
            out[name] = pts
            bar.update(int(tensors[name].size))
    return out


def weigh(points: dict, sensitivity, names) -> dict:
    """``{name: [(bytes, distortion)]}``: with sensitivities, the points' own distortions; without,
    the squared relative error times the role weight (:data:`EMBEDDING_WEIGHT`)."""
    curves = {}
    for n in names:
        rho = 1.0 if sensitivity is not None else (EMBEDDING_WEIGHT if is_embedding(n) else 1.0)
        curves[n] = [(p.bytes, rho * p.distortion) for p in points[n]]
    return curves


def pack_to_size(source, out, target, *, sensitivity=None, only=(), keep=(), min_size: int = 4096,
                 search: str = "sparsity+bits", progress: bool = False, verify: bool = True, profile=None,
                 key=None, attach=None, metadata=None, threads=None, source_name=None, points=None,
                 budgets=POINT_BUDGETS):
    """Pack ``source`` (a checkpoint path or a dict of arrays) into ``out`` within ``target`` bytes
    (an int, or a string :func:`parse_size` reads: ``"12MB"``, ``"8x"``). Returns ``(PackResult,
    TargetPlan)``. Raises :class:`TargetTooSmall` (a :class:`PackError`) naming the smallest
    reachable size when the target is below it; nothing is written then. ``points``: the
    :attr:`TargetPlan.points` of an earlier call on the same tensors and sensitivities (the
    measuring is most of the work; packing again at another size then only allocates and packs);
    ``budgets``: where the uniform-grid candidate's rungs are measured (:data:`POINT_BUDGETS`)."""
    from ..constants import PREAMBLE_SIZE, TRAILER_SIZE
    from ..encoding import encode_tensor
    from ..writer import serialize_index
    from .budget import encoded_bytes
    from .checkpoints import check_tensors, checkpoint_format, load_checkpoint
    from .packer import _metadata, pack
    from .recipe import Recipe, budget_recipe

    start = time.perf_counter()
    if isinstance(target, str):
        kind, value = parse_size(target)
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool) and target > 0:
        kind, value = "bytes", int(target)
    else:
        raise PackError(f"target must be a positive number of bytes or a size string, not {target!r}")
    source_metadata, source_format = {}, None
    if isinstance(source, (str, os.PathLike)):
        source_format = checkpoint_format(source) if os.path.isfile(source) else None
        tensors, source_metadata = load_checkpoint(source, key=key)
        source_name = source_name or os.path.basename(os.path.normpath(os.fspath(source)))
    else:
        tensors = check_tensors(source, "tensors")
    selection = budget_recipe(1.0, only=only, keep=keep, min_size=min_size)
    names = [n for n in tensors if selection.selects(n)]
    if not names:
        raise PackError("no tensor to pack (check --only)")
    rules = {n: selection.rule_for(n, tensors[n]) for n in names}
    searched = [n for n in names if rules[n] is not None and rules[n].policy.max_error is not None]
    original = sum(int(tensors[n].nbytes) for n in names)
    target_bytes = int(value) if kind == "bytes" else int(original / value)
    notes = []
    sens, weighting = None, f"without data ({DATA_FREE}; --sensitivity FILE gives the model's own)"
    if sensitivity is not None:
        sens, what, where = _load_sensitivity(sensitivity, tensors, searched, notes)
        weighting = f"by calibrated sensitivities {what} ({os.path.basename(where) if where != 'sensitivity' else 'given'})"
    if points is None or set(points) != set(searched):
        points = plan_points(tensors, searched, sens, search=search, progress=progress, threads=threads,
                             budgets=budgets)
    curves = weigh(points, sens, searched)
    rest = sum(encoded_bytes(encode_tensor(tensors[n])) + len(n.encode("utf-8")) - 1
               for n in names if n not in searched)
    names_bytes = sum(len(n.encode("utf-8")) - 1 for n in searched)

    def recipe_of(picks):
        spec = [{"name": "keep", "match": list(keep), "rank": "any", "min_size": 0}] if keep else []
        for n in searched:
            policy = picks[n].policy
            if not policy.lossless:
                spec.append({"name": "target", "match": [_escape(n)], "rank": "any", "min_size": 0, **policy.to_dict()})
        return Recipe.from_dict({"rules": spec, "only": list(only) if only else None})

    cheapest = {n: min(points[n], key=lambda p: p.bytes) for n in searched}
    meta = _metadata(recipe_of(cheapest), source_name, source_format, source_metadata, metadata)
    outside = PREAMBLE_SIZE + len(serialize_index(meta, [])) + TRAILER_SIZE + rest + names_bytes
    plan = TargetPlan(target_bytes, weighting=weighting, notes=notes, points=points)
    tmp = os.path.join(os.path.dirname(os.path.abspath(os.fspath(out))), "." + os.path.basename(os.fspath(out)) + ".target")
    fitted = None  # (result, picks) of the best file within the target so far
    try:
        for round_ in range(1, 5):
            inner = target_bytes - outside
            if inner < smallest_bytes(curves):
                if fitted is not None:
                    break
                plan.smallest_bytes = outside + smallest_bytes(curves)
                raise TargetTooSmall(plan.smallest_bytes, target_bytes)
            picks = allocate_curves(curves, inner)
            if fitted is not None and picks == fitted[1]:
                break
            chosen = {n: points[n][i] for n, i in picks.items()}
            result = pack(dict(tensors) if not isinstance(source, (str, os.PathLike)) else source, tmp,
                          recipe_of(chosen), metadata=metadata, progress=progress, verify=verify, profile=profile,
                          key=key, attach=attach, threads=threads, source_name=source_name)
            plan.rounds = round_
            real = result.file_bytes - sum(p.bytes for p in chosen.values())  # what lies outside the picks
            if result.file_bytes <= target_bytes:
                os.replace(tmp, out)
                result.path = os.fspath(out)
                result.seconds = time.perf_counter() - start
                fitted = (result, picks)
                plan.picks, plan.file_bytes, plan.smallest_bytes = chosen, result.file_bytes, real + smallest_bytes(curves)
                if 0 <= outside - real <= 64:  # the estimate was right: nothing more to gain
                    break
                outside = real + 16  # the recipe's length may change with the picks
            else:  # the parts outside the picks (attachments, metadata, a profile) took more than estimated
                os.remove(tmp)
                outside = real + 64 * round_
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if fitted is None:
        raise PackError(f"could not land within {target_bytes:,} bytes")
    return fitted[0], plan
