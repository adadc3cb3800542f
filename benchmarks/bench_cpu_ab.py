"""CPU A/B of two installs: the default study (2 workers x 1 thread, anynet_xa_tiny on digits, default
TrainConfig) run with the interpreter of install A and of install B in alternating rounds, so both see the same
machine load. Each is a virtual environment with its own anynet-search (an editable install's import finder
takes precedence over PYTHONPATH, in spawned workers too, so trees are compared through their own venvs).

Each round runs `run_study` in a fresh process of that interpreter, then reads every completed trial's `train_seconds` from the study's journal. Reported per tree and round:
wall seconds of the whole study and the summed training seconds; then the B / A ratio of each pair of rounds
(A and B of one round ran back to back) and the median of those ratios. The configs and seeds are the same in
both trees (the ticket stream depends on the space and seed only), so a ratio compares the code, not the models.

    git worktree add /tmp/old-main main && python3 -m venv /tmp/venv-old
    /tmp/venv-old/bin/pip install torch==2.13.0 /tmp/old-main
    python benchmarks/bench_cpu_ab.py --a /tmp/venv-old/bin/python --b .venv/bin/python --rounds 3 --trials 16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import optuna
import anynet_search
from anynet_search.study.runner import RunOptions, run_study
trials, out = int(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
outcome = run_study(RunOptions(space="anynet_xa_tiny", trials=trials, workers=2, devices="cpu", dataset="digits",
                               out=out, study="ab"))
wall = time.perf_counter() - start
journal = f"{out}/ab/journal.log"
from optuna.storages.journal import JournalFileBackend, JournalStorage
study = optuna.load_study(study_name="ab", storage=JournalStorage(JournalFileBackend(journal)))
done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
train = sum(t.user_attrs["result"]["train_seconds"] for t in done)
errors = sorted(t.value for t in done)
print(json.dumps({"file": anynet_search.__file__, "wall": wall, "train": train, "n": len(done),
                  "median_error": errors[len(errors) // 2]}))
"""


def run_install(python: Path, trials: int) -> dict:
    """One study with the anynet-search that `python` imports, in a fresh process outside the checkout (so the
    working directory does not shadow an installed package); its measurements."""
    with tempfile.TemporaryDirectory(prefix="anynet-ab-") as out:
        done = subprocess.run([str(python), "-c", CHILD, str(trials), out], capture_output=True, text=True,
                              check=False, cwd=out, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if done.returncode != 0:
        raise SystemExit(f"{python}: the study failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Alternate the two trees for --rounds rounds and print the table and the ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", type=Path, required=True, help="interpreter of install A (the baseline)")
    p.add_argument("--b", type=Path, required=True, help="interpreter of install B")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--trials", type=int, default=16)
    args = p.parse_args(argv)
    # the studies run in a temporary folder; absolute, not resolved: a venv's python is a link out of the venv
    args.a, args.b = args.a.absolute(), args.b.absolute()
    rows = []
    for k in range(args.rounds):
        order = [("A", args.a), ("B", args.b)] if k % 2 == 0 else [("B", args.b), ("A", args.a)]
        got = {}
        for label, python in order:
            load = os.getloadavg()[0]
            started = time.strftime("%H:%M:%S")
            got[label] = {**run_install(python, args.trials), "load": load, "started": started}
            r = got[label]
            print(f"round {k + 1} {label} ({r['file']}): wall {r['wall']:.1f} s, train {r['train']:.1f} s, {r['n']} models, "
                  f"median error {r['median_error']:.2f}%, load {load:.2f} at {started}", flush=True)
        rows.append(got)
    wall = [r["B"]["wall"] / r["A"]["wall"] for r in rows]
    train = [r["B"]["train"] / r["A"]["train"] for r in rows]
    print(f"B / A wall per round: {', '.join(f'{x:.3f}' for x in wall)}; median {statistics.median(wall):.3f}")
    print(f"B / A train per round: {', '.join(f'{x:.3f}' for x in train)}; median {statistics.median(train):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
