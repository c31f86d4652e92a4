"""Accounting: Deep Compression's per-layer table and its U / U+Q / P / P+Q stage table.

Every size here is counted from bytes on disk (stream lengths from the file's index, file sizes
from ``os.path.getsize``), never estimated. The per-layer table reuses :mod:`dcformat.report` for
the byte accounting, so its rows plus the container row add up to the file size.

Bits per entry, as in the paper's table 2 / 3 ("before" and "after Huffman"):

- *fixed*: what fixed-width fields cost: ``ceil(log2 k)`` bits per codebook symbol (the dtype's
  width for raw values), ``index_bits`` per relative index;
- *stored*: the bytes of the tensor's VALUES (or GAPS) streams × 8 / entries, whatever codec the
  writer chose for each stream (Huffman, bit-packing, zstd, byte planes — the smallest);
- *H0*: the order-0 entropy of the stream's elements per entry, the size an ideal order-0 coder
  reaches without its code table.

Entries are CSR entries, filler zeros included (elements for a dense tensor).
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..compress import entropy_bits, pcr
from ..constants import DTYPE_SIZE, Layout, ValueCoding
from ..index_reader import read_header
from ..parallel import stopping
from ..report import file_summary, sanitize
from .errors import PackError

FORMATS = ("markdown", "csv", "json")


# ----------------------------------------------------------------------------------------------
# A table that renders as Markdown, CSV or JSON


@dataclass
class Column:
    key: str
    title: str
    fmt: str | Callable | None = None
    """Markdown formatting: a format spec (``",.0f"``), a callable, or None for ``str``."""

    def text(self, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if callable(self.fmt):
            return self.fmt(value)
        if self.fmt and isinstance(value, (int, float)):
            return format(value, self.fmt)
        return sanitize(str(value), 200)  # names come from files: no control characters to a terminal


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    """Anything else a JSON reader wants (file sizes, paths); not shown in Markdown or CSV."""

    def to_markdown(self) -> str:
        out = [f"### {sanitize(self.title, 300)}", ""] if self.title else []
        out.append("| " + " | ".join(c.title for c in self.columns) + " |")
        out.append("|" + "|".join("---" if i == 0 else "---:" for i, _ in enumerate(self.columns)) + "|")
        for row in self.rows:
            cells = [c.text(row.get(c.key)).replace("|", "\\|") for c in self.columns]
            out.append("| " + " | ".join(cells) + " |")
        if self.notes:
            out.append("")
            out.extend(f"- {note}" for note in self.notes)
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([c.key for c in self.columns])
        for row in self.rows:
            writer.writerow(["" if row.get(c.key) is None else _plain(row.get(c.key)) for c in self.columns])
        return buffer.getvalue()

    def to_dict(self) -> dict:
        return {"title": self.title, "columns": [{"key": c.key, "title": c.title} for c in self.columns],
                "rows": [_jsonable(row) for row in self.rows], "notes": self.notes, **_jsonable(self.extra)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    def render(self, fmt: str = "markdown") -> str:
        fmt = {"md": "markdown"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise PackError(f"table format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return {"markdown": self.to_markdown, "csv": self.to_csv, "json": self.to_json}[fmt]()


def _plain(value):
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, str):
        return sanitize(value, 10_000)
    return value


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    return value


def _pct(value) -> str:
    return f"{100 * value:.2f}%" if value < 0.1 else f"{100 * value:.1f}%"


def _bits(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value + 0.0:.2f}"  # + 0.0: no "-0.00"


def _shape(shape) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


def _versus(value) -> str:
    return f"{100 * value:.1f}% smaller" if value >= 0 else f"{-100 * value:.1f}% larger"


def _ratio(value) -> str:
    return f"{value:.1f}×" if value < 100 else f"{value:.0f}×"


def _ratio_text(ratio, than: str) -> str:
    """``34.9× smaller than THAN``, ``4.4× larger than THAN`` for a file larger than it (tiny ones)."""
    if not ratio:
        return f"– vs {than}"
    return f"{_ratio(ratio)} smaller than {than}" if ratio >= 1 else f"{_ratio(1 / ratio)} larger than {than}"


# ----------------------------------------------------------------------------------------------
# Stream statistics of a dcf file


@dataclass
class RoleStats:
    count: int = 0
    bytes: int = 0
    h0_bits: float = 0.0
    codecs: list[str] = field(default_factory=list)


@dataclass
class TensorStats:
    name: str
    row: dict
    """The tensor's row of :func:`dcformat.report.file_summary` (parts, codecs, bytes, nonzeros)."""
    roles: dict[str, RoleStats]
    fixed_bits: int
    weight_bits_fixed: int
    index_bits_fixed: int | None


