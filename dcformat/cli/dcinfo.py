"""dcinfo: inspect dcf files.

    dcinfo FILE...            sizes by part, bits per weight, one row per tensor (headers only)
    dcinfo --json FILE...     the same as JSON
    dcinfo --verify FILE...   also decode every tensor, check every checksum, count non-zeros
    dcinfo --wide FILE...     every column (codecs, stored entries), names in full
    dcinfo - < model.dcf      read the file from stdin

Without --verify it reads the preamble, trailer and index only, and imports no codec (no JIT).
The table fits the terminal (80 columns when the output is not one): long tensor names are elided
in the middle, the file's path is never cut (a long one gets a line of its own); --wide shows
everything, and --json is the machine-readable form. A bad file gets one line naming what is
wrong, and exit status 1 (2 for bad usage).
"""
from __future__ import annotations

import json
import sys

from ..errors import DCFormatError
from ..reader import DCFReader
from ..report import PARTS, file_summary, ratio_text, sanitize
from ._common import OneLineParser, describe_error, ellipsis, fit_columns, note_first_compile, run, terminal_width, wrap


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _shape(shape) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


def _inspect(path: str, verify: bool, data: bytes | None = None) -> dict:
    source = data if data is not None else path
    if verify:
        import numpy as np

        with DCFReader(source, verify=True) as reader:
            nonzeros = {}
            for info in reader.tensors_info():  # the entries: an alias decodes as its target
                array = reader.get_tensor(info.name)
                nonzeros[info.name] = int(np.count_nonzero(array.reshape(-1).view(f"u{array.dtype.itemsize}")))
            for name in reader.attachments():
                reader.get_attachment(name)  # its CRC and its codec's rules
            summary = file_summary(reader.header, nonzeros)
        summary["verified"] = True
        return summary
    with DCFReader(source) as reader:  # parses the index only; no stream is read
        return file_summary(reader.header)


def _packed_with(recipe_json) -> str | None:
    """``preset safe, relative error per tensor <= 0.05 (embeddings), 0.015 (the rest)`` from the
    dcformat.recipe metadata: each error budget with the rule it belongs to."""
    try:
        recipe = json.loads(recipe_json) if recipe_json else None
        rules = [r for r in recipe.get("rules", []) if r.get("max_error") is not None]
        budgets = [(float(r["max_error"]), str(r.get("name") or "")) for r in rules]
        preset = recipe.get("preset")
    except (ValueError, AttributeError, TypeError, KeyError):
        return None
    parts = [f"preset {preset}"] if preset else []
    if len({b for b, _ in budgets}) == 1:
        parts.append(f"relative error <= {budgets[0][0]:g} per tensor")
    elif budgets:
        last = len(budgets) - 1
        shown = [f"{b:g} ({'the rest' if i == last and name in ('', preset) else name or f'rule {i + 1}'})"
                 for i, (b, name) in enumerate(budgets)]
        parts.append("relative error per tensor <= " + ", ".join(shown))
    return ", ".join(parts) or None


