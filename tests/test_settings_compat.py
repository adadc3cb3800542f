"""Studies stored by older versions, whose settings carry the retired `max_failures` key, still resume and report."""

import subprocess
import sys

import optuna

from anynet_search.reporting.results import open_run
from anynet_search.study.plan import SETTINGS_ATTR, StudySettings
from anynet_search.study.storage import open_storage

DRY = "anynet_search.study.dry_run:pseudo_error"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "anynet_search", *args], capture_output=True, text=True)


def test_a_study_with_the_retired_max_failures_key_resumes(tmp_path):
    run = ["run", "--space", "anynet_xa_tiny", "--workers", "1", "--dataset", "synthetic:64", "--out", str(tmp_path),
           "--objective", DRY, "--no-analyze"]
    first = cli(*run, "--trials", "3")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "anynet_xa_tiny-synthetic-random-e8-s0"
    url, study = open_run(folder)
    # what versions before the field was retired wrote
    optuna.load_study(study_name=study.study_name, storage=open_storage(url)).set_user_attr(
        SETTINGS_ATTR, {**study.user_attrs[SETTINGS_ATTR], "max_failures": 0})
    assert "max_failures" not in StudySettings.from_study(open_run(folder)[1]).to_dict()
    resumed = cli(*run, "--trials", "5")
    assert resumed.returncode == 0, resumed.stderr
    status = cli("status", str(folder))
    assert status.returncode == 0, status.stderr
    assert "5/5 completed" in status.stdout
