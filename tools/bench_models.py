"""Weights for the benchmark: LeNets and synthetic transformers with trained-like distributions,
Deep Compression settings for each, and a minimal streaming safetensors reader (the writer is
dcformat's, :mod:`dcformat.pack.safetensors_stream`).

No trained LeNet ships with dcformat (``dcformat.torch`` has the architectures, not weights), so
the LeNets here are *random-init-shaped but trained-like*: every layer is Laplacian (the peaked,
heavy-tailed shape trained weights take) with a per-layer scale of about ``1/sqrt(fan_in)``,
biases small. The synthetic transformers use the same law with per-tensor scales spread around
0.02 and LayerNorm weights near 1. Lossless ratios on such data are what real float32 checkpoints
give (about 1.2 with byte planes): the mantissa bytes are noise, the exponent bytes are not.

The streaming safetensors functions read and write one tensor at a time with plain file reads and
writes (no memory map), so a process's resident memory is its own arrays and nothing else.
"""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from dcformat.pack.safetensors_stream import SafetensorsStreamWriter, save_safetensors_streaming

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
             "U8": np.uint8, "I8": np.int8, "BOOL": np.bool_}


# ------------------------------------------------------------------------------------------------
# Weights

def laplacian(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
    """Laplacian float32 weights of standard deviation ``scale``: an exponential with a random sign."""
    n = int(np.prod(shape))
    out = rng.standard_exponential(n, dtype=np.float32)
    out *= np.float32(scale / np.sqrt(2.0))
    signs = rng.integers(0, 2, size=n, dtype=np.uint32) << np.uint32(31)
    out.view(np.uint32)[...] ^= signs
    return out.reshape(shape)


def lenet_300_100(seed: int = 0) -> dict[str, np.ndarray]:
    """LeNet-300-100's layers (Caffe names, PyTorch layouts): 266,200 weights, 410 biases."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (n_out, n_in) in {"ip1": (300, 784), "ip2": (100, 300), "ip3": (10, 100)}.items():
        out[f"{name}.weight"] = laplacian(rng, (n_out, n_in), 1.0 / np.sqrt(n_in))
        out[f"{name}.bias"] = laplacian(rng, (n_out,), 0.01)
    return out


def lenet_5(seed: int = 0) -> dict[str, np.ndarray]:
    """Caffe's LeNet-5 (20 and 50 5×5 filters, fc 500, fc 10): 430,500 weights, 580 biases."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": (20, 1, 5, 5), "conv2": (50, 20, 5, 5), "ip1": (500, 800), "ip2": (10, 500)}
    out = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        out[f"{name}.weight"] = laplacian(rng, shape, 1.0 / np.sqrt(fan_in))
        out[f"{name}.bias"] = laplacian(rng, (shape[0],), 0.01)
    return out


def transformer_layout(parameters: int, d_model: int, vocab: int = 32000) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a decoder-only transformer of about ``parameters`` parameters."""
    per_layer = 12 * d_model * d_model + 13 * d_model
    layers = max(1, round((parameters - vocab * d_model) / per_layer))
    shapes = [("embed_tokens.weight", (vocab, d_model))]
    for i in range(layers):
        p = f"layers.{i}."
        for proj in ("q", "k", "v", "o"):
            shapes.append((f"{p}attn.{proj}_proj.weight", (d_model, d_model)))
            shapes.append((f"{p}attn.{proj}_proj.bias", (d_model,)))
        shapes.append((f"{p}mlp.up_proj.weight", (4 * d_model, d_model)))
        shapes.append((f"{p}mlp.up_proj.bias", (4 * d_model,)))
        shapes.append((f"{p}mlp.down_proj.weight", (d_model, 4 * d_model)))
        shapes.append((f"{p}mlp.down_proj.bias", (d_model,)))
        for norm in ("norm1", "norm2"):
            shapes.append((f"{p}{norm}.weight", (d_model,)))
            shapes.append((f"{p}{norm}.bias", (d_model,)))
    shapes.append(("norm.weight", (d_model,)))
    return shapes


def transformer_tensor(name: str, shape, seed: int) -> np.ndarray:
    """One tensor of the synthetic transformer, deterministic from its name and ``seed``."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])  # every tensor its own stream
    if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
        return (1.0 + laplacian(rng, shape, 0.05)).astype(np.float32)
    if name.endswith(".bias"):
        return laplacian(rng, shape, 0.005)
    return laplacian(rng, shape, 0.02 * float(np.exp(rng.uniform(-0.5, 0.5))))


def synthetic(parameters: int, seed: int = 0):
    """``(layout, make)`` of a synthetic checkpoint: 100M → d_model 768, 1B → d_model 2048."""
    d_model = 768 if parameters <= 300_000_000 else 2048
    layout = transformer_layout(parameters, d_model)
    return layout, lambda name, shape: transformer_tensor(name, shape, seed)


# ------------------------------------------------------------------------------------------------
# Deep Compression settings (recipes for dcformat.pack)

PAPER_LENET = {
    # Han et al. 2016, Tables 2 and 3: kept fraction and weight bits per layer (relative-index
    # widths are left to the writer, which picks the smallest; the paper used 5 bits).
    "lenet-300-100": {"ip1": (0.08, 6), "ip2": (0.09, 6), "ip3": (0.26, 6)},
    "lenet-5": {"conv1": (0.66, 8), "conv2": (0.12, 8), "ip1": (0.08, 5), "ip2": (0.19, 5)},
}


def paper_recipe(model: str) -> dict:
    """The recipe of the paper's per-layer settings for a LeNet."""
    rules = [{"match": f"{layer}.weight", "rank": "any", "min_size": 0, "sparsity": round(1 - kept, 6), "bits": bits}
             for layer, (kept, bits) in PAPER_LENET[model].items()]
    return {"rules": rules}


DC_RECIPE = {"rules": [{"rank": [2, 3, 4], "sparsity": 0.9, "bits": 5}]}
"""Pruned 90 % and 5-bit codebooks (31 centroids and the zero) on every weight matrix (rank >= 2,
4,096 elements or more: embeddings included); vectors stay lossless."""


# ------------------------------------------------------------------------------------------------
# Streaming safetensors

def write_safetensors(path, layout, make, metadata=None) -> int:
    """Write a float32 safetensors file tensor by tensor: ``make(name, shape)`` gives each array
    (with dcformat's streaming writer, one tensor in memory at a time). Returns the largest
    tensor's bytes."""
    shapes = dict(layout)
    largest = 0

    def one(name):
        nonlocal largest
        array = np.ascontiguousarray(make(name, shapes[name]), np.float32)
        largest = max(largest, array.nbytes)
        return array

    save_safetensors_streaming(path, [(name, np.float32, shape) for name, shape in layout], one, metadata)
    return largest


class SafetensorsStream:
    """Read a safetensors file one tensor at a time with ``readinto`` (no memory map)."""

    def __init__(self, path):
        self.file = open(path, "rb")
        (n,) = struct.unpack("<Q", self.file.read(8))
        header = json.loads(self.file.read(n))
        self.metadata = header.pop("__metadata__", None) or {}
        self.base = 8 + n
        self.entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])

    def keys(self) -> list[str]:
        return [name for name, _ in self.entries]

    def __iter__(self):
        for name, entry in self.entries:
            begin, end = entry["data_offsets"]
            array = np.empty(tuple(entry["shape"]), ST_DTYPES[entry["dtype"]])
            self.file.seek(self.base + begin)
            if end > begin:
                self.file.readinto(memoryview(array.reshape(-1)).cast("B"))
            yield name, array

    def close(self):
        self.file.close()


SafetensorsWriter = SafetensorsStreamWriter
"""``SafetensorsWriter(path, [(name, dtype, shape), ...], metadata)``, then ``write(name, array)``
for each and ``close()``: dcformat's streaming safetensors writer (atomic, any write order)."""
