"""Build the API reference from the docstrings with pdoc: `python .ci/api_docs.py OUT_FOLDER` writes
OUT_FOLDER/index.html and a page per public module. Any pdoc warning (a name in `__all__` that does not resolve,
a docstring reference it cannot follow) fails the build, so the reference cannot rot quietly; `.ci/run` runs it."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.extract
import pdoc.render

import anynet_search


def public_modules() -> list[str]:
    """Every module of the package without a private part in its name."""
    found = pkgutil.walk_packages(anynet_search.__path__, "anynet_search.")
    return ["anynet_search", *(m.name for m in found if not any(p.startswith("_") for p in m.name.split(".")))]


def specs() -> list[str]:
    """The modules to name to pdoc: it walks a package's submodules itself unless `__all__` hides them, and a
    module named twice is a warning, so each is named only where no named package reaches it."""
    named: list[str] = []
    reached: set[str] = set()
    for name in public_modules():
        if name in reached:
            continue
        module = importlib.import_module(name)
        for lazy in getattr(module, "__all__", []):  # lazily exported names (module __getattr__) resolved once
            getattr(module, lazy)
        named.append(name)
        reached |= set(pdoc.extract.walk_specs([name]))
    return named


def main(out: str) -> int:
    """Write the reference into `out`; 1 (with the warnings) if pdoc warned."""
    pdoc.render.configure(docformat="markdown", show_source=False)  # `code` in docstrings; no source: seconds
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules = specs()
        pdoc.pdoc(*modules, output_directory=Path(out))
    problems = [w for w in caught if "pdoc" in Path(w.filename or "").parts]
    for w in problems:
        print(f"api docs: {w.message}", file=sys.stderr)
    print(f"api docs: {len(modules)} modules named, {len(list(Path(out).rglob('*.html')))} pages in {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "api-docs"))
