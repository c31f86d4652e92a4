"""Attachment names that would be one file (or a file and a folder) on a file system that ignores
case or normalizes Unicode (macOS, Windows): refused when packing, naming both; and a folder
output never lets one attachment replace another or the weights."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import dcformat
from dcformat.cli import dcpack
from dcformat.pack import PackError, pack, unpack
from dcformat.pack.attachments import name_collision, write_attachments


@pytest.mark.parametrize("names,words", [
    (["config.json", "Config.json"], "'config.json' and 'Config.json' differ only in case"),
    (["tokenizer/vocab.txt", "Tokenizer/Vocab.TXT"], "differ only in case"),
    (["caf\u00e9.txt", "CAFE\u0301.TXT"], "differ only in case (or Unicode form)"),  # NFC and NFD
    (["stra\u00dfe", "STRASSE"], "differ only in case"),  # full case folding
    (["a", "A/b.json"], "'a' would be a file where 'A/b.json' needs a folder"),
    (["a/b.json", "a"], "'a' would be a file where 'a/b.json' needs a folder"),
])
def test_names_that_collide(names, words):
    assert words in name_collision(names)


@pytest.mark.parametrize("names", [
    ["config.json", "tokenizer.json", "1_Pooling/config.json"],
    ["Dir/a.json", "dir/b.json"],  # one folder either way, two files
    ["a.json", "a.json.bak", "ab/a.json"],
    [],
])
def test_names_that_do_not_collide(names):
    assert name_collision(names) is None


def _folder(tmp_path, others):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w": np.arange(6, dtype=np.float32)}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    for name, data in others.items():
        (folder / name).write_bytes(data)
    return folder


def test_a_folder_with_names_that_differ_in_case_is_refused(tmp_path, capsys):
    folder = _folder(tmp_path, {"config.json": b"{}", "Config.json": b"{ }"})
    with pytest.raises(PackError, match="'(Config|config).json' and '(Config|config).json' differ only in case"):
        pack(folder, tmp_path / "m.dcf")
    assert not (tmp_path / "m.dcf").exists()
    assert dcpack.main([str(folder), "-o", str(tmp_path / "m.dcf"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "config.json" in err and "Config.json" in err and "macOS, Windows" in err and len(err.splitlines()) == 1


def test_attach_beside_a_folder_file_of_another_case_is_refused(tmp_path):
    folder = _folder(tmp_path, {"config.json": b"{}"})
    other = tmp_path / "Config.JSON"
    other.write_bytes(b"{}")
    with pytest.raises(PackError, match="differ only in case"):
        pack(folder, tmp_path / "m.dcf", attach=[str(other)])
    assert pack(folder, tmp_path / "m.dcf").file_bytes > 0  # without it: fine


def test_a_folder_output_never_replaces_a_file_it_wrote(tmp_path):
    """What a case-insensitive file system would do, made here with a file that is the weights: an
    attachment whose path is a file written a moment ago is refused, naming both."""
    folder = _folder(tmp_path, {"config.json": b"{}"})
    pack(folder, tmp_path / "m.dcf")
    out = tmp_path / "out"
    unpack(tmp_path / "m.dcf", str(out) + "/")
    with dcformat.open(tmp_path / "m.dcf") as f:
        with pytest.raises(dcformat.CorruptFileError, match="'config.json' and the attachment 'config.json' are one file"):
            write_attachments(f, str(out), force=True, taken=[str(out / "config.json")])
        assert write_attachments(f, str(out), force=True) == ["config.json"]
