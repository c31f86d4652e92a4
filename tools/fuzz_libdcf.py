"""Fuzz libdcf (the C decoder) under AddressSanitizer and UBSan, cross-checked with the Python reader.

    python tools/fuzz_libdcf.py --truncations --mutations 100000     # the campaign of issue 11
    python tools/fuzz_libdcf.py --mutations 5000 --seed 7            # a short one
    python tools/fuzz_libdcf.py --make-corpus DIR                    # libFuzzer's seed corpus
    python tools/fuzz_libdcf.py --replay FILE...                     # one file: both decoders' view

The inputs: (a) every truncation of every golden vector (every prefix, and every cut of the data
section with the index and trailer kept); (b) mutated files, reproducible from ``--seed`` and their
number: the structure-aware mutations of ``tests/fuzz_helpers.py`` (fields of the index, stream
payloads and codec headers, elements re-encoded past their bounds, always laid out again with every
offset and CRC recomputed, so that they reach the codecs), raw byte flips, sets, inserts and
deletes with the CRCs recomputed afterwards or not, and mutations aimed at one field of the index
(counts, lengths, shapes, codecs, params, ``index_bits``, codebook sizes) located by walking it. The
seeds: the golden vectors and small files the Python writer makes for every codec, layout, dtype,
index width and chunking (:func:`writer_corpus`). About a third of the inputs are read with
checksums skipped, by both decoders.

Each input goes to the sanitizer build of ``libdcf/fuzz/fuzz_decode.c`` (``make native-asan``),
which decodes it whole, chunk by chunk, as float32, with and without checksums and with one failed
allocation, aborting on any broken promise; and to the Python reader (``dcformat.open``, the limit
``max_tensor_bytes`` of ``tests/fuzz_helpers.py`` in both). Findings: a sanitizer report, a crash,
a hang (``--timeout``), a leak (LeakSanitizer at each driver exit, every ``--batch`` inputs), and
any disagreement between the two decoders: a file one accepts and the other refuses, a tensor
table, metadata or decoded values (native or float32) that differ. Each finding is saved under
``--findings`` with a note; the counts are printed at the end (inputs, accepted, refused by error
code). Exit status 1 if there was a finding.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import random
import re
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import dcformat  # noqa: E402
import fuzz_helpers as fh  # noqa: E402
from dcformat.errors import DCFormatError  # noqa: E402
from dcformat.conversion import float8_to_float32  # noqa: E402
from dcformat.structures import numpy_dtype  # noqa: E402

DRIVER = ROOT / "build" / "native-asan" / "dcf_fuzz_driver"
HEADER = ROOT / "libdcf" / "dcf.h"
MAX_TENSOR_BYTES = fh.FUZZ_MAX_TENSOR_BYTES
FLOAT_DTYPES = {1, 2, 3, 4, 14, 15}  # F32, F16, BF16, F64, F8_E4M3, F8_E5M2 (1.2)
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:allocator_may_return_null=1:"
                    "detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "LSAN_OPTIONS": "exitcode=23",
}


def error_names(header: pathlib.Path = HEADER) -> dict[int, str]:
    """Number -> name of libdcf's error codes, read from dcf.h."""
    text = header.read_text()
    body = text[text.index("typedef enum dcf_error"):]
    body = body[body.index("{") + 1:body.index("}")]
    names = re.findall(r"^\s*(DCF_[A-Z0-9_]+)\s*(?:=\s*(\d+))?\s*,?", re.sub(r"/\*.*?\*/", "", body, flags=re.S),
                       re.M)
    out, value = {}, 0
    for name, explicit in names:
        value = int(explicit) if explicit else value
        out[value] = name
        value += 1
    return out


# ------------------------------------------------------------------------------------------------
# The seed corpus: golden vectors and files of the Python writer


def vectors() -> list[pathlib.Path]:
    return sorted(fh.VECTORS.rglob("*.dcf"))


