"""ctypes bindings of libdcf (build/native/libdcf.so) for the cross-check tests, and the build.

``build_native()`` runs ``make native`` once per test session and raises if it fails (a test
that needs the library then fails, never skips). ``Lib(path)`` wraps a built ``libdcf.so``;
``lib.open(data)`` returns a ``File`` whose methods decode like the Python reader, raising
``DcfError`` (with ``.code``, its ``DCF_ERR_*`` name in ``.name`` and the message) on failure.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import threading

import numpy as np

from dcformat.constants import DType
from dcformat.structures import numpy_dtype

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "build", "native")
LIB_PATH = os.path.join(NATIVE, "libdcf.so")
NOZSTD_LIB_PATH = os.path.join(NATIVE, "nozstd", "libdcf.so")
DCFDECODE = os.path.join(NATIVE, "dcfdecode")
NOZSTD_DCFDECODE = os.path.join(NATIVE, "nozstd", "dcfdecode")

_built = None
_lock = threading.Lock()


def build_native() -> None:
    """``make native`` at the repository root, once per process; raises RuntimeError if it fails."""
    global _built
    with _lock:
        if _built is None:
            done = subprocess.run(["make", "--no-print-directory", "native"], cwd=ROOT, capture_output=True, text=True)
            _built = (done.returncode, done.stdout + done.stderr)
    if _built[0] != 0:
        raise RuntimeError(f"make native failed:\n{_built[1][-4000:]}")


# The error codes of dcf.h, in order (checked against dcf_strerror's table by a test).
ERROR_NAMES = [
    "OK", "TRUNCATED", "BAD_MAGIC", "BAD_END_MAGIC", "UNSUPPORTED_VERSION", "RESERVED", "INDEX_CHECKSUM",
    "STREAM_CHECKSUM", "OFFSET", "INDEX_LEFTOVER", "BAD_UTF8", "DUPLICATE_NAME", "DUPLICATE_KEY", "BAD_ENUM",
    "BAD_FIELD", "COUNT_MISMATCH", "LIMIT_INDEX_LENGTH", "LIMIT_TENSORS", "LIMIT_METADATA", "LIMIT_RANK",
    "LIMIT_ELEMENTS", "LIMIT_CHUNK_ELEMENTS", "LIMIT_CODEBOOK_SIZE", "LIMIT_EXPANSION", "LIMIT_EMPTY_SHAPE",
    "LIMIT_EXTENSIONS", "LIMIT_ATTACHMENT_BYTES", "BAD_EXTENSION", "CRITICAL_EXTENSION",
    "LIMIT_TENSOR_BYTES", "LIMIT_SCRATCH", "BAD_CODEC_PARAM", "HUFFMAN_TABLE", "HUFFMAN_CODE", "PADDING",
    "VALUE_BOUND", "CSR_POSITION", "ZSTD", "ZSTD_UNSUPPORTED", "BUFFER_TOO_SMALL", "BAD_ARGUMENT", "OUT_TYPE",
    "NOT_FOUND", "NO_MEMORY", "IO",
]
ERR = {name: code for code, name in enumerate(ERROR_NAMES)}
OUT_NATIVE = 0
OUT_F32 = 1


class DcfError(Exception):
    def __init__(self, code: int, message: str):
        self.code = code
        self.name = ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else str(code)
        super().__init__(f"DCF_ERR_{self.name}: {message}")


class ErrorInfo(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 320)]


class Allocator(ctypes.Structure):
    _fields_ = [("malloc_fn", ctypes.c_void_p), ("free_fn", ctypes.c_void_p), ("user", ctypes.c_void_p)]


class Options(ctypes.Structure):
    _fields_ = [("allocator", Allocator), ("max_index_length", ctypes.c_uint64), ("max_tensors", ctypes.c_uint64),
                ("max_tensor_bytes", ctypes.c_uint64), ("max_scratch_bytes", ctypes.c_uint64),
                ("skip_checksums", ctypes.c_int), ("max_attachment_bytes", ctypes.c_uint64)]


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("name_length", ctypes.c_size_t), ("dtype", ctypes.c_int),
                ("rank", ctypes.c_uint), ("shape", ctypes.c_uint64 * 8), ("layout", ctypes.c_int),
                ("value_coding", ctypes.c_int), ("index_bits", ctypes.c_uint), ("codebook_dtype", ctypes.c_uint),
                ("codebook_size", ctypes.c_uint32), ("numel", ctypes.c_uint64), ("rows", ctypes.c_uint64),
                ("cols", ctypes.c_uint64), ("decoded_bytes", ctypes.c_uint64), ("stored_bytes", ctypes.c_uint64),
                ("entries", ctypes.c_uint64), ("chunk_count", ctypes.c_uint32)]


class ChunkInfo(ctypes.Structure):
    _fields_ = [("first_element", ctypes.c_uint64), ("element_count", ctypes.c_uint64),
                ("first_row", ctypes.c_uint64), ("row_count", ctypes.c_uint64), ("entries", ctypes.c_uint64),
                ("stored_bytes", ctypes.c_uint64)]


_P = ctypes.c_void_p
_SIG = {
    "dcf_options_init": (None, [_P]),
    "dcf_ctx_new": (_P, [_P]),
    "dcf_ctx_free": (None, [_P]),
    "dcf_open_buffer": (ctypes.c_int, [_P, _P, ctypes.c_size_t, _P]),
    "dcf_open_file": (ctypes.c_int, [_P, ctypes.c_char_p, _P]),
    "dcf_version_major": (ctypes.c_uint, [_P]),
    "dcf_version_minor": (ctypes.c_uint, [_P]),
    "dcf_metadata_count": (ctypes.c_size_t, [_P]),
    "dcf_metadata_get": (ctypes.c_int, [_P, ctypes.c_size_t, _P, _P, _P, _P]),
    "dcf_tensor_count": (ctypes.c_size_t, [_P]),
    "dcf_get_tensor_info": (ctypes.c_int, [_P, ctypes.c_size_t, _P]),
    "dcf_find_tensor": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t, _P]),
    "dcf_decoded_size": (ctypes.c_int, [_P, ctypes.c_size_t, ctypes.c_int, _P, _P]),
    "dcf_decode_tensor": (ctypes.c_int, [_P, ctypes.c_size_t, _P, ctypes.c_size_t, ctypes.c_int, _P]),
    "dcf_get_chunk_info": (ctypes.c_int, [_P, ctypes.c_size_t, ctypes.c_size_t, _P]),
    "dcf_decode_chunk": (ctypes.c_int, [_P, ctypes.c_size_t, ctypes.c_size_t, _P, ctypes.c_size_t, ctypes.c_int, _P]),
    "dcf_scratch_size": (ctypes.c_int, [_P, ctypes.c_size_t, ctypes.c_int, _P]),
    "dcf_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "dcf_alias_count": (ctypes.c_size_t, [_P]),
    "dcf_tensor_entry": (ctypes.c_int, [_P, ctypes.c_size_t, _P]),
    "dcf_attachment_count": (ctypes.c_size_t, [_P]),
    "dcf_get_attachment_info": (ctypes.c_int, [_P, ctypes.c_size_t, _P, _P, _P]),
    "dcf_decode_attachment": (ctypes.c_int, [_P, ctypes.c_size_t, _P, ctypes.c_size_t, _P]),
    "dcf_attachment_name_problem": (ctypes.c_char_p, [ctypes.c_char_p, ctypes.c_size_t]),
    "dcf_has_zstd": (ctypes.c_int, []),
    "dcf_lib_version": (ctypes.c_char_p, []),
}


class Lib:
    """A loaded libdcf.so."""

    def __init__(self, path: str = LIB_PATH):
        self.path = path
        self.c = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIG.items():
            fn = getattr(self.c, name)
            fn.restype = restype
            fn.argtypes = argtypes

    @property
    def has_zstd(self) -> bool:
        return bool(self.c.dcf_has_zstd())

    def options(self, **limits) -> Options:
        o = Options()
        self.c.dcf_options_init(ctypes.byref(o))
        for key, value in limits.items():
            setattr(o, key, value)
        return o

    def open(self, data: bytes, **limits) -> "File":
        return File(self, data, self.options(**limits) if limits else None)

    def open_code(self, buffer, size: int) -> int:
        """The code ``dcf_open_buffer`` returns for the first ``size`` bytes of the ctypes
        ``buffer`` (cheap: for trying every truncation of a file)."""
        ctx = self.c.dcf_ctx_new(None)
        try:
            return self.c.dcf_open_buffer(ctx, buffer, size, None)
        finally:
            self.c.dcf_ctx_free(ctx)

    def open_path(self, path: str, **limits) -> "File":
        return File(self, None, self.options(**limits) if limits else None, path=path)


class File:
    """One open context. Keeps ``data`` alive while open (the library reads it in place)."""

    def __init__(self, lib: Lib, data, options, path=None):
        self.lib = lib
        self.c = lib.c
        self.ctx = self.c.dcf_ctx_new(ctypes.byref(options) if options is not None else None)
        if not self.ctx:
            raise MemoryError("dcf_ctx_new failed")
        err = ErrorInfo()
        if path is not None:
            code = self.c.dcf_open_file(self.ctx, os.fsencode(path), ctypes.byref(err))
        else:
            self._data = ctypes.create_string_buffer(bytes(data), len(data)) if len(data) else None
            code = self.c.dcf_open_buffer(self.ctx, self._data, len(data), ctypes.byref(err))
        if code != 0:
            self.close()
            raise DcfError(code, err.message.decode("ascii", "replace"))

    def close(self) -> None:
        if self.ctx:
            self.c.dcf_ctx_free(self.ctx)
            self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    # -- queries -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.c.dcf_tensor_count(self.ctx)

    def version(self) -> tuple[int, int]:
        return self.c.dcf_version_major(self.ctx), self.c.dcf_version_minor(self.ctx)

    def metadata(self) -> dict[str, str]:
        out = {}
        for j in range(self.c.dcf_metadata_count(self.ctx)):
            key, klen, value, vlen = _P(), ctypes.c_size_t(), _P(), ctypes.c_size_t()
            self._check(self.c.dcf_metadata_get(self.ctx, j, ctypes.byref(key), ctypes.byref(klen),
                                                ctypes.byref(value), ctypes.byref(vlen)), None)
            out[ctypes.string_at(key, klen.value).decode()] = ctypes.string_at(value, vlen.value).decode()
        return out

    def info(self, i: int) -> TensorInfo:
        t = TensorInfo()
        self._check(self.c.dcf_get_tensor_info(self.ctx, i, ctypes.byref(t)), None)
        return t

    def name(self, i: int) -> str:
        t = self.info(i)
        return ctypes.string_at(t.name, t.name_length).decode()

    def names(self) -> list[str]:
        return [self.name(i) for i in range(len(self))]

    def find(self, name: str) -> int:
        raw = name.encode()
        i = ctypes.c_size_t()
        self._check(self.c.dcf_find_tensor(self.ctx, raw, len(raw), ctypes.byref(i)), None)
        return i.value

    def attachment_names(self) -> list[str]:
        out = []
        for j in range(self.c.dcf_attachment_count(self.ctx)):
            name, length, size = _P(), ctypes.c_size_t(), ctypes.c_uint64()
            self._check(self.c.dcf_get_attachment_info(self.ctx, j, ctypes.byref(name), ctypes.byref(length),
                                                       ctypes.byref(size)), None)
            out.append(ctypes.string_at(name, length.value).decode())
        return out

    def attachment(self, j: int, out_size: int | None = None) -> bytes:
        """The bytes of attachment ``j``."""
        name, length, size = _P(), ctypes.c_size_t(), ctypes.c_uint64()
        self._check(self.c.dcf_get_attachment_info(self.ctx, j, ctypes.byref(name), ctypes.byref(length),
                                                   ctypes.byref(size)), None)
        n = size.value if out_size is None else out_size
        buf = ctypes.create_string_buffer(max(n, 1))
        err = ErrorInfo()
        self._check(self.c.dcf_decode_attachment(self.ctx, j, buf, n, ctypes.byref(err)), err)
        return buf.raw[:size.value]

    def entry(self, i: int) -> int:
        """The tensor entry that index ``i`` decodes (itself, or an alias's target)."""
        e = ctypes.c_size_t()
        self._check(self.c.dcf_tensor_entry(self.ctx, i, ctypes.byref(e)), None)
        return e.value

    def chunk_info(self, i: int, c: int) -> ChunkInfo:
        info = ChunkInfo()
        self._check(self.c.dcf_get_chunk_info(self.ctx, i, c, ctypes.byref(info)), None)
        return info

    def decoded_size(self, i: int, out_type: int = OUT_NATIVE) -> int:
        size, err = ctypes.c_uint64(), ErrorInfo()
        self._check(self.c.dcf_decoded_size(self.ctx, i, out_type, ctypes.byref(size), ctypes.byref(err)), err)
        return size.value

    def scratch_size(self, i: int, out_type: int = OUT_NATIVE) -> int:
        size = ctypes.c_uint64()
        self._check(self.c.dcf_scratch_size(self.ctx, i, out_type, ctypes.byref(size)), None)
        return size.value

    # -- decoding ------------------------------------------------------------------------------
    def _dtype(self, i: int, out_type: int) -> np.dtype:
        return np.dtype(np.float32) if out_type == OUT_F32 else numpy_dtype(DType(self.info(i).dtype))

    def _shape(self, i: int) -> tuple[int, ...]:
        t = self.info(i)
        return tuple(int(t.shape[k]) for k in range(t.rank))

    def decode(self, i: int, out_type: int = OUT_NATIVE, out_size: int | None = None) -> np.ndarray:
        """Tensor ``i`` as a numpy array (its dtype, or float32), decoded by the C library."""
        size = self.decoded_size(i, out_type)
        buf = np.zeros(max(size if out_size is None else out_size, 1), np.uint8)
        err = ErrorInfo()
        self._check(self.c.dcf_decode_tensor(self.ctx, i, buf.ctypes.data, size if out_size is None else out_size,
                                             out_type, ctypes.byref(err)), err)
        return buf[:size].view(self._dtype(i, out_type)).reshape(self._shape(i))

    def decode_chunk(self, i: int, c: int, out_type: int = OUT_NATIVE, out_size: int | None = None) -> np.ndarray:
        info = self.chunk_info(i, c)
        dtype = self._dtype(i, out_type)
        size = info.element_count * dtype.itemsize
        buf = np.zeros(max(size if out_size is None else out_size, 1), np.uint8)
        err = ErrorInfo()
        self._check(self.c.dcf_decode_chunk(self.ctx, i, c, buf.ctypes.data, size if out_size is None else out_size,
                                            out_type, ctypes.byref(err)), err)
        return buf[:size].view(dtype)

    def decode_all(self, out_type: int = OUT_NATIVE) -> dict[str, np.ndarray]:
        return {self.name(i): self.decode(i, out_type) for i in range(len(self))}

    def _check(self, code: int, err) -> None:
        if code != 0:
            message = err.message.decode("ascii", "replace") if err is not None else self.c.dcf_strerror(code).decode()
            raise DcfError(code, message)
