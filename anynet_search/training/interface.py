"""What the trainer takes, gives and fails with: `TrainConfig` in, `TrainResult` out, `TrialFailure` when a
trial fails in a way the sweep records instead of crashing on. Torch-free, so study settings and results are
read without importing the trainer; every trainer (`train.train`, or another engine) keeps to these types.

Defaults (`TrainConfig()`) were chosen on the `digits` set at 16x16 px with a small CNN and AnyNet models
of 90K-2M parameters: 8 epochs, batch 64, peak lr 0.3 (used as given, not scaled with the batch size),
half a warmup epoch, random crop with `resolution // 8` px zero padding, label smoothing 0.1, Nesterov
momentum 0.9, weight decay 5e-4 on conv/linear weights only.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from anynet_search.errors import InputError

__all__ = ["AUGMENT_PROTOCOLS", "DivergedError", "OutOfMemoryError", "TrainConfig", "TrainResult", "TrialFailure"]

#: Training augmentation protocols (`training.inputs`): `auto` resolves per data set when a study is made.
AUGMENT_PROTOCOLS = ("auto", "shift", "imagenet")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one short training run; recorded with every trial via `to_dict`.

    The defaults are chosen for the default study (`anynet_xa_tiny` on `digits` at 16 px, 0.3-1.5 MF).

    - `lr` is the peak learning rate, used as given (no automatic batch-size scaling); when you change
      `batch_size`, scale `lr` linearly yourself.
    - `warmup_epochs` may be fractional; warmup is linear from ~0 to `lr`, then cosine to ~0, per step.
      Warmup is capped at half the run, so very short runs (1-2 epochs) still decay.
    - `augment`: `shift` (CIFAR style: random crop of the zero-padded image, see `crop_pad`), `imagenet`
      (random-resized crop, scale 0.08-1 and ratio 3/4-4/3, resized to the resolution; evaluation on the center
      crop), or `auto`: `imagenet` for a prepared store with the ImageNet margin (images stored larger than the
      resolution), `shift` otherwise. A study stores the protocol `auto` resolved to.
    - `crop_pad`: zero padding of the shift protocol's random crop in pixels; `None` means `resolution // 8`
      (2 px at 16 px, 4 px at 32 px, the CIFAR standard); 0 disables cropping. Horizontal flips follow
      `DataSplits.flip` under both protocols.
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
    augment: str = "auto"
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
        if self.augment not in AUGMENT_PROTOCOLS:
            raise InputError(f"augment must be one of {', '.join(AUGMENT_PROTOCOLS)}, got {self.augment!r}")
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
    # CUDA: peak allocated memory of the device while the run lasted (data set included); in a study worker that
    # keeps several trials in flight it is the worker's peak, shared with the trials beside this one
    peak_memory_mb: float | None = None
    step_mode: str = "eager"  # eager, cuda_graph, compiled, or why a CUDA graph fell back to eager

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

