"""One trial's work: build the sampled network, train it, and record everything needed to rebuild and analyze it."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import optuna
import torch

from anynet_search.models.complexity import complexity
from anynet_search.models.config import AnyNetConfig
from anynet_search.models.model import build_model
from anynet_search.models.regnet import fit_regnet
from anynet_search.study.interrupts import shielded
from anynet_search.study.plan import EDF_SAMPLERS, StudySettings
from anynet_search.training.data import DataSplits, load_dataset
from anynet_search.training.memory import check_fits
from anynet_search.training.train import TrainResult, seed_everything, train


@lru_cache(maxsize=2)
def _dataset(spec: str, resolution: int, seed: int, device: str) -> DataSplits:
    return load_dataset(spec, resolution, seed=seed).to(device)


def dataset_for(settings: StudySettings, resolution: int, device: str) -> DataSplits:
    """The study's data set at the space's resolution, loaded once per worker and kept on its device."""
    return _dataset(settings.dataset, resolution, settings.seed, device)


def config_record(cfg: AnyNetConfig, resolution: int) -> dict[str, Any]:
    """Config fields, complexity and RegNet fit of a config, as recorded on its trial."""
    cx = complexity(cfg, resolution)
    fit = fit_regnet(cfg.block_widths)
    return {"config": cfg.to_dict(), "flops": cx.flops, "params": cx.params, "acts": cx.acts,
            "fit_w0": fit.w0, "fit_wa": fit.wa, "fit_wm": fit.wm, "fit_error": fit.fit_error}


def record_result(trial: optuna.Trial, result: TrainResult, wall_seconds: float) -> None:
    """Store a run's outcome on its trial (the `result` user attribute every analysis reads)."""
    with shielded():
        trial.set_user_attr("result", {**result.to_dict(), "wall_seconds": wall_seconds})


def run_trial(trial: optuna.Trial, cfg: AnyNetConfig, settings: StudySettings, resolution: int, device: str) -> float:
    """Train `cfg` for the trial and return its validation error (percent); TrialFailure on recorded failures."""
    data = dataset_for(settings, resolution, device)
    seed = settings.seed + int(trial.user_attrs.get("slot", trial.number))
    with shielded():
        trial.set_user_attr("train_seed", seed)
    edf_study = settings.sampler in EDF_SAMPLERS

    def report(epoch: int, val_error: float) -> None:
        with shielded():
            trial.report(val_error, epoch)
        if not edf_study and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with validation error {val_error:.2f}%")

    train_cfg = settings.train_config()
    check_fits(cfg, resolution, train_cfg, device)  # an absurd config is a recorded failure, never built
    seed_everything(seed)
    model = build_model(cfg)
    start = time.perf_counter()
    result = train(model, data, train_cfg, device=device, seed=seed, report=report)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    record_result(trial, result, wall_seconds=time.perf_counter() - start)
    return result.val_error
