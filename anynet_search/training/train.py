"""One trial's training as a task that queues its work and waits only for what the host must read.

`train_task` is a generator (see `training.fences`): it queues each step on the device (one CUDA graph
replay per step once captured, `training.programs`) and yields None after each, so an engine can give
other trials their turn; it yields a `Fence` only where the host needs a value: the finite-loss checks
(every `DIVERGENCE_CHECK_EVERY` steps, read once the device gets there, at most `MAX_AHEAD` checks
behind) and each epoch's validation error. Nothing inside an epoch blocks the host. `train` runs one
such task to its end. On the CPU the same code runs eagerly and every fence is done at once, so the
checks act at the step they are queued and the run is bitwise reproducible.

The types it takes and gives (`TrainConfig`, `TrainResult`, the failures) live in `interface`, the step
and evaluation programs in `programs`; this module is the loop around them and exports the types too, so
`from anynet_search.training.train import TrainConfig, train` is the whole trainer. Failures the sweep
records are `TrialFailure`s: `DivergedError` (non-finite loss or outputs) and
`OutOfMemoryError` (device OOM, memory released before raising). `optuna.TrialPruned` raised by the
`report` callback propagates untouched.

Example (not a doctest: training takes seconds)::

    from anynet_search.training.data import load_dataset
    from anynet_search.models.model import build_model

    data = load_dataset("digits", resolution=16)
    seed_everything(0)
    model = build_model(cfg)  # or any (B, C, H, W) -> (B, classes) module
    result = train(model, data, TrainConfig(), device="cuda" if torch.cuda.is_available() else "cpu")
    result.val_error, result.test_error  # percent
"""

from __future__ import annotations

import gc
import math
import random
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from anynet_search.training import setup_threads
from anynet_search.training.fences import Fence, Pending, drive
from anynet_search.training.interface import (
    DivergedError,
    OutOfMemoryError,
    TrainConfig,
    TrainResult,
    TrialFailure,
)
from anynet_search.training.programs import (
    EvalProgram,
    GraphPolicy,
    StepSettings,
    TrainProgram,
    balanced_batch,
    plan_batches,
)

if TYPE_CHECKING:
    from anynet_search.training.data import DataSplits

__all__ = [
    "DIVERGENCE_CHECK_EVERY",
    "DivergedError",
    "OutOfMemoryError",
    "TrainConfig",
    "TrainResult",
    "TrialFailure",
    "evaluate",
    "lr_at",
    "make_generator",
    "param_groups",
    "plan_batches",
    "seed_everything",
    "train",
    "train_task",
]


# --------------------------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and all CUDA devices) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch.Generator on `device` seeded with `seed` (independent of the global RNG)."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Learning rate of 0-based `step`: linear warmup from ~0 to `peak_lr`, then cosine decay to ~0."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps], got {warmup_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    progress = min(1.0, (step - warmup_steps) / decay_steps) if decay_steps > 0 else 1.0
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: weight decay on params with ndim > 1 (conv/linear weights), none on norm/bias."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not groups:
        raise ValueError("model has no trainable parameters")
    return groups


# ----------------------------------------------------------------------------------------------- train

DIVERGENCE_CHECK_EVERY = 10
"""Steps between two finite-loss checks; also checked at every epoch end."""
MAX_AHEAD = 8
"""Finite-loss checks a task may have queued and not yet read: how far its queued work runs ahead of the host
(80 steps: several seconds of a GPU shared by 8 trials, so the queues outlast a new trial's set-up)."""

Report = Callable[[int, float], "Pending | None"]


@dataclass
class _Progress:
    """Where the run is, for failure messages raised outside the training frame."""

    stage: str = "setup"
    epoch: int = 0
    step: int = 0

    def where(self) -> str:
        if self.stage == "train":
            return f"epoch {self.epoch} step {self.step}"
        return f"{self.stage}, epoch {self.epoch}" if self.epoch else self.stage


