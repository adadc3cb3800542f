"""The package's shape (issue 19): folders that follow the data flow, small modules, a short top level."""

from pathlib import Path

import anynet_search

PACKAGE = Path(anynet_search.__file__).parent
MAX_LINES = 450  # a module longer than this does more than one job: split it by job
MAX_TOP_LEVEL = 12
FOLDERS = ("models", "spaces", "training", "study", "analysis", "reporting")


def test_no_module_is_longer_than_450_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_top_level_holds_at_most_12_modules_beside_the_data_flow_folders():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL, modules
    for folder in FOLDERS:
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
