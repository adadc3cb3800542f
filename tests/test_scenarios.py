"""The scenario matrix: the installed `anynet-search` CLI, run as a user runs it, over tiny real studies.

Each cell trains a tiny space for 1 epoch with the real trainer (no dry objective) and must end exit 0
with exactly N trained trials and a report; `status`, `analyze`, `derive` and `export` must then succeed
on it, read back through the run folder and through `URL --study NAME`. Every value of every axis is
covered at least twice (see CELLS and test_matrix_covers_every_axis_value_twice), not the full cross
product:

- storage: the default journal, `sqlite:///` (a path relative to the run's working directory, read back
  from another one) and `postgresql://` (ANYNET_TEST_POSTGRES_URL, with a password that must never be
  stored or shown);
- data: digits, synthetic, synthetic:333 (odd sizes), a CIFAR-10 folder and an image folder that the
  test writes itself with odd image counts (so every epoch ends on an odd partial batch);
- workers 1 (2 threads on 2 cores) and 2 (1 thread each); samplers random, qmc and tpe;
- `run --space <file written by derive>` closes the loop.

`.ci/run` runs this module (with PostgreSQL) and also installs the wheel into a clean venv (the
non-editable install axis). Set ANYNET_CLI to drive another installed copy of the command.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from anynet_search import load_config, load_space
from anynet_search.study.settings import is_trained
from anynet_search.study.storage import open_storage

CLI = os.environ.get("ANYNET_CLI") or shutil.which("anynet-search", path=str(Path(sys.executable).parent))
PASSWORD = "matrix-s3cret"  # the CI server trusts loopback, so any password connects; none may leak
TIMEOUT = 300


@dataclass(frozen=True)
class Cell:
    """One scenario: what `anynet-search run` gets."""

    name: str
    storage: str  # journal | sqlite | postgresql
    data: str  # digits | synthetic | synthetic:333 | cifar10 | imagefolder
    workers: int
    sampler: str
    space: str  # a bundled space, or "derived" (the space `derive` wrote for the first cell)
    trials: int


# Two defects once kept every TPE cell at 1 worker: spawned workers used Optuna's default, unseeded TPE and a
# pruner without warm-up, and with 2 workers a pruned trial's slot could be re-enqueued twice (N + 1 trained
# trials). Both went with issue 13's workers (a pruning objective with 2 workers and TPE, 3 studies of 30
# trials with 61-133 pruned trials each, ended with exactly 30 trained each); one TPE cell now runs 2 workers.
# TPE cells stay off anynet_xd_tiny: there 3 TPE runs in 16 stopped after 200 infeasible suggestions in a row.
CELLS = [
    Cell("journal-digits-random", "journal", "digits", 2, "random", "anynet_xa_tiny", 3),
    Cell("sqlite-synthetic-qmc", "sqlite", "synthetic", 1, "qmc", "anynet_xb_tiny", 3),
    Cell("postgresql-synthetic333-tpe", "postgresql", "synthetic:333", 1, "tpe", "anynet_xc_tiny", 3),
    Cell("journal-cifar-tpe", "journal", "cifar10", 2, "tpe", "anynet_xa_tiny", 3),
    Cell("sqlite-imagefolder-random", "sqlite", "imagefolder", 2, "random", "regnet_x_tiny", 3),
    Cell("postgresql-digits-qmc", "postgresql", "digits", 1, "qmc", "anynet_xe_tiny", 3),
    Cell("journal-synthetic333-random", "journal", "synthetic:333", 1, "random", "regnet_y_tiny", 2),
    Cell("sqlite-cifar-qmc", "sqlite", "cifar10", 2, "qmc", "anynet_xd_tiny", 2),
    Cell("postgresql-imagefolder-random", "postgresql", "imagefolder", 1, "random", "anynet_xc_tiny", 2),
    Cell("journal-synthetic-qmc-derived", "journal", "synthetic", 2, "qmc", "derived", 3),
]
AXES = {"storage": {"journal", "sqlite", "postgresql"},
        "data": {"digits", "synthetic", "synthetic:333", "cifar10", "imagefolder"},
        "workers": {1, 2}, "sampler": {"random", "qmc", "tpe"}}


def test_matrix_covers_every_axis_value_twice():
    for axis, values in AXES.items():
        counts = Counter(getattr(c, axis) for c in CELLS)
        assert set(counts) == values and min(counts.values()) >= 2, (axis, counts)
    assert sum(c.space == "derived" for c in CELLS) == 1


# ------------------------------------------------------------------------------------------ data sets
def write_cifar10(root: Path) -> Path:
    """A CIFAR-10 python-version folder with odd batch sizes (31..39 images), pickled like the official files."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"data_batch_1": 37, "data_batch_2": 31, "data_batch_3": 39, "data_batch_4": 33, "data_batch_5": 35,
             "test_batch": 29}
    for name, n in sizes.items():
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return root


