"""Hugging Face model folders, sharded checkpoints and training checkpoints: packed into one .dcf,
unpacked to the same shape (shards and index as save_pretrained writes them, nested .pt)."""
import json
import os

import numpy as np
import pytest
from pack_fixtures import bits, minilm_checkpoint
from safetensors.numpy import load_file, save_file

import dcformat
from dcformat.cli import dcpack, dcunpack
from dcformat.pack import CheckpointError, load_checkpoint, pack, unpack
from dcformat.pack.restore import parse_size, split_shards

OTHER_FILES = {"config.json": b'{"model_type": "bert", "hidden_size": 64}\n', "tokenizer.json": b'{"v": 1}',
               "vocab.txt": b"[PAD]\n[UNK]\nhello\n"}


def model(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for layer in range(3):
        out[f"encoder.layer.{layer}.attention.weight"] = rng.normal(0, 0.05, (64, 64)).astype(np.float32)
        out[f"encoder.layer.{layer}.attention.bias"] = rng.normal(0, 0.05, 64).astype(np.float32)
        out[f"encoder.layer.{layer}.ffn.weight"] = rng.normal(0, 0.05, (128, 64)).astype(np.float32)
    out["embeddings.word_embeddings.weight"] = rng.normal(0, 0.05, (200, 64)).astype(np.float32)
    out["embeddings.position_ids"] = np.arange(32, dtype=np.int64)[None]
    return out


def write_index(folder, weight_map, total_size, name):
    index = {"metadata": {"total_parameters": 1234, "total_size": total_size}, "weight_map": weight_map}
    (folder / name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def sharded_folder(folder, tensors, fmt="safetensors", shards=3):
    """A model folder as save_pretrained writes it: shards in state-dict order, index, other files."""
    folder.mkdir()
    names = list(tensors)
    groups = [names[i::shards] for i in range(shards)]
    weight_map = {}
    base, suffix = ("model", ".safetensors") if fmt == "safetensors" else ("pytorch_model", ".bin")
    for i, group in enumerate(groups):
        file = f"{base}-{i + 1:05d}-of-{shards:05d}{suffix}"
        if fmt == "safetensors":
            save_file({n: tensors[n] for n in group}, str(folder / file), metadata={"format": "pt"})
        else:
            import torch

            torch.save({n: torch.from_numpy(tensors[n].copy()) for n in group}, folder / file)
        weight_map.update(dict.fromkeys(group, file))
    write_index(folder, weight_map, sum(a.nbytes for a in tensors.values()), f"{base}{suffix}.index.json")
    for name, data in OTHER_FILES.items():
        (folder / name).write_bytes(data)
    return folder


def folder_tensors(folder):
    tensors, _ = load_checkpoint(folder)
    return tensors


def assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert bits(a[name]) == bits(b[name]), name


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_sharded_folder_round_trips_with_its_shards_and_index(tmp_path, fmt):
    tensors = model()
    src = sharded_folder(tmp_path / "src", tensors, fmt)
    result = pack(src, tmp_path / "m.dcf")
    assert result.parameters == sum(a.size for a in tensors.values())
    assert any("3 other files of the folder are stored inside the .dcf" in n and
               "config.json, tokenizer.json, vocab.txt" in n for n in result.notes)
    with dcformat.open(tmp_path / "m.dcf") as reader:
        meta = reader.metadata()
    layout = json.loads(meta["dcformat.source_layout"])
    assert meta["dcformat.source"] == "src" and meta["dcformat.source_format"] == fmt
    assert layout["folder"] == 1 and layout["index"].endswith(".index.json") and len(layout["shards"]) == 3

    done = unpack(tmp_path / "m.dcf", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(src))  # the same shards, index, files
    for name, data in OTHER_FILES.items():  # the folder's other files travel inside the .dcf (format 1.1)
        assert (tmp_path / "out" / name).read_bytes() == data
    src_names = sorted(n for n in os.listdir(src) if n not in OTHER_FILES)
    index_name = next(n for n in src_names if n.endswith(".index.json"))
    assert (tmp_path / "out" / index_name).read_bytes() == (src / index_name).read_bytes()
    for name in src_names:
        if name.endswith(".safetensors"):
            assert load_file(str(tmp_path / "out" / name)).keys() == load_file(str(src / name)).keys()
    assert_same(folder_tensors(tmp_path / "out"), tensors)
    assert len(done["files"]) == 4 + len(OTHER_FILES)


def test_index_path_works_like_its_folder(tmp_path):
    src = sharded_folder(tmp_path / "src", model())
    a = pack(src / "model.safetensors.index.json", tmp_path / "a.dcf")
    b = pack(src, tmp_path / "b.dcf")
    assert a.notes == b.notes and any("3 other files" in n for n in a.notes)
    with dcformat.open(tmp_path / "a.dcf") as a, dcformat.open(tmp_path / "b.dcf") as b:
        assert a.keys() == b.keys()
        assert a.metadata()["dcformat.source_layout"] == b.metadata()["dcformat.source_layout"]


def test_reshard_as_save_pretrained_does(tmp_path):
    tensors = model()
    pack(sharded_folder(tmp_path / "src", tensors), tmp_path / "m.dcf")
    unpack(tmp_path / "m.dcf", tmp_path / "out", max_shard_size="40KB")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    with dcformat.open(tmp_path / "m.dcf") as reader:
        order = reader.keys()
    sizes = [tensors[n].nbytes for n in order]
    groups = split_shards(order, sizes, 40_000)
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    assert index["metadata"] == {"total_parameters": 1234, "total_size": sum(sizes)}
    for file, group in zip(files, groups):
        assert sorted(load_file(str(tmp_path / "out" / file))) == sorted(group)
        assert sum(tensors[n].nbytes for n in group) <= 40_000 or len(group) == 1
    assert_same(folder_tensors(tmp_path / "out"), tensors)
    # one shard: no index, model.safetensors
    unpack(tmp_path / "m.dcf", tmp_path / "one", max_shard_size="5GB")
    assert sorted(os.listdir(tmp_path / "one")) == sorted(["model.safetensors", *OTHER_FILES])
    # torch shards from a safetensors source
    unpack(tmp_path / "m.dcf", tmp_path / "bin", max_shard_size="100KB", weights_format="torch")
    names = sorted(os.listdir(tmp_path / "bin"))
    count = len(split_shards(order, sizes, 100_000))
    assert count > 1 and names == sorted([f"pytorch_model-{i + 1:05d}-of-{count:05d}.bin" for i in range(count)] + [
        "pytorch_model.bin.index.json", *OTHER_FILES])
    assert_same(folder_tensors(tmp_path / "bin"), tensors)


def test_split_matches_huggingface_hub():
    hub = pytest.importorskip("huggingface_hub")
    torch = pytest.importorskip("torch")
    tensors = model()
    state = {n: torch.from_numpy(a.copy()) for n, a in tensors.items()}
    for limit in ("20KB", "40KB", "100KB", "1GB"):
        split = hub.split_torch_state_dict_into_shards(state, max_shard_size=limit)
        ours = split_shards(list(tensors), [a.nbytes for a in tensors.values()], parse_size(limit))
        assert list(split.filename_to_tensors.values()) == ours, limit
        assert split.metadata["total_size"] == sum(a.nbytes for a in tensors.values())


@pytest.mark.parametrize("text,value", [("5GB", 5 * 10**9), ("500MB", 5 * 10**8), ("2GiB", 2 * 2**30),
                                        ("1.5KB", 1500), ("123", 123), (4096, 4096)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["5 parsecs", "", "-3GB", "0", "GB"])
def test_parse_size_refuses(text):
    with pytest.raises(dcformat.pack.PackError, match="shard size"):
        parse_size(text)


def test_single_weights_folder_and_other_names(tmp_path):
    tensors = model()
    (tmp_path / "src").mkdir()
    save_file(tensors, str(tmp_path / "src" / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "src" / "config.json").write_bytes(OTHER_FILES["config.json"])
    result = pack(tmp_path / "src", tmp_path / "m.dcf")
    assert any("config.json" in n for n in result.notes)
    unpack(tmp_path / "m.dcf", tmp_path / "out/")
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    assert (tmp_path / "out" / "config.json").read_bytes() == OTHER_FILES["config.json"]
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (tmp_path / "src" / "model.safetensors").read_bytes()
    # a folder whose only weights file has another name
    (tmp_path / "other").mkdir()
    save_file(tensors, str(tmp_path / "other" / "diffusion_pytorch_model.safetensors"))
    pack(tmp_path / "other", tmp_path / "o.dcf")
    unpack(tmp_path / "o.dcf", tmp_path / "o_out")
    assert os.listdir(tmp_path / "o_out") == ["diffusion_pytorch_model.safetensors"]


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="a folder without model.safetensors or pytorch_model.bin"):
        pack(tmp_path / "empty", tmp_path / "x.dcf")
    (tmp_path / "two").mkdir()
    save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "two" / "a.safetensors"))
    save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "two" / "b.safetensors"))
    with pytest.raises(CheckpointError, match="several candidates"):
        pack(tmp_path / "two", tmp_path / "x.dcf")
    src = sharded_folder(tmp_path / "src", model())
    os.remove(src / "model-00002-of-00003.safetensors")
    with pytest.raises(CheckpointError, match="shard 'model-00002-of-00003.safetensors' is missing"):
        pack(src, tmp_path / "x.dcf")
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["weight_map"]["x"] = "../../etc/passwd"
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file name beside the index"):
        pack(src, tmp_path / "x.dcf")


