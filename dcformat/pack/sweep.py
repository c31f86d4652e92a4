"""Budget sweep: the file each error budget gives a checkpoint, for many budgets, from one search.

``dcpack --max-error E`` picks, per tensor, the smallest encoding within ``E``. To choose ``E``
knowingly a user wants the whole curve — file size against budget, and which setting each layer
gets — without packing once per budget. Per tensor, the candidates' frontier, exact errors and
real bytes do not depend on the budget (:func:`dcformat.pack.budget.sweep`), so one search gives
every budget's picks, and the file size follows exactly: preamble + the tensors' streams and
index entries + the index's own fields and the metadata ``dcpack`` would store + trailer (tested
against files really packed).

:func:`budget_sweep` computes it, :func:`sweep_table` and :func:`allocation_table` print it,
:func:`plot_sweep` draws it (matplotlib). With ``searches`` (a :class:`~.budget.Searches`) the
sweep keeps each tensor's search, so that files packed afterwards at any budget (and fixed
policies among its candidates) are not searched again: ``pack(..., searches=...)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..constants import PREAMBLE_SIZE, TRAILER_SIZE
from ..parallel import imap_ordered, resolve_threads
from ..writer import serialize_index
from ..encoding import encode_tensor
from .budget import Outcome, encoded_bytes, sweep
from .checkpoints import check_tensors, checkpoint_format, load_checkpoint
from .errors import PackError
from .recipe import SAFE_MAX_ERROR, Policy, budget_recipe, preset_recipe
from .tables import Column, Table, _pct, _ratio


@dataclass
class Sweep:
    """Per budget, what ``dcpack`` would write: every tensor's pick and the file's size."""

    budgets: list[float]
    search: str
    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    original_bytes: int
    """Bytes of the tensors as the checkpoint holds them."""
    outcomes: dict[str, list[Outcome]]
    """Per tensor, one :class:`Outcome` per budget (lossless tensors: the same raw one)."""
    searched: list[str]
    file_bytes: list[int]
    source: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def bits_per_weight(self, i: int, names=None) -> float:
        """Stored bits per element over ``names`` (default: the searched tensors) at budget ``i``."""
        names = self.searched if names is None else names
        elements = sum(int(np.prod(self.shapes[n], dtype=np.int64)) for n in names)
        return 8 * sum(self.outcomes[n][i].bytes for n in names) / elements if elements else 0.0


def _recipe(budget: float, search: str):
    if search == "bits":  # the safe preset's search (no pruning), at this budget
        return preset_recipe("safe", max_error=budget)
    return budget_recipe(budget)


def _check_budgets(budgets) -> list[float]:
    out = []
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b >= 0 or b != b or b == float("inf"):
            raise PackError(f"a budget must be a finite number >= 0, not {b!r}")
        out.append(float(b))
    if not out:
        raise PackError("give at least one budget")
    return sorted(set(out))


def budget_sweep(source, budgets, *, search: str = "sparsity+bits", progress: bool = False,
                 threads: int | None = None, source_name: str | None = None, searches=None) -> Sweep:
    """What ``dcpack --max-error E`` (``search="bits"``: ``--preset safe --max-error E``) gives
    ``source`` (a checkpoint path or a dict of arrays) for each ``E`` in ``budgets``.

    ``searches``: a :class:`~.budget.Searches` that keeps each tensor's search (and reuses what it
    already holds), for packing the same tensors afterwards (``pack(..., searches=...)``) or
    rebuilding a budget's tensors (:meth:`~.budget.BudgetSearch.build`) without searching again."""
    import time

    from .packer import _metadata, _progress

    start = time.perf_counter()
    budgets = _check_budgets(budgets)
    if search not in ("sparsity+bits", "bits"):
        raise PackError(f"search must be 'sparsity+bits' or 'bits', not {search!r}")
    source_metadata, source_format = {}, None
    if isinstance(source, (str, os.PathLike)):
        source_format = checkpoint_format(source)
        tensors, source_metadata = load_checkpoint(source)
        source_name = source_name or os.path.basename(os.fspath(source))
    else:
        tensors = check_tensors(source, "tensors")
    recipes = [_recipe(b, search) for b in budgets]
    names = list(tensors)
    if not names:
        raise PackError("the checkpoint holds no tensors")
    rules = {name: recipes[-1].rule_for(name, tensors[name]) for name in names}
    policies = {name: rule.policy if rule else None for name, rule in rules.items()}
    searched = [n for n in names if policies[n] is not None and policies[n].max_error is not None]

    def outcomes_of(name):
        policy = policies[name]
        if name in searched and searches is not None:
            kept = searches.get(name, tensors[name])
            return name, [kept.outcome(budget, policy.search) for budget in budgets]
        if name in searched:
            return name, sweep(tensors[name], budgets, search=policy.search)
        lossless = Outcome(Policy(), 0.0, encoded_bytes(encode_tensor(tensors[name])))  # as dcpack stores it
        return name, [lossless] * len(budgets)

    sizes = [int(tensors[n].size) for n in names]
    outcomes = {}
    with _progress(sum(sizes), "searching", progress) as bar:
        for name, result in imap_ordered(outcomes_of, names, sizes, resolve_threads(threads), window=2 * max(sizes)):
            outcomes[name] = result
            bar.update(int(tensors[name].size))
    # Outcome bytes count each tensor's index entry under a one-byte name: add the real names.
    names_bytes = sum(len(n.encode("utf-8")) - 1 for n in names)
    file_bytes = []
    for i, recipe in enumerate(recipes):
        meta = _metadata(recipe, source_name, source_format, source_metadata, None)
        fixed = PREAMBLE_SIZE + len(serialize_index(meta, [])) + TRAILER_SIZE + names_bytes
        file_bytes.append(fixed + sum(outcomes[n][i].bytes for n in names))
    return Sweep(budgets=budgets, search=search, names=names,
                 shapes={n: tuple(int(d) for d in tensors[n].shape) for n in names},
                 original_bytes=sum(int(tensors[n].nbytes) for n in names), outcomes=outcomes,
                 searched=searched, file_bytes=file_bytes, source=source_name,
                 seconds=time.perf_counter() - start)


