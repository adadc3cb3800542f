"""Imports follow the layers: analysis and the results loader never pull in torch, workers or the trainer."""

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import anynet_search
import anynet_search.study

HEAVY = ("torch", "multiprocessing", "anynet_search.training.train", "anynet_search.models.model",
         "anynet_search.study.worker", "anynet_search.study.runner")


def imported_modules(code: str) -> set[str]:
    """Every module `python -X importtime -c code` imports in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          check=True)
    rows = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return set(rows[1:])  # the first row is the header


@pytest.mark.parametrize("code", ["import anynet_search.analysis",
                                  "from anynet_search.reporting.results import load_results",
                                  "import anynet_search"])
def test_analysis_and_results_do_not_import_torch_or_the_trainer(code):
    mods = imported_modules(code)
    assert "anynet_search" in mods  # the measurement itself works
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == []


def test_every_public_name_is_importable_from_the_package():
    for name in anynet_search.__all__:
        assert getattr(anynet_search, name) is not None
    assert callable(anynet_search.build_model) and callable(anynet_search.complexity)
    assert callable(anynet_search.regnet)  # a function, not the submodule of the same name
    for name in anynet_search.study.__all__:
        assert getattr(anynet_search.study, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        anynet_search.nope  # noqa: B018


def test_version_is_written_once_in_pyproject():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    written = re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1)
    assert anynet_search.__version__ == version("anynet-search") == written
    source = (Path(anynet_search.__file__)).read_text()
    assert version("anynet-search") not in source