class _HostReadout:
    """Page-locked host buffers that device scalars are copied into without a synchronization."""

    def __init__(self, device: torch.device, slots: int) -> None:
        pinned = device.type == "cuda"
        self.device = device
        self.stats = torch.zeros(3, dtype=torch.float64, pin_memory=pinned)
        self.checks = torch.zeros(slots, dtype=torch.float32, pin_memory=pinned)
        self.next = 0

    def checkpoint(self, loss_sum: torch.Tensor, epoch: int, step: int) -> _Check:
        """Queue a copy of the running loss sum; the returned check reads it once its fence is done."""
        slot = self.next
        self.next = (self.next + 1) % int(self.checks.shape[0])
        self.checks[slot].copy_(loss_sum, non_blocking=True)
        return _Check(Fence(self.device), self.checks, slot, epoch, step)

    def read(self, loss_sum: torch.Tensor, evaluator: EvalProgram) -> Fence:
        """Queue a copy of (loss sum, wrong predictions, all outputs finite); read `values()` after the fence."""
        stats = torch.stack([loss_sum.double(), evaluator.wrong.double(), evaluator.finite.double()])
        self.stats.copy_(stats, non_blocking=True)
        return Fence(self.device, timing=True)

    def values(self) -> tuple[float, int, bool]:
        """(loss sum, wrong, finite) of the last `read` (its fence must be done)."""
        loss, wrong, finite = self.stats.tolist()
        return loss, int(wrong), bool(finite)


@dataclass
class _Check:
    fence: Fence
    buffer: torch.Tensor
    slot: int
    epoch: int
    step: int

    def verify(self) -> None:
        value = float(self.buffer[self.slot])
        if not math.isfinite(value):
            raise DivergedError(f"loss became {_kind(value)} at epoch {self.epoch} step {self.step}")


def _kind(value: float) -> str:
    return "nan" if math.isnan(value) else "inf"


def _settle(checks: deque[_Check], keep: int) -> Generator[Fence, None, None]:
    """Verify the checks the device has passed, waiting for the oldest while more than `keep` are queued."""
    while checks and (len(checks) > keep or checks[0].fence.done()):
        if not checks[0].fence.done():
            yield checks[0].fence
        checks.popleft().verify()


def _release_device_memory(model: nn.Module, device: torch.device) -> None:
    """Move the model back to the CPU and return cached device memory to the driver."""
    try:
        model.to("cpu")
    except RuntimeError:  # pragma: no cover - a broken CUDA context; nothing more to free
        pass
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch.device with the CUDA index filled in."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def train_task(model: nn.Module, data: DataSplits, cfg: TrainConfig, device: str | torch.device = "cpu",
               seed: int = 0, report: Report | None = None,
               reset_peak: bool = True) -> Generator[Fence | None, None, TrainResult]:
    """Train `model` on `data.train_*` per `cfg` as a task (see the module docstring); errors in percent.

    Runs on the current CUDA stream (a non-default one when `cfg.cuda_graphs`). The caller seeds and builds
    the model; `seed` drives the epoch draws. After each epoch `report(epoch, val_error)` is called with
    epoch = 1..cfg.epochs; whatever it raises (e.g. `optuna.TrialPruned`) propagates, and a `Pending` it
    returns (the report made on another thread) is waited for and its exception raised here. `reset_peak` resets
    the device's peak-memory counter first (leave it off while other trials share the device).
    """
    dev = resolve_device(device)
    progress = _Progress()
    try:
        return (yield from _train(model, data, cfg, dev, seed, report, progress, reset_peak))
    except torch.OutOfMemoryError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), "out of memory")
        reason = f"out of memory at batch size {cfg.batch_size} ({progress.where()}) on {dev}: {detail}"
    # Outside the except block the traceback (and the training frame's tensors) is gone; now free memory.
    _release_device_memory(model, dev)
    raise OutOfMemoryError(reason)


