"""Data for the seeds' experiments: CIFAR-10's binary batches, and tasks built from digit images.

The seeds train on CIFAR-10, a person-segmentation set and ModelNet40. Without those on disk the
reproduction builds the same kinds of task from MNIST digits (numpy only, deterministic by seed):

- :func:`digit_masks`: the segmentation target, the pixels of a digit above a threshold;
- :func:`noisy_digits`: the segmentation input, the digit under additive Gaussian noise, so that
  the mask has to be read from context rather than by thresholding one pixel;
- :func:`point_clouds`: "point-cloud MNIST", points drawn from a digit's pixels with probability
  proportional to their intensity, placed uniformly inside the pixel plus Gaussian jitter, and
  scaled to [-1, 1] (the 2-D set PointNet++ and later papers classify).

:func:`read_cifar10` reads the binary version of CIFAR-10 (``data_batch_1.bin`` …
``data_batch_5.bin``, ``test_batch.bin``); the python version is a set of pickles, which this
project never loads.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

CIFAR10_RECORD = 1 + 3 * 32 * 32
"""Bytes per image in CIFAR-10's binary batches: one label byte, then 1024 red, 1024 green and 1024
blue bytes, each plane row by row."""
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"


class Images(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One binary CIFAR-10 batch: uint8 images of shape (N, 3, 32, 32) and int64 labels.

    Raises ``ValueError`` when the file is empty, not a whole number of 3,073-byte records, or
    holds a label outside 0..9 (CIFAR-100's binary files have two label bytes: not this reader).
    """
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % CIFAR10_RECORD:
        raise ValueError(f"{path}: {data.size} bytes is not a whole number of CIFAR-10 records "
                         f"({CIFAR10_RECORD} bytes: 1 label byte + 3072 pixel bytes)")
    records = data.reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {int(labels.max())} outside 0..9: not a CIFAR-10 binary batch")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def read_cifar10(directory: str | os.PathLike) -> Images:
    """CIFAR-10 from the binary batches in ``directory`` (the ``cifar-10-batches-bin`` folder):
    float32 images in [0, 1] of shape (N, 3, 32, 32), 50,000 to train and 10,000 to test."""
    directory = Path(directory)
    missing = [name for name in (*CIFAR10_TRAIN, CIFAR10_TEST) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: no {', '.join(missing)} (the binary version of CIFAR-10; "
                                "the python version's pickled batches are not read)")
    parts = [read_cifar10_batch(directory / name) for name in CIFAR10_TRAIN]
    x_test, y_test = read_cifar10_batch(directory / CIFAR10_TEST)
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return Images(x_train.astype(np.float32) / 255.0, y_train, x_test.astype(np.float32) / 255.0, y_test,
                  f"CIFAR-10 binary batches in {directory}: {len(y_train)} train / {len(y_test)} test")


def _as_images(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected digit images of shape (N, H, W) or (N, 1, H, W), got {x.shape}")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("digit images must have values in [0, 1]")
    return x


def digit_masks(images: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The segmentation target: 1.0 where a pixel is above ``threshold``, else 0.0 (float32,
    shape (N, H, W))."""
    return (_as_images(images) > threshold).astype(np.float32)


def noisy_digits(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """The segmentation input: each image plus Gaussian noise of standard deviation ``sigma``
    (float32, shape (N, 1, H, W), not clipped), from ``numpy.random.default_rng(seed)``."""
    x = _as_images(images)
    noise = np.random.default_rng(seed).standard_normal(x.shape, dtype=np.float32)
    return (x + np.float32(sigma) * noise)[:, None]


def point_clouds(images: np.ndarray, points: int = 128, jitter: float = 0.25, seed: int = 0) -> np.ndarray:
    """Point clouds sampled from digit strokes, shape (N, 2, points), float32 in [-1, 1].

    Each point picks a pixel with probability proportional to its intensity (with replacement),
    lies uniformly inside that pixel, moves by Gaussian jitter of ``jitter`` pixels, and is scaled
    so that the image's extent maps to [-1, 1] (x = column, y = row pointing down; clipped at the
    border). An image without any ink raises ``ValueError``.
    """
    x = _as_images(images)
    n, h, w = x.shape
    if points < 1:
        raise ValueError("points must be >= 1")
    flat = x.reshape(n, -1).astype(np.float64)
    totals = flat.sum(1)
    if n and totals.min() <= 0:
        raise ValueError(f"image {int(np.argmin(totals))} has no ink to sample points from")
    rng = np.random.default_rng(seed)
    # Inverse-CDF sampling for all images at once: each row's CDF lies in [row, row + 1].
    cdf = np.cumsum(flat, 1) / totals[:, None]
    cdf[:, -1] = 1.0  # exactly, so that no draw of a row spills into the next
    cdf = (cdf + np.arange(n)[:, None]).ravel()
    u = rng.random((n, points)) + np.arange(n)[:, None]
    pick = np.minimum(np.searchsorted(cdf, u.ravel(), side="right"), cdf.size - 1).reshape(n, points)
    pixel = pick - (np.arange(n) * h * w)[:, None]
    rows, cols = np.divmod(pixel, w)
    xy = np.stack([cols, rows], 1).astype(np.float64) + rng.random((n, 2, points))
    xy += jitter * rng.standard_normal((n, 2, points))
    scale = np.array([w, h], dtype=np.float64)[None, :, None]
    return np.clip(xy / scale * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)
