"""Finding, reading and merging design-space files (YAML, safe-loaded, `extends` resolved)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from anynet_search.spaces.params import SpaceError

TOP_KEYS = {"name", "description", "extends", "family", "resolution", "stages", "fixed", "parameters",
            "constraints", "band"}


def bundled_dir() -> Path:
    """Folder of the bundled space files (`search_spaces/` of the checkout; ANYNET_SEARCH_SPACES overrides)."""
    override = os.environ.get("ANYNET_SEARCH_SPACES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "search_spaces"


def list_spaces() -> list[str]:
    """Names of the bundled design spaces, sorted."""
    folder = bundled_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def locate(name_or_path: str | os.PathLike, relative_to: Path | None = None) -> Path:
    """Path of a space given a bundled name, a file path, or a name relative to an extending file."""
    text = str(name_or_path)
    candidates = [Path(text)]
    if relative_to is not None:
        candidates += [relative_to / text, relative_to / f"{text}.yaml"]
    candidates.append(bundled_dir() / f"{text}.yaml")
    for c in candidates:
        if c.is_file():
            return c
    known = ", ".join(list_spaces()) or "none found"
    raise SpaceError(f"{text}: no such space file or bundled space (bundled: {known})")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())  # data only: safe_load never constructs objects
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise SpaceError(f"{path}: not valid YAML ({first})") from None
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


def read_space_file(name_or_path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The fully merged (extends resolved) raw mapping of a space and the path it came from."""
    path = locate(name_or_path)
    chain: list[Path] = []
    data: dict[str, Any] = {}
    current: Path | None = path
    layers = []
    while current is not None:
        if current.resolve() in chain:
            raise SpaceError(f"{path}: extends forms a cycle through {current}")
        chain.append(current.resolve())
        layer = _read(current)
        layers.append(layer)
        parent = layer.get("extends")
        if parent is not None and not isinstance(parent, str):
            raise SpaceError(f"{current}: extends must be a space name or path, got {parent!r}")
        current = locate(parent, current.parent) if parent else None
    for layer in reversed(layers):
        data = _merge(data, {k: v for k, v in layer.items() if k != "extends"})
    data.setdefault("name", path.stem)
    data["name"] = layers[0].get("name", path.stem)  # a child never inherits its parent's name
    if "description" not in layers[0]:  # nor its description, which describes the parent's ranges
        data.pop("description", None)
    return data, path


def spec_hash(data: dict[str, Any]) -> str:
    """Stable short hash of a merged space definition (recorded with every trial)."""
    canonical = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
