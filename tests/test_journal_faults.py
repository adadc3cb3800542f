"""Torn journals and full disks: nothing completed is lost, nothing is glued onto a torn line, one-line errors.

Faults are made on copies of a real study's journal (a truncated last line, a line glued onto the next
one) and by patching the journal's writes to fail with ENOSPC (`faults.FullDisk`), in the main process
and inside a spawned worker. Driven through the CLI's `main` as a user would (capfd also captures what
spawned workers print).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import optuna
import pytest
from faults import FullDisk

from anynet_search.cli import main
from anynet_search.errors import StorageFullError
from anynet_search.study import journal, open_storage
from anynet_search.study.journal import find_torn_tail, first_bad_line

DRY = "anynet_search.study.dry_run:pseudo_error"
NAME = "anynet_xa_tiny-synthetic-random-e8-s0"


def run_args(out: Path, trials: int, objective: str = DRY) -> list[str]:
    return ["run", "--trials", str(trials), "--workers", "1", "--dataset", "synthetic:64", "--out", str(out),
            "--objective", objective, "--no-analyze"]


def completed(run_dir: Path) -> dict[int, float]:
    """Trial number -> value of every completed trial, read without changing the journal."""
    storage = open_storage(f"journal:{run_dir / 'journal.log'}", repair=False)
    study = optuna.load_study(study_name=NAME, storage=storage)
    return {t.number: t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


def lines_of(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def every_line_is_a_record(path: Path) -> bool:
    return first_bad_line(path) is None and find_torn_tail(path) is None


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("journal")
    assert main(run_args(out, 4)) == 0
    return out / NAME


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    out = tmp_path / "runs"
    shutil.copytree(finished_run, out / NAME)
    return out / NAME


def tear_last_line(journal_file: Path, keep: int = 30) -> tuple[bytes, int]:
    """Cut the journal's last line after `keep` bytes (a write stopped short); returns (cut bytes, line number)."""
    data = journal_file.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    journal_file.write_bytes(data[:start + keep])
    return data[start:start + keep], data[:start].count(b"\n") + 1


def test_a_torn_last_line_is_found_with_its_line_number(run_copy):
    path = run_copy / "journal.log"
    assert find_torn_tail(path) is None
    cut, line = tear_last_line(path)
    tail = find_torn_tail(path)
    assert tail is not None and tail.line == line and tail.size == len(cut) and "no line end" in tail.reason


@pytest.mark.parametrize("command", [["status"], ["analyze", "--out", "{tmp}/report"], ["export", "--out", "{tmp}/ex"],
                                     ["derive", "--out", "{tmp}/derived.yaml"]])
def test_read_only_commands_say_which_torn_line_they_skip_and_leave_the_file_alone(run_copy, tmp_path, capfd,
                                                                                    command):
    path = run_copy / "journal.log"
    _, line = tear_last_line(path)
    before = path.read_bytes()
    args = [command[0], str(run_copy), *(a.format(tmp=tmp_path) for a in command[1:])]
    assert main(args) == 0
    err = capfd.readouterr().err
    warnings = lines_of(err, "warning:")
    assert len(warnings) == 1 and str(path) in warnings[0] and f"line {line}" in warnings[0] and "skipped" in warnings[0]
    assert path.read_bytes() == before  # read-only: not even repaired
    assert not list(run_copy.glob("journal.log.torn-*"))


def test_run_repairs_a_torn_journal_keeps_the_cut_bytes_and_loses_no_completed_trial(run_copy, capfd):
    path = run_copy / "journal.log"
    cut, line = tear_last_line(path)
    before = completed(run_copy)  # what every reader sees: the torn line was never applied
    assert len(before) >= 3
    capfd.readouterr()
    assert main(run_args(run_copy.parent, 6)) == 0
    err = capfd.readouterr().err
    warnings = lines_of(err, "warning:")
    backups = list(run_copy.glob("journal.log.torn-*"))
    assert len(warnings) == 1 and f"line {line}" in warnings[0] and str(backups[0]) in warnings[0]
    assert len(backups) == 1 and backups[0].read_bytes() == cut  # the cut bytes are kept, byte for byte
    assert every_line_is_a_record(path)
    after = completed(run_copy)
    assert all(after[n] == v for n, v in before.items())  # every completed trial survived
    assert main(["status", str(run_copy)]) == 0
    assert "6/6 completed" in capfd.readouterr().out


def test_an_unreadable_last_line_left_by_a_glued_append_is_set_aside_and_its_record_recovered(run_copy, capfd):
    path = run_copy / "journal.log"
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    last = data[start:]
    path.write_bytes(data[:start] + last[:20] + last)  # the old failure: a record appended onto a torn one
    assert "not valid JSON" in find_torn_tail(path).reason
    assert main(run_args(run_copy.parent, 5)) == 0
    assert every_line_is_a_record(path)
    assert [p.read_bytes() for p in run_copy.glob("journal.log.damaged-*")] == [last[:20] + last]
    assert len(completed(run_copy)) == 5


def test_garbage_appended_to_the_journal_is_cut_with_a_backup_and_the_study_resumes_to_the_asked_count(run_copy,
                                                                                                       capfd):
    path = run_copy / "journal.log"
    garbage = b"\x00\xff\xfegarbage{{{not json\n"  # the printf
    line = path.read_bytes().count(b"\n") + 1
    path.write_bytes(path.read_bytes() + garbage)
    capfd.readouterr()
    assert main(run_args(run_copy.parent, 6)) == 0
    warnings = lines_of(capfd.readouterr().err, "warning:")
    (backup,) = run_copy.glob("journal.log.damaged-*")
    assert backup.read_bytes() == garbage
    assert len(warnings) == 1 and f"line {line} unreadable: no record lost" in warnings[0] and str(backup) in warnings[0]
    assert every_line_is_a_record(path) and len(completed(run_copy)) == 6


