"""``make demo`` (``python -m dcformat.demo``): one screen that leads with the answer, files it names.

The default suite runs ``--quick`` (one matrix packed, fidelity on 8 sentences: seconds); the full
run on all of MiniLM is behind ``-m slow``.
"""
import csv
import os

import numpy as np
import pytest
from pack_fixtures import bits, minilm_checkpoint

import dcformat
from dcformat import demo
from dcformat.pack import load_checkpoint, pack
from dcformat.pack.recipe import budget_recipe
from dcformat.pack.sweep import budget_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_demo(tmp_path, capsys, *flags):
    out = tmp_path / "demo"
    status = demo.main(["--out", str(out), "--no-build", *flags])
    text = capsys.readouterr().out
    return status, text, out


def named_files(lines):
    """The file names the summary's "Written to" section lists."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Written to "))
    if lines[start] == "Written to (every file of this run):":
        start += 1  # a long output directory has a line of its own
    names = []
    for line in lines[start + 1:]:
        if not line.startswith(" "):
            break
        tokens = line.split()
        names += tokens[1:] if not line.startswith(" " * 12) else tokens
    return names


def check_summary(status, text, out):
    assert status == 0, text
    lines = text.splitlines()
    assert len(lines) <= demo.MAX_LINES
    assert max(len(line) for line in lines) <= demo.WIDTH
    assert (out / "summary.txt").read_text(encoding="utf-8") == text

    # leads with the answer: float32 size, then the presets, the paper's P+Q last with its warning
    assert lines[0].startswith("MiniLM") and "float32: " in lines[1]
    header = next(i for i, line in enumerate(lines) if line.startswith("preset "))
    assert header < 6
    labels = [lines[header + 1 + k].split("  ")[0] for k in range(5)]
    assert labels == ["lossless (default)", "safe", "budget 0.05", "budget 0.1", "paper P+Q"]
    assert "needs retraining" in lines[header + 6] and "python -m dcformat.torch.reproduce" in lines[header + 7]
    assert not any(line.startswith("|") for line in lines)  # the tables went to files

    # every file of the output directory is named, and every named file is there and non-empty
    names = named_files(lines)
    on_disk = sorted(os.listdir(out))
    assert sorted(names) == on_disk
    for name in names:
        assert (out / name).stat().st_size > 0, name
    for picture in ("fidelity.png", "bits.png", "budgets.png"):
        assert (out / picture).read_bytes()[:8] == PNG_MAGIC
    for table in ("presets", "budgets", "settings", "stages", "layers.safe", "layers.PQ"):
        assert f"{table}.csv" in names
    assert "tables.md" in names

    # the C step: decoded and compared for real where dcfdecode is built, else one line saying why not
    if os.path.isfile(os.path.join(demo.REPO_ROOT, demo.DCFDECODE)):
        assert any("embeddings from the C-decoded weights: identical, bit for bit" in line for line in lines)
        assert any(line.lstrip().startswith("dcfdecode (C)") for line in lines)
    else:
        assert sum(line.startswith("C decode step skipped: ") for line in lines) == 1
    return lines


def preset_rows(out):
    with open(out / "presets.csv", newline="", encoding="utf-8") as handle:
        return {row["preset"]: row for row in csv.DictReader(handle)}


def test_quick_demo_fits_one_screen_and_names_its_files(tmp_path, capsys):
    minilm_checkpoint()
    status, text, out = run_demo(tmp_path, capsys, "--quick")
    check_summary(status, text, out)
    rows = preset_rows(out)
    sizes = [int(rows[p]["bytes"]) for p in ("lossless (default)", "safe", "budget 0.05", "budget 0.1", "paper P+Q")]
    assert sizes == sorted(sizes, reverse=True)
    assert float(rows["lossless (default)"]["error"]) == 0 and float(rows["lossless (default)"]["cosine"]) == 1.0
    assert float(rows["safe"]["error"]) <= 0.03 and float(rows["budget 0.05"]["error"]) <= 0.05
    # the files the table names are the files on disk
    for preset in ("lossless (default)", "safe", "paper P+Q"):
        assert os.path.getsize(out / rows[preset]["file"]) == int(rows[preset]["bytes"])


def test_budget_points_are_the_files_dcpack_writes(tmp_path):
    """The budget rows and curve come from the sweep: their weights equal the packed files' bit for bit."""
    source, _ = load_checkpoint(minilm_checkpoint())
    tensors = {k: v for k, v in source.items() if k.startswith("encoder.layer.1.attention.self.value.")}
    result = budget_sweep(tensors, [0.0, 0.05, 0.1], source_name="model.safetensors")
    for budget, weights in zip(result.budgets, demo.budget_weights(tensors, result)):
        path = tmp_path / f"b{budget:g}.dcf"
        packed = pack(tensors, path, budget_recipe(budget), source_name="model.safetensors")
        assert packed.file_bytes == result.file_bytes[result.budgets.index(budget)]
        loaded = dcformat.load_file(path)
        assert (budget == 0) == (not weights)
        for name, array in loaded.items():
            expected = weights.get(name, tensors[name])
            assert bits(array) == bits(expected), (budget, name)
    rows = demo.budget_rows(result, [{} for _ in result.budgets])
    assert [r["preset"] for r in rows] == ["budget 0.05", "budget 0.1"]
    assert rows[0]["bytes"] == result.file_bytes[1] and rows[0]["error"] <= 0.05


