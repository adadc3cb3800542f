"""Trainer settings, results and recorded failures, and the small pure helpers of the training recipe.

The training loop itself is `anynet_search.training.trainer` (`train`, `train_task`, `evaluate`); those
names stay importable from here. Failures that a sweep records instead of crashing on are
`TrialFailure`s: `DivergedError` (non-finite loss or outputs) and `OutOfMemoryError` (CUDA OOM, memory
released before raising).

Defaults (`TrainConfig()`) were chosen on the `digits` set at 16x16 px with a small CNN and AnyNet models
of 90K-2M parameters: 8 epochs, batch 64, peak lr 0.3 (used as given, not scaled with the batch size),
half a warmup epoch, random crop with `resolution // 8` px zero padding, label smoothing 0.1, Nesterov
momentum 0.9, weight decay 5e-4 on conv/linear weights only.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from anynet_search.errors import InputError

__all__ = [
    "DivergedError",
    "OutOfMemoryError",
    "TrainConfig",
    "TrainResult",
    "TrialFailure",
    "lr_at",
    "make_generator",
    "param_groups",
    "seed_everything",
]

# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one short training run; recorded with every trial via `to_dict`.

    The defaults are chosen for the default study (`anynet_xa_tiny` on `digits` at 16 px, 0.3-1.5 MF).

    - `lr` is the peak learning rate, used as given (no automatic batch-size scaling); when you change
      `batch_size`, scale `lr` linearly yourself.
    - `warmup_epochs` may be fractional; warmup is linear from ~0 to `lr`, then cosine to ~0, per step.
      Warmup is capped at half the run, so very short runs (1-2 epochs) still decay.
    - `crop_pad`: zero padding of the random crop in pixels; `None` means `resolution // 8` (2 px at 16 px,
      4 px at 32 px, the CIFAR standard); 0 disables cropping. Horizontal flips follow `DataSplits.flip`.
    - `amp` (bf16 autocast) only takes effect on CUDA; CPU always trains in fp32.
    - `channels_last` (model and inputs in NHWC) applies on every device (faster on CPU too).
    - `cuda_graphs` (CUDA only; on by default) captures the whole training step (batch gather, augmentation,
      forward, loss, backward, SGD step with the learning rate read from the device) in one CUDA graph after
      a few eager warm-up steps, and the evaluation pass in another, and replays them: the same math without
      the per-kernel launch cost that dominates small models, and no host synchronization inside an
      epoch. A capture that fails falls back to eager steps for that trial (its result says why).
    - `cudnn_benchmark` (CUDA only) lets cuDNN time its algorithms for each new convolution shape. Off by
      default: every sampled architecture brings new shapes, so the timing is paid again in every trial
      (measured in benchmarks/RESULTS.md).
    - `compile` wraps the model in `torch.compile` (each sampled architecture compiles anew, so it only
      pays off for long runs); it turns `cuda_graphs` off.
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.5
    crop_pad: int | None = None
    eval_batch_size: int = 1024
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # NHWC model and inputs, all devices
    cuda_graphs: bool = True  # CUDA only
    cudnn_benchmark: bool = False  # CUDA only
    compile: bool = False

    def __post_init__(self) -> None:
        """Reject values that cannot train, naming the bad field (InputError, a ValueError)."""
        for name in ("lr", "momentum", "weight_decay", "label_smoothing", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise InputError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 2:
            raise InputError(f"batch_size must be an integer >= 2 (BatchNorm), got {self.batch_size!r}")
        eval_batch = self.eval_batch_size
        if not isinstance(eval_batch, int) or isinstance(eval_batch, bool) or eval_batch < 1:
            raise InputError(f"eval_batch_size must be a positive integer, got {self.eval_batch_size!r}")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise InputError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.nesterov and self.momentum == 0:
            raise InputError("nesterov requires momentum > 0")
        if not self.weight_decay >= 0:
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise InputError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs!r}")
        if self.crop_pad is not None and (not isinstance(self.crop_pad, int) or self.crop_pad < 0):
            raise InputError(f"crop_pad must be None or an integer >= 0, got {self.crop_pad!r}")
        for name in ("nesterov", "amp", "channels_last", "cuda_graphs", "cudnn_benchmark", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.compile and self.cuda_graphs:  # a compiled model is not captured: compile replaces graphs
            object.__setattr__(self, "cuda_graphs", False)

    def resolved_crop_pad(self, resolution: int) -> int:
        """Crop padding in pixels for images of side `resolution` (`resolution // 8` when unset)."""
        return resolution // 8 if self.crop_pad is None else self.crop_pad

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict copy of every field, for trial records (round-trips via `TrainConfig(**d)`)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one successful run; errors in percent, `val_error` is the last epoch's."""

    val_error: float
    test_error: float
    train_seconds: float
    eval_seconds: float
    epochs: int
    history: tuple[float, ...]
    final_train_loss: float
    peak_memory_mb: float | None = None  # CUDA: peak allocated memory of the run (data set included)
    step_mode: str = "eager"  # eager, cuda_graph, compiled, or why a CUDA graph fell back to eager
    # CUDA: the device's peak while this trial ran is shared with the trials in flight beside it

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict copy (history as a list), for trial records."""
        d = dataclasses.asdict(self)
        d["history"] = list(self.history)
        return d


# ---------------------------------------------------------------------------------------------- failures


class TrialFailure(RuntimeError):
    """A failure that the sweep records as the trial's outcome (with `reason`) instead of crashing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DivergedError(TrialFailure):
    """The training loss (or the model's evaluation output) became NaN or infinite."""


class OutOfMemoryError(TrialFailure):
    """The device ran out of memory; model and optimizer were released from it before raising."""


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


# The trainer lives in training.trainer (which imports this module's config and failures); its names stay
# importable from here.
_TRAINER_NAMES = ("DIVERGENCE_CHECK_EVERY", "evaluate", "plan_batches", "train", "train_task")


def __getattr__(name: str) -> Any:
    if name in _TRAINER_NAMES:
        from anynet_search.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
