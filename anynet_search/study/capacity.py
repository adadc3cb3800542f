"""How much of the machine a study's local workers take: worker processes, their devices and torch threads, and
the trials each keeps in flight; every count a user gives has a bound.

On a GPU one worker process keeps several trials in flight on CUDA streams (`training.engine`): processes
that share a GPU take turns on it, streams of one process overlap. On the CPU workers split the cores.
Workers never outnumber the trials left, a request above the machine's cores (CPU) or MAX_WORKERS_PER_GPU
per GPU is clamped with one line saying so unless `oversubscribe` is asked for, and trials in flight are
bounded by MAX_IN_FLIGHT.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from anynet_search.errors import InputError
from anynet_search.study.local_runs import LocalRun, describe
from anynet_search.study.supervise import WorkerSpec
from anynet_search.training.engine import MAX_SLOTS
from anynet_search.training.interface import TrainConfig

DEFAULT_CPU_WORKERS = 2
# Trials one GPU worker keeps in flight by default: a bare loop over sampled CIFAR-size networks gained up to 8
# streams of one process and little beyond (benchmarks/RESULTS.md, GPU sections).
GPU_IN_FLIGHT = 8
MAX_IN_FLIGHT = MAX_SLOTS
MAX_WORKERS_PER_GPU = 8  # processes on one GPU take turns on it: more than a few only add memory and contexts


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def unique_devices(spec: str | None, option: str = "--devices") -> list[str]:
    """The devices a spec names, in order: 'cpu', 'cuda' (all GPUs) or a comma list such as 'cuda:0,cuda:1'."""
    n_gpus = _gpu_count()
    if spec is None:
        spec = "cuda" if n_gpus else "cpu"
    names = [d.strip() for d in str(spec).split(",") if d.strip()]
    if not names:
        raise InputError(f"{option} {spec!r}: no device named (use cpu, cuda or cuda:N)")
    resolved: list[str] = []
    for d in names:
        kind, sep, index = d.partition(":")
        if kind == "cpu" and not sep:
            resolved.append("cpu")
            continue
        if kind != "cuda":
            raise InputError(f"{option}: unknown device {d!r} (use cpu, cuda or cuda:N)")
        if sep and not index.isdigit():
            raise InputError(f"{option} {d}: the GPU index must be a non-negative integer (cuda:0, cuda:1, ...)")
        if n_gpus == 0:
            raise InputError(f"{option} {d}: no CUDA device is visible on this machine")
        if not sep:
            resolved += [f"cuda:{i}" for i in range(n_gpus)]
            continue
        if int(index) >= n_gpus:
            raise InputError(f"{option} {d}: not visible (this machine has {n_gpus} GPUs: cuda:0..cuda:{n_gpus - 1})")
        resolved.append(f"cuda:{int(index)}")
    return resolved


def resolve_devices(spec: str | None, workers: int, option: str = "--devices") -> list[str]:
    """Device per worker, round robin over the devices the spec names; InputError if one is unusable."""
    resolved = unique_devices(spec, option)
    return [resolved[i % len(resolved)] for i in range(workers)]


def default_workers(spec: str | None) -> int:
    """Workers when none are asked for: one per GPU named (each keeps several trials in flight), else 2 on the CPU."""
    devices = unique_devices(spec)
    gpus = [d for d in devices if d.startswith("cuda")]
    return len(gpus) if len(gpus) == len(devices) else DEFAULT_CPU_WORKERS


def threads_per_worker(devices: list[str], free_cores: int | None = None) -> list[int]:
    """CPU workers split the free cores (default: all) between them instead of oversubscribing; GPU workers
    take one each."""
    n_cpu = sum(d == "cpu" for d in devices)
    free = cores() if free_cores is None else free_cores
    return [max(1, free // n_cpu) if d == "cpu" else 1 for d in devices]


def default_in_flight(device: str, train: TrainConfig) -> int:
    """Trials in flight when none are asked for: GPU_IN_FLIGHT on a GPU (1 with torch.compile, whose compilation
    would stall the others), 1 on the CPU (a process's trials there take turns on the same cores)."""
    return GPU_IN_FLIGHT if device.startswith("cuda") and not train.compile else 1


def worker_cap(devices: list[str], free_cores: int | None = None) -> int:
    """The most workers this machine takes without oversubscribing: its free cores (default: all), or
    MAX_WORKERS_PER_GPU per GPU."""
    gpus = {d for d in devices if d.startswith("cuda")}
    cpu_cap = (cores() if free_cores is None else free_cores) if "cpu" in devices else 0
    return cpu_cap + MAX_WORKERS_PER_GPU * len(gpus)


@dataclass(frozen=True)
class WorkerPlan:
    """The local workers of a run and the lines that explain a clamp."""

    specs: list[WorkerSpec]
    notes: list[str] = field(default_factory=list)


def plan_workers(spec: str | None, workers: int | None, in_flight: int | None, trials_left: int, train: TrainConfig,
                 oversubscribe: bool = False, others: Sequence[LocalRun] = ()) -> WorkerPlan:
    """The worker processes of a local run: how many, on which devices, their threads and trials in flight.

    `others` are the runs already working on this machine (`local_runs.other_runs`): their workers' threads
    are taken from the cores this run's CPU workers split and are capped by (at least one core is always
    left)."""
    notes: list[str] = []
    asked = workers or default_workers(spec)
    n = asked
    busy = sum(r.threads for r in others)
    free = max(1, cores() - busy)
    cap = worker_cap(resolve_devices(spec, asked), free)
    where = f"its {cores()} cores less the {busy} threads of {describe(others)}" if busy else "its cores"
    where += f", or {MAX_WORKERS_PER_GPU} per GPU"
    left = max(1, trials_left)
    reasons = []
    if n > cap and not oversubscribe:
        reasons.append(f"this machine takes {cap} ({where})")
        n = cap
    if n > left:
        if workers is not None:
            reasons.append(f"only {trials_left} trial(s) left to train")
        n = left
    if reasons:  # --oversubscribe lifts the machine's cap, never the trials left
        more = min(asked, left)
        hint = f" (--oversubscribe starts {more:,})" if not oversubscribe and more > n else ""
        notes.append(f"--workers {asked:,}: {'; '.join(reasons)}; starting {n}{hint}")
    devices = resolve_devices(spec, n)
    threads = threads_per_worker(devices, free)
    if busy and not notes and "cpu" in devices:
        verb = "uses" if len(others) == 1 else "use"
        notes.append(f"{describe(others)} {verb} {busy} of this machine's {cores()} cores: starting {n} "
                     f"worker(s) with {threads[devices.index('cpu')]} thread(s) each")
    specs = []
    for i, device in enumerate(devices):
        k = in_flight or default_in_flight(device, train)
        k = max(1, min(k, math.ceil(left / n)))  # slots a worker could never fill only cost streams and memory
        specs.append(WorkerSpec(device, threads[i], f"w{i}", k))
    return WorkerPlan(specs, notes)
