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
from dcformat import baselines, demo
from dcformat.pack import load_checkpoint, pack
from dcformat.pack.budget import Searches
from dcformat.pack.recipe import budget_recipe
from dcformat.pack.sweep import budget_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PRESETS = ("lossless (default)", "indistinguishable", "safe", "budget 0.05", "budget 0.1", "paper P+Q")
"""The summary's preset rows, in the order of size."""
YARDSTICK = ("int8 per-channel", "GGUF Q8_0", "GGUF Q5_0", "GGUF Q4_0", "NF4 (blocks of 64)")


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
    labels = [lines[header + 1 + k][:19].strip() for k in range(len(PRESETS))]  # the preset column
    assert labels == list(PRESETS)
    assert "needs retraining" in lines[header + 7] and "python -m dcformat.torch.reproduce" in lines[header + 8]

    # the yardstick: int8 per channel, the GGUF types smaller than it, NF4, then ours, on at most 3 lines
    first = next(i for i, line in enumerate(lines) if line.startswith("Yardstick (yardstick.csv): int8 per-channel "))
    yardstick = " ".join(lines[first:first + 3]).split(" Device side")[0]
    ours = yardstick.split(" Ours: ")[1]
    assert ours.startswith("indistinguishable ") and "; safe " in ours
    if baselines.gguf_available():
        assert "GGUF Q5_0 " in yardstick and "; Q4_0 " in yardstick and "Q8_0" not in yardstick
    else:
        assert "Not drawn: GGUF Q8_0, GGUF Q5_0, GGUF Q4_0 (no gguf package)." in yardstick
    assert "; NF4 " in yardstick
    assert not any(line.startswith("|") for line in lines)  # the tables went to files

    # every file of the output directory is named, and every named file is there and non-empty
    names = named_files(lines)
    on_disk = sorted(os.listdir(out))
    assert sorted(names) == on_disk
    for name in names:
        assert (out / name).stat().st_size > 0, name
    for picture in ("fidelity.png", "bits.png", "budgets.png"):
        assert (out / picture).read_bytes()[:8] == PNG_MAGIC
    for table in ("presets", "budgets", "yardstick", "settings", "stages", "layers.safe", "layers.PQ"):
        assert f"{table}.csv" in names
    assert "tables.md" in names

    # the C step: decoded and compared for real where dcfdecode is built, else one line saying why not
    if os.path.isfile(os.path.join(demo.REPO_ROOT, demo.DCFDECODE)):
        assert any("embeddings from the C-decoded weights: identical, bit for bit" in line for line in lines)
        assert any(line.lstrip().startswith("dcfdecode (C)") for line in lines)
    else:
        assert sum(line.startswith("C decode step skipped: ") for line in lines) == 1
    return lines


def csv_rows(out, table, key):
    with open(out / f"{table}.csv", newline="", encoding="utf-8") as handle:
        return {row[key]: row for row in csv.DictReader(handle)}


def preset_rows(out):
    return csv_rows(out, "presets", "preset")


def check_yardstick(out, presets):
    """The formats people ship, measured on the same matrices as ours: all there (GGUF where the gguf
    package is), each with real bytes and fidelity; ours in the same table with the presets' figures."""
    rows = csv_rows(out, "yardstick", "method")
    expected = [m for m in YARDSTICK if baselines.gguf_available() or not m.startswith("GGUF")]
    assert [m for m in rows if not m.startswith("dcformat ")] == sorted(expected, key=lambda m: -float(rows[m]["bits"]))
    bits = {m: float(rows[m]["bits"]) for m in expected}
    assert bits["NF4 (blocks of 64)"] == pytest.approx(4.5)
    if baselines.gguf_available():
        assert bits["GGUF Q8_0"] == 8.5 and bits["GGUF Q5_0"] == 5.5 and bits["GGUF Q4_0"] == 4.5
    assert 8 < bits["int8 per-channel"] < 8.2  # one float32 scale per row of 384
    for m in expected:
        assert 0 < float(rows[m]["error"]) <= float(rows[m]["largest"]) < 0.2
        assert 0.9 < float(rows[m]["cosine"]) <= 1 + 1e-6
    for preset in PRESETS[:-1]:
        ours = rows[f"dcformat {preset.split(' (')[0]}"]
        assert int(ours["bytes"]) == int(presets[preset]["bytes"]) and ours["cosine"] == presets[preset]["cosine"]
    # finer formats keep more: int8 beats NF4 on weight error
    assert float(rows["int8 per-channel"]["error"]) < float(rows["NF4 (blocks of 64)"]["error"])
    return rows


