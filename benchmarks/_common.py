"""Shared helpers for the benchmark scripts: machine description, load check, table printing.

Not a library module: each benchmark script puts this folder on sys.path and imports it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
    """(1, 5, 15)-minute load averages, or NaNs where unavailable."""
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def machine_line() -> str:
    """One line describing the machine, Python, torch and the time of the run."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cuda = f", CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no CUDA device"
    la = load_average()
    return (f"{cores} cores ({cpu_model()}){mem}{cuda}; Python {platform.python_version()}, torch {torch.__version__} "
            f"(default threads {torch.get_num_threads()}); {_dt.datetime.now().isoformat(timespec='seconds')}; "
            f"load average at start {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}")


def warn_if_busy(limit: float = 1.3) -> None:
    """Print a warning when the 1-minute load average says other jobs use the cores (timings unreliable)."""
    la = load_average()[0]
    if la > limit:
        print(f"WARNING: 1-minute load average {la:.2f} > {limit}: other processes use the cores, "
              "timings below are pessimistic", file=sys.stderr, flush=True)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table of dict rows (floats formatted compactly)."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            if abs(v) >= 100:
                return f"{v:,.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(out)


def time_call(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """(median seconds over `repeats` calls, last return value)."""
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def _proc_status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def rss_mib() -> float:
    """Resident set size of this process in MiB (VmRSS)."""
    return _proc_status_mib("VmRSS")


def hwm_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM)."""
    return _proc_status_mib("VmHWM")


def linear_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through (x, y) points; NaNs with fewer than 2 x values."""
    n = len(points)
    mx = sum(x for x, _ in points) / n if n else float("nan")
    my = sum(y for _, y in points) / n if n else float("nan")
    den = sum((x - mx) ** 2 for x, _ in points)
    if not den:
        return float("nan"), float("nan")
    slope = sum((x - mx) * (y - my) for x, y in points) / den
    return slope, my - slope * mx


def process_tree(pid: int) -> list[int]:
    """Every descendant of a process, read from /proc (Linux)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    parents[int(entry.name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def process_cpu_seconds(pid: int, exited_children: bool = False) -> float:
    """User + system CPU seconds of a running process (0 if it is gone); with `exited_children`, plus those of
    its children that have exited and been waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if exited_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")
