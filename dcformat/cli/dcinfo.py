"""dcinfo: inspect dcf files.

    dcinfo FILE...            sizes by part, bits per weight, one row per tensor (headers only)
    dcinfo --json FILE...     the same as JSON
    dcinfo --verify FILE...   also decode every tensor, check every checksum, count non-zeros

Without --verify it reads the preamble, trailer and index only, and imports no codec (no JIT).
A bad file gets one line naming what is wrong, and exit status 1.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import DCFormatError
from ..reader import DCFReader
from ..report import PARTS, file_summary, sanitize


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _shape(shape) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


def _inspect(path: str, verify: bool) -> dict:
    if verify:
        import numpy as np

        with DCFReader(path, verify=True) as reader:
            nonzeros = {}
            for name in reader.keys():
                array = reader.get_tensor(name)
                nonzeros[name] = int(np.count_nonzero(array.reshape(-1).view(f"u{array.dtype.itemsize}")))
            summary = file_summary(reader.header, nonzeros)
        summary["verified"] = True
        return summary
    with DCFReader(path) as reader:  # parses the index only; no stream is read
        return file_summary(reader.header)


def _packed_with(recipe_json) -> str | None:
    """``preset safe, relative error <= 0.03 per tensor`` from the dcformat.recipe metadata."""
    try:
        recipe = json.loads(recipe_json) if recipe_json else None
        budgets = sorted({r["max_error"] for r in recipe.get("rules", []) if r.get("max_error") is not None})
        preset = recipe.get("preset")
    except (ValueError, AttributeError, TypeError, KeyError):
        return None
    parts = [f"preset {preset}"] if preset else []
    if budgets:
        parts.append(f"relative error <= {', '.join(f'{b:g}' for b in budgets)} per tensor")
    return ", ".join(parts) or None


def _print_text(path: str, s: dict, out) -> None:
    w = out.write
    w(f"{sanitize(path)}: dcf {s['version']}, {s['tensor_count']} tensors, {s['parameters']:,} parameters")
    if s["nonzeros"] is not None:
        w(f", {s['nonzeros']:,} non-zero ({100 * s['nonzeros'] / max(1, s['parameters']):.2f}%)")
    w("\n")
    ratio = f"{s['ratio_vs_float32']:.2f}×" if s["ratio_vs_float32"] else "-"
    bpw = f"{s['bits_per_weight']:.3f}" if s["bits_per_weight"] is not None else "-"
    w(f"  file {s['file_bytes']:,} bytes ({_human(s['file_bytes'])}), {bpw} bits/weight, {ratio} smaller than float32\n")
    w("  bytes by part: " + ", ".join(f"{p} {s['bytes_by_part'][p]:,}" for p in PARTS) + "\n")
    packed = _packed_with(s["metadata"].get("dcformat.recipe"))
    if packed:
        w(f"  packed with: {sanitize(packed, 120)}\n")
    for key, value in s["metadata"].items():
        w(f"  meta {sanitize(key, 40)} = {sanitize(value, 80)}\n")
    if s.get("verified"):
        w("  verified: every tensor decoded, every checksum matched\n")
    headers = ["name", "shape", "dtype", "layout", "stored", "density", "k", "ib", "codecs", "bytes", "bits/w"]
    rows = []
    for t in s["tensors"]:
        stored = t["entries"] if t["entries"] is not None else t["parameters"]
        density = f"{100 * t['density']:.1f}%" if t["density"] is not None else "-"
        codecs = " ".join(f"{role[:3]}:{codec}" for role, codec in t["codecs"].items()) or "-"
        bits = f"{8 * t['bytes'] / t['parameters']:.2f}" if t["parameters"] else "-"
        rows.append([
            sanitize(t["name"], 48), _shape(t["shape"]), t["dtype"], t["layout"], f"{stored:,}", density,
            str(t["codebook_size"] or "-"), str(t["index_bits"] or "-"), codecs, f"{t['bytes']:,}", bits,
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    w("  " + "  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)) + "\n")
    for r in rows:
        w("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + "\n")
    w("  (stored = CSR entries incl. fillers, or elements; density shown with --verify; k = codebook size;"
      " ib = index bits; codecs per stream role: cod(ebook) row(_counts) gap(s) val(ues))\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dcinfo", description="Inspect dcf files (compressed neural-network weights).")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per file, in a list)")
    parser.add_argument("--verify", action="store_true", help="decode everything and check every checksum")
    args = parser.parse_args(argv)
    status = 0
    results = []
    for path in args.files:
        try:
            summary = _inspect(path, args.verify)
        except DCFormatError as exc:
            print(f"dcinfo: {sanitize(path)}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        except OSError as exc:
            print(f"dcinfo: {sanitize(path)}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        summary["file"] = path
        results.append(summary)
        if not args.json:
            _print_text(path, summary, sys.stdout)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
