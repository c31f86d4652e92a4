"""Accounting: per-layer and stage tables add up to the bytes on disk and render in every format."""
import csv
import io
import json
import math
import os

import numpy as np
import pytest
from pack_fixtures import small_model

import dcformat
from dcformat.compress import entropy_bits
from dcformat.pack import PackError, Recipe, analyze_file, fidelity_table, layer_table, pack, stage_table
from dcformat.pack.tables import Column, Table

RECIPE = Recipe.from_flags(sparsity=0.9, conv_sparsity=0.65, bits=5, conv_bits=6)


def tensor_rows(table):
    return [r for r in table.rows if r["name"] not in ("total (tensors)", "container (preamble, index, trailer)",
                                                       "file on disk")]


@pytest.mark.parametrize("recipe", [None, RECIPE], ids=["lossless", "P+Q"])
@pytest.mark.parametrize("collapse", [False, True])
def test_layer_table_adds_up_to_the_file_size(tmp_path, recipe, collapse):
    result = pack(small_model(), tmp_path / "m.dcf", recipe)
    table = layer_table(tmp_path / "m.dcf", result.tensors, collapse_raw=collapse)
    size = os.path.getsize(tmp_path / "m.dcf")
    rows = {r["name"]: r for r in table.rows}
    parts = sum(r["bytes"] for r in tensor_rows(table))
    assert parts == rows["total (tensors)"]["bytes"]
    assert parts + rows["container (preamble, index, trailer)"]["bytes"] == rows["file on disk"]["bytes"] == size
    assert table.extra["file_bytes"] == size
    assert rows["total (tensors)"]["parameters"] == sum(a.size for a in small_model().values())
    if collapse:
        assert any("raw dense tensors" in name for name in rows)


def test_formats_render_and_parse(tmp_path):
    result = pack(small_model(), tmp_path / "m.dcf", RECIPE)
    table = layer_table(tmp_path / "m.dcf", result.tensors)
    md = table.render("md")
    assert md.startswith("### m.dcf") and "| layer |" in md and "rel. error" in md
    assert md.count("\n|") == len(table.rows) + 2  # header, rule, rows
    rows = list(csv.DictReader(io.StringIO(table.render("csv"))))
    assert len(rows) == len(table.rows) and rows[-1]["bytes"] == str(os.path.getsize(tmp_path / "m.dcf"))
    data = json.loads(table.render("json"))
    assert data["file_bytes"] == os.path.getsize(tmp_path / "m.dcf") and len(data["rows"]) == len(table.rows)
    assert json.loads(data["metadata"]["dcformat.recipe"]) == RECIPE.to_dict()
    with pytest.raises(PackError, match="table format"):
        table.render("html")
    assert "largest relative error" in fidelity_table(result.tensors).to_markdown()


def test_bits_columns_follow_their_definitions(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(50, 200)).astype(np.float32)
    recipe = {"rules": [{"sparsity": 0.9, "bits": 3, "index_bits": 4, "min_size": 0}]}
    pack({"w": w}, tmp_path / "m.dcf", recipe)
    row = layer_table(tmp_path / "m.dcf").rows[0]
    with dcformat.open(tmp_path / "m.dcf") as reader:
        info = reader.info("w")
        symbols = reader.get_codebook_tensor("w")
    entries = info.entries
    k = info.codebook_size
    assert k <= 8 and info.index_bits == 4
    values_bytes = sum(c.streams[2].length for c in info.chunks)
    gaps_bytes = sum(c.streams[1].length for c in info.chunks)
    assert row["weight_bits_fixed"] == math.ceil(math.log2(k)) and row["index_bits_fixed"] == 4
    assert row["weight_bits_stored"] == pytest.approx(8 * values_bytes / entries)
    assert row["index_bits_stored"] == pytest.approx(8 * gaps_bytes / entries)
    fixed_bits = entries * (math.ceil(math.log2(k)) + 4) + 50 * math.ceil(math.log2(201)) + k * 32
    assert row["size_fixed"] == pytest.approx(fixed_bits / 8 / w.nbytes)
    assert row["size_stored"] == pytest.approx(info.stored_bytes / w.nbytes)
    assert row["kept"] == pytest.approx(0.1, abs=1e-3) and row["entries"] == entries >= 1000
    # H0 of the values: the symbols of the kept weights plus one zero symbol per filler
    kept = symbols.indices[symbols.indices >= 0]
    fillers = entries - kept.size
    stats = analyze_file(tmp_path / "m.dcf")
    zero = k - 1 if fillers else None
    expected = entropy_bits(np.concatenate([kept, np.full(fillers, zero)])) if fillers else entropy_bits(kept)
    assert row["weight_bits_h0"] == pytest.approx(expected / entries)
    assert stats.h0_bytes > 0