def write_imagefolder(root: Path) -> Path:
    """One folder per class, odd image counts, mixed sizes (non-square too), modes and formats."""
    from PIL import Image

    rng = np.random.default_rng(1)
    counts = {"cat": 23, "dog": 17, "fox": 31}
    for k, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            h, w = (20, 13) if i % 3 == 0 else (24, 24)
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[..., k] = np.clip(pixels[..., k].astype(int) + 90, 0, 255)  # a learnable class cue
            img = Image.fromarray(pixels)
            if i % 5 == 0:
                img = img.convert("L")
            img.save(root / cls / f"{i:03d}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.fixture(scope="module")
def data_specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"digits": "digits", "synthetic": "synthetic", "synthetic:333": "synthetic:333",
            "cifar10": f"cifar10:{write_cifar10(root / 'cifar')}",
            "imagefolder": f"imagefolder:{write_imagefolder(root / 'images')}"}


# ------------------------------------------------------------------------------------------ running cells
def cli(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    """Run the installed command; with `ok`, assert exit 0 and that no password or traceback got out."""
    start = time.perf_counter()
    proc = subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    print(f"{time.perf_counter() - start:6.1f} s  anynet-search {' '.join(args)[:100]}")
    text = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, f"{' '.join(args)} -> {proc.returncode}\n{text[-3000:]}"
        assert "Traceback" not in text, text[-3000:]
    assert PASSWORD not in text
    return proc


@dataclass
class Outcome:
    """A finished cell: where its study lives and how to name it to every command."""

    cell: Cell
    run_dir: Path
    url: str  # the full URL, password included
    study: str
    cwd: Path


def storage_url(cell: Cell, cwd: Path) -> str | None:
    if cell.storage == "journal":
        return None
    if cell.storage == "sqlite":
        return "sqlite:///studies.db"  # relative to the run's working directory
    url = os.environ.get("ANYNET_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide ANYNET_TEST_POSTGRES_URL (see .ci/postgres.sh)")
        pytest.skip("set ANYNET_TEST_POSTGRES_URL to run the PostgreSQL cells (.ci/postgres.sh starts one)")
    return re.sub(r"://([^:@/]+)@", rf"://\1:{PASSWORD}@", url, count=1)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, data_specs):
    """Runs cells on demand, each once (the derived-space cell needs the first cell's `derive`)."""
    done: dict[str, Outcome] = {}
    root = tmp_path_factory.mktemp("matrix")

    def run(name: str) -> Outcome:
        if name in done:
            return done[name]
        cell = next(c for c in CELLS if c.name == name)
        cwd = root / cell.name
        cwd.mkdir()
        space = cell.space
        if space == "derived":
            space = str(derive_of(run(CELLS[0].name)))
        url = storage_url(cell, cwd)
        study = f"{cell.name}-{os.getpid()}-{time.time_ns()}" if cell.storage == "postgresql" else cell.name
        args = ["run", "--space", space, "--dataset", data_specs[cell.data], "--trials", str(cell.trials),
                "--workers", str(cell.workers), "--sampler", cell.sampler, "--epochs", "1", "--study", study,
                "--out", "runs", *(["--storage", url] if url else [])]
        proc = cli(*args, cwd=cwd)
        assert f"study {study}: {cell.trials}/{cell.trials} completed, 0 failed" in proc.stdout, proc.stdout
        if url is None:
            url = f"journal:{cwd / 'runs' / study / 'journal.log'}"
        elif cell.storage == "sqlite":
            url = f"sqlite:///{cwd / 'studies.db'}"  # the same file, named from anywhere
        done[name] = Outcome(cell, cwd / "runs" / study, url, study, cwd)
        return done[name]

    return run


