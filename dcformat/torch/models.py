"""The networks of Deep Compression's MNIST experiments, and a small residual CNN for the tests.

Layer names follow the Caffe models the paper compressed (``ip1``, ``conv1`` …), so the per-layer
tables read like the paper's Tables 2 and 3.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNet300100(nn.Module):
    """LeNet-300-100: fully connected 784-300-100-10 with ReLU (266,200 weights, 410 biases)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.ip1 = nn.Linear(784, 300)
        self.ip2 = nn.Linear(300, 100)
        self.ip3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.ip3(F.relu(self.ip2(F.relu(self.ip1(x)))))


class LeNet5(nn.Module):
    """Caffe's LeNet-5: conv 20 5×5, max-pool 2, conv 50 5×5, max-pool 2, fc 500, ReLU, fc 10.

    As in Caffe's ``lenet_train_test.prototxt`` there is no non-linearity after the convolutions.
    430,500 weights and 580 biases.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.ip1 = nn.Linear(800, 500)
        self.ip2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        return self.ip2(F.relu(self.ip1(x.flatten(1))))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A small ResNet-style CNN (stem, two basic blocks, global pooling, fc) for 1-channel images.

    Batch norm, 1×1 projection shortcuts and bias-free convolutions: the cases a compression API has
    to leave alone or handle, in a network that trains in seconds.
    """

    def __init__(self, num_classes: int = 10, width: int = 8, in_channels: int = 1):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = _BasicBlock(width, width, 1)
        self.block2 = _BasicBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
