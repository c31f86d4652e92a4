"""What a dcf file holds, from its index alone: sizes by part, per-tensor rows, bits per weight.

Used by ``dcinfo`` and by the packing tables. Reads no stream, imports no codec and no Numba.
"""
from __future__ import annotations

import unicodedata
from collections import Counter

from .constants import DTYPE_SIZE, PREAMBLE_SIZE, TRAILER_SIZE, Layout, Role, ValueCoding
from .index_reader import Header
from .structures import TensorInfo

PARTS = ("header", "indices", "values", "codebooks", "raw")
"""Byte accounting parts: the preamble, index and trailer; CSR row counts and gaps; the values of
sparse or weight-shared tensors; codebooks; the values of dense raw tensors. Padding, if any, is
counted in ``header``."""


def ratio_text(ratio: float | None, than: str = "float32", digits: int = 2) -> str:
    """``17.61× smaller than float32``; for a file larger than what it is compared with, ``4.17×
    larger than float32`` (never "0.24× smaller"); ``- vs float32`` without a ratio."""
    if not ratio:
        return f"- vs {than}"
    if ratio >= 1:
        return f"{ratio:.{digits}f}× smaller than {than}"
    return f"{1 / ratio:.{digits}f}× larger than {than}"


def sanitize(text: str, limit: int = 120) -> str:
    """A name made safe for a terminal: control and format characters escaped, length capped."""
    out = []
    for ch in text:
        if unicodedata.category(ch)[0] == "C" or ch in "\\":
            out.append(ch.encode("unicode_escape").decode("ascii") if ch != "\\" else "\\\\")
        else:
            out.append(ch)
    safe = "".join(out)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def stream_part(tensor: TensorInfo, role: Role) -> str:
    if role is Role.CODEBOOK:
        return "codebooks"
    if role in (Role.ROW_COUNTS, Role.GAPS):
        return "indices"
    if tensor.layout == Layout.DENSE and tensor.value_coding == ValueCoding.RAW:
        return "raw"
    return "values"


def tensor_parts(tensor: TensorInfo) -> dict[str, int]:
    parts = Counter()
    for stream in tensor.streams:
        parts[stream_part(tensor, stream.role)] += stream.length
    return dict(parts)


def codecs_by_role(tensor: TensorInfo) -> dict[str, str]:
    """Per role, the codecs its streams use (``huffman`` or ``bitpack+huffman`` when chunks differ)."""
    seen: dict[str, list[str]] = {}
    for stream in tensor.streams:
        names = seen.setdefault(stream.role.value, [])
        name = stream.codec.name.lower()
        if name not in names:
            names.append(name)
    return {role: "+".join(names) for role, names in seen.items()}


def tensor_row(tensor: TensorInfo, nonzeros: int | None = None) -> dict:
    numel = tensor.numel
    row = {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "dtype": tensor.dtype.name,
        "layout": tensor.layout.name.lower(),
        "parameters": numel,
        "entries": tensor.entries if tensor.layout == Layout.CSR else None,
        "nonzeros": nonzeros,
        "density": (nonzeros / numel if numel else 0.0) if nonzeros is not None else None,
        "value_coding": tensor.value_coding.name.lower(),
        "codebook_size": tensor.codebook_size or None,
        "index_bits": tensor.index_bits or None,
        "codecs": codecs_by_role(tensor),
        "chunks": len(tensor.chunks),
        "bytes": tensor.stored_bytes,
        "parts": tensor_parts(tensor),
        "original_bytes": numel * DTYPE_SIZE[tensor.dtype],
    }
    if nonzeros is None and tensor.layout == Layout.CSR and tensor.value_coding == ValueCoding.RAW:
        row["entries_note"] = "entries include fillers"
    return row


def file_summary(header: Header, nonzeros: dict[str, int] | None = None) -> dict:
    """The whole-file summary that ``dcinfo --json`` prints."""
    nonzeros = nonzeros or {}
    tensors = [tensor_row(t, nonzeros.get(t.name)) for t in header.tensors.values()]
    parts = Counter({p: 0 for p in PARTS})
    for row in tensors:
        parts.update(row["parts"])
    attachments = [{"name": a.name, "bytes": a.size, "stored": a.stream.length, "codec": a.stream.codec.name.lower()}
                   for a in header.attachments.values()]
    if attachments:  # format 1.1 (spec §4.6.1): the attachments' streams are a part of their own
        parts["attachments"] = sum(a["stored"] for a in attachments)
    parts["header"] += header.file_length - sum(n for p, n in parts.items() if p != "header")
    params = sum(r["parameters"] for r in tensors)
    return {
        "version": f"{header.version[0]}.{header.version[1]}",
        "file_bytes": header.file_length,
        "index_bytes": header.index_length,
        "tensor_count": len(tensors),
        "parameters": params,
        "nonzeros": sum(nonzeros.values()) if len(nonzeros) == len(tensors) and tensors else None,
        "bytes_by_part": dict(parts),
        # the weights' bytes: the file without its attachments (a tokenizer is not a weight)
        "bits_per_weight": 8 * (header.file_length - parts["attachments"]) / params if params else None,
        "ratio_vs_float32": 4 * params / (header.file_length - parts["attachments"]) if header.file_length else None,
        "metadata": dict(header.metadata),
        "tensors": tensors,
        "aliases": dict(header.aliases),
        "attachments": attachments,
        "fixed_overhead_bytes": PREAMBLE_SIZE + TRAILER_SIZE,
    }
