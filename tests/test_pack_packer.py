"""The packing pipeline: lossless by default, each policy does what it says, the file holds it."""
import json

import numpy as np
import pytest
from pack_fixtures import bf16_model, bits, small_model

import dcformat
from dcformat.compress import global_masks, magnitude_mask, relative_error, threshold_mask
from dcformat.constants import Layout
from dcformat.pack import PackError, Recipe, compare, compress_tensor, load_checkpoint, pack, unpack
from dcformat.pack.packer import float16_codebook
from dcformat.pack.recipe import Policy


def fc_rule(**policy):
    return {"rules": [{"match": "fc1.weight", **policy}]}


def test_without_a_recipe_everything_is_bit_exact(tmp_path):
    model = {**small_model(), **{f"bf16.{k}": v for k, v in bf16_model().items()},
             "empty": np.zeros((0, 3), np.float32), "scalar": np.array(1.5, np.float64)}
    result = pack(model, tmp_path / "m.dcf")
    loaded = dcformat.load_file(tmp_path / "m.dcf")
    assert list(loaded) == list(model)
    for name, array in model.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        assert bits(loaded[name]) == bits(array), name
    assert all(r.lossless and r.relative_error == 0 for r in result.tensors)
    assert result.file_bytes == (tmp_path / "m.dcf").stat().st_size


def test_magnitude_pruning_and_kmeans(tmp_path):
    model = small_model()
    result = pack(model, tmp_path / "m.dcf", fc_rule(sparsity=0.9, bits=4))
    w = model["fc1.weight"]
    with dcformat.open(tmp_path / "m.dcf") as reader:
        decoded = reader.get_tensor("fc1.weight")
        shared = reader.get_codebook_tensor("fc1.weight")
        info = reader.info("fc1.weight")
    mask = magnitude_mask(w, 0.9)
    assert np.array_equal(decoded != 0, mask)  # exactly the 10% largest survive
    assert info.layout == Layout.CSR and info.codebook_size <= 16  # 15 centroids + the filler zero
    assert len(np.unique(decoded[mask])) <= 15
    report = next(r for r in result.tensors if r.name == "fc1.weight")
    assert report.nonzeros == mask.sum() and report.pruned == pytest.approx(0.9, abs=1e-3)
    assert report.relative_error == pytest.approx(relative_error(w, decoded))
    assert np.array_equal(shared.decode(), decoded)
    others = dcformat.load_file(tmp_path / "m.dcf")
    assert all(bits(others[n]) == bits(a) for n, a in model.items() if n != "fc1.weight")


def test_threshold_filter_and_global_pruning(tmp_path):
    model = small_model()
    pack(model, tmp_path / "t.dcf", fc_rule(quality=1.0))
    got = dcformat.load_file(tmp_path / "t.dcf")["fc1.weight"]
    assert np.array_equal(got != 0, threshold_mask(model["fc1.weight"], 1.0))
    assert np.array_equal(got[got != 0], model["fc1.weight"][got != 0])  # raw values: the pruned array exactly

    pack(model, tmp_path / "f.dcf", fc_rule(prune="filter", sparsity=0.75))
    got = dcformat.load_file(tmp_path / "f.dcf")["fc1.weight"]
    assert ((got != 0).sum(axis=1) == 32).all()

    recipe = {"rules": [{"match": ["fc1.weight", "emb.weight"], "min_size": 0, "prune": "global", "sparsity": 0.8}]}
    pack(model, tmp_path / "g.dcf", recipe)
    got = dcformat.load_file(tmp_path / "g.dcf")
    expected = global_masks({"emb.weight": model["emb.weight"], "fc1.weight": model["fc1.weight"]}, 0.8)
    for name in expected:
        assert np.array_equal(got[name] != 0, expected[name])
    kept = np.concatenate([np.abs(got[n][got[n] != 0]) for n in expected])
    dropped = np.concatenate([np.abs(model[n][got[n] == 0]) for n in expected])
    assert kept.min() >= dropped.max()  # one threshold over both layers


def test_power_of_two_codebook(tmp_path):
    model = small_model()
    pack(model, tmp_path / "p.dcf", fc_rule(sparsity=0.5, share="pow2", bits=5))
    got = dcformat.load_file(tmp_path / "p.dcf")["fc1.weight"]
    nonzero = np.abs(got[got != 0]).astype(np.float64)
    assert np.all(np.log2(nonzero) == np.round(np.log2(nonzero)))  # powers of two
    assert len(np.unique(got[got != 0])) <= 16
    assert not np.any((got != 0) & ~magnitude_mask(model["fc1.weight"], 0.5))


def test_float16_store_keeps_dtype_and_rounds(tmp_path):
    model = small_model()
    recipe = {"rules": [{"rank": "any", "min_size": 0, "store": "float16"}]}
    result = pack(model, tmp_path / "h.dcf", recipe)
    got = dcformat.load_file(tmp_path / "h.dcf")
    for name in ("fc1.weight", "norm.weight", "conv.bias"):
        assert got[name].dtype == np.float32
        assert np.array_equal(got[name], model[name].astype(np.float16).astype(np.float32))
    assert bits(got["half.weight"]) == bits(model["half.weight"])  # already float16: untouched
    assert next(r for r in result.tensors if r.name == "norm.weight").relative_error == 0


