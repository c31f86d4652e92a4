"""dcpack --preset {lossless,safe,aggressive}: recipes, CLI, dcinfo, and the safe preset on MiniLM."""
import json
import os

import numpy as np

import pytest
from pack_fixtures import bits, minilm_checkpoint, small_model

import dcformat
from dcformat.cli import dcinfo, dcpack
from dcformat.pack import Recipe, RecipeError, load_checkpoint, pack, save_checkpoint
from dcformat.pack.recipe import (EMBEDDING_PATTERNS, INDISTINGUISHABLE_EMBEDDING_ERROR, INDISTINGUISHABLE_MAX_ERROR,
                                  SAFE_EMBEDDING_ERROR, SAFE_MAX_ERROR, budget_recipe, preset_recipe)


@pytest.fixture()
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path)
    return path


def test_preset_recipes():
    assert preset_recipe("lossless").lossless and preset_recipe("lossless").to_dict() == {"preset": "lossless",
                                                                                         "rules": []}
    safe = preset_recipe("safe")
    assert safe.to_dict() == {"preset": "safe", "rules": [
        {"name": "embeddings", "match": list(EMBEDDING_PATTERNS), "max_error": SAFE_EMBEDDING_ERROR, "search": "bits"},
        {"name": "safe", "max_error": SAFE_MAX_ERROR, "search": "bits"}]}
    assert Recipe.from_json(safe.to_json()) == safe
    one = preset_recipe("safe", max_error=0.01)  # one budget for every tensor
    assert [r.policy.max_error for r in one.rules] == [0.01]
    same = preset_recipe("indistinguishable")
    assert [r.policy.max_error for r in same.rules] == [INDISTINGUISHABLE_EMBEDDING_ERROR, INDISTINGUISHABLE_MAX_ERROR]
    assert same.rule_for("embeddings.word_embeddings.weight", np.zeros((64, 64), np.float32)).name == "embeddings"
    assert same.rule_for("encoder.layer.0.output.dense.weight", np.zeros((64, 64), np.float32)).name == "indistinguishable"
    assert same.rule_for("embeddings.word_embeddings.weight", np.zeros((4, 4), np.float32)) is None  # < min_size
    aggressive = preset_recipe("aggressive")
    paper = Recipe.from_flags(sparsity=0.9, conv_sparsity=0.65, bits=5, conv_bits=8)
    assert aggressive.rules == paper.rules and aggressive.preset == "aggressive"
    with pytest.raises(RecipeError, match="takes no error budget"):
        preset_recipe("aggressive", max_error=0.1)
    with pytest.raises(RecipeError, match="preset must be"):
        Recipe.from_dict({"preset": "fast", "rules": []})
    assert budget_recipe(0.1, keep=["emb*"]).rules[0].name == "keep"


def test_cli_safe_preset_records_preset_and_budget(tmp_path, checkpoint, capsys):
    out = tmp_path / "m.dcf"
    assert dcpack.main([str(checkpoint), "-o", str(out), "--preset", "safe", "--table", "md"]) == 0
    captured = capsys.readouterr()
    assert "preset safe" in captured.err and "| setting |" in captured.out
    assert "k-means" in captured.out or "uniform step" in captured.out
    meta = json.loads(dcformat.open(out).metadata()["dcformat.recipe"])
    assert meta["preset"] == "safe" and meta["rules"][-1]["max_error"] == SAFE_MAX_ERROR
    assert dcinfo.main([str(out)]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # the line wraps at 80 columns
    budgets = f"{SAFE_EMBEDDING_ERROR:g} (embeddings), {SAFE_MAX_ERROR:g} (the rest)"
    assert f"packed with: preset safe, relative error per tensor <= {budgets}" in shown
    loaded, original = dcformat.load_file(out), small_model()
    assert bits(loaded["fc1.bias"]) == bits(original["fc1.bias"])  # rank 1 stays raw
    from dcformat.compress import relative_error

    for name in ("emb.weight", "fc1.weight", "conv.weight"):
        assert 0 < relative_error(original[name], loaded[name]) <= SAFE_MAX_ERROR


def test_cli_max_error_and_aggressive_warning(tmp_path, checkpoint, capsys):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "b.dcf"), "--max-error", "0.2", "-q"]) == 0
    assert dcinfo.main([str(tmp_path / "b.dcf")]) == 0
    assert "packed with: relative error <= 0.2 per tensor" in capsys.readouterr().out
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "a.dcf"), "--preset", "aggressive"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "dcformat.torch" in err and "preset aggressive" in err


@pytest.mark.parametrize("args, message", [
    (["--preset", "safe", "--bits", "5"], "drop --bits"),
    (["--max-error", "0.1", "--sparsity", "0.5"], "drop --sparsity"),
    (["--preset", "aggressive", "--max-error", "0.1"], "takes no error budget"),
    (["--preset", "lossless", "--recipe", "r.json"], "drop --recipe"),
])
def test_cli_preset_conflicts_are_one_line_errors(tmp_path, checkpoint, capsys, args, message):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "m.dcf"), *args]) == 2  # usage errors
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_help_documents_the_presets(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at hyphens on narrow terminals
    with pytest.raises(SystemExit):
        dcpack.main(["--help"])
    text = capsys.readouterr().out
    for word in ("lossless", "safe", "aggressive", "--max-error", "retrain", "ZipNN"):
        assert word in text


@pytest.mark.slow
def test_full_minilm_default_is_bit_exact(tmp_path):
    path = minilm_checkpoint()
    assert dcpack.main([path, "-o", str(tmp_path / "m.dcf"), "-q"]) == 0
    source, _ = load_checkpoint(path)
    loaded = dcformat.load_file(tmp_path / "m.dcf")
    assert sorted(loaded) == sorted(source) and all(bits(loaded[k]) == bits(v) for k, v in source.items())


PREVIOUS_SAFE_BYTES = 16_032_956
"""The safe preset's MiniLM file before the grid candidate (one budget 0.03, power-of-two codebooks)."""
PREVIOUS_SAFE_COSINE = 0.9975


def _minilm_preset(tmp_path, name):
    path = minilm_checkpoint()
    out = tmp_path / f"{name}.dcf"
    result = pack(path, out, preset_recipe(name))
    from dcformat.demo import make_evaluator

    source, _ = load_checkpoint(path)
    evaluate = make_evaluator(os.path.dirname(path), source)
    if evaluate is None:
        pytest.skip("the tokenizers package is missing")
    return result, evaluate(dcformat.load_file(out)), evaluate(source)


@pytest.mark.slow
def test_full_minilm_safe_preset_keeps_its_outputs(tmp_path):
    """How safe was chosen (recipe.SAFE_EMBEDDING_ERROR): no larger and no less faithful than before."""
    result, quality, original = _minilm_preset(tmp_path, "safe")
    assert result.file_bytes <= PREVIOUS_SAFE_BYTES and result.ratio >= 5
    for t in result.tensors:
        limit = SAFE_EMBEDDING_ERROR if "word_embeddings" in t.name else SAFE_MAX_ERROR
        assert t.relative_error <= limit, t.name
    assert quality["cosine"] >= PREVIOUS_SAFE_COSINE and quality["paraphrase@1"] == original["paraphrase@1"]


@pytest.mark.slow
def test_full_minilm_indistinguishable_preset(tmp_path):
    """The preset's promise on MiniLM: embedding cosine >= 0.999, at least 5x smaller than float32."""
    result, quality, original = _minilm_preset(tmp_path, "indistinguishable")
    assert result.ratio >= 5
    assert quality["cosine"] >= 0.999 and quality["paraphrase@1"] == original["paraphrase@1"]
