"""A stand-in objective that trains nothing: a deterministic pseudo-error from the config (plumbing checks, tests).

Select it with `anynet-search run --objective anynet_search.study.dry_run:pseudo_error`. The error falls
with log flops and rises when widths decrease across stages, so analyses have something to find; its noise
depends on the config and on the study's `repeat` (a retrain under other training seeds draws other noise).
`ANYNET_DRY_SLEEP` (seconds) makes each trial take that long, to exercise workers and fault tolerance.
`ANYNET_DRY_KILL=SLOT[:SIGNAL]` makes the first config of that slot kill its own worker process (SIGKILL by
default, e.g. `3:SIGSEGV`), like a config that crashes the process, each time it is tried.
"""

from __future__ import annotations

import math
import os
import signal
import time
import zlib

import numpy as np
import optuna

from anynet_search.models.complexity import complexity
from anynet_search.models.config import AnyNetConfig
from anynet_search.study.objective import record_result
from anynet_search.study.settings import StudySettings
from anynet_search.training.interface import TrainResult


def pseudo_error(trial: optuna.Trial, cfg: AnyNetConfig, settings: StudySettings, resolution: int,
                 device: str) -> float:
    """Deterministic error in percent for a config (plus seeded noise); sleeps ANYNET_DRY_SLEEP seconds."""
    kill = os.environ.get("ANYNET_DRY_KILL")
    if kill:
        slot, _, sig = kill.partition(":")
        if trial.user_attrs.get("slot") == int(slot) and trial.user_attrs.get("attempt") == 0:
            os.kill(os.getpid(), getattr(signal, sig or "SIGKILL"))
    delay = float(os.environ.get("ANYNET_DRY_SLEEP", "0"))
    end = time.time() + delay
    while time.time() < end:  # sleep in slices so SIGINT / SIGKILL land mid-trial like in training
        time.sleep(min(0.05, max(0.0, end - time.time())))
    flops = complexity(cfg, resolution).flops
    decreasing = sum(b < a for a, b in zip(cfg.widths, cfg.widths[1:]))
    key = repr(cfg.to_dict()) + (f":repeat {settings.repeat}" if settings.repeat else "")
    noise = np.random.default_rng(zlib.crc32(key.encode())).normal(0, 0.5)
    error = 30 - 3 * math.log10(max(flops, 1)) + 1.5 * decreasing + noise
    result = TrainResult(val_error=error, test_error=error + 0.5, train_seconds=delay, eval_seconds=0.0, epochs=0,
                         history=(), final_train_loss=0.0)
    record_result(trial, result, wall_seconds=delay)
    return float(error)
