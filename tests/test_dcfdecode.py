"""dcfdecode, the C command-line decoder: byte for byte the .safetensors dcunpack writes (golden
vectors, small checkpoints packed with every preset, the real MiniLM behind `slow`), the tensor
table of --list, one-line errors with exit status 1, usage errors with 2, the zstd-less build."""
from __future__ import annotations

import os
import subprocess

import pytest

from dcformat.cli import dcpack, dcunpack
from dcformat.errors import DCFormatError
from dcformat.index_reader import read_header
from dcformat.pack import save_checkpoint

from libdcf_helpers import DCFDECODE, NOZSTD_DCFDECODE, build_native
from pack_fixtures import bf16_model, minilm_checkpoint, small_model
from test_libdcf import VECTOR_DIR, VECTORS, uses_zstd


@pytest.fixture(scope="module", autouse=True)
def built():
    build_native()


def run(*args, exe=DCFDECODE):
    done = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def python_unpack(src, out) -> int:
    return dcunpack.main([str(src), "-o", str(out), "-q"])


def assert_same_as_dcunpack(src, tmp_path, exe=DCFDECODE):
    ours, theirs = tmp_path / "c.safetensors", tmp_path / "py.safetensors"
    for p in (ours, theirs):
        if p.exists():
            p.unlink()
    code, _, err = run(src, "-o", ours, exe=exe)
    assert code == 0, err
    assert python_unpack(src, theirs) == 0
    assert ours.read_bytes() == theirs.read_bytes()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# the same file as dcunpack

def _has_aliases(path) -> bool:
    try:
        return bool(getattr(read_header(open(path, "rb").read()), "aliases", {}))
    except DCFormatError:
        return False


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)  # aliases as full tensors in both (spec 4.6.2)
def test_vectors_decode_to_what_dcunpack_writes(path, tmp_path):
    try:
        read_header(open(path, "rb").read())
    except DCFormatError:
        code, _, err = run(path, "-o", tmp_path / "x.safetensors")
        assert code == 1 and len(err.splitlines()) == 1
        return
    assert_same_as_dcunpack(path, tmp_path)


@pytest.mark.parametrize("path", [p for p in VECTORS if _has_aliases(p)], ids=os.path.basename)
def test_aliases_are_written_as_full_tensors(path, tmp_path):
    """Spec 4.6.2: a converter to safetensors writes each alias as a tensor with its target's values."""
    from safetensors.numpy import load_file

    from test_libdcf import python_tensors

    out = tmp_path / "c.safetensors"
    code, _, err = run(path, "-o", out)
    assert code == 0, err
    _, names, py = python_tensors(open(path, "rb").read())
    got = load_file(str(out))
    assert sorted(got) == sorted(names)
    for name in names:
        assert got[name].dtype == py[name].dtype and got[name].tobytes() == py[name].tobytes()


