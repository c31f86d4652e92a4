"""The packer's side of format 1.1 (dcformat/pack/attachments.py): which files of a model folder
become attachments, how tied tensors are recognised, and writing attachments into a folder
without ever writing outside it."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import dcformat
from dcformat.pack.attachments import TieFinder, folder_attachments, write_attachments

ROOT = pathlib.Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(12)
EMBED = RNG.normal(size=(30, 8)).astype(np.float32)


def _folder(tmp_path, tensors=None, name="model"):
    from safetensors.numpy import save_file

    folder = tmp_path / name
    (folder / "1_Pooling").mkdir(parents=True)
    save_file(tensors or {"embed.weight": EMBED, "dense.weight": RNG.normal(size=(8, 8)).astype(np.float32)},
              str(folder / "model.safetensors"))
    files = {
        "config.json": b'{"model_type": "bert", "hidden_size": 8}\n',
        "tokenizer.json": json.dumps({"model": {"vocab": {f"t{i}": i for i in range(300)}}}).encode(),
        "vocab.txt": "\n".join(["[PAD]", "[UNK]", "é", "日本"] + [f"w{i}" for i in range(200)]).encode(),
        "special_tokens_map.json": b'{"unk_token": "[UNK]"}',
        "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
        "README.md": "# A model\n\nbytes: \u00e9\r\n".encode(),
        "spm.model": bytes(range(256)) * 4,
    }
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    (folder / "data.npy").write_bytes(b"\x93NUMPY not attached")
    (folder / ".gitattributes").write_bytes(b"*.bin lfs\n")
    return folder, files


def test_folder_attachment_choice(tmp_path):
    folder, files = _folder(tmp_path)
    listed = sorted([*files, "data.npy"])
    chosen, left = folder_attachments(str(folder), listed)
    assert sorted(chosen) == sorted(files) and left == ["data.npy"]


def test_tie_finder():
    ties = TieFinder()
    assert ties.target("a", EMBED) is None
    assert ties.target("b", EMBED.copy()) == "a"
    assert ties.target("c", EMBED.reshape(8, 30)) is None  # another shape
    assert ties.target("d", EMBED.view(np.int32)) is None  # another dtype
    assert ties.target("e", np.float32(1.0)) is None and ties.target("f", np.float32(1.0)) is None  # scalars


def test_write_attachments_never_writes_outside_its_folder(tmp_path):
    folder, files = _folder(tmp_path)
    out = tmp_path / "m.dcf"
    dcformat.save_file({"w": EMBED}, out, attachments=files)
    written = tmp_path / "written"
    with dcformat.open(out) as f:
        assert sorted(write_attachments(f, str(written))) == sorted(files)
        with pytest.raises(FileExistsError):
            write_attachments(f, str(written))
        write_attachments(f, str(written), force=True)
    for rel, data in files.items():
        assert (written / rel).read_bytes() == data
    target = tmp_path / "restored"
    target.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, target / "1_Pooling")  # a link where an attachment's folder goes
    with dcformat.open(out) as f, pytest.raises(dcformat.CorruptFileError, match="outside"):
        write_attachments(f, str(target))
    assert os.listdir(elsewhere) == []
