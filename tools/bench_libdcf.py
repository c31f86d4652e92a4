"""libdcf (the C decoder) beside the Python reader, for ``tools/benchmark.py``.

The library is driven through ctypes on ``build/native/libdcf.so`` (``make native``): the file's
bytes are in memory, the output buffers allocated and touched once before timing, so a timed run
is ``dcf_open_buffer`` (index and its CRC) plus one ``dcf_decode_tensor`` per tensor (every stream
CRC checked) on one thread, which is what an app pays when it decodes into its runtime's weight
memory. ``dcfdecode IN -o OUT`` is timed end to end as a process, with its peak RSS (``wait4``).
"""
from __future__ import annotations

import ctypes
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIB = ROOT / "build" / "native" / "libdcf.so"
DCFDECODE = ROOT / "build" / "native" / "dcfdecode"
OUT_NATIVE, OUT_F32 = 0, 1
FLOAT_DTYPES = {1, 2, 3, 4}
MAX_RANK = 8


class _TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("name_length", ctypes.c_size_t), ("dtype", ctypes.c_int),
                ("rank", ctypes.c_uint), ("shape", ctypes.c_uint64 * MAX_RANK), ("layout", ctypes.c_int),
                ("value_coding", ctypes.c_int), ("index_bits", ctypes.c_uint), ("codebook_dtype", ctypes.c_uint),
                ("codebook_size", ctypes.c_uint32), ("numel", ctypes.c_uint64), ("rows", ctypes.c_uint64),
                ("cols", ctypes.c_uint64), ("decoded_bytes", ctypes.c_uint64), ("stored_bytes", ctypes.c_uint64),
                ("entries", ctypes.c_uint64), ("chunk_count", ctypes.c_uint32)]


class _ErrorInfo(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 320)]


