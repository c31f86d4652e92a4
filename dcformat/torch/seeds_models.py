"""Small networks in the shape of the seeds' ones, sized to train on two CPU cores.

The Keras compression repository compresses a VGG-like net, ResNet-50, a U-Net and PointNet; the
PyTorch DeepCompression repository a VGG19 with batch norm. These keep each architecture's
structure (conv–BN–ReLU stacks with pooling; residual blocks with projection shortcuts; an
encoder–decoder with skip connections; a shared per-point MLP, an input transform and a symmetric
max-pool) at a width that trains in seconds per epoch. Every network defines the layer that reads
the raw input first and its output layer last, so ``find_layers(model)``'s first entry is the input
layer (the Keras seed leaves it unpruned) and its last entry the output layer.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .models import _BasicBlock as _Block  # the ResNet basic block TinyResNet uses


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGBN(nn.Module):
    """VGG with batch norm: three stages of two 3×3 conv–BN–ReLU layers and a 2×2 max-pool
    (``width``, ``2 width``, ``4 width`` channels), then fc–ReLU–dropout and the classifier.

    The Keras seed's VGG-like net has the same three stages (32, 64, 128 channels, no batch norm)
    and two fc layers of 512; the PyTorch seed's VGG19-BN has five stages. ``size``: the input's
    height and width (28 for MNIST digits, 32 for CIFAR-10).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, size: int = 28, width: int = 8,
                 hidden: int = 128):
        super().__init__()
        c = (width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in c:
            layers += _conv_bn(cin, cout) + _conv_bn(cout, cout) + [nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        side = size // 8
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c[-1] * side * side, hidden),
                                        nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ResNetSmall(nn.Module):
    """ResNet-style classifier: a stride-2 3×3 stem, three stages of one basic block each
    (``width``, ``2 width``, ``4 width`` channels, the last two with stride 2 and a projection
    shortcut), global average pooling and a linear classifier. The Keras seed's ResNet-50 has
    bottleneck blocks in four stages; the structure compressed (3×3 and 1×1 convolutions with
    batch norm, shortcuts) is the same."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.layer1 = _Block(width, width, 1)
        self.layer2 = _Block(width, 2 * width, 2)
        self.layer3 = _Block(2 * width, 4 * width, 2)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class UNet(nn.Module):
    """U-Net for binary segmentation: an encoder of three levels (two 3×3 conv–BN–ReLU each,
    max-pool between them), a decoder that upsamples ×2 (nearest), concatenates the encoder's
    features of that level and applies two conv–BN–ReLU, then a 1×1 conv to ``num_classes`` logits per
    pixel (shape ``(batch, num_classes, H, W)``; class 1 is the foreground). The Keras seed's U-Net has five
    levels of 64–256 channels on 256×256 images and the same kind of output, a 1×1 conv to 2 classes
    under a softmax (its models/unet.py, ``Unet(nClasses=2)``). The height and width must be
    divisible by 4."""

    def __init__(self, in_channels: int = 1, width: int = 8, num_classes: int = 2):
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.enc1 = nn.Sequential(*_conv_bn(in_channels, c1), *_conv_bn(c1, c1))
        self.enc2 = nn.Sequential(*_conv_bn(c1, c2), *_conv_bn(c2, c2))
        self.enc3 = nn.Sequential(*_conv_bn(c2, c3), *_conv_bn(c3, c3))
        self.dec2 = nn.Sequential(*_conv_bn(c3 + c2, c2), *_conv_bn(c2, c2))
        self.dec1 = nn.Sequential(*_conv_bn(c2 + c1, c1), *_conv_bn(c1, c1))
        self.head = nn.Conv2d(c1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)


class _TNet(nn.Module):
    """PointNet's transform network: a per-point MLP, max-pool, fc layers to a ``dim × dim``
    matrix, started at the identity (the last layer's weights small, its bias the identity)."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.dim = dim
        self.conv1 = nn.Conv1d(dim, width, 1)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, 2 * width, 1)
        self.bn2 = nn.BatchNorm1d(2 * width)
        self.fc1 = nn.Linear(2 * width, width)
        self.bn3 = nn.BatchNorm1d(width)
        self.fc2 = nn.Linear(width, dim * dim)
        with torch.no_grad():
            self.fc2.weight.mul_(0.01)
            self.fc2.bias.copy_(torch.eye(dim).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        x = F.relu(self.bn3(self.fc1(x.amax(2))))
        return self.fc2(x).view(-1, self.dim, self.dim)


class PointNet(nn.Module):
    """PointNet classifier (Qi et al. 2017) for ``dim``-D points given as ``(batch, dim, points)``:
    an input transform (T-Net), a shared per-point MLP of 1×1 convolutions with batch norm
    (``width``, ``width``, ``2 width``, ``4 width``), a max-pool over the points, and fc layers with
    dropout to the classes. The seed's PointNet (3-D points of ModelNet40) also has a feature
    transform and layers of up to 1024 units."""

    def __init__(self, num_classes: int = 10, dim: int = 2, width: int = 32):
        super().__init__()
        self.tnet = _TNet(dim, width)
        sizes = (dim, width, width, 2 * width, 4 * width)
        self.mlp = nn.ModuleList(nn.Conv1d(a, b, 1) for a, b in zip(sizes, sizes[1:]))
        self.mlp_bn = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])
        self.fc1 = nn.Linear(4 * width, 2 * width)
        self.bn = nn.BatchNorm1d(2 * width)
        self.dropout = nn.Dropout(0.3)
        self.fc2 = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.bmm(self.tnet(x), x)
        for conv, bn in zip(self.mlp, self.mlp_bn):
            x = F.relu(bn(conv(x)))
        x = F.relu(self.bn(self.fc1(x.amax(2))))
        return self.fc2(self.dropout(x))
