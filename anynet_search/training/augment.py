"""Batch data augmentation on device-resident tensors: random zero-padded crops and horizontal flips.

Example:
    >>> import torch
    >>> x = torch.randn(8, 3, 32, 32)
    >>> augment_batch(x, pad=4, flip=True, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Randomly shift each image by [-pad, pad] px in both axes (zero fill) and, if `flip`, mirror half."""
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but the batch is on {x.device}")
    if pad == 0 and not flip:
        return x  # nothing to do: no copy, no random draws
    n, c, h, w = x.shape
    dev = x.device
    # Draw order is fixed (offsets, then flips) so a seeded generator reproduces the batch exactly.
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=dev)
    rows = offsets[:, :1] + torch.arange(h, device=dev)  # (n, h) rows of the padded image
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip:
        mirror = torch.randint(0, 2, (n, 1), generator=generator, device=dev, dtype=torch.bool)
        cols = torch.where(mirror, (w - 1) - cols, cols)
    cols = cols + offsets[:, 1:]  # (n, w) cols of the padded image
    # Pad once, then one gather with a per-sample flat index shared by all channels (expand: no copy).
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    hp, wp = h + 2 * pad, w + 2 * pad
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, hp * wp).gather(2, index).view(n, c, h, w)