def writer_corpus(quick: bool = False) -> dict[str, bytes]:
    """Small files of the Python writer: every dtype with every codec allowed for it, codebook tensors
    (dense and CSR, float32 and float16 codebooks, k from 1 to 4000), CSR with every index width,
    several chunks, Huffman lanes, alignment, metadata, empty and 0-d tensors. ``quick``: a fifth
    of them, still every dtype, codec, layout and coding (for the default test suite)."""
    from dcformat.encoding import Encoding
    from dcformat.tensors import CodebookTensor

    rng = np.random.default_rng(11)
    out = {}
    codecs = ("plain", "bitpack", "huffman", "zstd", "byteplanes")
    dtypes = {"f32": np.float32, "f16": np.float16, "bf16": numpy_dtype(3), "f64": np.float64,
              "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "u8": np.uint8,
              "u16": np.uint16, "u32": np.uint32, "u64": np.uint64, "bool": np.bool_,
              "f8e4m3": numpy_dtype(14), "f8e5m2": numpy_dtype(15)}

    def values(dtype, shape):
        dt = np.dtype(dtype)
        if dt == np.bool_:
            return rng.random(shape) < 0.3
        if dt.kind == "f" or dt.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
            v = rng.laplace(0, 0.05, size=shape).astype(np.float32)
            v[rng.random(shape) < 0.4] = 0
            return v.astype(dt)
        info = np.iinfo(dt)
        v = rng.integers(max(info.min, -40), min(info.max, 40) + 1, size=shape)
        v[rng.random(shape) < 0.4] = 0
        return v.astype(dt)

    def save(name, tensors, encodings=None, **kw):
        try:
            out[name] = dcformat.save(tensors, encodings=encodings, **kw)
        except DCFormatError:
            pass  # an encoding this writer refuses for this tensor: nothing to seed

    for i, (dname, dtype) in enumerate(dtypes.items()):
        a = values(dtype, (5, 9))
        for j, codec in enumerate(codecs):
            if quick and j not in (i % 5, (i + 2) % 5):
                continue
            save(f"dense_{dname}_{codec}", {"t": a}, {"t": Encoding(layout="dense", codecs=(codec,), codebook="never")})
            save(f"dense_{dname}_{codec}_chunks", {"t": a},
                 {"t": Encoding(layout="dense", codecs=(codec,), codebook="never", chunk_elements=8)})
        save(f"csr_{dname}_chunks", {"t": a}, {"t": Encoding(layout="csr", codebook="never", chunk_elements=9)})
        if not quick:
            save(f"csr_{dname}", {"t": a}, {"t": Encoding(layout="csr", codebook="never")})
            save(f"auto_{dname}", {"t": a})
    for k in ((2, 16, 300) if quick else (1, 2, 16, 300, 4000)):
        for layout in ("dense", "csr"):
            for cb_dtype in (np.float32, np.float16):
                shape = (30, 100) if k == 4000 else (6, 20)
                codebook = np.unique(rng.normal(0, 0.1, size=k).astype(cb_dtype))
                indices = rng.integers(-1, len(codebook), size=shape)
                for out_dtype in (np.float32, np.float16, numpy_dtype(3), np.float64, numpy_dtype(14), numpy_dtype(15)):
                    if out_dtype != np.float32 and (k != 16 or layout != "csr"):
                        continue
                    if k == 4000 and cb_dtype != np.float32:
                        continue
                    t = CodebookTensor(codebook, indices, out_dtype)
                    name = f"codebook_{layout}_k{k}_{np.dtype(cb_dtype).name}_{np.dtype(out_dtype).name}"
                    for codec in ("plain", "bitpack", "huffman", "zstd"):
                        if codec != "huffman" and (k != 16 or quick and out_dtype != np.float32):
                            continue
                        save(f"{name}_{codec}", {"w": t}, {"w": Encoding(layout=layout, codecs=(codec,))})
                    save(f"{name}_chunks", {"w": t}, {"w": Encoding(layout=layout, chunk_elements=25)})
    sparse = values(np.float32, (12, 300))
    sparse[rng.random(sparse.shape) < 0.8] = 0
    for bits in ((1, 2, 5, 8, 12, 16) if quick else range(1, 17)):
        for codec in (("bitpack", "huffman") if quick else ("bitpack", "huffman", "plain")):
            save(f"csr_index_bits_{bits}_{codec}", {"w": sparse},
                 {"w": Encoding(layout="csr", index_bits=bits, codecs=(codec,), codebook="never")})
    for lanes in ((1, 3, 8) if quick else range(1, 9)):
        save(f"huffman_lanes_{lanes}", {"w": rng.integers(0, 7, size=700).astype(np.uint8)},
             {"w": Encoding(codecs=("huffman",), huffman_lanes=lanes)})
    save("aligned_metadata_empty_scalar",
         {"s": np.float32(2.5), "e": np.zeros((0, 4), np.float32), "b": np.array([True, False]),
          "w": values(np.float16, (3, 3))},
         metadata={"name": "fuzz", "\u00fcn\u00ef": "\u00e7\u00f8d\u00e9 \u2603"}, alignment_log2=6)
    save("empty_huge_dims", {"e": np.zeros((0, 3, 2**20), np.uint8)})
    save("lossless_codebook_auto", {"w": rng.choice(np.float32([0.5, -0.25, 1.0]), size=(20, 20))})
    save("mobile_profile", {"w": values(np.float32, (16, 16)), "b": values(np.int8, (30,))}, profile="mobile")
    return out


