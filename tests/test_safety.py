"""Leaks, escapes, runaway resources and the error contract of the CLI.

Redaction of every credential form SQLAlchemy passes on; study names that would leave --out; the trial
limit; the memory estimate that refuses configs a device cannot hold (as a recorded trial failure) and
spaces whose smallest config cannot fit; `spaces show` describing a file's real ranges; and which errors
the CLI turns into one line (package errors) or lets through with their traceback (bugs, or --debug).
"""

from __future__ import annotations

import errno
import subprocess
import sys

import optuna
import pytest
import torch
import torch.nn.functional as F

from anynet_search import AnyNetConfig, build_model, complexity, regnet_zoo
from anynet_search.cli import CliError, main
from anynet_search.errors import AnynetSearchError, InputError, StorageFullError
from anynet_search.paths import check_study_name
from anynet_search.spaces import SpaceError, load_space
from anynet_search.study import RunOptions, Worker, prepare_study, redact
from anynet_search.study import objective as objective_module
from anynet_search.study.journal import JournalCorruptError
from anynet_search.study.runner import MAX_TRIALS
from anynet_search.training.data import DatasetError
from anynet_search.training.memory import SAVED_BYTES_PER_ACT, check_fits, config_memory
from anynet_search.training.train import TrainConfig

# ------------------------------------------------------------------------------------------ redaction
SECRET_URLS = [
    ("postgresql://alice:s3cret@db.example:5432/studies", ["s3cret"], "postgresql://alice:***@db.example:5432/studies"),
    ("postgresql://alice@db.example/studies?password=s3cret", ["s3cret"],
     "postgresql://alice@db.example/studies?password=***"),
    ("postgresql://alice:sec@ret@db.example/studies", ["sec@ret", "ret@"], "postgresql://alice:***@db.example/studies"),
    ("postgresql+psycopg://alice:pa/ss@db.example/studies", ["pa/ss"], "postgresql+psycopg://alice:***@db.example/studies"),
    ("mysql+pymysql://bob:pw%40x@h/db?charset=utf8&passwd=other", ["pw%40x", "other"],
     "mysql+pymysql://bob:***@h/db?charset=utf8&passwd=***"),
    ("postgresql://h/db?user=carol&sslpassword=k3y&application_name=x", ["k3y"],
     "postgresql://h/db?user=carol&sslpassword=***&application_name=x"),
    ("could not connect: host=h password=s3cret dbname=x", ["s3cret"], "could not connect: host=h password=*** dbname=x"),
]


@pytest.mark.parametrize("text,secrets,expected", SECRET_URLS)
def test_every_credential_form_is_redacted(text, secrets, expected):
    shown = redact(text)
    assert shown == expected
    assert not any(s in shown for s in secrets)


def test_redaction_leaves_urls_without_credentials_alone():
    for url in ("sqlite:///runs/x.db", "journal:runs/a/journal.log", "postgresql://alice@db/x", "sqlite:////a@b/x.db"):
        assert redact(url) == url


# ------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("name", ["../../etc/evil", "a/b", "a\\b", "..", ".", "", " ", "tab\there", "nul\x00",
                                  "new\nline", "x" * 201, " padded"])
def test_study_names_that_cannot_be_a_folder_inside_out_are_refused(name):
    with pytest.raises(InputError, match="study name becomes a folder name"):
        check_study_name(name)


def test_good_study_names_pass():
    for name in ("anynet_xa_tiny-digits-random-s0", "mein Versuch 2", "étude.v2"):
        assert check_study_name(name) == name


def test_prepare_study_refuses_an_escaping_name_before_writing(tmp_path):
    opts = RunOptions(study="../escape", out=str(tmp_path / "out"), dataset="synthetic:64", trials=2)
    with pytest.raises(InputError, match="escape"):
        prepare_study(opts)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


# ------------------------------------------------------------------------------------------ runaway resources
def test_absurd_trial_counts_are_refused_with_the_limit_before_anything_is_queued(tmp_path):
    with pytest.raises(InputError, match=f"limit of {MAX_TRIALS:,}"):
        prepare_study(RunOptions(trials=1_000_000_000, out=str(tmp_path / "out"), dataset="synthetic:64"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cfg,resolution", [
    (load_space("anynet_xa_tiny").sample_many(1, seed=3)[0].config, 16),
    (load_space("regnet_y_tiny").sample_many(1, seed=3)[0].config, 16),
    (regnet_zoo()["RegNetX-200MF"], 32),
])
def test_the_activation_factor_covers_what_autograd_saves(cfg, resolution):
    """SAVED_BYTES_PER_ACT must cover the tensors autograd keeps for backward (parameters excluded)."""
    model = build_model(cfg).to(memory_format=torch.channels_last).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(8, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long))
    per_act = sum(saved.values()) / (complexity(cfg, resolution).acts * 8)
    assert 4 <= per_act <= SAVED_BYTES_PER_ACT / 2  # twice what is saved: the backward's own buffers


