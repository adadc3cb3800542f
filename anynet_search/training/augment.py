"""Batch data augmentation on device-resident tensors: random zero-padded crops and horizontal flips.

`shift_flip` applies given per-image crop offsets and flips (no random draws, so it can run inside a CUDA
graph whose draws were made outside it); `augment_batch` draws them from a generator and applies them.

Example:
    >>> import torch
    >>> x = torch.randn(8, 3, 32, 32)
    >>> augment_batch(x, pad=4, flip=True, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(x: torch.Tensor, pad: int) -> None:
    if x.dim() != 4:
        raise ValueError(f"augmentation expects an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")


def draw_offsets(n: int, pad: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n, 2) crop offsets in [0, 2 * pad]: row and column of each crop inside the zero-padded image."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=device)


def draw_mirror(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n, 1) booleans: which images to mirror."""
    return torch.randint(0, 2, (n, 1), generator=generator, device=device, dtype=torch.bool)


def shift_flip(x: torch.Tensor, pad: int, offsets: torch.Tensor | None, mirror: torch.Tensor | None) -> torch.Tensor:
    """Crop each image at its `offsets` (n, 2) from the `pad`-px zero-padded image, mirrored where `mirror` (n, 1).

    One gather with a per-sample flat index shared by all channels; `offsets` None means no shift, `mirror` None
    no flips. Pure tensor ops with no host synchronization (capturable in a CUDA graph).
    """
    _check(x, pad)
    if (pad == 0 or offsets is None) and mirror is None:
        return x
    n, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if mirror is not None:
        cols = torch.where(mirror, (w - 1) - cols, cols)
    if pad and offsets is not None:
        rows = rows + offsets[:, :1]
        cols = cols + offsets[:, 1:]
    else:
        pad = 0
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    hp, wp = h + 2 * pad, w + 2 * pad
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, hp * wp).gather(2, index).view(n, c, h, w)


def augment_batch(
    x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Randomly shift each image by [-pad, pad] px in both axes (zero fill) and, if `flip`, mirror half."""
    _check(x, pad)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but the batch is on {x.device}")
    if pad == 0 and not flip:
        return x  # nothing to do: no copy, no random draws
    n = x.shape[0]
    # Draw order is fixed (offsets, then flips) so a seeded generator reproduces the batch exactly.
    offsets = draw_offsets(n, pad, generator, x.device)
    mirror = draw_mirror(n, generator, x.device) if flip else None
    return shift_flip(x, pad, offsets, mirror)