def seed_files(quick: bool = False) -> list[tuple[str, bytes]]:
    """(name, bytes) of every seed: the golden vectors, then the writer's files."""
    seeds = [(p.name, p.read_bytes()) for p in vectors()]
    seeds += [(f"writer_{name}.dcf", data) for name, data in sorted(writer_corpus(quick).items())]
    return seeds


def make_corpus(directory: pathlib.Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    seeds = seed_files()
    for name, data in seeds:
        (directory / name).write_bytes(data)
    print(f"{len(seeds)} seed files in {directory} "
          f"({sum(len(d) for _, d in seeds):,} bytes; largest {max(len(d) for _, d in seeds):,})")
    return 0


# ------------------------------------------------------------------------------------------------
# Inputs


def truncations(seeds):
    """Every prefix of every seed, and every cut of its data section with the index kept."""
    for name, data in seeds:
        for n in range(len(data)):
            yield f"{name}[:{n}]", data[:n], False
        (index_length,) = struct.unpack_from("<Q", data, len(data) - 16)
        index_at = len(data) - 16 - index_length
        for n in range(16, index_at):
            yield f"{name}[:{n}]+index", data[:n] + data[index_at:], False


def index_fields(data: bytes) -> list[tuple[int, int, str]]:
    """(offset, size, field) of every field of the preamble, the index and the trailer of ``data``,
    as far as the index can be walked."""
    fields = [(4, 2, "version_major"), (6, 2, "version_minor"), (8, 1, "alignment_log2"), (9, 7, "reserved")]
    n = len(data)
    if n < 32:
        return fields
    fields += [(n - 16, 8, "index_length"), (n - 8, 4, "index_crc32"), (n - 4, 4, "end_magic")]
    (index_length,) = struct.unpack_from("<Q", data, n - 16)
    at = n - 16 - index_length
    end = n - 16
    if not 16 <= at <= end:
        return fields

    def take(size, name):
        nonlocal at
        if at + size > end:
            raise IndexError
        fields.append((at, size, name))
        value = int.from_bytes(data[at:at + size], "little")
        at += size
        return value

    def descriptor(what):
        for size, name in ((1, "codec"), (1, "param"), (2, "reserved"), (4, "crc32"), (8, "count"),
                           (8, "length")):
            take(size, f"{what}.{name}")

    try:
        tensors = take(4, "tensor_count")
        entries = take(4, "metadata_count")
        for _ in range(min(entries, 10_000)):
            skip = take(2, "key_length")
            at += skip
            skip = take(4, "value_length")
            at += skip
        for _ in range(min(tensors, 10_000)):
            skip = take(2, "name_length")
            at += skip
            take(1, "dtype")
            rank = take(1, "rank")
            for _ in range(min(rank, 64)):
                take(8, "shape")
            layout = take(1, "layout")
            coding = take(1, "value_coding")
            take(1, "index_bits")
            take(1, "codebook_dtype")
            take(4, "codebook_size")
            chunks = take(4, "chunk_count")
            if coding == 1:
                descriptor("codebook")
            for _ in range(min(chunks, 10_000)):
                take(8, "extent")
                for role in (("values",) if layout == 0 else ("row_counts", "gaps", "values")):
                    descriptor(role)
    except IndexError:
        pass
    return fields


def raw_mutation(rng: random.Random, data: bytes) -> bytes:
    """Flip, set, insert or delete bytes anywhere, or overwrite a run."""
    p = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(6)
        if op == 0 and p:
            p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
        elif op == 1 and p:
            p[rng.randrange(len(p))] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            at = rng.randrange(len(p) + 1)
            p[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 1, 2, 4, 8, 24))))
        elif op == 3 and p:
            at = rng.randrange(len(p))
            del p[at:at + rng.choice((1, 1, 2, 4, 8, 24))]
        elif op == 4 and p:
            at = rng.randrange(len(p))
            run = rng.choice((2, 4, 8, 16))
            p[at:at + run] = bytes([rng.choice((0, 0xFF, rng.randrange(256)))]) * len(p[at:at + run])
        elif p:  # copy a slice over another place
            a, b = rng.randrange(len(p)), rng.randrange(len(p))
            n = rng.randint(1, 32)
            p[b:b + n] = p[a:a + n]
    return bytes(p)


