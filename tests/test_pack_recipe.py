"""Recipes: rules, defaults, validation with messages that name the rule, JSON round trips, stages."""
import json

import numpy as np
import pytest
from pack_fixtures import small_model

from dcformat.pack import Policy, Recipe, RecipeError, pack


def policies(recipe, model=None):
    model = model or small_model()
    return {name: recipe.policy_for(name, array) for name, array in model.items()}


def test_defaults_keep_small_rank1_and_integer_tensors_raw():
    recipe = Recipe.from_dict({"rules": [{"sparsity": 0.9, "bits": 5}]})
    got = policies(recipe)
    lossy = {name for name, p in got.items() if not p.lossless}
    # rank >= 2 and >= 4096 elements: emb (6400), conv (4608), fc1 (8192), half (6144)
    assert lossy == {"emb.weight", "conv.weight", "fc1.weight", "half.weight"}
    assert got["fc1.weight"].prune == "magnitude" and got["fc1.weight"].share == "kmeans"


def test_first_matching_rule_wins_and_patterns():
    recipe = Recipe.from_dict({"rules": [
        {"match": "emb.*", "store": "raw"},
        {"match": ["fc*", "conv.*"], "exclude": "conv.bias", "rank": "any", "min_size": 0, "quality": 1.0},
        {"rank": 1, "min_size": 0, "store": "float16"},
    ]})
    got = policies(recipe)
    assert got["emb.weight"].lossless
    assert got["fc1.weight"].prune == "threshold" and got["fc1.bias"].prune == "threshold"
    assert got["conv.bias"].store == "float16" and got["norm.weight"].store == "float16"
    assert got["steps"].lossless and got["flags"].lossless  # never lossy: not floating point


@pytest.mark.parametrize("rule,match", [
    ({"sparsty": 0.9}, "unknown key 'sparsty'"),
    ({"sparsity": 1.0}, "sparsity must be a number in"),
    ({"sparsity": "0.9"}, "sparsity must be a number in"),
    ({"prune": "magnitude"}, "needs a sparsity"),
    ({"prune": "threshold"}, "needs a quality"),
    ({"quality": -1}, "quality must be"),
    ({"sparsity": 0.5, "quality": 1}, "not both"),
    ({"prune": "magnitude", "sparsity": 0.5, "quality": None, "k": 4, "share": "kmeans", "bits": None, "seed": -1}, "seed must be"),
    ({"prune": "none", "quality": 1}, "quality is only used"),
    ({"bits": 0}, "bits must be"),
    ({"bits": 3, "k": 9}, "does not fit"),
    ({"share": "kmeans"}, "needs bits or k"),
    ({"share": "pow2", "bits": 1}, "pow2' needs bits 2..16"),
    ({"share": "pow2", "bits": 4, "k": 8}, "takes bits, not k"),
    ({"init": "kmeans++", "bits": 4}, "init must be"),
    ({"index_bits": 17}, "index_bits must be"),
    ({"rank": 9}, "rank must be"),
    ({"match": []}, "match must be"),
    ({"min_size": -1}, "min_size must be"),
    ({"store": "int8"}, "store must be"),
    ({"layout": "coo"}, "layout must be"),
    ({"share": "none", "bits": 4}, "bits and k need share"),
    ([1, 2], "a rule must be an object"),
])
def test_invalid_rules_name_the_rule(rule, match):
    with pytest.raises(RecipeError, match=match) as info:
        Recipe.from_dict({"rules": [{"store": "raw"}, rule]})
    assert str(info.value).startswith("rule 2")


def test_invalid_recipes():
    with pytest.raises(RecipeError, match="unknown key 'rule'"):
        Recipe.from_dict({"rule": []})
    with pytest.raises(RecipeError, match="rules must be a list"):
        Recipe.from_dict({"rules": {}})
    with pytest.raises(RecipeError, match="invalid JSON"):
        Recipe.from_json("{rules: []}")


def test_json_round_trip_and_file(tmp_path):
    spec = {"only": ["fc*"], "rules": [
        {"name": "fc", "rank": [2], "min_size": 0, "sparsity": 0.8, "bits": 4, "init": "density", "index_bits": "paper"},
        {"rank": "any", "min_size": 0, "store": "float16", "codebook_dtype": "float16"},
    ]}
    recipe = Recipe.from_dict(spec)
    again = Recipe.from_json(recipe.to_json())
    assert again == recipe
    (tmp_path / "r.json").write_text(json.dumps(spec))
    assert Recipe.from_file(tmp_path / "r.json") == recipe
    with pytest.raises(RecipeError, match="No such file"):
        Recipe.from_file(tmp_path / "missing.json")


