"""Short-schedule trainer for sampled networks: device-resident data, SGD + cosine, cheap failure detection.

One call of `train` is one trial's training: the whole data set lives on the device, every epoch draws a
seeded permutation there and slices it into batches, augmentation runs batched through `augment_batch`
with a seeded device generator, and the only host syncs are one every `DIVERGENCE_CHECK_EVERY` steps (the
finite-loss check) and the per-epoch evaluation. Failures that a sweep records instead of crashing on are
`TrialFailure`s: `DivergedError` (non-finite loss or outputs) and `OutOfMemoryError` (CUDA OOM, memory
released before raising). `optuna.TrialPruned` raised by the `report` callback propagates untouched.

The types it takes and gives (`TrainConfig`, `TrainResult`, the failures, with the defaults' rationale) live
in `interface` and the step of each batch (eager, or a replayed CUDA graph) in `steps`; this module is the
loop around them and exports the types too, so `from anynet_search.training.train import TrainConfig,
train` is the whole trainer.

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from anynet_search.training.augment import augment_batch
from anynet_search.training.interface import (
    DivergedError,
    OutOfMemoryError,
    TrainConfig,
    TrainResult,
    TrialFailure,
)
from anynet_search.training.steps import make_step

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
]

DIVERGENCE_CHECK_EVERY = 10
"""Steps between two finite-loss checks (each is one host sync); also checked at every epoch end."""


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


def plan_batches(num_samples: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of an epoch; drops a last batch under half a batch (or of 1)."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (BatchNorm), got {batch_size}")
    if num_samples < 2:
        raise ValueError(f"need at least 2 training samples, got {num_samples}")
    full, rest = divmod(num_samples, batch_size)
    bounds = [(i * batch_size, (i + 1) * batch_size) for i in range(full)]
    if rest >= 2 and (rest * 2 >= batch_size or full == 0):
        bounds.append((full * batch_size, num_samples))
    return bounds


def _nonfinite_kind(value: torch.Tensor | float) -> str:
    v = float(value)
    return "nan" if math.isnan(v) else "inf"


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> float:
    """Top-1 error in percent of `model` on (x, y) in eval mode; NaN if any output is non-finite.

    Batches are moved to `device` (default: x's device); `amp` enables bf16 autocast on CUDA only. One
    host sync at the end. The model's train/eval mode is restored afterwards.
    """
    n = int(x.shape[0])
    if n == 0 or int(y.shape[0]) != n:
        raise ValueError(f"need matching non-empty x and y, got {tuple(x.shape)} and {tuple(y.shape)}")
    dev = torch.device(device) if device is not None else x.device
    use_amp = amp and dev.type == "cuda"
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            wrong = torch.zeros((), dtype=torch.int64, device=dev)
            finite = torch.ones((), dtype=torch.bool, device=dev)
            for start in range(0, n, batch_size):
                xb = x[start : start + batch_size].to(dev, non_blocking=True)
                yb = y[start : start + batch_size].to(dev, non_blocking=True)
                logits = model(xb)
                finite &= torch.isfinite(logits).all()
                wrong += (logits.argmax(dim=1) != yb).sum()
            ok, wrong_count = bool(finite.item()), int(wrong.item())
    finally:
        model.train(was_training)
    return 100.0 * wrong_count / n if ok else float("nan")


# ----------------------------------------------------------------------------------------------- train


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


def _release_device_memory(model: nn.Module, device: torch.device) -> None:
    """Move the model back to the CPU and return cached device memory to the driver."""
    try:
        model.to("cpu")
    except RuntimeError:  # pragma: no cover - a broken CUDA context; nothing more to free
        pass
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def train(
    model: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
    seed: int = 0,
    report: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train `model` on `data.train_*` per `cfg`, validating each epoch; errors in percent.

    The caller seeds and builds the model (see `seed_everything`); `seed` drives the epoch permutations
    and the augmentation, so the same initial weights, seed and device give a bitwise-identical result
    on CPU. After each epoch `report(epoch, val_error)` is called with epoch = 1..cfg.epochs (for Optuna
    pass `lambda e, v: trial.report(v, e)`: its argument order is the reverse); whatever it raises (e.g.
    `optuna.TrialPruned`) propagates. Raises `DivergedError` on a non-finite loss (detected
    within `DIVERGENCE_CHECK_EVERY` steps) or non-finite outputs, and `OutOfMemoryError` on device OOM
    after moving the model back to the CPU and emptying the CUDA cache. On success the model stays on
    `device` in eval mode.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    progress = _Progress()
    try:
        return _train(model, data, cfg, dev, seed, report, progress)
    except torch.OutOfMemoryError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), "out of memory")
        reason = f"out of memory at batch size {cfg.batch_size} ({progress.where()}) on {dev}: {detail}"
    # Outside the except block the traceback (and the training frame's tensors) is gone; now free memory.
    _release_device_memory(model, dev)
    raise OutOfMemoryError(reason)



def _train(
    model: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    dev: torch.device,
    seed: int,
    report: Callable[[int, float], None] | None,
    progress: _Progress,
) -> TrainResult:
    on_cuda = dev.type == "cuda"
    use_amp = cfg.amp and on_cuda and torch.cuda.is_bf16_supported()
    use_graphs = cfg.cuda_graphs and on_cuda
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if on_cuda:
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.cuda.reset_peak_memory_stats(dev)

    model.to(device=dev, memory_format=memory_format)
    splits = data.to(dev)
    train_x, train_y = splits.train_x, splits.train_y
    val_x = splits.val_x.contiguous(memory_format=memory_format)
    test_x = splits.test_x.contiguous(memory_format=memory_format)
    net: nn.Module = torch.compile(model) if cfg.compile else model  # type: ignore[assignment]

    # A CUDA graph replays the SGD kernel with the arguments it was captured with: there the learning rate
    # is a device tensor updated in place, read by the fused kernel.
    lr_tensor = torch.tensor(cfg.lr, dtype=torch.float32, device=dev) if use_graphs else None
    optimizer = torch.optim.SGD(
        param_groups(model, cfg.weight_decay),
        lr=lr_tensor if lr_tensor is not None else cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        # One fused kernel per step on CUDA; the multi-tensor path elsewhere (~2x faster than the loop on
        # CPU).
        fused=True if on_cuda else None,
        foreach=None if on_cuda else True,
    )
    n_train = int(train_x.shape[0])
    batches = plan_batches(n_train, cfg.batch_size)
    steps_per_epoch = len(batches)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(total_steps // 2, round(cfg.warmup_epochs * steps_per_epoch))
    pad = cfg.resolved_crop_pad(splits.resolution)
    flip = bool(splits.flip)
    augment = pad > 0 or flip
    generator = make_generator(seed, dev)
    train_step = make_step(net, optimizer, use_amp, dev.type, cfg.label_smoothing,
                           graph_batch_size=cfg.batch_size if use_graphs else None)
    if cfg.compile:
        train_step.mode = "compiled"

    history: list[float] = []
    train_seconds = eval_seconds = 0.0
    final_train_loss = float("nan")
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        progress.stage, progress.epoch = "train", epoch
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        perm = torch.randperm(n_train, generator=generator, device=dev)
        for i, (start, stop) in enumerate(batches, start=1):
            progress.step = i
            idx = perm[start:stop]
            xb = train_x.index_select(0, idx)
            yb = train_y.index_select(0, idx)
            if augment:
                xb = augment_batch(xb, pad, flip, generator=generator)
            if memory_format is torch.channels_last:
                xb = xb.contiguous(memory_format=memory_format)
            lr = lr_at(step, total_steps, warmup_steps, cfg.lr)
            if lr_tensor is not None:
                lr_tensor.fill_(lr)
            else:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            loss_sum += train_step(xb, yb)
            step += 1
            if i % DIVERGENCE_CHECK_EVERY == 0 and not bool(torch.isfinite(loss_sum)):
                raise DivergedError(f"loss became {_nonfinite_kind(loss_sum)} at epoch {epoch} step {i}")
        mean_loss = float((loss_sum / steps_per_epoch).item())  # also the epoch's device sync
        if not math.isfinite(mean_loss):
            raise DivergedError(
                f"loss became {_nonfinite_kind(mean_loss)} at epoch {epoch} step {steps_per_epoch}"
            )
        final_train_loss = mean_loss
        t1 = time.perf_counter()
        train_seconds += t1 - t0

        progress.stage = "validation"
        val_error = evaluate(net, val_x, splits.val_y, cfg.eval_batch_size, dev, use_amp)
        eval_seconds += time.perf_counter() - t1
        if not math.isfinite(val_error):
            raise DivergedError(f"model outputs became nan/inf on the validation set after epoch {epoch}")
        history.append(val_error)
        if report is not None:
            progress.stage = "report"
            report(epoch, val_error)

    progress.stage = "test"
    t2 = time.perf_counter()
    test_error = evaluate(net, test_x, splits.test_y, cfg.eval_batch_size, dev, use_amp)
    eval_seconds += time.perf_counter() - t2
    if not math.isfinite(test_error):
        raise DivergedError("model outputs became nan/inf on the test set after training")
    model.eval()
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if on_cuda else None
    return TrainResult(
        val_error=history[-1],
        test_error=test_error,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        epochs=cfg.epochs,
        history=tuple(history),
        final_train_loss=final_train_loss,
        peak_memory_mb=peak,
        step_mode=train_step.mode,
    )