@dataclass
class FileStats:
    path: str
    summary: dict
    tensors: list[TensorStats]

    @property
    def file_bytes(self) -> int:
        return self.summary["file_bytes"]

    @property
    def h0_bytes(self) -> float:
        return sum(r.h0_bits for t in self.tensors for r in t.roles.values()) / 8


def analyze_file(path) -> FileStats:
    """Decode every stream of a dcf file: stored bytes, element counts and order-0 entropy per role."""
    from ..reader import decode_tensor

    path = os.fspath(path)
    with open(path, "rb") as handle:  # bytes, not a memory map: an error leaves nothing to unmap
        view = memoryview(handle.read())
    header = read_header(view)
    nonzeros = {}
    stats = []
    for tensor in header.tensors.values():
        decoded = decode_tensor(view, tensor)
        nonzeros[tensor.name] = int(np.count_nonzero(decoded.reshape(-1).view(f"u{decoded.dtype.itemsize}")))
        del decoded
        stats.append(_tensor_stats(view, tensor))
    summary = file_summary(header, nonzeros)
    for tensor_stats, row in zip(stats, summary["tensors"]):
        tensor_stats.row = row
    return FileStats(path, summary, stats)


def _tensor_stats(view, tensor) -> TensorStats:
    from ..reader import decode_stream

    roles: dict[str, RoleStats] = {}
    elements: dict[str, list[np.ndarray]] = {}
    for stream in tensor.streams:
        role = stream.role.value
        stats = roles.setdefault(role, RoleStats())
        stats.count += stream.count
        stats.bytes += stream.length
        codec = stream.codec.name.lower()
        if codec not in stats.codecs:
            stats.codecs.append(codec)
        elements.setdefault(role, []).append(decode_stream(view, stream, tensor))
    for role, parts in elements.items():
        roles[role].h0_bits = entropy_bits(np.concatenate(parts)) if parts else 0.0
    entries = tensor.entries
    if tensor.value_coding == ValueCoding.CODEBOOK:
        weight_bits = math.ceil(math.log2(tensor.codebook_size)) if tensor.codebook_size > 1 else 0
        codebook_bits = tensor.codebook_size * 8 * (4 if tensor.codebook_dtype == 1 else 2)
    else:
        weight_bits = 8 * DTYPE_SIZE[tensor.dtype]
        codebook_bits = 0
    fixed = entries * weight_bits + codebook_bits
    index_bits = None
    if tensor.layout == Layout.CSR:
        index_bits = tensor.index_bits
        fixed += entries * index_bits + tensor.rows * max(1, math.ceil(math.log2(tensor.cols + 1)))
    return TensorStats(tensor.name, {}, roles, fixed, weight_bits, index_bits)


# ----------------------------------------------------------------------------------------------
# Deep Compression's per-layer table


LAYER_COLUMNS = [
    Column("name", "layer"),
    Column("shape", "shape", _shape),
    Column("parameters", "#W", ",d"),
    Column("kept", "kept", _pct),
    Column("layout", "layout"),
    Column("codebook_size", "k", "d"),
    Column("weight_bits_fixed", "weight bits fixed", _bits),
    Column("weight_bits_stored", "weight bits stored", _bits),
    Column("weight_bits_h0", "weight H0", _bits),
    Column("index_bits_fixed", "index bits fixed", _bits),
    Column("index_bits_stored", "index bits stored", _bits),
    Column("index_bits_h0", "index H0", _bits),
    Column("size_fixed", "size fixed", _pct),
    Column("size_stored", "size stored", _pct),
    Column("bytes", "bytes", ",d"),
    Column("codecs", "codecs (values/gaps)"),
]
FIDELITY_COLUMNS = [Column("policy", "setting"), Column("pruned", "pruned", _pct),
                    Column("relative_error", "rel. error", ".3f")]

LAYER_NOTES = [
    "kept: non-zero elements / elements. Entries (the denominator of every bits column) are CSR entries, "
    "filler zeros included, or all elements of a dense tensor.",
    "fixed: ceil(log2 k) bits per codebook symbol (the dtype's width for raw values) and index_bits per "
    "relative index — Deep Compression's 'before Huffman'. stored: the stream's bytes on disk × 8 / entries, "
    "after the entropy coder the writer chose by size ('after Huffman').",
    "H0: order-0 entropy of the stream's elements per entry (ideal coder, code table excluded).",
    "size: % of the tensor's dense bytes; 'fixed' adds fixed-width row counts and the codebook at its float width.",
    "The container row (preamble, index, trailer) makes the byte column add up to the file size on disk.",
]


