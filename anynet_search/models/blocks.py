"""The network's building blocks as `nn.Module`s: stems, X / residual-basic / vanilla blocks, SE and head.

Each module follows the layer conventions of the AnyNet / RegNet papers (as pycls builds them); `counts`
holds the matching analytic counts and `registry` pairs the two.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(w_in: int, w_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """k x k conv (padding k // 2, no bias) followed by BatchNorm."""
    conv = nn.Conv2d(w_in, w_out, k, stride=stride, padding=k // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(w_out))


class SimpleStem(nn.Sequential):
    """3x3 conv with stride 2, BN, ReLU (the ImageNet default)."""

    def __init__(self, w_in: int, w_out: int) -> None:
        super().__init__(*conv_bn(w_in, w_out, 3, stride=2), nn.ReLU(inplace=True))


class CifarStem(nn.Sequential):
    """3x3 conv with stride 1, BN, ReLU (keeps the resolution of small images)."""

    def __init__(self, w_in: int, w_out: int) -> None:
        super().__init__(*conv_bn(w_in, w_out, 3, stride=1), nn.ReLU(inplace=True))


class ResStem(nn.Sequential):
    """7x7 conv with stride 2, BN, ReLU, 3x3 max-pool with stride 2 (the ResNet stem)."""

    def __init__(self, w_in: int, w_out: int) -> None:
        super().__init__(
            *conv_bn(w_in, w_out, 7, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: GAP -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid -> channel scale."""

    def __init__(self, w: int, w_se: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(w, w_se, 1, bias=True)
        self.expand = nn.Conv2d(w_se, w, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of x by its learned gate."""
        s = torch.relu(self.reduce(self.pool(x)))
        return x * torch.sigmoid(self.expand(s))


class Shortcut(nn.Sequential):
    """Projection shortcut: 1x1 conv with the block's stride, then BN.

    With fewer than `SLICE_BELOW` input channels the stride is taken as a strided slice before a stride-1 1x1
    conv: for kernel 1 and padding 0 the same function with the same parameters and counts, but it avoids
    oneDNN's backward-weights kernel for strided 1x1 convs in channels-last, which overruns its workspace
    (heap corruption, or silently wrong weight gradients) when the input has fewer than 16 channels and the
    batch size is odd (oneDNN #6035). Wider inputs keep the strided conv: the slice costs about 5% of a
    RegNetX-200MF training step on the CPU (benchmarks/RESULTS.md, section 1).
    """

    SLICE_BELOW = 16

    def __init__(self, w_in: int, w_out: int, stride: int) -> None:
        slice_step = stride if stride > 1 and w_in < self.SLICE_BELOW else 1
        super().__init__(*conv_bn(w_in, w_out, 1, stride=stride // slice_step))
        self.slice = slice_step

    @property
    def stride(self) -> int:
        """The block's stride, however it is taken."""
        return self.slice * self[0].stride[0]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The 1x1 projection (with its stride) before BN."""
        if self.slice > 1:
            x = x[:, :, :: self.slice, :: self.slice]
        return self[0](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projected (and subsampled) input."""
        return self[1](self.project(x))


class XBlock(nn.Module):
    """Residual bottleneck block with a grouped 3x3 conv and optional SE (AnyNetX / RegNetY)."""

    def __init__(self, w_in: int, w_out: int, stride: int, w_b: int, groups: int, w_se: int) -> None:
        super().__init__()
        self.a = nn.Sequential(*conv_bn(w_in, w_b, 1), nn.ReLU(inplace=True))
        self.b = nn.Sequential(*conv_bn(w_b, w_b, 3, stride=stride, groups=groups), nn.ReLU(inplace=True))
        self.se = SqueezeExcite(w_b, w_se) if w_se > 0 else nn.Identity()
        self.c = conv_bn(w_b, w_out, 1)
        self.c[1].final_bn = True
        self.shortcut = Shortcut(w_in, w_out, stride) if (w_in != w_out or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck transform plus (projected) input, then ReLU."""
        out = self.c(self.se(self.b(self.a(x))))
        skip = x if self.shortcut is None else self.shortcut(x)
        # in place on the fresh sum: one activation-sized buffer less per block
        return torch.relu_(out + skip)


class ResBasicBlock(nn.Module):
    """Residual basic block: two 3x3 convs (the first carries the stride)."""

    def __init__(self, w_in: int, w_out: int, stride: int) -> None:
        super().__init__()
        self.a = nn.Sequential(*conv_bn(w_in, w_out, 3, stride=stride), nn.ReLU(inplace=True))
        self.b = conv_bn(w_out, w_out, 3)
        self.b[1].final_bn = True
        self.shortcut = Shortcut(w_in, w_out, stride) if (w_in != w_out or stride != 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two 3x3 convs plus (projected) input, then ReLU."""
        skip = x if self.shortcut is None else self.shortcut(x)
        return torch.relu_(self.b(self.a(x)) + skip)


class VanillaBlock(nn.Sequential):
    """Plain block without a shortcut: 3x3 conv, BN, ReLU, 3x3 conv, BN, ReLU."""

    def __init__(self, w_in: int, w_out: int, stride: int) -> None:
        super().__init__(
            *conv_bn(w_in, w_out, 3, stride=stride),
            nn.ReLU(inplace=True),
            *conv_bn(w_out, w_out, 3),
            nn.ReLU(inplace=True),
        )


class Head(nn.Module):
    """Optional 1x1 conv to `head_width` (BN, ReLU), then global average pool and a linear classifier."""

    def __init__(self, w_in: int, head_width: int, num_classes: int) -> None:
        super().__init__()
        self.conv = (
            nn.Sequential(*conv_bn(w_in, head_width, 1), nn.ReLU(inplace=True)) if head_width > 0 else None
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head_width or w_in, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes)."""
        if self.conv is not None:
            x = self.conv(x)
        return self.fc(torch.flatten(self.pool(x), 1))
