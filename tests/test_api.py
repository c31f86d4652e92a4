"""The Python API's conventions: names checked before writing, a clear error after close, every
kind of source ``dcformat.open`` takes, docstrings and type hints, ``py.typed`` in the wheel."""
import builtins
import inspect
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

import dcformat
from dcformat.reader import DCFReader, TensorSlice

ROOT = pathlib.Path(__file__).parent.parent


def _tensors():
    rng = np.random.default_rng(0)
    return {"w": rng.normal(size=(40, 30)).astype(np.float32), "b": np.arange(30, dtype=np.int16)}


def _assert_same(loaded, tensors):
    assert list(loaded) == list(tensors)
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lone\udcffsurrogate", "\ud800"])
def test_a_name_that_is_not_utf8_is_a_value_error_naming_it(name, tmp_path):
    tensors = {"ok": np.zeros(3, np.float32), name: np.zeros(3, np.float32)}
    target = tmp_path / "x.dcf"
    with pytest.raises(ValueError, match=re.escape(repr(name))) as caught:
        dcformat.save_file(tensors, target)
    assert isinstance(caught.value, dcformat.EncodingError)
    assert not isinstance(caught.value, UnicodeError)
    assert os.listdir(tmp_path) == []  # no file, no temporary file


@pytest.mark.parametrize("name", [3, b"bytes", None, ("a", "b")])
def test_a_name_that_is_not_a_str_is_a_type_error_naming_it(name):
    with pytest.raises(TypeError, match=re.escape(repr(name))):
        dcformat.save({"ok": np.zeros(3), name: np.zeros(3)})


def test_names_are_checked_before_anything_is_written():
    buffer = io.BytesIO()
    big = np.random.default_rng(1).normal(size=(200, 200)).astype(np.float32)
    with pytest.raises(ValueError, match="surrogate|UTF-8"):
        dcformat.save_file({"first": big, "second": big, "bad\udc80": big}, buffer)
    assert buffer.getvalue() == b""  # not even the preamble


@pytest.mark.parametrize("metadata", [{"k\udcff": "v"}, {"k": "v\udcff"}, {"k": 3}, {3: "v"}, [("k", "v")], "k=v"])
def test_bad_metadata_is_a_clear_error_before_writing(metadata, tmp_path):
    with pytest.raises((TypeError, ValueError)) as caught:
        dcformat.save_file({"w": np.zeros(3)}, tmp_path / "x.dcf", metadata=metadata)
    assert isinstance(caught.value, dcformat.DCFormatError)
    assert os.listdir(tmp_path) == []


def test_an_empty_or_too_long_name_is_refused():
    with pytest.raises(ValueError, match="1..4096 bytes"):
        dcformat.save({"": np.zeros(3)})
    with pytest.raises(ValueError, match="1..4096 bytes"):
        dcformat.save({"é" * 2049: np.zeros(3)})  # 4098 bytes of UTF-8


def test_an_object_that_is_not_an_array_names_the_tensor():
    with pytest.raises(TypeError, match="'weird'.*object"):
        dcformat.save({"weird": object()})


# -- after close ----------------------------------------------------------------------------

def _closed_reader(tmp_path):
    path = tmp_path / "m.dcf"
    dcformat.save_file(_tensors(), path)
    with dcformat.open(path) as f:
        sliced = f.get_slice("w")
    return f, sliced


@pytest.mark.parametrize("call", [
    lambda f: f.get_tensor("w"),
    lambda f: f.get_tensors(),
    lambda f: f.get_slice("w"),
    lambda f: f.get_codebook_tensor("w"),
    lambda f: f.keys(),
    lambda f: f.metadata(),
    lambda f: f.info("w"),
    lambda f: f.tensors_info(),
    lambda f: f.verify_all(),
    lambda f: "w" in f,
    lambda f: list(f),
    lambda f: len(f),
])
def test_every_call_after_close_raises_file_is_closed(call, tmp_path):
    f, _ = _closed_reader(tmp_path)
    with pytest.raises(dcformat.ClosedFileError, match="closed"):
        call(f)


def test_a_slice_taken_before_close_raises_after_close(tmp_path):
    _, sliced = _closed_reader(tmp_path)
    with pytest.raises(dcformat.ClosedFileError, match="closed"):
        sliced[0:2]
    assert sliced.get_shape() == [40, 30]  # the shape is in the index, already read


def test_closed_file_error_is_a_library_error_and_a_value_error():
    assert issubclass(dcformat.ClosedFileError, dcformat.DCFormatError)
    assert issubclass(dcformat.ClosedFileError, ValueError)  # as a closed Python file's


def test_close_twice_is_harmless(tmp_path):
    f, _ = _closed_reader(tmp_path)
    f.close()
    assert f.closed


# -- sources ------------------------------------------------------------------------------------

class _PathLike:
    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return str(self.path)


@pytest.mark.parametrize("kind", ["str", "pathlib", "bytes", "pathlike"])
def test_open_takes_every_kind_of_path(kind, tmp_path):
    path = tmp_path / "m.dcf"
    tensors = _tensors()
    dcformat.save_file(tensors, path)
    source = {"str": str(path), "pathlib": path, "bytes": os.fsencode(path), "pathlike": _PathLike(path)}[kind]
    with dcformat.open(source) as f:
        _assert_same(f.get_tensors(), tensors)
        assert f.path == str(path)
    _assert_same(dcformat.load_file(source), tensors)