def _tensor_sums(t: TensorStats) -> dict:
    """The additive quantities of one tensor, from which any row (one tensor or a sum) is derived."""
    values = t.roles.get("values", RoleStats())
    gaps = t.roles.get("gaps")
    entries = values.count
    return {
        "parameters": t.row["parameters"], "nonzeros": t.row["nonzeros"], "original": t.row["original_bytes"],
        "bytes": t.row["bytes"], "fixed": t.fixed_bits, "entries": entries,
        "w_fixed": entries * t.weight_bits_fixed, "w_stored": 8 * values.bytes, "w_h0": values.h0_bits,
        "csr_entries": entries if gaps else 0, "i_fixed": entries * (t.index_bits_fixed or 0),
        "i_stored": 8 * gaps.bytes if gaps else 0, "i_h0": gaps.h0_bits if gaps else 0.0,
    }


def _row_from_sums(name: str, s: dict) -> dict:
    e, ce = s["entries"], s["csr_entries"]
    return {
        "name": name, "parameters": s["parameters"], "nonzeros": s["nonzeros"],
        "kept": s["nonzeros"] / s["parameters"] if s["parameters"] and s["nonzeros"] is not None else None,
        "entries": e,
        "weight_bits_fixed": s["w_fixed"] / e if e else None, "weight_bits_stored": s["w_stored"] / e if e else None,
        "weight_bits_h0": s["w_h0"] / e if e else None,
        "index_bits_fixed": s["i_fixed"] / ce if ce else None, "index_bits_stored": s["i_stored"] / ce if ce else None,
        "index_bits_h0": s["i_h0"] / ce if ce else None,
        "size_fixed": (s["fixed"] / 8) / s["original"] if s["original"] else None,
        "size_stored": s["bytes"] / s["original"] if s["original"] else None, "bytes": s["bytes"],
    }


def _add(total: dict, part: dict) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


def layer_table(path, reports=None, *, stats: FileStats | None = None, collapse_raw: bool = False) -> Table:
    """Deep Compression's per-layer table of a dcf file.

    ``reports``: the :class:`~dcformat.pack.packer.TensorReport` list of :func:`pack` (or a dict
    name -> report); adds the fidelity columns (share pruned, relative error).
    ``collapse_raw``: one row for all dense raw tensors (biases, norms, small tensors) together.
    """
    stats = stats or analyze_file(path)
    if isinstance(reports, list):
        reports = {r.name: r for r in reports}
    columns = list(LAYER_COLUMNS) + (FIDELITY_COLUMNS if reports else [])
    rows, total, raw, raw_count = [], {}, {}, 0
    for t in stats.tensors:
        row = t.row
        sums = _tensor_sums(t)
        _add(total, sums)
        if collapse_raw and row["layout"] == "dense" and row["value_coding"] == "raw":
            _add(raw, sums)
            raw_count += 1
            continue
        out = _row_from_sums(row["name"], sums)
        values = t.roles.get("values", RoleStats())
        gaps = t.roles.get("gaps")
        out.update(
            shape=row["shape"], layout=row["layout"], codebook_size=row["codebook_size"],
            weight_bits_fixed=t.weight_bits_fixed, index_bits_fixed=t.index_bits_fixed,
            codecs="/".join(filter(None, ["+".join(values.codecs), gaps and "+".join(gaps.codecs)])) or None,
            bytes_by_part=row["parts"],
        )
        if reports and row["name"] in reports:
            out["policy"] = reports[row["name"]].policy
            out["pruned"] = reports[row["name"]].pruned
            out["relative_error"] = reports[row["name"]].relative_error
        rows.append(out)
    if raw_count:
        rows.append({**_row_from_sums(f"{raw_count} raw dense tensors (biases, norms, small)", raw), "layout": "dense"})
    file_bytes = stats.file_bytes
    container = stats.summary["bytes_by_part"]["header"]
    if total.get("bytes", 0) + container != file_bytes:  # pragma: no cover - report.file_summary guarantees it
        raise PackError("byte accounting does not add up to the file size")
    original = total.get("original", 0)
    rows.append(_row_from_sums("total (tensors)", total) if total else {"name": "total (tensors)", "bytes": 0})
    rows.append({"name": "container (preamble, index, trailer)", "bytes": container})
    rows.append({"name": "file on disk", "parameters": total.get("parameters", 0), "bytes": file_bytes,
                 "size_stored": file_bytes / original if original else None})
    ratio = original / file_bytes if file_bytes else None
    notes = list(LAYER_NOTES)
    if reports:
        notes.append("pruned: share of the elements non-zero in the source and zero in the file; "
                     "rel. error: ‖W − Ŵ‖ / ‖W‖ against the source.")
    return Table(
        title=f"{os.path.basename(stats.path)}: {file_bytes:,} bytes, "
              f"{_ratio_text(ratio, f'the dense {original:,} bytes')}",
        columns=columns, rows=rows, notes=notes,
        extra={"file": stats.path, "file_bytes": file_bytes, "original_bytes": original, "ratio": ratio,
               "bytes_by_part": stats.summary["bytes_by_part"], "metadata": stats.summary["metadata"]},
    )


