import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # lets tests import the shared `strategies` helpers
torch.set_num_threads(1)  # the suite runs many tiny models: one thread each is fastest on 2 cores

# `run`s record themselves for the runs started beside them (study.local_runs): tests see only this
# session's runs, not those of other test sessions on the machine, so their worker counts do not depend on
# what else runs
if "ANYNET_SEARCH_RUNS_DIR" not in os.environ:
    os.environ["ANYNET_SEARCH_RUNS_DIR"] = tempfile.mkdtemp(prefix="anynet-search-test-runs-")
    atexit.register(shutil.rmtree, os.environ["ANYNET_SEARCH_RUNS_DIR"], True)

import pytest  # noqa: E402

#: The slow tier, left out by the quick one (`pytest -m "not slow"`): whole modules whose tests run real studies
#: in subprocesses, and single slow tests elsewhere (node ids without parameters). CI runs every test.
SLOW_MODULES: frozenset[str] = frozenset({
    "test_scenarios", "test_report_browser", "test_launch", "test_study", "test_bad_inputs", "test_resource_limits",
    "test_journal_faults", "test_in_flight", "test_honest_cli", "test_cli_study", "test_cli_samplers",
    "test_settings_compat", "test_fidelity", "test_progression", "test_packaging", "test_derive_cli",
    "test_run_folder", "test_tickets", "test_export_targets",
})
SLOW_TESTS: frozenset[str] = frozenset()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tier (`SLOW_MODULES`, `SLOW_TESTS`) with `slow`."""
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        if module in SLOW_MODULES or item.nodeid.split("[", 1)[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