def test_bytes_are_a_path_as_with_builtin_open(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dcformat.save_file(_tensors(), "m.dcf")
    with dcformat.open(b"m.dcf") as f:
        assert f.keys() == ["w", "b"]
    with pytest.raises(FileNotFoundError, match="missing.dcf"):
        dcformat.open(b"missing.dcf")
    with pytest.raises(ValueError, match=r"dcformat\.load\(data\)"):
        dcformat.load_file(dcformat.save(_tensors()))  # contents are not a path: a NUL byte says so


def test_contents_go_through_load_or_a_buffer():
    tensors = _tensors()
    data = dcformat.save(tensors)
    _assert_same(dcformat.load(data), tensors)
    for buffer in (bytearray(data), memoryview(data)):
        with dcformat.open(buffer) as f:
            _assert_same(f.get_tensors(), tensors)
    with DCFReader(data) as f:  # the class itself takes the contents, as before
        _assert_same(f.get_tensors(), tensors)


def test_open_takes_a_binary_file_opened_for_reading(tmp_path):
    path = tmp_path / "m.dcf"
    tensors = _tensors()
    dcformat.save_file(tensors, path)
    with path.open("rb") as handle:
        with dcformat.open(handle) as f:
            assert f.path == str(path)
            _assert_same(f.get_tensors(), tensors)
        assert not handle.closed  # the caller's file stays the caller's
        handle.seek(0)
        assert handle.read(4) == b"\x89DCF"
    with path.open("rb") as handle:
        _assert_same(dcformat.load_file(handle), tensors)


def test_open_reads_a_file_object_from_its_position(tmp_path):
    path = tmp_path / "archive.bin"
    tensors = _tensors()
    data = dcformat.save(tensors)
    path.write_bytes(b"some header of another format" + data)
    for handle in (path.open("rb"), io.BytesIO(path.read_bytes())):
        with handle:
            handle.seek(29)
            with dcformat.open(handle) as f:
                _assert_same(f.get_tensors(), tensors)


def test_open_takes_an_in_memory_file_and_a_pipe():
    tensors = _tensors()
    data = dcformat.save(tensors)
    with dcformat.open(io.BytesIO(data)) as f:
        _assert_same(f.get_tensors(), tensors)
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        writer.write(data)  # small enough for the pipe's buffer
        writer.close()
        _assert_same(dcformat.load_file(reader), tensors)


def test_a_path_to_a_named_pipe_is_read_not_mapped(tmp_path):
    tensors = _tensors()
    data = dcformat.save(tensors)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed():
        with builtins.open(fifo, "wb") as writer:
            writer.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        _assert_same(dcformat.load_file(fifo), tensors)
    finally:
        feeder.join()


def test_a_text_file_or_another_object_is_a_type_error(tmp_path):
    path = tmp_path / "m.dcf"
    dcformat.save_file(_tensors(), path)
    with path.open("r", encoding="latin-1") as handle, pytest.raises(TypeError, match="binary"):
        dcformat.open(handle)
    with pytest.raises(TypeError, match="int"):
        dcformat.open(3)


def test_a_file_object_with_bad_contents_is_a_format_error():
    with pytest.raises(dcformat.BadMagicError):
        dcformat.open(io.BytesIO(b"not a dcf file, long enough to hold a trailer"))


# -- documentation and types -------------------------------------------------------------------

def _public_callables():
    import dcformat.torch.io as torch_io

    seen = []
    for module, names in ((dcformat, dcformat.__all__), (torch_io, torch_io.__all__)):
        for name in names:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                seen.append((f"{module.__name__}.{name}", obj))
    for cls in (DCFReader, TensorSlice, dcformat.CodebookTensor, torch_io.TorchReader, torch_io.TorchSlice):
        for name, member in vars(cls).items():
            if inspect.isfunction(member) and (not name.startswith("_") or name in ("__getitem__", "__init__")):
                seen.append((f"{cls.__name__}.{name}", member))
    return seen


def test_every_public_function_has_a_real_docstring():
    missing = [name for name, obj in _public_callables()
               if name.split(".")[-1] != "__init__" and len(inspect.getdoc(obj) or "") < 25]
    assert missing == []


def test_every_public_function_has_type_hints():
    missing = []
    for name, obj in _public_callables():
        signature = inspect.signature(obj)
        for parameter in signature.parameters.values():
            if parameter.name != "self" and parameter.annotation is inspect.Parameter.empty:
                missing.append(f"{name}({parameter.name})")
        if signature.return_annotation is inspect.Signature.empty:
            missing.append(f"{name} -> ?")
    assert missing == []


def test_the_package_is_marked_typed():
    assert (ROOT / "dcformat" / "py.typed").is_file()
    assert re.search(r'\[tool\.setuptools\.package-data\]\s*\ndcformat\s*=\s*\[[^]]*"py\.typed"',
                     (ROOT / "pyproject.toml").read_text())


@pytest.mark.slow
def test_the_wheel_carries_py_typed(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "dcformat", source / "dcformat", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True)
    (wheel,) = (tmp_path / "dist").glob("dcformat-*.whl")
    assert "dcformat/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_readme_python_api_section_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Python API")
    section = text[start:text.index("\n## ", start + 1)]
    for needed in ("dcformat.torch", "load_file", "save_file", "get_slice", "load_dcf", "save_dcf"):
        assert needed in section
    monkeypatch.chdir(tmp_path)
    for code in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(code, "README.md", "exec"), {})


def test_importing_the_library_leaves_ctrl_c_to_the_program():
    """dcformat installs its quiet start-up Ctrl-C handler first thing, but only in a dcformat
    command's own process: a program that imports it keeps Python's KeyboardInterrupt."""
    code = ("import signal, dcformat, dcformat.pack; "
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code = ("import signal, sys; sys.argv[0] = 'dcinfo'; import dcformat; "
            "from dcformat.cli import _startup; assert signal.getsignal(signal.SIGINT) is _startup.on_interrupt")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
