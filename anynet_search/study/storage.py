"""Optuna storages from URLs: a journal file by default, SQLite or PostgreSQL by URL; credentials redacted."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

JOURNAL_NAME = "journal.log"
_PASSWORD = re.compile(r"(?<=://)([^:/@]+):([^@]*)@")  # user:password@ after the scheme


def default_storage_url(run_dir: str | Path) -> str:
    """The default storage of a run folder: an Optuna journal file (safe for many local processes)."""
    return f"journal:{Path(run_dir) / JOURNAL_NAME}"


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to print or store."""
    return _PASSWORD.sub(r"\1:***@", url)


def without_password(url: str) -> str:
    """The URL with its password left out (a database driver then reads PGPASSWORD, ~/.pgpass ...)."""
    return _PASSWORD.sub(r"\1@", url)


def is_journal(url: str) -> bool:
    """Whether a storage URL names a journal file (`journal:PATH` or a path ending in .log)."""
    return url.startswith("journal:") or ("://" not in url and url.endswith(".log"))


def journal_path(url: str) -> Path:
    """File path of a journal storage URL."""
    return Path(url[len("journal:"):] if url.startswith("journal:") else url)


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage for `journal:PATH`, `sqlite:///...`, `postgresql://...` or any SQLAlchemy URL."""
    if is_journal(url):
        path = journal_path(url)
        if not path.parent.is_dir():
            raise ValueError(f"storage folder {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(f"storage {redact(url)!r} is neither journal:PATH nor a database URL (sqlite:///..., postgresql://...)")
    kwargs = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # many worker processes write to one file
    try:
        return RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=False)
    except (ImportError, ModuleNotFoundError) as exc:
        raise ValueError(f"storage {redact(url)}: missing database driver ({exc}); for PostgreSQL install the "
                         "'postgres' extra") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"storage {redact(url)}: cannot connect ({redact(first)})") from None


def load_study(name: str, storage: BaseStorage | str) -> optuna.Study:
    """An existing study, or ValueError naming the studies that do exist."""
    store = open_storage(storage) if isinstance(storage, str) else storage
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = optuna.get_all_study_names(store)
        raise ValueError(f"no study {name!r} in this storage (studies: {', '.join(names) or 'none'})") from None
