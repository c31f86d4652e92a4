"""The golden vectors of spec/vectors/: their definitions, and their portable JSON form.

Each vector is a dcf file ``NAME.dcf`` plus ``NAME.json`` that holds what it must decode to, in a
form any language reads: per tensor the dtype, the shape and the little-endian bytes in hex, plus
the writer input (codebook and indices for weight-shared tensors) and the encoding options, so a
test can re-encode and compare bytes. The writer is deterministic: the same input gives the same
bytes. Committed vectors never change (spec §11); new ones are added with new numbers.

A few vectors need what the writer's options do not offer; their JSON says so, and
:func:`encode_vector` does it the same way every time: ``"zstd_checksum": true`` recompresses
every ZSTD stream with a ``Content_Checksum`` (same level, same content); ``"recode"`` maps a
tensor to ``{"codecs": [...], "huffman_lanes": n}`` and re-encodes its RAW VALUES streams with
those codecs (valid files the writer does not choose: BITPACK or HUFFMAN for wide raw values); and
``"converter_metadata"`` is what a converter back to safetensors puts in ``__metadata__``
(spec §4.1.1), which the tests check against :func:`dcformat.pack.packer.source_metadata`.

Vectors of version 1.1 (in ``spec/vectors/1.1/``, :data:`VERSION_DIRECTORIES`) add
``"attachments"`` (name -> ``{"data_hex", "codecs"}``: the file's bytes and the codecs its writer
may use), ``"aliases"`` (alias -> target; ``"expected"`` lists each alias with its target's
values), ``"extra_records"`` (records the writer writes before its own, as
``{"type", "flags", "payload_hex"}``: unknown types a decoder must skip or refuse) and
``"expect_error"``: the file is one a decoder MUST refuse, and the text says why (its
``"expected"`` is empty).

Vectors of version 1.2 (``spec/vectors/1.2/``) hold float8 tensors (spec §4.3.1). Each expected
float8 tensor also has ``"float32_hex"``: its elements converted to float32 by the spec's rules
(NaNs included), little-endian. Two more keys make files the writer itself never writes:
``"declare_minor"`` overwrites the preamble's ``version_minor`` after writing (an older version
than the file needs: negative vectors), and ``"version_minor"`` asks the writer for a version, with
``"override"`` (tensor -> index fields, such as ``{"codebook_dtype": 14}``) changing an encoded
tensor's fields before it is written.

``python -m dcformat.vectors --check`` compares; ``--write`` writes missing vectors only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import numpy as np

from .constants import ELEMENT_DTYPE, FLOAT8_DTYPES, CodebookDType
from .encoding import Encoding
from .structures import dtype_of, numpy_dtype
from .tensors import CodebookTensor


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pruned(shape, keep: float, seed: int) -> np.ndarray:
    rng = _rng(seed)
    w = rng.normal(0, 0.1, size=shape).astype(np.float32)
    w[rng.random(shape) > keep] = 0
    return w


def _codebook_tensor(shape, k: int, keep: float, seed: int, codebook=None) -> CodebookTensor:
    rng = _rng(seed)
    codebook = np.linspace(-1, 1, k, dtype=np.float32) if codebook is None else codebook
    p = np.exp(-np.abs(np.linspace(-3, 3, len(codebook))))  # skewed like trained weights
    indices = rng.choice(len(codebook), size=shape, p=p / p.sum()).astype(np.int32)
    indices[rng.random(shape) > keep] = -1
    return CodebookTensor(codebook, indices)


def _gapped_rows() -> np.ndarray:
    """A matrix with all-zero rows and gaps dozens of times the index width."""
    m = np.zeros((6, 200), np.float32)
    m[0, [0, 1, 199]] = [1.5, -2.0, 3.25]
    m[2, 150] = -0.5  # a gap of 150 at index width 2: 37 fillers
    m[4, ::37] = 0.125
    return m


def _bits(values, dtype) -> np.ndarray:
    """Floats of ``dtype`` given by their bit patterns (NaN payloads, signalling NaNs)."""
    dtype = np.dtype(dtype)
    return np.array(values, ELEMENT_DTYPE[dtype.itemsize]).view(dtype)


def _every_entry(codebook, dtype) -> CodebookTensor:
    """A dense tensor holding each codebook entry once, in order: the conversion table itself."""
    codebook = np.asarray(codebook)
    return CodebookTensor(codebook, np.arange(codebook.size, dtype=np.int32), dtype)


def _sparse_rows(shape, rows, keep: float, seed: int, dtype=np.float32) -> np.ndarray:
    """A matrix whose ``rows`` are non-zero (about ``keep`` of their elements), the rest zero."""
    rng = _rng(seed)
    m = np.zeros(shape, np.float32)
    for r in rows:
        m[r] = np.round(rng.normal(0, 2, size=shape[1])) * (rng.random(shape[1]) < keep)
    return m.astype(dtype)


# Codebook conversions with every special case of spec §7.2 (bit patterns).
F32_SPECIAL = [
    0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FA00000, 0x7F802000, 0x7FBFFFFF, 0x7FC12345, 0xFF800001,  # NaNs
    0x7F800000, 0xFF800000, 0x00000000, 0x80000000,  # infinities, zeros
    0x00000001, 0x807FFFFF, 0x00800000,  # float32 subnormals, smallest normal
    0x477FEFFF, 0x477FF000, 0xC77FF000, 0x7F7FFFFF,  # F16: largest that rounds down, overflow at 65520
    0x33800000, 0x33000000, 0x33000001, 0x33400000, 0x387FE000, 0x38800000,  # F16 subnormals, ties
    0x3F801000, 0x3F803000, 0x3F801001,  # F16 ties to even at 1 (down, up) and just past a tie
    0x3F808000, 0x3F818000, 0x3F808001, 0x7F7F7FFF, 0x00008000, 0x00018000, 0x00010000,  # BF16 ties
    0x3F800000, 0xC0490FDB,  # 1, -pi
]
F16_SPECIAL = [
    0x7E00, 0xFE00, 0x7C01, 0x7D55, 0x7FFF, 0xFC01, 0x7DFF,  # NaNs: quiet, signalling, payloads
    0x7C00, 0xFC00, 0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x7BFF,  # inf, zeros, subnormals, extremes
    0x3C04, 0x3C0C, 0x3C05, 0x3C00, 0xC248,  # BF16 ties to even at 1 (down, up), past a tie; 1; -3.14
]


VERSION_DIRECTORIES = {"1.0": "", "1.1": "1.1", "1.2": "1.2"}
"""Format version -> the subdirectory of spec/vectors/ holding its vectors."""


def vector_definitions(version: str = "1.0") -> dict[str, dict]:
    """name -> {"doc", "tensors", "encodings", "metadata", "alignment_log2", "zstd_checksum", …}:
    the vectors added with format ``version``."""
    if version == "1.1":
        return _definitions_1_1()
    if version == "1.2":
        return _definitions_1_2()
    if version != "1.0":
        raise ValueError(f"no vectors for version {version!r}; known: {sorted(VERSION_DIRECTORIES)}")
    plain = Encoding(codecs=("plain",))
    v = {}
    v["01_dense_raw"] = dict(
        doc="Dense raw float32 matrix and int64 vector, PLAIN streams: the simplest file.",
        tensors={"weight": np.arange(-6, 6, dtype=np.float32).reshape(3, 4) / 4, "step": np.array([7, -1], np.int64)},
        encodings={"weight": plain, "step": plain},
    )
    v["02_scalar_empty_types"] = dict(
        # Released with this doc, but its "scalar" has shape [1] (the JSON conversion of the time
        # made 0-d arrays 1-d); vector 17 has a true rank-0 tensor.
        doc="A 0-d scalar, an empty tensor (no chunks), bool, uint8, int16, float16, float64, bfloat16.",
        tensors={
            "scalar": np.array([-1.25], np.float32), "empty": np.zeros((0, 3), np.float16),
            "flags": np.array([True, False, True]), "bytes": np.arange(250, 256, dtype=np.uint8),
            "i16": np.array([-32768, 0, 32767], np.int16), "half": np.array([0.5, -0.0, np.inf], np.float16),
            "f64": np.array([np.pi, -np.e]), "bf16": np.array([1.0, -2.5, 3e38], np.float32).astype(numpy_dtype(3)),
        },
        encodings={},
    )
    v["03_csr_fillers_bitpack"] = dict(
        doc="CSR, raw float32 values, index_bits 2: all-zero rows, fillers for gaps up to 75x the width; BITPACK.",
        tensors={"w": _gapped_rows()},
        encodings={"w": Encoding(layout="csr", index_bits=2, codecs=("bitpack",), codebook="never")},
    )
    v["04_csr_codebook_huffman"] = dict(
        doc="Pruned (10% kept) and weight-shared (k=16) 64x100 matrix: CSR, codebook, Huffman streams.",
        tensors={"fc.weight": _codebook_tensor((64, 100), 16, 0.1, 4)},
        encodings={"fc.weight": Encoding(layout="csr", index_bits=4, codecs=("huffman",))},
    )
    v["05_dense_codebook_f16"] = dict(
        doc="Dense codebook tensor with a float16 codebook and a bfloat16 output dtype; zeros use an appended zero symbol.",
        tensors={"conv": CodebookTensor(np.array([-0.75, -0.25, 0.25, 0.75], np.float16),
                                        _codebook_tensor((4, 3, 3, 3), 4, 0.7, 5).indices, numpy_dtype(3))},
        encodings={"conv": Encoding(layout="dense", codecs=("bitpack",))},
    )
    v["06_huffman_one_symbol"] = dict(
        doc="A Huffman stream whose alphabet has one symbol (code length 1, code '0').",
        tensors={"same": CodebookTensor(np.array([0.5], np.float32), np.zeros((10, 10), np.int32))},
        encodings={"same": Encoding(layout="dense", codecs=("huffman",))},
    )
    v["07_codebook_16bit"] = dict(
        doc="A 1000-entry codebook: two-byte symbols, Huffman over a 1000-symbol alphabet, CSR with 12-bit indices.",
        tensors={"emb": _codebook_tensor((50, 300), 1000, 0.3, 7)},
        encodings={"emb": Encoding(layout="csr", index_bits=12, codecs=("huffman", "bitpack"))},
    )
    v["08_multichunk"] = dict(
        doc="Tensors split into several chunks: dense raw (5 chunks) and CSR codebook (rows in 4 chunks).",
        tensors={"dense": np.linspace(-1, 1, 45, dtype=np.float32).reshape(9, 5),
                 "sparse": _codebook_tensor((10, 40), 8, 0.2, 8)},
        encodings={"dense": Encoding(chunk_elements=10, codecs=("plain",)),
                   "sparse": Encoding(layout="csr", index_bits=3, chunk_elements=120, codecs=("huffman", "bitpack"))},
    )
    v["09_zstd"] = dict(
        doc="ZSTD streams: a repetitive int32 tensor and the streams of a sparse codebook tensor.",
        tensors={"ids": np.tile(np.arange(16, dtype=np.int32), 64), "w": _codebook_tensor((32, 64), 32, 0.15, 9)},
        encodings={"ids": Encoding(codecs=("zstd",), zstd_level=19),
                   "w": Encoding(layout="csr", index_bits=5, codecs=("zstd",), zstd_level=19)},
    )
    v["10_byteplanes_lossless"] = dict(
        doc="Lossless float32 weights stored as BYTEPLANES (rotate transform, Huffman or zstd per plane).",
        tensors={"w": _rng(10).normal(0, 0.05, size=(64, 64)).astype(np.float32)},
        encodings={"w": Encoding(codecs=("byteplanes",), codebook="never", zstd_level=19)},
    )
    inq = np.array([-0.25, -0.125, -0.0625, -0.03125, 0.03125, 0.0625, 0.125, 0.25], np.float32)
    v["11_power_of_two"] = dict(
        doc="Incremental Network Quantization style codebook: zero and +-2^n, n = -5..-2; CSR, Huffman.",
        tensors={"inq": _codebook_tensor((20, 30), 8, 0.5, 11, codebook=inq)},
        encodings={"inq": Encoding(layout="csr", index_bits=3, codecs=("huffman",))},
    )
    v["12_alignment"] = dict(
        doc="alignment_log2 = 6: every non-empty stream starts at a multiple of 64; padding bytes are zero.",
        tensors={"a": np.arange(10, dtype=np.float32), "b": np.arange(7, dtype=np.uint16)},
        encodings={"a": plain, "b": plain}, alignment_log2=6,
    )
    v["13_metadata_unicode"] = dict(
        doc="Metadata pairs and non-ASCII names, including one with a control character.",
        tensors={"écoute.poids": np.ones(3, np.float32), "tab\tname": np.zeros(2, np.int8)},
        encodings={}, metadata={"format": "pt", "source": "dcformat vectors", "ключ": "значение"},
    )
    v["14_huffman_lanes"] = dict(
        doc="A dense codebook tensor of 5000 symbols coded with 4 Huffman lanes (the last lane shorter).",
        tensors={"w": _codebook_tensor((50, 100), 32, 1.0, 14)},
        encodings={"w": Encoding(layout="dense", codecs=("huffman",), huffman_lanes=4)},
    )
    v["15_lossless_codebook_auto"] = dict(
        doc="A plain float32 array with 12 distinct values, written with default options: a lossless codebook.",
        tensors={"q": np.linspace(-1, 1, 12, dtype=np.float32)[_rng(15).integers(0, 12, size=(40, 40))]},
        encodings={},
    )
    v["16_worked_example"] = dict(
        doc="The whole-file worked example of spec section 10: CSR, codebook with appended zero, a filler, BITPACK.",
        tensors={"w": CodebookTensor(np.array([-0.5, 0.5], np.float32),
                                     np.array([[-1, 0, -1, -1, -1, -1, -1, 1], [-1] * 8], np.int32))},
        encodings={"w": Encoding(layout="csr", index_bits=2, codecs=("bitpack",))},
    )
    # -- added 2026-12-01 (format still 1.0): what no vector covered -------------------------
    v["17_scalar_rank0"] = dict(
        doc="True rank-0 tensors (rank 0, shape [], numel 1, one DENSE chunk of extent 1): float32 PLAIN, "
            "uint64 PLAIN, bool BITPACK, and a codebook tensor (k=1, float16 codebook, bfloat16 output).",
        tensors={"scalar": np.array(-1.25, np.float32), "u64": np.array(2**64 - 2, np.uint64),
                 "flag": np.array(True), "shared": CodebookTensor(np.array([0.75], np.float16),
                                                                  np.array(0, np.int32), numpy_dtype(3))},
        encodings={"scalar": plain, "u64": plain, "flag": Encoding(codecs=("bitpack",)),
                   "shared": Encoding(codecs=("plain",))},
    )
    v["18_empty_streams"] = dict(
        doc="Streams of zero elements: CSR chunks without entries (ROW_COUNTS all 0, GAPS and VALUES count 0, "
            "PLAIN, length 0, crc32 0), raw and codebook, and an all-zero CSR tensor whose every chunk is empty; "
            "alignment_log2 = 4, so the empty streams show that they get no padding and no offset of their own.",
        tensors={"raw": _sparse_rows((6, 8), [3, 5], 0.5, 18),
                 "shared": CodebookTensor(np.array([-0.5, 0.5, 0.0], np.float32),
                                          np.array([[-1] * 10] * 2 + [[0, -1, 1, -1, -1, 0, -1, -1, -1, 1]] * 2,
                                                   np.int32)),
                 "zeros": np.zeros((3, 5), np.float32)},
        encodings={"raw": Encoding(layout="csr", index_bits=3, chunk_elements=24, codecs=("bitpack",),
                                   codebook="never"),
                   "shared": Encoding(layout="csr", index_bits=2, chunk_elements=20, codecs=("huffman",)),
                   "zeros": Encoding(layout="csr", index_bits=4, chunk_elements=5, codecs=("plain",))},
        alignment_log2=4,
    )
    v["19_codebook_dtypes"] = dict(
        doc="Every codebook_dtype/dtype pair with ordinary values: float16, float64 and bfloat16 tensors from "
            "float32 codebooks; float32, float64, bfloat16 and float16 from float16 codebooks (dense and CSR).",
        tensors={
            "f16_from_f32": CodebookTensor(np.linspace(-1, 1, 16, dtype=np.float32),
                                           _codebook_tensor((8, 16), 16, 0.4, 191).indices, np.float16),
            "f64_from_f32": CodebookTensor(np.array([-0.3, 0.1, 0.7, 1e-3], np.float32),
                                           _codebook_tensor((6, 7), 4, 1.0, 192).indices, np.float64),
            "bf16_from_f32": CodebookTensor(np.array([-2.5, 0.15625, 3.1415927, 1e-20], np.float32),
                                            _codebook_tensor((5, 9), 4, 0.8, 193).indices, numpy_dtype(3)),
            "f32_from_f16": CodebookTensor(np.array([-0.75, 0.1, 0.333], np.float16),
                                           _codebook_tensor((7, 12), 3, 0.3, 194).indices, np.float32),
            "f64_from_f16": CodebookTensor(np.array([0.5, -1e-4, 6e4], np.float16),
                                           _codebook_tensor((4, 4), 3, 1.0, 195).indices, np.float64),
            "bf16_from_f16": CodebookTensor(np.array([1.004, -7.0, 2e-6], np.float16),
                                            _codebook_tensor((3, 11), 3, 0.6, 196).indices, numpy_dtype(3)),
            "f16_from_f16": CodebookTensor(np.array([0.125, -3.0, 1000.0], np.float16),
                                           _codebook_tensor((4, 6), 3, 0.7, 197).indices, np.float16),
        },
        encodings={"f16_from_f32": Encoding(layout="csr", index_bits=3, codecs=("huffman", "bitpack")),
                   "f64_from_f32": Encoding(layout="dense", codecs=("bitpack",)),
                   "bf16_from_f32": Encoding(layout="dense", codecs=("huffman",)),
                   "f32_from_f16": Encoding(layout="csr", index_bits=4, codecs=("bitpack",)),
                   "f64_from_f16": Encoding(layout="dense", codecs=("plain",)),
                   "bf16_from_f16": Encoding(layout="csr", index_bits=2, codecs=("plain",)),
                   "f16_from_f16": Encoding(layout="dense", codecs=("bitpack",))},
    )
    v["20_codebook_special_values"] = dict(
        doc="Codebook conversion bit for bit (spec 7.2): each tensor holds every entry of its codebook once, "
            "in order. NaNs (quiet, signalling, both signs, payloads that survive narrowing and ones that do not), "
            "infinities, signed zeros, subnormals, overflow to infinity, round-half-even ties, for all six "
            "converting pairs; and the two pairs of one type (float32, float16), which copy every bit.",
        tensors={"f16_from_f32": _every_entry(_bits(F32_SPECIAL, np.float32), np.float16),
                 "bf16_from_f32": _every_entry(_bits(F32_SPECIAL, np.float32), numpy_dtype(3)),
                 "f64_from_f32": _every_entry(_bits(F32_SPECIAL, np.float32), np.float64),
                 "f32_from_f16": _every_entry(_bits(F16_SPECIAL, np.float16), np.float32),
                 "f64_from_f16": _every_entry(_bits(F16_SPECIAL, np.float16), np.float64),
                 "bf16_from_f16": _every_entry(_bits(F16_SPECIAL, np.float16), numpy_dtype(3)),
                 "f32_from_f32": _every_entry(_bits(F32_SPECIAL, np.float32), np.float32),
                 "f16_from_f16": _every_entry(_bits(F16_SPECIAL, np.float16), np.float16)},
        encodings={name: Encoding(layout="dense", codecs=("plain",))
                   for name in ("f16_from_f32", "bf16_from_f32", "f64_from_f32", "f32_from_f16", "f64_from_f16",
                                "bf16_from_f16", "f32_from_f32", "f16_from_f16")},
    )
    v["21_unsigned_32_64"] = dict(
        doc="uint32 and uint64 tensors: extremes (0, 2^31, 2^32-1, 2^63, 2^64-1) in PLAIN; uint64 in "
            "BYTEPLANES (8 planes) and ZSTD; a CSR uint32 matrix with raw values.",
        tensors={"u32": np.array([0, 1, 2**31, 2**32 - 1, 12345, 2**31 - 1], np.uint32),
                 "u64": np.array([0, 1, 2**63, 2**64 - 1, 2**40 + 7, 2**32], np.uint64),
                 "u64_planes": (np.arange(64, dtype=np.uint64) * np.uint64(0x0101_0101_0101_0101)),
                 "u64_zstd": np.repeat(np.array([2**64 - 1, 3, 2**33], np.uint64), 40),
                 "u32_csr": _sparse_rows((5, 12), [0, 2, 3], 0.4, 21).astype(np.int64).astype(np.uint32)},
        encodings={"u32": plain, "u64": plain, "u64_planes": Encoding(codecs=("byteplanes",)),
                   "u64_zstd": Encoding(codecs=("zstd",), zstd_level=19),
                   "u32_csr": Encoding(layout="csr", index_bits=3, codecs=("plain",))},
    )
    v["22_bitpack_8byte"] = dict(
        doc="BITPACK of 8-byte elements (param <= 32, so values below 2^32): int64 at width 32 (2^32-1 included), "
            "uint64 at width 3, float64 +0.0 and tiny subnormals at width 2, int64 CSR values. The writer "
            "never picks BITPACK for wide raw values: encode_vector re-encodes them (recode).",
        tensors={"i64": np.array([0, 5, 2**32 - 1, 7, 123456789], np.int64),
                 "u64": np.array([1, 2, 3, 4, 5, 6, 7, 0, 7], np.uint64),
                 "f64_tiny": np.array([0, 1, 2, 3, 1], np.uint64).view(np.float64),
                 "i64_csr": _sparse_rows((4, 10), [1, 2], 0.5, 22).astype(np.int64) % 100},
        encodings={"i64": plain, "u64": plain, "f64_tiny": Encoding(codecs=("plain",), codebook="never"),
                   "i64_csr": Encoding(layout="csr", index_bits=4, codecs=("bitpack",))},
        recode={name: {"codecs": ["bitpack"]} for name in ("i64", "u64", "f64_tiny", "i64_csr")},
    )
    wide13 = np.zeros((2, 9000), np.uint8)
    wide13[0, [0, 8999]] = [9, 200]  # 8998 skipped columns at index_bits 13: one filler (gap 8191)
    wide13[1, [300, 301, 8500]] = [1, 2, 3]
    wide16 = np.zeros((1, 65600), np.uint8)
    wide16[0, [3, 65599]] = [17, 255]  # 65595 skipped columns at index_bits 16: one filler (gap 65535)
    v["23_index_bits_13_16"] = dict(
        doc="CSR with index_bits 13 and 16 (two-byte gaps, 8 < index_bits), each with a filler entry: gap "
            "2^13-1 and gap 2^16-1 (the largest two-byte element), uint8 values; PLAIN and Huffman gaps.",
        tensors={"w13": wide13, "w16": wide16},
        encodings={"w13": Encoding(layout="csr", index_bits=13, codecs=("plain",)),
                   "w16": Encoding(layout="csr", index_bits=16, codecs=("huffman",))},
    )
    v["24_codebook_5000"] = dict(
        doc="A 5000-entry float32 codebook: two-byte symbols, a Huffman alphabet of thousands of symbols "
            "(4 lanes), dense; and the same codebook as a CSR tensor with BITPACK symbols (width 13).",
        tensors={"dense": _codebook_tensor((60, 100), 5000, 1.0, 24),
                 "sparse": _codebook_tensor((20, 50), 5000, 0.5, 241)},
        encodings={"dense": Encoding(layout="dense", codecs=("huffman",)),
                   "sparse": Encoding(layout="csr", index_bits=5, codecs=("bitpack",))},
    )
    v["25_huffman_8_lanes"] = dict(
        doc="Huffman streams with 8 lanes (MAX_HUFFMAN_LANES): 50 symbols (S = 7: seven full lanes and one of 1), "
            "5 symbols (S = 1: lanes 5-7 empty, length 0), and raw uint16 values (below 300) in 8 lanes, "
            "which encode_vector re-encodes with HUFFMAN (recode; the writer keeps wide raw values off it).",
        tensors={"w": _codebook_tensor((5, 10), 8, 1.0, 25),
                 "tiny": CodebookTensor(np.array([0.5, -0.25, 2.0], np.float32), np.array([0, 1, 2, 1, 0], np.int32)),
                 "u16": _rng(252).integers(0, 300, size=1000).astype(np.uint16)},
        encodings={"w": Encoding(layout="dense", codecs=("huffman",), huffman_lanes=8),
                   "tiny": Encoding(layout="dense", codecs=("huffman",), huffman_lanes=8),
                   "u16": Encoding(codecs=("plain",))},
        recode={"u16": {"codecs": ["huffman"], "huffman_lanes": 8}},
    )
    v["26_zstd_checksum"] = dict(
        doc="ZSTD frames with a Content_Checksum (XXH64 low 32 bits, which a decoder must verify): an int32 "
            "tensor and the streams of a CSR codebook tensor. The writer itself writes no checksum: encode_vector "
            "recompresses each ZSTD stream with one (zstd_checksum).",
        tensors={"ids": np.tile(np.arange(16, dtype=np.int32), 32), "w": _codebook_tensor((16, 64), 16, 0.2, 26)},
        encodings={"ids": Encoding(codecs=("zstd",), zstd_level=19),
                   "w": Encoding(layout="csr", index_bits=5, codecs=("zstd",), zstd_level=19)},
        zstd_checksum=True,
    )
    rng = _rng(27)
    sparse_bool = rng.random((10, 30)) < 0.1
    v["27_bool"] = dict(
        doc="BOOL tensors: dense Huffman (alphabet at most 2), dense BITPACK width 1, ZSTD, PLAIN all-False, "
            "and CSR with raw BOOL values (2^5 > 30 columns: no filler, so every entry is True and VALUES is a "
            "one-symbol Huffman table, symbol 1, over alphabet 2).",
        tensors={"huffman": rng.random(200) < 0.3, "bitpack": rng.random(37) < 0.5,
                 "zstd": np.repeat(np.array([True, False]), 64), "all_false": np.zeros(9, bool),
                 "csr": sparse_bool},
        encodings={"huffman": Encoding(codecs=("huffman",)), "bitpack": Encoding(codecs=("bitpack",)),
                   "zstd": Encoding(codecs=("zstd",), zstd_level=19), "all_false": plain,
                   "csr": Encoding(layout="csr", index_bits=5, codecs=("huffman",))},
    )
    v["28_source_metadata"] = dict(
        doc="The dcformat.* metadata keys (spec 4.1.1) and a dcformat.source_metadata to restore; "
            "converter_metadata is what a converter to safetensors writes as __metadata__: the entries in "
            "index order, the restored member 'format' replacing the entry of that key in place, then the "
            "other members.",
        tensors={"w": np.ones(2, np.float32)}, encodings={"w": plain},
        metadata={"dcformat.recipe": '{"name":"lossless","rules":[]}', "dcformat.packer": "dcformat 0.1.0",
                  "format": "dcf", "dcformat.source": "model.safetensors", "dcformat.source_format": "safetensors",
                  "dcformat.source_metadata": '{"format":"pt","note":"caf\\u00e9 \\ud83d\\ude00"}'},
        converter_metadata={"dcformat.recipe": '{"name":"lossless","rules":[]}', "dcformat.packer": "dcformat 0.1.0",
                            "format": "pt", "dcformat.source": "model.safetensors",
                            "dcformat.source_format": "safetensors",
                            "dcformat.source_metadata": '{"format":"pt","note":"caf\\u00e9 \\ud83d\\ude00"}',
                            "note": "café 😀"},
    )
    return v


_CONFIG = (b'{\n  "architectures": ["BertModel"],\n  "hidden_size": 8,\n  "model_type": "bert",\n'
           b'  "num_attention_heads": 2,\n  "tie_word_embeddings": true,\n  "vocab_size": 16\n}\n')
_VOCAB = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "é", "日本", "##s"]).encode() + b"\n"


def _skewed_text(size: int, seed: int) -> bytes:
    """ASCII text whose letters have skewed frequencies (as in English): HUFFMAN beats PLAIN on it."""
    letters = np.frombuffer(b"etaoinshrdlu \n", np.uint8)
    p = 1.0 / np.arange(1, letters.size + 1)
    return _rng(seed).choice(letters, size=size, p=p / p.sum()).astype(np.uint8).tobytes()


def _float8(values, name: str) -> np.ndarray:
    """float32 ``values`` rounded to the float8 type ``name`` by the writer's rule (spec §7.2)."""
    from .conversion import float32_to_float8
    from .constants import DType

    dtype = DType.F8_E4M3 if name == "e4m3" else DType.F8_E5M2
    return float32_to_float8(np.asarray(values, np.float32), dtype).view(numpy_dtype(dtype))


