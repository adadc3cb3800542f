"""Study progress across all workers, read from the storage: counts, best error, ETA."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import optuna
from optuna.trial import TrialState

from anynet_search.study.optuna_adapter import TrialIndex, trial_index
from anynet_search.study.settings import EDF_SAMPLERS, SETTINGS_ATTR


@dataclass(frozen=True)
class Snapshot:
    """Trial counts by state and the best validation error so far. `failed` counts failed configs; `interrupted`
    the trials stopped mid-training whose configs went back to the queue (Ctrl-C, a killed worker)."""

    total: int
    completed: int
    failed: int
    running: int
    waiting: int
    pruned: int
    best_error: float | None
    interrupted: int = 0

    @classmethod
    def of(cls, study: optuna.Study, total: int, index: TrialIndex | None = None) -> Snapshot:
        """Read the counts from a study's storage (aggregate queries on SQL storages, not a listing)."""
        sampler = study.user_attrs.get(SETTINGS_ATTR, {}).get("sampler")
        c = (index or trial_index(study)).counts(infeasible_possible=sampler not in EDF_SAMPLERS)
        s = c.by_state
        return cls(total, c.trained, s[TrialState.FAIL] - c.requeued, s[TrialState.RUNNING], s[TrialState.WAITING],
                   s[TrialState.PRUNED], c.best, c.requeued)

    def counts_text(self) -> str:
        """'0 failed' or '1 failed, 2 interrupted (re-queued)'."""
        return f"{self.failed} failed" + (f", {self.interrupted} interrupted (re-queued)" if self.interrupted else "")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class EtaEstimate:
    """Time left from the trial-time spent so far, not from the time since the start.

    Every update adds running x dt trial-seconds of work. A trial takes about T = work / (done + running / 2)
    (the running ones are half done on average), and with `running` trials at a time the rest takes
    (remaining - running / 2) x T / running. Dividing the elapsed time by the trials done instead counts the
    start-up and ignores that several trials run at once: after the first of 64 trials on 2 workers that said
    28 minutes for a run of 8.
    """

    def __init__(self) -> None:
        self.work = 0.0
        self.last: float | None = None
        self.concurrency = 0

    def update(self, snap: Snapshot, now: float, done_since_start: int) -> float:
        """Seconds left (NaN until a trial has ended), after adding the work done since the last update."""
        if self.last is not None:
            self.work += snap.running * max(0.0, now - self.last)
        self.last = now
        self.concurrency = snap.running or self.concurrency
        remaining = snap.total - snap.completed
        if remaining <= 0:
            return 0.0
        if done_since_start <= 0 or self.work <= 0 or not self.concurrency:
            return float("nan")
        per_trial = self.work / (done_since_start + snap.running / 2)
        return max(0.0, remaining - snap.running / 2) * per_trial / self.concurrency


def format_line(snap: Snapshot, elapsed: float, eta: float) -> str:
    """One status line: done / total, failures, running, best error, elapsed and ETA."""
    return f"{snap.completed}/{snap.total} done, {_details(snap, elapsed, eta)}"


def _details(snap: Snapshot, elapsed: float, eta: float) -> str:
    best = f"{snap.best_error:.2f}%" if snap.best_error is not None else "-"
    left = "0m00s" if snap.completed >= snap.total else _duration(eta)
    return (f"{snap.counts_text()}, {snap.running} running, best val error {best}, elapsed {_duration(elapsed)}, "
            f"ETA {left}")


def has_width(stream: TextIO) -> bool:
    """Whether a stream is a terminal with a width: a bar on a terminal of no width (some CI logs, `script`)
    shows nothing at all."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


class ProgressView:
    """A live tqdm bar on a terminal; otherwise a plain line on every change of the counts (a completed trial),
    at most one a second, and one every `plain_every` seconds."""

    def __init__(self, stream: TextIO | None = None, plain_every: float = 10.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.stream = stream or sys.stderr
        self.tty = has_width(self.stream)
        self.plain_every = plain_every
        self.clock = clock
        self.start = clock()
        self.last_line, self.last_print = "", 0.0
        self.done_at_start: int | None = None
        self.eta = EtaEstimate()
        self.bar: Any = None

    def update(self, snap: Snapshot, force: bool = False) -> None:
        """Show the snapshot (rate-limited for non-terminals)."""
        now = self.clock()
        if self.done_at_start is None:
            self.done_at_start = snap.completed
        eta = self.eta.update(snap, now, snap.completed - self.done_at_start)
        elapsed = now - self.start
        line = format_line(snap, elapsed, eta)
        if self.tty:
            self._bar(snap).set_description_str(_details(snap, elapsed, eta), refresh=False)
            self.bar.update(snap.completed - self.bar.n)
            self.last_line = line
            return
        counts_changed = line.split(", elapsed")[0] != self.last_line.split(", elapsed")[0]
        if force or (counts_changed and now - self.last_print >= 1.0) or now - self.last_print >= self.plain_every:
            print(line, file=self.stream, flush=True)
            self.last_line, self.last_print = line, now

    def _bar(self, snap: Snapshot) -> Any:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=snap.total, initial=snap.completed, file=self.stream, dynamic_ncols=True,
                            unit="trial", bar_format="{n_fmt}/{total_fmt} done |{bar:20}| {desc}")
        return self.bar

    def note(self, text: str) -> None:
        """A message that stays above the live line (e.g. a config that killed its worker)."""
        if self.tty and self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """End the live line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
