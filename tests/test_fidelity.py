"""The fidelity benchmark's ECSQ reference (tools/bench_fidelity.py); the other reference quantizers:
tests/test_baselines.py."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_fidelity as bf  # noqa: E402

from dcformat.compress import relative_error  # noqa: E402


def test_ecsq_midpoint_is_within_budget_and_uses_grid_points():
    rng = np.random.default_rng(1)
    w = rng.laplace(0, 0.02, (128, 96)).astype(np.float32)
    for budget in (0.01, 0.1):
        c = bf.ecsq_midpoint(w, budget)
        assert 0.95 * budget < relative_error(w, c.decode()) <= budget
        steps = np.diff(c.codebook.astype(np.float64))
        assert np.allclose(steps / steps.min(), np.rint(steps / steps.min()), atol=1e-3)  # on one grid
