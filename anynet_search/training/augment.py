"""Batch data augmentation on device-resident tensors: the CIFAR-style shift (random zero-padded crops) and the
ImageNet-style random-resized crop, each with horizontal flips.

`shift_flip` and `crop_resize` apply given per-image draws (no random draws, so they can run inside a CUDA
graph whose draws were made outside it); `draw_offsets`, `draw_boxes` and `draw_mirror` make the draws;
`augment_batch` draws shifts and flips from a generator and applies them.

Example:
    >>> import torch
    >>> x = torch.randn(8, 3, 32, 32)
    >>> augment_batch(x, pad=4, flip=True, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: torchvision's RandomResizedCrop defaults (the ImageNet training protocol of pycls and the RegNet papers)
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


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


def draw_boxes(n: int, side: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(n, 4) float crop boxes (top, left, height, width) in pixels of a `side` x `side` image, drawn as
    torchvision's RandomResizedCrop draws them: area share in CROP_SCALE, log-uniform aspect ratio in
    CROP_RATIO, the first of CROP_ATTEMPTS tries that fits, else the whole image; then a uniform position.
    Vectorized over images and tries (no per-image Python)."""
    area = float(side * side)
    lo, hi = CROP_SCALE
    share = torch.rand((n, CROP_ATTEMPTS), generator=generator, device=device) * (hi - lo) + lo
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(torch.rand((n, CROP_ATTEMPTS), generator=generator, device=device) * (log_hi - log_lo) + log_lo)
    w = torch.round(torch.sqrt(area * share * ratio))
    h = torch.round(torch.sqrt(area * share / ratio))
    fits = (w >= 1) & (w <= side) & (h >= 1) & (h <= side)
    first = fits.to(torch.float32).argmax(dim=1, keepdim=True)  # the first try that fits (argmax takes the first)
    found = fits.any(dim=1)
    w = torch.where(found, w.gather(1, first).squeeze(1), torch.full_like(found, side, dtype=w.dtype))
    h = torch.where(found, h.gather(1, first).squeeze(1), torch.full_like(found, side, dtype=h.dtype))
    top = torch.floor(torch.rand(n, generator=generator, device=device) * (side - h + 1))
    left = torch.floor(torch.rand(n, generator=generator, device=device) * (side - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, mirror: torch.Tensor | None, out: int) -> torch.Tensor:
    """Each image's box (top, left, height, width; pixels of x's side) resized bilinearly to `out` x `out`,
    mirrored where `mirror` (n, 1): one affine grid and one grid sample for the batch, no host synchronization.
    A box of the whole image at `out` equal to the side returns the image unchanged."""
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"crop_resize expects square (N, C, S, S) images, got shape {tuple(x.shape)}")
    n, c, side = x.shape[0], x.shape[1], x.shape[-1]
    top, left, h, w = boxes.to(x.dtype).unbind(dim=1)
    sx, sy = w / side, h / side
    if mirror is not None:
        sx = torch.where(mirror.view(-1), -sx, sx)
    tx, ty = (2 * left + w) / side - 1, (2 * top + h) / side - 1
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, tx], dim=1), torch.stack([zero, sy, ty], dim=1)], dim=1)
    grid = F.affine_grid(theta, [n, c, out, out], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
