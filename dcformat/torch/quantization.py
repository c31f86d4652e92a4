"""Trained quantization (Deep Compression §3.1–3.3): k-means weight sharing, then fine-tuned centroids.

After :class:`TrainedQuantizer` wraps a layer, the layer's weight is *computed*: ``weight =
codebook[labels]`` with zero where the label is -1 (a pruned weight). The codebook is the trainable
parameter (``layer.parametrizations.weight.original``), so autograd gives each centroid the sum of
the gradients of the weights in its cluster (the paper's equation 3), pruned weights get no
gradient and stay zero, and the weights equal ``codebook[labels]`` exactly at every step, whatever
the optimizer. This uses torch's own ``torch.nn.utils.parametrize``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..compress import sharing
from ..tensors import CodebookTensor
from .base import Wrapper, per_layer, to_numpy


class SharedWeights(nn.Module):
    """Parametrization ``codebook -> codebook[labels]``, zero where a label is -1.

    ``labels`` (a buffer, int64, the weight's shape) index the codebook.
    """

    def __init__(self, labels: torch.Tensor):
        super().__init__()
        self.register_buffer("labels", labels.to(torch.int64))

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        # Index -1 picks the zero appended at the end: pruned weights are zero and get no gradient.
        return torch.cat([codebook, codebook.new_zeros(1)])[self.labels]


def share_layer(layer: nn.Module, shared: CodebookTensor, *, trainable: bool = True) -> None:
    """Make ``layer.weight`` equal ``shared.decode()`` (``codebook[indices]``, zero at -1) from now on.

    The codebook becomes a parameter of the layer, trained unless ``trainable`` is False.
    """
    weight = layer.weight
    if shared.shape != tuple(weight.shape):
        raise ValueError(f"a codebook tensor of shape {shared.shape} for a weight of shape {tuple(weight.shape)}")
    codebook = torch.as_tensor(shared.codebook, device=weight.device).to(weight.dtype)
    labels = torch.as_tensor(shared.indices, device=weight.device).to(torch.int64)
    if parametrize.is_parametrized(layer, "weight"):
        raise ValueError("the layer's weight is parametrized already (remove the other wrapper first)")
    # The codebook is a new Parameter: whatever hooks or optimizer state the old weight had
    # stay with the old object, which the model no longer holds.
    layer.weight = nn.Parameter(codebook.clone(), requires_grad=trainable)
    parametrize.register_parametrization(layer, "weight", SharedWeights(labels), unsafe=True)


def shared_weights(layer: nn.Module) -> tuple[torch.Tensor, SharedWeights] | None:
    """``(codebook parameter, SharedWeights)`` of a weight-shared layer, else ``None``."""
    if not parametrize.is_parametrized(layer, "weight"):
        return None
    plist = layer.parametrizations.weight
    if len(plist) == 1 and isinstance(plist[0], SharedWeights):
        return plist.original, plist[0]
    return None


class TrainedQuantizer(Wrapper):
    """k-means weight sharing with ``2 ** bits`` symbols per layer, then trainable centroids.

    ``2 ** bits`` counts the zero of pruned weights: a layer with zeros gets ``2 ** bits - 1``
    centroids and the zero, one without gets ``2 ** bits`` centroids.

    ``bits`` is an int for every layer of ``layers`` (all Linear and Conv layers by default) or a
    mapping from layer name to bits, which quantizes only the layers it names. ``k`` instead gives
    the number of centroids directly, any count (4, 9, 13, 35 …), not counting the zero of pruned
    weights; an int or a mapping like ``bits``, and only one of the two (neither: ``bits=5``).
    Weights that are exactly zero (pruned) get label -1 and stay zero. The codebooks come from
    :func:`dcformat.compress.sharing.share_weights` over the non-zero weights of each layer;
    ``kmeans`` passes its options on (``init``: ``"linear"``, the paper's best, ``"density"`` or
    ``"random"``; ``iters``: Lloyd rounds, 0 keeps the initial centroids; ``method``, ``seed``).

    Each layer's weight Parameter is replaced by its codebook, a new Parameter: build the optimizer
    after wrapping (:meth:`attach` checks that it holds the codebooks).
    """

    def __init__(self, model: nn.Module, bits: int | Mapping[str, int] | None = None,
                 layers: Iterable[str] | None = None, *, k: int | Mapping[str, int] | None = None,
                 **kmeans):
        if bits is not None and k is not None:
            raise ValueError("give bits or k, not both")
        size, what = (k, "k") if k is not None else (5 if bits is None else bits, "bits")
        if isinstance(size, Mapping):
            layers = list(size) if layers is None else layers
        super().__init__(model, layers)
        sizes = per_layer(size, self.layers, what)
        self.layers = {name: self.layers[name] for name in sizes}
        self.bits = sizes if what == "bits" else {}
        self.k = sizes if what == "k" else {}
        for name, n in sizes.items():
            layer = self.layers[name]
            options = {"bits": n} if what == "bits" else {"k": n}
            share_layer(layer, sharing.share_weights(to_numpy(layer.weight), None, **options, **kmeans))

    def codebook(self, name: str) -> nn.Parameter:
        """The trainable codebook (centroids) of layer ``name``."""
        return self.layers[name].parametrizations.weight.original

    def labels(self, name: str) -> torch.Tensor:
        """Cluster index of every weight of layer ``name``, -1 for a pruned weight."""
        return self.layers[name].parametrizations.weight[0].labels

    def parameters(self) -> list[nn.Parameter]:
        """The codebooks, one per layer (they are also among ``model.parameters()``)."""
        return [self.codebook(name) for name in self.layers]

    def attach(self, optimizer: torch.optim.Optimizer):
        """Check that ``optimizer`` trains the codebooks (an optimizer made before the quantizer
        holds the old weights instead), then as :meth:`Wrapper.attach`."""
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for name in self.layers:
            if id(self.codebook(name)) not in held:
                raise ValueError(f"the optimizer does not hold the codebook of {name!r}: "
                                 "create it after TrainedQuantizer(...)")
        return super().attach(optimizer)

    def remove(self) -> None:
        """Turn the weights back into plain parameters, with the values ``codebook[labels]``."""
        super().remove()
        for layer in self.layers.values():
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
