"""matplotlib's pyplot with the Agg backend (PNG files, no display), imported on first use."""
from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; matplotlib is in the ``plots`` extra (without it, a
    one-line :class:`~dcformat.pack.errors.PackError` naming the extra)."""
    try:
        import matplotlib
    except ImportError:
        from .pack.errors import PackError

        raise PackError("plotting needs matplotlib: pip install 'dcformat[plots]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_size_fidelity(points, curve, path, *, original_bytes: int, sentences: int, title: str = "",
                       baselines=(), missing=()) -> list[str]:
    """File size against embedding fidelity, as the demo draws it (``fidelity.png``); returns the
    legend's entries.

    ``points``: dicts with ``label``, ``bytes``, ``cosine`` and optionally ``kind="paper"`` (the
    paper's setting, in red; when its cosine lies far below the others it sits at the bottom edge
    with its value written, so that the others stay readable).
    ``curve``: the error-budget sweep, dicts with ``budget``, ``bytes``, ``cosine``, joined by a line.
    ``original_bytes``: the float32 size, for the ratio axis on top and a dotted line;
    ``sentences``: how many sentences the cosine is the mean of.
    ``baselines``: the formats people ship on the same matrices (:mod:`dcformat.baselines`), dicts
    with ``label``, ``family`` (int8, gguf, nf4), ``bytes`` and ``cosine``: hollow markers, named
    beside each point; ``missing``: labels of those that could not be computed, said in the legend.
    """
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(14, 6) if baselines else (9.5, 5.8))
    mb = 1e6
    others = ([p["cosine"] for p in points if p.get("kind") != "paper"] + [c["cosine"] for c in curve]
              + [b["cosine"] for b in baselines])
    worst = min(others)
    span = max(1.0 - worst, 1e-4)
    low, high = 1.0 - 1.3 * span, 1.0 + 0.12 * span
    ax.set_ylim(low, high)

    xs, ys = [c["bytes"] / mb for c in curve], [c["cosine"] for c in curve]
    ax.plot(xs, ys, "o-", color="C0", ms=5, lw=1.5, zorder=2,
            label="dcpack --max-error E (budget sweep, E written beside each point)")
    marked = [p["bytes"] for p in points]
    labelled = [c for c in curve if not any(abs(c["bytes"] - m) <= 0.01 * m for m in marked)]
    for i, c in enumerate(labelled):  # off the rising line: below right and above left in turn
        offset, align = ((5, -12), "left") if i % 2 == 0 else ((-5, 6), "right")
        ax.annotate(f"E={c['budget']:g}", (c["bytes"] / mb, c["cosine"]), textcoords="offset points",
                    xytext=offset, ha=align, fontsize=8, color="C0")
    markers = iter(["s", "D", "^", "P", "X", "*"])
    for i, p in enumerate(q for q in points if q.get("kind") != "paper"):
        x = p["bytes"] / mb
        ax.plot([x], [p["cosine"]], next(markers, "o"), color=f"C{i + 1}", ms=9, zorder=3, mec="black", mew=0.6,
                label=f"{p['label']}: {original_bytes / p['bytes']:.1f}× smaller, cosine {p['cosine']:.4f}")
    for p in points:
        if p.get("kind") != "paper":
            continue
        x, y = p["bytes"] / mb, p["cosine"]
        text = f"{p['label']}: {original_bytes / p['bytes']:.1f}× smaller, cosine {y:.3f}"
        if y < low:
            edge = low + 0.04 * (high - low)
            ax.plot([x], [edge], "v", color="red", ms=10, zorder=3, mec="black", mew=0.6, label=text + " (off scale)")
            ax.annotate("cosine {:.3f}\n(off scale, below)".format(y), (x, edge), textcoords="offset points",
                        xytext=(10, 2), fontsize=8, color="red", va="bottom")
        else:
            ax.plot([x], [y], "v", color="red", ms=10, zorder=3, mec="black", mew=0.6, label=text)
    shapes = {"int8": ("p", "dimgray"), "gguf": ("h", "darkgoldenrod"), "nf4": ("8", "teal")}
    for b in baselines:
        marker, color = shapes.get(b["family"], ("o", "black"))
        x = b["bytes"] / mb
        ax.plot([x], [b["cosine"]], marker, color=color, mfc="none", ms=9, mew=1.6, zorder=3,
                label=f"{b['label']}: {original_bytes / b['bytes']:.1f}× smaller, cosine {b['cosine']:.4f}")
        # the name to the right; under the marker where a neighbour of about the same size lies higher
        # (Q4_0 and NF4 share a size, int8 and Q8_0 nearly), above it near cosine 1 (off the flat curve)
        under = any(o is not b and abs(o["bytes"] - b["bytes"]) <= 0.08 * b["bytes"] and o["cosine"] > b["cosine"]
                    for o in baselines)
        top = b["cosine"] > 1.0 - 0.1 * (1.0 - low)
        offset, align = ((5, -14), "left") if under else ((4, 7), "left") if top else ((8, -3), "left")
        ax.annotate(b["label"].split(" (")[0], (x, b["cosine"]), textcoords="offset points",
                    xytext=offset, ha=align, fontsize=7, color=color)
    if missing:
        ax.plot([], [], " ", label=f"not drawn: {', '.join(missing)} (the gguf package is not installed)")
    ax.axvline(original_bytes / mb, color="gray", ls=":", lw=1)
    ax.annotate("float32", (original_bytes / mb, high), textcoords="offset points", xytext=(-4, -12),
                ha="right", fontsize=8, color="gray")
    ax.axhline(1.0, color="gray", lw=0.6)
    ax.set_xscale("log")
    sizes = [p["bytes"] / mb for p in points] + xs + [original_bytes / mb] + [b["bytes"] / mb for b in baselines]
    ax.set_xlim(min(sizes) / 1.35, max(sizes) * 1.35)
    ax.set_xlabel(".dcf file size (MB, log scale)" if not baselines else
                  "file size (MB, log scale): the .dcf file; int8/GGUF/NF4: their payload + the other tensors as float32")
    ax.set_ylabel(f"embedding cosine to the original model (mean of {sentences} sentences)")
    ax.ticklabel_format(axis="y", useOffset=False)

    def flip(v):  # MB <-> ratio, both ways (matplotlib also passes 0 and negative limits)
        v = np.asarray(v, dtype=float)
        return original_bytes / mb / np.where(v > 0, v, np.nan)

    top = ax.secondary_xaxis("top", functions=(flip, flip))
    top.set_xlabel("× smaller than float32")
    for axis, unit in ((ax.xaxis, ""), (top.xaxis, "×")):
        axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        axis.set_major_formatter(FuncFormatter(lambda v, _, unit=unit: f"{v:g}{unit}"))
        axis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", lw=0.3)
    if baselines:  # a dozen entries: beside the axes, not over the points
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.92)
    else:
        legend = ax.legend(loc="lower right", fontsize=8, framealpha=0.92)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [t.get_text() for t in legend.get_texts()]


def plot_bits_map(rows, columns, bits, labels, path, *, title: str = "", separator: int | None = None) -> None:
    """Stored bits per weight of each tensor (a row) in each file (a column), as the demo draws it
    (``bits.png``): the colour is the bits, the text in each cell what was stored (``25% 5b``:
    a quarter pruned, 5-bit codebook; ``raw``: the original values).

    ``bits``: one list of floats per row; ``labels``: the same shape, strings. ``separator``: draw a
    line before this column (budgets on the left, presets on the right).
    """
    import numpy as np

    plt = pyplot()
    grid = np.asarray(bits, dtype=float).reshape(len(rows), len(columns))
    top = 12.0  # codebooks stop at 12 bits; raw float32 (~26 bits after entropy coding) saturates
    fig, ax = plt.subplots(figsize=(2.4 + 0.95 * len(columns) + 2.6, max(3.4, 2.0 + 0.24 * len(rows))))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=top)
    for r in range(len(rows)):
        for c in range(len(columns)):
            dark = grid[r, c] < 0.6 * top
            ax.text(c, r, labels[r][c], ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("file (E: dcpack --max-error E)", fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if separator is not None:
        ax.axvline(separator - 0.5, color="white", lw=3)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("stored bits per weight")
    subtitle = "text: share pruned, codebook bits; codebook and indices included; raw is above the scale"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize=9, pad=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
