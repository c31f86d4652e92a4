"""Checkpoint formats: round trips in every dtype, validation, one-line errors, lazy torch."""
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from pack_fixtures import bf16_model, bits, small_model

from dcformat.pack import CheckpointError, load_checkpoint, save_checkpoint
from dcformat.pack.checkpoints import output_format


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".npz"])
def test_round_trip_keeps_names_shapes_dtypes_and_bits(tmp_path, suffix):
    model = small_model()
    path = tmp_path / f"m{suffix}"
    save_checkpoint(model, path)
    loaded, _ = load_checkpoint(path)
    if suffix == ".safetensors":  # safetensors keeps no order: names come back sorted
        assert list(loaded) == sorted(model)
    else:
        assert list(loaded) == list(model)
    for name, array in model.items():
        assert loaded[name].shape == array.shape and loaded[name].dtype == array.dtype, name
        assert bits(loaded[name]) == bits(array), name


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_bfloat16_round_trip(tmp_path, suffix):
    model = bf16_model()
    save_checkpoint(model, tmp_path / f"m{suffix}")
    loaded, _ = load_checkpoint(tmp_path / f"m{suffix}")
    assert all(loaded[k].dtype.name == "bfloat16" and bits(loaded[k]) == bits(v) for k, v in model.items())


def test_npz_refuses_bfloat16(tmp_path):
    with pytest.raises(CheckpointError, match="bfloat16"):
        save_checkpoint(bf16_model(), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_safetensors_metadata_round_trip(tmp_path):
    save_checkpoint({"a": np.ones(3, np.float32)}, tmp_path / "m.safetensors", metadata={"k": "v"})
    assert load_checkpoint(tmp_path / "m.safetensors")[1] == {"k": "v"}


def test_npz_names_that_clash_with_numpy_keywords(tmp_path):
    model = {"file": np.ones(2, np.float32), "allow_pickle": np.zeros(2, np.int8), "a/b": np.arange(3)}
    save_checkpoint(model, tmp_path / "m.npz")
    loaded, _ = load_checkpoint(tmp_path / "m.npz")
    assert list(loaded) == list(model)


def test_torch_nested_checkpoint_and_bad_contents(tmp_path):
    import torch

    torch.save({"state_dict": {"w": torch.ones(2, 3)}, "epoch": 3}, tmp_path / "wrapped.pt")
    loaded, _ = load_checkpoint(tmp_path / "wrapped.pt")  # every tensor, under dotted names
    assert list(loaded) == ["state_dict.w"] and loaded["state_dict.w"].shape == (2, 3)
    loaded, _ = load_checkpoint(tmp_path / "wrapped.pt", key="state_dict")
    assert list(loaded) == ["w"]
    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "nested.pt")
    assert list(load_checkpoint(tmp_path / "nested.pt")[0]) == ["model.w"]
    with pytest.raises(CheckpointError, match="no entry 'optimizer'"):
        load_checkpoint(tmp_path / "nested.pt", key="optimizer")
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    assert list(load_checkpoint(tmp_path / "list.pt")[0]) == ["0"]
    torch.save(3, tmp_path / "int.pt")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_checkpoint(tmp_path / "int.pt")
    torch.save({"epoch": 3}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_checkpoint(tmp_path / "none.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_torch_load_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"w": Evil()}, handle)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickles"):
        load_checkpoint(tmp_path / "obj.npz")


@pytest.mark.parametrize("content,match", [
    (b"", "safetensors"), (b"\x00" * 100, "safetensors"), (b"garbage" * 30, "safetensors"),
])
def test_corrupt_safetensors(tmp_path, content, match):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_corrupt_npz_and_pt(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "bad.npz")
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "bad.pt")


def test_unknown_suffix_missing_file_and_unsupported_dtype(tmp_path):
    with pytest.raises(CheckpointError, match="unknown checkpoint suffix"):
        output_format("model.h5")
    with pytest.raises(CheckpointError, match="unknown checkpoint suffix"):
        save_checkpoint({"a": np.ones(2, np.float32)}, tmp_path / "model.h5")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="complex64"):
        save_checkpoint({"c": np.ones(2, np.complex64)}, tmp_path / "c.npz")
    with zipfile.ZipFile(tmp_path / "c.npz", "w") as archive:
        with archive.open("c.npy", "w") as member:
            np.lib.format.write_array(member, np.ones(2, np.complex64))
    with pytest.raises(CheckpointError, match="complex64"):
        load_checkpoint(tmp_path / "c.npz")


@pytest.mark.parametrize("suffix,fmt", [(".safetensors", "safetensors"), (".pt", "torch"), (".pth", "torch"),
                                        (".bin", "torch"), (".ckpt", "torch"), (".npz", "npz"), (".NPZ", "npz")])
def test_output_format_from_suffix(suffix, fmt):
    assert output_format(f"out/model{suffix}") == fmt


def test_big_endian_npz_comes_back_little_endian(tmp_path):
    np.savez(tmp_path / "be.npz", w=np.arange(6, dtype=">f4").reshape(2, 3))
    loaded, _ = load_checkpoint(tmp_path / "be.npz")
    assert loaded["w"].dtype == np.dtype("<f4") and loaded["w"][1, 2] == 5


def test_safetensors_and_npz_do_not_import_torch(tmp_path):
    save_checkpoint(small_model(), tmp_path / "m.safetensors")
    save_checkpoint(small_model(), tmp_path / "m.npz")
    code = ("import sys; from dcformat.pack import load_checkpoint, save_checkpoint; "
            f"t, m = load_checkpoint({str(tmp_path / 'm.safetensors')!r}); load_checkpoint({str(tmp_path / 'm.npz')!r}); "
            f"save_checkpoint(t, {str(tmp_path / 'n.safetensors')!r}); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
