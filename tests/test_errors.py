"""The library's errors: those of a file opened by path lead with that path, once (in the library
and in the tools), and every error class a caller may catch is exported."""
import io
import subprocess
import sys

import numpy as np
import pytest

import dcformat
from dcformat.errors import BadMagicError, ChecksumError, DCFormatError


def _corrupt_first_stream(path, out):
    """Copy ``path`` to ``out`` with one byte of the first tensor's first stream flipped."""
    with dcformat.open(path) as reader:
        stream = reader.info(reader.keys()[0]).chunks[0].streams[0]
    data = bytearray(path.read_bytes())
    data[stream.offset + stream.length // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "model.dcf"
    dcformat.save_file({"w": np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64)}, good)
    not_dcf = tmp_path / "train.py"
    not_dcf.write_text("print('this is a Python script, not a model')\n" * 4)
    return good, not_dcf, _corrupt_first_stream(good, tmp_path / "bad.dcf")


def test_open_names_the_path_of_a_file_that_is_not_dcf(files):
    _, not_dcf, _ = files
    with pytest.raises(BadMagicError) as caught:
        dcformat.open(not_dcf)
    assert str(caught.value) == f"{not_dcf}: not a dcf file (bad magic)"
    assert caught.value.path == str(not_dcf)


@pytest.mark.parametrize("call", ["get_tensor", "get_tensors", "get_slice", "verify_all", "load_file"])
def test_a_corrupted_stream_names_the_path(files, call):
    _, _, bad = files
    with pytest.raises(ChecksumError) as caught:
        if call == "load_file":
            dcformat.load_file(bad)
        else:
            with dcformat.open(bad) as reader:
                {"get_tensor": lambda: reader.get_tensor("w"), "get_tensors": reader.get_tensors,
                 "get_slice": lambda: reader.get_slice("w")[3:5], "verify_all": reader.verify_all}[call]()
    message = str(caught.value)
    assert message.startswith(f"{bad}: ") and message.count(str(bad)) == 1, message
    assert "checksum" in message


def test_a_named_file_object_names_its_path_and_a_buffer_names_nothing(files):
    _, not_dcf, bad = files
    with open(not_dcf, "rb") as handle, pytest.raises(BadMagicError, match=f"^{str(not_dcf)!s}: "):
        dcformat.open(handle)
    with pytest.raises(ChecksumError) as caught:
        dcformat.load(bad.read_bytes())
    assert caught.value.path is None and str(caught.value).startswith("'w': ")
    with pytest.raises(BadMagicError) as caught:
        dcformat.open(io.BytesIO(not_dcf.read_bytes()))
    assert caught.value.path is None


def test_the_path_is_added_once_even_when_an_error_is_raised_again(files):
    _, not_dcf, _ = files
    from dcformat.errors import name_path

    error = BadMagicError("not a dcf file (bad magic)")
    name_path(name_path(error, "a.dcf"), "b.dcf")
    assert str(error) == "a.dcf: not a dcf file (bad magic)" and isinstance(error, DCFormatError)


@pytest.mark.parametrize("tool", ["dcinfo", "dcunpack"])
def test_the_tools_name_the_path_once(files, tool, tmp_path):
    _, not_dcf, bad = files
    args = [str(not_dcf)] if tool == "dcinfo" else [str(not_dcf), "-o", str(tmp_path / "out.safetensors")]
    done = subprocess.run([sys.executable, "-m", f"dcformat.cli.{tool}", *args], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.count(str(not_dcf)) == 1, done.stderr
    assert "not a dcf file" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_every_packing_error_is_exported_and_is_a_library_error():
    import dcformat.pack as pack
    from dcformat.pack import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)
               and c.__module__ == errors.__name__]
    assert {c.__name__ for c in classes} >= {"PickledObjectsError", "PatternError", "TargetTooSmall"}
    for c in classes:
        assert getattr(pack, c.__name__) is c and c.__name__ in pack.__all__
        assert issubclass(c, DCFormatError) and c.__doc__
    from dcformat.pack.sources import PickledObjectsError
    from dcformat.pack.target import TargetTooSmall

    assert PickledObjectsError is pack.PickledObjectsError and TargetTooSmall is pack.TargetTooSmall
