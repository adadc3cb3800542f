"""Optuna storages from URLs: a journal file by default, SQLite or PostgreSQL by URL; credentials redacted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalStorage

from anynet_search.errors import InputError, StorageFullError, is_no_space
from anynet_search.study.journal import SafeJournalBackend, describe_tail, find_torn_tail, log

JOURNAL_NAME = "journal.log"


def default_storage_url(run_dir: str | Path) -> str:
    """The default storage of a run folder: an Optuna journal file (safe for many local processes)."""
    return f"journal:{Path(run_dir) / JOURNAL_NAME}"


_URL = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"<>]*")
# query or conninfo keys that carry secrets (password=, sslpassword=, passwd=, pwd=, token=, ...)
_SECRET_PAIR = re.compile(r"(?i)\b([\w.-]*(?:pass|pwd|secret|token)[\w.-]*)=([^&#\s'\",;]+)")


def _redact_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    at = rest.rfind("@")  # the last one: a password may itself contain '@' (user:sec@ret@host)
    if at != -1:
        user, colon, _ = rest[:at].partition(":")
        if colon and "/" not in user:
            rest = f"{user}:***{rest[at:]}"
    return f"{scheme}://{rest}"


def url_secrets(url: str) -> list[str]:
    """The URL's password, the pieces a parser splitting it at '@' would show (as a host), and query secrets."""
    rest = url.split("://", 1)[-1]
    at = rest.rfind("@")
    user, colon, password = rest[:at].partition(":") if at != -1 else ("", "", "")
    found = [password, *password.split("@")] if colon and "/" not in user else []
    found += [m.group(2) for m in _SECRET_PAIR.finditer(url)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """A driver's message about `url` with the URL's secrets removed, wherever the driver quoted them."""
    text = redact(text)
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def redact(text: str) -> str:
    """Text (a storage URL, or a message quoting one) with every password and secret replaced by ***.

    Covers each form SQLAlchemy passes on: `user:password@host` (the password may contain '@' or '/'),
    query parameters such as `?password=...` or `?sslpassword=...`, and libpq-style `password=...` pairs.
    """
    return _SECRET_PAIR.sub(r"\1=***", _URL.sub(lambda m: _redact_url(m.group(0)), text))


def without_password(url: str) -> str:
    """The URL with its password and secret query parameters left out (a driver then reads PGPASSWORD, ~/.pgpass).

    A database URL goes through SQLAlchemy's own parser (`make_url`, the password replaced by None and the secret
    query keys dropped), so it comes out as SQLAlchemy will read it. SQLAlchemy splits `user:sec@ret@host` at the first
    '@' (the host would be `ret@host`, and the rest of the password printed), so a URL with more than one '@' before
    its host is cut at the last one here instead; journal paths are no URLs and come back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if rest.split("/", 1)[0].count("@") <= 1:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            parsed = None
        if parsed is not None:
            secret = [k for k in parsed.query if _SECRET_PAIR.fullmatch(f"{k}=x")]
            # URL is a NamedTuple: its `set(password=None)` leaves the password as it is (None means "unchanged")
            bare = parsed._replace(password=None).difference_update_query(secret)
            return bare.render_as_string(hide_password=False)
    at = rest.rfind("@")
    if at != -1:
        user, colon, _ = rest[:at].partition(":")
        if colon and "/" not in user:
            rest = f"{user}{rest[at:]}"
    base, question, query = rest.partition("?")
    if question:
        kept = [pair for pair in query.split("&") if not _SECRET_PAIR.fullmatch(pair)]
        rest = base + ("?" + "&".join(kept) if kept else "")
    return f"{scheme}://{rest}"


def is_journal(url: str) -> bool:
    """Whether a storage URL names a journal file (`journal:PATH` or a path ending in .log)."""
    return url.startswith("journal:") or ("://" not in url and url.endswith(".log"))


def journal_path(url: str) -> Path:
    """File path of a journal storage URL."""
    return Path(url[len("journal:"):] if url.startswith("journal:") else url)


def _open_journal(path: Path, repair: bool, create: bool) -> BaseStorage:
    if not path.parent.is_dir():
        raise InputError(f"storage folder {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise InputError(f"journal {path} is not a file")
    if not create and not path.exists():
        raise InputError(f"journal {path} does not exist")
    try:
        if not repair:  # read-only commands leave the file alone; they say what the reader skips
            tail = find_torn_tail(path)
            if tail is not None and not tail.terminated:  # a complete damaged line: the reader's own warning
                log.warning("%s; skipped it (run or worker cuts it, keeping a backup)", describe_tail(path, tail))
        return JournalStorage(SafeJournalBackend(path, repair=repair))
    except StorageFullError:
        raise
    except OSError as exc:
        if is_no_space(exc):
            raise StorageFullError(path) from None
        raise InputError(f"journal {path}: cannot open ({exc.strerror or exc})") from None


def sqlite_file(url: str) -> Path | None:
    """The database file a `sqlite:` URL names (None: in memory, or a `file:` URI that SQLite parses itself)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


# Optuna reads a trial's values, attributes and parameters by trial id, once or more per trial. PostgreSQL plans a
# small table's lookup as a sequential scan, and psycopg's prepared statements keep that plan as the table grows:
# the rows read per trial then grew with the study (trial_values: 1 scan of up to half the table per trial,
# 1,532 rows read per trial at 1,000 trials against 499 at 100; benchmarks/RESULTS.md, section 8). Every such
# lookup has an index, which this setting makes the planner use.
PG_OPTIONS = "-c enable_seqscan=off"


def _postgres_kwargs(url: str) -> dict:
    """SQLAlchemy engine arguments for a PostgreSQL URL through psycopg (3 or 2): `PG_OPTIONS` added to any
    `options` the URL carries; nothing for other URLs and drivers."""
    scheme = url.split("://", 1)[0]
    if scheme not in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2", "postgres"):
        return {}
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        theirs = make_url(url).query.get("options", "")
    except (ArgumentError, ValueError):
        return {}
    theirs = " ".join(theirs) if isinstance(theirs, tuple) else theirs
    return {"connect_args": {"options": f"{theirs} {PG_OPTIONS}".strip()}}


def open_storage(url: str, repair: bool = True, create: bool | None = None) -> BaseStorage:
    """An Optuna storage for `journal:PATH`, `sqlite:///...`, `postgresql://...` or any SQLAlchemy URL.

    A journal whose last line was torn by an interrupted write is repaired first (the cut bytes are kept
    in a backup file next to it); with `repair=False` (read-only use) the file is left alone and a warning
    says which line the reader skips. `create` (default: `repair`) lets a missing journal or SQLite file be
    created; without it a missing one is an InputError naming it, and nothing is written.
    """
    create = repair if create is None else create
    if is_journal(url):
        return _open_journal(journal_path(url), repair, create)
    if "://" not in url:
        raise InputError(f"storage {redact(url)!r} is neither journal:PATH nor a database URL (sqlite:///..., postgresql://...)")
    kwargs = _postgres_kwargs(url)
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # many worker processes write to one file
        database = sqlite_file(url)
        if not create and database is not None and not database.is_file():
            raise InputError(f"storage {redact(url)}: no such database file {database.absolute()} (read-only commands and workers create none)")
    try:
        return RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=False)
    except (ImportError, ModuleNotFoundError) as exc:
        raise InputError(f"storage {redact(url)}: missing database driver ({exc}); for PostgreSQL install the "
                         "'postgres' extra") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("; a '@' in the password must be written %40" if any("@" in s for s in url_secrets(url)) else "")
        raise InputError(f"storage {redact(url)}: cannot connect ({_scrub(first, url)}){hint}") from None


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines ("A new study created in ...") left out of what a command prints."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def load_study(name: str, storage: BaseStorage | str) -> optuna.Study:
    """An existing study, or InputError naming the studies that do exist."""
    store = open_storage(storage) if isinstance(storage, str) else storage
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = optuna.get_all_study_names(store)
        raise InputError(f"no study {name!r} in this storage (studies: {', '.join(names) or 'none'})") from None
