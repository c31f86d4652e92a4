"""The golden vectors of spec/vectors/: their definitions, and their portable JSON form.

Each vector is a dcf file ``NAME.dcf`` plus ``NAME.json`` that holds what it must decode to, in a
form any language reads: per tensor the dtype, the shape and the little-endian bytes in hex, plus
the writer input (codebook and indices for weight-shared tensors) and the encoding options, so a
test can re-encode and compare bytes. The writer is deterministic: the same input gives the same
bytes. Committed vectors never change without a format-version bump (spec §10).

``python -m dcformat.vectors --check`` compares; ``--write DIR`` writes missing vectors only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import numpy as np

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


def vector_definitions() -> dict[str, dict]:
    """name -> {"doc", "tensors", "encodings", "metadata", "alignment_log2"}."""
    plain = Encoding(codecs=("plain",))
    v = {}
    v["01_dense_raw"] = dict(
        doc="Dense raw float32 matrix and int64 vector, PLAIN streams: the simplest file.",
        tensors={"weight": np.arange(-6, 6, dtype=np.float32).reshape(3, 4) / 4, "step": np.array([7, -1], np.int64)},
        encodings={"weight": plain, "step": plain},
    )
    v["02_scalar_empty_types"] = dict(
        doc="A 0-d scalar, an empty tensor (no chunks), bool, uint8, int16, float16, float64, bfloat16.",
        tensors={
            "scalar": np.float32(-1.25), "empty": np.zeros((0, 3), np.float16),
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
    return v


# --------------------------------------------------------------------------------------------
# portable JSON form

def array_to_json(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {"dtype": dtype_of(array.dtype).name, "shape": list(array.shape),
            "data_hex": array.reshape(-1).view(np.uint8).tobytes().hex()}


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


def vector_json(name: str, definition: dict) -> dict:
    tensors = definition["tensors"]
    decoded = {k: (t.decode() if isinstance(t, CodebookTensor) else np.asarray(t)) for k, t in tensors.items()}
    return {
        "name": name,
        "doc": definition["doc"],
        "alignment_log2": definition.get("alignment_log2", 0),
        "metadata": definition.get("metadata", {}),
        "encodings": {k: asdict(e) for k, e in definition["encodings"].items()},
        "inputs": {k: _input_to_json(t) for k, t in tensors.items()},
        "expected": {k: array_to_json(a) for k, a in decoded.items()},
    }


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
    return save(inputs, metadata=spec["metadata"] or None, encodings=encodings,
                alignment_log2=spec["alignment_log2"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="spec/vectors")
    parser.add_argument("--write", action="store_true", help="write vectors that do not exist yet (never overwrites)")
    args = parser.parse_args(argv)
    status = 0
    for name, definition in vector_definitions().items():
        spec = vector_json(name, definition)
        data = encode_vector(spec)
        dcf_path = os.path.join(args.directory, name + ".dcf")
        json_path = os.path.join(args.directory, name + ".json")
        if os.path.exists(dcf_path):
            with open(dcf_path, "rb") as f:
                same = f.read() == data
            print(f"{name}: {'same bytes' if same else 'DIFFERENT BYTES'} ({len(data)} bytes)")
            status |= not same
        elif args.write:
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
