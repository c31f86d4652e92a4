"""Iterative magnitude pruning with retraining (Deep Compression §2; Han et al. 2015).

The user's loop trains; a :class:`Pruner` holds a mask per layer (True = kept) and keeps every
pruned weight at exactly zero: its gradient is zeroed during backward and the weight is zeroed
again after each optimizer step. Masks only ever lose entries: pruning again (the next iteration
of a schedule) prunes among the weights still kept.

The masks come from :mod:`dcformat.compress.pruning`, the same code that packs checkpoints.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..compress import pruning
from .base import FrozenEntries, find_layers, per_layer, to_numpy


class Pruner(FrozenEntries):
    """Pruning masks on the Linear and Conv layers of ``model`` (or on the ``layers`` named).

    A weight that is exactly zero when the pruner is created counts as pruned already, so wrapping a
    model pruned earlier keeps its zeros. ``masks`` maps layer names to boolean masks (True = kept).
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None):
        super().__init__(model, layers)
        for name, layer in self.layers.items():
            self.free[name] = layer.weight.detach() != 0
            self._apply(name)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return self.free

    def _weights(self, name: str) -> np.ndarray:
        """The layer's weights with the pruned ones at zero, as the primitives see them."""
        w = to_numpy(self.layers[name].weight)
        w[~self.free[name].cpu().numpy()] = 0
        return w

    def _narrow(self, name: str, keep: np.ndarray) -> None:
        self.free[name] = self._free(name) & torch.from_numpy(keep).to(self.free[name].device)
        self._apply(name)

    def prune(self, sparsity: float | Mapping[str, float] | None = None, *,
              quality: float | Mapping[str, float] | None = None) -> dict[str, float]:
        """Prune each layer to ``sparsity`` (fraction of its weights pruned, smallest |w| first) or
        by threshold, ``|w| < quality × std(w)`` (Deep Compression's Caffe rule); give one of the two.

        Either may be a mapping from layer name to value, to prune only those layers with their own
        ratio. Returns the fraction of weights kept in each layer of the pruner.
        """
        if (sparsity is None) == (quality is None):
            raise ValueError("give exactly one of sparsity and quality")
        if sparsity is not None:
            for name, s in per_layer(sparsity, self.layers, "sparsity").items():
                self._narrow(name, pruning.magnitude_mask(self._weights(name), s))
        else:
            for name, q in per_layer(quality, self.layers, "quality").items():
                self._narrow(name, pruning.threshold_mask(self._weights(name), q))
        return self.kept()

    def prune_filters(self, sparsity: float | Mapping[str, float]) -> dict[str, float]:
        """Prune every output filter (row of the weight viewed as ``out × rest``) of a layer to the
        same ratio ``sparsity``, so no filter loses more than the others
        (:func:`dcformat.compress.pruning.filter_masks`). A float applies to the convolutions only;
        a mapping names its layers, Linear ones included (a row is then a neuron's inputs).
        """
        if not isinstance(sparsity, Mapping):
            sparsity = {name: sparsity for name, layer in self.layers.items() if layer.weight.dim() > 2}
        for name, s in per_layer(sparsity, self.layers, "sparsity").items():
            self._narrow(name, pruning.filter_masks(self._weights(name), s))
        return self.kept()

    def kept(self) -> dict[str, float]:
        """Fraction of weights kept, per layer."""
        return {name: float(mask.float().mean()) for name, mask in self.free.items()}


def prune_schedule(final: float | Mapping[str, float], iterations: int,
                   kind: str = "geometric") -> list:
    """Targets for ``iterations`` rounds of prune–retrain ending at the sparsity ``final``.

    ``kind="geometric"`` removes the same fraction of the remaining weights in each round (the
    kept fraction after round ``t`` of ``T`` is ``(1 − final) ** (t / T)``), so later rounds, where
    the network has less slack, cut fewer weights; ``"linear"`` raises the sparsity by equal steps.
    ``final`` may be a mapping from layer name to sparsity; each target then is one too.
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if kind not in ("geometric", "linear"):
        raise ValueError(f"kind must be 'geometric' or 'linear', got {kind!r}")

    def target(s: float, t: int) -> float:
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {s}")
        return 1.0 - (1.0 - s) ** (t / iterations) if kind == "geometric" else s * t / iterations

    if isinstance(final, Mapping):
        return [{name: target(s, t) for name, s in final.items()} for t in range(1, iterations + 1)]
    return [target(final, t) for t in range(1, iterations + 1)]


@torch.no_grad()
def sensitivity_scan(model: nn.Module, evaluate: Callable[[nn.Module], float],
                     sparsities: Sequence[float] = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
                     layers: Iterable[str] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Prune one layer at a time, without retraining, and score the model with ``evaluate``.

    Returns, per layer, ``[(sparsity, evaluate(model)), …]``. The weights are restored after each
    layer; ``evaluate`` is the user's (accuracy on validation data, say) and runs
    ``len(layers) × len(sparsities)`` times.
    """
    result = {}
    for name, layer in find_layers(model, layers).items():
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError(f"{name}: the weight is computed by a wrapper; scan the model before wrapping")
        original = layer.weight.detach().clone()
        w = to_numpy(original)
        scores = []
        for s in sparsities:
            keep = torch.from_numpy(pruning.magnitude_mask(w, s)).to(original.device)
            layer.weight.copy_(original.masked_fill(~keep, 0))
            scores.append((float(s), float(evaluate(model))))
        layer.weight.copy_(original)
        result[name] = scores
    return result
