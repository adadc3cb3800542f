"""One trial's work: build the sampled network, train it, and record everything needed to rebuild and analyze it.

`run_trial` is a task (a generator, `training.fences`), so a worker can keep several trials in flight on one
device; other objectives (`--objective module:function`) may be plain functions that return the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from functools import lru_cache
from typing import Any

import optuna

from anynet_search.models.complexity import complexity
from anynet_search.models.config import AnyNetConfig
from anynet_search.models.model import build_model
from anynet_search.models.regnet import fit_regnet
from anynet_search.study import bookkeeping
from anynet_search.study.interrupts import shielded
from anynet_search.study.settings import EDF_SAMPLERS, StudySettings
from anynet_search.training.data import DatasetError, DataSplits, load_dataset
from anynet_search.training.fences import Delay, Fence, Pending
from anynet_search.training.interface import TrainResult
from anynet_search.training.memory import ledger_for
from anynet_search.training.placement import place
from anynet_search.training.train import seed_everything, train_task


@lru_cache(maxsize=2)
def _dataset(spec: str, resolution: int, seed: int, device: str) -> DataSplits:
    data = place(load_dataset(spec, resolution, seed=seed), device)  # uploaded once, unless streamed
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)  # uploaded on one trial's stream, read from every stream from now on
    return data


def dataset_for(settings: StudySettings, resolution: int, device: str) -> DataSplits:
    """The study's data set at the space's resolution, loaded once per worker and kept on its device; DatasetError
    when what this worker reads is not the data the study was made with (another copy, or changed since)."""
    data = _dataset(settings.dataset, resolution, settings.seed, device)
    if settings.data_digest and data.digest and data.digest != settings.data_digest:
        raise DatasetError(f"{settings.dataset}: this worker reads data with digest {data.digest[:12]}, the study was "
                           f"made with {settings.data_digest[:12]}: the data set differs here or changed since")
    return data


def config_record(cfg: AnyNetConfig, resolution: int) -> dict[str, Any]:
    """Config fields, complexity and RegNet fit of a config, as recorded on its trial."""
    cx = complexity(cfg, resolution)
    fit = fit_regnet(cfg.block_widths)
    # `built`: the per-stage values of the network trained, beside Optuna's parameters (the sampled values, which
    # the compatibility rule may change), so optuna-dashboard shows both under names that say which
    built = {"d": list(cfg.depths), "w": list(cfg.widths), "b": list(cfg.bottleneck_ratios),
             "g": list(cfg.group_widths)}
    return {"config": cfg.to_dict(), "built": built, "flops": cx.flops, "params": cx.params, "acts": cx.acts,
            "fit_w0": fit.w0, "fit_wa": fit.wa, "fit_wm": fit.wm, "fit_error": fit.fit_error}


def record_result(trial: optuna.Trial, result: TrainResult, wall_seconds: float) -> None:
    """Store a run's outcome on its trial (the `result` user attribute every analysis reads)."""
    with shielded():
        trial.set_user_attr("result", {**result.to_dict(), "wall_seconds": wall_seconds})


def run_trial(trial: optuna.Trial, cfg: AnyNetConfig, settings: StudySettings, resolution: int,
              device: str) -> Generator[Fence | Delay | Pending | None, None, float]:
    """Train `cfg` for the trial as a task (`training.fences`: the worker keeps several in flight) and return its
    validation error (percent); TrialFailure on recorded failures.

    The trial waits until its memory estimate fits beside the trials in flight on its device
    (`memory.DeviceLedger`); a config that cannot fit even alone is a recorded failure, never built.
    """
    data = dataset_for(settings, resolution, device)
    seed = settings.train_seed(int(trial.user_attrs.get("slot", trial.number)))
    yield from bookkeeping.call(lambda: _shielded(trial.set_user_attr, "train_seed", seed))
    edf_study = settings.sampler in EDF_SAMPLERS

    def report_now(epoch: int, val_error: float) -> None:
        _shielded(trial.report, val_error, epoch)
        if not edf_study and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with validation error {val_error:.2f}%")

    def report(epoch: int, val_error: float) -> Pending | None:
        thread = bookkeeping.current()  # on the storage thread; the trainer waits for it only where it must
        if thread is None:
            report_now(epoch, val_error)
            return None
        return thread.submit(lambda: report_now(epoch, val_error))

    train_cfg = settings.train_config()
    ledger = ledger_for(device)
    admitted = yield from ledger.admit(cfg, resolution, train_cfg)
    start = time.perf_counter()
    try:
        seed_everything(seed)  # seeding and building in one step: no other trial draws from the global RNG between
        model = build_model(cfg)
        result = yield from train_task(model, data, train_cfg, device, seed=seed, report=report,
                                       reset_peak=ledger.active == 1)
        del model
    finally:
        ledger.release(admitted)
    wall = time.perf_counter() - start
    yield from bookkeeping.call(lambda: record_result(trial, result, wall_seconds=wall))
    return result.val_error


def _shielded(fn: Callable[..., Any], *args: Any) -> Any:
    with shielded():
        return fn(*args)
