"""Quantizers for weights that matter unequally: sensitivity-weighted k-means and uniform grid, and ECVQ.

With per-weight sensitivities ``h`` (:func:`dcformat.torch.calibrate.calibrate`: the diagonal of
the output's Fisher matrix), the model's loss from a weight error ``δ`` is about ``½ Σ h_i δ_i²``.
Quantizers that minimise that sum instead of the plain squared error:

- :func:`weighted_kmeans`: k-means whose centroids are ``h``-weighted means of their clusters
  (Hessian-weighted k-means, Choi et al., "Towards the limit of network quantization", ICLR 2017;
  SqueezeLLM's sensitivity-weighted k-means, Kim et al. 2023). In 1-D the clusters are still runs
  of the sorted values cut at centroid midpoints: the weights move the centroids toward the values
  that matter, not the cuts.
- :func:`weighted_grid`: a uniform grid (:mod:`dcformat.compress.ecsq`) whose cells store the
  ``h``-weighted mean of their values; the step is chosen by the caller (the size allocation,
  :mod:`dcformat.pack.allocate`, prices every rung by the weighted error).
- :func:`ecvq`: entropy-constrained vector quantization in one dimension (Chou, Lookabaugh and
  Gray, 1989): Lloyd's with the assignment ``argmin_j h (w − c_j)² + λ·(−log2 p_j)``, so that a
  value moves to a more probable (cheaper to code) codeword when that saves more rate than it
  costs error, and improbable codewords die out. ``h`` defaults to 1 (plain squared error).

Each returns a :class:`~dcformat.tensors.CodebookTensor` the writer stores as any other (the
writer's Huffman coding is the entropy coder). The compiled loops are
:mod:`dcformat.kernels.weighted_kmeans`.
"""
from __future__ import annotations

import math

import numpy as np

from ..tensors import ZERO_INDEX, CodebookTensor
from ._checks import as_finite_array, check_real
from .ecsq import MAX_CELLS

__all__ = ["aggregate", "weighted_kmeans", "weighted_grid", "ecvq", "weighted_error2", "ecvq_lambda"]


def _kernels():
    from ..kernels import jit

    return jit("weighted_kmeans")


def _check(w, h):
    arr = as_finite_array(w, "w")
    if h is None:
        return arr, None
    hs = np.asarray(h.detach().cpu().numpy() if hasattr(h, "detach") else h, np.float64)
    if hs.ndim and hs.shape != arr.shape:
        raise ValueError(f"h must be a number or have the shape of w {arr.shape}, not {hs.shape}")
    if not np.isfinite(hs).all() or (hs < 0).any():
        raise ValueError("h must be finite and >= 0")
    return arr, hs


def aggregate(w, h=None):
    """``(u, hw, n, inverse)``: the sorted distinct values of ``w`` (float64, zero as ``+0.0``), the
    sum of ``h`` over the weights equal to each (``n`` itself without ``h``), their counts, and
    each weight's position in ``u``."""
    arr, hs = _check(w, h)
    flat = arr.astype(np.float64).reshape(-1)
    u, inverse, n = np.unique(flat, return_inverse=True, return_counts=True)
    u = u + 0.0
    inverse = inverse.reshape(-1)
    n = n.astype(np.float64)
    if hs is None:
        hw = n.copy()
    elif hs.ndim == 0:
        hw = n * float(hs)
    else:
        hw = np.bincount(inverse, weights=hs.reshape(-1), minlength=u.size)
    return u, hw, n, inverse


def _dtype(arr):
    return arr.dtype if arr.dtype in (np.float16, np.float32, np.float64) \
        or arr.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2") \
        else np.dtype(np.float32)


def _codebook_tensor(values, labels, inverse, shape, dtype, zero=None):
    """A CodebookTensor from per-distinct-value ``labels`` into ``values`` (float64); entries equal
    after float32 rounding are merged; ``zero``: the label stored as ZERO_INDEX (exact zero)."""
    keep = np.ones(values.size, bool)
    if zero is not None:
        keep[zero] = False
    codebook, slot = np.unique(values[keep].astype(np.float32), return_inverse=True)
    table = np.full(values.size, ZERO_INDEX, np.int64)
    table[keep] = slot.reshape(-1)
    if codebook.size == 0:
        codebook = np.zeros(1, np.float32)
    return CodebookTensor(codebook, table[labels][inverse].astype(np.int32).reshape(shape), dtype)


