"""Dynamic Network Surgery (Guo, Yao, Chen, NIPS 2016): pruning with splicing.

Each wrapped layer computes its weight as ``w ⊙ mask`` while the full ``w`` keeps training: the
gradient reaches every element of ``w`` unchanged (straight-through), so a cut weight can grow back
and be spliced in again. The rule of the authors' Caffe layer, per layer:

- at the start, ``mu = mean|w|`` and ``sigma = std|w|`` (population), ``t = max(mu + c_rate·sigma, 0)``;
- at iteration ``i < iter_stop``, with probability ``(1 + gamma·i) ** (−power)``:
  ``mask = 0`` where ``|w| <= 0.9·t``, ``mask = 1`` where ``|w| > 1.1·t``, unchanged in between.

Iteration 0 is the wrapper's creation; each :meth:`DynamicSurgery.step` (after an optimizer step)
is the next. The random draws: one ``numpy.random.default_rng(seed).random()`` per layer per
iteration, in layer order, while ``i < iter_stop``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .base import Wrapper, per_layer


class _StraightThroughMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, mask):
        return torch.where(mask, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class SurgeryMask(nn.Module):
    """Parametrization ``w -> w ⊙ mask`` whose gradient passes to all of ``w``."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _StraightThroughMask.apply(weight, self.mask)


class DynamicSurgery(Wrapper):
    """Dynamic Network Surgery on the Linear and Conv layers of ``model`` (or ``layers``).

    ``c_rate``: a float for every layer or a mapping from layer name to value (that mapping then
    chooses the layers); higher prunes more, the authors' range is −2 … 5. ``gamma``, ``power``,
    ``iter_stop``: the schedule of mask updates (the authors' example: 1e-4, 1). After
    ``iter_stop`` the masks are fixed and training goes on. :meth:`remove` ends the surgery: each
    weight becomes the plain parameter ``w ⊙ mask``.
    """

    def __init__(self, model: nn.Module, c_rate: float | Mapping[str, float] = 0.0,
                 layers: Iterable[str] | None = None, *, gamma: float = 1e-4, power: float = 1.0,
                 iter_stop: int = 10_000, seed: int = 0):
        if isinstance(c_rate, Mapping):
            layers = list(c_rate) if layers is None else layers
        super().__init__(model, layers)
        self.c_rate = per_layer(c_rate, self.layers, "c_rate")
        self.layers = {name: self.layers[name] for name in self.c_rate}
        self.gamma, self.power, self.iter_stop = float(gamma), float(power), int(iter_stop)
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self.thresholds: dict[str, float] = {}
        for name, layer in self.layers.items():
            if parametrize.is_parametrized(layer, "weight"):
                raise ValueError(f"{name}: the weight is parametrized already")
            a = layer.weight.detach().abs().to(torch.float64)
            mu, sigma = float(a.mean()), float(a.std(correction=0))
            self.thresholds[name] = max(mu + self.c_rate[name] * sigma, 0.0)
            mask = torch.ones_like(layer.weight, dtype=torch.bool)
            parametrize.register_parametrization(layer, "weight", SurgeryMask(mask))
        self._update()

    def mask(self, name: str) -> torch.Tensor:
        return self.layers[name].parametrizations.weight[0].mask

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return {name: self.mask(name) for name in self.layers}

    def kept(self) -> dict[str, float]:
        """Fraction of weights the masks keep, per layer."""
        return {name: float(m.float().mean()) for name, m in self.masks.items()}

    @torch.no_grad()
    def _update(self) -> None:
        if self.iteration >= self.iter_stop:
            return
        probability = (1.0 + self.gamma * self.iteration) ** (-self.power)
        for name, layer in self.layers.items():
            if self.rng.random() >= probability:
                continue
            plist = layer.parametrizations.weight
            a = plist.original.abs()
            t = self.thresholds[name]
            mask = plist[0].mask
            mask.copy_(torch.where(a <= 0.9 * t, False, torch.where(a > 1.1 * t, True, mask)))

    def step(self) -> None:
        """One training iteration done: maybe update the masks (see the module's docs)."""
        self.iteration += 1
        self._update()

    def remove(self) -> None:
        """End the surgery: each weight becomes the plain parameter ``w ⊙ mask``."""
        super().remove()
        for layer in self.layers.values():
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
