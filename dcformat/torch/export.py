"""From a trained model to the tensors a .dcf file stores, and back.

:func:`to_dcf_tensors` gives every entry of the model's state dict under its plain name
(``ip1.weight``, not ``ip1.parametrizations.weight.original``): weight-shared layers (trained
quantization, finished INQ) as :class:`~dcformat.tensors.CodebookTensor` holding the trained
codebook and the labels (-1 where pruned), everything else as numpy arrays with the exact values
the model computes (a pruned weight is an exact zero). :func:`load_dcf_tensors` puts decoded
tensors back into a model whose weights are plain parameters (a fresh instance of the
architecture, or one whose wrappers were removed).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..tensors import CodebookTensor
from .base import to_numpy
from .quantization import shared_weights

_PARAMETRIZED = "parametrizations."


def _codebook_tensor(codebook: torch.Tensor, labels: torch.Tensor) -> CodebookTensor:
    cb = to_numpy(codebook)
    dtype = cb.dtype
    if dtype not in (np.float32, np.float16):
        cb32 = cb.astype(np.float32)
        if not np.array_equal(cb32.astype(dtype), cb):
            raise ValueError(f"a {dtype} codebook whose values are not all float32 values")
        cb = cb32
    return CodebookTensor(cb, to_numpy(labels).astype(np.int32), dtype)


def to_dcf_tensors(model: nn.Module) -> dict[str, np.ndarray | CodebookTensor]:
    """The model's state dict as the file writer takes it, in state-dict order (see the module)."""
    out: dict[str, np.ndarray | CodebookTensor] = {}
    for key, value in model.state_dict().items():
        prefix, found, rest = key.rpartition(_PARAMETRIZED)
        if not found:
            out[key] = to_numpy(value)
            continue
        tensor_name, _, tail = rest.partition(".")
        if tail not in ("original", "original0"):
            continue  # a parametrization's own buffers (labels, masks): part of the value below
        module = model.get_submodule(prefix.rstrip("."))
        name = prefix + tensor_name
        shared = shared_weights(module) if tensor_name == "weight" else None
        if shared is not None:
            codebook, parametrization = shared
            out[name] = _codebook_tensor(codebook, parametrization.labels)
        else:
            out[name] = to_numpy(getattr(module, tensor_name))
    return out


def _to_torch(arr: np.ndarray) -> torch.Tensor:
    if arr.dtype.name == "bfloat16":
        return torch.from_numpy(np.array(arr).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.array(arr))  # a copy: the reader's arrays may be read-only


def load_dcf_tensors(model: nn.Module, tensors: Mapping[str, np.ndarray | CodebookTensor],
                     strict: bool = True):
    """Load decoded tensors (``dcformat.load_file``'s result, or :func:`to_dcf_tensors`') into
    ``model`` with ``load_state_dict``; codebook tensors are decoded first. Returns what
    ``load_state_dict`` returns (the missing and unexpected keys when ``strict`` is False).
    """
    for name, module in model.named_modules():
        if hasattr(module, _PARAMETRIZED.rstrip(".")):
            raise ValueError(f"{name or 'the model'} has parametrized tensors: remove the wrappers "
                             "(or use a fresh model) before loading plain weights into it")
    state = {}
    for name, value in tensors.items():
        arr = value.decode() if isinstance(value, CodebookTensor) else np.asarray(value)
        state[name] = _to_torch(arr)
    return model.load_state_dict(state, strict=strict)


def save_dcf(model: nn.Module, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write the model's tensors (:func:`to_dcf_tensors`) to a .dcf file."""
    from .. import save_file

    save_file(to_dcf_tensors(model), path, metadata=dict(metadata) if metadata else None)


def load_dcf(model: nn.Module, path: str | os.PathLike, strict: bool = True):
    """Read a .dcf file into ``model`` (:func:`load_dcf_tensors`)."""
    from .. import load_file

    return load_dcf_tensors(model, load_file(path), strict=strict)