def _codes(codes, name: str) -> np.ndarray:
    from .constants import DType

    return np.asarray(codes, np.uint8).view(numpy_dtype(DType.F8_E4M3 if name == "e4m3" else DType.F8_E5M2))


def _definitions_1_2() -> dict[str, dict]:
    """The vectors of version 1.2 (spec §4.3.1): float8 tensors, and files that declare too old a version."""
    from .constants import DType

    plain = Encoding(codecs=("plain",))
    rng = _rng(33)
    sparse = rng.normal(0, 1, size=(8, 40)).astype(np.float32) * (rng.random((8, 40)) < 0.2)
    sparse[1, [3, 30]] = -0.0  # -0.0 (0x80) is not zero: stored as entries
    v = {}
    v["33_float8_raw"] = dict(
        doc="Version 1.2 float8 tensors stored RAW (spec 4.3.1): F8_E4M3 PLAIN, F8_E5M2 HUFFMAN (alphabet at most "
            "256), F8_E4M3 BITPACK width 5 (codes below 32), F8_E5M2 ZSTD, an F8_E4M3 CSR matrix (index_bits 3, "
            "HUFFMAN) whose -0.0 elements (0x80) are entries, a rank-0 F8_E5M2 infinity and an empty F8_E4M3 tensor.",
        tensors={"e4m3_plain": _float8(rng.normal(0, 2, size=(4, 8)), "e4m3"),
                 "e5m2_huffman": _float8(rng.normal(0, 0.05, size=300), "e5m2"),
                 "e4m3_bitpack": _codes(rng.integers(0, 32, size=70), "e4m3"),
                 "e5m2_zstd": _float8(np.tile(np.linspace(-3, 3, 16), 40), "e5m2"),
                 "e4m3_csr": _float8(sparse, "e4m3"),
                 "e5m2_inf": _codes(0x7C, "e5m2").reshape(()),
                 "e4m3_empty": np.zeros((0, 3), numpy_dtype(DType.F8_E4M3))},
        encodings={"e4m3_plain": plain, "e5m2_huffman": Encoding(codecs=("huffman",)),
                   "e4m3_bitpack": Encoding(codecs=("bitpack",)), "e5m2_zstd": Encoding(codecs=("zstd",), zstd_level=19),
                   "e4m3_csr": Encoding(layout="csr", index_bits=3, codecs=("huffman",)), "e5m2_inf": plain,
                   "e4m3_empty": plain},
    )
    v["34_float8_codes"] = dict(
        doc="Every one of the 256 codes of F8_E4M3 and of F8_E5M2, in order (PLAIN), NaNs, infinities, -0 and "
            "subnormals included: float32_hex is the conversion of spec 4.3.1 of each, the table of the spec.",
        tensors={"e4m3": _codes(np.arange(256), "e4m3"), "e5m2": _codes(np.arange(256), "e5m2")},
        encodings={"e4m3": plain, "e5m2": plain},
    )
    nan_codebook = _codes([0x00, 0x38, 0xB8, 0x7F, 0x80, 0x7E, 0x01, 0xFF], "e4m3")  # 0, 1, -1, NaN, -0, 448, min, -NaN
    v["35_float8_codebook"] = dict(
        doc="Version 1.2 float8 tensors with a codebook (spec 7.2): the codebook is of the tensor's own float8 type "
            "(codebook_dtype 14 or 15, one byte per value) and copied. An F8_E4M3 CSR tensor whose codebook holds "
            "0, 1, -1, NaN (0x7F), -0, 448, the smallest subnormal and -NaN (0xFF), HUFFMAN; an F8_E5M2 dense tensor "
            "given a float32 codebook (-1.3, 0.2, 3.7, 57000), which the writer rounds to the nearest F8_E5M2 values "
            "(-1.25, 0.1875, 3.5, 57344, the largest finite one), with an appended zero symbol; BITPACK.",
        tensors={"e4m3": CodebookTensor(nan_codebook, _codebook_tensor((6, 20), 8, 0.5, 35).indices, nan_codebook.dtype),
                 "e5m2": CodebookTensor(np.array([-1.3, 0.2, 3.7, 57000.0], np.float32),
                                        _codebook_tensor((5, 7), 4, 0.7, 351).indices, numpy_dtype(DType.F8_E5M2))},
        encodings={"e4m3": Encoding(layout="csr", index_bits=4, codecs=("huffman",)),
                   "e5m2": Encoding(layout="dense", codecs=("bitpack",))},
    )
    one = {"w": _float8([1.0, -2.0, 0.5], "e4m3")}
    v["36_float8_in_1_1"] = dict(
        doc="NEGATIVE: an F8_E4M3 tensor (dtype 14, a value of version 1.2) in a file that declares version 1.1 "
            "(its index is otherwise a valid 1.1 index, extension_count 0). A decoder of 1.2 or later MUST refuse the "
            "whole file as corrupted (spec 3.3); one of 1.1 refuses it for the unknown dtype 14.",
        tensors=one, encodings={"w": plain}, declare_minor=1,
        expect_error="needs format version 1.2, but the file is version 1.1",
    )
    v["37_float8_in_1_0"] = dict(
        doc="NEGATIVE: the same F8_E4M3 tensor in a file that declares version 1.0 (the index still ends with the "
            "extension count of a 1.2 index). The dtype is refused before the bytes left over are reached.",
        tensors=one, encodings={"w": plain}, declare_minor=0,
        expect_error="needs format version 1.2, but the file is version 1.0",
    )
    v["38_float8_codebook_mismatch"] = dict(
        doc="NEGATIVE: a version 1.2 file whose F32 tensor names codebook_dtype 14 (F8_E4M3), a codebook dtype only "
            "an F8_E4M3 tensor may have (spec 4.2). Corrupted: the whole file is refused when it is opened.",
        tensors={"w": CodebookTensor(np.array([0.5, 1.0], np.float32), np.array([0, 1, 1, 0], np.int32))},
        encodings={"w": Encoding(layout="dense", codecs=("plain",))}, version_minor=2,
        override={"w": {"codebook_dtype": 14}},
        expect_error="a F32 tensor cannot have a F8_E4M3 codebook",
    )
    return v