def _setting(outcome: Outcome) -> str:
    policy = outcome.policy
    if policy.lossless:
        return "raw"
    prefix = f"{round(100 * policy.sparsity)}% " if policy.sparsity else ""
    return f"{prefix}{policy.bits}b"


def sweep_table(result: Sweep) -> Table:
    """One row per budget: file bytes, ratio, largest error, bits per weight, how tensors are stored."""
    rows = []
    for i, budget in enumerate(result.budgets):
        picks = [result.outcomes[n][i] for n in result.searched]
        pruned = sum(1 for o in picks if o.policy.sparsity)
        raw = sum(1 for o in picks if o.policy.lossless)
        rows.append({
            "budget": budget,
            "file_bytes": result.file_bytes[i],
            "ratio": result.original_bytes / result.file_bytes[i],
            "largest_error": max((o.error for o in picks), default=0.0),
            "bits_per_weight": result.bits_per_weight(i),
            "shared": len(picks) - pruned - raw, "pruned": pruned, "raw": raw,
        })
    columns = [Column("budget", "budget ‖W−Ŵ‖/‖W‖ ≤", "g"),
               Column("file_bytes", ".dcf bytes", ",d"), Column("ratio", "ratio", _ratio),
               Column("largest_error", "largest error", ".4f"), Column("bits_per_weight", "bits/weight", ".2f"),
               Column("shared", "shared"), Column("pruned", "pruned + shared"), Column("raw", "raw")]
    what = "--preset safe --max-error" if result.search == "bits" else "--max-error"
    if result.search == "bits":
        notes_extra = [f"codebook bits only, no pruning (the safe preset is the budget {SAFE_MAX_ERROR:g})."]
    else:
        notes_extra = []
    notes = [f"{len(result.searched)} of {len(result.names)} tensors searched (the others stay raw, lossless); "
             f"bits/weight over the searched ones, codebooks and indices included.",
             f"each row is the file `dcpack {what} E` writes, to the byte; one search gave them all "
             f"({result.seconds:.1f} s)."] + notes_extra
    return Table(f"Error budgets: {result.source or 'tensors'} ({result.original_bytes:,} bytes)", columns, rows,
                 notes, extra={"search": result.search})


