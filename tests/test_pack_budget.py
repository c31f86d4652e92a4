"""--max-error: per-tensor search over pruning × codebook bits × raw, within a relative-error budget.

The monotonicity test packs real MiniLM tensors and compares the real file sizes.
"""
import numpy as np
import pytest
from pack_fixtures import bits, minilm_checkpoint

import dcformat
from dcformat.compress import relative_error
from dcformat.pack import RecipeError, load_checkpoint, pack
from dcformat.pack.budget import BITS, SPARSITIES, UNPRUNED_BITS, Candidate, TensorSearch, choose, frontier
from dcformat.pack.packer import compress_tensor
from dcformat.pack.recipe import Policy, budget_recipe

SMALL = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.3.attention.output.dense.weight"]


@pytest.fixture(scope="module")
def minilm():
    tensors, _ = load_checkpoint(minilm_checkpoint())
    return tensors


def test_frontier_keeps_only_candidates_not_beaten_by_a_cheaper_one():
    cands = [Candidate(Policy(), 0.0, 100.0), Candidate(Policy.from_dict({"bits": 8}), 0.01, 30.0),
             Candidate(Policy.from_dict({"bits": 7}), 0.02, 35.0), Candidate(Policy.from_dict({"bits": 2}), 0.3, 10.0)]
    front = frontier(cands)
    assert [c.estimate for c in front] == [10.0, 30.0, 100.0]
    assert [c.error for c in front] == [0.3, 0.01, 0.0]


def test_candidate_errors_are_the_errors_of_their_reconstructions(minilm):
    w = minilm[SMALL[0]]
    search = TensorSearch(w)
    cands = search.candidates()
    assert len(cands) == 1 + len(UNPRUNED_BITS) + (len(SPARSITIES) - 1) * len(BITS)
    for c in cands[1::6]:
        assert relative_error(w, search.build(c.policy)) == pytest.approx(c.error, rel=1e-9, abs=1e-12)


def test_candidates_are_what_compress_tensor_stores_for_their_policy(minilm):
    w = minilm[SMALL[1]]
    search = TensorSearch(w)
    for c in search.candidates()[1::4]:
        built = search.build(c.policy)
        stored, _ = compress_tensor(w, c.policy)
        assert bits(built.codebook) == bits(stored.codebook), c.policy.describe()
        assert np.array_equal(built.indices, stored.indices), c.policy.describe()


def test_the_file_does_not_depend_on_the_number_of_threads(tmp_path, minilm):
    tensors = {name: minilm[name] for name in SMALL} | {"bias": minilm["encoder.layer.0.attention.self.query.bias"]}
    files = []
    for threads in (1, 2, 3):
        pack(tensors, tmp_path / f"t{threads}.dcf", budget_recipe(0.04), threads=threads)
        files.append((tmp_path / f"t{threads}.dcf").read_bytes())
    assert files[0] == files[1] == files[2]


def test_choice_is_within_budget_and_zero_budget_is_bit_exact(minilm):
    w = minilm[SMALL[1]]
    exact = choose(w, 0.0)
    assert exact.stored is w and exact.error == 0.0
    for budget in (0.02, 0.1):
        choice = choose(w, budget)
        assert choice.error <= budget and choice.error == relative_error(w, choice.stored)
        assert choice.bytes < exact.bytes
    tight = choose(w, 0.01)  # below what 8 bits reach: a fine grid (or a wider codebook), not raw storage
    assert tight.policy.share in ("uniform", "kmeans") and tight.policy.bits != 8
    assert tight.error <= 0.01 and tight.bytes < exact.bytes / 2


def test_looser_budget_never_gives_a_larger_file(tmp_path, minilm):
    tensors = {name: minilm[name] for name in SMALL}
    sizes, recipes = [], []
    for budget in (0.0, 0.005, 0.02, 0.1, 0.3):
        out = tmp_path / f"b{budget}.dcf"
        result = pack(tensors, out, budget_recipe(budget))
        assert all(t.relative_error <= budget for t in result.tensors)
        sizes.append(result.file_bytes)
        recipes.append(len(dcformat.open(out).metadata()["dcformat.recipe"]))
    # Streams and index entries never grow; only the budget's own digits in the stored recipe can.
    tensor_bytes = [size - recipe for size, recipe in zip(sizes, recipes)]
    assert tensor_bytes == sorted(tensor_bytes, reverse=True), tensor_bytes
    assert sizes[1:] == sorted(sizes[1:], reverse=True), sizes  # these budgets' digits never get longer
    assert sizes[-1] < sizes[0] / 4
    loaded = dcformat.load_file(tmp_path / "b0.0.dcf")  # a zero budget leaves every tensor raw
    assert all(bits(loaded[name]) == bits(tensors[name]) for name in SMALL)


def test_budget_file_reports_the_chosen_setting_and_reads_back(tmp_path, minilm):
    tensors = {name: minilm[name] for name in SMALL} | {"bias": minilm["encoder.layer.0.attention.self.query.bias"]}
    result = pack(tensors, tmp_path / "m.dcf", budget_recipe(0.05))
    by_name = {t.name: t for t in result.tensors}
    assert by_name["bias"].lossless  # rank 1: no rule matches
    for name in SMALL:
        assert ("k-means" in by_name[name].policy or "uniform step" in by_name[name].policy)
        assert "(error ≤ 0.05)" in by_name[name].policy
    loaded = dcformat.load_file(tmp_path / "m.dcf")
    assert bits(loaded["bias"]) == bits(tensors["bias"])
    assert relative_error(tensors[SMALL[0]], loaded[SMALL[0]]) == pytest.approx(by_name[SMALL[0]].relative_error)


def test_non_float_and_non_finite_tensors_stay_raw():
    ints = np.arange(5000).reshape(50, 100)
    assert choose(ints, 0.5).stored is ints
    w = np.random.default_rng(0).normal(size=(64, 80)).astype(np.float32)
    w[3, 4] = np.nan
    assert choose(w, 0.5).policy.lossless


def test_max_error_policy_is_checked():
    with pytest.raises(RecipeError, match="max_error chooses"):
        Policy.from_dict({"max_error": 0.1, "bits": 5})
    with pytest.raises(RecipeError, match="max_error must be"):
        Policy.from_dict({"max_error": -1})
    with pytest.raises(RecipeError, match="search needs max_error"):
        Policy.from_dict({"search": "bits"})
    assert Policy.from_dict({"max_error": 0.1, "search": "bits"}).to_dict() == {"max_error": 0.1, "search": "bits"}