def test_quick_demo_fits_one_screen_and_names_its_files(tmp_path, capsys):
    minilm_checkpoint()
    status, text, out = run_demo(tmp_path, capsys, "--quick")
    check_summary(status, text, out)
    rows = preset_rows(out)
    sizes = [int(rows[p]["bytes"]) for p in PRESETS]
    assert sizes == sorted(sizes, reverse=True)
    assert float(rows["indistinguishable"]["error"]) <= 0.01 and float(rows["indistinguishable"]["cosine"]) >= 0.999
    check_yardstick(out, rows)
    assert float(rows["lossless (default)"]["error"]) == 0 and float(rows["lossless (default)"]["cosine"]) == 1.0
    assert float(rows["safe"]["error"]) <= 0.03 and float(rows["budget 0.05"]["error"]) <= 0.05
    # the files the table names are the files on disk
    for preset in ("lossless (default)", "indistinguishable", "safe", "paper P+Q"):
        assert os.path.getsize(out / rows[preset]["file"]) == int(rows[preset]["bytes"])


@pytest.mark.parametrize("kept", [False, True], ids=["sorted again", "the sweep's searches"])
def test_budget_points_are_the_files_dcpack_writes(tmp_path, kept):
    """The budget rows and curve come from the sweep: their weights equal the packed files' bit for bit,
    rebuilt from a new sort of each tensor or from the searches the sweep kept."""
    source, _ = load_checkpoint(minilm_checkpoint())
    tensors = {k: v for k, v in source.items() if k.startswith("encoder.layer.1.attention.self.value.")}
    searches = Searches() if kept else None
    result = budget_sweep(tensors, [0.0, 0.05, 0.1], source_name="model.safetensors", searches=searches)
    for budget, weights in zip(result.budgets, demo.budget_weights(tensors, result, searches)):
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
    # issue 14's promises: indistinguishable keeps cosine 0.999 at least 5x smaller, where int8 is ~4x
    assert float(rows["indistinguishable"]["ratio"]) >= 5 and float(rows["indistinguishable"]["cosine"]) >= 0.999
    yardstick = check_yardstick(out, rows)
    assert float(yardstick["int8 per-channel"]["ratio"]) < float(rows["indistinguishable"]["ratio"])
    assert float(rows["paper P+Q"]["ratio"]) >= 20 and float(rows["paper P+Q"]["cosine"]) < 0.5
    assert lines[1].startswith("22,713,728 parameters in 104 tensors; float32: 90,")


def test_fidelity_plot_draws_the_yardstick_beside_our_points(tmp_path):
    """fidelity.png's legend names each format drawn beside ours, and those that could not be computed."""
    pytest.importorskip("matplotlib")
    from dcformat.plotting import plot_size_fidelity

    points = [{"label": "safe", "bytes": 15_500_000, "cosine": 0.9988},
              {"label": "paper P+Q (needs retraining)", "bytes": 2_600_000, "cosine": 0.14, "kind": "paper"}]
    curve = [{"budget": b, "bytes": n, "cosine": c} for b, n, c in ((0.01, 19e6, 0.9996), (0.1, 10e6, 0.956))]
    others = [{"label": "int8 per-channel", "family": "int8", "bytes": 23e6, "cosine": 0.9995},
              {"label": "NF4 (blocks of 64)", "family": "nf4", "bytes": 13e6, "cosine": 0.97}]
    path = tmp_path / "fidelity.png"
    legend = plot_size_fidelity(points, curve, path, original_bytes=90_856_960, sentences=24, baselines=others,
                                missing=["GGUF Q4_0"])
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert "int8 per-channel: 4.0× smaller, cosine 0.9995" in legend
    assert "NF4 (blocks of 64): 7.0× smaller, cosine 0.9700" in legend
    assert legend[-1] == "not drawn: GGUF Q4_0 (the gguf package is not installed)"
    assert any(t.startswith("safe: 5.9× smaller") for t in legend)
