"""Checkpoint sources: the kind of input judged by its bytes (any suffix), the safetensors reader
against the safetensors package, one-line errors for what is not a checkpoint."""
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from pack_fixtures import bf16_model, bits, small_model
from safetensors.numpy import save_file

import dcformat
from dcformat.pack import CheckpointError, load_checkpoint, pack, save_checkpoint
from dcformat.pack.checkpoints import checkpoint_format
from dcformat.pack.sources import SafetensorsSource, open_source, sniff


def write_all_formats(tmp_path, model):
    save_checkpoint(model, tmp_path / "m.safetensors")
    save_checkpoint(model, tmp_path / "m.npz")
    save_checkpoint(model, tmp_path / "m.pt")
    dcformat.save_file(model, tmp_path / "m.dcf")
    return {"safetensors": tmp_path / "m.safetensors", "npz": tmp_path / "m.npz", "torch": tmp_path / "m.pt",
            "dcf": tmp_path / "m.dcf"}


@pytest.mark.parametrize("suffix", ["", ".bin", ".weights", ".safetensors.bak", ".npz"])
def test_every_format_is_recognised_by_content_whatever_the_suffix(tmp_path, suffix):
    model = small_model()
    for kind, path in write_all_formats(tmp_path, model).items():
        renamed = tmp_path / f"{kind}_copy{suffix}"
        os.replace(path, renamed)
        assert sniff(str(renamed)) == kind
        assert checkpoint_format(renamed) == kind
        loaded, _ = load_checkpoint(renamed)
        assert set(loaded) == set(model), kind
        for name, array in model.items():
            assert loaded[name].dtype == array.dtype and bits(loaded[name]) == bits(array), (kind, name)


def test_legacy_torch_file_is_read_with_weights_only(tmp_path):
    import torch

    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, tmp_path / "legacy", _use_new_zipfile_serialization=False)
    assert (tmp_path / "legacy").read_bytes()[:1] == b"\x80"  # a pickle stream, not a zip
    assert sniff(str(tmp_path / "legacy")) == "torch"
    loaded, _ = load_checkpoint(tmp_path / "legacy")
    assert loaded["w"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_safetensors_reader_matches_the_package(tmp_path):
    model = {**small_model(), **bf16_model(), "empty": np.zeros((0, 3), np.float32)}
    save_file(model, str(tmp_path / "m.safetensors"), metadata={"format": "pt"})
    with SafetensorsSource(str(tmp_path / "m.safetensors")) as source:
        assert [e.name for e in source.entries] == sorted(model)  # the package's order
        assert source.metadata == {"format": "pt"} and source.layout == {}
        for entry in source.entries:
            array = source.get(entry.name)
            assert entry.shape == model[entry.name].shape and entry.dtype == model[entry.name].dtype
            assert array.dtype == model[entry.name].dtype and bits(array) == bits(model[entry.name])
            assert array.flags.c_contiguous and array.flags.writeable and array.base is None


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize("header,data,match", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "4 bytes for 8"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "starts at byte 4"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 12, "the file has 12"),
    ({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype C64"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "bad shape"),
    ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "data_offsets expected"),
    ({"__metadata__": {"k": 1}}, b"", "__metadata__ must map strings"),
])
def test_corrupt_safetensors_headers_are_one_line_errors(tmp_path, header, data, match):
    (tmp_path / "bad.safetensors").write_bytes(_safetensors_bytes(header, data))
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(tmp_path / "bad.safetensors")
    assert "\n" not in str(info.value) and "bad.safetensors" in str(info.value)


