"""Study progress across all workers, read from the storage: counts, best error, ETA."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import optuna
from optuna.trial import TrialState

from anynet_search.study.optuna_adapter import TrialIndex, trial_index
from anynet_search.study.plan import EDF_SAMPLERS, SETTINGS_ATTR


@dataclass(frozen=True)
class Snapshot:
    """Trial counts by state and the best validation error so far."""

    total: int
    completed: int
    failed: int
    running: int
    waiting: int
    pruned: int
    best_error: float | None

    @classmethod
    def of(cls, study: optuna.Study, total: int, index: TrialIndex | None = None) -> Snapshot:
        """Read the counts from a study's storage (aggregate queries on SQL storages, not a listing)."""
        sampler = study.user_attrs.get(SETTINGS_ATTR, {}).get("sampler")
        c = (index or trial_index(study)).counts(infeasible_possible=sampler not in EDF_SAMPLERS)
        s = c.by_state
        return cls(total, c.trained, s[TrialState.FAIL], s[TrialState.RUNNING], s[TrialState.WAITING],
                   s[TrialState.PRUNED], c.best)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def format_line(snap: Snapshot, elapsed: float, done_at_start: int = 0) -> str:
    """One status line: done / total, failures, running, best error, elapsed and ETA."""
    done_now = snap.completed - done_at_start
    remaining = snap.total - snap.completed
    eta = elapsed / done_now * remaining if done_now > 0 else float("nan")
    best = f"{snap.best_error:.2f}%" if snap.best_error is not None else "-"
    return (f"{snap.completed}/{snap.total} done, {snap.failed} failed, {snap.running} running, "
            f"best val error {best}, elapsed {_duration(elapsed)}, ETA {_duration(eta) if remaining else '0m00s'}")


class ProgressView:
    """Live single-line display on a terminal; a plain line every few seconds (and on change) otherwise."""

    def __init__(self, stream: TextIO | None = None, plain_every: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_every = plain_every
        self.start = time.perf_counter()
        self.last_line, self.last_print = "", 0.0
        self.done_at_start: int | None = None

    def update(self, snap: Snapshot, force: bool = False) -> None:
        """Show the snapshot (rate-limited for non-terminals)."""
        if self.done_at_start is None:
            self.done_at_start = snap.completed
        line = format_line(snap, time.perf_counter() - self.start, self.done_at_start)
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self.last_line = line
            return
        now = time.perf_counter()
        counts_changed = line.split(", elapsed")[0] != self.last_line.split(", elapsed")[0]
        if force or (counts_changed and now - self.last_print >= 1.0) or now - self.last_print >= self.plain_every:
            print(line, file=self.stream, flush=True)
            self.last_line, self.last_print = line, now

    def note(self, text: str) -> None:
        """A message that stays above the live line (e.g. a config that killed its worker)."""
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n" + self.last_line)
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """End the live line."""
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()
