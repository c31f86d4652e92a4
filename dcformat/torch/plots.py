"""The reproduction's figures, drawn with matplotlib's Agg backend into PNG files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import pyplot as _pyplot


def accuracy_vs_iteration(curves: dict[str, list[tuple[float, float]]], baselines: dict[str, float],
                          path: Path) -> None:
    """One line per network: test accuracy after each prune–retrain iteration, against the
    percentage of weights kept; the uncompressed accuracy as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, points) in enumerate(curves.items()):
        kept, acc = zip(*points)
        color = f"C{i}"
        ax.plot(range(len(points)), acc, "o-", color=color, label=name)
        for x, (k, a) in enumerate(points):
            ax.annotate(f"{k:.0f}%", (x, a), textcoords="offset points", xytext=(0, 6), fontsize=7,
                        ha="center", color=color)
        ax.axhline(baselines[name], color=color, ls="--", lw=0.8)
    ax.set_xticks(range(max(len(points) for points in curves.values())))
    ax.set_xlabel("pruning iteration (label: % of weights kept)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("Iterative pruning with retraining")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sensitivity(scans: dict[str, dict[str, list[tuple[float, float]]]], path: Path,
                ylabel: str = "accuracy (%)") -> None:
    """One panel per network, one line per layer: accuracy against that layer's sparsity."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(scans), figsize=(5 * len(scans), 4), squeeze=False)
    for ax, (network, scan) in zip(axes[0], scans.items()):
        for layer, points in scan.items():
            s, acc = zip(*points)
            ax.plot(np.array(s) * 100, acc, "o-", ms=3, label=layer)
        ax.set_xlabel("weights pruned in the layer (%)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{network}: sensitivity, no retraining")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def weight_histograms(before: np.ndarray, pruned: np.ndarray, shared: np.ndarray,
                      centroids: np.ndarray, title: str, path: Path) -> None:
    """Weights of one layer before pruning, after pruning and retraining, and after sharing
    (centroids marked)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), sharex=True)
    lim = float(np.abs(before).max()) * 1.05
    bins = np.linspace(-lim, lim, 121)
    axes[0].hist(before.ravel(), bins=bins, color="C0")
    axes[0].set_title(f"{title}: before pruning ({before.size} weights)")
    kept = pruned[pruned != 0]
    axes[1].hist(kept, bins=bins, color="C1")
    axes[1].set_title(f"after pruning + retraining ({kept.size} kept)")
    axes[2].hist(shared[shared != 0], bins=bins, color="C2")
    for c in centroids:
        axes[2].axvline(c, color="k", lw=0.5, alpha=0.6)
    axes[2].set_title(f"after sharing ({len(centroids)} centroids marked)")
    for ax in axes:
        ax.set_xlabel("weight value")
    axes[0].set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def masks(layers: dict[str, np.ndarray], title: str, path: Path) -> None:
    """Pruning masks as images: one panel per layer, the weight viewed as ``out × in`` (black =
    kept)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 4), squeeze=False)
    for ax, (name, mask) in zip(axes[0], layers.items()):
        m = mask.reshape(mask.shape[0], -1)
        ax.imshow(m, cmap="gray_r", aspect="auto", interpolation="nearest")
        ax.set_title(f"{name} {m.shape[0]}×{m.shape[1]}: {100 * m.mean():.1f}% kept", fontsize=9)
        ax.set_xlabel("input")
        ax.set_ylabel("output")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