def test_index_naming_a_tensor_no_shard_holds(tmp_path):
    src = sharded_folder(tmp_path / "src", model())
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["weight_map"]["ghost.weight"] = "model-00001-of-00003.safetensors"
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="in no shard .first: 'ghost.weight'"):
        pack(src, tmp_path / "x.dcf")


def test_cli_folder_round_trip(tmp_path, capsys):
    tensors = model()
    src = sharded_folder(tmp_path / "src", tensors, "torch")
    assert dcpack.main([str(src), "-o", str(tmp_path / "m.dcf")]) == 0
    err = capsys.readouterr().err
    assert "3 other files of the folder are stored inside the .dcf, byte-exact" in err
    assert dcunpack.main([str(tmp_path / "m.dcf"), "-o", str(tmp_path / "out") + "/", "--format", "safetensors",
                          "-q"]) == 0
    assert "model.safetensors.index.json" in os.listdir(tmp_path / "out")
    assert all((tmp_path / "out" / n).read_bytes() == d for n, d in OTHER_FILES.items())
    assert_same(folder_tensors(tmp_path / "out"), tensors)
    assert dcunpack.main([str(tmp_path / "m.dcf"), "-o", str(tmp_path / "x.pt"), "--max-shard-size", "1GB"]) == 2
    assert "apply to a folder output" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Training checkpoints