def train(model: nn.Module, data: DataSplits, cfg: TrainConfig, device: str | torch.device = "cpu", seed: int = 0,
          report: Report | None = None) -> TrainResult:
    """Train `model` per `cfg` and return its result (one `train_task` run to its end, on a stream of its own).

    The same initial weights, seed and device give a bitwise-identical result on the CPU. Raises
    `DivergedError` on a non-finite loss (within `DIVERGENCE_CHECK_EVERY` steps on the CPU) or non-finite
    outputs, and `OutOfMemoryError` on device OOM after moving the model back to the CPU. On success the
    model stays on `device` in eval mode.
    """
    dev = resolve_device(device)
    if dev.type != "cuda":
        return drive(train_task(model, data, cfg, dev, seed, report))
    caller = torch.cuda.current_stream(dev)
    side = torch.cuda.Stream(dev)  # a graph cannot be captured on the default stream
    side.wait_stream(caller)
    try:
        with torch.cuda.stream(side):
            return drive(train_task(model, data, cfg, dev, seed, report))
    finally:
        caller.wait_stream(side)


def _train(model: nn.Module, data: DataSplits, cfg: TrainConfig, dev: torch.device, seed: int,
           report: Report | None, progress: _Progress, reset_peak: bool) -> Generator[Fence | None, None, TrainResult]:
    on_cuda = dev.type == "cuda"
    use_amp = cfg.amp and on_cuda and torch.cuda.is_bf16_supported()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if on_cuda:
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        if reset_peak:
            torch.cuda.reset_peak_memory_stats(dev)
    model.to(device=dev, memory_format=memory_format)
    splits = data.to(dev)
    net: nn.Module = torch.compile(model) if cfg.compile else model  # type: ignore[assignment]

    # On CUDA the learning rate is a device tensor that the fused SGD kernel reads, so a replayed graph
    # follows the schedule; on the CPU the param groups get the step's float.
    lr_tensor = torch.tensor(cfg.lr, dtype=torch.float32, device=dev) if on_cuda else None
    optimizer = torch.optim.SGD(
        param_groups(model, cfg.weight_decay),
        lr=lr_tensor if lr_tensor is not None else cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        # One fused kernel per step on CUDA; the multi-tensor path on the CPU (~2x faster than the loop).
        fused=True if on_cuda else None,
        foreach=None if on_cuda else True,
    )
    n_train = int(splits.train_x.shape[0])
    steps_per_epoch = len(plan_batches(n_train, cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(total_steps // 2, round(cfg.warmup_epochs * steps_per_epoch))
    lrs = [lr_at(step, total_steps, warmup_steps, cfg.lr) for step in range(total_steps)]
    graphs = GraphPolicy() if cfg.cuda_graphs and on_cuda and not cfg.compile else None
    pad = cfg.resolved_crop_pad(splits.resolution)
    settings = StepSettings(cfg.batch_size, pad, bool(splits.flip), use_amp, cfg.label_smoothing, cfg.channels_last)
    offload = setup_threads.current()  # a worker's threads for warm-ups and captures (None: this thread)
    program = TrainProgram(net, optimizer, splits.train_x, splits.train_y, settings, lrs, lr_tensor, graphs,
                           offload)
    n_val, n_test = int(splits.val_x.shape[0]), int(splits.test_x.shape[0])
    eval_batch = max(balanced_batch(n_val, cfg.eval_batch_size), balanced_batch(n_test, cfg.eval_batch_size))
    evaluator = EvalProgram(net, eval_batch, tuple(splits.val_x.shape[1:]), splits.val_x.dtype, dev, use_amp,
                            cfg.channels_last, graphs, offload)
    generator = make_generator(seed, dev)
    host = _HostReadout(dev, MAX_AHEAD + 2)
    checks: deque[_Check] = deque()

    history: list[float] = []
    train_seconds = eval_seconds = 0.0
    final_train_loss = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        progress.stage, progress.epoch = "train", epoch
        model.train()
        begin = Fence(dev, timing=True)
        program.start_epoch(generator)
        for i in range(1, program.n_full + 1):
            progress.step = i
            pending = program.full()
            if pending is not None:  # a warm-up step or the capture, run by a set-up thread
                yield pending
                pending.result()
            if i % DIVERGENCE_CHECK_EVERY == 0:
                checks.append(host.checkpoint(program.loss_sum, epoch, i))
                yield from _settle(checks, MAX_AHEAD)
            yield None
        if program.n_tail:
            progress.step = steps_per_epoch
            pending = program.tail()
            if pending is not None:
                yield pending
                pending.result()
        trained = Fence(dev, timing=True)

        progress.stage = "validation"
        model.eval()
        evaluator.reset()
        yield from evaluator.run(splits.val_x, splits.val_y)
        read = host.read(program.loss_sum, evaluator)
        yield read
        yield from _settle(checks, 0)  # the device is past every check of the epoch
        loss_sum, wrong, finite = host.values()
        train_seconds += trained.seconds_since(begin)
        eval_seconds += read.seconds_since(trained)
        mean_loss = loss_sum / steps_per_epoch
        if not math.isfinite(mean_loss):
            raise DivergedError(f"loss became {_kind(mean_loss)} at epoch {epoch} step {steps_per_epoch}")
        if not finite:
            raise DivergedError(f"model outputs became nan/inf on the validation set after epoch {epoch}")
        final_train_loss = mean_loss
        val_error = 100.0 * wrong / n_val
        history.append(val_error)
        if report is not None:
            progress.stage = "report"
            pending = report(epoch, val_error)
            if pending is not None:  # made on another thread (a study's storage): wait without blocking others
                yield pending
                pending.result()

    progress.stage = "test"
    before_test = Fence(dev, timing=True)
    evaluator.reset()
    yield from evaluator.run(splits.test_x, splits.test_y)
    read = host.read(program.loss_sum, evaluator)
    yield read
    _, wrong, finite = host.values()
    eval_seconds += read.seconds_since(before_test)
    if not finite:
        raise DivergedError("model outputs became nan/inf on the test set after training")
    model.eval()
    if cfg.compile:
        mode = "compiled"
    elif graphs is not None and graphs.failure is not None:
        mode = f"eager (CUDA graph capture failed: {graphs.failure})"
    else:
        mode = "cuda_graph" if program.graphed else "eager"
    return TrainResult(
        val_error=history[-1],
        test_error=100.0 * wrong / n_test,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        epochs=cfg.epochs,
        history=tuple(history),
        final_train_loss=final_train_loss,
        peak_memory_mb=torch.cuda.max_memory_allocated(dev) / 2**20 if on_cuda else None,
        step_mode=mode,
    )


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             device: str | torch.device | None = None, amp: bool = False) -> float:
    """Top-1 error in percent of `model` on (x, y) in eval mode; NaN if any output is non-finite.

    Batches are moved to `device` (default: x's device); `amp` enables bf16 autocast on CUDA only. One
    host sync at the end. The model's train/eval mode is restored afterwards.
    """
    n = int(x.shape[0])
    if n == 0 or int(y.shape[0]) != n:
        raise ValueError(f"need matching non-empty x and y, got {tuple(x.shape)} and {tuple(y.shape)}")
    dev = torch.device(device) if device is not None else x.device
    was_training = model.training
    model.eval()
    try:
        program = EvalProgram(model, batch_size, tuple(x.shape[1:]), x.dtype, dev, amp and dev.type == "cuda",
                              False, None)
        drive(program.run(x, y))
        ok, wrong = bool(program.finite.item()), int(program.wrong.item())
    finally:
        model.train(was_training)
    return 100.0 * wrong / n if ok else float("nan")