def weighted_kmeans(w, h, k: int, *, iters: int = 300) -> CodebookTensor:
    """``w`` shared into ``k`` centroids by k-means weighted by the sensitivities ``h`` (a number or an
    array of ``w``'s shape; ``None``: plain k-means): linear initialisation over ``[min, max]``
    (Deep Compression's best), then at most ``iters`` rounds of weighted Lloyd's."""
    arr, hs = _check(w, h)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_CELLS:
        raise ValueError(f"k must be an integer in 1..{MAX_CELLS}, not {k!r}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 0:
        raise ValueError(f"iters must be an integer >= 0, not {iters!r}")
    if arr.size == 0:
        return CodebookTensor(np.zeros(1, np.float32), np.zeros(arr.shape, np.int32), _dtype(arr))
    u, hw, n, inverse = aggregate(arr, hs)
    if u.size <= k:
        return _codebook_tensor(u, np.arange(u.size), inverse, arr.shape, _dtype(arr))
    c, labels, _ = _kernels().weighted_lloyd(u, hw, np.linspace(u[0], u[-1], int(k)), int(iters))
    used = np.unique(labels)  # clusters left empty by the linear init
    remap = np.full(c.size, -1, np.int64)
    remap[used] = np.arange(used.size)
    return _codebook_tensor(c[used], remap[labels], inverse, arr.shape, _dtype(arr))


def weighted_grid(w, h, step: float, deadzone: float = 0.5) -> CodebookTensor:
    """``w`` on a uniform grid of ``step`` (as :func:`dcformat.compress.uniform_quantize`), each used
    cell stored as the ``h``-weighted mean of its values (its plain mean where they weigh
    nothing); cell 0, ``|w| < deadzone·step``, as exact zero (``ZERO_INDEX``)."""
    arr, hs = _check(w, h)
    step = check_real(step, "step", positive=True)
    deadzone = check_real(deadzone, "deadzone")
    if not 0 <= deadzone <= 8:
        raise ValueError(f"deadzone must be in [0, 8] steps, not {deadzone}")
    if arr.size == 0:
        return CodebookTensor(np.zeros(1, np.float32), np.zeros(arr.shape, np.int32), _dtype(arr))
    u, hw, n, inverse = aggregate(arr, hs)
    cells, values, _, _ = _kernels().grid_weighted(u, hw, n, float(step), float(deadzone))
    if np.count_nonzero(cells) > MAX_CELLS:
        raise ValueError(f"step {step:g} needs {np.count_nonzero(cells)} codebook entries (at most {MAX_CELLS})")
    labels = np.searchsorted(cells, _cells(u, float(step), float(deadzone)))
    zero = np.flatnonzero(cells == 0)
    return _codebook_tensor(values, labels, inverse, arr.shape, _dtype(arr), zero[0] if zero.size else None)


def _cells(u, step, deadzone):
    a = np.abs(u) / step + 1.0 - deadzone
    c = np.where(a > 0, np.floor(np.maximum(a, 0)), 0.0)
    return np.where(u < 0, -c, c)


def ecvq_lambda(step: float, mean_h: float = 1.0) -> float:
    """The Lagrange multiplier of a uniform grid of ``step`` at high rate: the slope ``−dD/dR`` of
    ``D = mean_h · step² / 12`` per weight against ``R`` in bits, ``2 ln 2 · D``."""
    return 2 * math.log(2) * mean_h * step * step / 12


def ecvq(w, h=None, *, lam: float, init_step: float, iters: int = 50) -> CodebookTensor:
    """Entropy-constrained k-means of ``w`` (Chou–Lookabaugh–Gray): codewords start as the cells of a
    uniform grid of ``init_step``; each round assigns every value to the codeword minimising
    ``h (w − c)² + lam · (−log2 p)`` (``p``: the codeword's share of the weights), moves each
    codeword to the ``h``-weighted mean of its values and drops the empty ones; at most ``iters``
    rounds (stops when no assignment changes). ``lam`` in units of ``h · w²`` per weight per bit
    (:func:`ecvq_lambda` gives the grid's own)."""
    arr, hs = _check(w, h)
    lam = check_real(lam, "lam")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, not {lam}")
    init_step = check_real(init_step, "init_step", positive=True)
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be an integer >= 1, not {iters!r}")
    if arr.size == 0:
        return CodebookTensor(np.zeros(1, np.float32), np.zeros(arr.shape, np.int32), _dtype(arr))
    kern = _kernels()
    u, hw, n, inverse = aggregate(arr, hs)
    cells, c, _, _ = kern.grid_weighted(u, hw, n, init_step, 0.5)
    c = np.where(cells == 0, 0.0, c)
    if c.size > 4 * MAX_CELLS:
        raise ValueError(f"init_step {init_step:g} starts {c.size} codewords (at most {4 * MAX_CELLS})")
    labels = np.empty(u.size, np.int64)
    previous = None
    total = n.sum()
    sn = kern.cluster_stats(np.searchsorted(cells, _cells(u, init_step, 0.5)), u, hw, n, c.size)[2]
    for _ in range(int(iters)):
        lengths = -np.log2(np.maximum(sn, 0.5) / total)
        kern.ecvq_assign(u, hw, n, c, lengths, float(lam), labels)
        sw, su, sn, snu = kern.cluster_stats(labels, u, hw, n, c.size)
        used = sn > 0
        c = np.where(sw > 0, su / np.where(sw > 0, sw, 1), snu / np.where(sn > 0, sn, 1))[used]
        remap = np.cumsum(used) - 1
        labels = remap[labels]
        sn = sn[used]
        order = np.argsort(c, kind="stable")  # weighted means of runs stay sorted; keep it certain
        if (order != np.arange(c.size)).any():
            c, sn = c[order], sn[order]
            labels = np.argsort(order)[labels]
        if previous is not None and previous.size == labels.size and (previous == labels).all():
            break
        previous = labels.copy()
    if c.size > MAX_CELLS:
        raise ValueError(f"{c.size} codewords left (at most {MAX_CELLS}): a larger lam or init_step")
    return _codebook_tensor(c, labels, inverse, arr.shape, _dtype(arr))


def weighted_error2(w, decoded, h=None) -> float:
    """``Σ h_i (w_i − ŵ_i)²`` in float64 (``h`` None: plain squared error)."""
    d = np.asarray(decoded, np.float64) - np.asarray(w, np.float64)
    d *= d
    if h is None:
        return float(d.sum())
    if np.ndim(h) == 0:
        return float(h) * float(d.sum())
    return float(np.dot(d.reshape(-1), np.asarray(h, np.float64).reshape(-1)))