def _definitions_1_1() -> dict[str, dict]:
    """The vectors of version 1.1 (spec §4.6): attachments, aliases, unknown extension records."""
    plain = Encoding(codecs=("plain",))
    embed = np.round(_rng(29).normal(0, 1, size=(4, 6)) * 8).astype(np.float32) / 8
    v = {}
    v["29_attachments"] = dict(
        doc="Version 1.1 attachments (spec 4.6.1): a JSON config stored with ZSTD, a text file with HUFFMAN "
            "(alphabet below 256), 300 bytes of every byte value with PLAIN, an empty file (PLAIN, length 0, crc32 0), "
            "and a name with directories; their streams follow the tensor's in record order.",
        tensors={"w": embed}, encodings={"w": plain},
        attachments={"config.json": {"data_hex": _CONFIG.hex(), "codecs": ["zstd"]},
                     "tokenizer/merges.txt": {"data_hex": _skewed_text(400, 29).hex(), "codecs": ["huffman"]},
                     "bytes.bin": {"data_hex": bytes(i % 256 for i in range(300)).hex(), "codecs": ["plain"]},
                     "empty.txt": {"data_hex": "", "codecs": ["plain"]}},
    )
    v["30_aliases"] = dict(
        doc="Version 1.1 aliases (spec 4.6.2): tied weights stored once. 'lm_head.weight' and "
            "'decoder.embed.weight' name tensor 0 ('embed.weight', a codebook tensor), 'head.bias' names tensor 2; "
            "the records are not in tensor order. A reader lists the aliases after the tensors, in record order.",
        tensors={"embed.weight": _codebook_tensor((8, 10), 4, 0.6, 30), "norm": np.ones(5, np.float16),
                 "bias": np.arange(3, dtype=np.int32)},
        encodings={"embed.weight": Encoding(layout="csr", index_bits=3, codecs=("huffman", "bitpack")),
                   "norm": plain, "bias": plain},
        aliases={"head.bias": "bias", "lm_head.weight": "embed.weight", "decoder.embed.weight": "embed.weight"},
    )
    v["31_extensions_mixed"] = dict(
        doc="Version 1.1 with attachments, an alias and, first in the extension section, a non-critical record "
            "of an unknown type (40000, a private type no version assigns) that a decoder must skip; "
            "alignment_log2 = 3, so the attachment streams are padded like tensor streams (spec 5).",
        tensors={"embed": embed, "scale": np.array(0.5, np.float32)},
        encodings={"embed": Encoding(codecs=("byteplanes", "huffman")), "scale": plain}, alignment_log2=3,
        attachments={"generation_config.json": {"data_hex": b'{"max_length": 20}\n'.hex(), "codecs": ["plain"]},
                     "tokenizer.json": {"data_hex": (_VOCAB * 4).hex(), "codecs": ["huffman", "zstd"]}},
        aliases={"head": "embed"},
        extra_records=[{"type": 40000, "flags": 0, "payload_hex": b"skip me: not a record this decoder knows".hex()}],
    )
    v["32_unknown_critical"] = dict(
        doc="NEGATIVE: a version 1.1 file whose extension section holds a CRITICAL record (flags 1) of an unknown "
            "type (40001, a private type no version assigns). Every decoder that does not know the type MUST "
            "refuse the whole file, naming the type, and return no tensor; its tensor is otherwise valid.",
        tensors={"w": np.ones(3, np.float32)}, encodings={"w": plain},
        extra_records=[{"type": 40001, "flags": 1, "payload_hex": "00"}],
        expect_error="critical extension record of unknown type 40001",
    )
    return v