def fidelity_table(reports) -> Table:
    """Per tensor: policy, share of weights pruned, relative error ‖W − Ŵ‖ / ‖W‖."""
    columns = [Column("name", "tensor"), Column("shape", "shape", _shape), Column("policy", "policy"),
               Column("parameters", "#W", ",d"), Column("nonzeros", "non-zeros", ",d"),
               Column("pruned", "pruned", _pct), Column("relative_error", "rel. error", ".4f"),
               Column("bytes", "bytes", ",d")]
    rows = [r.to_dict() for r in reports]
    lossy = [r for r in reports if not r.lossless]
    notes = [f"{len(reports) - len(lossy)} tensors bit-exact; {len(lossy)} changed by the recipe."]
    if lossy:
        worst = max(lossy, key=lambda r: r.relative_error)
        notes.append(f"largest relative error {worst.relative_error:.4f} ({worst.name}).")
    return Table("fidelity", columns, rows, notes)


# ----------------------------------------------------------------------------------------------
# The stage table: U, U+Q, P, P+Q, each packed to a real file, against gzip -9 and zstd -19

STAGE_NAMES = {
    "U": "uncompressed (lossless dcf)",
    "U+Q": "quantized (weight sharing only)",
    "P": "pruned (raw values)",
    "P+Q": "pruned + quantized",
}
BASELINES = ("gzip", "zstd")


def _slug(stage: str) -> str:
    return stage.replace("+", "")


BASELINE_SLICE = 1 << 20
"""Bytes handed to gzip at a time: a stop request (Ctrl-C) is seen between slices."""


def dense_baselines(data: bytes, stem: str, which=BASELINES) -> dict[str, int]:
    """Compress ``data`` with gzip -9 and zstd -19 into ``stem + .gz / .zst``; sizes on disk.

    Each file is written atomically (:class:`~dcformat.atomic.AtomicFile`: an interrupted run
    leaves no partial file). gzip gets the data :data:`BASELINE_SLICE` bytes at a time with a stop
    check between (the same deflate stream as one call); zstd -19 is one ``ZstdCompressor.compress``
    call (its streaming API writes a different, larger frame), which a Ctrl-C does not wait for."""
    from ..atomic import AtomicFile
    from ..parallel import check_stop

    view = memoryview(data)
    sizes = {}
    for name, suffix in (("gzip", ".gz"), ("zstd", ".zst")):
        if name not in which:
            continue
        atomic = AtomicFile(stem + suffix)
        try:
            if name == "gzip":
                with gzip.GzipFile(fileobj=atomic.file, mode="wb", compresslevel=9, mtime=0) as out:
                    for start in range(0, len(view), BASELINE_SLICE):
                        check_stop()
                        out.write(view[start:start + BASELINE_SLICE])
            else:  # one call: zstd's streaming API writes another (larger) frame
                import zstandard

                check_stop()
                atomic.file.write(zstandard.ZstdCompressor(level=19, write_content_size=True).compress(data))
            atomic.commit()
        except BaseException:
            atomic.discard()
            raise
        sizes[name] = os.path.getsize(stem + suffix)
    return sizes


_SUFFIX = {"gzip": "gz", "zstd": "zst"}
_BASELINE_NAMES = {"gzip": "gzip -9", "zstd": "zstd -19 (one thread)"}


def stem_of(out_dir, prefix: str, stage: str) -> str:
    return os.path.join(os.fspath(out_dir), f"{prefix}.{_slug(stage)}")