def derive_of(outcome: Outcome) -> Path:
    """The space file `derive` wrote for a random/QMC cell (its test_cell writes the same file)."""
    out = outcome.cwd / "derived.yaml"
    if not out.exists():
        proc = cli("derive", str(outcome.run_dir), "--out", str(out), cwd=outcome.cwd.parent)
        assert "derived space (" in proc.stdout and out.is_file()
    return out


def assert_exactly_n_trained(outcome: Outcome) -> None:
    study = optuna.load_study(study_name=outcome.study, storage=open_storage(outcome.url))
    trials = study.get_trials(deepcopy=False)
    slots = Counter(t.user_attrs.get("slot") for t in trials if is_trained(t))
    assert sorted(slots) == list(range(outcome.cell.trials)) and set(slots.values()) == {1}
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.parametrize("cell", CELLS, ids=[c.name for c in CELLS])
def test_cell(cell, matrix):
    o = matrix(cell.name)
    n, adaptive = cell.trials, cell.sampler == "tpe"
    assert_exactly_n_trained(o)

    # the end-of-run report, fitted to the sampler
    html = (o.run_dir / "report" / "report.html").read_text()
    assert "data:image/png;base64" in html and "Optimization history" in html
    assert ("EDF verdicts left out" in html) == adaptive
    assert (o.run_dir / "report" / f"derived_space_{o.study}.yaml").is_file() != adaptive
    assert list((o.run_dir / "report" / "best_configs").glob("*/rank01_*.yaml"))

    # a run folder works whatever the storage; the recorded URL has no password
    if cell.storage != "journal":
        record = (o.run_dir / "storage.json").read_text()
        assert PASSWORD not in record and o.study in record
    # each command reads the run once: SQL cells through the run folder for status and derive and through
    # `URL --study NAME` for analyze and export, journal cells the other way round (both forms, each command)
    elsewhere = o.cwd.parent  # another working directory: a relative sqlite:/// path must still resolve
    by_url, folder = [o.url, "--study", o.study], [str(o.run_dir)]
    first, second = (folder, by_url) if cell.storage != "journal" else (by_url, folder)

    out = cli("status", *first, cwd=elsewhere).stdout
    assert f"{n}/{n} completed" in out and "best" in out

    rep = elsewhere / f"{cell.name}-analyze"
    out = cli("analyze", *second, "--out", str(rep), cwd=elsewhere).stdout
    assert f"n={n}," in out and (rep / "report.html").is_file()

    derived = o.cwd / "derived.yaml"  # what the derived-space cell runs on (derive_of)
    out = cli("derive", *first, "--out", str(derived), cwd=elsewhere).stdout
    if adaptive:
        assert "no constraints judged and no space derived: EDF verdicts left out" in out and not derived.exists()
    else:
        assert "verdict" in out and "derived space (" in out
        assert load_space(derived).stages == load_space(o.run_dir / "report" / f"derived_space_{o.study}.yaml").stages

    ex = elsewhere / f"{cell.name}-export"
    out = cli("export", *second, "--top", "2", "--format", "yaml", "--out", str(ex), cwd=elsewhere).stdout
    configs = [Path(p) for p in out.split() if p.endswith(".yaml") and not p.endswith(".regnet.yaml")]
    assert len(configs) == min(2, n) and all(load_config(p).num_stages >= 1 for p in configs)


