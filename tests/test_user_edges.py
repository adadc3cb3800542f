"""Edges a careful user hits (issue 30, items 2-5 and 12): a smaller --trials on resume, read-only commands on a
mistyped SQLite URL, absurd plan spreads, stop signals and their exit codes, worker-cap and YAML messages, and the
progress line on terminals with no width. In-process and without training (the dry-run objective, or none)."""

from __future__ import annotations

import io
import os
import signal

import optuna
import pytest

from anynet_search import commands
from anynet_search.cli import main
from anynet_search.errors import InputError
from anynet_search.spaces import load_space
from anynet_search.study import RunOptions, Worker, interrupts, prepare_study
from anynet_search.study.capacity import cores, plan_workers
from anynet_search.study.progress import ProgressView, Snapshot
from anynet_search.training.interface import TrainConfig

DRY = "anynet_search.study.dry_run:pseudo_error"


def opts(tmp_path, **kw) -> RunOptions:
    base = dict(space="anynet_xd_tiny", trials=4, workers=1, dataset="synthetic:64", out=str(tmp_path / "runs"),
                objective=DRY, study="s")
    base.update(kw)
    return RunOptions(**base)


def errors_of(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


# ----------------------------------------------------------------------------- 2: --trials on resume
def test_a_smaller_trials_on_resume_is_refused_and_none_keeps_the_stored_count(tmp_path):
    study, *_ = prepare_study(opts(tmp_path))
    Worker(study, objective=DRY).run(max_trials=1)
    journal = tmp_path / "runs" / "s" / "journal.log"
    before = journal.read_bytes()
    with pytest.raises(InputError, match=r"^--trials 2: study 's' holds 4 trials \(1 trained\) and a study does not "
                                         r"shrink; leave --trials out to finish it"):
        prepare_study(opts(tmp_path, trials=2))
    assert journal.read_bytes() == before  # refused before anything was written
    _, settings, *_ = prepare_study(opts(tmp_path, trials=None))  # resumed as stored, not at the default 64
    assert settings.n_trials == 4 and journal.read_bytes() == before
    study, settings, *_ = prepare_study(opts(tmp_path, trials=6))  # more: extended
    assert settings.n_trials == 6 and len(study.get_trials()) == 6


# ----------------------------------------------------------------------------- 3: no storage created by readers
@pytest.mark.parametrize("command", [
    ["status", "{url}", "--study", "x"], ["analyze", "{url}", "--study", "x", "--out", "{tmp}/report"],
    ["export", "{url}", "--study", "x", "--out", "{tmp}/exported"], ["derive", "{url}", "--study", "x"],
    ["worker", "--study", "x", "--storage", "{url}"], ["plan", "{url}", "--study", "x", "--effect", "1"],
    ["status", "journal:{tmp}/nosuch.log", "--study", "x"],
])
def test_read_only_commands_and_workers_never_create_a_missing_storage(tmp_path, capsys, command):
    missing = tmp_path / "nosuch.db"
    args = [a.format(url=f"sqlite:///{missing}", tmp=tmp_path) for a in command]
    assert main(args) == 2
    (error,) = errors_of(capsys)
    assert str(tmp_path / "nosuch") in error and ("no such database file" in error or "does not exist" in error)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no database, journal, report or export


# ----------------------------------------------------------------------------- 4: plan's range
@pytest.mark.parametrize("effect, spread, bad", [("1", "1e-300", "1e-300"), ("1e-9", "1", "1e-09"),
                                                 ("1", "1e300", "1e+300")])
def test_plan_refuses_spreads_and_effects_outside_a_sane_range(capsys, effect, spread, bad):
    assert main(["plan", "--effect", effect, "--spread", spread]) == 2
    out = capsys.readouterr()
    assert "nan" not in out.out + out.err
    assert out.err.splitlines() == [f"anynet-search plan: error: --effect and --spread are error points between "
                                    f"0.001 and 100 (a percentage), got {bad}"]


# ----------------------------------------------------------------------------- 5: signals and messages
@pytest.mark.parametrize("sig, code, words", [(signal.SIGTERM, 143, "stopped by SIGTERM"),
                                              (signal.SIGHUP, 129, "stopped by SIGHUP"),
                                              (signal.SIGINT, 130, "interrupted")])
def test_a_stop_signal_exits_128_plus_its_number_with_one_line(monkeypatch, capsys, sig, code, words):
    def stopped(_args):
        os.kill(os.getpid(), sig)
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(commands, "cmd_spaces", stopped)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    assert main(["spaces"]) == code
    assert capsys.readouterr().err.splitlines() == [f"anynet-search spaces: {words}"]
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored after the command


def test_workers_stop_on_sighup_like_sigterm_unless_nohup_ignores_it():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)}
    try:
        interrupts.install()
        assert signal.getsignal(signal.SIGHUP) is interrupts.request_stop
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
        interrupts.install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
        interrupts.STATE.stop_requested = False


