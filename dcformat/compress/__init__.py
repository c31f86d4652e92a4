"""Compression primitives shared by post-training packing and training-time methods (numpy, and
Numba for the k-means loops: :mod:`dcformat.kernels.kmeans`, loaded on first use; no torch).

Pruning masks (True = kept), 1-D k-means weight sharing, INQ power-of-two levels, and the metrics
that report them. One implementation of each: :mod:`dcformat.torch` calls these same functions.
"""
from .metrics import entropy_bits, pcr, relative_error
from .pruning import filter_masks, global_masks, magnitude_mask, sparsity_of, threshold_mask
from .sharing import (
    inq_quantize,
    kmeans_1d,
    linear_codebook,
    power_of_two_codebook,
    quantize_to_codebook,
    share_weights,
)

__all__ = [
    "magnitude_mask",
    "threshold_mask",
    "global_masks",
    "filter_masks",
    "sparsity_of",
    "kmeans_1d",
    "quantize_to_codebook",
    "share_weights",
    "linear_codebook",
    "power_of_two_codebook",
    "inq_quantize",
    "relative_error",
    "entropy_bits",
    "pcr",
]
