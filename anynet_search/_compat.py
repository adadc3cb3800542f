"""Old import paths of the modules that moved into folders keep working for one release, with a warning.

`install()` (called by the package's `__init__`) adds a finder for the old paths in `MOVED`: importing
`anynet_search.complexity` imports `anynet_search.models.complexity`, warns (at the first import) with a
DeprecationWarning that names the new path, and binds the old name to the *same* module object, so
`anynet_search.complexity` (as a module in `sys.modules`) is `anynet_search.models.complexity` and
monkeypatching either patches both. Names that left a module which stayed (see `MOVED_NAMES`) are served
by that module's `__getattr__` (`moved_names`) with the same warning. Delete this module, its call in
`__init__` and the `__getattr__` lines that use it when the release after the move is out.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

PACKAGE = "anynet_search"

_FOLDERS = {
    "models": ("config", "blocks", "registry", "rules", "counts", "complexity", "model", "regnet",
               "regnet_targets", "zoo", "describe"),
    "training": ("data", "augment", "train", "memory"),
    "reporting": ("results", "plots", "analyze", "report", "export", "status"),
}
#: old module path -> new module path (each module kept its name in its folder)
MOVED: dict[str, str] = {f"{PACKAGE}.{old}": f"{PACKAGE}.{folder}.{old}"
                         for folder, olds in _FOLDERS.items() for old in olds}
# renamed, not moved: `plan` is also the power-planning command; this module holds a study's settings
MOVED[f"{PACKAGE}.study.plan"] = f"{PACKAGE}.study.settings"

#: module that stayed -> (the module its names moved to, those names)
MOVED_NAMES: dict[str, dict[str, str]] = {
    f"{PACKAGE}.study.worker": {
        **dict.fromkeys(("DIED", "HEARTBEAT_SECONDS", "MAX_DEATHS", "STALE_SECONDS", "death_reason", "pid_alive"),
                        f"{PACKAGE}.study.reaper"),
        "FULL_COLLECT_EVERY": f"{PACKAGE}.study.process_health",
    },
}


def _warn(old: str, new: str) -> None:
    """A DeprecationWarning naming the new path, attributed to the line that used the old one."""
    frame = sys._getframe(1)
    # skip the import system (frozen importlib, importlib.import_module) and this module
    while frame.f_back is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                        or frame.f_code.co_filename in (__file__, importlib.__file__)):
        frame = frame.f_back
    warnings.warn_explicit(
        f"{old} is deprecated and will be removed in the next release; use {new}",
        DeprecationWarning, frame.f_code.co_filename, frame.f_lineno,
        module=frame.f_globals.get("__name__", "<string>"),
        registry=frame.f_globals.setdefault("__warningregistry__", {}),
    )


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module of its new path (the same object), warning once."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        """The module of the new path, imported if it is not yet."""
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Undo what the import system set for the old name on the shared module, then warn."""
        module.__spec__ = self.spec  # the import system gave it the old path's spec
        _warn(self.old, self.new)


class _OldPaths(importlib.abc.MetaPathFinder):
    """Finds the old paths in `MOVED`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        """A spec whose loader serves the new module, for an old path; None for anything else."""
        new = MOVED.get(fullname)
        return None if new is None else importlib.machinery.ModuleSpec(fullname, _Alias(fullname, new))


class _Package(types.ModuleType):
    """The package's module type: importing an old module path binds that name on the package (the import
    system does it), which must not replace a public name of the same spelling, such as the function
    `anynet_search.complexity`, with the module `anynet_search.models.complexity`."""

    def __setattr__(self, name: str, value: Any) -> None:
        bound = self.__dict__.get(name, value)
        if isinstance(value, types.ModuleType) and not isinstance(bound, types.ModuleType):
            return
        super().__setattr__(name, value)


def moved_names(module: str) -> Callable[[str], Any]:
    """A module `__getattr__` that serves the names in `MOVED_NAMES[module]` from their new homes, warning."""
    homes = MOVED_NAMES[module]

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        _warn(f"{module}.{name}", f"{homes[name]}.{name}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__


def install() -> None:
    """Serve the old paths (idempotent)."""
    sys.modules[PACKAGE].__class__ = _Package
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldPaths())
