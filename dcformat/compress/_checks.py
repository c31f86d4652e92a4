"""Input checks shared by the compression primitives (private).

Public functions call these first and then hand plain, valid numpy arrays to their private
kernels; every failure is a ``ValueError`` whose message names the offending argument.
"""
from __future__ import annotations

import numbers

import numpy as np


def as_finite_array(x, name: str) -> np.ndarray:
    """``x`` as a numpy array of a real numeric dtype with only finite values."""
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "V" and arr.dtype.name in ("bfloat16", "float8_e4m3fn"):  # ml_dtypes' report kind "V"
        pass
    elif kind not in "fiu":
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if kind != "i" and kind != "u" and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_float64(x, name: str) -> np.ndarray:
    """``x`` checked by :func:`as_finite_array` and converted to float64 (a copy if needed)."""
    return as_finite_array(x, name).astype(np.float64, copy=False)


def as_mask(mask, shape, name: str = "mask") -> np.ndarray:
    """``mask`` as a boolean array of exactly ``shape``."""
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean array (True = kept), got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    return arr


def check_sparsity(sparsity) -> float:
    """``sparsity`` as a float in [0, 1)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise ValueError(f"sparsity must be a real number in [0, 1), got {sparsity!r}")
    s = float(sparsity)
    if not 0.0 <= s < 1.0:  # also rejects NaN
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return s


def check_int(value, name: str, lo: int, hi: int | None = None) -> int:
    """``value`` as a Python int in ``lo..hi`` (inclusive; no upper bound when ``hi`` is None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


def check_real(value, name: str, *, nonnegative: bool = False, positive: bool = False) -> float:
    """``value`` as a finite Python float, optionally >= 0 or > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonnegative and not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v