# --------------------------------------------------------------------------------------------
# portable JSON form

def array_to_json(array: np.ndarray) -> dict:
    array = np.asarray(array)  # keeps a 0-d array 0-d (ascontiguousarray would make it 1-d)
    return {"dtype": dtype_of(array.dtype).name, "shape": list(array.shape),
            "data_hex": np.ascontiguousarray(array).reshape(-1).view(np.uint8).tobytes().hex()}


def array_from_json(obj: dict) -> np.ndarray:
    from .constants import DType

    dtype = numpy_dtype(DType[obj["dtype"]])
    return np.frombuffer(bytes.fromhex(obj["data_hex"]), dtype=dtype).reshape(obj["shape"])


def _input_to_json(tensor) -> dict:
    if isinstance(tensor, CodebookTensor):
        return {"codebook": array_to_json(tensor.codebook), "indices": array_to_json(tensor.indices.astype(np.int32)),
                "dtype": dtype_of(tensor.dtype).name}
    return {"array": array_to_json(np.asarray(tensor))}


def input_from_json(obj: dict):
    if "array" in obj:
        return array_from_json(obj["array"])
    from .constants import DType

    return CodebookTensor(array_from_json(obj["codebook"]), array_from_json(obj["indices"]),
                          numpy_dtype(DType[obj["dtype"]]))


