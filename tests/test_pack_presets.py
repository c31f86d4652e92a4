"""dcpack --preset {lossless,safe,aggressive}: recipes, CLI, dcinfo, and the safe preset on MiniLM."""
import json
import os

import pytest
from pack_fixtures import bits, minilm_checkpoint, small_model

import dcformat
from dcformat.cli import dcinfo, dcpack
from dcformat.pack import Recipe, RecipeError, load_checkpoint, pack, save_checkpoint
from dcformat.pack.recipe import SAFE_MAX_ERROR, budget_recipe, preset_recipe


@pytest.fixture()
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path)
    return path


def test_preset_recipes():
    assert preset_recipe("lossless").lossless and preset_recipe("lossless").to_dict() == {"preset": "lossless",
                                                                                         "rules": []}
    safe = preset_recipe("safe")
    assert safe.to_dict() == {"preset": "safe", "rules": [{"name": "safe", "max_error": SAFE_MAX_ERROR,
                                                           "search": "bits"}]}
    assert Recipe.from_json(safe.to_json()) == safe
    assert preset_recipe("safe", max_error=0.01).rules[0].policy.max_error == 0.01
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
    assert "preset safe" in captured.err and "| setting |" in captured.out and "k-means" in captured.out
    meta = json.loads(dcformat.open(out).metadata()["dcformat.recipe"])
    assert meta["preset"] == "safe" and meta["rules"][0]["max_error"] == SAFE_MAX_ERROR
    assert dcinfo.main([str(out)]) == 0
    assert f"packed with: preset safe, relative error <= {SAFE_MAX_ERROR:g} per tensor" in capsys.readouterr().out
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


@pytest.mark.slow
def test_full_minilm_safe_preset_keeps_its_outputs(tmp_path):
    path = minilm_checkpoint()
    result = pack(path, tmp_path / "safe.dcf", preset_recipe("safe"))
    assert result.ratio >= 5
    assert max(t.relative_error for t in result.tensors) <= SAFE_MAX_ERROR
    from dcformat.demo import make_evaluator

    source, _ = load_checkpoint(path)
    evaluate = make_evaluator(os.path.dirname(path), source)
    if evaluate is None:
        pytest.skip("the tokenizers package is missing")
    quality = evaluate(dcformat.load_file(tmp_path / "safe.dcf"))
    assert quality["cosine"] >= 0.99 and quality["paraphrase@1"] == evaluate(source)["paraphrase@1"]