class LibDCF:
    """The few functions of ``dcf.h`` the benchmark needs."""

    def __init__(self, path: pathlib.Path = LIB):
        lib = ctypes.CDLL(str(path))
        vp, sz, u64p = ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint64)
        err = ctypes.POINTER(_ErrorInfo)
        for name, res, args in (
            ("dcf_ctx_new", vp, [vp]), ("dcf_ctx_free", None, [vp]),
            ("dcf_open_buffer", ctypes.c_int, [vp, vp, sz, err]), ("dcf_tensor_count", sz, [vp]),
            ("dcf_get_tensor_info", ctypes.c_int, [vp, sz, ctypes.POINTER(_TensorInfo)]),
            ("dcf_decoded_size", ctypes.c_int, [vp, sz, ctypes.c_int, u64p, err]),
            ("dcf_decode_tensor", ctypes.c_int, [vp, sz, vp, sz, ctypes.c_int, err]),
            ("dcf_scratch_size", ctypes.c_int, [vp, sz, ctypes.c_int, u64p]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib

    def open(self, data) -> "Context":
        return Context(self, data)


class Context:
    """A dcf_ctx on ``data`` (bytes kept alive while it is open)."""

    def __init__(self, lib: LibDCF, data):
        self.lib, self.data = lib.lib, data
        self._buffer = np.frombuffer(data, np.uint8)
        self.ctx = self.lib.dcf_ctx_new(None)
        if not self.ctx:
            raise MemoryError("dcf_ctx_new")
        err = _ErrorInfo()
        if self.lib.dcf_open_buffer(self.ctx, self._buffer.ctypes.data, len(data), ctypes.byref(err)):
            self.close()
            raise RuntimeError(f"libdcf: {err.message.decode()}")

    def tensors(self) -> list[tuple[str, _TensorInfo]]:
        """(name, info) of every tensor; the name copied (``info.name`` lives as long as the context)."""
        out = []
        for i in range(self.lib.dcf_tensor_count(self.ctx)):
            info = _TensorInfo()
            self.lib.dcf_get_tensor_info(self.ctx, i, ctypes.byref(info))
            out.append((ctypes.string_at(info.name, info.name_length).decode("utf-8"), info))
        return out

    def out_type(self, info: _TensorInfo) -> int:
        return OUT_F32 if info.dtype in FLOAT_DTYPES else OUT_NATIVE

    def output(self, i: int, info: _TensorInfo) -> np.ndarray:
        """A touched buffer for tensor i in its output type (float32 for floating tensors)."""
        from dcformat.structures import numpy_dtype

        dtype = np.float32 if self.out_type(info) == OUT_F32 else numpy_dtype(info.dtype)
        out = np.empty(tuple(info.shape[:info.rank]), dtype)
        out.reshape(-1).view(np.uint8)[:] = 0
        return out

    def decode_into(self, i: int, out: np.ndarray, out_type: int) -> None:
        err = _ErrorInfo()
        if self.lib.dcf_decode_tensor(self.ctx, i, out.ctypes.data, out.nbytes, out_type, ctypes.byref(err)):
            raise RuntimeError(f"libdcf: {err.message.decode()}")

    def scratch(self, i: int, out_type: int) -> int:
        n = ctypes.c_uint64()
        self.lib.dcf_scratch_size(self.ctx, i, out_type, ctypes.byref(n))
        return n.value

    def close(self) -> None:
        if self.ctx:
            self.lib.dcf_ctx_free(self.ctx)
            self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _median(fn, repeat: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds of this thread) of ``repeat`` calls after a warm-up one."""
    fn()  # warm: page cache, first touch of the outputs
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        start, cpu = time.perf_counter(), time.thread_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.thread_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


TIME = "/usr/bin/time"


def _process(cmd) -> tuple[float, int | None]:
    """(wall seconds, peak RSS bytes or None) of a child process. The RSS comes from GNU time's
    ``%M``, the rusage of a process forked from a small one: a child forked from this (large)
    process would report this process's RSS as its peak."""
    timed = os.path.exists(TIME)
    full = [TIME, "-f", "@@%M"] + [str(c) for c in cmd] if timed else [str(c) for c in cmd]
    start = time.perf_counter()
    result = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {result.stderr[-500:]}")
    marks = [line for line in result.stderr.splitlines() if line.startswith("@@")]
    return seconds, int(marks[-1][2:]) * 1024 if timed and marks else None


def measure(path: str, repeat: int, lib: LibDCF | None = None) -> dict:
    """One .dcf file: the Python reader and libdcf on one thread (bit for bit the same arrays),
    dcfdecode end to end with its peak RSS, and the memory budget it is held to."""
    import dcformat

    lib = lib or LibDCF()
    with open(path, "rb") as f:
        data = f.read()
    with lib.open(data) as ctx:
        named = ctx.tensors()
        infos = [t for _, t in named]
        outs = [ctx.output(i, t) for i, t in enumerate(infos)]
        types = [ctx.out_type(t) for t in infos]
        scratch = max((ctx.scratch(i, types[i]) for i in range(len(infos))), default=0)

    def c_decode():
        with lib.open(data) as c:
            for i, (out, kind) in enumerate(zip(outs, types)):
                c.decode_into(i, out, kind)

    c_seconds, c_cpu = _median(c_decode, repeat)
    py_seconds, py_cpu = _median(lambda: dcformat.load(data, threads=1), repeat)
    reference = dcformat.load(data, threads=1)
    for (name, t), out in zip(named, outs):
        want = reference[name]
        want = want.astype(np.float32) if t.dtype in FLOAT_DTYPES else want
        if out.shape != want.shape or out.tobytes() != np.ascontiguousarray(want).tobytes():
            raise AssertionError(f"libdcf and the Python reader decode {name!r} differently")
    output_bytes = sum(o.nbytes for o in outs)
    del reference
    with tempfile.TemporaryDirectory(prefix="dcfdecode-") as tmp:
        target = os.path.join(tmp, "out.safetensors")
        runs = [_process([DCFDECODE, path, "-o", target, "-f"]) for _ in range(max(1, repeat) + 1)][1:]
        base = [_process([DCFDECODE, "--list", path])[1] for _ in range(3)]
    largest = max((t.decoded_bytes for t in infos), default=0)
    rss = [r[1] for r in runs if r[1] is not None]
    return {"file_bytes": len(data), "output_bytes": output_bytes, "tensors": len(infos),
            "c_seconds": c_seconds, "c_cpu": c_cpu, "py_seconds": py_seconds, "py_cpu": py_cpu,
            "dcfdecode_seconds": statistics.median(r[0] for r in runs),
            "dcfdecode_rss": max(rss) if rss else None,
            "list_rss": min(b for b in base) if None not in base else None,
            "largest_tensor": largest, "scratch": scratch,
            "budget": len(data) + largest + scratch}


def available() -> str | None:
    """None if libdcf.so and dcfdecode are built, else why not."""
    missing = [str(p.relative_to(ROOT)) for p in (LIB, DCFDECODE) if not p.exists()]
    return f"{', '.join(missing)} missing: run `make native`" if missing else None