def _print_text(path: str, s: dict, out, width: int = 80, wide: bool = False) -> None:
    w = out.write
    dots = ellipsis(out)
    count = s["tensor_count"]
    first = f": dcf {s['version']}, {count} tensor{'' if count == 1 else 's'}, {s['parameters']:,} parameters"
    if s["nonzeros"] is not None:
        first += f", {s['nonzeros']:,} non-zero ({100 * s['nonzeros'] / max(1, s['parameters']):.2f}%)"
    name = sanitize(path, 10**6)  # never cut: it is what the user typed, and may copy or grep for
    if wide or len(name) + len(first) <= width:
        w(name + first + "\n")
    else:  # a long path keeps its line; the summary follows, wrapped
        w(name + ":\n")
        for line in wrap(first[2:].replace(" ", "\xa0").replace(",\xa0", ", "), width):
            w(line + "\n")
    bpw = f"{s['bits_per_weight']:.3f}" if s["bits_per_weight"] is not None else "-"
    size = [f"file {s['file_bytes']:,} bytes ({_human(s['file_bytes'])})", f"{bpw} bits/weight",
            ratio_text(s["ratio_vs_float32"])]
    for line in wrap(", ".join(item.replace(" ", "\xa0") for item in size), 10**6 if wide else width):
        w(line + "\n")
    parts = [*PARTS, *(p for p in s["bytes_by_part"] if p not in PARTS)]
    for line in wrap("bytes by part: " + ", ".join(f"{p}\xa0{s['bytes_by_part'][p]:,}" for p in parts),
                     10**6 if wide else width):
        w(line + "\n")
    packed = _packed_with(s["metadata"].get("dcformat.recipe"))
    limit = 10**6 if wide else width
    if packed:  # wrapped, not cut: its numbers are the point
        for line in wrap(f"packed with: {sanitize(packed, 10**6)}", limit):
            w(line + "\n")
    for key, value in s["metadata"].items():
        w(_cut(f"  meta {sanitize(key, 40)} = {sanitize(value, 10**6 if wide else 200)}", limit, dots) + "\n")
    for a in s.get("attachments", []):
        w(_cut(f"  attachment {sanitize(a['name'], 10**6 if wide else 200)}: {a['bytes']:,} bytes, stored "
               f"{a['stored']:,} ({a['codec']})", limit, dots) + "\n")
    if s.get("verified"):
        w("  verified: every tensor" + (" and attachment" if s.get("attachments") else "")
          + " decoded, every checksum matched\n")
    columns = ["name", "shape", "dtype", "layout", "stored", "density", "k", "ib", "codecs", "bytes", "bits/w"]
    if not wide:  # what fits 80 columns; --wide adds stored entries and codecs
        columns = [c for c in columns if c not in ("stored", "codecs") and (c != "density" or s.get("verified"))]
    rows = []
    for t in s["tensors"]:
        stored = t["entries"] if t["entries"] is not None else t["parameters"]
        cells = {
            "name": sanitize(t["name"], 10**6), "shape": _shape(t["shape"]), "dtype": t["dtype"], "layout": t["layout"],
            "stored": f"{stored:,}", "density": f"{100 * t['density']:.1f}%" if t["density"] is not None else "-",
            "k": str(t["codebook_size"] or "-"), "ib": str(t["index_bits"] or "-"),
            "codecs": " ".join(f"{role[:3]}:{codec}" for role, codec in t["codecs"].items()) or "-",
            "bytes": f"{t['bytes']:,}", "bits/w": f"{8 * t['bytes'] / t['parameters']:.2f}" if t["parameters"] else "-",
        }
        rows.append([cells[c] for c in columns])
    if not wide and rows:  # a column with nothing to say in any row gives its room to the names
        empty = {c for i, c in enumerate(columns) if c in ("k", "ib") and all(r[i] == "-" for r in rows)}
        rows = [[cell for c, cell in zip(columns, r) if c not in empty] for r in rows]
        columns = [c for c in columns if c not in empty]
    for alias, target in s.get("aliases", {}).items():  # spec §4.6.2: stored once, as its target
        rows.append([f"{sanitize(alias, 10**6)} = {sanitize(target, 10**6)}" if c == "name" else "" for c in columns])
    lines = fit_columns(columns, rows, 10**6 if wide else width, mark=dots, names=True)
    for line in lines:
        w(line + "\n")
    names = [r[0] for r in rows]
    shortened = any(line[2:2 + len(n)] != n for line, n in zip(lines[1:], names))
    notes = [text for c, text in (("k", "k = codebook size"), ("ib", "ib = CSR index bits")) if c in columns]
    notes.append("bits/w = stored bits per weight")
    if not s.get("verified") and not wide:
        notes.append("density with --verify")
    if wide:
        notes.append("stored = CSR entries incl. fillers, or elements; codecs per stream role: cod(ebook) "
                     "row(_counts) gap(s) val(ues)")
    else:
        notes.append("--wide: " + ("full names, " if shortened else "") + "codecs and stored entries")
    legend = "(" + "; ".join(notes) + ")"
    for line in wrap(legend, width):
        w(line + "\n")


def _cut(line: str, width: int, dots: str) -> str:
    return line if len(line) <= width else line[: width - len(dots)] + dots


def main(argv=None) -> int:
    parser = OneLineParser(prog="dcinfo", description="Inspect dcf files (compressed neural-network weights).")
    parser.add_argument("files", nargs="+", metavar="FILE", help="dcf files; - reads one from stdin")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per file, in a list)")
    parser.add_argument("--verify", action="store_true", help="decode everything and check every checksum")
    parser.add_argument("--wide", action="store_true",
                        help="every column, names and metadata in full (default: fit the terminal, 80 columns "
                             "when not one)")
    args = parser.parse_args(argv)
    return run("dcinfo", lambda: _main(args))


def _main(args) -> int:
    if args.files.count("-") > 1:
        from ._common import UsageError

        raise UsageError("stdin (-) can be read once")
    if args.verify:
        note_first_compile("dcinfo")
    status = 0
    results = []
    width = terminal_width(sys.stdout)
    for path in args.files:
        name = "<stdin>" if path == "-" else path
        try:
            data = sys.stdin.buffer.read() if path == "-" else None
            summary = _inspect(path, args.verify, data)
        except (DCFormatError, OSError, MemoryError) as exc:
            kind = f"{type(exc).__name__}: " if isinstance(exc, DCFormatError) else ""
            lead, message = f"{sanitize(name, 10**6)}: ", describe_error(exc)  # the path whole
            if message.startswith(lead):  # the reader's error (or the OS's) leads with the path already
                message = message[len(lead):]
            print(f"dcinfo: {lead}{kind}{message}", file=sys.stderr)
            status = 1
            continue
        summary["file"] = name
        results.append(summary)
        if not args.json:
            _print_text(name, summary, sys.stdout, width, args.wide)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
