"""How one optimization step runs: op by op (`EagerStep`), or captured once in a CUDA graph and replayed
(`GraphedStep`). The trainer (`train.train`) gets one per run from `make_step` and calls it on every batch;
a new step mode is one more `Step` here."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EagerStep", "GraphedStep", "Step", "make_step"]


class Step(Protocol):
    """What the training loop calls on every batch (after setting the learning rate for it)."""

    mode: str  # recorded as the run's `TrainResult.step_mode`

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Train on one batch; returns its loss as a device scalar (no host sync)."""
        ...


def make_step(net: nn.Module, optimizer: torch.optim.Optimizer, use_amp: bool, device_type: str,
              label_smoothing: float, graph_batch_size: int | None = None) -> Step:
    """An `EagerStep`, or a `GraphedStep` capturing the full batches of `graph_batch_size` (CUDA only)."""
    args = (net, optimizer, use_amp, device_type, label_smoothing)
    return EagerStep(*args) if graph_batch_size is None else GraphedStep(*args, batch_size=graph_batch_size)


class EagerStep:
    """One optimization step run op by op: forward, label-smoothed cross entropy, backward, SGD step."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, use_amp: bool, device_type: str,
                 label_smoothing: float) -> None:
        self.net, self.optimizer = net, optimizer
        self.use_amp, self.device_type, self.label_smoothing = use_amp, device_type, label_smoothing
        self.mode = "eager"

    def loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Forward and loss (autocast without its cast cache, which a CUDA graph cannot hold)."""
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.use_amp,
                            cache_enabled=False):
            logits = self.net(xb)
        return F.cross_entropy(logits.float(), yb, label_smoothing=self.label_smoothing)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, set_to_none: bool = True) -> torch.Tensor:
        """Train on one batch; returns the batch's loss (a detached device scalar)."""
        loss = self.loss(xb, yb)
        self.optimizer.zero_grad(set_to_none=set_to_none)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


class GraphedStep(EagerStep):
    """The step of full-size batches captured once in a CUDA graph and replayed; other shapes run eagerly.

    The first `WARMUP_STEPS` full batches train eagerly on a side stream (cuDNN picks its algorithms, the
    momentum buffers appear), then the step is captured and every later full batch only copies its inputs
    into the graph's static tensors and replays it. The learning rate is a device tensor that the fused SGD
    kernel reads, so the caller updates it in place each step. A capture that fails falls back to eager
    steps for the rest of the run and says why in `mode`.
    """

    WARMUP_STEPS = 3

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, use_amp: bool, device_type: str,
                 label_smoothing: float, batch_size: int) -> None:
        super().__init__(net, optimizer, use_amp, device_type, label_smoothing)
        self.batch_size, self.warm = batch_size, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.fell_back = False

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, set_to_none: bool = True) -> torch.Tensor:
        """Train on one batch; returns its loss (for captured steps, the graph's static loss tensor)."""
        if self.fell_back or xb.shape[0] != self.batch_size:
            # after capture the gradients live in the graph's memory: zero them in place, never drop them
            return super().__call__(xb, yb, set_to_none=self.graph is None)
        if self.graph is None and self.warm < self.WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = super().__call__(xb, yb)
            torch.cuda.current_stream().wait_stream(side)
            self.warm += 1
            return loss
        if self.graph is None:
            try:
                self._capture(xb, yb)
            except RuntimeError as exc:
                if isinstance(exc, torch.OutOfMemoryError):
                    raise
                self.graph, self.static, self.fell_back = None, None, True
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.mode = f"eager (CUDA graph capture failed: {first[:200]})"
                return super().__call__(xb, yb)
        else:
            static_x, static_y, _ = self.static  # type: ignore[misc]
            static_x.copy_(xb, non_blocking=True)
            static_y.copy_(yb, non_blocking=True)
        self.graph.replay()  # type: ignore[union-attr]
        return self.static[2]  # type: ignore[index]

    def _capture(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        static_x, static_y = xb.clone(), yb.clone()
        self.optimizer.zero_grad(set_to_none=True)  # backward in the graph allocates the gradients itself
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = self.loss(static_x, static_y)
            loss.backward()
            self.optimizer.step()
        self.graph, self.static, self.mode = graph, (static_x, static_y, loss.detach()), "cuda_graph"

