"""The single description of a network: a frozen, validated `AnyNetConfig` and its file round trip."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anynet_search.errors import InputError, yaml_problem
from anynet_search.models import registry, rules

STAGE_FIELDS = (*rules.STAGE_COLUMNS, "strides")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_tuple(name: str, value: Any) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list with one entry per stage, got {value!r}")
    return tuple(value)


def _int_stage_values(name: str, values: tuple) -> tuple[int, ...]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not _is_int(v):
            raise ValueError(f"{name}[{i}] must be an integer, got {v!r}")
        if v <= 0:
            raise ValueError(f"{name}[{i}] must be positive, got {v}")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class AnyNetConfig:
    """A complete AnyNet network: stem -> stages of blocks -> head; every list has one entry per stage.

    >>> cfg = AnyNetConfig(depths=(1, 2), widths=(16, 32), bottleneck_ratios=(1, 1),
    ...                    group_widths=(8, 8), strides=(1, 2), stem_type="cifar")
    >>> cfg.num_stages
    2
    """

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    bottleneck_ratios: tuple[float, ...]
    group_widths: tuple[int, ...]
    strides: tuple[int, ...]
    stem_type: str = "simple"
    stem_width: int = 32
    block_type: str = "x"
    se_ratio: float = 0.0
    head_width: int = 0
    num_classes: int = 1000
    in_channels: int = 3
    zero_init_last_bn: bool = field(default=True)

    def __post_init__(self) -> None:
        for name in STAGE_FIELDS:
            object.__setattr__(self, name, _as_tuple(name, getattr(self, name)))
        n = len(self.depths)
        if n == 0:
            raise ValueError("depths must name at least one stage, got []")
        for name in STAGE_FIELDS[1:]:
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries but depths has {n}: "
                    "every stage list needs one entry per stage"
                )
        for name in ("depths", "widths", "group_widths", "strides"):
            object.__setattr__(self, name, _int_stage_values(name, getattr(self, name)))
        ratios = []
        for i, b in enumerate(self.bottleneck_ratios):
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
                raise ValueError(f"bottleneck_ratios[{i}] must be a positive number, got {b!r}")
            ratios.append(int(b) if float(b).is_integer() else float(b))
        object.__setattr__(self, "bottleneck_ratios", tuple(ratios))
        grouped = registry.is_grouped(self.block_type)  # an unknown type is named after the stage checks
        for i, (w, b, g) in enumerate(zip(self.widths, self.bottleneck_ratios, self.group_widths)):
            w_b = w / b
            if abs(w_b - round(w_b)) > 1e-9 or round(w_b) < 1:
                raise ValueError(f"widths[{i}]={w} is not divisible by its bottleneck ratio {b}")
            if grouped and round(w_b) % g != 0:
                raise ValueError(
                    f"group_widths[{i}]={g} does not divide the bottleneck width {round(w_b)} "
                    f"(widths[{i}]={w} / bottleneck_ratios[{i}]={b})"
                )
        registry.stem_type(self.stem_type)  # ValueError naming the known types
        block = registry.block_type(self.block_type)
        for name in ("stem_width", "num_classes", "in_channels"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not _is_int(self.head_width) or self.head_width < 0:
            raise ValueError(
                f"head_width must be a non-negative integer (0 = no head conv), got {self.head_width!r}"
            )
        se = self.se_ratio
        if isinstance(se, bool) or not isinstance(se, (int, float)) or not 0 <= se < 1:
            raise ValueError(f"se_ratio must be in [0, 1) (0 = no SE), got {se!r}")
        if se and not block.se:
            with_se = " or ".join(repr(n) for n, b in registry.BLOCKS.items() if b.se)
            raise ValueError(f"se_ratio={se} needs block_type {with_se}, got {self.block_type!r}")
        if not isinstance(self.zero_init_last_bn, bool):
            raise ValueError(f"zero_init_last_bn must be true or false, got {self.zero_init_last_bn!r}")

    @property
    def num_stages(self) -> int:
        """Number of stages."""
        return len(self.depths)

    @property
    def bottleneck_widths(self) -> tuple[int, ...]:
        """Per-stage bottleneck widths w / b."""
        return tuple(rules.bottleneck_width(w, b) for w, b in zip(self.widths, self.bottleneck_ratios))

    @property
    def groups(self) -> tuple[int, ...]:
        """Per-stage number of groups of the 3x3 conv (w_b / g)."""
        return tuple(w_b // g for w_b, g in zip(self.bottleneck_widths, self.group_widths))

    @property
    def block_widths(self) -> list[int]:
        """Output width of every block, stage by stage (what a RegNet fit explains)."""
        return rules.block_widths(self.depths, self.widths)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict of every field (lists instead of tuples)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnyNetConfig:
        """Build a config from a mapping, rejecting unknown keys by name."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a config must be a mapping of AnyNetConfig fields, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown config field(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}"
            )
        missing = [n for n in STAGE_FIELDS if n not in data]
        if missing:
            raise ValueError(f"config is missing required field(s) {', '.join(missing)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> AnyNetConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def save_config(cfg: AnyNetConfig, path: str | Path) -> Path:
    """Write a config as YAML (.yaml/.yml) or JSON (anything else)."""
    path = Path(path)
    data = cfg.to_dict()
    if path.suffix.lower() in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False)
    else:
        text = json.dumps(data, indent=2) + "\n"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class ConfigFile:
    """A config file as read: the network, and for an `anynet-search export` the input resolution its study trained
    at (the config's `in_channels` and `num_classes` are those of its data set); None for a plain config file."""

    config: AnyNetConfig
    resolution: int | None = None


def read_config_file(path: str | Path) -> ConfigFile:
    """Read a YAML or JSON config file, or an export (the config under `config:` beside its metrics and
    resolution); errors name the file and the problem.

    >>> import tempfile, pathlib
    >>> from anynet_search import regnet_zoo
    >>> path = save_config(regnet_zoo()["RegNetX-200MF"], pathlib.Path(tempfile.mkdtemp()) / "x.yaml")
    >>> read_config_file(path).resolution is None, read_config_file(path).config.num_classes
    (True, 1000)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({yaml_problem(exc)})") from None
    resolution = None
    if isinstance(data, Mapping) and "config" in data and isinstance(data["config"], Mapping):
        resolution = data.get("resolution")  # exports wrap the config with metadata
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                       or resolution < 1):
            raise InputError(f"{path}: resolution must be a positive integer, got {resolution!r}")
        data = data["config"]
    try:
        return ConfigFile(AnyNetConfig.from_dict(data), resolution)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: {exc}") from None


def load_config(path: str | Path) -> AnyNetConfig:
    """The network of a YAML or JSON config file or export (`read_config_file` also gives an export's resolution).

    >>> import tempfile, pathlib
    >>> from anynet_search import regnet_zoo
    >>> cfg = regnet_zoo()["RegNetY-400MF"]
    >>> load_config(save_config(cfg, pathlib.Path(tempfile.mkdtemp()) / "y.json")) == cfg
    True
    """
    return read_config_file(path).config
