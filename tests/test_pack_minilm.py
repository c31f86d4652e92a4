"""A real checkpoint end to end: all-MiniLM-L6-v2 (22.7M parameters) pruned, shared, packed, unpacked.

The default suite packs two of its layers (layer 0 and the pooler, 1.9M parameters, a few seconds);
the full model runs with ``-m slow`` (the demo's own tests are in test_demo.py).
"""
import os

import numpy as np
import pytest
from safetensors.numpy import save as safetensors_bytes
from pack_fixtures import bits, minilm_checkpoint

import dcformat
from dcformat.pack import Recipe, layer_table, load_checkpoint, pack, unpack
from dcformat.pack.tables import dense_baselines

PAPER = dict(sparsity=0.9, bits=5)


def check_round_trip(path, dcf, result, tmp_path):
    """Unpack to safetensors: names, shapes, dtypes; raw tensors bit-exact; shared ones = codebook values."""
    source, _ = load_checkpoint(path)
    unpack(dcf, tmp_path / "restored.safetensors")
    restored, meta = load_checkpoint(tmp_path / "restored.safetensors")
    assert sorted(restored) == sorted(r.name for r in result.tensors)
    assert meta["dcformat.source"] == "model.safetensors"
    with dcformat.open(dcf) as reader:
        for report in result.tensors:
            got, original = restored[report.name], source[report.name]
            assert got.shape == original.shape and got.dtype == original.dtype
            if report.lossless:
                assert bits(got) == bits(original), report.name
            else:
                assert bits(got) == bits(reader.get_codebook_tensor(report.name).decode()), report.name
    return restored


def baselines(restored, tmp_path, which=("gzip", "zstd")):
    return dense_baselines(safetensors_bytes(restored), str(tmp_path / "dense.safetensors"), which)


def test_minilm_two_layers_beat_gzip_and_zstd(tmp_path):
    path = minilm_checkpoint()
    recipe = Recipe.from_flags(**PAPER, only=["encoder.layer.0.*", "pooler.*"])
    result = pack(path, tmp_path / "minilm.dcf", recipe)
    assert result.parameters == 1_922_304 and len(result.tensors) == 18
    assert 0.099 < result.nonzeros / result.parameters < 0.11
    restored = check_round_trip(path, tmp_path / "minilm.dcf", result, tmp_path)
    sizes = baselines(restored, tmp_path)
    dcf = os.path.getsize(tmp_path / "minilm.dcf")
    assert dcf < sizes["gzip"] and dcf < 0.75 * sizes["zstd"], (dcf, sizes)
    table = layer_table(tmp_path / "minilm.dcf", result.tensors)
    rows = {r["name"]: r for r in table.rows}
    assert rows["file on disk"]["bytes"] == dcf
    fc = rows["encoder.layer.0.intermediate.dense.weight"]
    assert fc["layout"] == "csr" and fc["codebook_size"] <= 32 and fc["weight_bits_fixed"] == 5
    assert fc["weight_bits_stored"] < 5 and fc["relative_error"] > 0.5  # one-shot 90% pruning, no retraining


@pytest.mark.slow
def test_full_minilm_at_the_papers_settings(tmp_path):
    path = minilm_checkpoint()
    result = pack(path, tmp_path / "minilm.dcf", Recipe.from_flags(**PAPER))
    restored = check_round_trip(path, tmp_path / "minilm.dcf", result, tmp_path)
    sizes = baselines(restored, tmp_path)
    dcf = os.path.getsize(tmp_path / "minilm.dcf")
    print(f"MiniLM P+Q: dcf {dcf:,}  gzip -9 {sizes['gzip']:,}  zstd -19 {sizes['zstd']:,}  "
          f"({result.original_bytes / dcf:.1f}× vs dense)")
    assert dcf < sizes["gzip"] and dcf <= 0.75 * sizes["zstd"]
    assert result.original_bytes / dcf > 30


@pytest.mark.slow
def test_full_minilm_lossless_is_bit_exact(tmp_path):
    path = minilm_checkpoint()
    result = pack(path, tmp_path / "minilm.dcf")
    check_round_trip(path, tmp_path / "minilm.dcf", result, tmp_path)
    assert result.file_bytes < 0.85 * result.original_bytes  # byte planes + entropy coding, lossless