def test_recipe_is_read_back_from_a_dcf_file(tmp_path):
    recipe = Recipe.from_flags(sparsity=0.5, bits=3)
    pack(small_model(), tmp_path / "m.dcf", recipe)
    assert Recipe.from_file(tmp_path / "m.dcf") == recipe
    pack(small_model(), tmp_path / "plain.dcf")
    assert Recipe.from_file(tmp_path / "plain.dcf").lossless


def test_from_flags_fc_and_conv():
    recipe = Recipe.from_flags(sparsity=0.9, conv_sparsity=0.65, bits=5, conv_bits=8, keep=["emb.*"], float16=True)
    got = policies(recipe)
    assert got["emb.weight"].lossless
    assert (got["fc1.weight"].sparsity, got["fc1.weight"].bits) == (0.9, 5)
    assert (got["conv.weight"].sparsity, got["conv.weight"].bits) == (0.65, 8)
    assert got["norm.weight"].store == "float16" and got["small.weight"].store == "float16"
    assert Recipe.from_flags().lossless and Recipe.from_flags().rules == ()
    with pytest.raises(RecipeError, match="not both"):
        Recipe.from_flags(sparsity=0.5, quality=1.0)
    with pytest.raises(RecipeError, match="need --sparsity"):
        Recipe.from_flags(global_=True)
    with pytest.raises(RecipeError, match="needs --bits"):
        Recipe.from_flags(pow2=True, sparsity=0.5)


def test_stages():
    recipe = Recipe.from_flags(sparsity=0.9, bits=5, float16=True, only=["fc*"])
    stages = recipe.stages()
    assert list(stages) == ["U", "U+Q", "P", "P+Q"]
    assert stages["U"].lossless and stages["U"].only == ("fc*",)
    uq = policies(stages["U+Q"])["fc1.weight"]
    assert uq.prune == "none" and uq.bits == 5
    p = policies(stages["P"])
    assert p["fc1.weight"].prune == "magnitude" and p["fc1.weight"].share == "none" and p["norm.weight"].lossless
    assert stages["P+Q"] is recipe


def test_policy_helpers():
    p = Policy.from_dict({"sparsity": 0.9, "bits": 5, "index_bits": "paper"})
    assert p.centroids(pruned=True) == 31 and p.centroids(pruned=False) == 32
    assert p.resolved_index_bits(2) == 5 and p.resolved_index_bits(4) == 8 and p.resolved_index_bits(1) == "auto"
    assert p.describe() == "prune 90% · k-means 5 bits · index paper"
    assert Policy.from_dict({"k": 7}).centroids(pruned=True) == 7
    assert Policy().describe() == "raw" and Policy().to_dict() == {}


def test_only_selects_tensors():
    recipe = Recipe.from_dict({"only": ["fc1.*", "steps"]})
    assert [n for n in small_model() if recipe.selects(n)] == ["fc1.weight", "fc1.bias", "steps"]
    assert not recipe.rule_for("fc1.bias", np.zeros(3, np.float32))


def test_describe_says_each_rule_in_a_few_words():
    """dcpack's header line: a custom recipe in words, not its JSON (which the metadata keeps)."""
    from dcformat.pack import Recipe, preset_recipe

    flags = Recipe.from_flags(sparsity=0.9, bits=5, keep=["embeddings.*"])
    assert flags.describe() == ("keep embeddings.*; conv: prune 90% · k-means 5 bits; "
                                "fc: prune 90% · k-means 5 bits")
    assert preset_recipe("lossless").describe() == "lossless"
    many = Recipe.from_dict({"rules": [{"match": f"*.{m}.*", "bits": b}
                                       for m, b in (("query", 4), ("key", 5), ("value", 6), ("dense", 7))]})
    assert many.describe() == "*.query.*: k-means 4 bits; *.key.*: k-means 5 bits; *.value.*: k-means 6 bits; 1 more rule"
    assert "{" not in flags.describe() and len(flags.describe()) < len(flags.to_json()) / 2
