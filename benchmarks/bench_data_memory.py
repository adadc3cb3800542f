"""Anonymous memory of a whole study (the `run` process and its workers, summed) on a data set held in memory
against the same study on a prepared store.

Prepares `synthetic:N` at 32 px into a store once (`anynet-search prepare`), then runs the same 2-worker study
twice through the installed CLI: `--dataset synthetic:N` (every process decodes its own float32 copy) and
`--dataset prepared:STORE` (the workers memory-map the uint8 store). While each runs, it samples every
0.05 s the RssAnon and RssFile of the `run` process and all its descendants (/proc/PID/status; the tree is
found again every 0.5 s) and reports
the peak of their sum and its median over the run. The study is stopped (SIGINT: trials go back to the
queue) once `--trials` trials are done or after `--seconds`. The space is AnyNetX-A tiny at 32 px (written
into the work folder) with the flops band scaled by 4, so an epoch of 48,000 images stays short on a CPU.

    python benchmarks/bench_data_memory.py                 # N = 60,000, 2 workers
    python benchmarks/bench_data_memory.py --images 6000   # quicker
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, table, warn_if_busy  # noqa: E402

SPACE = """description: "AnyNetX A tiny at 32 px (benchmark)"
extends: anynet_xa
resolution: 32
fixed: {stem_type: cifar, stem_width: 16, num_classes: 10, strides: [1, 2, 2, 2]}
parameters:
  d: {low: 1, high: 4, distribution: log_uniform}
  w: {low: 8, high: 128, step: 8, distribution: log_uniform}
  g: {values: [1, 2, 4, 8, 16]}
band:
  flops: [1.2e+6, 6.0e+6]
"""


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def measure(cmd: list[str], cwd: Path, trials: int, seconds: float) -> dict[str, float]:
    """Run `cmd`, sampling the summed RssAnon / RssFile of its process tree, until `trials` are done or `seconds`."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "0"})
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    os.set_blocking(fd, False)
    anon, file_, start, text = [], [], time.monotonic(), ""
    processes, pids = 0, [proc.pid]
    while proc.poll() is None:
        if len(anon) % 10 == 0:  # the process tree every 0.5 s; the (short) data loads every 0.05 s
            pids = _tree(proc.pid)
        processes = max(processes, len(pids))
        anon.append(sum(_status_kib(p, "RssAnon") for p in pids) / 1024)
        file_.append(sum(_status_kib(p, "RssFile") for p in pids) / 1024)
        try:
            text += os.read(fd, 1 << 16).decode(errors="replace")
        except BlockingIOError:
            pass
        if f"{trials}/" in text.replace(" ", "") and "done" in text or time.monotonic() - start > seconds:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    proc.wait(timeout=120)
    return {"peak RssAnon MiB": max(anon), "median RssAnon MiB": statistics.median(anon),
            "peak RssFile MiB": max(file_), "processes": processes, "seconds": time.monotonic() - start}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=60000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--trials", type=int, default=2, help="stop each study once this many trials are done")
    p.add_argument("--seconds", type=float, default=240, help="or after this long")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = p.parse_args(argv)
    cli = str(Path(sys.executable).with_name("anynet-search"))
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-data-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "space32.yaml").write_text(SPACE)
    print("# bench_data_memory")
    print("machine:", machine_line())
    warn_if_busy()
    spec = f"synthetic:{args.images}"
    store = work / f"store-{args.images}"
    t = time.perf_counter()
    subprocess.run([cli, "prepare", spec, "--out", str(store), "--resolution", "32"], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"prepare {spec} at 32 px: {time.perf_counter() - t:.1f} s, store "
          f"{sum(f.stat().st_size for f in store.iterdir()) / 2**20:.0f} MiB")
    rows = []
    for name, dataset in (("in memory", spec), ("prepared store", f"prepared:{store}")):
        cmd = [cli, "run", "--space", str(work / "space32.yaml"), "--dataset", dataset, "--trials", "64",
               "--epochs", "1", "--workers", str(args.workers), "--no-analyze", "--out", str(work / "runs"),
               "--study", f"mem-{name.split()[0]}-{args.images}"]
        rows.append({"data": name, **measure(cmd, work, args.trials, args.seconds)})
    print(table(rows))
    ratio = rows[1]["peak RssAnon MiB"] / rows[0]["peak RssAnon MiB"]
    print(f"store / in memory, peak summed RssAnon: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
