"""What every method wrapper shares: choosing the layers, and hooking into the user's training loop.

A wrapper acts at two moments of a training step. During ``backward`` a hook on the weight masks
its gradient; after ``optimizer.step()`` the wrapper's :meth:`Wrapper.step` restores what the
optimizer must not change (momentum, Adam's running averages and weight decay all move a weight
whose gradient is zero). ``wrapper.attach(optimizer)`` makes the second automatic; a loop that
prefers to be explicit calls ``wrapper.step()`` right after ``optimizer.step()``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

COMPRESSIBLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layer types the methods compress: their ``weight`` is the tensor that gets pruned or shared."""


def find_layers(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """The model's Linear and Conv layers by qualified name (``model.named_modules()`` order).

    ``layers`` restricts the choice to those names; a name that is not a Linear or Conv layer of the
    model raises ``ValueError``.
    """
    found = {name: m for name, m in model.named_modules() if isinstance(m, COMPRESSIBLE)}
    if layers is None:
        return found
    wanted = list(layers)
    unknown = [name for name in wanted if name not in found]
    if unknown:
        raise ValueError(f"not Linear/Conv layers of the model: {unknown}; choose from {list(found)}")
    return {name: found[name] for name in found if name in wanted}


def per_layer(value, names: Iterable[str], what: str) -> dict:
    """``value`` for each layer: a mapping gives its own entries (a subset of ``names``), else all."""
    names = list(names)
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"{what} names layers this wrapper does not hold: {unknown}")
        return dict(value)
    return {name: value for name in names}


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A detached CPU numpy copy of ``t`` (bfloat16 as ``ml_dtypes.bfloat16``)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


class Wrapper:
    """Base of the method wrappers: holds the model and its chosen layers, runs after each step."""

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None):
        self.model = model
        self.layers = find_layers(model, layers)
        if not self.layers:
            raise ValueError("the model has no Linear or Conv layer to compress")
        self._handles: list = []

    def attach(self, optimizer: torch.optim.Optimizer):
        """Call :meth:`step` after every ``optimizer.step()``; returns a handle with ``remove()``."""
        handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())
        self._handles.append(handle)
        return handle

    def step(self) -> None:
        """Work to do after each optimizer step (see the class's docs); nothing by default."""

    def remove(self) -> None:
        """Detach from optimizers and remove the wrapper's hooks; the weights stay as they are."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class FrozenEntries(Wrapper):
    """Training where some weights of each layer are fixed: pruned (zero) or quantized (a level).

    ``self.free[name]`` is a boolean tensor of the weight's shape, True where the weight trains.
    Gradients of fixed weights are zeroed during backward, and :meth:`step` writes the fixed values
    back after the optimizer's update, so they stay exact whatever the optimizer does.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None):
        super().__init__(model, layers)
        self.free: dict[str, torch.Tensor] = {}
        self._hooked: dict[str, tuple[nn.Parameter, object]] = {}

    def _fixed_values(self, name: str) -> torch.Tensor | None:
        """Values of the fixed weights (read where ``free`` is False); ``None`` means zero."""
        return None

    def _hook(self, name: str) -> None:
        # A hook lives on the Parameter object; moving the model to another device can replace that
        # object, so hook it again whenever the layer holds a different one.
        weight = self.layers[name].weight
        hooked = self._hooked.get(name)
        if hooked is not None and hooked[0] is weight:
            return
        if hooked is not None:
            hooked[1].remove()
        handle = weight.register_hook(lambda grad, name=name: grad.masked_fill(~self._free(name), 0))
        self._hooked[name] = (weight, handle)

    def _free(self, name: str) -> torch.Tensor:
        free = self.free[name]
        device = self.layers[name].weight.device
        if free.device != device:
            free = self.free[name] = free.to(device)
        return free

    @torch.no_grad()
    def _apply(self, name: str) -> None:
        """Write the fixed values into the weight and make sure its gradient hook is in place."""
        layer = self.layers[name]
        if parametrize.is_parametrized(layer, "weight"):
            raise RuntimeError(f"{name}: another wrapper took over the weight while this one is active; "
                               "call remove() on this one first")
        self._hook(name)
        weight = layer.weight
        free = self._free(name)
        fixed = self._fixed_values(name)
        if fixed is None:
            weight.masked_fill_(~free, 0)
        else:
            weight.copy_(torch.where(free, weight, fixed.to(weight.device, weight.dtype)))

    def step(self) -> None:
        for name in self.free:
            self._apply(name)

    def remove(self) -> None:
        super().remove()
        for _, handle in self._hooked.values():
            handle.remove()
        self._hooked.clear()