def damage_line_10(path: Path) -> bytes:
    """Line 10 torn, line 11 glued onto it, later lines appended: returns the damaged line."""
    lines = path.read_bytes().split(b"\n")
    lines[9] = lines[9][:15] + lines[10]
    del lines[10]
    path.write_bytes(b"\n".join(lines))
    return lines[9] + b"\n"


@pytest.mark.parametrize("command", ["status", "analyze", "export"])
def test_read_only_commands_read_past_a_damaged_middle_line_and_leave_the_file_alone(run_copy, tmp_path, capfd,
                                                                                      command):
    path = run_copy / "journal.log"
    damage_line_10(path)
    before = path.read_bytes()
    args = {"status": ["status", str(run_copy)], "analyze": ["analyze", str(run_copy), "--out", str(tmp_path / "r")],
            "export": ["export", str(run_copy), "--out", str(tmp_path / "e")]}[command]
    capfd.readouterr()
    assert main(args) == 0
    err = capfd.readouterr().err
    warnings = lines_of(err, "warning:")
    assert "Traceback" not in err and len(lines_of(err, f"journal {path}: line 10 unreadable")) == 1
    assert any("1 record lost" in w and "1 record recovered" in w for w in warnings)
    assert path.read_bytes() == before
    assert not list(run_copy.glob("journal.log.damaged-*"))


def test_run_sets_a_damaged_middle_line_aside_and_finishes_with_every_readable_record(run_copy, capfd):
    path = run_copy / "journal.log"
    before = completed(run_copy)
    damaged = damage_line_10(path)
    capfd.readouterr()
    assert main(run_args(run_copy.parent, 6)) == 0
    err = capfd.readouterr().err
    (backup,) = run_copy.glob("journal.log.damaged-*")
    assert backup.read_bytes() == damaged
    (warning,) = lines_of(err, f"journal {path}: line 10 unreadable")
    assert "1 record lost (a trial attribute); 1 record recovered" in warning and str(backup) in warning
    assert every_line_is_a_record(path)
    after = completed(run_copy)
    assert len(after) == 6 and all(after[n] == v for n, v in before.items())


def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(tmp_path, capfd):
    notes = tmp_path / "notes.log"
    notes.write_text("my notes, not a journal")
    args = [*run_args(tmp_path / "out", 2), "--storage", f"journal:{notes}"]
    assert main(args) == 2
    errors = lines_of(capfd.readouterr().err, "error:")
    assert len(errors) == 1 and str(notes) in errors[0] and "not an Optuna journal record" in errors[0]
    assert notes.read_text() == "my notes, not a journal"
    assert not (tmp_path / "out").exists()


def test_a_full_disk_while_appending_leaves_no_partial_line(run_copy, monkeypatch):
    path = run_copy / "journal.log"
    storage = open_storage(f"journal:{path}")
    study = optuna.load_study(study_name=NAME, storage=storage)
    size = path.stat().st_size
    monkeypatch.setattr(journal, "os", FullDisk(room=25))  # 25 bytes of the record fit, then the disk is full
    with pytest.raises(StorageFullError, match=f"^no space left on device while writing {path}$"):
        study.set_user_attr("note", "x" * 100)
    assert path.stat().st_size == size and every_line_is_a_record(path)  # the partial record was removed
    monkeypatch.setattr(journal, "os", os)  # space freed: the same study goes on
    study.set_user_attr("note", "written")
    reopened = optuna.load_study(study_name=NAME, storage=open_storage(f"journal:{path}"))
    assert reopened.user_attrs["note"] == "written"


def test_a_full_disk_while_creating_a_study_is_one_line_and_resumable(tmp_path, monkeypatch, capfd):
    out = tmp_path / "runs"
    monkeypatch.setattr(journal, "os", FullDisk(room=3000))  # the study's first records fit, its tickets do not
    assert main(run_args(out, 6)) == 2
    err = capfd.readouterr().err
    path = out / NAME / "journal.log"
    assert "Traceback" not in err
    assert lines_of(err, "error:") == [f"anynet-search run: error: no space left on device while writing {path}"]
    assert every_line_is_a_record(path)
    monkeypatch.setattr(journal, "os", os)
    assert main(run_args(out, 6)) == 0
    assert len(completed(out / NAME)) == 6


def test_a_full_disk_in_a_worker_stops_the_run_with_one_line_and_the_same_command_resumes(tmp_path, monkeypatch,
                                                                                           capfd):
    out = tmp_path / "runs"
    monkeypatch.setenv("ANYNET_TEST_DISK_FULL_AFTER", "2")  # read by the spawned worker's objective
    assert main(run_args(out, 5, objective="faults:disk_full_objective")) == 2
    err = capfd.readouterr().err
    path = out / NAME / "journal.log"
    assert "Traceback" not in err
    assert lines_of(err, "error:") == [f"anynet-search run: error: no space left on device while writing {path}"]
    assert every_line_is_a_record(path)
    before = completed(out / NAME)
    assert len(before) == 2  # both finished trials are readable
    monkeypatch.delenv("ANYNET_TEST_DISK_FULL_AFTER")
    assert main(run_args(out, 5)) == 0
    after = completed(out / NAME)
    assert len(after) == 5 and all(after[n] == v for n, v in before.items())
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert all("op_code" in r for r in records)
