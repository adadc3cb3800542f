"""Issue 23, "what a well-kept library already does": the parts now taken from a library, each checked against what
it replaced or against the truth, and the one kept hand-written (the learning-rate table) checked against torch's
scheduler."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest

from anynet_search.analysis import edf_at, edf_confidence_band
from anynet_search.analysis.constraints import holm
from anynet_search.study.progress import ProgressView, Snapshot
from anynet_search.study.storage import without_password


# ------------------------------------------------------------------------------------------ progress
def simulate(view: ProgressView, clock: list[float], total: int, workers: int, trial_s: tuple[float, float],
             startup_s: float, stop_after: int, seed: int = 0) -> float:
    """Drive `view` with the snapshots of `workers` workers, each training one trial after another (durations
    uniform in `trial_s`) after `startup_s`; returns the true time left when `stop_after` trials are done."""
    rng = np.random.default_rng(seed)
    durations = rng.uniform(*trial_s, size=total)
    ends, free = [], [startup_s] * workers
    for d in durations:  # each trial goes to the worker free first
        k = int(np.argmin(free))
        free[k] += d
        ends.append(free[k])
    ends = np.sort(ends)
    t = 0.0
    while True:
        t += 0.5
        clock[0] = t
        done = int((ends <= t).sum())
        running = 0 if t < startup_s else min(workers, total - done)
        view.update(Snapshot(total, done, 0, running, total - done - running, 0, 1.0 if done else None))
        if done >= stop_after:
            return float(ends[-1] - t)


def test_the_first_eta_counts_parallel_trials_not_the_start_up():
    """64 trials of 10-20 s on 2 workers after a 5 s start-up (the issue's run: the old line said 28 minutes after
    the first trial of a run of 8)."""
    for seed in range(5):
        for after, within in ((1, 0.5), (8, 0.25)):  # one trial's time is one draw: a rough first estimate
            clock = [0.0]
            stream = io.StringIO()
            view = ProgressView(stream, plain_every=0.0, clock=lambda c=clock: c[0])
            left = simulate(view, clock, total=64, workers=2, trial_s=(10.0, 20.0), startup_s=5.0,
                            stop_after=after, seed=seed)
            minutes, seconds = re.search(r"ETA (\d+)m(\d+)s$", stream.getvalue().splitlines()[-1]).groups()
            eta = 60 * int(minutes) + int(seconds)
            assert (1 - within) * left <= eta <= (1 + within) * left, (seed, after, eta, left)
            if after == 1:  # elapsed / done x remaining, as the line said before: more than 1.6 x the time left
                assert clock[0] * 63 > 1.6 * left
    assert stream.getvalue().splitlines()[0].endswith("ETA ?")  # no estimate before a trial has ended


def test_a_terminal_gets_a_tqdm_bar_and_notes_above_it(monkeypatch):
    from anynet_search.study import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

        def fileno(self):
            return 2

    monkeypatch.setattr(progress.os, "get_terminal_size", lambda fd: os.terminal_size((100, 24)))

    stream, clock = Tty(), [0.0]
    view = ProgressView(stream, clock=lambda: clock[0])
    simulate(view, clock, total=8, workers=2, trial_s=(2.0, 3.0), startup_s=0.0, stop_after=4)
    view.note("config that killed its worker twice: trial 3")
    view.close()
    text = stream.getvalue()
    assert "4/8 done |" in text and "best val error 1.00%" in text and "ETA 0m0" in text
    assert "| 0 failed" in text and "|, " not in text  # issue 30: the bar's text began with a stray ", "
    assert "config that killed its worker twice: trial 3\n" in text


# ------------------------------------------------------------------------------------------ statistics
def test_holm_is_statsmodels_and_leaves_missing_p_values_out_of_the_family():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, np.nan, 0.04, 0.03, 0.5]
    got = holm(p)
    assert np.isnan(got[1])
    assert got[[0, 2, 3, 4]] == pytest.approx(multipletests([0.01, 0.04, 0.03, 0.5], method="holm")[1])
    assert got[[0, 2, 3, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])  # by hand: 4p, max(3p..), ...


def test_the_edf_band_of_scipy_covers_the_true_cdf_about_as_often_as_it_says():
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(400):
        e = rng.uniform(0, 1, 40)
        band = edf_confidence_band(e, grid=[0.3, 0.5, 0.7])
        hits.append(((band["lo"] <= band["error"]) & (band["error"] <= band["hi"])).to_numpy())
        assert band["F"].to_numpy() == pytest.approx(edf_at(e, [0.3, 0.5, 0.7]))  # the EDF of analysis.edf
    coverage = np.mean(hits, axis=0)
    assert ((coverage > 0.91) & (coverage < 0.99)).all(), coverage
    top = edf_confidence_band(np.array([1.0, 2.0, 3.0]))
    assert top["lo"].iloc[-1] == top["hi"].iloc[-1] == 1.0  # undefined at F = 1: the point itself


# ------------------------------------------------------------------------------------------ URLs
@pytest.mark.parametrize("url,expected", [
    ("postgresql://u:p@h:5/db", "postgresql://u@h:5/db"),
    ("postgresql://u:a/b@h/db", "postgresql://u@h/db"),
    ("postgresql://u:p%40q@h/db?sslpassword=zz&x=1", "postgresql://u@h/db?x=1"),
    ("postgresql+psycopg://u@h/db?password=zz", "postgresql+psycopg://u@h/db"),
    ("postgresql://u:sec@ret@h:5/db", "postgresql://u@h:5/db"),  # SQLAlchemy alone would keep 'ret' in the host
    ("sqlite:////abs/s.db?timeout=5", "sqlite:////abs/s.db?timeout=5"),
    ("journal:runs/x/journal.log", "journal:runs/x/journal.log"),
])
def test_without_password_drops_every_secret_as_sqlalchemy_reads_the_url(url, expected):
    from sqlalchemy.engine import make_url

    assert without_password(url) == expected
    if "://" in url and not url.startswith("journal"):
        assert make_url(without_password(url)).password is None


# ------------------------------------------------------------------------------------------ learning rate
@pytest.mark.parametrize("total,warmup", [(40, 4), (100, 25), (7, 2), (30, 0)])
def test_the_learning_rate_table_is_torchs_warmup_and_cosine_schedulers(total, warmup):
    """The trainer keeps its per-step table (`train.lr_at`): a CUDA graph reads each step's rate from a device
    tensor filled from it (`programs.StepProgram.lr_table`), which a scheduler object stepping on the host
    cannot do inside a replayed graph. The table is the same schedule as torch's LinearLR warm-up followed by
    CosineAnnealingLR, step for step."""
    import torch

    from anynet_search.training.train import lr_at

    peak = 0.3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=0.0)
    if warmup:
        linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0,
                                                   total_iters=max(warmup - 1, 1))
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warmup])
    else:
        sched = cosine
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [lr_at(step, total, warmup, peak) for step in range(total)]
    if warmup == 1:
        pytest.skip("a one-step warm-up is one point")
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9)