def test_table_renders_missing_values_and_escapes():
    rows = [{"a": "x|y", "b": None}, {"a": float("nan"), "b": 1234}, {"a": "evil\x1b[2J", "b": 1}]
    table = Table("t", [Column("a", "a"), Column("b", "b", ",d")], rows)
    md = table.to_markdown()
    assert "x\\|y" in md and "| – | 1,234 |" in md
    assert "\x1b" not in md and "\x1b" not in table.to_csv() and "evil\\x1b[2J" in md
    assert json.loads(table.to_json())["rows"][1]["a"] is None


def test_stage_table_packs_every_stage(tmp_path):
    model = small_model()
    calls = []

    def evaluate(tensors):
        calls.append(sorted(tensors))
        return {"score": float(np.abs(tensors["fc1.weight"]).sum())}

    table, details = stage_table(model, RECIPE, tmp_path, evaluate=evaluate,
                                 baselines={"gzip": None, "zstd": ("U", "P+Q")})
    assert [r["stage"] for r in table.rows] == ["U", "U+Q", "P", "P+Q"]
    assert len(calls) == 4 and all(c == sorted(model) for c in calls)
    rows = {r["stage"]: r for r in table.rows}
    for stage, row in rows.items():
        info = details["stages"][stage]
        assert row["dcf_bytes"] == os.path.getsize(info["dcf"])
        assert row["gzip_bytes"] == os.path.getsize(info["gzip"])
        assert row["dcf_ratio"] == pytest.approx(row["original_bytes"] / row["dcf_bytes"])
        assert row["pcr"] == pytest.approx(row["parameters"] / row["nonzeros"])
    assert "zstd_bytes" not in rows["U+Q"] and rows["P+Q"]["zstd_bytes"] == os.path.getsize(details["stages"]["P+Q"]["zstd"])
    assert rows["U"]["relative_error"] == 0 and rows["U"]["kept"] > 0.99
    assert rows["P"]["kept"] < 0.5 and rows["U+Q"]["kept"] > 0.99
    assert rows["P+Q"]["dcf_bytes"] < rows["P"]["dcf_bytes"] < rows["U"]["dcf_bytes"]
    assert rows["U+Q"]["score"] != rows["U"]["score"]
    decoded = dcformat.load_file(details["stages"]["P+Q"]["dcf"])
    floats = [n for n, a in model.items() if a.dtype.kind == "f"]
    num = sum(np.square(model[n].astype(np.float64) - decoded[n].astype(np.float64)).sum() for n in floats)
    den = sum(np.square(model[n].astype(np.float64)).sum() for n in floats)
    assert rows["P+Q"]["relative_error"] == pytest.approx(math.sqrt(num / den), rel=1e-6)
    for fmt in ("md", "csv", "json"):
        assert "P+Q" in table.render(fmt)
    assert "zstd computed for stages U, P+Q only." in table.to_markdown()


def test_stage_table_rejects_unknown_baseline(tmp_path):
    with pytest.raises(PackError, match="unknown baseline"):
        stage_table(small_model(), RECIPE, tmp_path, baselines=("xz",))


def test_dense_baselines_are_the_one_call_bytes_written_atomically(tmp_path):
    import gzip
    import io

    import zstandard

    from dcformat.pack.tables import BASELINE_SLICE, dense_baselines

    data = np.random.default_rng(5).normal(0, 1, 3 * BASELINE_SLICE // 4 + 123).astype(np.float32).tobytes()
    sizes = dense_baselines(data, str(tmp_path / "d"), ("gzip", "zstd"))
    one = io.BytesIO()
    with gzip.GzipFile(fileobj=one, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    assert (tmp_path / "d.gz").read_bytes() == one.getvalue() and sizes["gzip"] == len(one.getvalue())
    frame = zstandard.ZstdCompressor(level=19, write_content_size=True).compress(data)
    assert (tmp_path / "d.zst").read_bytes() == frame and sizes["zstd"] == len(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.gz", "d.zst"]


def test_a_stop_during_the_dense_baselines_leaves_no_file(tmp_path, monkeypatch):
    """Ctrl-C while gzip runs (dctable --stages, the demo): the stop is seen between slices and
    neither a partial .gz nor a temporary file stays (it left an empty .gz)."""
    from dcformat import parallel
    from dcformat.pack import tables

    monkeypatch.setattr(tables, "BASELINE_SLICE", 4096)
    calls = {"n": 0}
    real = parallel.check_stop

    def stop_on_third():
        calls["n"] += 1
        if calls["n"] == 3:
            parallel.request_stop()
        real()

    monkeypatch.setattr(parallel, "check_stop", stop_on_third)
    try:
        with pytest.raises(KeyboardInterrupt):
            tables.dense_baselines(bytes(range(256)) * 256, str(tmp_path / "d"), ("gzip", "zstd"))
    finally:
        parallel.clear_stop()
    assert calls["n"] == 3 and list(tmp_path.iterdir()) == []
