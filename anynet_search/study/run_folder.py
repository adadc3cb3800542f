"""A run folder names its study's storage, whatever the storage is, so `status RUN`, `analyze RUN` ... find it.

With the default storage the folder holds the Optuna journal itself. With `--storage URL` (SQLite,
PostgreSQL, a journal elsewhere) it holds `storage.json`: the study's name and the storage URL, made
usable from any working directory (relative SQLite and journal paths made absolute) and stored without
its password. A driver then takes the password from where it keeps them (PostgreSQL: PGPASSWORD or
~/.pgpass); the full URL with `--study NAME` always works too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from anynet_search.errors import InputError
from anynet_search.study.storage import (
    JOURNAL_NAME,
    default_storage_url,
    is_journal,
    journal_path,
    open_storage,
    without_password,
)

RECORD_NAME = "storage.json"
_SQLITE_RELATIVE = re.compile(r"^(sqlite[^:]*:///)(?!/)([^?]+)(.*)$")  # sqlite:///rel.db, not sqlite:////abs.db


@dataclass(frozen=True)
class StorageRecord:
    """What a run folder records about a study kept outside it."""

    study: str
    storage: str  # no password
    password_removed: bool


def portable_url(url: str) -> str:
    """The URL as recorded: relative SQLite / journal paths made absolute, the password left out."""
    if is_journal(url):
        return f"journal:{journal_path(url).resolve()}"
    m = _SQLITE_RELATIVE.match(url)
    if m and m.group(2) != ":memory:":
        url = f"{m.group(1)}{Path(m.group(2)).resolve()}{m.group(3)}"
    return without_password(url)


def write_record(run_dir: str | Path, url: str, study: str) -> Path | None:
    """Record a study's storage in its run folder (nothing to record when the folder holds the journal)."""
    folder = Path(run_dir)
    if is_journal(url) and journal_path(url).resolve() == (folder / JOURNAL_NAME).resolve():
        return None
    record = {"study": study, "storage": portable_url(url), "password_removed": without_password(url) != url}
    path = folder / RECORD_NAME
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def read_record(run_dir: str | Path) -> StorageRecord | None:
    """The storage record of a run folder, None if it has none; InputError if it is unreadable."""
    path = Path(run_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StorageRecord(str(data["study"]), str(data["storage"]), bool(data.get("password_removed", False)))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a storage record written by anynet-search ({exc})") from None


def folder_storage(run_dir: str | Path) -> tuple[str, str | None, BaseStorage | None]:
    """(storage URL, study name or None, the storage if opened) of a run folder.

    A folder holding a journal is read from it (the name comes from the journal); a folder with a
    storage record opens the recorded storage, with a hint where its password was left out.
    """
    folder = Path(run_dir)
    if (folder / JOURNAL_NAME).is_file():
        return default_storage_url(folder), None, None
    record = read_record(folder)
    if record is None:
        raise InputError(f"{folder}: not a run folder (no {JOURNAL_NAME} or {RECORD_NAME}); pass a run folder, "
                         "or a storage URL and --study NAME")
    try:
        storage = open_storage(record.storage, repair=False)  # reading a run never changes its storage
    except ValueError as exc:
        if not record.password_removed:
            raise
        raise InputError(f"{exc}; {folder} records this storage without its password: set PGPASSWORD or "
                         "~/.pgpass, or pass the full URL and --study NAME") from None
    return record.storage, record.study, storage


def is_storage_url(text: str) -> bool:
    """Whether a RUN argument is a storage URL (else it names a run folder)."""
    return "://" in text or text.startswith("journal:")


def resolve_study(run: str | Path, study: str | None,
                  option: str = "--study") -> tuple[str, str, BaseStorage | None]:
    """(storage URL, study name, the storage if it was opened to find the name, or the folder's storage) of a
    run folder, or of a storage URL and an optional study name (needed when the storage holds several: the
    error names `option`)."""
    text = str(run)
    is_url = is_storage_url(text)
    storage = None
    if is_url:
        url = text
    else:
        path = Path(text)
        url, recorded, storage = folder_storage(path)  # the folder's journal, or the storage it records
        study = study or recorded
    if study is not None:
        return url, study, storage
    storage = open_storage(url, repair=False)  # read-only: never changes the file
    names = optuna.get_all_study_names(storage)
    if len(names) == 1:
        return url, names[0], storage
    if is_url:
        raise InputError(f"storage holds {len(names)} studies ({', '.join(names) or 'none'}); "
                         f"name one with {option}")
    return url, path.name, storage
