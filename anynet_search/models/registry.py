"""Block and stem types: each name maps to its `nn.Module` class and its analytic complexity counter.

The config's validation, the module builder, the analytic counter, `describe` and the pycls exporter all
look a type up here, so a new block or stem type is one `register_block` / `register_stem` call plus its
class (and, for a block, its counter in the form of `anynet_search.models.counts`):

>>> from anynet_search.models.counts import vanilla_block_counts
>>> entry = BlockType(module="anynet_search.models.blocks:VanillaBlock", count=vanilla_block_counts)
>>> entry.args
('w_in', 'w_out', 'stride')

Module classes may be given as `"module:Class"` strings, imported on first build, so that validating,
sampling and counting never import torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anynet_search.models.counts import (
    conv_counts,
    res_basic_block_counts,
    vanilla_block_counts,
    x_block_counts,
)
from anynet_search.models.rules import conv_out

#: Every argument a block constructor may take, in the order the builder computes them.
BLOCK_ARGS: tuple[str, ...] = ("w_in", "w_out", "stride", "w_b", "groups", "w_se")


def _resolve(module: type | str) -> type:
    if not isinstance(module, str):
        return module
    path, _, name = module.partition(":")
    return getattr(importlib.import_module(path), name)


@dataclass(frozen=True)
class BlockType:
    """One block type: its module class, its counter and the config rules that apply to it.

    `count(w_in, w_out, stride, w_b, groups, w_se, h)` returns (flops, params, acts, h_out) on ints or
    numpy arrays. `args` names the constructor's arguments (a subset of `BLOCK_ARGS`). `grouped`: the
    block has a bottleneck of width w_b with a grouped conv, so g must divide w_b. `se`: it takes an SE
    module of width w_se. `pycls`: pycls's BLOCK_TYPE name, None when pycls has no such block.
    """

    module: type | str
    count: Callable[..., tuple]
    args: tuple[str, ...] = ("w_in", "w_out", "stride")
    grouped: bool = False
    se: bool = False
    pycls: str | None = None

    def __post_init__(self) -> None:
        unknown = [a for a in self.args if a not in BLOCK_ARGS]
        if unknown:
            raise ValueError(f"block args {unknown} unknown; a block may take {', '.join(BLOCK_ARGS)}")

    def build(self, **args: Any) -> Any:
        """The block's module, given every builder argument (those it does not take are left out)."""
        return _resolve(self.module)(**{k: args[k] for k in self.args})


@dataclass(frozen=True)
class StemType:
    """One stem type: a k x k conv with stride (+ BN + ReLU), optionally followed by a 3x3 max-pool.

    Its complexity follows from this geometry: the conv's counts, plus the pool's output as acts (pycls
    counts them). `pool_stride` 1 means no pool. `pycls`: pycls's STEM_TYPE name, None when it has none.
    """

    module: type | str
    kernel: int
    stride: int
    pool_stride: int = 1
    pycls: str | None = None

    def build(self, w_in: int, w_out: int) -> Any:
        """The stem's module."""
        return _resolve(self.module)(w_in, w_out)

    def conv_resolution(self, resolution: Any) -> Any:
        """Side of the conv's output for a resolution x resolution input."""
        return conv_out(resolution, self.stride)

    def out_resolution(self, resolution: Any) -> Any:
        """Side of the stem's output (after the pool, if any), the input side of the first stage."""
        h = self.conv_resolution(resolution)
        return conv_out(h, self.pool_stride) if self.pool_stride > 1 else h

    def count(self, w_in: Any, w_out: Any, resolution: Any) -> tuple:
        """(flops, params, acts, h_out) of the stem."""
        h = self.conv_resolution(resolution)
        flops, params, acts = conv_counts(w_in, w_out, self.kernel, h)
        if self.pool_stride > 1:
            h = conv_out(h, self.pool_stride)
            acts = acts + w_out * h * h  # max-pool: no flops or params, but pycls counts its outputs as acts
        return flops, params, acts, h


BLOCKS: dict[str, BlockType] = {
    "x": BlockType("anynet_search.models.blocks:XBlock", x_block_counts, BLOCK_ARGS, grouped=True, se=True,
                   pycls="res_bottleneck_block"),
    "res_basic": BlockType("anynet_search.models.blocks:ResBasicBlock", res_basic_block_counts,
                           pycls="res_basic_block"),
    "vanilla": BlockType("anynet_search.models.blocks:VanillaBlock", vanilla_block_counts,
                         pycls="vanilla_block"),
}

STEMS: dict[str, StemType] = {
    "simple": StemType("anynet_search.models.blocks:SimpleStem", kernel=3, stride=2, pycls="simple_stem_in"),
    "cifar": StemType("anynet_search.models.blocks:CifarStem", kernel=3, stride=1, pycls="res_stem_cifar"),
    "res": StemType("anynet_search.models.blocks:ResStem", kernel=7, stride=2, pool_stride=2,
                    pycls="res_stem_in"),
}


def _register(table: dict, kind: str, name: str, entry: Any, replace: bool) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a {kind} type name must be an identifier, got {name!r}")
    if name in table and not replace:
        raise ValueError(f"{kind} type {name!r} is already registered (pass replace=True to redefine it)")
    table[name] = entry


def register_block(name: str, entry: BlockType, replace: bool = False) -> None:
    """Make `name` a block type configs, spaces, the builder and the counter accept."""
    if not isinstance(entry, BlockType):
        raise ValueError(f"register_block needs a BlockType, got {type(entry).__name__}")
    _register(BLOCKS, "block", name, entry, replace)


def register_stem(name: str, entry: StemType, replace: bool = False) -> None:
    """Make `name` a stem type configs, spaces, the builder and the counter accept."""
    if not isinstance(entry, StemType):
        raise ValueError(f"register_stem needs a StemType, got {type(entry).__name__}")
    _register(STEMS, "stem", name, entry, replace)


def unregister(name: str) -> None:
    """Remove a block or stem type registered by the user (the built-in ones stay)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in type and cannot be removed")
    BLOCKS.pop(name, None)
    STEMS.pop(name, None)


def is_grouped(name: str) -> bool:
    """Whether `name` is a registered block type with a grouped bottleneck (g must divide w_b)."""
    return isinstance(name, str) and name in BLOCKS and BLOCKS[name].grouped


def block_type(name: str) -> BlockType:
    """The registry entry of a block type; ValueError naming the known types."""
    if not isinstance(name, str) or name not in BLOCKS:
        raise ValueError(f"block_type must be one of {tuple(BLOCKS)}, got {name!r}")
    return BLOCKS[name]


def stem_type(name: str) -> StemType:
    """The registry entry of a stem type; ValueError naming the known types."""
    if not isinstance(name, str) or name not in STEMS:
        raise ValueError(f"stem_type must be one of {tuple(STEMS)}, got {name!r}")
    return STEMS[name]


_BUILTIN = frozenset(BLOCKS) | frozenset(STEMS)
