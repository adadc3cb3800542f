"""Studies: settings and tickets on Optuna storage, fault-tolerant workers, the runner and its progress
display, and worker jobs on a cluster."""

from __future__ import annotations

import importlib
from typing import Any

# imported on first use: reading a study's results needs storage and settings, not the trainer and workers
_LAZY = {"ClusterOptions": "launch", "launch_study": "launch", "SAMPLERS": "settings", "StudySettings": "settings",
         "make_sampler": "settings", "RunOptions": "runner", "RunOutcome": "runner", "prepare_study": "runner",
         "run_study": "runner", "open_storage": "storage", "redact": "storage", "StudyFailing": "worker",
         "Worker": "worker", "run_worker": "worker"}

__all__ = ["SAMPLERS", "ClusterOptions", "RunOptions", "RunOutcome", "StudyFailing", "StudySettings",
           "Worker", "launch_study", "make_sampler", "open_storage", "prepare_study", "redact", "run_study",
           "run_worker"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'anynet_search.study' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"anynet_search.study.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups (and the API reference's, which reads the module's namespace) find it
    return value
