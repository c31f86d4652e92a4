"""Incremental Network Quantization (Zhou et al., ICLR 2017, arXiv 1702.03044).

Each layer's weights become zero or ±2**n in steps. At step ``j`` the accumulated portion
``portions[j]`` of the layer's weights is quantized: the largest magnitudes among the weights not
yet quantized, until that share is reached. Quantized weights are frozen (gradient zeroed, value
written back after every optimizer step); the others keep training in the user's loop until the
next call to :meth:`INQuantizer.quantize_next`. The levels come from
:func:`dcformat.compress.sharing.power_of_two_codebook` with ``s = max|W|`` of the layer when the
quantizer is created (``n1 = floor(log2(4s/3))``, ``2 ** (bits − 2)`` exponents), and stay fixed.

Weights that are exactly zero at the start (pruned, e.g. after Dynamic Network Surgery as in the
INQ paper) are frozen at zero from the start and do not count in the portions. After the last
portion each layer is weight-shared with a fixed codebook (the levels), so
:func:`dcformat.torch.to_dcf_tensors` exports it as a codebook tensor.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..compress import sharing
from ..tensors import ZERO_INDEX, CodebookTensor
from .base import FrozenEntries, per_layer, to_numpy
from .quantization import share_layer


class INQuantizer(FrozenEntries):
    """INQ on the Linear and Conv layers of ``model`` (or ``layers``) with ``bits`` per weight.

    ``bits`` (an int, or a mapping from layer name to bits that chooses the layers): one bit for
    zero, ``bits − 1`` for ``2 ** (bits − 2)`` exponents and a sign, as in the paper (5 bits: zero and
    ±2**n for 8 exponents). ``portions``: the accumulated shares, increasing, ending at 1.
    """

    def __init__(self, model: nn.Module, bits: int | Mapping[str, int] = 5,
                 layers: Iterable[str] | None = None,
                 portions: Sequence[float] = (0.5, 0.75, 0.875, 1.0)):
        if isinstance(bits, Mapping):
            layers = list(bits) if layers is None else layers
        super().__init__(model, layers)
        self.bits = per_layer(bits, self.layers, "bits")
        self.layers = {name: self.layers[name] for name in self.bits}
        portions = [float(p) for p in portions]
        if not portions or portions[-1] != 1.0 or any(not 0 < p <= 1 for p in portions) \
                or any(b <= a for a, b in zip(portions, portions[1:])):
            raise ValueError(f"portions must increase within (0, 1] and end at 1, got {portions}")
        self.portions = portions
        self.stage = 0
        self.max_abs: dict[str, float] = {}
        self.indices: dict[str, np.ndarray] = {}
        self.values: dict[str, torch.Tensor] = {}
        self._eligible: dict[str, int] = {}
        for name, layer in self.layers.items():
            w = layer.weight.detach()
            self.max_abs[name] = float(w.abs().max())
            if self.max_abs[name] == 0:
                raise ValueError(f"{name}: all weights are zero, INQ has no levels for it")
            self.free[name] = w != 0
            self._eligible[name] = int(self.free[name].sum())
            self.indices[name] = np.full(tuple(w.shape), ZERO_INDEX, np.int32)
            self.values[name] = torch.zeros_like(w)
            self._apply(name)

    def codebook(self, name: str) -> np.ndarray:
        """The non-zero levels of layer ``name`` (float32, sorted); zero is index -1."""
        return sharing.power_of_two_codebook(self.max_abs[name], self.bits[name])

    def _fixed_values(self, name: str) -> torch.Tensor:
        return self.values[name]

    @property
    def done(self) -> bool:
        return self.stage == len(self.portions)

    @torch.no_grad()
    def quantize_next(self) -> float:
        """Quantize and freeze the next portion of every layer; returns the accumulated portion.

        Within a layer, the not-yet-quantized weights of largest magnitude go first (ties: lower
        flat index first) until ``round(portion × n)`` of its ``n`` non-pruned weights are quantized.
        """
        if self.done:
            raise RuntimeError("INQ is done: every portion is quantized")
        portion = self.portions[self.stage]
        self.stage += 1
        for name, layer in self.layers.items():
            w = to_numpy(layer.weight)
            free = self.free[name].cpu().numpy().copy()
            n = self._eligible[name]
            target = n if self.done else int(round(portion * n))
            take = target - (n - int(free.sum()))
            if take <= 0:
                continue
            candidates = np.flatnonzero(free.ravel())
            order = np.argsort(-np.abs(w.ravel()[candidates]), kind="stable")
            chosen = candidates[order[:take]]
            quantized = sharing.inq_quantize(w, self.bits[name], max_abs=self.max_abs[name])
            indices = self.indices[name].reshape(-1)
            indices[chosen] = quantized.indices.reshape(-1)[chosen]
            decoded = torch.from_numpy(quantized.decode()).to(self.values[name].device)
            values = self.values[name].view(-1)
            values[chosen] = decoded.view(-1)[chosen].to(values.dtype)
            free.reshape(-1)[chosen] = False
            self.free[name] = torch.from_numpy(free).to(self.free[name].device)
            self._apply(name)
        if self.done:
            self._finish()
        return portion

    def _finish(self) -> None:
        # Every weight is a level now: share each layer with its fixed codebook.
        super().remove()
        for name, layer in self.layers.items():
            shared = CodebookTensor(self.codebook(name), self.indices[name])
            share_layer(layer, shared, trainable=False)
        self.free.clear()

    def kept(self) -> dict[str, float]:
        """Fraction of non-zero weights per layer (quantized ones that rounded to 0 count as zero)."""
        return {name: float((layer.weight != 0).float().mean()) for name, layer in self.layers.items()}
