"""``dcpack --max-error E`` on the real MiniLM against plain ECSQ at the same budget (issue 14): at
E in {0.01, 0.02, 0.05, 0.1} the searched tensors take no more bytes than the uniform grid points
the benchmark's ECSQ row stores (``tools/bench_fidelity.py``), every tensor stays within E, and a
looser budget never costs more. Slow: one search of each of the 39 matrices (a pack's worth)."""
import os
import sys

import numpy as np
import pytest
from pack_fixtures import minilm_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGETS = (0.01, 0.02, 0.05, 0.1)


@pytest.mark.slow
def test_max_error_is_no_larger_than_ecsq_at_the_same_budget():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        from bench_fidelity import _encoded_bytes, ecsq_midpoint
    finally:
        sys.path.remove(os.path.join(ROOT, "tools"))
    from dcformat.pack import budget_recipe, load_checkpoint
    from dcformat.pack.budget import sweep

    tensors, _ = load_checkpoint(minilm_checkpoint())
    recipe = budget_recipe(0.01)
    names = [n for n, a in tensors.items() if recipe.rule_for(n, a) is not None]
    assert len(names) == 39
    ours = np.zeros(len(BUDGETS), np.int64)
    ecsq = np.zeros(len(BUDGETS), np.int64)
    for name in names:
        outcomes = sweep(tensors[name], BUDGETS)
        sizes = [o.bytes for o in outcomes]
        assert sizes == sorted(sizes, reverse=True), (name, sizes)  # looser: never larger
        for i, (budget, outcome) in enumerate(zip(BUDGETS, outcomes)):
            assert outcome.error <= budget, (name, budget, outcome)
            ours[i] += outcome.bytes
            ecsq[i] += _encoded_bytes(ecsq_midpoint(tensors[name], budget))
    print({b: (int(o), int(e), int(o - e)) for b, o, e in zip(BUDGETS, ours, ecsq)})
    assert (ours <= ecsq).all(), {b: int(o - e) for b, o, e in zip(BUDGETS, ours, ecsq)}
