"""Safety nets against a silently broken model: error reports and warnings, patterns that match
nothing, and --bits B meaning 2^B codebook symbols whatever the sparsity."""
import numpy as np
import pytest
from pack_fixtures import small_model

import dcformat
from dcformat.cli import dcpack
from dcformat.compress import magnitude_mask, share_weights
from dcformat.pack import facts, save_checkpoint


@pytest.fixture()
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path)
    return path


def test_lossy_flags_report_the_error_and_warn_past_the_threshold(tmp_path, checkpoint, capsys):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "p.dcf"), "--sparsity", "0.9", "--bits", "5"]) == 0
    err = capsys.readouterr().err
    report = next(line for line in err.splitlines() if "relative error" in line and "largest" in line)
    assert "median" in report and "overall" in report
    warning = next(line for line in err.splitlines() if line.startswith("dcpack: warning:"))
    assert f"more than {facts.WARN_ERROR:g}" in warning and "--preset safe" in warning
    # the numbers are the file's: the largest reported error is the largest measured
    loaded, source = dcformat.load_file(tmp_path / "p.dcf"), small_model()
    largest = max(np.linalg.norm(loaded[k].astype(np.float64) - source[k]) / np.linalg.norm(source[k].astype(np.float64))
                  for k in ("emb.weight", "fc1.weight", "conv.weight", "half.weight"))
    assert f"largest {largest:.3g}" in report


def test_warning_is_printed_even_when_quiet(tmp_path, checkpoint, capsys):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "p.dcf"), "--sparsity", "0.9", "--bits", "5", "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("dcpack: warning:")


def test_small_errors_report_without_warning(tmp_path, checkpoint, capsys):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "s.dcf"), "--preset", "safe"]) == 0
    err = capsys.readouterr().err
    assert "largest" in err and "warning" not in err
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "l.dcf")]) == 0  # lossless: nothing to report
    assert "relative error" not in capsys.readouterr().err


def test_threshold_is_stated_in_the_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        dcpack.main(["--help"])
    assert f"warn when a tensor's passes {facts.WARN_ERROR:g}" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("flags, pattern", [
    (["--keep", "emb.*", "--keep", "fc_typo*", "--bits", "4"], "--keep 'fc_typo*'"),
    (["--preset", "safe", "--keep", "nothing.here"], "--keep 'nothing.here'"),
])
def test_a_pattern_that_matches_nothing_is_a_usage_error(tmp_path, checkpoint, capsys, flags, pattern):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "m.dcf"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pattern in err[0] and "matches no tensor" in err[0]
    assert not (tmp_path / "m.dcf").exists()


def test_a_recipe_pattern_that_matches_nothing_is_a_usage_error(tmp_path, checkpoint, capsys):
    (tmp_path / "r.json").write_text('{"rules": [{"match": "fc1.weight", "bits": 4}, {"match": "fc9.*", "bits": 3}]}')
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "m.dcf"), "--recipe", str(tmp_path / "r.json")]) == 2
    assert "rule 2: match 'fc9.*'" in capsys.readouterr().err


@pytest.mark.parametrize("bits", [1, 3, 5])
def test_bits_means_2_to_the_b_symbols_without_pruning(tmp_path, checkpoint, bits):
    out = tmp_path / "m.dcf"
    assert dcpack.main([str(checkpoint), "-o", str(out), "--sparsity", "0", "--bits", str(bits), "-q"]) == 0
    loaded = dcformat.load_file(out)
    with dcformat.open(out) as reader:
        info = {t.name: t for t in reader.tensors_info()}
    assert info["fc1.weight"].codebook_size == 2**bits
    assert len(np.unique(loaded["fc1.weight"])) == 2**bits


def test_bits_counts_the_zero_symbol_with_pruning(tmp_path, checkpoint):
    out = tmp_path / "m.dcf"
    assert dcpack.main([str(checkpoint), "-o", str(out), "--sparsity", "0.5", "--bits", "3", "-q"]) == 0
    loaded = dcformat.load_file(out)
    assert len(np.unique(loaded["fc1.weight"])) == 2**3  # 7 centroids and the zero


def test_share_weights_bits_fit_in_b_bits():
    w = np.random.default_rng(0).normal(0, 1, (64, 64)).astype(np.float32)
    dense = share_weights(w, None, bits=6)
    assert dense.codebook.size == 64 and dense.indices.min() >= 0
    pruned = share_weights(w, magnitude_mask(w, 0.5), bits=6)
    assert pruned.codebook.size == 63 and (pruned.indices < 0).any()  # 63 + the zero = 2^6
    assert share_weights(w, magnitude_mask(w, 0.5), k=64).codebook.size == 64  # k counts centroids only


def test_trained_quantizer_bits_6_gives_64_symbols():
    torch = pytest.importorskip("torch")
    from dcformat.torch.quantization import TrainedQuantizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 40), torch.nn.Linear(40, 10))
    with torch.no_grad():
        model[0].weight[:, :16] = 0  # half pruned: its zero is one of the 64 symbols
    q = TrainedQuantizer(model, bits=6)
    for name in q.layers:
        labels = q.labels(name)
        symbols = q.codebook(name).numel() + int((labels < 0).any())
        assert symbols == 64, (name, symbols)
