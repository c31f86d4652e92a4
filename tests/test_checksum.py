"""The format's CRC-32: ISA-L's (optional extra ``fast``) and zlib's give the same values, and the
library works with either."""
import builtins
import importlib
import mmap
import pathlib
import zlib

import numpy as np
import pytest

import dcformat
from dcformat import checksum

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "spec" / "vectors"


def test_isal_and_zlib_agree_on_every_kind_of_buffer(tmp_path):
    isal_zlib = pytest.importorskip("isal.isal_zlib")
    rng = np.random.default_rng(0)
    for size in [0, 1, 2, 3, 7, 15, 16, 17, 63, 64, 65, 255, 4096, 65537, 1 << 20]:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert isal_zlib.crc32(data) == zlib.crc32(data), size
        assert isal_zlib.crc32(memoryview(data)[1:]) == zlib.crc32(data[1:]), size
        assert isal_zlib.crc32(np.frombuffer(data, np.uint8)) == zlib.crc32(data), size
    path = tmp_path / "blob"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        assert isal_zlib.crc32(view[5:70000]) == zlib.crc32(data[5:70000])
        view.release()


def test_without_isal_zlib_is_used_and_files_still_check(monkeypatch):
    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):
        if name.startswith("isal"):
            raise ImportError("no isal here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    fallback = importlib.reload(checksum)
    try:
        assert fallback.IMPLEMENTATION == "zlib" and fallback.crc32 is zlib.crc32
        for name in ("dcformat.reader", "dcformat.index_reader", "dcformat.writer"):
            monkeypatch.setattr(f"{name}.crc32", fallback.crc32)
        for vector in sorted(VECTORS.glob("*.dcf")):
            with dcformat.open(vector) as reader:
                reader.get_tensors()  # every stream's and the index's CRC checked with zlib's
        assert dcformat.save({"x": np.arange(10.0)}) == dcformat.save({"x": np.arange(10.0)})
    finally:
        monkeypatch.undo()
        importlib.reload(checksum)