def field_mutation(rng: random.Random, data: bytes) -> bytes:
    """Set one to three fields of the index (or preamble, trailer) to an interesting value; the index
    CRC recomputed unless the field was the CRC itself."""
    p = bytearray(data)
    fields = index_fields(data)
    changed = set()
    for _ in range(rng.choice((1, 1, 2, 3))):
        offset, size, name = rng.choice(fields)
        old = int.from_bytes(p[offset:offset + size], "little")
        p[offset:offset + size] = fh.interesting(rng, old, 8 * size).to_bytes(size, "little")
        changed.add(name)
    if "index_crc32" not in changed:
        fh.fix_index_crc(p)
    return bytes(p)


class Mutator:
    """Input ``k`` of a campaign of seed ``seed``: ``(label, bytes, skip_checksums)``."""

    def __init__(self, seeds, variants: int | None = 16):
        self.seeds = seeds
        paths = []
        self._tmp = tempfile.TemporaryDirectory(prefix="dcf-fuzz-seeds-")
        for name, data in seeds:
            try:  # the structure-aware mutations start from files the reader reads (not a vector of a refused file)
                fh.parse_model(data)
            except DCFormatError:
                continue
            path = pathlib.Path(self._tmp.name) / name
            path.write_bytes(data)
            paths.append(path)
        self.corpus = fh.Corpus(paths, variants=variants)

    def input(self, seed: int, k: int):
        rng = random.Random(seed * 1_000_003 + k)
        r = rng.random()
        name, data = rng.choice(self.seeds)
        skip = rng.random() < 0.3
        if r < 0.45:
            data, _, _, _ = self.corpus.file_input(seed * 1_000_003 + k)
            kind = "structure"
        elif r < 0.65:  # raw bytes, then every CRC recomputed: the flips reach the codecs
            data = bytearray(raw_mutation(rng, data))
            fh.fix_checksums(data)
            data, kind = bytes(data), f"bytes+crc({name})"
        elif r < 0.8:
            data, kind = raw_mutation(rng, data), f"bytes({name})"
        else:
            data = field_mutation(rng, data)
            if rng.random() < 0.5:
                data = bytearray(data)
                fh.fix_checksums(data)
                data = bytes(data)
            kind = f"field({name})"
        return f"seed {seed} input {k} [{kind}]", data, skip


# ------------------------------------------------------------------------------------------------
# The two decoders


def python_result(data: bytes, skip_checksums: bool):
    """What the Python reader makes of ``data``: a dict shaped like :func:`parse_line`'s."""
    try:
        reader = dcformat.DCFReader(data, verify=not skip_checksums, max_tensor_bytes=MAX_TENSOR_BYTES,
                                    max_attachment_bytes=MAX_TENSOR_BYTES)
    except DCFormatError as error:
        return {"open": type(error).__name__, "message": str(error)}
    with reader as f:
        # the tensor entries, then a 1.1 file's aliases (each with its target's entry), as libdcf lists them
        names = f.keys() if hasattr(f, "keys") else [t.name for t in f.tensors_info()]
        infos = [(n, f.info(n)) for n in names]
        info_crc = 0
        for key, t in infos:
            name = key.encode("utf-8")
            b = struct.pack("<I", len(name)) + name + struct.pack("<BB", int(t.dtype), len(t.shape))
            b += b"".join(struct.pack("<Q", d) for d in t.shape)
            b += struct.pack("<BBBBIIQ", int(t.layout), int(t.value_coding), t.index_bits, t.codebook_dtype,
                             t.codebook_size, len(t.chunks), t.numel)
            info_crc = zlib.crc32(b, info_crc)
        meta_crc = 0
        for key, value in f.header.metadata.items():
            k, v = key.encode("utf-8"), value.encode("utf-8")
            meta_crc = zlib.crc32(struct.pack("<I", len(k)) + k + struct.pack("<I", len(v)) + v, meta_crc)
        tensors = []
        zstd = [_uses_zstd(data, t) for _, t in infos]
        for key, t in infos:
            try:
                array = f.get_tensor(key)
            except DCFormatError as error:
                tensors.append((type(error).__name__, None, type(error).__name__, None, str(error)))
                continue
            crc = zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1))
            if int(t.dtype) in FLOAT_DTYPES:
                with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32: inf, as in C
                    wide = float8_to_float32(array) if int(t.dtype) in (14, 15) else array.astype(np.float32)
                    f32 = zlib.crc32(np.ascontiguousarray(wide).view(np.uint8).reshape(-1))
                tensors.append((None, crc, None, f32, ""))
            else:
                tensors.append((None, crc, "OUT_TYPE", None, ""))
        attach_crc = 0
        for name in (f.attachments() if hasattr(f, "attachments") else []):
            size = f.attachment_info(name).size
            raw = name.encode("utf-8")
            attach_crc = zlib.crc32(struct.pack("<I", len(raw)) + raw + struct.pack("<Q", size), attach_crc)
            if size > MAX_TENSOR_BYTES:
                attach_crc = zlib.crc32(b"\x02", attach_crc)
                continue
            try:
                content = f.get_attachment(name)
                attach_crc = zlib.crc32(b"\x00" + content, attach_crc)
            except DCFormatError:
                attach_crc = zlib.crc32(b"\x01", attach_crc)
        return {"open": None, "tensors": tensors, "info_crc": info_crc, "meta_crc": meta_crc, "zstd": zstd,
                "attach_crc": attach_crc}


