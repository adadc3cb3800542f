"""Settings stored by other versions: older layouts (no format version, the retired `max_failures` key, no
trainer dict) resume and report; a newer layout, or keys a version does not know or misses, is one line naming
both versions (the bad-input table runs it through every command)."""

import subprocess
import sys

import optuna
import pytest

from anynet_search.errors import InputError
from anynet_search.reporting.results import open_run
from anynet_search.study.settings import SETTINGS_ATTR, SETTINGS_FORMAT, SettingsError, StudySettings
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


def test_settings_of_the_older_layout_are_read_with_defaults_by_every_command(tmp_path):
    """Format 1 stored no version and (hand-written or older still) may lack the trainer dict: run, worker,
    status, analyze and derive read it with the defaults, and a resumed run stores the current format."""
    run = ["run", "--space", "anynet_xa_tiny", "--workers", "1", "--dataset", "synthetic:64", "--out",
           str(tmp_path), "--objective", DRY, "--no-analyze"]
    assert cli(*run, "--trials", "3").returncode == 0
    folder = tmp_path / "anynet_xa_tiny-synthetic-random-e8-s0"
    url, study = open_run(folder)
    stored = study.user_attrs[SETTINGS_ATTR]
    assert stored["format"] == SETTINGS_FORMAT and stored["written_by"]
    old = {k: v for k, v in stored.items() if k not in ("format", "written_by", "train")}
    stored_study = optuna.load_study(study_name=study.study_name, storage=open_storage(url))
    stored_study.set_user_attr(SETTINGS_ATTR, old)
    # the trainer's defaults, and the one augmentation every study before format 3 trained with
    assert StudySettings.from_study(open_run(folder)[1]).train == {"augment": "shift"}
    status = cli("status", str(folder))
    assert status.returncode == 0 and "dataset synthetic:64, seed 0" in status.stdout, status.stderr
    for command in (["analyze", str(folder), "--out", str(tmp_path / "report")],
                    ["derive", str(folder), "--out", str(tmp_path / "d.yaml")],
                    ["worker", "--study", study.study_name, "--storage", url, "--objective", DRY]):
        done = cli(*command)
        assert done.returncode == 0, (command, done.stderr)
    resumed = cli(*run, "--trials", "4")  # the same trainer: the defaults compare equal to the empty dict
    assert resumed.returncode == 0, resumed.stderr
    assert open_run(folder)[1].user_attrs[SETTINGS_ATTR]["format"] == SETTINGS_FORMAT


def test_settings_of_a_newer_layout_or_with_keys_missing_are_one_line_naming_both_versions():
    good = {"space": {}, "space_source": "x", "space_hash": "h", "sampler": "random", "seed": 0,
            "n_trials": 3, "dataset": "digits", "train": {}}
    assert StudySettings.from_dict(good).n_trials == 3
    ahead = SETTINGS_FORMAT + 1
    newer = rf"^study 's' was stored by anynet-search 9\.1 in settings format {ahead}; this anynet-search \(.+\) "
    newer += "reads "
    with pytest.raises(SettingsError, match=newer + rf"settings formats 1\.\.{SETTINGS_FORMAT}: upgrade"):
        StudySettings.from_dict({**good, "format": ahead, "written_by": "9.1", "new": 1}, "s")
    with pytest.raises(SettingsError, match=r"lack dataset, seed;"):
        StudySettings.from_dict({k: v for k, v in good.items() if k not in ("seed", "dataset")}, "s")
    with pytest.raises(SettingsError, match=r"stored trainer settings .* have warp_speed, unknown"):
        StudySettings.from_dict({**good, "train": {"warp_speed": 9}}, "s")
    with pytest.raises(SettingsError, match=r"format 'two' is not a version number"):
        StudySettings.from_dict({**good, "format": "two"}, "s")
    assert issubclass(SettingsError, InputError)


def test_a_study_under_the_default_name_of_older_versions_is_resumed_by_the_same_command(tmp_path):
    """Default names gained the epochs (-e8-); the command that made a study under the older name resumes it there,
    and one with other epochs starts its own study instead of being refused."""
    run = ["run", "--space", "anynet_xa_tiny", "--workers", "1", "--dataset", "synthetic:64", "--out", str(tmp_path),
           "--objective", DRY, "--no-analyze"]
    legacy = "anynet_xa_tiny-synthetic-random-s0"
    assert cli(*run, "--trials", "2", "--study", legacy).returncode == 0
    resumed = cli(*run, "--trials", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {legacy!r}" in resumed.stdout
    assert "3/3 completed" in cli("status", str(tmp_path / legacy)).stdout
    assert not (tmp_path / "anynet_xa_tiny-synthetic-random-e8-s0").exists()
    other = cli(*run, "--trials", "2", "--epochs", "4")
    assert other.returncode == 0, other.stderr
    assert "resuming" not in other.stdout
    assert "2/2 completed" in cli("status", str(tmp_path / "anynet_xa_tiny-synthetic-random-e4-s0")).stdout
