"""Damaged journal lines: every readable record kept, lost creations replaced, the damage set aside (issue 30, item 1).

A small journal is written in-process through the package's backend (no workers), then damaged as a user or a
disk would: garbage appended at the end, garbage inserted in the middle, a torn record glued onto the next one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import optuna
import pytest

from anynet_search.study import open_storage
from anynet_search.study.journal import JournalCorruptError, first_bad_line
from anynet_search.study.journal_salvage import salvage

GARBAGE = b"\x00\xff\xfegarbage{{{not json\n"  # what the issue appended with printf


def make_journal(path: Path, trials: int = 6) -> None:
    study = optuna.create_study(study_name="s", storage=open_storage(f"journal:{path}"))
    for k in range(trials):
        study.enqueue_trial({"x": float(k)}, user_attrs={"slot": k})
    study.optimize(lambda t: t.suggest_float("x", 0, 10) ** 2, n_trials=trials - 2)  # two tickets stay WAITING


def view(path: Path, repair: bool) -> list[tuple[int, str, dict, float | None]]:
    storage = open_storage(f"journal:{path}", repair=repair)
    study = optuna.load_study(study_name="s", storage=storage)
    return [(t.number, t.state.name, t.params, t.value) for t in study.get_trials()]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def journal(tmp_path) -> Path:
    path = tmp_path / "journal.log"
    make_journal(path)
    return path


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_garbage_at_the_end_is_set_aside_by_a_writer_and_the_study_goes_on(journal, caplog):
    before = view(journal, repair=False)
    clean = journal.read_bytes()
    journal.write_bytes(clean + GARBAGE)
    assert view(journal, repair=True) == before
    assert journal.read_bytes() == clean  # cut: the file is what it was before the garbage
    (backup,) = journal.parent.glob("journal.log.damaged-*")
    assert backup.read_bytes() == GARBAGE
    (warning,) = warnings_of(caplog)
    assert f"line {len(lines(journal)) + 1} unreadable: no record lost" in warning and str(backup) in warning
    study = optuna.load_study(study_name="s", storage=open_storage(f"journal:{journal}"))
    study.optimize(lambda t: t.suggest_float("x", 0, 10), n_trials=2)  # appending works again
    assert first_bad_line(journal) is None and len(study.get_trials()) == 6


def test_damage_in_the_middle_keeps_every_readable_record(journal, caplog):
    before = view(journal, repair=False)
    records = lines(journal)
    k = len(records) - 4  # trial 2's completion
    assert records[k].startswith(b'{"op_code":6,') and b'"trial_id":2,"state":1' in records[k]
    torn = records[k][:30]  # a record torn short, the next one glued onto it, garbage inserted after
    damaged = records[:k] + [torn + records[k + 1], GARBAGE] + records[k + 2:]
    journal.write_bytes(b"".join(damaged))
    ro = view(journal, repair=False)  # read-only: salvaged in memory, the file untouched
    assert journal.read_bytes() == b"".join(damaged)
    assert [r for r in before if r not in ro] == [(2, "COMPLETE", {"x": 2.0}, 4.0)]  # only the torn record is lost
    assert ro[2] == (2, "RUNNING", {"x": 2.0}, None)  # (a worker's reaper re-enqueues such a trial)
    assert view(journal, repair=True) == ro
    (backup,) = journal.parent.glob("journal.log.damaged-*")
    assert backup.read_bytes() == torn + records[k + 1] + GARBAGE
    assert first_bad_line(journal) is None
    assert lines(journal) == records[:k] + records[k + 1:]  # every record but the torn one, in order
    ro_warning, rw_warning = warnings_of(caplog)
    assert f"lines {k + 1}, {k + 2} unreadable: 1 record lost" in rw_warning and "1 record recovered" in rw_warning
    assert "skipped them" in ro_warning


def test_a_lost_trial_creation_gets_a_failed_placeholder_so_later_trials_keep_their_numbers(journal):
    before = view(journal, repair=False)
    records = lines(journal)
    creations = [i for i, r in enumerate(records) if r.startswith(b'{"op_code":4,')]
    k = creations[1]  # the second ticket's creation, torn
    journal.write_bytes(b"".join(records[:k] + [records[k][:40] + b"\n"] + records[k + 1:]))
    after = view(journal, repair=True)
    assert after[1][:2] == (1, "FAIL")
    assert [r for r in after if r[0] != 1] == [r for r in before if r[0] != 1]  # every other trial as it was
    study = optuna.load_study(study_name="s", storage=open_storage(f"journal:{journal}"))
    assert "lost to journal damage" in study.trials[1].user_attrs["failure"]


def test_a_file_without_any_record_is_refused_and_left_alone(tmp_path):
    notes = tmp_path / "notes.log"
    notes.write_bytes(b"my notes\nnot a journal\n")
    with pytest.raises(JournalCorruptError, match="is this file a journal"):
        open_storage(f"journal:{notes}")
    assert notes.read_bytes() == b"my notes\nnot a journal\n"
    assert not list(tmp_path.glob("notes.log.*"))


def test_salvage_names_each_kind_of_loss():
    record = b'{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"a":1}}'
    found = salvage(b"junk" + record + b"\n" + record[:25] + b"\n" + b'{"op_code":4,"worker_id":"w","stu\n', 7)
    assert found.damaged == [7, 8, 9] and found.recovered == 1 and found.placeholders == 1
    assert found.lost == ["a trial attribute", "a trial's creation"]
    assert re.search(r"lines 7, 8 and 1 more unreadable: 2 records lost", found.summary())