def _uses_zstd(data: bytes, t) -> bool:
    """Does tensor ``t`` hold a ZSTD stream, or a BYTEPLANES stream with a ZSTD plane?"""
    for s in t.streams:
        if int(s.codec) == 3:
            return True
        if int(s.codec) == 4 and s.length >= 4:
            head = data[s.offset:s.offset + min(s.length, 4 + 8 * 255)]
            planes = head[1]
            if any(head[4 + 8 * j] == 3 for j in range(planes) if 4 + 8 * j < len(head)):
                return True
    return False


def zstd_versions() -> tuple[str, str]:
    """(libzstd the C driver links, zstd inside the Python reader's zstandard module)."""
    import ctypes
    import ctypes.util

    import zstandard

    c = "unknown"
    name = ctypes.util.find_library("zstd")
    if name:
        n = ctypes.CDLL(name).ZSTD_versionNumber()
        c = f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return c, ".".join(map(str, zstandard.ZSTD_VERSION))


def parse_line(line: str, names: dict[int, str]):
    """A result line of the driver (see print_result in fuzz_decode.c) as a dict."""
    head, _, message = line.partition(" # ")
    parts = head.split()
    code = int(parts[1])
    if code != 0:
        return {"open": names.get(code, str(code)), "message": message.strip()}
    n, info_crc, meta_crc, attach_crc = int(parts[2]), int(parts[3], 16), int(parts[4], 16), int(parts[5], 16)
    tensors = []
    for item in parts[6:6 + n]:
        c, crc, fc, fcrc = item.split(":")
        c, fc = int(c), int(fc)
        tensors.append((None if c == 0 else names.get(c, str(c)), int(crc, 16) if c == 0 else None,
                        None if fc == 0 else names.get(fc, str(fc)), int(fcrc, 16) if fc == 0 else None, ""))
    return {"open": None, "tensors": tensors, "info_crc": info_crc, "meta_crc": meta_crc, "attach_crc": attach_crc}


def accepted(result) -> bool:
    return result["open"] is None and all(t[0] is None for t in result["tensors"])


def first_error(result) -> str:
    if result["open"] is not None:
        return result["open"]
    return next(t[0] for t in result["tensors"] if t[0] is not None)


def compare(c, py) -> list[tuple[str, str]]:
    """(signature, explanation) of every disagreement between libdcf (``c``) and the reader (``py``).
    A signature ends in ``:zstd`` when the tensor concerned holds ZSTD data: libdcf uses the
    system's libzstd, the reader the zstd inside the zstandard module, and two versions of zstd
    can decode a malformed frame differently (see :func:`zstd_versions`)."""
    out = []
    zstd = py.get("zstd") or []

    def tag(i):
        return ":zstd" if i is not None and i < len(zstd) and zstd[i] else ""

    if accepted(c) != accepted(py):
        who = "libdcf accepts, the Python reader refuses" if accepted(c) else "libdcf refuses, the Python reader accepts"
        err = first_error(py) if accepted(c) else first_error(c)
        refuser = py if accepted(c) else c
        bad = None if refuser["open"] is not None else next(
            (i for i, t in enumerate(refuser["tensors"]) if t[0] is not None), None)
        message = next((t[4] for t in py.get("tensors", []) if t[4]), "") or py.get("message") or c.get("message") or ""
        out.append((f"accept-refuse:{'c' if accepted(c) else 'py'}:{err}{tag(bad)}", f"{who} ({err}: {message})"))
    if c["open"] is not None or py["open"] is not None:
        return out
    if c["info_crc"] != py["info_crc"] or len(c["tensors"]) != len(py["tensors"]):
        out.append(("tensor-table", "the tensor tables differ"))
        return out
    if c["meta_crc"] != py["meta_crc"]:
        out.append(("metadata", "the metadata differ"))
    if c.get("attach_crc") != py.get("attach_crc"):
        out.append(("attachments", "the attachments (names, sizes, refusals or bytes) differ"))
    for i, (ct, pt) in enumerate(zip(c["tensors"], py["tensors"])):
        if ct[0] is None and pt[0] is None:
            if ct[1] != pt[1]:
                out.append((f"values{tag(i)}", f"tensor {i}: decoded values differ"))
            if (ct[2] is None) != (pt[2] is None):
                out.append((f"f32-refusal:{ct[2]}", f"tensor {i}: float32 output {ct[2]} against the reader's astype"))
            elif ct[2] is None and ct[3] != pt[3] and ct[1] == pt[1]:
                out.append(("f32-values", f"tensor {i}: float32 values differ from numpy's astype(float32)"))
        elif (ct[0] is None) != (pt[0] is None) and not out:
            out.append((f"tensor-accept-refuse:{ct[0] or 'ok'}/{pt[0] or 'ok'}{tag(i)}",
                        f"tensor {i}: libdcf {ct[0] or 'decodes'}, the Python reader {pt[0] or 'decodes'} {pt[4]}"))
    return out


