"""Finding, reading and merging design-space files (YAML, safe-loaded, `extends` resolved)."""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from anynet_search.errors import yaml_problem
from anynet_search.spaces.params import SpaceError

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

TOP_KEYS = {"name", "description", "extends", "family", "resolution", "stages", "fixed", "parameters",
            "constraints", "band"}


def bundled_dir() -> Traversable:
    """Folder of the bundled space files: `anynet_search/search_spaces` (ANYNET_SEARCH_SPACES overrides).

    Read through importlib.resources, so it is found in an editable checkout, an installed wheel and a
    zipped package alike (there it is not a `Path`; its entries still read with `read_text`).
    """
    override = os.environ.get("ANYNET_SEARCH_SPACES")
    if override:
        return Path(override)
    return resources.files("anynet_search") / "search_spaces"


def list_spaces() -> list[str]:
    """Names of the bundled design spaces, sorted."""
    folder = bundled_dir()
    if not folder.is_dir():
        return []
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def locate(name_or_path: str | os.PathLike, relative_to: Traversable | None = None) -> tuple[Traversable, Traversable]:
    """(file, its folder) of a space given a file path, a name relative to an extending file's folder,
    or a bundled name."""
    text = str(name_or_path)
    candidates: list[tuple[Traversable, Traversable]] = [(Path(text), Path(text).parent)]
    if relative_to is not None:
        for file in (relative_to / text, relative_to / f"{text}.yaml"):
            candidates.append((file, file.parent if isinstance(file, Path) else relative_to))
    candidates.append((bundled_dir() / f"{text}.yaml", bundled_dir()))
    for file, folder in candidates:
        if file.is_file():
            return file, folder
    known = ", ".join(list_spaces()) or "none found"
    raise SpaceError(f"{text}: no such space file or bundled space (bundled: {known})")


def _read(path: Traversable) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # data only: safe_load never constructs objects
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: a space file must be a YAML mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise SpaceError(f"{path}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(TOP_KEYS))}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, everything else (lists included) is replaced.

    A parameter's spec is replaced whole (a child that gives `values` drops the parent's low/high).
    """
    out = dict(base)
    for key, value in over.items():
        if key == "parameters" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_space_file(name_or_path: str | os.PathLike) -> tuple[dict[str, Any], Traversable]:
    """The fully merged (extends resolved) raw mapping of a space and the file it came from."""
    path, folder = locate(name_or_path)
    chain: list[str] = []
    data: dict[str, Any] = {}
    current: Traversable | None = path
    layers = []
    while current is not None:
        key = str(current.resolve()) if isinstance(current, Path) else str(current)
        if key in chain:
            raise SpaceError(f"{path}: extends forms a cycle through {current}")
        chain.append(key)
        layer = _read(current)
        layers.append(layer)
        parent = layer.get("extends")
        if parent is not None and not isinstance(parent, str):
            raise SpaceError(f"{current}: extends must be a space name or path, got {parent!r}")
        current, folder = locate(parent, folder) if parent else (None, folder)
    for layer in reversed(layers):
        data = _merge(data, {k: v for k, v in layer.items() if k != "extends"})
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else Path(path.name).stem
    data["name"] = layers[0].get("name", stem)  # a child never inherits its parent's name
    if "description" not in layers[0]:  # nor its description, which describes the parent's ranges
        data.pop("description", None)
    return data, path


def spec_hash(data: dict[str, Any]) -> str:
    """Stable short hash of a merged space definition (recorded with every trial)."""
    canonical = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