def test_float16_codebook_helper():
    values = np.array([[0.0, -0.0, 1.0], [1e-9, 3.0, 1.0]], np.float32)
    shared = float16_codebook(values)
    assert shared.codebook.dtype == np.float16 and 0 not in shared.codebook
    assert np.array_equal(shared.decode(), values.astype(np.float16).astype(np.float32))
    with pytest.raises(PackError, match="float16 range"):
        float16_codebook(np.array([1e6], np.float32))
    assert float16_codebook(np.zeros(4, np.float32)).decode().tolist() == [0, 0, 0, 0]


def test_codebook_float16_and_paper_index_bits(tmp_path):
    model = small_model()
    pack(model, tmp_path / "m.dcf", fc_rule(sparsity=0.9, bits=5, index_bits="paper", codebook_dtype="float16"))
    with dcformat.open(tmp_path / "m.dcf") as reader:
        info = reader.info("fc1.weight")
        shared = reader.get_codebook_tensor("fc1.weight")
    assert info.index_bits == 5 and shared.codebook.dtype == np.float16


def test_layout_auto_and_forced():
    w = small_model()["fc1.weight"]
    _, encoding = compress_tensor(w, Policy.from_dict({"sparsity": 0.9, "bits": 5}))
    assert encoding.layout == "csr"
    _, encoding = compress_tensor(w, Policy.from_dict({"sparsity": 0.5, "bits": 5}))
    assert encoding.layout == "auto"
    _, encoding = compress_tensor(w, Policy.from_dict({"sparsity": 0.9, "layout": "dense"}))
    assert encoding.layout == "dense"
    stored, encoding = compress_tensor(np.arange(5), Policy.from_dict({"sparsity": 0.9}))
    assert encoding is None  # integer tensors are never changed


def test_metadata_records_recipe_and_source(tmp_path):
    from dcformat.pack import save_checkpoint

    save_checkpoint(small_model(), tmp_path / "src.safetensors", metadata={"format": "pt"})
    recipe = Recipe.from_flags(sparsity=0.5, bits=4)
    pack(tmp_path / "src.safetensors", tmp_path / "m.dcf", recipe, metadata={"author": "me"})
    with dcformat.open(tmp_path / "m.dcf") as reader:
        meta = reader.metadata()
    assert json.loads(meta["dcformat.recipe"]) == recipe.to_dict()
    assert meta["dcformat.source"] == "src.safetensors" and meta["dcformat.source_format"] == "safetensors"
    assert json.loads(meta["dcformat.source_metadata"]) == {"format": "pt"} and meta["author"] == "me"
    with pytest.raises(PackError, match="reserved"):
        pack(small_model(), tmp_path / "x.dcf", metadata={"dcformat.recipe": "{}"})


def test_user_errors(tmp_path):
    model = small_model()
    model["fc1.weight"] = model["fc1.weight"].copy()
    model["fc1.weight"][0, 0] = np.nan
    with pytest.raises(PackError, match="tensor 'fc1.weight'.*NaN"):
        pack(model, tmp_path / "m.dcf", fc_rule(sparsity=0.5))
    assert not (tmp_path / "m.dcf").exists() and list(tmp_path.iterdir()) == []  # atomic: nothing left
    with pytest.raises(PackError, match="no tensor matches"):
        pack(small_model(), tmp_path / "m.dcf", {"only": ["nothing*"]})
    with pytest.raises(PackError, match="source must be"):
        pack([1, 2], tmp_path / "m.dcf")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".npz"])
def test_unpack_restores_names_shapes_dtypes(tmp_path, suffix):
    model = small_model()
    pack(model, tmp_path / "m.dcf", Recipe.from_flags(sparsity=0.8, bits=4, min_size=1000))
    done = unpack(tmp_path / "m.dcf", tmp_path / f"out{suffix}")
    restored, meta = load_checkpoint(tmp_path / f"out{suffix}")
    decoded = dcformat.load_file(tmp_path / "m.dcf")
    assert done["tensors"] == len(model) and set(restored) == set(model)
    for name in model:
        assert restored[name].dtype == model[name].dtype and restored[name].shape == model[name].shape
        assert bits(restored[name]) == bits(decoded[name])
    if suffix == ".safetensors":
        assert "dcformat.recipe" in meta


def test_compare_reports_fidelity(tmp_path):
    model = small_model()
    result = pack(model, tmp_path / "m.dcf", Recipe.from_flags(sparsity=0.8, bits=4))
    reports = {r.name: r for r in compare(tmp_path / "m.dcf", model)}
    for r in result.tensors:
        assert reports[r.name].relative_error == pytest.approx(r.relative_error)
        assert reports[r.name].lossless == r.lossless and reports[r.name].nonzeros == r.nonzeros
    with pytest.raises(PackError, match="not in the source"):
        compare(tmp_path / "m.dcf", {"other": np.zeros(2)})
