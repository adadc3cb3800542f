"""How a batch of stored rows becomes the model's input, inside the training and evaluation steps.

Two data forms (`DataSplits`): normalized float32 (N, C, R, R) tensors held in memory, or uint8 (N, S, S, C)
rows of a prepared store, converted and normalized here on the device (one uint8 copy of the data per process,
four times smaller than float32, and no decoded copy per process). Two augmentation protocols
(`TrainConfig.augment`):

- `shift` (CIFAR style, the default for small images): a center crop of R (when S > R), a random shift of up
  to `pad` pixels with zero fill after normalization, and horizontal flips where the data set allows them;
  evaluation sees the center crop.
- `imagenet` (pycls / torchvision): a random-resized crop (`augment.draw_boxes`) of the stored S x S image
  resized to R, and flips; evaluation center-crops R from S (a store prepared with the ImageNet margin holds
  the short side resized to R * 256 / 224, so this is pycls's resize 256 + center crop 224).

`auto` picks `imagenet` for a store with a margin (S > R) and `shift` otherwise. Every operation is a batched
tensor operation with its random draws made at the epoch's start, so a CUDA graph can capture the step.
"""

from __future__ import annotations

import torch

from anynet_search.training.augment import crop_resize, draw_boxes, draw_mirror, draw_offsets, shift_flip
from anynet_search.training.data.splits import DataSplits
from anynet_search.training.interface import AUGMENT_PROTOCOLS

__all__ = ["AUGMENT_PROTOCOLS", "InputPipeline", "resolve_augment"]


def resolve_augment(asked: str, data: DataSplits) -> str:
    """The protocol `asked` (`auto`, `shift` or `imagenet`) means for `data`: `auto` is `imagenet` for a store
    whose images are larger than the training resolution (prepared with the ImageNet margin), `shift` otherwise."""
    if asked not in AUGMENT_PROTOCOLS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_PROTOCOLS)}, got {asked!r}")
    if asked != "auto":
        return asked
    return "imagenet" if data.side > data.resolution else "shift"


class InputPipeline:
    """Per-trial input transform: `allocate` and `draw` make an epoch's augmentation draws, `train` and
    `evaluate` turn a gathered batch (stored form) into the normalized float batch the model reads."""

    def __init__(self, data: DataSplits, protocol: str, pad: int, flip: bool, device: torch.device) -> None:
        if protocol not in ("shift", "imagenet"):
            raise ValueError(f"protocol must be shift or imagenet (resolve auto first), got {protocol!r}")
        self.raw, self.protocol, self.flip = data.raw, protocol, flip
        self.pad = pad if protocol == "shift" else 0
        self.resolution, self.side = int(data.resolution), int(data.side)
        self.scale = self.shift = None
        if self.raw:
            # x / 255 normalized with the store's train statistics, as one multiply-add per channel
            mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
            std = torch.tensor(data.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
            self.scale, self.shift = 1.0 / (255.0 * std), -mean / std

    # ----------------------------------------------------------------------------------------- epoch draws
    def allocate(self, n: int, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Tensors for one epoch's draws of `n` images: (shift offsets or crop boxes, mirror flags); None where
        the protocol draws nothing."""
        if self.protocol == "imagenet":
            first = torch.zeros(n, 4, dtype=torch.float32, device=device)
        else:
            first = torch.zeros(n, 2, dtype=torch.long, device=device) if self.pad else None
        mirror = torch.zeros(n, 1, dtype=torch.bool, device=device) if self.flip else None
        return first, mirror

    def draw(self, draws: tuple[torch.Tensor | None, torch.Tensor | None], generator: torch.Generator) -> None:
        """Fill `draws` (from `allocate`) from `generator`, offsets or boxes first, then flips (a fixed order, so a
        seed reproduces the epoch)."""
        first, mirror = draws
        if first is not None:
            n, dev = int(first.shape[0]), first.device
            first.copy_(draw_boxes(n, self.side, generator, dev) if self.protocol == "imagenet"
                        else draw_offsets(n, self.pad, generator, dev))
        if mirror is not None:
            mirror.copy_(draw_mirror(int(mirror.shape[0]), generator, mirror.device))

    # ------------------------------------------------------------------------------------------- batches
    def _float(self, x: torch.Tensor) -> torch.Tensor:
        """Stored rows (uint8 NHWC) as normalized float NCHW (a channels-last view: no copy of the layout)."""
        if not self.raw:
            return x
        return x.permute(0, 3, 1, 2).float().mul_(self.scale).add_(self.shift)

    def _center(self, x: torch.Tensor) -> torch.Tensor:
        """The central `resolution` x `resolution` crop of stored rows (a view)."""
        if self.side == self.resolution:
            return x
        lo = (self.side - self.resolution) // 2
        hi = lo + self.resolution
        return x[:, lo:hi, lo:hi, :] if self.raw else x[:, :, lo:hi, lo:hi]

    def train(self, x: torch.Tensor, first: torch.Tensor | None, mirror: torch.Tensor | None) -> torch.Tensor:
        """A training batch: stored rows with this batch's draws applied, normalized float (N, C, R, R)."""
        if self.protocol == "imagenet":
            return crop_resize(self._float(x), first, mirror, self.resolution)  # type: ignore[arg-type]
        x = self._float(self._center(x))
        return shift_flip(x, self.pad, first, mirror) if first is not None or mirror is not None else x

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """An evaluation batch: the center crop, normalized float (N, C, R, R)."""
        return self._float(self._center(x))
