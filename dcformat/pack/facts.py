"""Every number the documentation states about packing, in one place.

``dcpack --help``, the docstrings of :mod:`dcformat.pack.recipe` and the README take these figures
from here, and ``tests/test_cli_facts.py`` checks that they do (so the help, the docstrings and the
README cannot drift apart). The measured figures come from all-MiniLM-L6-v2 (float32, 22.7M
parameters; README, "Presets and error budgets"); the search ranges are those
:mod:`dcformat.pack.budget` uses.
"""
from __future__ import annotations

MEASURED_ON = "all-MiniLM-L6-v2 (float32, 22.7M parameters)"

LOSSLESS_RATIO = 1.22
"""The lossless preset on MiniLM: 74.4 MB, times smaller than float32."""
SAFE_RATIO = 5.86
"""The safe preset on MiniLM: 15.5 MB (15,501,498 B, dcpack --preset safe, 2026-12-02, with the float16-codebook
grid; before the grid candidate 16,032,956 B, 5.67×)."""
SAFE_COSINE = 0.9987
"""Sentence-embedding cosine to the original model after the safe preset (24 sentences, dcformat.demo's
evaluator: 0.99874; was 0.9975 before the grid candidate)."""
INDISTINGUISHABLE_RATIO = 5.23
"""The indistinguishable preset on MiniLM: 17.4 MB (17,379,188 B, dcpack, 2026-12-02; int8 per channel: 3.96×)."""
INDISTINGUISHABLE_COSINE = 0.9995
"""Sentence-embedding cosine after the indistinguishable preset (24 sentences; the preset's promise: ≥ 0.999)."""
AGGRESSIVE_RATIO = 34.9
"""The aggressive preset (Deep Compression's settings, no retraining) on MiniLM: 2.6 MB."""
AGGRESSIVE_ERROR = 0.7
"""Relative error of a fully connected matrix after the aggressive preset, about."""

SAFE_MAX_ERROR = 0.015
"""The safe preset's per-tensor budget of relative error (``recipe.SAFE_MAX_ERROR``)."""
SAFE_EMBEDDING_ERROR = 0.05
"""The safe preset's budget for token embedding tables (``recipe.EMBEDDING_PATTERNS``)."""
INDISTINGUISHABLE_MAX_ERROR = 0.01
"""The indistinguishable preset's per-tensor budget."""
INDISTINGUISHABLE_EMBEDDING_ERROR = 0.03
"""The indistinguishable preset's budget for token embedding tables."""
WARN_ERROR = 0.1
"""dcpack warns when a tensor's relative error ``‖W − Ŵ‖ / ‖W‖`` passes this."""

SEARCH_SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9)
"""Pruning ratios the error-budget search tries (``budget.SPARSITIES``)."""
PRUNED_BITS = tuple(range(2, 9))
"""Codebook bits of pruned candidates (``budget.BITS``)."""
UNPRUNED_BITS = PRUNED_BITS + (9, 10, 11, 12)
"""Codebook bits of unpruned candidates (``budget.UNPRUNED_BITS``); the safe preset searches these."""
GRID_STEPS_PER_OCTAVE = 4096
"""Rungs per doubling of the step on the uniform-grid (ECSQ) candidate's ladder (``budget.STEPS_PER_OCTAVE``)."""


def times(ratio: float, ascii: bool = False) -> str:
    """``5.67×`` (``5.67x`` in ASCII)."""
    return f"{ratio:g}{'x' if ascii else '×'}"


def bit_range(bits, dash: str = "–") -> str:
    """``2–8`` for ``(2, ..., 8)``."""
    return f"{min(bits)}{dash}{max(bits)}"


def percents(ratios) -> str:
    """``25/50/75/90%`` for the non-zero ratios."""
    return "/".join(f"{round(100 * r)}" for r in ratios if r) + "%"
