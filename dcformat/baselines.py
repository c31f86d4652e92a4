"""The formats people ship, as reference quantizers: int8 per channel, NF4, GGUF block quants.

These are the yardstick ``make demo`` draws beside dcformat's presets (``fidelity.png``) and
``tools/bench_fidelity.py`` tabulates. Each quantizer takes one float matrix and returns
``(decoded, payload)``: the float32 weights a loader of that format would compute, in the matrix's
shape, and the bytes the format stores for it (codes, scales and offsets; no container).

- :func:`int8_per_channel`: symmetric int8 with one float32 scale per output row;
- :func:`nf4`: QLoRA's NormalFloat-4 (16 published levels, blocks of 64, a float32 absmax per
  block; optionally with double quantization of the absmaxes);
- :func:`gguf_quant`: GGUF's Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, quantized and dequantized by the ``gguf``
  package's numpy code (in the ``test`` extra, which ``make demo`` installs); ``None`` without it.
  The K-quants (Q5_K, Q4_K) have no numpy quantizer in that package.

:func:`references` lists them by name, and :func:`quantize_tensors` applies one to the matrices of
a checkpoint.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, NamedTuple

import numpy as np

NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], np.float32)
"""NF4's levels (Dettmers et al., QLoRA 2023; as bitsandbytes stores them)."""
GGUF_TYPES = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")
"""The GGUF types whose quantizer the ``gguf`` package has in numpy."""


def int8_per_channel(w: np.ndarray):
    """Symmetric int8 with one float32 scale per row (``max|row| / 127``)."""
    w = np.asarray(w, np.float32)
    scale = np.abs(w).max(axis=1, keepdims=True) / 127
    scale = np.where(scale > 0, scale, 1).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return (q * scale).astype(np.float32), q.tobytes() + scale.tobytes()


def nf4(w: np.ndarray, block: int = 64, double: bool = False):
    """NF4: per block of ``block`` weights, the nearest of :data:`NF4_LEVELS` times the block's absmax.

    Two 4-bit codes per byte. ``double``: the absmaxes, less their mean, as int8 per group of 256
    with a float32 scale per group (QLoRA's double quantization, with a linear 8-bit code)."""
    w = np.asarray(w, np.float32)
    flat = w.reshape(-1)
    if flat.size % block:
        raise ValueError(f"{flat.size} weights are not a whole number of {block}-weight blocks")
    blocks = flat.reshape(-1, block)
    absmax = np.abs(blocks).max(axis=1).astype(np.float32)
    scales_bytes = absmax.tobytes()
    if double:
        mean = np.float32(absmax.mean())
        centred = absmax - mean
        pad = (-centred.size) % 256
        groups = np.concatenate([centred, np.zeros(pad, np.float32)]).reshape(-1, 256)
        gscale = (np.abs(groups).max(axis=1, keepdims=True) / 127).astype(np.float32)
        gscale = np.where(gscale > 0, gscale, np.float32(1))
        q8 = np.clip(np.rint(groups / gscale), -127, 127).astype(np.int8)
        absmax = ((q8 * gscale).reshape(-1)[:absmax.size] + mean).astype(np.float32)
        scales_bytes = q8.tobytes() + gscale.tobytes() + mean.tobytes()
    safe = np.where(absmax > 0, absmax, np.float32(1))
    x = blocks / safe[:, None]
    mids = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2
    codes = np.searchsorted(mids, x).astype(np.uint8)
    decoded = (NF4_LEVELS[codes] * absmax[:, None]).astype(np.float32).reshape(w.shape)
    packed = (codes.reshape(-1)[0::2] | (codes.reshape(-1)[1::2] << 4)).astype(np.uint8)
    return decoded, packed.tobytes() + scales_bytes


def gguf_available() -> bool:
    """Whether the ``gguf`` package (and so :func:`gguf_quant`) is there."""
    return importlib.util.find_spec("gguf") is not None


def gguf_quant(w: np.ndarray, kind: str):
    """GGUF block quantization by the ``gguf`` package (None when it is not installed).

    ``kind``: one of :data:`GGUF_TYPES`; rows must be a whole number of the type's blocks (32 weights)."""
    if kind not in GGUF_TYPES:
        raise ValueError(f"GGUF type {kind!r}: the gguf package quantizes only {', '.join(GGUF_TYPES)} in numpy")
    try:
        import gguf
        from gguf import quants
    except ImportError:
        return None
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    q = quants.quantize(np.asarray(w, np.float32), qtype)
    return quants.dequantize(q, qtype).astype(np.float32).reshape(w.shape), q.tobytes()


class Reference(NamedTuple):
    """One format of the yardstick: ``family`` (int8, gguf, nf4), ``label`` and its quantizer."""
    family: str
    label: str
    quantize: Callable


def references(gguf_types=GGUF_TYPES, nf4_double: bool = True) -> tuple[list[Reference], list[str]]:
    """The yardstick's formats, and the labels of those that cannot run here (GGUF without the
    ``gguf`` package). ``gguf_types``: which GGUF types; ``nf4_double``: NF4 with double
    quantization too."""
    refs = [Reference("int8", "int8 per-channel", int8_per_channel)]
    missing = []
    for kind in gguf_types:
        if kind not in GGUF_TYPES:
            raise ValueError(f"GGUF type {kind!r}: the gguf package quantizes only {', '.join(GGUF_TYPES)} in numpy")
        label = f"GGUF {kind}"
        if gguf_available():
            refs.append(Reference("gguf", label, lambda w, kind=kind: gguf_quant(w, kind)))
        else:
            missing.append(label)
    refs.append(Reference("nf4", "NF4 (blocks of 64)", nf4))
    if nf4_double:
        refs.append(Reference("nf4", "NF4 + double quantization", lambda w: nf4(w, double=True)))
    return refs, missing


def quantize_tensors(quantize: Callable, tensors: dict, names) -> tuple[dict, bytes] | None:
    """``quantize`` applied to ``tensors[name]`` for each of ``names``: ``({name: decoded}, payload)``,
    the payload being the stored bytes of all of them in turn; None when the quantizer cannot run."""
    decoded, payload = {}, []
    for name in names:
        got = quantize(tensors[name])
        if got is None:
            return None
        decoded[name], blob = got
        payload.append(blob)
    return decoded, b"".join(payload)