def expected_codebook_decode(tensor: CodebookTensor) -> np.ndarray:
    """What a decoder returns for ``tensor``: each element ``codebook[index]`` converted by the
    rules of spec §7.2 (:func:`dcformat.conversion.convert_codebook`), zero bits where the index
    is -1."""
    from .conversion import convert_codebook

    codebook = np.asarray(tensor.codebook)
    target = dtype_of(tensor.dtype)
    if target in FLOAT8_DTYPES:  # spec §7.2: a float8 codebook, its values copied
        return tensor.decode()
    source = CodebookDType.F32 if codebook.dtype == np.float32 else CodebookDType.F16
    table = convert_codebook(codebook.view(ELEMENT_DTYPE[codebook.itemsize]), source, target)
    table = np.concatenate([table, np.zeros(1, table.dtype)])
    index = np.where(tensor.indices < 0, codebook.size, tensor.indices)
    return table[index].view(numpy_dtype(target))


def vector_json(name: str, definition: dict) -> dict:
    tensors = definition["tensors"]
    decoded = {k: (expected_codebook_decode(t) if isinstance(t, CodebookTensor) else np.asarray(t))
               for k, t in tensors.items()}
    for alias, target in definition.get("aliases", {}).items():
        decoded[alias] = decoded[target]
    if "expect_error" in definition:
        decoded = {}
    spec = {
        "name": name,
        "doc": definition["doc"],
        "alignment_log2": definition.get("alignment_log2", 0),
        "metadata": definition.get("metadata", {}),
        "encodings": {k: asdict(e) for k, e in definition["encodings"].items()},
        "inputs": {k: _input_to_json(t) for k, t in tensors.items()},
        "expected": {k: array_to_json(a) for k, a in decoded.items()},
    }
    for k, a in decoded.items():
        if dtype_of(a.dtype) in FLOAT8_DTYPES:
            from .conversion import float8_to_float32

            spec["expected"][k]["float32_hex"] = np.ascontiguousarray(float8_to_float32(a)).reshape(-1).view(
                np.uint8).tobytes().hex()
    for extra in ("zstd_checksum", "recode", "converter_metadata", "attachments", "aliases", "extra_records",
                  "expect_error", "declare_minor", "version_minor", "override"):
        if extra in definition:
            spec[extra] = definition[extra]
    return spec