class Driver:
    """The sanitizer driver as a child process fed length-prefixed inputs on stdin (by a thread, so
    that the driver decodes a block while this process runs the Python reader on it)."""

    def __init__(self, path: pathlib.Path, timeout: float):
        self.path, self.timeout = path, timeout
        self.proc = None
        self.stderr = None
        self._writer = None

    def start(self):
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ, **SANITIZER_ENV)
        for attempt in range(6):  # a driver being rebuilt (make native-asan) cannot start for a moment
            try:
                self.proc = subprocess.Popen([str(self.path), "--stdin", "--timeout", str(int(self.timeout))],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                             env=env)
                break
            except OSError:
                if attempt == 5:
                    raise
                time.sleep(10)
        self._buffer = b""

    def submit(self, records) -> None:
        """Start writing ``records`` ((label, bytes, skip) ...) to the driver."""
        if self.proc is None:
            self.start()
        payload = b"".join(struct.pack("<QI", len(d), int(skip)) + d for _, d, skip in records)
        stdin = self.proc.stdin

        def write():
            try:
                stdin.write(payload)
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the driver died: read_line says how

        self._writer = threading.Thread(target=write, daemon=True)
        self._writer.start()

    def read_line(self):
        """The next result line, or ``(None, why)`` if the driver died or hung first."""
        deadline = time.time() + self.timeout + 10
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.time()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                text = self._stderr_text()
                self.proc = None
                return None, "hang (no answer in time)\n" + text
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None, self._died()
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(), None

    def run(self, data: bytes, skip: bool):
        """One input: its result line, or ``(None, why)``."""
        self.submit([("", data, skip)])
        return self.read_line()

    def _stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def _died(self) -> str:
        code = self.proc.wait()
        text = self._stderr_text()
        self.proc = None
        return f"exit status {code}\n{text}"

    def finish(self) -> tuple[int, str] | None:
        """Close stdin, wait; ``(status, stderr)`` of the exit (LeakSanitizer runs there)."""
        if self.proc is None:
            return None
        if self._writer is not None:
            self._writer.join()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        code = self.proc.wait(timeout=300)
        text = self._stderr_text()
        self.proc = None
        return code, text


# ------------------------------------------------------------------------------------------------
# The campaign


