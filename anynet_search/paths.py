"""Names and folders a user gives: study names become folder names, output folders must be usable folders.

Checked before anything is written, so a refused command leaves the disk as it was.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from anynet_search.errors import InputError, StorageFullError, is_no_space

MAX_NAME_BYTES = 200  # below every file system's 255-byte name limit, leaving room for suffixes


def check_study_name(name: str, option: str = "--study") -> str:
    """The name if it can be a folder name inside --out: no separators, `.`/`..`, control characters or NUL."""
    problem = None
    if not name or not name.strip():
        problem = "is empty"
    elif name in (".", "..") or "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        problem = "would leave the output folder (no '/', '\\', '.' or '..' in study names)"
    elif any(unicodedata.category(c)[0] == "C" for c in name):
        problem = "contains a control character"
    elif name != name.strip():
        problem = "starts or ends with white space"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise InputError(f"{option} {name!r}: a study name becomes a folder name and this one {problem}")
    return name


def os_reason(exc: OSError) -> str:
    """The OS's words for an OSError ('Permission denied', 'Too many levels of symbolic links', ...)."""
    return exc.strerror or str(exc) or type(exc).__name__


def _first_existing(path: Path, option: str, given: Path) -> Path:
    """The path itself or its nearest existing ancestor; InputError if the path cannot even be looked up (a
    symbolic-link loop, a folder that may not be searched)."""
    for candidate in (path, *path.parents):
        try:
            os.stat(candidate)
        except (FileNotFoundError, NotADirectoryError):  # not there (below a file: its parent says so)
            continue
        except OSError as exc:
            where = "" if candidate == given.absolute() else f"{candidate}: "
            raise InputError(f"{option} {given}: {where}{os_reason(exc)}") from None
        return candidate
    return Path(".")


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """A folder that exists or can be created (nothing is created here); InputError naming the option otherwise."""
    if not str(os.fspath(path)).strip():  # Path("") is ".": an empty option would write into the cwd
        raise InputError(f"{option}: empty path (give a folder, e.g. {option} .)")
    path = Path(path)
    existing = _first_existing(path.absolute(), option, path)
    if existing == path.absolute() and not existing.is_dir():
        raise InputError(f"{option} {path}: exists and is not a folder")
    if not existing.is_dir():
        raise InputError(f"{option} {path}: {existing} is a file, so no folder can be made below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {existing} is not writable")
    return path


def make_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create a folder and its parents; InputError naming the option, the folder and the OS's reason if that
    fails (a place like /proc or /sys, a read-only file system), StorageFullError on a full disk."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_no_space(exc):
            raise StorageFullError(path) from None
        raise InputError(f"{option}: cannot create the folder {path} ({os_reason(exc)})") from None
    return path


def check_out_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """A file path whose folder exists (or can be created) and that is not itself a folder."""
    if not str(os.fspath(path)).strip():
        raise InputError(f"{option}: empty path (give a file name)")
    path = Path(path)
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:  # a symbolic-link loop, a folder that may not be searched
        raise InputError(f"{option} {path}: {os_reason(exc)}") from None
    if path.is_dir():
        raise InputError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{option} {path}: is not writable")
    check_out_dir(path.parent if str(path.parent) else ".", option=f"{option} {path}: its folder")
    return path


def safe_file_name(text: str, default: str = "study") -> str:
    """Text made safe as one file-name component (letters, digits, '.', '_', '-'), e.g. for a study's files."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or default


def derived_space_name(study: str) -> str:
    """The file name of a study's derived space, the same from `derive` and `analyze`: derived_space_STUDY.yaml."""
    return f"derived_space_{safe_file_name(study)}.yaml"


def run_folder_of(run: str | tuple[str, str] | os.PathLike) -> Path | None:
    """The folder a RUN argument's files belong in: a run folder itself, the folder of a `journal:` URL's file;
    None for a database URL (nothing on disk to put them beside)."""
    text = str(run[0] if isinstance(run, tuple) else run)
    if text.startswith("journal:"):
        return Path(text[len("journal:"):]).parent
    if "://" in text:
        return None
    return Path(text)
