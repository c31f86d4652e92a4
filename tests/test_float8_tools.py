"""float8 checkpoints through the tools (format 1.2): a safetensors or torch file with F8_E4M3 /
F8_E5M2 tensors is packed (lossless: bit-exact; lossy presets: quantized in float32, stored with a
codebook of the tensor's own float8 type, decoded float8 again), dcunpack writes the safetensors
file back in the package's own layout, dcinfo shows the dtypes, dcformat.torch gives torch's
float8 tensors."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import dcformat
from dcformat.constants import DType
from dcformat.conversion import float32_to_float8, float8_to_float32

torch = pytest.importorskip("torch")
from safetensors.torch import load_file as st_load  # noqa: E402
from safetensors.torch import save_file as st_save  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True)


def _data_section(path) -> tuple[dict, bytes]:
    raw = open(path, "rb").read()
    n = struct.unpack_from("<Q", raw)[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return header, raw[8 + n:]


def _codes(t):
    return t.view(torch.uint8) if t.element_size() == 1 and t.is_floating_point() else t


@pytest.fixture()
def checkpoint(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "fc.weight": (torch.randn(160, 256, generator=g) * 0.05).to(torch.float8_e4m3fn),
        "head.weight": (torch.randn(64, 96, generator=g) * 0.05).to(torch.float8_e5m2),  # above min_size 4096
        "fc.bias": torch.zeros(64),
        "specials": torch.tensor([0x7F, 0xFF, 0x80, 0x00, 0x7E, 0x01], dtype=torch.uint8).view(torch.float8_e4m3fn),
        "inf": torch.tensor([0x7C, 0xFC, 0x7D, 0x7B], dtype=torch.uint8).view(torch.float8_e5m2),
    }
    path = tmp_path / "fp8.safetensors"
    st_save(tensors, str(path), metadata={"format": "pt"})
    return path, tensors


def test_lossless_pack_and_unpack_is_bit_exact(checkpoint, tmp_path):
    path, tensors = checkpoint
    packed, back = tmp_path / "fp8.dcf", tmp_path / "back.safetensors"
    assert run("dcformat.cli.dcpack", path, "-o", packed, "-q").returncode == 0
    with dcformat.open(packed) as f:
        assert f.header.version == (1, 2)
        assert {n: f.info(n).dtype for n in f.keys()} == {
            "fc.weight": DType.F8_E4M3, "head.weight": DType.F8_E5M2, "fc.bias": DType.F32,
            "specials": DType.F8_E4M3, "inf": DType.F8_E5M2}
    done = run("dcformat.cli.dcunpack", packed, "-o", back, "-q")
    assert done.returncode == 0, done.stderr
    restored = st_load(str(back))
    for name, t in tensors.items():
        assert restored[name].dtype == t.dtype and torch.equal(_codes(restored[name]), _codes(t)), name
    # the tensors' layout and bytes are the source's (only the metadata differs: dcformat.* keys)
    (h1, d1), (h2, d2) = _data_section(path), _data_section(back)
    assert h1 == h2 and d1 == d2
    info = run("dcformat.cli.dcinfo", packed)
    assert info.returncode == 0 and "dcf 1.2" in info.stdout
    assert "F8_E4M3" in info.stdout and "F8_E5M2" in info.stdout


def test_torch_source_and_dcformat_torch(checkpoint, tmp_path):
    _, tensors = checkpoint
    pt = tmp_path / "fp8.pt"
    torch.save(tensors, pt)
    packed = tmp_path / "pt.dcf"
    assert run("dcformat.cli.dcpack", pt, "-o", packed, "-q").returncode == 0
    import dcformat.torch as dt

    loaded = dt.load_file(packed)
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype and torch.equal(_codes(loaded[name]), _codes(t)), name
    back = tmp_path / "back.pt"
    assert run("dcformat.cli.dcunpack", packed, "-o", back, "-q").returncode == 0
    again = torch.load(back, weights_only=True)
    assert all(again[n].dtype == t.dtype and torch.equal(_codes(again[n]), _codes(t)) for n, t in tensors.items())
    # dcformat.torch writes them too, and a dcf file of them is 1.2
    data = dt.save({"w": tensors["fc.weight"]})
    assert struct.unpack_from("<H", data, 6)[0] == 2
    assert torch.equal(_codes(dt.load(data)["w"]), _codes(tensors["fc.weight"]))


@pytest.mark.parametrize("args", [("--preset", "safe"), ("--sparsity", "0.5", "--bits", "4")])
def test_lossy_presets_keep_float8(checkpoint, tmp_path, args):
    path, tensors = checkpoint
    packed = tmp_path / "lossy.dcf"
    done = run("dcformat.cli.dcpack", path, "-o", packed, *args)
    assert done.returncode == 0, done.stderr
    with dcformat.open(packed) as f:
        coded = 0
        for name in ("fc.weight", "head.weight"):
            info = f.info(name)
            got = f.get_tensor(name)
            assert got.dtype.name == {"fc.weight": "float8_e4m3fn", "head.weight": "float8_e5m2"}[name]
            if info.value_coding.name == "CODEBOOK":  # the safe search may keep a small tensor lossless
                coded += 1
                assert int(info.codebook_dtype) == int(info.dtype)
                stored = f.get_codebook_tensor(name)
                assert stored.codebook.dtype == got.dtype  # decoded float8, codebook of that type
                want = np.where(stored.indices < 0, 0, stored.codebook.view(np.uint8)[np.maximum(stored.indices, 0)])
                assert got.view(np.uint8).tolist() == want.astype(np.uint8).tolist()
                # every codebook value is a float8 value: rounding it again changes nothing
                book = float8_to_float32(stored.codebook)
                assert float32_to_float8(book, info.dtype).tolist() == stored.codebook.view(np.uint8).tolist()
            original = _codes(tensors[name]).numpy().view(got.dtype)
            error = np.linalg.norm(float8_to_float32(got).astype(np.float64) - float8_to_float32(original)) / \
                np.linalg.norm(float8_to_float32(original).astype(np.float64))
            if args[1] == "safe":
                assert error <= 0.015 + 1e-9, (name, error)
            else:
                assert info.value_coding.name == "CODEBOOK" and info.codebook_size <= 16 and error > 0.05
        assert coded >= 1
        assert f.get_tensor("specials").view(np.uint8).tolist() == [0x7F, 0xFF, 0x80, 0x00, 0x7E, 0x01]
    assert "relative error" in done.stderr
