"""Where a data set lives while a process trains on it: uploaded once to the device, or streamed from the host.

A store that fits (`UPLOAD_SHARE` of the device's memory) is uploaded once per process as uint8 and every trial
in flight reads that one copy. A larger one (ImageNet at 224 px: 252 GB) stays in the host's memory map: each
step's rows are gathered on the host into page-locked buffers (`PinnedGather`) and copied to a device buffer
that the step reads, while the device works through the steps queued before it. Labels and split rows are
small and always go to the device. `ANYNET_STREAM_DATA=1` (or `0`) forces streaming (or uploading), for
measurements.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator

import torch

from anynet_search.training.data.splits import DataSplits
from anynet_search.training.fences import Fence

UPLOAD_SHARE = 0.5  # a store larger than this share of the device's memory is streamed, not uploaded
STREAM_ENV = "ANYNET_STREAM_DATA"


def streams(data: DataSplits, device: torch.device) -> bool:
    """Whether `data`'s images stay on the host while training on `device` (a CUDA store too large to upload)."""
    if device.type != "cuda" or not data.raw:
        return False
    forced = os.environ.get(STREAM_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    total = torch.cuda.get_device_properties(device).total_memory
    return data.train_x.numel() * data.train_x.element_size() > UPLOAD_SHARE * total


def place(data: DataSplits, device: str | torch.device) -> DataSplits:
    """`data` on `device`: every tensor uploaded once, or (`streams`) all but the images. Idempotent."""
    dev = torch.device(device)
    if not streams(data, dev):
        return data.to(dev)
    images = data.train_x
    moved = data.to(dev)  # labels and rows: small
    return dataclasses.replace(moved, train_x=images, val_x=images, test_x=images)


class PinnedGather:
    """Rows of a host tensor copied to a device tensor through a ring of page-locked buffers: the host gathers
    into a free buffer while earlier copies and steps run; a buffer is reused once its copy is done (the task
    waits on its `Fence` instead of blocking the engine)."""

    def __init__(self, source: torch.Tensor, rows: int, device: torch.device, depth: int = 4) -> None:
        pinned = device.type == "cuda"
        shape = (rows, *source.shape[1:])
        self.source, self.device = source, device
        self.buffers = [torch.empty(shape, dtype=source.dtype, pin_memory=pinned) for _ in range(depth)]
        self.copied: list[Fence | None] = [None] * depth
        self.next = 0

    def copy(self, index: torch.Tensor, out: torch.Tensor) -> Generator[Fence, None, None]:
        """Queue `out[:len(index)] = source[index]` on the current stream (a task step: waits for a free buffer)."""
        k = self.next
        self.next = (k + 1) % len(self.buffers)
        fence = self.copied[k]
        if fence is not None and not fence.done():
            yield fence
        n = int(index.numel())
        buffer = self.buffers[k][:n]
        torch.index_select(self.source, 0, index, out=buffer)
        out[:n].copy_(buffer, non_blocking=True)
        self.copied[k] = Fence(self.device)
