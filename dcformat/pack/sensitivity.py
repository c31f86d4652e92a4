"""Sensitivity files: how much each weight (or each tensor) matters to the model, for ``dcpack --sensitivity``.

A sensitivity file is a safetensors file (no pickles) with one float32 entry per tensor of the
checkpoint it describes, under the same name:

- the tensor's shape: one sensitivity per weight (``h_i``, the diagonal of the output's Fisher /
  Gauss–Newton matrix that :func:`dcformat.torch.calibrate.calibrate` estimates), or
- shape ``()``: one number for the whole tensor (the mean of its weights' ``h_i``).

The model-level cost of a weight error ``δ`` is then ``Σ_i h_i · δ_i²`` (to second order), what
:mod:`dcformat.pack.allocate` minimises under a size target. The header's metadata key
``dcformat.sensitivity`` says ``per-weight`` or ``per-tensor``; other keys record how it was made.
``python -m dcformat.torch.calibrate`` writes such files; :func:`save_sensitivities` writes any
dict of arrays; :func:`load_sensitivities` reads and checks one.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import CheckpointError, PackError

__all__ = ["save_sensitivities", "load_sensitivities", "check_sensitivities", "KIND_KEY"]

KIND_KEY = "dcformat.sensitivity"
"""Header metadata key: ``per-weight`` or ``per-tensor``."""


def _as_arrays(sensitivities: dict, where: str) -> dict[str, np.ndarray]:
    if not isinstance(sensitivities, dict) or not sensitivities:
        raise PackError(f"{where}: sensitivities must be a non-empty dict of tensor name -> array or number")
    out = {}
    for name, value in sensitivities.items():
        if not isinstance(name, str) or not name:
            raise PackError(f"{where}: a tensor name must be a non-empty string, not {name!r}")
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise PackError(f"{where}: the sensitivity of {name!r} is not numeric") from None
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise PackError(f"{where}: the sensitivity of {name!r} must be finite and >= 0")
        out[name] = arr.astype(np.float32)
    return out


def save_sensitivities(path, sensitivities: dict, *, per_tensor: bool = False, metadata: dict | None = None) -> str:
    """Write ``sensitivities`` (name -> per-weight array, or a number per tensor) to ``path`` as a
    safetensors sensitivity file; ``per_tensor`` stores each tensor's mean only (a file of a few
    kilobytes instead of one float per weight). Returns the kind written."""
    from safetensors.numpy import save_file

    arrays = _as_arrays(sensitivities, os.fspath(path))
    if per_tensor:
        arrays = {n: np.array(a.astype(np.float64).mean() if a.size else 0.0, np.float32) for n, a in arrays.items()}
    kind = "per-tensor" if all(a.ndim == 0 for a in arrays.values()) else "per-weight"
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[KIND_KEY] = kind
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(directory):
        raise CheckpointError(f"{os.fspath(path)!r}: directory {directory!r} does not exist")
    save_file({n: a.copy(order="C") for n, a in arrays.items()}, os.fspath(path), metadata=meta)  # 0-d stays 0-d
    return kind


def load_sensitivities(path) -> dict[str, np.ndarray]:
    """The sensitivities of a file :func:`save_sensitivities` (or ``python -m
    dcformat.torch.calibrate``) wrote: name -> float32 array (shape ``()`` for one per tensor).
    Raises :class:`CheckpointError` for a file that is not one."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path!r}: no such sensitivity file")
    try:
        with safe_open(path, "np") as f:
            meta = f.metadata() or {}
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # SafetensorError, OSError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(f"{path!r}: not a sensitivity file (safetensors: {first})") from None
    if meta.get(KIND_KEY) not in ("per-weight", "per-tensor"):
        raise CheckpointError(f"{path!r}: not a sensitivity file (no {KIND_KEY} key in its metadata; write one "
                              "with python -m dcformat.torch.calibrate)")
    try:
        return _as_arrays(arrays, path)
    except PackError as exc:
        raise CheckpointError(str(exc)) from None


def check_sensitivities(sensitivities: dict, tensors: dict, names, where: str = "sensitivity") -> dict:
    """``sensitivities`` restricted to ``names`` (tensors of ``tensors``: name -> array), each checked
    to be a number or an array of its tensor's shape. Raises :class:`PackError` naming the first
    mismatch, or when none of ``names`` has a sensitivity. Names without one are left out."""
    out = {}
    for name in names:
        if name not in sensitivities:
            continue
        s = np.asarray(sensitivities[name])
        shape = tuple(np.shape(tensors[name]))
        if s.ndim and s.shape != shape:
            raise PackError(f"{where}: {name!r} has shape {tuple(s.shape)} there but {shape} in the checkpoint")
        out[name] = s
    if names and not out:
        example = next(iter(sensitivities), "?")
        raise PackError(f"{where}: no tensor of the checkpoint has a sensitivity there (its names look like "
                        f"{example!r}, the checkpoint's like {next(iter(names))!r})")
    return out