def stage_table(source, recipe, out_dir, *, evaluate: Callable | None = None, baselines=BASELINES,
                baseline_stages=None, progress: bool = False, keep_dense: bool = False,
                prefix: str | None = None, background=None, searches=None) -> tuple[Table, dict]:
    """Pack ``source`` at Deep Compression's four stages and compare each with gzip -9 and zstd -19.

    Stages (from ``recipe``): U (lossless), U+Q (recipe without pruning), P (recipe without
    weight sharing), P+Q (the recipe). Each is packed to ``out_dir/PREFIX.STAGE.dcf`` and decoded;
    the decoded tensors are written as one dense safetensors file (by the safetensors package, the
    source's dtypes), which gzip -9 and zstd -19 compress to ``.gz`` / ``.zst`` files beside it;
    every size is then read from disk. ``baselines`` picks the compressors and
    ``baseline_stages`` the stages that get them (default: all; zstd -19 takes ~45 s per 90 MB);
    or ``baselines`` is a dict compressor -> stages (None: all), e.g.
    ``{"gzip": None, "zstd": ("P+Q",)}``.
    ``evaluate(tensors) -> float or dict`` adds accuracy columns. Returns ``(table, details)``.
    ``background``: an executor (:mod:`concurrent.futures`) to compress the dense baselines on;
    with one, the call returns once the stages are packed, and ``details["finish"]()`` waits for
    the baselines and fills in their cells (without one, a thread of the call's own does it before
    it returns). ``searches``: a :class:`~.budget.Searches` the stages' tensors are built from
    where a policy is one of a kept search's candidates (``pack(..., searches=)``; the same files).
    """
    from safetensors.numpy import save as safetensors_bytes

    from .. import load_file
    from .checkpoints import load_checkpoint
    from .packer import pack
    from .recipe import coerce_recipe

    recipe = coerce_recipe(recipe)
    if isinstance(baselines, dict):
        plan = dict(baselines)
    else:
        plan = {b: baseline_stages for b in baselines}
    unknown = set(plan) - set(BASELINES)
    if unknown:
        raise PackError(f"unknown baseline {sorted(unknown)[0]!r}; known: {', '.join(BASELINES)}")
    source_name = None
    if isinstance(source, (str, os.PathLike)):
        source_name = os.path.basename(os.fspath(source))
        tensors, _ = load_checkpoint(source)
    else:
        tensors = dict(source)
    tensors = {name: a for name, a in tensors.items() if recipe.selects(name)}
    prefix = prefix or (os.path.splitext(source_name)[0] if source_name else "model")
    norms = {name: float(np.linalg.norm(a.reshape(-1).astype(np.float64))) for name, a in tensors.items()
             if a.dtype.kind == "f" or a.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")}
    norm = math.sqrt(sum(n * n for n in norms.values()))
    os.makedirs(out_dir, exist_ok=True)
    rows, details = [], {"stages": {}}
    stages = recipe.stages()
    from tqdm.auto import tqdm

    accuracy_keys: list[str] = []
    # P+Q first: its dense baselines (zstd -19 is the slow one) then run on a second thread while
    # the other stages are packed. zlib and zstandard release the GIL while they compress.
    order = [stage for stage in ("P+Q", "P", "U+Q", "U") if stage in stages]
    pending = {}
    own = ThreadPoolExecutor(max_workers=1) if background is None else None
    background = background or own
    try:
        for stage in tqdm(order, desc="stages", leave=False, disable=None if progress else True):
            start = time.perf_counter()
            stem = stem_of(out_dir, prefix, stage)
            result = pack(tensors, stem + ".dcf", stages[stage], source_name=source_name, progress=progress,
                          searches=searches)
            pack_seconds = time.perf_counter() - start
            stats = analyze_file(stem + ".dcf")
            decoded = load_file(stem + ".dcf")
            dense = safetensors_bytes(decoded)
            if keep_dense:
                with open(stem + ".dense.safetensors", "wb") as handle:
                    handle.write(dense)
            which = [b for b, only in plan.items() if only is None or stage in only]
            if which:
                pending[stage] = background.submit(dense_baselines, dense, stem + ".dense.safetensors", which)
            # ‖W − Ŵ‖² summed from the per-tensor relative errors the packer measured
            num = sum((r.relative_error * norms[r.name]) ** 2 for r in result.tensors if r.name in norms)
            row = {
                "stage": stage, "what": STAGE_NAMES[stage], "parameters": result.parameters,
                "nonzeros": result.nonzeros,
                "kept": result.nonzeros / result.parameters if result.parameters else None,
                "pcr": pcr(result.parameters, result.nonzeros) if result.parameters else None,
                "dcf_bytes": result.file_bytes, "dcf_ratio": result.original_bytes / result.file_bytes,
                "h0_bytes": stats.h0_bytes, "relative_error": math.sqrt(num) / norm if norm else 0.0,
                "dense_bytes": len(dense), "original_bytes": result.original_bytes, "pack_seconds": pack_seconds,
            }
            del dense
            if evaluate is not None:
                scores = evaluate(decoded)
                scores = scores if isinstance(scores, dict) else {"accuracy": scores}
                for key, value in scores.items():
                    row[key] = float(value)
                    if key not in accuracy_keys:
                        accuracy_keys.append(key)
            rows.append(row)
            details["stages"][stage] = {"dcf": stem + ".dcf", "result": result, "stats": stats}
            del decoded
    except BaseException:
        for future in pending.values():
            future.cancel()
        if own is not None:  # after a Ctrl-C the baseline stops at its next slice: not waited for
            own.shutdown(wait=not stopping(), cancel_futures=True)
        raise

    def finish() -> None:
        """Wait for the dense baselines and fill in their cells."""
        names = sorted({_BASELINE_NAMES[b] for b, only in plan.items() if only is None or set(only) & set(pending)})
        waiting = tqdm(list(pending.items()), total=len(pending), leave=False, disable=None if progress else True,
                       desc=f"dense baselines ({', '.join(names)})")  # zstd -19 can take minutes
        for stage, future in waiting:
            sizes = future.result()
            row = next(r for r in rows if r["stage"] == stage)
            for key in ("gzip", "zstd"):
                if key in sizes:
                    row[f"{key}_bytes"] = sizes[key]
                    row[f"{key}_ratio"] = row["original_bytes"] / sizes[key]
                    stem = stem_of(out_dir, prefix, stage)
                    details["stages"][stage][key] = f"{stem}.dense.safetensors.{_SUFFIX[key]}"
            if "zstd" in sizes:
                row["vs_zstd"] = 1 - row["dcf_bytes"] / sizes["zstd"]
        pending.clear()

    if own is not None:
        try:
            finish()
        finally:
            own.shutdown(wait=not stopping(), cancel_futures=True)
    else:
        details["finish"] = finish
    rows.sort(key=lambda r: list(stages).index(r["stage"]))
    columns = [
        Column("stage", "stage"), Column("what", "what"), Column("nonzeros", "non-zeros (PR)", ",d"),
        Column("kept", "kept", _pct), Column("pcr", "PCR", _ratio), Column("dcf_bytes", "dcf bytes", ",d"),
        Column("dcf_ratio", "dcf ×", _ratio),
    ]
    if "gzip" in plan:
        columns += [Column("gzip_bytes", "gzip -9 bytes", ",d"), Column("gzip_ratio", "gzip ×", _ratio)]
    if "zstd" in plan:
        columns += [Column("zstd_bytes", "zstd -19 bytes", ",d"), Column("zstd_ratio", "zstd ×", _ratio),
                    Column("vs_zstd", "dcf vs zstd", _versus)]
    columns += [Column("h0_bytes", "H0 bound bytes", ",.0f"), Column("relative_error", "rel. error", ".3f")]
    columns += [Column(key, key, ".4f") for key in accuracy_keys]
    columns += [Column("pack_seconds", "pack s", ".1f")]
    original = rows[0]["original_bytes"] if rows else 0
    notes = [
        f"× = dense bytes of the source tensors ({original:,}) / size on disk. PR = non-zero parameters; "
        "PCR = parameters / non-zeros.",
        f"{' and '.join(_BASELINE_NAMES[b] for b in plan) or 'No baseline'} compress each stage's decoded tensors "
        "written densely as one safetensors file (source dtypes, safetensors header included); the compressed "
        "files are on disk beside the .dcf files.",
        "H0 bound: order-0 entropy of every stream of the dcf file, code tables excluded.",
        "rel. error: ‖W − Ŵ‖ / ‖W‖ over all floating-point tensors together. pack s: packing and verifying.",
        f"recipe: {recipe.to_json()}",
    ]
    for name, only in plan.items():
        if only is not None:
            notes.append(f"{name} computed for stage{'s' if len(only) > 1 else ''} {', '.join(only)} only.")
    table = Table(f"Deep Compression stages{f' of {source_name}' if source_name else ''}", columns, rows, notes,
                  extra={"out_dir": os.fspath(out_dir), "recipe": recipe.to_dict()})
    return table, details
