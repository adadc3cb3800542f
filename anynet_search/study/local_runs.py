"""The `anynet-search run`s working on this machine: each records how many torch threads its workers use, so
that a run started beside others sizes its workers by the cores they leave (two runs of one study at once,
each giving its workers every core, took 100 s where one alone took 18 s in the probe of issue 20).

A record is a file `<pid>.json` in `runs_dir()` (ANYNET_SEARCH_RUNS_DIR, by default a folder of this user in
the temporary directory), written when a run starts its workers and removed when it ends. A record whose
process is gone (a killed run) is ignored and removed by the next reader. Two runs started in the same instant
do not see each other: this spreads the machine between runs, it does not lock it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from anynet_search.study.reaper import pid_alive

RUNS_ENV = "ANYNET_SEARCH_RUNS_DIR"
log = logging.getLogger("anynet_search")


@dataclass(frozen=True)
class LocalRun:
    """A running `anynet-search run` of this machine: its process, study, workers and their threads."""

    pid: int
    study: str
    workers: int
    threads: int
    started: str | None = None  # the process's start time (/proc/PID/stat): a reused pid is not this run


def runs_dir() -> Path:
    """The folder of the records (ANYNET_SEARCH_RUNS_DIR, else <tmp>/anynet-search-<uid>/runs)."""
    configured = os.environ.get(RUNS_ENV)
    if configured:
        return Path(configured)
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"anynet-search-{user}" / "runs"


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, Linux), to tell a reused pid apart; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _live(run: LocalRun) -> bool:
    return pid_alive(run.pid) and (run.started is None or process_start(run.pid) in (None, run.started))


def other_runs(folder: Path | None = None) -> list[LocalRun]:
    """The live runs of this machine other than this process (records of dead ones are removed)."""
    folder = folder or runs_dir()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            run = LocalRun(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):  # being written, or not ours: skip it
            continue
        if run.pid == os.getpid():
            continue
        if _live(run):
            found.append(run)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def describe(runs: Sequence[LocalRun]) -> str:
    """'another anynet-search run (pid 12, study S, 2 worker(s))', or 'N other anynet-search runs (...)'."""
    if len(runs) == 1:
        r = runs[0]
        return f"another anynet-search run (pid {r.pid}, study {r.study}, {r.workers} worker(s))"
    return f"{len(runs)} other anynet-search runs (pids {', '.join(str(r.pid) for r in runs)})"


@contextlib.contextmanager
def registered(study: str, workers: int, threads: int, folder: Path | None = None) -> Iterator[Path | None]:
    """Record this run while its workers work (the record's path; None when the folder cannot be written: the
    run goes on, unseen by others, with a warning)."""
    folder = folder or runs_dir()
    path = folder / f"{os.getpid()}.json"
    record = LocalRun(os.getpid(), study, workers, threads, process_start(os.getpid()))
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = folder / f".{os.getpid()}.json.tmp"
        partial.write_text(json.dumps(asdict(record)), encoding="utf-8")
        partial.replace(path)  # readers never see half a record
    except OSError as exc:
        log.warning("cannot record this run in %s (%s): runs started beside it will not count its workers",
                    folder, exc.strerror or exc)
        yield None
        return
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
