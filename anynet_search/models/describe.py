"""Human-readable description of a config: per-stage table plus complexity."""

from __future__ import annotations

from pathlib import Path

from anynet_search.errors import InputError
from anynet_search.models import registry
from anynet_search.models.complexity import complexity
from anynet_search.models.config import AnyNetConfig, ConfigFile, read_config_file
from anynet_search.models.rules import conv_out
from anynet_search.models.zoo import regnet_zoo


def resolve_config(name_or_path: str) -> AnyNetConfig:
    """A zoo name (case-insensitive) or a YAML/JSON config file; InputError with one line otherwise."""
    return resolve_config_file(name_or_path).config


def resolve_config_file(name_or_path: str) -> ConfigFile:
    """`resolve_config` with the resolution an export was trained at (None for a zoo name or a plain config)."""
    zoo = regnet_zoo()
    by_lower = {k.lower(): k for k in zoo}
    if name_or_path.lower() in by_lower:
        return ConfigFile(zoo[by_lower[name_or_path.lower()]])
    if Path(name_or_path).is_file():
        return read_config_file(name_or_path)
    raise InputError(
        f"{name_or_path!r} is neither a published model name (e.g. RegNetX-400MF) nor an existing config file"
    )


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def describe_config(cfg: AnyNetConfig, resolution: int = 224) -> str:
    """Per-stage table (depth, width, w_b, groups, stride, output resolution) and flops/params/acts."""
    cx = complexity(cfg, resolution)
    h = registry.stem_type(cfg.stem_type).out_resolution(resolution)
    grouped = registry.block_type(cfg.block_type).grouped
    lines = [
        f"stem: {cfg.stem_type} (width {cfg.stem_width}), block: {cfg.block_type}, se_ratio: {cfg.se_ratio}, "
        f"head_width: {cfg.head_width}, classes: {cfg.num_classes}, "
        f"input: {cfg.in_channels}x{resolution}x{resolution}",
        f"{'stage':>5} {'depth':>5} {'width':>6} {'w_b':>6} {'groups':>6} {'g':>4} {'stride':>6} "
        f"{'out_res':>7}",
    ]
    for i in range(cfg.num_stages):
        h = conv_out(h, cfg.strides[i])
        groups = cfg.groups[i] if grouped else 1
        lines.append(
            f"{i + 1:>5} {cfg.depths[i]:>5} {cfg.widths[i]:>6} {cfg.bottleneck_widths[i]:>6} {groups:>6} "
            f"{cfg.group_widths[i]:>4} {cfg.strides[i]:>6} {h:>7}"
        )
    lines.append(
        f"flops: {cx.flops:,} ({_human(cx.flops)})  params: {cx.params:,} ({_human(cx.params)})  "
        f"acts: {cx.acts:,} ({_human(cx.acts)})"
    )
    return "\n".join(lines)
