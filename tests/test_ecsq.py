"""Uniform-grid (ECSQ) quantization and the budget search's grid candidate, on real MiniLM tensors.

The default suite's monotonicity check with the grid candidate is test_pack_budget's (5 budgets, real
files); the slow ones here sweep 13 budgets over three matrices."""
import math

import numpy as np
import pytest
from naive_ecsq import quantize as naive_quantize
from pack_fixtures import minilm_checkpoint

from dcformat.compress import relative_error
from dcformat.compress.ecsq import gaussian_rate, grid_stats, uniform_quantize
from dcformat.pack import load_checkpoint
from dcformat.pack.budget import STEPS_PER_OCTAVE, TensorSearch, choose, grid_rung, sweep, _grid_error
from dcformat.pack.packer import compress_tensor
from dcformat.pack.recipe import Policy, RecipeError
from dcformat.tensors import ZERO_INDEX

NAMES = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.0.output.dense.weight"]


@pytest.fixture(scope="module")
def minilm():
    tensors, _ = load_checkpoint(minilm_checkpoint())
    return tensors


def test_uniform_quantize_matches_the_naive_version_and_keeps_zero_exact():
    rng = np.random.default_rng(3)
    w = np.concatenate([rng.laplace(0, 0.05, 4000), [0.0, -0.0, 1e-9]]).astype(np.float32).reshape(-1, 1)
    for step in (0.002, 0.01, 0.05, 0.3):
        stored = uniform_quantize(w, step)
        np.testing.assert_array_equal(stored.decode().astype(np.float64), naive_quantize(w, step))
        assert np.all(stored.indices[np.abs(w) < step / 2] == ZERO_INDEX)
        assert np.all(np.diff(stored.codebook) > 0)  # distinct sorted entries
        # each stored value is its cell's mean: any other value in the cell would add error
        assert np.abs(stored.decode() - w).max() < step


def test_grid_stats_error_and_counts_are_those_of_the_built_tensor(minilm):
    w = minilm[NAMES[0]]
    search = TensorSearch(w)
    for step in (0.001, 0.01, 0.04):
        stats = grid_stats(search.u, search.counts, step)
        stored = uniform_quantize(w, step)
        assert math.sqrt(stats.err2 / search.norm2) == pytest.approx(relative_error(w, stored), rel=1e-7)
        assert stats.k == stored.codebook.size
        hist = np.bincount(stored.indices.reshape(-1) + 1, minlength=stats.k + 1)
        np.testing.assert_array_equal(np.append(hist[1:], hist[0]), stats.symbol_counts())


def test_search_build_equals_compress_tensor_for_uniform_policies(minilm):
    w = minilm[NAMES[0]]
    search = TensorSearch(w)
    for step in (2.0 ** (-500 / STEPS_PER_OCTAVE), 0.02):
        policy = Policy.from_dict({"step": step})
        built, (stored, _) = search.build(policy), compress_tensor(w, policy)
        np.testing.assert_array_equal(built.codebook, stored.codebook)
        np.testing.assert_array_equal(built.indices, stored.indices)


def test_grid_rung_is_the_coarsest_rung_within_the_budget(minilm):
    search = TensorSearch(minilm[NAMES[1]])
    for budget in (0.005, 0.02, 0.1):
        j = grid_rung(search, budget)
        assert _grid_error(search, j)[0] <= budget < _grid_error(search, j + 1)[0]
    assert grid_rung(search, 0.0) is None


@pytest.mark.slow
def test_the_search_lands_on_the_budget_and_beats_power_of_two_codebooks(minilm):
    for name in NAMES:
        w = minilm[name]
        for budget in (0.01, 0.05, 0.1):
            choice = choose(w, budget)
            assert choice.error == relative_error(w, choice.stored) <= budget
            assert choice.error > 0.97 * budget  # one rung below the budget at most (~1% in error)
            pow2 = min(choose(w, budget, search="bits").bytes, choose(w, budget).bytes)
            assert choice.bytes <= pow2


@pytest.mark.slow
def test_looser_budgets_never_give_more_bytes_on_real_tensors(minilm):
    budgets = [0.0, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3]
    for name in NAMES + ["encoder.layer.5.attention.self.value.weight"]:
        outcomes = sweep(minilm[name], budgets)
        sizes = [o.bytes for o in outcomes]
        assert sizes == sorted(sizes, reverse=True), (name, sizes)
        assert all(o.error <= b for o, b in zip(outcomes, budgets))


def test_uniform_policy_is_checked():
    with pytest.raises(RecipeError, match="step"):
        Policy.from_dict({"share": "uniform"})
    with pytest.raises(RecipeError, match="step"):
        Policy.from_dict({"step": -1.0})
    with pytest.raises(RecipeError, match="not bits or k"):
        Policy.from_dict({"share": "uniform", "step": 0.1, "bits": 4})
    with pytest.raises(RecipeError, match="step needs"):
        Policy.from_dict({"bits": 4, "step": 0.1})
    assert Policy.from_dict({"step": 0.5}).describe() == "uniform step 0.5"
    assert Policy.from_dict({"step": 0.5, "codebook_dtype": "float16"}).describe() == "uniform step 0.5 · float16 codebook"
    with pytest.raises(ValueError, match="step"):
        uniform_quantize(np.ones(3, np.float32), 0.0)


def test_gaussian_rate():
    assert gaussian_rate(0.5) == pytest.approx(1.0)
    assert gaussian_rate(0.01) == pytest.approx(math.log2(100))
    assert gaussian_rate(2.0) == 0.0