def test_truncated_safetensors_is_refused(tmp_path):
    save_checkpoint(small_model(), tmp_path / "m.safetensors")
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-10])
    with pytest.raises(CheckpointError, match="the file has"):
        load_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "head.safetensors").write_bytes(raw[:100])
    with pytest.raises(CheckpointError, match="past the file"):
        load_checkpoint(tmp_path / "head.safetensors")


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
    (b"\x1f\x8b\x08\x00" + b"\0" * 20, "gzip"),
    (b"<!DOCTYPE html><html>", "HTML"),
    (b"\x93NUMPY\x01\x00", "single .npy"),
    (b"hello world, not a model", "unknown content .first bytes 68 65 6c 6c"),
    (b'{"not": "an index"}', "without a 'weight_map'"),
    (b'{"weight_map": ', "not valid JSON"),
])
def test_unknown_content_is_a_one_line_error_naming_the_path(tmp_path, content, match):
    path = tmp_path / "model.safetensors"  # the suffix promises safetensors: the content decides
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as info:
        pack(path, tmp_path / "out.dcf")
    assert "\n" not in str(info.value) and repr(str(path)) in str(info.value)
    assert not (tmp_path / "out.dcf").exists()


def test_zip_archives_that_are_neither_torch_nor_npz(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="neither a torch checkpoint"):
        open_source(tmp_path / "a.zip")
    (tmp_path / "b.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(CheckpointError, match="damaged zip"):
        open_source(tmp_path / "b.zip")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_is_not_plain_data_is_never_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps({"w": Evil()}, protocol=4))
    assert sniff(str(tmp_path / "evil.bin")) == "torch"
    with pytest.raises(CheckpointError, match="weights_only"):
        pack(tmp_path / "evil.bin", tmp_path / "out.dcf")
    assert not (tmp_path / "pwned").exists()


