"""Torch tensors in and out: ``dcformat.save_file`` takes them, ``dcformat.torch`` returns them,
as ``safetensors.torch`` does."""
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dcformat  # noqa: E402
import dcformat.torch as dctorch  # noqa: E402
from dcformat.torch import io as torch_io  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int16, torch.int32,
          torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.bool]


def _tensor(dtype, shape=(6, 5), seed=0):
    generator = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        t = torch.randn(shape, generator=generator).to(dtype)
        t.view(-1)[0] = float("nan")
        t.view(-1)[1] = float("-inf")
        t.view(-1)[2] = -0.0
        return t
    if dtype == torch.bool:
        return torch.rand(shape, generator=generator) < 0.5
    info = torch.iinfo(dtype)
    low, high = max(info.min, -2**62), min(info.max, 2**62)
    return torch.randint(low, high, shape, generator=generator, dtype=torch.int64).to(dtype)


def _bits(t):
    """The exact bytes of a tensor (NaN payloads, -0.0 included)."""
    return t.reshape(-1).contiguous().view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8)


def _assert_identical(a, b):
    assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(_bits(a), _bits(b))


def _all_dtypes():
    return {f"t.{str(d).split('.')[-1]}": _tensor(d, seed=i) for i, d in enumerate(DTYPES)}


# -- core save_file takes torch tensors ---------------------------------------------------

def test_core_save_file_takes_torch_tensors_of_every_dtype(tmp_path):
    tensors = _all_dtypes()
    tensors["grad"] = torch.randn(4, 3, dtype=torch.bfloat16, requires_grad=True)
    tensors["leaf_grad"] = torch.randn(3, requires_grad=True) * 2  # a non-leaf in a graph
    dcformat.save_file(tensors, tmp_path / "m.dcf")
    loaded = dcformat.load_file(tmp_path / "m.dcf")
    for name, t in tensors.items():
        _assert_identical(torch_io.to_torch(loaded[name]), t.detach())


def test_core_save_takes_views_that_are_not_contiguous():
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    tensors = {"transposed": base.t(), "strided": base[::2, 1::3], "offset": base[3:, 4:],
               "expanded": torch.ones(1, 4).expand(5, 4), "scalar": torch.tensor(3.5),
               "empty": torch.zeros(0, 3, dtype=torch.int16)}
    loaded = dcformat.load(dcformat.save(tensors))
    for name, t in tensors.items():
        np.testing.assert_array_equal(loaded[name], t.numpy())
        assert loaded[name].shape == tuple(t.shape)


def test_a_torch_dtype_the_format_lacks_names_the_tensor():
    for dtype in (torch.complex64, getattr(torch, "float8_e4m3fnuz", torch.complex128)):  # float8_e4m3fn: 1.2
        with pytest.raises(TypeError, match=r"'odd'.*(complex64|float8)"):
            dcformat.save({"odd": torch.zeros(3, dtype=dtype)})


def test_a_sparse_tensor_is_refused_with_a_hint():
    with pytest.raises(TypeError, match="'s'.*to_dense"):
        dcformat.save({"s": torch.eye(3).to_sparse()})


def test_a_meta_tensor_has_no_data_to_write():
    with pytest.raises(TypeError, match="'m'.*meta"):
        dcformat.save({"m": torch.zeros(3, device="meta")})


def test_import_dcformat_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, dcformat, numpy; dcformat.save({'a': numpy.zeros(3)}); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


# -- dcformat.torch: the load/save pair ------------------------------------------------------

def test_torch_save_file_and_load_file_round_trip_every_dtype(tmp_path):
    tensors = _all_dtypes()
    dctorch.save_file(tensors, tmp_path / "m.dcf", metadata={"format": "pt"})
    loaded = dctorch.load_file(tmp_path / "m.dcf")
    assert list(loaded) == list(tensors)
    for name, t in tensors.items():
        _assert_identical(loaded[name], t)
        assert loaded[name].device.type == "cpu" and not loaded[name].requires_grad
    with dcformat.open(tmp_path / "m.dcf") as f:
        assert f.metadata() == {"format": "pt"}


def test_torch_save_and_load_bytes():
    tensors = _all_dtypes()
    data = dctorch.save(tensors)
    assert isinstance(data, bytes) and data[:4] == b"\x89DCF"
    loaded = dctorch.load(data)
    for name, t in tensors.items():
        _assert_identical(loaded[name], t)