def test_fidelity_and_plan_through_the_installed_cli(tmp_path):
    """A 6-model pilot at 1 epoch (journal), the same configs at 2 epochs into SQLite (`run --configs-from`), then
    `fidelity` (run folder and `URL --study NAME`), `analyze` of the pair, and `plan` from the pilot and from a spread."""
    base = ["--space", "anynet_xa_tiny", "--dataset", "digits", "--workers", "2", "--out", "runs", "--no-analyze"]
    out = cli("run", *base, "--trials", "6", "--epochs", "1", "--study", "pilot", cwd=tmp_path).stdout
    assert "study pilot: 6/6 completed, 0 failed" in out
    out = cli("run", "--configs-from", "runs/pilot", "--epochs", "2", "--storage", "sqlite:///fid.db", "--workers", "2",
              "--out", "runs", "--no-analyze", cwd=tmp_path).stdout
    assert "study pilot-e2: 6/6 completed, 0 failed" in out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = f"sqlite:///{tmp_path / 'fid.db'}"
    out = cli("fidelity", str(tmp_path / "runs" / "pilot"), url, "--study", "pilot-e2", "--out", "fid",
              cwd=elsewhere).stdout
    assert "fidelity of pilot (1 epoch on digits) against pilot-e2 (2 epochs on digits):" in out
    assert "6 models matched by config" in out and re.search(r"Spearman rho -?[01]\.\d{3} \[", out)
    assert (elsewhere / "fid" / "fidelity.png").is_file() and (elsewhere / "fid" / "fidelity_pairs.csv").is_file()
    out = cli("analyze", str(tmp_path / "runs" / "pilot"), str(tmp_path / "runs" / "pilot-e2"), "--out", "rep",
              cwd=elsewhere).stdout
    html = (elsewhere / "rep" / "report.html").read_text()
    assert "fidelity of pilot" in out
    assert 'Fidelity: <span class="name">pilot</span> against <span class="name">pilot-e2</span>' in html
    out = cli("plan", str(tmp_path / "runs" / "pilot"), "--effect", "2", "--sims", "300", cwd=elsewhere).stdout
    assert "plan from pilot pilot: 6 models" in out and "power at 6" in out and "time (2 spaces)" in out
    out = cli("plan", "--spread", "3", "--effect", "2", "1", "--sims", "300", cwd=elsewhere).stdout
    assert "standard deviation 3 points" in out and len(re.findall(r"^\s+[12]\s+(mean|KS)\s+\d+", out, re.M)) == 4


def test_prepared_stores_through_the_installed_cli(tmp_path):
    """`prepare` an image folder (2 workers) and digits, train on `prepared:DIR` into SQLite and a journal, read
    the studies back; training another store's data with --configs-from needs --other-data, and analyze refuses
    to compare the two data sets without --force."""
    images = write_imagefolder(tmp_path / "images")
    out = cli("prepare", f"imagefolder:{images}", "--out", "s16", "--resolution", "16", "--workers", "2",
              cwd=tmp_path).stdout
    digest = out.strip().splitlines()[-1]
    assert re.fullmatch(r"sha256 [0-9a-f]{64}", digest)
    again = cli("prepare", f"imagefolder:{images}", "--out", "s16", "--resolution", "16", "--workers", "1",
                cwd=tmp_path).stdout
    assert again.strip().splitlines()[-1] == digest  # finished: nothing to do, the same digest
    base = ["--trials", "2", "--epochs", "1", "--workers", "2", "--out", "runs"]
    out = cli("run", "--dataset", "prepared:s16", *base, "--study", "folder", "--storage", "sqlite:///s.db",
              cwd=tmp_path).stdout
    assert "study folder: 2/2 completed, 0 failed" in out
    html = (tmp_path / "runs" / "folder" / "report" / "report.html").read_text()
    assert f"data digest {digest.split()[1][:12]}" in html and "shifted crops" in html
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "2/2 completed" in cli("status", f"sqlite:///{tmp_path / 's.db'}", "--study", "folder", cwd=elsewhere).stdout
    cli("prepare", "digits", "--out", "d16", "--resolution", "16", cwd=tmp_path)
    proxy = ["run", "--configs-from", "runs/folder", "--dataset", "prepared:d16", "--study", "digits", "--out", "runs",
             "--workers", "1", "--no-analyze"]
    refused = cli(*proxy, cwd=tmp_path, ok=False)
    assert refused.returncode == 2 and "--other-data" in refused.stderr and "Traceback" not in refused.stderr
    out = cli(*proxy, "--other-data", cwd=tmp_path).stdout
    assert "study digits: 2/2 completed, 0 failed" in out
    pair = [str(tmp_path / "runs" / "folder"), str(tmp_path / "runs" / "digits")]
    refused = cli("analyze", *pair, "--out", "rep", cwd=elsewhere, ok=False)
    assert refused.returncode == 2 and "trained differently (data: " in refused.stderr
    assert "n=2," in cli("analyze", *pair, "--out", "rep", "--force", cwd=elsewhere).stdout