def allocation_table(result: Sweep) -> Table:
    """One row per searched tensor, one column per budget: the setting picked (``50% 5b``, ``6b``, ``raw``)."""
    keys = [f"b{i}" for i in range(len(result.budgets))]
    columns = [Column("name", "tensor"), Column("shape", "shape", lambda s: "×".join(map(str, s)))]
    columns += [Column(k, f"≤ {b:g}") for k, b in zip(keys, result.budgets)]
    rows = []
    for name in result.searched:
        row = {"name": name, "shape": result.shapes[name]}
        row.update({k: _setting(o) for k, o in zip(keys, result.outcomes[name])})
        rows.append(row)
    return Table("Setting per tensor and budget (sparsity, codebook bits)", columns, rows)


def plot_sweep(result: Sweep, path) -> None:
    """Two panels: file size against budget (log scale), and bits per weight per tensor and budget."""
    from ..plotting import pyplot

    plt = pyplot()
    fig, (size_ax, heat_ax) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.16 * len(result.searched) + 1.5)),
                                           gridspec_kw={"width_ratios": [1, 1.3]})
    positive = [(b, f) for b, f in zip(result.budgets, result.file_bytes) if b > 0]
    if positive:
        xs, ys = zip(*positive)
        size_ax.plot(xs, [y / 1e6 for y in ys], "o-")
        for x, y in positive:
            size_ax.annotate(_ratio(result.original_bytes / y), (x, y / 1e6), textcoords="offset points",
                             xytext=(4, 4), fontsize=8)
        size_ax.set_xscale("log")
        size_ax.set_xticks(xs, [f"{x:g}" for x in xs])
        size_ax.minorticks_off()
    if 0.0 in result.budgets:
        size_ax.axhline(result.file_bytes[result.budgets.index(0.0)] / 1e6, color="gray", ls="--", lw=0.8,
                        label="budget 0 (lossless)")
        size_ax.legend()
    size_ax.set_xlabel("error budget  ‖W − Ŵ‖ / ‖W‖  per tensor")
    size_ax.set_ylabel(".dcf size (MB)")
    size_ax.set_title(f"{result.source or 'tensors'}: file size against budget")
    size_ax.grid(True, which="both", lw=0.3)
    grid = np.array([[8 * result.outcomes[n][i].bytes / max(1, int(np.prod(result.shapes[n], dtype=np.int64)))
                      for i in range(len(result.budgets))] for n in result.searched]).reshape(len(result.searched), -1)
    # codebooks stop at 12 bits: raw tensors (~26 bits) saturate, so that the codebooks' shades differ
    image = heat_ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=min(12.5, max(1.0, float(grid.max()))))
    heat_ax.set_xticks(range(len(result.budgets)), [f"{b:g}" for b in result.budgets], fontsize=8)
    heat_ax.set_yticks(range(len(result.searched)), result.searched, fontsize=6)
    if grid.size <= 600:  # small enough to write each cell's setting in it
        for row, name in enumerate(result.searched):
            for col, outcome in enumerate(result.outcomes[name]):
                heat_ax.text(col, row, _setting(outcome), ha="center", va="center", fontsize=5, color="white")
    heat_ax.set_xlabel("error budget")
    heat_ax.set_title("stored bits per weight, per tensor (text: pruned share, codebook bits)")
    fig.colorbar(image, ax=heat_ax, label="bits per weight")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