def test_missing_path_and_key_on_a_flat_format(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory"):
        open_source(tmp_path / "nope")
    save_checkpoint(small_model(), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="--key picks a subtree of a torch checkpoint"):
        open_source(tmp_path / "m.safetensors", key="model")


def test_data_parallel_prefix_is_stripped_and_put_back(tmp_path):
    import torch

    state = {"module.fc.weight": torch.randn(4, 3), "module.fc.bias": torch.randn(4)}
    torch.save(state, tmp_path / "dp.pt")
    result = pack(tmp_path / "dp.pt", tmp_path / "dp.dcf")
    assert any("'module.'" in note for note in result.notes)
    with dcformat.open(tmp_path / "dp.dcf") as reader:
        assert reader.keys() == ["fc.weight", "fc.bias"]
        assert json.loads(reader.metadata()["dcformat.source_layout"]) == {"prefix": "module."}
    dcformat.pack.unpack(tmp_path / "dp.dcf", tmp_path / "back.pt")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == list(state) and all(torch.equal(back[k], state[k]) for k in state)
    dcformat.pack.unpack(tmp_path / "dp.dcf", tmp_path / "flat.pt", flat=True)
    assert list(torch.load(tmp_path / "flat.pt", weights_only=True)) == ["fc.weight", "fc.bias"]


def test_plain_file_writes_no_layout_entry(tmp_path):
    """One plain file of tensors: the metadata is what it was before sources existed."""
    paths = write_all_formats(tmp_path, small_model())
    for kind in ("safetensors", "npz", "torch"):
        pack(paths[kind], tmp_path / f"{kind}.dcf")
        with dcformat.open(tmp_path / f"{kind}.dcf") as reader:
            meta = reader.metadata()
        assert "dcformat.source_layout" not in meta and meta["dcformat.source_format"] == kind


def test_a_dcf_input_carries_its_source_record(tmp_path):
    import torch

    torch.save({"model": {"w": torch.randn(64, 80)}, "epoch": 7}, tmp_path / "train.ckpt")
    pack(tmp_path / "train.ckpt", tmp_path / "a.dcf", metadata={"owner": "me"})
    pack(tmp_path / "a.dcf", tmp_path / "b.dcf", {"rules": [{"rank": 2, "bits": 4}]}, verify=True)
    with dcformat.open(tmp_path / "a.dcf") as a, dcformat.open(tmp_path / "b.dcf") as b:
        first, second = a.metadata(), b.metadata()
    for key in ("dcformat.source", "dcformat.source_format", "dcformat.source_layout", "owner"):
        assert second[key] == first[key], key
    assert second["dcformat.source"] == "train.ckpt" and second["dcformat.recipe"] != first["dcformat.recipe"]
    dcformat.pack.unpack(tmp_path / "b.dcf", tmp_path / "back.pt")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back["epoch"] == 7 and back["model"]["w"].shape == (64, 80)


@pytest.mark.timeout(120)
def test_a_read_failing_during_a_budget_search_stops_the_pack(tmp_path):
    """Searches run ahead on threads behind a gate; a tensor that cannot be read mid-way is one error,
    no hang, no output file."""
    rng = np.random.default_rng(0)
    model = {f"w{i}": rng.normal(0, 0.1, (64, 64 * (1 + i % 3))).astype(np.float32) for i in range(8)}
    save_file(model, str(tmp_path / "m.safetensors"))
    source = open_source(tmp_path / "m.safetensors")
    os.truncate(tmp_path / "m.safetensors", os.path.getsize(tmp_path / "m.safetensors") // 2)
    with source, pytest.raises(CheckpointError, match="the file ended inside tensor"):
        pack(source, tmp_path / "out.dcf", {"rules": [{"rank": 2, "max_error": 0.05}]}, threads=2)
    assert not (tmp_path / "out.dcf").exists()


# ----------------------------------------------------------------------------------------------
# Pickled objects: the library's own refusal, naming what the pickle holds


class _Net:
    """Stands for a user's class: a module-level name a pickle can refer to."""


def test_a_whole_module_is_refused_with_the_objects_it_holds(tmp_path):
    torch = pytest.importorskip("torch")
    from dcformat.pack.sources import PickledObjectsError

    for name, kwargs in (("zip.pt", {}), ("legacy.pt", {"_use_new_zipfile_serialization": False})):
        path = tmp_path / name
        torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path, **kwargs)
        with pytest.raises(PickledObjectsError) as caught:
            open_source(path)
        error = caught.value
        assert isinstance(error, CheckpointError)
        assert error.objects[:2] == ["torch.nn.modules.container.Sequential", "torch.nn.modules.linear.Linear"]
        message = str(error)
        assert "\n" not in message and "\x1b" not in message  # torch's text (bold escapes) is not in it
        assert "Weights only load failed" not in message
        assert message.startswith(repr(str(path)) + ": holds pickled Python objects (torch.nn.modules.container")
        assert message.endswith("torch.save(model.state_dict(), path)")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_the_objects_are_named_from_opcodes_without_running_them(tmp_path):
    pytest.importorskip("torch")
    from dcformat.pack.sources import PickledObjectsError, pickled_objects

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    for protocol in (2, 4):  # GLOBAL and STACK_GLOBAL (memoized strings)
        path = tmp_path / f"evil{protocol}.bin"
        path.write_bytes(pickle.dumps({"w": Evil(), "n": _Net(), "t": (1, 2.0, "x")}, protocol=protocol))
        with pytest.raises(PickledObjectsError) as caught:
            open_source(path)
        assert caught.value.objects == [f"{os.system.__module__}.system", f"{__name__}._Net"], protocol
        assert pickled_objects(path) == caught.value.objects  # without torch's list: the same answer
    assert not (tmp_path / "pwned").exists()


def test_a_damaged_torch_pickle_is_not_called_an_object(tmp_path):
    pytest.importorskip("torch")
    from dcformat.pack.sources import PickledObjectsError

    path = tmp_path / "cut.pt"
    path.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=2)[:9])
    with pytest.raises(CheckpointError) as caught:
        open_source(path)
    assert not isinstance(caught.value, PickledObjectsError)
    assert "torch.load(weights_only=True) failed" in str(caught.value)