def test_loaded_tensors_are_writable_without_warnings(tmp_path, recwarn):
    dctorch.save_file({"w": torch.randn(5, 4)}, tmp_path / "m.dcf")
    loaded = dctorch.load_file(tmp_path / "m.dcf")
    loaded["w"] += 1
    with dctorch.open(tmp_path / "m.dcf") as f:
        t = f.get_tensor("w")
        t.mul_(2)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_load_file_moves_tensors_to_the_device(tmp_path):
    dctorch.save_file({"w": torch.randn(5, 4)}, tmp_path / "m.dcf")
    loaded = dctorch.load_file(tmp_path / "m.dcf", device="meta")  # a device every torch build has
    assert loaded["w"].device.type == "meta" and loaded["w"].shape == (5, 4)
    with pytest.raises((RuntimeError, ValueError), match="nowhere|device"):
        dctorch.load_file(tmp_path / "m.dcf", device="nowhere")


def test_a_model_state_dict_round_trips(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 2))
    model.to(torch.bfloat16)
    dctorch.save_file(model.state_dict(), tmp_path / "m.dcf")
    fresh = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 2))
    fresh.to(torch.bfloat16)
    fresh.load_state_dict(dctorch.load_file(tmp_path / "m.dcf"))
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        _assert_identical(b, a)


def test_tied_weights_are_stored_under_both_names():
    shared = torch.randn(4, 4)
    loaded = dctorch.load(dctorch.save({"embed": shared, "head": shared, "half": shared[:2]}))
    _assert_identical(loaded["embed"], shared)
    _assert_identical(loaded["head"], shared)
    _assert_identical(loaded["half"], shared[:2])


def test_torch_open_gives_torch_tensors_and_slices(tmp_path):
    w = torch.randn(30, 8, dtype=torch.bfloat16)
    dctorch.save_file({"w": w}, tmp_path / "m.dcf", encodings={"w": {"chunk_elements": 40}})
    for opener in (lambda p: dctorch.open(p), lambda p: dcformat.open(p, framework="pt")):
        with opener(tmp_path / "m.dcf") as f:
            assert f.keys() == ["w"]
            _assert_identical(f.get_tensor("w"), w)
            sliced = f.get_slice("w")
            assert sliced.get_shape() == [30, 8] and sliced.get_dtype() == "BF16"
            _assert_identical(sliced[3:17, ::2], w[3:17, ::2])
            _assert_identical(sliced[-1], w[-1])
        with pytest.raises(dcformat.ClosedFileError):
            f.get_tensor("w")
        with pytest.raises(dcformat.ClosedFileError):
            sliced[0]


def test_open_with_an_unknown_framework_is_refused(tmp_path):
    dcformat.save_file({"w": np.zeros(3)}, tmp_path / "m.dcf")
    with pytest.raises(ValueError, match="framework"):
        dcformat.open(tmp_path / "m.dcf", framework="tf")
    with dcformat.open(tmp_path / "m.dcf", framework="np") as f:
        assert isinstance(f.get_tensor("w"), np.ndarray)


def test_torch_open_takes_a_file_object():
    data = dctorch.save({"w": torch.arange(6)})
    with dctorch.open(io.BytesIO(data)) as f:
        _assert_identical(f.get_tensor("w"), torch.arange(6))


def test_torch_save_file_refuses_non_tensors_by_name():
    with pytest.raises(TypeError, match="'x'"):
        dctorch.save({"x": "not a tensor"})


def test_torch_io_is_exported():
    for name in ("save_file", "load_file", "save", "load", "open"):
        assert getattr(dctorch, name) is getattr(torch_io, name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_tensor_is_saved_from_and_loaded_to_the_gpu(tmp_path):
    w = torch.randn(64, 32, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dcformat.save_file({"w": w}, tmp_path / "m.dcf")
    loaded = dctorch.load_file(tmp_path / "m.dcf", device="cuda")
    assert loaded["w"].device.type == "cuda"
    _assert_identical(loaded["w"].cpu(), w.detach().cpu())
    with dctorch.open(tmp_path / "m.dcf", device="cuda:0") as f:
        part = f.get_slice("w")[10:20]
    assert part.device == torch.device("cuda:0")
    _assert_identical(part.cpu(), w.detach().cpu()[10:20])
