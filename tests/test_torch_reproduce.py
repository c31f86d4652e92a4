"""The reproduction command end to end, one epoch per stage (slow: run with `make test-slow`)."""
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("mlxtend")

from dcformat.torch import reproduce  # noqa: E402


@pytest.mark.slow
def test_quick_reproduction_writes_its_report(tmp_path):
    assert reproduce.main(["--quick", "--no-progress", "--networks", "LeNet-300-100",
                           "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["networks"]["LeNet-300-100"]
    accuracy = results["accuracy"]
    assert accuracy["P+Q from .dcf"] == accuracy["P+Q"]  # the file holds what was trained
    assert results["sizes"]["P+Q"]["dcf"] < results["sizes"]["P"]["dcf"] < results["sizes"]["U"]["float32"]
    for name in ("report.md", "lenet-300-100.dcf", "pruning-accuracy.png", "sensitivity.png",
                 "lenet-300-100-histograms.png", "lenet-300-100-masks.png"):
        assert (tmp_path / name).stat().st_size > 0