def test_a_config_too_large_for_the_device_is_refused_before_it_is_built(monkeypatch):
    cfg = AnyNetConfig(depths=[10000] * 4, widths=[64] * 4, bottleneck_ratios=[1] * 4, group_widths=[8] * 4,
                       strides=[1, 2, 2, 2], stem_type="cifar", num_classes=10)
    estimate = config_memory(cfg, 16, TrainConfig())
    assert estimate.total > 100 * 2**30  # ~40,000 blocks: far beyond any machine here
    with pytest.raises(Exception, match=r"model too large: needs about .* to train at batch 64") as info:
        check_fits(cfg, 16, TrainConfig(), "cpu")
    from anynet_search.training.train import TrialFailure

    assert isinstance(info.value, TrialFailure)  # a recorded trial failure, not a crash


def test_a_too_large_trial_is_a_recorded_failure_and_never_built(tmp_path, monkeypatch):
    study, *_ = prepare_study(RunOptions(trials=2, out=str(tmp_path), dataset="synthetic:64", study="tight"))
    # a device with 1 KiB free
    monkeypatch.setattr("anynet_search.training.memory.free_memory", lambda device: 1024)
    monkeypatch.setattr(objective_module, "build_model", lambda cfg: pytest.fail("built a model that cannot fit"))
    Worker(study).run(max_trials=1)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert len(failed) == 1
    reason = failed[0].user_attrs["failure"]
    assert reason.startswith("model too large: needs about") and "cpu has 1.0 KiB free" in reason


def test_spaces_show_describes_the_files_real_ranges_not_its_parents(tmp_path, capsys):
    space_file = tmp_path / "deep.yaml"
    space_file.write_text("extends: anynet_xa_tiny\nparameters:\n  d: {values: [10000]}\nband: null\n")
    assert main(["spaces", "show", str(space_file)]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "depth 1..4" not in out and "d 10000" in first and "no band" in first
    assert "params 2,960,954..2,078,759,642" in out  # the real complexity range of the file's configs
    assert "training memory (estimated, batch 64" in out and "GiB" in out


# ------------------------------------------------------------------------------------------ error contract
def test_every_user_facing_error_is_a_package_error():
    for cls in (InputError, SpaceError, DatasetError, JournalCorruptError, StorageFullError, CliError):
        assert issubclass(cls, AnynetSearchError)
    assert issubclass(InputError, ValueError)  # library callers catching ValueError keep working
    assert str(StorageFullError("/x/journal.log")) == "no space left on device while writing /x/journal.log"


def test_a_bug_is_not_disguised_as_a_user_error(monkeypatch, capsys):
    def buggy(args):
        raise ValueError("an internal bug")  # the old CLI printed this as a one-line user error, exit 2

    from anynet_search import commands

    monkeypatch.setattr(commands, "cmd_describe", buggy)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["describe", "RegNetX-200MF"])
    assert "internal error" in capsys.readouterr().err


def test_debug_prints_the_traceback_of_a_package_error(capsys):
    assert main(["describe", "RegNetZ-1GF", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("anynet-search describe: error: ")
    assert main(["--debug", "describe", "RegNetZ-1GF"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_full_disk_anywhere_is_one_line_naming_the_file(monkeypatch, capsys, tmp_path):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "report" / "report.html"))

    monkeypatch.setattr("anynet_search.reporting.analyze.analyze_runs", full)
    monkeypatch.setattr("anynet_search.paths.check_out_dir", lambda path, option="--out": path)
    assert main(["analyze", str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err == f"anynet-search analyze: error: no space left on device while writing {tmp_path / 'report' / 'report.html'}\n"


def test_the_installed_entry_point_gives_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "anynet_search", "run", "--train", "lr=abc", "--out", str(tmp_path),
                           "--dataset", "synthetic:64"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "anynet-search run: error: --train: lr must be a finite number, got 'abc'\n"
    assert list(tmp_path.iterdir()) == []