def trained_checkpoint():
    """A real training checkpoint: a model, torch.optim.Adam after two steps, an epoch, a scheduler."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.995))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    for _ in range(2):
        loss = net(torch.randn(8, 16)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": 3, "best": float("inf"), "note": "run 7", "history": [0.5, 0.25], "shape": torch.Size([4, 16]),
            "dtype": torch.float16, "flags": (True, None)}


def assert_equal_trees(a, b, path="root"):
    import torch

    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (path, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            assert type(key) is type(next(k for k in b if k == key)), (path, key)
            assert_equal_trees(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_trees(x, y, f"{path}.{i}")
    else:
        assert a == b, path


def test_training_checkpoint_round_trips_whole(tmp_path):
    import torch

    checkpoint = trained_checkpoint()
    torch.save(checkpoint, tmp_path / "train.pt")
    result = pack(tmp_path / "train.pt", tmp_path / "train.dcf")
    assert not result.warnings
    names = [t.name for t in result.tensors]
    assert "model.0.weight" in names and "optimizer.state.0.exp_avg" in names and "optimizer.state.3.step" in names
    assert len(names) == 4 + 4 * 3  # 4 parameters; Adam: step, exp_avg, exp_avg_sq per parameter
    note = next(n for n in result.notes if n.startswith("training checkpoint"))
    assert "'optimizer': 12" in note and "--key optimizer" in note
    assert "(optimizer (17), scheduler (8), epoch, best, note, history (2), … (3 more))" in note
    unpack(tmp_path / "train.dcf", tmp_path / "back.pt")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert_equal_trees(checkpoint, back)
    # the restored optimizer state loads into a fresh optimizer
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    net.load_state_dict(back["model"])
    optimizer = torch.optim.Adam(net.parameters())
    optimizer.load_state_dict(back["optimizer"])
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.995)


def test_key_picks_one_subtree(tmp_path):
    import torch

    checkpoint = trained_checkpoint()
    torch.save(checkpoint, tmp_path / "train.ckpt")
    result = pack(tmp_path / "train.ckpt", tmp_path / "model.dcf", key="model")
    assert [t.name for t in result.tensors] == list(checkpoint["model"])
    unpack(tmp_path / "model.dcf", tmp_path / "model.pt")
    assert_equal_trees(dict(checkpoint["model"]), dict(torch.load(tmp_path / "model.pt", weights_only=True)))
    result = pack(tmp_path / "train.ckpt", tmp_path / "opt.dcf", key="optimizer.state")
    assert result.tensors[0].name == "0.step"
    with pytest.raises(CheckpointError, match="--key 'epoch' is a int"):
        pack(tmp_path / "train.ckpt", tmp_path / "x.dcf", key="epoch")


def test_lightning_checkpoint_and_safetensors_output_note(tmp_path):
    import torch

    net = torch.nn.Linear(8, 80)
    ckpt = {"epoch": 2, "global_step": 40, "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}],
            "lr_schedulers": [], "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_score": None}},
            "hyper_parameters": {"hidden": 80, "name": "tiny"}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    result = pack(tmp_path / "last.ckpt", tmp_path / "l.dcf")
    assert [t.name for t in result.tensors] == ["state_dict.model.weight", "state_dict.model.bias"]
    done = unpack(tmp_path / "l.dcf", tmp_path / "l.safetensors")
    assert any("kept only by a .pt output" in n for n in done["notes"])
    assert sorted(load_file(str(tmp_path / "l.safetensors"))) == ["state_dict.model.bias", "state_dict.model.weight"]
    unpack(tmp_path / "l.dcf", tmp_path / "l.ckpt")
    assert_equal_trees(ckpt, torch.load(tmp_path / "l.ckpt", weights_only=True))


def test_entries_that_cannot_be_kept_are_listed(tmp_path):
    import torch

    torch.save({"w": torch.ones(5000), "c": complex(1, 2), "s": {1, 2}, 2.5: 1}, tmp_path / "odd.pt")
    result = pack(tmp_path / "odd.pt", tmp_path / "odd.dcf")
    assert len(result.warnings) == 1 and "3 entries cannot be stored" in result.warnings[0]
    assert "c (complex)" in result.warnings[0] and "s (set)" in result.warnings[0]
    done = unpack(tmp_path / "odd.dcf", tmp_path / "odd_back.pt")
    assert any("are missing" in n and "c (complex)" in n for n in done["notes"])
    back = torch.load(tmp_path / "odd_back.pt", weights_only=True)
    assert list(back) == ["w"] and torch.equal(back["w"], torch.ones(5000))


def test_training_checkpoint_lossy_keeps_the_structure(tmp_path):
    import torch

    checkpoint = trained_checkpoint()
    torch.save(checkpoint, tmp_path / "train.pt")
    pack(tmp_path / "train.pt", tmp_path / "lossy.dcf", {"rules": [{"rank": 2, "bits": 4, "min_size": 0}]})
    back = torch.load(unpack(tmp_path / "lossy.dcf", tmp_path / "back.pt")["files"][0], weights_only=True)
    assert back["epoch"] == 3 and back["optimizer"]["param_groups"] == checkpoint["optimizer"]["param_groups"]
    weight = back["model"]["0.weight"]
    assert weight.shape == (32, 16) and len(torch.unique(weight)) <= 16


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_sharded_minilm_with_config_and_tokenizer(tmp_path, fmt):
    """The real MiniLM as 3 shards + index (safetensors, and pytorch_model-*.bin) beside its config and
    tokenizer files: one .dcf, unpacked to the same shards with tensors equal to the originals and the
    other files byte-identical (they travel inside the .dcf as attachments, format 1.1)."""
    path = minilm_checkpoint()
    tensors, _ = load_checkpoint(path)
    src = sharded_folder(tmp_path / "src", tensors, fmt)
    model_dir = os.path.dirname(path)
    for name in os.listdir(model_dir):  # the package's own config/tokenizer files, where it has them
        if name.endswith((".json", ".txt")) and os.path.isfile(os.path.join(model_dir, name)):
            (src / name).write_bytes(open(os.path.join(model_dir, name), "rb").read())
    result = pack(src, tmp_path / "minilm.dcf")
    assert result.parameters == 22_713_216 or result.parameters == sum(a.size for a in tensors.values())
    unpack(tmp_path / "minilm.dcf", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(src))
    others = [n for n in os.listdir(src) if not n.startswith(("model", "pytorch_model"))]
    assert len(others) >= 3  # config and tokenizer files, besides the test's own OTHER_FILES
    for name in others:
        assert (tmp_path / "out" / name).read_bytes() == (src / name).read_bytes(), name
    assert_same(folder_tensors(tmp_path / "out"), tensors)