def _recoded(encoded, codecs, huffman_lanes):
    """``encoded`` with each RAW VALUES stream decoded and encoded again with the smallest of ``codecs``."""
    from .codecs import encode_smallest, get_codec
    from .constants import DTYPE_SIZE, Codec

    size = DTYPE_SIZE[encoded.dtype]
    options = {Codec.HUFFMAN: {"lanes": huffman_lanes}} if huffman_lanes else {}

    def again(stream_count):
        stream, count = stream_count
        if count == 0:
            return stream_count
        elements = get_codec(stream.codec).decode(stream.payload, count, size, stream.param, None)
        return encode_smallest(elements, size, [Codec[c.upper()] for c in codecs], options), count

    return encoded._replace(chunks=[(extent, streams[:-1] + [again(streams[-1])])
                                    for extent, streams in encoded.chunks])


def _with_zstd_checksums(encoded, level: int):
    """``encoded`` (an EncodedTensor) with every ZSTD stream recompressed with a Content_Checksum."""
    import zstandard

    from .codecs import EncodedStream
    from .constants import Codec

    compressor = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True,
                                          write_dict_id=False)

    def fix(stream_count):
        stream, count = stream_count
        if stream.codec != Codec.ZSTD:
            return stream_count
        content = zstandard.ZstdDecompressor().decompress(stream.payload)
        return EncodedStream(stream.codec, stream.param, compressor.compress(content)), count

    codebook = fix(encoded.codebook) if encoded.codebook is not None else None
    chunks = [(extent, [fix(s) for s in streams]) for extent, streams in encoded.chunks]
    return encoded._replace(codebook=codebook, chunks=chunks)