PRESETS = {
    "lossless": [],
    "safe": ["--preset", "safe"],
    "max-error": ["--max-error", "0.05"],
    "aggressive": ["--preset", "aggressive"],
    "mobile": ["--profile", "mobile"],
    "pow2-f16": ["--sparsity", "0.7", "--bits", "4", "--pow2", "--codebook-float16"],
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    paths = {}
    paths["small"] = d / "small.safetensors"
    save_checkpoint(small_model(), paths["small"], metadata={"format": "pt", "note": "a \"quoted\"\n\tvalue é"})
    paths["bf16"] = d / "bf16.safetensors"
    save_checkpoint(bf16_model(), paths["bf16"])
    paths["prefixed"] = d / "prefixed.safetensors"
    save_checkpoint({f"module.{k}": v for k, v in small_model(1).items() if v.ndim}, paths["prefixed"])
    return paths


@pytest.mark.parametrize("model,preset", [("small", p) for p in sorted(PRESETS)] + [
    (m, p) for m in ("bf16", "prefixed") for p in ("lossless", "safe", "aggressive")])
def test_packed_checkpoints_decode_to_what_dcunpack_writes(checkpoints, model, preset, tmp_path):
    out = tmp_path / "m.dcf"
    assert dcpack.main([str(checkpoints[model]), "-o", str(out), "-q", *PRESETS[preset]]) == 0
    assert_same_as_dcunpack(out, tmp_path)


def test_metadata_and_prefix_come_back(checkpoints, tmp_path):
    """The output has the dcf metadata, the source's own, and the source's names."""
    import json
    import struct

    out = tmp_path / "m.dcf"
    assert dcpack.main([str(checkpoints["prefixed"]), "-o", str(out), "-q"]) == 0
    code, _, err = run(out, "-o", tmp_path / "c.safetensors")
    assert code == 0, err
    raw = (tmp_path / "c.safetensors").read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert all(name.startswith("module.") for name in header if name != "__metadata__")
    assert "dcformat.source_layout" in header["__metadata__"]


# ---------------------------------------------------------------------------------------------
# --list, --help, --version

def test_list_prints_the_tensor_table():
    path = os.path.join(VECTOR_DIR, "02_scalar_empty_types.dcf")
    code, out, err = run("--list", path)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["name", "dtype", "shape", "layout", "numel", "decoded_bytes", "stored_bytes"]
    header = read_header(open(path, "rb").read())
    assert len(lines) == 1 + len(header.tensors)
    for line, t in zip(lines[1:], header.tensors.values()):
        name, dtype, shape, layout, numel, decoded, stored = line.split()
        assert (name, dtype, layout) == (t.name, t.dtype.name, "dense")
        assert shape == ("x".join(map(str, t.shape)) if t.shape else "()")
        assert (int(numel), int(decoded), int(stored)) == (t.numel, t.numel * _size(t.dtype.name), t.stored_bytes)


def _size(name: str) -> int:
    return {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "I16": 2, "I32": 4, "I64": 8, "U8": 1, "U16": 2,
            "U32": 4, "U64": 8, "BOOL": 1}[name]


def test_list_marks_csr_and_codebooks():
    path = os.path.join(VECTOR_DIR, "04_csr_codebook_huffman.dcf")
    code, out, _ = run("--list", path)
    assert code == 0
    k = read_header(open(path, "rb").read()).tensors["fc.weight"].codebook_size
    assert out.splitlines()[1].split()[3] == f"csr+k{k}"


MINILM_NAMES = [f"encoder.layer.{i}.{m}.{p}" for i in range(6) for m in (
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm") for p in ("weight", "bias")]


def _listed(path, *flags, columns=None):
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    done = subprocess.run([DCFDECODE, "--list", *flags, str(path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("columns", [None, 60, 100])
def test_list_fits_the_width_and_keeps_rows_apart(tmp_path, columns):
    """A transformer's names (MiniLM's, 50 characters) make a 118-column table: it is fitted to
    COLUMNS (80 without it, as in a pipe), numel and decoded_bytes left out and the names shortened
    the way dcinfo shortens them, each row still its own; --wide gives the whole table."""
    import dcformat
    import numpy as np

    names = ["embeddings.word_embeddings.weight", *MINILM_NAMES, "pooler.dense.weight"]
    path = tmp_path / "m.dcf"
    dcformat.save_file({n: np.linspace(-1, 1, 12 * (i + 1), dtype=np.float32) for i, n in enumerate(names)}, path)
    lines = _listed(path, columns=columns)
    assert max(len(line) for line in lines) <= (columns or 80)
    assert lines[0].split() == ["name", "dtype", "shape", "layout", "stored_bytes"]
    rows = [line.split()[0] for line in lines[1:1 + len(names)]]
    assert len(set(rows)) == len(names) and "--wide" in lines[-1]
    header = read_header(path.read_bytes())
    for line, t in zip(lines[1:], header.tensors.values()):
        assert int(line.split()[-1]) == t.stored_bytes
    for row, name in zip(rows, names):  # numbers and the last segments are kept: layer 3's bias says so
        assert row == name or row.endswith(name.split(".")[-1]) or "..." in row, row
        assert name.split(".")[2] in row.split(".") if name.startswith("encoder.") and "..." not in row else True
    wide = _listed(path, "--wide", columns=columns)
    assert wide[0].split() == ["name", "dtype", "shape", "layout", "numel", "decoded_bytes", "stored_bytes"]
    assert [line.split()[0] for line in wide[1:]] == names
    assert max(len(line) for line in wide) > 100


def test_list_counts_characters_not_bytes_and_escapes_control_bytes(tmp_path):
    import dcformat
    import numpy as np

    names = ["modèle.décodeur.couche_de_sortie_très_longue." + "é" * 40 + ".poids", "tab\there", "z" * 300]
    path = tmp_path / "u.dcf"
    dcformat.save_file({n: np.zeros(2, np.float32) for n in names}, path)
    lines = _listed(path, columns=80)
    assert max(len(line) for line in lines) <= 80  # str: characters
    assert lines[2].startswith("tab\\x09here ") and "..." in lines[3]
    assert len({len(line) for line in lines[1:4]}) == 1  # the columns line up
    assert run("--wide", path)[0] == 2  # --wide goes with --list


def test_help_and_version():
    code, out, _ = run("--help")
    assert code == 0 and "dcfdecode IN.dcf -o OUT.safetensors" in out and "--list" in out
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("dcfdecode ") and "zstd built in" in out
    code, out, _ = run("--version", exe=NOZSTD_DCFDECODE)
    assert code == 0 and "zstd not built in" in out


# ---------------------------------------------------------------------------------------------
# errors

def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dcfdecode: ")
    return lines[0]


def test_bad_files_are_one_line_with_status_1(tmp_path):
    junk = tmp_path / "junk.dcf"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    code, _, err = run(junk, "-o", tmp_path / "x.safetensors")
    assert code == 1 and str(junk) in one_line(err) and "bad magic" in err
    vector = open(os.path.join(VECTOR_DIR, "04_csr_codebook_huffman.dcf"), "rb").read()
    short = tmp_path / "short.dcf"
    short.write_bytes(vector[:-5])
    code, _, err = run(short, "-o", tmp_path / "x.safetensors")
    assert code == 1 and "truncated" in one_line(err)
    code, _, err = run("--list", short)
    assert code == 1 and "truncated" in one_line(err)
    code, _, err = run(tmp_path / "missing.dcf", "-o", tmp_path / "x.safetensors")
    assert code == 1 and "cannot open" in one_line(err)
    assert not (tmp_path / "x.safetensors").exists()


def test_a_corrupt_stream_leaves_no_output(tmp_path):
    data = bytearray(open(os.path.join(VECTOR_DIR, "04_csr_codebook_huffman.dcf"), "rb").read())
    stream = read_header(bytes(data)).tensors["fc.weight"].chunks[0].streams[2]
    data[stream.offset + stream.length - 1] ^= 0x40
    bad = tmp_path / "bad.dcf"
    bad.write_bytes(bytes(data))
    target = tmp_path / "out.safetensors"
    code, _, err = run(bad, "-o", target)
    line = one_line(err)
    assert code == 1 and "'fc.weight'" in line and "checksum" in line
    assert os.listdir(tmp_path) == ["bad.dcf"]  # neither the target nor a temporary file


def test_usage_errors_are_status_2(tmp_path):
    vector = os.path.join(VECTOR_DIR, "01_dense_raw.dcf")
    assert run()[0] == 2
    assert run(vector)[0] == 2  # no -o
    assert run(vector, "-o", tmp_path / "x.npz")[0] == 2
    assert run(vector, "--frobnicate")[0] == 2
    assert run(vector, vector, "-o", tmp_path / "x.safetensors")[0] == 2
    assert run("--list", vector, "-o", tmp_path / "x.safetensors")[0] == 2
    assert run(vector, "-o")[0] == 2


def test_existing_output_needs_force(tmp_path):
    vector = os.path.join(VECTOR_DIR, "01_dense_raw.dcf")
    target = tmp_path / "x.safetensors"
    target.write_bytes(b"old")
    code, _, err = run(vector, "-o", target)
    assert code == 1 and "already exists" in one_line(err) and target.read_bytes() == b"old"
    code, _, err = run(vector, "-o", target, "-f")
    assert code == 0 and target.read_bytes() != b"old"


def test_without_zstd(tmp_path):
    for path in VECTORS:
        data = open(path, "rb").read()
        try:
            read_header(data)
        except DCFormatError:
            continue
        if uses_zstd(data):
            code, _, err = run(path, "-o", tmp_path / "z.safetensors", exe=NOZSTD_DCFDECODE)
            assert code == 1 and "built without zstd" in one_line(err)
        else:
            assert_same_as_dcunpack(path, tmp_path, exe=NOZSTD_DCFDECODE)


# ---------------------------------------------------------------------------------------------
# the real checkpoint

@pytest.mark.slow
@pytest.mark.parametrize("preset", ["lossless", "safe", "aggressive"])
def test_minilm_decodes_to_what_dcunpack_writes(preset, tmp_path):
    source = minilm_checkpoint()
    out = tmp_path / "m.dcf"
    args = [] if preset == "lossless" else ["--preset", preset]
    assert dcpack.main([source, "-o", str(out), "-q", *args]) == 0
    assert_same_as_dcunpack(out, tmp_path)


def test_bench_reports_the_decoded_bytes():
    path = os.path.join(VECTOR_DIR, "04_csr_codebook_huffman.dcf")
    code, out, err = run("--bench", "2", path)
    assert code == 0, err
    fields = dict(line.split() for line in out.splitlines())
    header = read_header(open(path, "rb").read())
    assert int(fields["tensors"]) == len(header.tensors)
    assert int(fields["decoded_bytes"]) == sum(t.numel * 4 for t in header.tensors.values())
    assert float(fields["MB_per_s_cpu"]) > 0 and float(fields["best_wall_s"]) > 0
    assert run("--bench", "0", path)[0] == 2
    assert run("--f32", path)[0] == 2


SOURCE_METADATA = [
    '{"format":"pt","b":"x"}', ' {"a" : "1" ,\n"b":"\\u00e9\\ud83d\\ude00\\n"} ', '{}', '{"a":1}', '{"a":{"b":"c"}}',
    '{"a":"1","a":"2"}', '{"a":"\\ud800"}', 'not json', '\ufeff{"a":"b"}', '{"a":NaN}', '["a"]', '"a"',
    '{"a":"b"} x', '{"dcformat.packer":"replaced","z":"last"}', '{"a":"\\u0000"}', '{"a":"b",}',
]


@pytest.mark.parametrize("value", SOURCE_METADATA)
def test_source_metadata_is_restored_as_dcunpack_restores_it(value, tmp_path):
    import dcformat
    import numpy as np

    src = tmp_path / "m.dcf"
    dcformat.save_file({"w": np.arange(6, dtype=np.float32)}, src,
                       metadata={"dcformat.packer": "dcformat 0", "dcformat.source_metadata": value, "k": "v"})
    assert_same_as_dcunpack(src, tmp_path)


def test_list_shows_aliases_and_attachments():
    for path in VECTORS:
        data = open(path, "rb").read()
        try:
            header = read_header(data)
        except DCFormatError:
            continue
        attachments = getattr(header, "attachments", {})
        aliases = getattr(header, "aliases", {})
        if not attachments and not aliases:
            continue
        code, out, _ = run("--list", path)
        assert code == 0
        table, _, rest = out.partition("\nattachment  bytes\n")
        rows = [line.split()[0] for line in table.splitlines()[1:]]
        assert rows == [*header.tensors, *aliases]
        assert [line.rsplit("  ", 1) for line in rest.splitlines()] == \
            [[name, str(a.size)] for name, a in attachments.items()]