class Campaign:
    BLOCK = 200

    def __init__(self, driver: pathlib.Path, findings: pathlib.Path | None, timeout: float, batch: int,
                 examples: int = 3, quiet: bool = False):
        self.names = error_names()
        self.driver = Driver(driver, timeout)
        self.driver_path = driver
        self.findings_dir = findings
        self.batch, self.examples, self.quiet = batch, examples, quiet
        self.counts = collections.Counter()
        self.refused_open = collections.Counter()
        self.refused_decode = collections.Counter()
        self.python_refused = collections.Counter()
        self.findings: dict[str, list[str]] = collections.defaultdict(list)
        self.notes: dict[str, str] = {}
        self.in_driver: list[tuple[str, bytes, bool]] = []  # the current driver's inputs, for leaks
        self.timeout = timeout

    def finding(self, signature: str, label: str, data: bytes, skip: bool, note: str) -> None:
        self.findings[signature].append(label)
        self.notes.setdefault(signature, f"{label}: {note[:2000]}")
        if not self.quiet:
            print(f"FINDING {signature}: {label}: {note.splitlines()[0] if note else ''}", flush=True)
        if self.findings_dir is None or len(self.findings[signature]) > self.examples:
            return
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", signature)[:80]
        folder = self.findings_dir / safe
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{len(self.findings[signature]):03d}"
        (folder / f"{stem}.dcf").write_bytes(data)
        (folder / f"{stem}.txt").write_text(f"{signature}\n{label}\nskip_checksums={skip}\n{note}\n")

    def block(self, records) -> None:
        """Run a block of inputs through both decoders."""
        records = list(records)
        start = 0
        while start < len(records):
            todo = records[start:]
            self.driver.submit(todo)
            py = [python_result(data, skip) for _, data, skip in todo]
            for j, (label, data, skip) in enumerate(todo):
                line, died = self.driver.read_line()
                self.in_driver.append((label, data, skip))
                if line is None:
                    self._died(label, data, skip, died)
                    self.in_driver = []
                    start += j + 1
                    break
                self._compare(label, data, skip, line, py[j])
            else:
                start = len(records)
            if len(self.in_driver) >= self.batch:
                self.end_batch()

    def _died(self, label, data, skip, died) -> None:
        self.counts["inputs"] += 1
        self.counts["skip_checksums"] += skip
        kind = "hang" if "LIBDCF HANG" in died or died.startswith("hang") else (
            "libdcf-bug" if "LIBDCF BUG" in died else "sanitizer" if "Sanitizer" in died or "runtime error" in died
            else "crash")
        detail = next((ln for ln in died.splitlines() if "LIBDCF BUG" in ln or "ERROR:" in ln
                       or "runtime error" in ln), died.splitlines()[0] if died else "")
        self.finding(f"{kind}:{_short(detail)}", label, data, skip, died)

    def _compare(self, label, data, skip, line, py) -> None:
        self.counts["inputs"] += 1
        self.counts["skip_checksums"] += skip
        c = parse_line(line, self.names)
        if accepted(c):
            self.counts["accepted"] += 1
        elif c["open"] is not None:
            self.refused_open[c["open"]] += 1
        else:
            self.refused_decode[first_error(c)] += 1
        if not accepted(py):
            self.python_refused[first_error(py)] += 1
        for signature, why in compare(c, py):
            self.finding(signature, label, data, skip, f"{why}\nlibdcf: {line}\npython: {_py_line(py)}")

    def end_batch(self) -> None:
        done = self.driver.finish()
        batch, self.in_driver = self.in_driver, []
        if done is None:
            return
        code, text = done
        if code != 0 or "Sanitizer" in text:
            culprit = self._bisect(batch) if batch else None
            label, data, skip = culprit or (f"one of {len(batch)} inputs", b"", False)
            self.finding(f"leak-or-exit:{code}", label, data, skip, text)

    def _bad_exit(self, records) -> bool:
        d = Driver(self.driver_path, self.timeout)
        d.submit(records)
        for _ in records:
            if d.read_line()[0] is None:
                return True
        code, text = d.finish()
        return code != 0 or "Sanitizer" in text

    def _bisect(self, batch):
        """An input of ``batch`` whose driver run alone ends badly (a leak), by halving."""
        if not self._bad_exit(batch):
            return None
        while len(batch) > 1:
            half = batch[:len(batch) // 2]
            batch = half if self._bad_exit(half) else batch[len(batch) // 2:]
        return batch[0]

    def report(self, seconds: float) -> dict:
        n = self.counts["inputs"]
        summary = {
            "inputs": n, "accepted": self.counts["accepted"], "skip_checksums": self.counts["skip_checksums"],
            "refused_at_open": dict(self.refused_open.most_common()),
            "refused_at_decode": dict(self.refused_decode.most_common()),
            "python_refused": dict(self.python_refused.most_common()),
            "findings": {k: len(v) for k, v in self.findings.items()}, "seconds": round(seconds, 1),
            "first_finding": dict(self.notes),
        }
        return summary


def _short(text: str) -> str:
    text = re.sub(r"0x[0-9a-f]+", "ADDR", text)
    text = re.sub(r"stdin record \d+", "record", text)
    return text.strip()[:120]


def _py_line(py) -> str:
    if py["open"] is not None:
        return f"open: {py['open']}: {py.get('message', '')}"
    return " ".join(f"{t[0] or 'ok'}:{t[1] if t[1] is None else format(t[1], '08x')}" for t in py["tensors"])


def print_summary(summary: dict) -> None:
    n = summary["inputs"]
    print(f"\ninputs {n:,}: libdcf accepted {summary['accepted']:,}, refused {n - summary['accepted']:,} "
          f"({summary['skip_checksums']:,} read with checksums skipped), {summary['seconds']:.0f} s")
    for key, title in (("refused_at_open", "refused when opened"), ("refused_at_decode", "refused when decoded")):
        if summary[key]:
            print(f"  {title}: " + ", ".join(f"{k} {v:,}" for k, v in summary[key].items()))
    print("  the Python reader refused: " + ", ".join(f"{k} {v:,}" for k, v in summary["python_refused"].items()))
    findings = summary["findings"]
    if any(k.endswith(":zstd") for k in findings):
        c, py = zstd_versions()
        print(f"  (':zstd' findings: libdcf links libzstd {c}, the Python reader's zstandard bundles zstd {py})")
    print(f"findings: {sum(findings.values())}" + (" (" + "; ".join(f"{k}: {v}" for k, v in findings.items()) + ")"
                                                   if findings else ""))


def run_campaign(inputs, *, driver=DRIVER, findings=None, timeout=20.0, batch=2000, quiet=False,
                 progress_every=0.0) -> dict:
    """Feed ``inputs`` ((label, bytes, skip_checksums) ...) to both decoders; the summary dict."""
    if not pathlib.Path(driver).exists():
        raise SystemExit(f"{driver} is missing: build it with `make native-asan`")
    campaign = Campaign(pathlib.Path(driver), findings, timeout, batch, quiet=quiet)
    start = last = time.time()
    block = []
    try:
        for record in inputs:
            block.append(record)
            if len(block) >= Campaign.BLOCK:
                campaign.block(block)
                block = []
                if progress_every and time.time() - last > progress_every:
                    last = time.time()
                    s = campaign.report(last - start)
                    print(f"{time.strftime('%H:%M:%S')} {s['inputs']:,} inputs, {s['accepted']:,} accepted, "
                          f"findings {sum(s['findings'].values())}", flush=True)
        campaign.block(block)
    finally:
        campaign.end_batch()
    return campaign.report(time.time() - start)


def mutations(mutator: Mutator, seed: int, count: int, start: int = 0):
    for k in range(start, start + count):
        yield mutator.input(seed, k)


def replay(paths, driver) -> int:
    names = error_names()
    for path in paths:
        data = pathlib.Path(path).read_bytes()
        for skip in (False, True):
            d = Driver(pathlib.Path(driver), 60)
            line, died = d.run(data, skip)
            finish = d.finish()
            py = python_result(data, skip)
            print(f"{path} (checksums {'skipped' if skip else 'checked'}):")
            if line is None:
                print(f"  libdcf driver died: {died}")
                continue
            c = parse_line(line, names)
            print(f"  libdcf: {line}")
            print(f"  python: {_py_line(py)}")
            for signature, why in compare(c, py):
                print(f"  DISAGREE {signature}: {why}")
            if finish and (finish[0] != 0):
                print(f"  driver exit {finish[0]}: {finish[1][-2000:]}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--make-corpus", type=pathlib.Path, metavar="DIR", help="write the seed corpus to DIR")
    parser.add_argument("--truncations", action="store_true", help="every truncation of every golden vector")
    parser.add_argument("--mutations", type=int, default=0, help="mutated files to run")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (an input is (seed, number))")
    parser.add_argument("--start", type=int, default=0, help="number of the first mutated input")
    parser.add_argument("--variants", type=int, default=16,
                        help="re-encoded variants per seed stream for element mutations (0: fresh each time)")
    parser.add_argument("--driver", type=pathlib.Path, default=DRIVER)
    parser.add_argument("--findings", type=pathlib.Path, default=pathlib.Path("/tmp/dcf-libdcf-fuzz/findings"))
    parser.add_argument("--timeout", type=float, default=20, help="seconds one input may take")
    parser.add_argument("--batch", type=int, default=2000, help="inputs per driver process (leak check at exit)")
    parser.add_argument("--json", type=pathlib.Path, help="write the summary here too")
    parser.add_argument("--replay", nargs="+", help="files to show both decoders' results for")
    args = parser.parse_args(argv)
    if args.make_corpus:
        return make_corpus(args.make_corpus)
    if args.replay:
        return replay(args.replay, args.driver)
    if not args.truncations and not args.mutations:
        parser.error("give --truncations and/or --mutations N")

    def inputs():
        if args.truncations:
            yield from truncations([(p.name, p.read_bytes()) for p in vectors()])
        if args.mutations:
            mutator = Mutator(seed_files(), variants=args.variants or None)
            yield from mutations(mutator, args.seed, args.mutations, args.start)

    print(f"fuzzing libdcf ({args.driver}) against the Python reader: "
          f"{'truncations, ' if args.truncations else ''}{args.mutations:,} mutations of seed {args.seed}; "
          f"findings in {args.findings}", flush=True)
    summary = run_campaign(inputs(), driver=args.driver, findings=args.findings, timeout=args.timeout,
                           batch=args.batch, progress_every=60)
    print_summary(summary)
    print("SUMMARY " + json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