def encode_vector(spec: dict) -> bytes:
    """Encode a vector from its JSON form with the public API (what the tests compare)."""
    from . import save

    encodings = {}
    for k, e in spec["encodings"].items():
        e = dict(e)
        if e.get("codecs") is not None:
            e["codecs"] = tuple(e["codecs"])
        encodings[k] = Encoding(**e)
    inputs = {k: input_from_json(v) for k, v in spec["inputs"].items()}
    recode = spec.get("recode", {})
    extensions = any(key in spec for key in ("attachments", "aliases", "extra_records"))
    if "declare_minor" in spec:  # a file that declares an older version than it needs (negative)
        data = bytearray(encode_vector({k: v for k, v in spec.items() if k != "declare_minor"}))
        data[6:8] = int(spec["declare_minor"]).to_bytes(2, "little")
        return bytes(data)
    if not spec.get("zstd_checksum") and not recode and not extensions and "version_minor" not in spec:
        return save(inputs, metadata=spec["metadata"] or None, encodings=encodings,
                    alignment_log2=spec["alignment_log2"])
    import io

    from .encoding import encode_tensor
    from .writer import DCFWriter

    from .extensions import extension_record

    buffer = io.BytesIO()
    writer = DCFWriter(buffer, metadata=spec["metadata"] or None, alignment_log2=spec["alignment_log2"],
                       version_minor=spec.get("version_minor", 1 if extensions else None))
    writer._extra_records = [extension_record(r["type"], r["flags"], bytes.fromhex(r["payload_hex"]))
                             for r in spec.get("extra_records", [])]
    for name, attachment in spec.get("attachments", {}).items():
        writer.add_attachment(name, bytes.fromhex(attachment["data_hex"]), codecs=tuple(attachment["codecs"]))
    for name, tensor in inputs.items():
        encoding = encodings.get(name, Encoding())
        encoded = encode_tensor(tensor, encoding)
        if name in recode:
            encoded = _recoded(encoded, recode[name]["codecs"], recode[name].get("huffman_lanes"))
        if spec.get("zstd_checksum"):
            encoded = _with_zstd_checksums(encoded, encoding.zstd_level or 19)
        if name in spec.get("override", {}):
            encoded = encoded._replace(**spec["override"][name])
        writer.add_encoded(name, encoded)
    for name, target in spec.get("aliases", {}).items():
        writer.add_alias(name, target)
    writer.close()
    return buffer.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="spec/vectors", help="the vectors' root directory")
    parser.add_argument("--write", action="store_true", help="write vectors that do not exist yet (never overwrites)")
    parser.add_argument("--check", action="store_true",
                        help="compare every vector with its definition (the default; exit status 1 on a difference)")
    args = parser.parse_args(argv)
    status = 0
    for version, subdirectory in VERSION_DIRECTORIES.items():
        status |= _check_or_write(version, os.path.join(args.directory, subdirectory), args.write)
    return status


def _check_or_write(version: str, directory: str, write: bool) -> int:
    status = 0
    for name, definition in vector_definitions(version).items():
        spec = vector_json(name, definition)
        data = encode_vector(spec)
        dcf_path = os.path.join(directory, name + ".dcf")
        json_path = os.path.join(directory, name + ".json")
        if os.path.exists(dcf_path):
            with open(dcf_path, "rb") as f:
                same = f.read() == data
            print(f"{name}: {'same bytes' if same else 'DIFFERENT BYTES'} ({len(data)} bytes)")
            status |= not same
        elif write:
            os.makedirs(directory, exist_ok=True)
            with open(dcf_path, "wb") as f:
                f.write(data)
            with open(json_path, "w", encoding="utf-8") as f:
                json.dump(spec, f, indent=1, ensure_ascii=False)
                f.write("\n")
            print(f"{name}: written ({len(data)} bytes)")
        else:
            print(f"{name}: missing")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
