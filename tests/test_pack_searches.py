"""One search for many budgets: a kept search (budget.BudgetSearch, budget.Searches) picks and
stores what a fresh search does, so pack(..., searches=) writes the same files, budget_sweep(...,
searches=) gives the same sweep, and nothing is searched twice; stage_table(..., background=)
fills in the same dense baselines later."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pack_fixtures import bits, minilm_checkpoint, small_model

from dcformat.pack import Recipe, budget, load_checkpoint, pack, packer, preset_recipe, stage_table
from dcformat.pack.budget import BudgetSearch, Searches, choose
from dcformat.pack.recipe import Policy, budget_recipe
from dcformat.pack.sweep import budget_sweep

VALUE = "encoder.layer.1.attention.self.value.weight"


@pytest.fixture(scope="module")
def tensors():
    source, _ = load_checkpoint(minilm_checkpoint())
    names = [VALUE, "encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.attention.self.value.bias"]
    out = {name: source[name] for name in names}
    # the first rows of the token embedding table: the presets' looser rule for embeddings applies
    out["embeddings.word_embeddings.weight"] = source["embeddings.word_embeddings.weight"][:2000]
    return out


def test_a_kept_search_chooses_what_a_fresh_one_chooses(tensors):
    w = tensors[VALUE]
    kept = BudgetSearch(w)
    asked = [("sparsity+bits", 0.1), ("bits", 0.015), ("sparsity+bits", 0.0), ("bits", 0.05), ("bits", 0.003),
             ("sparsity+bits", 0.02), ("sparsity+bits", 0.1)]
    for search, limit in asked:  # both searches, budgets in any order, some twice
        fresh, again = choose(w, limit, search=search), kept.choice(w, limit, search)
        assert (again.policy, again.error, again.bytes) == (fresh.policy, fresh.error, fresh.bytes), (search, limit)
        assert (again.candidates, again.frontier) == (fresh.candidates, fresh.frontier)
        assert again.encoded == fresh.encoded
        if fresh.policy.lossless:
            assert again.stored is w and fresh.stored is w
        else:
            assert bits(again.stored.decode()) == bits(fresh.stored.decode())
        assert kept.outcome(limit, search) == budget.Outcome(fresh.policy, fresh.error, fresh.bytes)
    assert len(kept.candidates("bits")) < len(kept.candidates("sparsity+bits")) == len(
        budget.TensorSearch(w).candidates())


def test_the_presets_from_the_sweeps_searches_are_the_files_pack_writes(tmp_path, tensors, monkeypatch):
    kept = Searches()
    budgets = [0.0, 0.01, 0.03, 0.05]
    result = budget_sweep(tensors, budgets, source_name="m.safetensors", searches=kept)
    assert result.outcomes == budget_sweep(tensors, budgets, source_name="m.safetensors").outcomes
    assert sorted(result.searched) == sorted(n for n in tensors if n in kept) and len(kept) == 3

    searched = []

    class Counting(budget.TensorSearch):
        def __init__(self, array, search="sparsity+bits"):
            searched.append(array.shape)
            super().__init__(array, search)

    monkeypatch.setattr(budget, "TensorSearch", Counting)
    recipes = {"indistinguishable": preset_recipe("indistinguishable"), "safe": preset_recipe("safe"),
               "budget 0.05": budget_recipe(0.05), "budget 0.02": budget_recipe(0.02)}  # 0.02: not swept
    for label, recipe in recipes.items():
        fresh = pack(tensors, tmp_path / "fresh.dcf", recipe, source_name="m.safetensors")
        assert len(searched) == 3
        searched.clear()
        shared = pack(tensors, tmp_path / "shared.dcf", recipe, source_name="m.safetensors", searches=kept)
        assert searched == []  # every tensor's search came from the sweep
        assert (tmp_path / "shared.dcf").read_bytes() == (tmp_path / "fresh.dcf").read_bytes(), label
        assert [r.to_dict() for r in shared.tensors] == [r.to_dict() for r in fresh.tensors]
    sweep_bytes = result.file_bytes[budgets.index(0.05)]
    assert pack(tensors, tmp_path / "b.dcf", budget_recipe(0.05), searches=kept,
                source_name="m.safetensors").file_bytes == sweep_bytes


def test_the_stages_built_from_kept_searches_are_the_files_pack_writes(tmp_path, tensors, monkeypatch):
    """U+Q's and P+Q's policies are candidates of the search ({"bits": 5}, {"sparsity": 0.9, "bits": 5}):
    their tensors come from its codebooks, and the files are those packed without it."""
    kept = Searches()
    budget_sweep(tensors, [0.05], searches=kept)
    recipe = preset_recipe("aggressive")
    fresh, fresh_details = stage_table(tensors, recipe, tmp_path / "fresh", baselines=())
    clustered = []
    share_weights = packer.share_weights
    monkeypatch.setattr(packer, "share_weights", lambda *a, **k: clustered.append(a[0].shape) or share_weights(*a, **k))
    again, details = stage_table(tensors, recipe, tmp_path / "kept", baselines=(), searches=kept)
    assert clustered == []  # no k-means of its own
    for stage in ("U", "U+Q", "P", "P+Q"):
        assert open(details["stages"][stage]["dcf"], "rb").read() == open(fresh_details["stages"][stage]["dcf"],
                                                                           "rb").read(), stage
    drop = lambda rows: [{k: v for k, v in r.items() if k != "pack_seconds"} for r in rows]
    assert drop(again.rows) == drop(fresh.rows)
    other = {name: array * 2 for name, array in tensors.items()}  # other values: no search of theirs is kept
    pack(other, tmp_path / "other.dcf", recipe, searches=kept)
    assert len(clustered) == 3


def test_a_tensor_with_other_values_is_searched_again(tensors):
    kept = Searches()
    w = tensors[VALUE]
    first = kept.get(VALUE, w)
    assert kept.get(VALUE, w.copy()) is first  # equal values, another array: the same search
    changed = w.copy()
    changed[0, 0] += 1
    other = kept.get(VALUE, changed)
    assert other is not first and other.array is changed and kept.get(VALUE, changed) is other
    kept.clear()
    assert len(kept) == 0 and VALUE not in kept


def test_stage_table_in_the_background_fills_in_the_same_baselines_later(tmp_path):
    model = small_model()
    recipe = Recipe.from_flags(sparsity=0.9, bits=5)
    plan = {"gzip": ("P",), "zstd": ("P+Q",)}
    table, details = stage_table(model, recipe, tmp_path / "own", baselines=plan)
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as background:
        background.submit(release.wait)  # the baselines wait behind it: the call must not
        later, later_details = stage_table(model, recipe, tmp_path / "bg", baselines=plan, background=background)
        row = next(r for r in later.rows if r["stage"] == "P+Q")
        assert "zstd_bytes" not in row and "zstd" not in later_details["stages"]["P+Q"]
        release.set()
        later_details["finish"]()
    assert "finish" not in details
    drop = lambda rows: [{k: v for k, v in r.items() if k != "pack_seconds"} for r in rows]
    assert drop(later.rows) == drop(table.rows) and row["zstd_bytes"] > 0 and "gzip_bytes" in later.rows[2]
    assert [c.title for c in later.columns] == [c.title for c in table.columns] and later.notes == table.notes
    for stage, kind in (("P", "gzip"), ("P+Q", "zstd")):
        assert open(later_details["stages"][stage][kind], "rb").read() == open(details["stages"][stage][kind], "rb").read()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_a_kept_searchs_tensor_for_a_fixed_policy_is_compress_tensors(dtype):
    import ml_dtypes
    import numpy as np

    w = np.random.default_rng(1).normal(0, 0.1, (96, 130)).astype(getattr(ml_dtypes, dtype, None) or dtype)
    kept = BudgetSearch(w)
    kept.candidates()
    for spec in ({"bits": 5}, {"bits": 11}, {"sparsity": 0.9, "bits": 5}, {"sparsity": 0.5, "bits": 3}):
        policy = Policy.from_dict(spec)
        built, (stored, _) = kept.stored(policy), packer.compress_tensor(w, policy)
        assert built.codebook.dtype == stored.codebook.dtype and bits(built.codebook) == bits(stored.codebook), spec
        assert np.array_equal(built.indices, stored.indices) and bits(built.decode()) == bits(stored.decode()), spec
    assert kept.stored(Policy.from_dict({"sparsity": 0.9, "bits": 5, "init": "random"})) is None  # not a candidate
    assert kept.stored(Policy.from_dict({"sparsity": 0.6, "bits": 5})) is None
