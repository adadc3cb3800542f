"""Studies: settings and tickets on Optuna storage, fault-tolerant workers, the runner and its progress display,
and worker jobs on a cluster."""

from anynet_search.study.launch import ClusterOptions, launch_study
from anynet_search.study.plan import SAMPLERS, StudySettings, make_sampler
from anynet_search.study.runner import RunOptions, RunOutcome, prepare_study, run_study
from anynet_search.study.storage import open_storage, redact
from anynet_search.study.worker import StudyFailing, Worker, run_worker

__all__ = ["SAMPLERS", "ClusterOptions", "RunOptions", "RunOutcome", "StudyFailing", "StudySettings", "Worker",
           "launch_study", "make_sampler", "open_storage", "prepare_study", "redact", "run_study", "run_worker"]
