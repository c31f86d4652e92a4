"""Figures of :mod:`dcformat.torch.reproduce_seeds`, drawn with matplotlib's Agg backend into PNG files."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..plotting import pyplot as _pyplot


def rates(results: dict, seeds: dict, path: Path) -> None:
    """Per network, two panels against the compress rate: the metric's change from uncompressed
    (ours from the .dcf, and the seed's published one), and the storage as a percentage of the
    uncompressed float32 (our .dcf and gzip -9; the seed's file against its uncompressed storage)."""
    plt = _pyplot()
    from matplotlib import ticker

    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 7.2), squeeze=False)
    for col, (name, r) in enumerate(results.items()):
        key = "pixel accuracy" if r["metric"] == "IoU" else r["metric"]
        rows = r["rates"]
        x = [row["rate"] for row in rows]
        base = r["uncompressed"]["metrics"]
        ax = axes[0][col]
        ax.plot(x, [row["metric_from_dcf"][r["metric"]] - base[r["metric"]] for row in rows], "o-", color="C0",
                label=f"ours, {r['metric']} from .dcf")
        if key != r["metric"]:
            ax.plot(x, [row["metric_from_dcf"][key] - base[key] for row in rows], "s-", color="C2", ms=4,
                    label=f"ours, {key}")
        ax.plot(x, [row["metric_retrained"][r["metric"]] - base[r["metric"]] for row in rows], ":", color="C0",
                lw=1, label="ours, pruned + retrained")
        seed = seeds[name]
        sx = sorted(seed["rates"])
        ax.plot(sx, [seed["rates"][rate][1] - seed["uncompressed"][1] for rate in sx], "^--", color="C3",
                label=f"seed ({seed['net'].split(',')[0]}), {key}")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_title(f"{name}: {r['metric']} uncompressed {base[r['metric']]:.1f}%", fontsize=10)
        ax.set_xlabel("compress rate")
        ax.set_ylabel("change from uncompressed (points)")
        ax.legend(fontsize=7)
        ax = axes[1][col]
        f32 = r["uncompressed"]["sizes"]["float32"]
        ax.plot(x, [100 * row["dcf_file_bytes"] / f32 for row in rows], "o-", color="C0", label="ours, .dcf")
        ax.plot(x, [100 * row["sizes"]["gzip"] / f32 for row in rows], "s-", color="C1", ms=4,
                label="ours, compressed weights as float32 + gzip -9")
        ax.plot(sx, [100 * seed["rates"][rate][2] / seed["uncompressed"][2] for rate in sx], "^--", color="C3",
                label="seed's file")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
            lambda v, _: f"{v:g}%" if f"{v:.1g}"[0] in "25" else ""))
        ax.set_xlabel("compress rate")
        ax.set_ylabel("storage, % of uncompressed")
        ax.set_title(f"{name}: uncompressed {f32 / 1000:.0f} KB (seed {seed['uncompressed'][2]:,} KB)", fontsize=10)
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def k_sweep(sweep: dict, seed: dict, path: Path) -> None:
    """Left: iterative pruning (weights kept and accuracy per iteration). Right: accuracy and .dcf
    size against the number of centroids per layer, with the seed's accuracies relative to its
    pruned network."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    it = sweep["iterations"]
    left.plot([p["iteration"] for p in it], [p["kept"] for p in it], "o-", color="C3")
    left.set_xlabel("pruning iteration")
    left.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    left.set_ylabel("weights kept (%)", color="C3")
    twin = left.twinx()
    twin.plot([p["iteration"] for p in it], [p["accuracy"] for p in it], "s-", color="C0")
    twin.set_ylabel("accuracy (%)", color="C0")
    left.set_title(f"{sweep['network']}: prune, retrain, repeat (to {100 * sweep['final_sparsity']:g}% pruned "
                   "per layer)", fontsize=10)
    rows = [row for row in sweep["shared"] if "k" in row]
    pruned_acc = it[-1]["accuracy"]
    ks = [row["k"] for row in rows]
    right.plot(ks, [row["accuracy_from_dcf"] - pruned_acc for row in rows], "o-", color="C0",
               label=f"ours (pruned: {pruned_acc:.2f}%)")
    sk = sorted(seed["k"])
    right.plot(sk, [seed["k"][k] - seed["pruned"] for k in sk], "^--", color="C3",
               label=f"seed {seed['net']} (pruned: {seed['pruned']:.2f}%)")
    others = [row for row in sweep["shared"] if "k" not in row]
    for row, style in zip(others, ("-.", ":", "--")):
        right.axhline(row["accuracy_from_dcf"] - pruned_acc, color="C2", lw=1, ls=style,
                      label=f"{row['label']}: {row['accuracy_from_dcf']:.2f}%, {row['dcf_file_bytes'] / 1000:.1f} KB")
    right.axhline(0, color="gray", lw=0.8)
    right.set_xticks(ks)
    right.set_xlim(0, max(ks) + 2)
    right.set_xlabel("centroids per layer (k; the zero of pruned weights besides)")
    right.set_ylabel("accuracy change from the pruned net (points)")
    twin = right.twinx()
    twin.plot(ks, [row["dcf_file_bytes"] / 1000 for row in rows], "s:", color="C1", label=".dcf KB")
    twin.set_ylabel(".dcf size (KB)", color="C1")
    right.legend(fontsize=7, loc="lower right")
    right.set_title("weight sharing with k clusters per layer", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pruned_weights(weights: dict[str, np.ndarray], title: str, path: Path) -> None:
    """A grid of heat maps, one per layer, each weight viewed as ``out × (in · kh · kw)``: values on
    a diverging scale (each layer its own), pruned weights (exact zeros) black."""
    plt = _pyplot()
    n = len(weights)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    cmap = plt.get_cmap("coolwarm").copy()
    cmap.set_bad("black")
    for ax, (name, w) in zip(axes.ravel(), weights.items()):
        m = w.reshape(w.shape[0], -1)
        lim = float(np.abs(m).max()) or 1.0
        image = ax.imshow(np.ma.masked_equal(m, 0.0), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto",
                          interpolation="nearest")
        ax.set_title(f"{name} {m.shape[0]}×{m.shape[1]}: {100 * np.count_nonzero(m) / m.size:.1f}% kept",
                     fontsize=9)
        ax.set_xlabel("input (in × kernel)" if w.ndim > 2 else "input", fontsize=8)
        ax.set_ylabel("output filter", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tasks(task_map: dict, models: dict, path: Path, examples: int = 6) -> None:
    """What each task's data looks like: digits for the classifiers, the U-Net's noisy input, target
    mask and prediction of the uncompressed network, and point clouds."""
    plt = _pyplot()
    rows = []
    if "VGG-BN" in task_map or "ResNet" in task_map:
        rows.append("images")
    if "U-Net" in task_map:
        rows += ["noisy", "mask", "prediction"]
    if "PointNet" in task_map:
        rows.append("points")
    fig, axes = plt.subplots(len(rows), examples, figsize=(2.0 * examples, 2.0 * len(rows)), squeeze=False)
    n_test = min(len(task.y_test) for task in task_map.values())
    picks = [int(i) for i in np.linspace(0, n_test - 1, examples)]  # the digit test set is ordered by class
    for r, kind in enumerate(rows):
        for col, c in enumerate(picks):
            ax = axes[r][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if kind == "images":
                task = task_map.get("VGG-BN") or task_map["ResNet"]
                img = task.x_test[c].numpy()
                if img.shape[0] == 3:
                    img = img.transpose(1, 2, 0)
                    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-9)
                    ax.imshow(img)
                else:
                    ax.imshow(img[0], cmap="gray_r")
                ax.set_title(f"class {int(task.y_test[c])}", fontsize=8)
            elif kind in ("noisy", "mask", "prediction"):
                task = task_map["U-Net"]
                if kind == "noisy":
                    ax.imshow(task.x_test[c, 0].numpy(), cmap="gray_r")
                    ax.set_title("U-Net input (noisy)", fontsize=8)
                elif kind == "mask":
                    ax.imshow(task.y_test[c].numpy(), cmap="gray_r")
                    ax.set_title("target mask", fontsize=8)
                else:
                    with torch.no_grad():
                        pred = task.masks(task.outputs(models["U-Net"], task.x_test[c:c + 1]))[0]
                    ax.imshow(pred.numpy(), cmap="gray_r")
                    ax.set_title("prediction (uncompressed)", fontsize=8)
            else:
                task = task_map["PointNet"]
                pts = task.x_test[c].numpy()
                ax.scatter(pts[0], -pts[1], s=4)
                ax.set_xlim(-1, 1)
                ax.set_ylim(-1, 1)
                ax.set_aspect("equal")
                ax.set_title(f"{pts.shape[1]} points, class {int(task.y_test[c])}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
