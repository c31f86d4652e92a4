"""A global size target shared out across tensors (dcformat.pack.allocate) and calibration
sensitivities (dcformat.torch.calibrate)."""
import itertools

import numpy as np
import pytest

from dcformat.pack.allocate import allocate
from dcformat.pack.budget import Outcome
from dcformat.pack.errors import PackError
from dcformat.pack.recipe import Policy
from dcformat.pack.sweep import budget_sweep


class FakeSweep:  # only the fields allocate reads: real sweeps are tested below
    def __init__(self, curves):
        self.searched = list(curves)
        self.outcomes = {n: [Outcome(Policy(), e, b) for b, e in pts] for n, pts in curves.items()}


def brute(curves, target, weights):
    best = None
    names = list(curves)
    for combo in itertools.product(*(range(len(curves[n])) for n in names)):
        b = sum(curves[n][i][0] for n, i in zip(names, combo))
        d = sum(weights[n] * curves[n][i][1] ** 2 for n, i in zip(names, combo))
        if b <= target and (best is None or d < best):
            best = d
    return best


def test_allocation_is_the_exhaustive_optimum_on_small_problems():
    rng = np.random.default_rng(0)
    for trial in range(20):
        curves = {}
        for n in "abc":
            bytes_ = np.sort(rng.integers(10, 400, 5))[::-1]  # not convex: a knapsack, not just slopes
            errors = np.sort(rng.uniform(0.001, 0.3, 5))
            curves[n] = list(zip(bytes_.tolist(), errors.tolist()))
        weights = {n: float(rng.uniform(0.1, 10)) for n in curves}
        smallest = sum(min(b for b, _ in pts) for pts in curves.values())
        target = int(smallest + rng.integers(0, 800))
        a = allocate(FakeSweep(curves), target, weights)
        assert a.bytes <= target
        # targets below UNITS bytes: the dynamic programme is exact
        opt = brute(curves, target, weights)
        assert a.distortion == pytest.approx(opt, rel=1e-12), (trial, a.distortion, opt)


def test_allocation_follows_sensitivity_on_real_tensors():
    rng = np.random.default_rng(1)
    tensors = {f"m{i}.weight": rng.normal(0, 0.05, (96, 96)).astype(np.float32) for i in range(3)}
    s = budget_sweep(tensors, [0.005, 0.01, 0.02, 0.05, 0.1])
    i = s.budgets.index(0.02)
    target = sum(s.outcomes[n][i].bytes for n in s.searched)
    flat = allocate(s, target)
    assert flat.bytes <= target
    skewed = allocate(s, target, {"m0.weight": 100.0, "m1.weight": 1.0, "m2.weight": 0.01})
    errors = {n: s.outcomes[n][skewed.picks[n]].error for n in s.searched}
    assert errors["m0.weight"] < errors["m1.weight"] < errors["m2.weight"]
    with pytest.raises(PackError, match="more than the target"):
        allocate(s, 10)
    with pytest.raises(PackError, match="positive integer"):
        allocate(s, -5)


def test_calibrate_is_the_diagonal_of_jtj_for_a_linear_model():
    torch = pytest.importorskip("torch")
    from dcformat.torch import calibrate

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2, bias=False)
    x = torch.randn(5, 3)
    sens = calibrate(model, [x], probes=4000, seed=1)
    # out = x W^T: d out[b, o] / d W[o, i] = x[b, i], so diag(JᵀJ)[o, i] = Σ_b x[b, i]²
    expected = (x ** 2).sum(0).expand(2, 3).numpy()
    np.testing.assert_allclose(sens["weight"], expected, rtol=0.1)
    with pytest.raises(ValueError, match="no parameter named"):
        calibrate(model, [x], names=["nope"])
    with pytest.raises(ValueError, match="empty"):
        calibrate(model, [])
