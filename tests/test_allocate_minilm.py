"""dcpack --target-size on the real MiniLM (slow): within the target, and with calibration more
faithful than per-tensor budgets at the same size."""
import os
import sys
from pathlib import Path

import pytest
from pack_fixtures import minilm_checkpoint

import dcformat
from dcformat.cli import dcpack
from dcformat.pack import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_fidelity import CALIBRATION  # noqa: E402 - the 8 calibration texts, none among the evaluation's


@pytest.mark.slow
def test_minilm_calibrated_target_beats_per_tensor_budgets_at_equal_size(tmp_path, capsys):
    pytest.importorskip("transformers")
    from dcformat.demo import make_evaluator

    path = minilm_checkpoint()
    folder = os.path.dirname(path)
    source, _ = load_checkpoint(path)
    evaluate = make_evaluator(folder, source)
    if evaluate is None:
        pytest.skip("the tokenizers package is missing")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(CALIBRATION) + "\n", encoding="utf-8")
    sens = tmp_path / "minilm.sens.safetensors"
    from dcformat.torch.calibrate import main as calibrate

    # one number per tensor: on MiniLM as faithful as per weight (tools/bench_allocation.py), and the
    # search then measures only its frontier
    assert calibrate(["--model", folder, "--texts", str(texts), "-o", str(sens), "--per-tensor"]) == 0

    budget = tmp_path / "budget.dcf"
    assert dcpack.main([path, "-o", str(budget), "--max-error", "0.05", "-q"]) == 0
    size = os.path.getsize(budget)
    target = tmp_path / "target.dcf"
    capsys.readouterr()
    assert dcpack.main([path, "-o", str(target), "--target-size", str(size), "--sensitivity", str(sens)]) == 0
    err = capsys.readouterr().err
    assert os.path.getsize(target) <= size and "calibrated sensitivities per tensor" in err
    per_tensor = evaluate(dcformat.load_file(budget))["cosine"]
    calibrated = evaluate(dcformat.load_file(target))["cosine"]
    assert calibrated > per_tensor, (calibrated, per_tensor)
    assert dcpack.main([path, "-o", str(tmp_path / "small.dcf"), "--target-size", "1MB", "-q"]) == 2
    assert "smallest file this checkpoint reaches" in capsys.readouterr().err
