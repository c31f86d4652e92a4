"""Per-weight sensitivities from a few calibration inputs: the diagonal of the output's Fisher.

For a model ``f`` whose outputs should stay where they are (no labels needed), the loss of a small
weight change ``δ`` is, to second order, ``½ δᵀ JᵀJ δ`` with ``J`` the Jacobian of the outputs with
respect to the weights (the Gauss–Newton / Fisher matrix of an output-matching loss). Its diagonal
``Σ_j J_ji²`` weights each weight's squared quantization error, as the Hessian-weighted k-means of
Choi et al. (ICLR 2017) and the sensitivity-weighted k-means of SqueezeLLM do. It is estimated
without forming ``J``: for random ``r`` with unit variance, ``E[(Jᵀr)_i²] = Σ_j J_ji²``, and ``Jᵀr``
is one backward pass of ``r · f(x)``. :func:`calibrate` averages ``probes`` such passes per input.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["calibrate"]


def calibrate(model, inputs, *, probes: int = 4, seed: int = 0, names=None) -> dict[str, np.ndarray]:
    """``{parameter name: per-weight sensitivity}`` (float32 arrays of the parameters' shapes):
    the diagonal of ``JᵀJ`` averaged over ``inputs``, ``J`` the Jacobian of ``model(x)`` (a tensor,
    or a tuple whose first item is used) with respect to the parameters.

    ``inputs``: an iterable of inputs, each passed as ``model(x)`` (a tuple: ``model(*x)``);
    ``names``: the parameters to measure (default: every floating-point parameter). Deterministic
    for a given ``seed``. Gradients are accumulated outside the parameters' ``.grad``.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be an integer >= 1, not {probes!r}")
    params = {n: p for n, p in model.named_parameters() if p.dtype.is_floating_point}
    if names is not None:
        missing = sorted(set(names) - set(params))
        if missing:
            raise ValueError(f"no parameter named {missing[0]!r}")
        params = {n: params[n] for n in names}
    if not params:
        raise ValueError("the model has no floating-point parameter to calibrate")
    total = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for x in inputs:
        out = model(*x) if isinstance(x, tuple) else model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        for k in range(probes):
            r = torch.randn(out.shape, generator=generator, dtype=out.dtype)
            grads = torch.autograd.grad((out * r).sum(), list(params.values()), retain_graph=k < probes - 1,
                                        allow_unused=True)
            for (n, _), g in zip(params.items(), grads):
                if g is not None:
                    total[n] += g.detach().to(torch.float64) ** 2
        count += probes
    if count == 0:
        raise ValueError("inputs is empty: give at least one calibration input")
    return {n: (t / count).to(torch.float32).numpy() for n, t in total.items()}