def test_evaluator_scores_are_real():
    source, _ = load_checkpoint(minilm_checkpoint())
    evaluate = demo.make_evaluator(os.path.dirname(minilm_checkpoint()), source, pairs=3)
    if evaluate is None:
        pytest.skip("the tokenizers package is missing")
    assert evaluate({}) == evaluate.scores(evaluate.base) and evaluate({})["cosine"] == pytest.approx(1.0)
    # a changed tensor runs the model again; zeroing a whole layer's output projection is felt
    name = "encoder.layer.2.output.dense.weight"
    broken = evaluate({name: np.zeros_like(source[name])})
    assert broken["cosine"] < 0.999
    # the same weights, other arrays: bit-identical embeddings
    copy = {name: source[name].copy()}
    assert evaluate.embeddings(copy).tobytes() == evaluate.base.tobytes()


@pytest.mark.skipif(not os.access(demo.GNU_TIME, os.X_OK), reason="GNU time is not installed")
def test_peak_memory_is_the_child_alone():
    """A big parent does not inflate a small child's peak (getrusage would: Linux counts pre-exec memory)."""
    ballast = np.ones(300 * 2**20, np.uint8)  # 300 MB resident in this process
    status, seconds, peak, _ = demo._timed(["true"])
    assert status == 0 and seconds >= 0 and ballast.sum() == ballast.size
    assert peak is not None and peak < 50e6


def test_native_step_says_why_it_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "REPO_ROOT", str(tmp_path))  # a checkout without build/ and Makefile
    exe, why = demo.find_dcfdecode(build=False)
    assert exe is None and why == f"{demo.DCFDECODE} is absent (`make native` builds it)"
    exe, why = demo.find_dcfdecode(build=True)
    assert exe is None and "absent" in why
    lines = demo.native_decode(demo.Run(str(tmp_path)), str(tmp_path / "x.dcf"), None, build=False)
    assert len(lines) == 1 and lines[0].startswith("C decode step skipped: ") and len(lines[0]) <= demo.WIDTH


@pytest.mark.slow
def test_full_demo(tmp_path, capsys):
    minilm_checkpoint()
    status, text, out = run_demo(tmp_path, capsys)
    lines = check_summary(status, text, out)
    assert "smaller than zstd -19" in text and "bit-exact" in text
    rows = preset_rows(out)
    assert float(rows["safe"]["ratio"]) >= 5 and float(rows["safe"]["cosine"]) >= 0.99
    assert float(rows["paper P+Q"]["ratio"]) >= 20 and float(rows["paper P+Q"]["cosine"]) < 0.5
    assert lines[1].startswith("22,713,728 parameters in 104 tensors; float32: 90,")