def test_a_worker_stopped_by_sigterm_raises_what_exits_143():
    from anynet_search.errors import Stopped, exit_code

    try:
        with pytest.raises(Stopped) as info, interrupts.interruptible():
            interrupts.request_stop(signal.SIGTERM, None)
        assert exit_code(info.value) == 143
        with pytest.raises(Stopped):  # asked while not interruptible: raised at the next check
            with interrupts.interruptible():
                pass
    finally:
        interrupts.STATE.stop_requested, interrupts.STATE.signum = False, signal.SIGINT


def test_interrupted_trials_are_counted_apart_from_failed_ones():
    snap = Snapshot(10, 3, 1, 2, 2, 0, 1.5, interrupted=2)
    stream = io.StringIO()
    ProgressView(stream).update(snap, force=True)
    assert stream.getvalue().startswith("3/10 done, 1 failed, 2 interrupted (re-queued), 2 running")
    assert Snapshot(10, 3, 0, 2, 5, 0, None).counts_text() == "0 failed"


def test_interrupted_trials_are_counted_from_the_storage(tmp_path):
    study, *_ = prepare_study(opts(tmp_path, trials=3))
    worker = Worker(study, objective=DRY)
    trial_id = worker.index.claim()
    trial = optuna.Trial(study, trial_id)
    worker._finish(trial, optuna.trial.TrialState.FAIL, reason="interrupted: config re-enqueued", same_config=True)
    snap = Snapshot.of(study, 3)
    assert (snap.failed, snap.interrupted, snap.waiting) == (0, 1, 3)


def test_the_worker_cap_message_names_what_oversubscribe_would_start():
    train = TrainConfig()
    (note,) = plan_workers("cpu", 100_000, None, 3, train).notes  # the trials left cap it too
    assert note.startswith("--workers 100,000: this machine takes")
    assert ("(--oversubscribe starts 3)" in note) == (cores() < 3)
    assert "100,000)" not in note and f"starting {min(cores(), 3)}" in note


def test_yaml_errors_name_line_and_column_without_the_parsers_placeholder(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("name: x\nparams: [1, 2\nband: 3\n")
    with pytest.raises(InputError) as info:
        load_space(str(bad))
    assert "<unicode string>" not in str(info.value) and "line 3, column 5" in str(info.value)


# ----------------------------------------------------------------------------- 12: terminals with no width
class NoWidthTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("no size")


def test_a_terminal_without_a_width_gets_a_line_per_completed_trial_and_no_stray_comma():
    stream, clock = NoWidthTerminal(), [0.0]
    view = ProgressView(stream, clock=lambda: clock[0])
    for done in range(3):
        clock[0] += 2.0
        view.update(Snapshot(3, done, 0, 1, 2 - done, 0, None))
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["0/3 done", "1/3 done", "2/3 done"]
    assert not any(line.lstrip().startswith(",") for line in lines)


# ----------------------------------------------------------------------------- 6: PostgreSQL sessions
def test_postgresql_sessions_plan_index_lookups_and_keep_the_urls_own_options():
    from anynet_search.study.storage import PG_OPTIONS, _postgres_kwargs

    assert _postgres_kwargs("postgresql://u@db/s") == {"connect_args": {"options": PG_OPTIONS}}
    theirs = _postgres_kwargs("postgresql+psycopg://u@db/s?options=-c%20search_path%3Dlab")
    assert theirs["connect_args"]["options"] == f"-c search_path=lab {PG_OPTIONS}"
    assert _postgres_kwargs("sqlite:///x.db") == {} and _postgres_kwargs("mysql://u@db/s") == {}
