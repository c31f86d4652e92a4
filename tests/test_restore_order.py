"""Tied tensors (aliases, spec 4.6.2) come back at their place in the source's order, not last, in
every output whose order means something (.pt, .npz, a folder's shards split anew) — where the
file says the order: a training checkpoint's tree, a sharded source's shard lists, or the layout's
``alias_positions``. The index alone cannot say it: a reader lists aliases after the entries."""
from __future__ import annotations

import json

import numpy as np
import pytest

import dcformat
from dcformat.pack import pack, unpack
from dcformat.pack.restore import ALIAS_POSITIONS, source_order, split_shards
from dcformat.writer import DCFWriter


def _tensors():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 8)).astype(np.float32)
    return {"embed.weight": emb, "layer.0.weight": rng.normal(size=(8, 8)).astype(np.float32),
            "head.weight": emb.copy(),  # bit-identical: stored once, as an alias of embed.weight
            "layer.1.weight": rng.normal(size=(8, 8)).astype(np.float32), "z.bias": np.zeros(8, np.float32)}


def test_a_tied_training_checkpoint_keeps_its_order(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 20))
    model[2].weight = model[0].weight  # tied: an output head sharing the embedding
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.arange(4)).sum().backward()
    optimizer.step()
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}
    torch.save(checkpoint, tmp_path / "ck.pt")
    pack(tmp_path / "ck.pt", tmp_path / "ck.dcf")
    with dcformat.open(tmp_path / "ck.dcf") as f:
        assert f.aliases() == {"model.2.weight": "model.0.weight"}
        assert list(f.keys())[-1] == "model.2.weight"  # the reader lists it last (spec 4.6.2)
    unpack(tmp_path / "ck.dcf", tmp_path / "back.pt")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back["model"]) == list(checkpoint["model"]) and back["epoch"] == 3
    assert back["model"]["2.weight"].data_ptr() == back["model"]["0.weight"].data_ptr()
    unpack(tmp_path / "ck.dcf", tmp_path / "back.npz")
    with np.load(tmp_path / "back.npz") as npz:
        assert [n for n in npz.files if n.startswith("model.")] == [f"model.{k}" for k in checkpoint["model"]]


def test_a_sharded_source_keeps_its_order_when_split_anew(tmp_path):
    from safetensors.numpy import save_file

    tensors = _tensors()
    names = list(tensors)
    folder = tmp_path / "src"
    folder.mkdir()
    groups = [names[:2], names[2:]]
    weight_map = {}
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: tensors[n] for n in group}, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, file))
    index = {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    pack(folder, tmp_path / "m.dcf")
    with dcformat.open(tmp_path / "m.dcf") as f:
        assert f.aliases() == {"head.weight": "embed.weight"}
    unpack(tmp_path / "m.dcf", tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        assert npz.files == names
    limit = 700  # bytes: the split save_pretrained makes of the source's order
    out = tmp_path / "out"
    unpack(tmp_path / "m.dcf", str(out) + "/", max_shard_size=limit)
    written = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    expected = split_shards(names, [tensors[n].nbytes for n in names], limit)
    assert len(expected) > 2 and expected != split_shards(
        [n for n in names if n != "head.weight"] + ["head.weight"], [tensors[n].nbytes for n in names], limit)
    for i, group in enumerate(expected):
        assert all(written[n] == f"model-{i + 1:05d}-of-{len(expected):05d}.safetensors" for n in group)


def _file_with_positions(path, positions):
    tensors = _tensors()
    layout = {} if positions is None else {ALIAS_POSITIONS: positions}
    with DCFWriter(path, metadata={"dcformat.source_layout": json.dumps(layout)}) as w:
        for name, array in tensors.items():
            if name != "head.weight":
                w.add(name, array)
        w.add_alias("head.weight", "embed.weight")
    return list(tensors)


def test_alias_positions_put_an_alias_back_in_its_place(tmp_path):
    names = _file_with_positions(tmp_path / "m.dcf", {"head.weight": 2})
    unpack(tmp_path / "m.dcf", tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        assert npz.files == names
        assert np.array_equal(npz["head.weight"], npz["embed.weight"])


@pytest.mark.parametrize("positions", [None, {"head.weight": 9}, {"head.weight": -1}, {"head.weight": "2"},
                                       {"head.weight": True}, {"nope": 1}, {"head.weight": 2, "x": 3}, [2]])
def test_alias_positions_that_do_not_fit_the_file_are_not_used(tmp_path, positions):
    names = _file_with_positions(tmp_path / "m.dcf", positions)
    unpack(tmp_path / "m.dcf", tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        assert npz.files == [n for n in names if n != "head.weight"] + ["head.weight"]


def test_source_order_places_every_name_once():
    from collections import namedtuple

    Info = namedtuple("Info", "name")
    infos = [Info(n) for n in ("a", "b", "c", "t")]
    tree = {"d": [["x", {"t": "c"}], ["y", {"l": [{"t": "t"}, {"t": "t"}, {"t": "gone"}]}], ["z", 3]]}
    assert [i.name for i in source_order(infos, {"tree": tree}, {"t"})] == ["c", "t", "a", "b"]
    assert [i.name for i in source_order(infos, {"shards": {"f1": ["b", "t"], "f2": ["a"]}}, {"t"})] == ["b", "t", "a", "c"]
    assert [i.name for i in source_order(infos, {ALIAS_POSITIONS: {"t": 0}}, {"t"})] == ["t", "a", "b", "c"]
    assert [i.name for i in source_order(infos, {}, {"t"})] == ["a", "b", "c", "t"]


def test_a_plain_tied_state_dict_keeps_its_order(tmp_path):
    torch = pytest.importorskip("torch")
    tensors = {k: torch.from_numpy(v) for k, v in _tensors().items()}
    tensors["head.weight"] = tensors["embed.weight"]  # the same storage
    torch.save(tensors, tmp_path / "sd.pt")
    pack(tmp_path / "sd.pt", tmp_path / "sd.dcf")
    unpack(tmp_path / "sd.dcf", tmp_path / "back.pt")
    assert list(torch.load(tmp_path / "back.pt", weights_only=True)) == list(tensors)
