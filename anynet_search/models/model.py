"""Build the `nn.Module` that an `AnyNetConfig` describes."""

from __future__ import annotations

import math

import torch
from torch import nn

from anynet_search.models import registry
from anynet_search.models.blocks import Head
from anynet_search.models.config import AnyNetConfig
from anynet_search.models.rules import se_width


def stage_blocks(cfg: AnyNetConfig) -> list[list[dict]]:
    """Per-stage lists of block arguments (w_in, w_out, stride, w_b, groups, w_se) in build order."""
    stages, w_in = [], cfg.stem_width
    for i in range(cfg.num_stages):
        blocks = []
        for j in range(cfg.depths[i]):
            blocks.append(
                dict(
                    w_in=w_in,
                    w_out=cfg.widths[i],
                    stride=cfg.strides[i] if j == 0 else 1,
                    w_b=cfg.bottleneck_widths[i],
                    groups=cfg.groups[i],
                    w_se=se_width(w_in, cfg.se_ratio),
                )
            )
            w_in = cfg.widths[i]
        stages.append(blocks)
    return stages


class AnyNet(nn.Module):
    """Stem -> stages of blocks -> head, as described by an `AnyNetConfig`; accepts any input resolution."""

    def __init__(self, cfg: AnyNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = registry.stem_type(cfg.stem_type).build(cfg.in_channels, cfg.stem_width)
        block = registry.block_type(cfg.block_type)
        self.stages = nn.Sequential(
            *(nn.Sequential(*(block.build(**args) for args in blocks)) for blocks in stage_blocks(cfg))
        )
        self.head = Head(cfg.widths[-1], cfg.head_width, cfg.num_classes)
        init_weights(self, zero_init_last_bn=cfg.zero_init_last_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of images (batch, in_channels, H, W)."""
        return self.head(self.stages(self.stem(x)))


def init_weights(model: nn.Module, zero_init_last_bn: bool = True) -> None:
    """He (fan-out) init for convs, unit BN (zero for each residual block's last BN if asked), small FC."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            last = getattr(m, "final_bn", False) and zero_init_last_bn
            nn.init.constant_(m.weight, 0.0 if last else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            nn.init.zeros_(m.bias)


def build_model(cfg: AnyNetConfig) -> AnyNet:
    """Build the network of `cfg` (freshly initialized, on CPU, in train mode).

    >>> from anynet_search import regnet_zoo
    >>> model = build_model(regnet_zoo()["RegNetX-200MF"])
    >>> model(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    """
    if not isinstance(cfg, AnyNetConfig):
        raise ValueError(f"build_model needs an AnyNetConfig, got {type(cfg).__name__}")
    return AnyNet(cfg)
