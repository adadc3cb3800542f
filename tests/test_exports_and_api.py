"""Issue 30, items 11 and 14-16: one order for tied models, what one validation image is worth, no Optuna log line in
a run's output; exports that carry their resolution, a pycls export for the pycls release on PyPI, one line for the
models without a RegNet file; the package's public entry points and their runnable examples.

One dry-run study (no training) serves the export tests."""

from __future__ import annotations

import doctest
import importlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import anynet_search
from anynet_search.analysis.best import rank_by_error
from anynet_search.analysis.studies import error_summary, image_points
from anynet_search.cli import main
from anynet_search.models.complexity import complexity
from anynet_search.reporting.export import declined_line, export_run
from anynet_search.reporting.export_configs import PYCLS_ANYNET_KEYS, PYCLS_VERSION, pycls_config
from anynet_search.study import RunOptions, Worker, prepare_study

DRY = "anynet_search.study.dry_run:pseudo_error"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports")
    study, _, _, run_dir = prepare_study(RunOptions(space="anynet_xa_tiny", trials=6, workers=1,
                                                    dataset="synthetic:64", out=str(out), objective=DRY))
    Worker(study, objective=DRY).run()
    return run_dir


# ------------------------------------------------------------------------------------------ item 11
def test_tied_models_rank_by_trial_number_everywhere():
    df = pd.DataFrame({"trial": [5, 2, 9, 1, 7, 3], "error": [2.083, 2.083, 1.0, 2.083, 2.083, 2.083]})
    assert rank_by_error(df.sample(frac=1, random_state=0))["trial"].tolist() == [9, 1, 2, 3, 5, 7]
    assert error_summary(df.assign(error=[2.083] * 6))["best_trial"] == 1  # not the first row's trial 5


def test_status_and_the_report_list_tied_models_in_the_same_order(dry_run, tmp_path, capsys):
    from anynet_search.reporting.report import _best_models
    from anynet_search.reporting.results import load_results

    df = load_results(dry_run).assign(error=2.0)  # every model tied
    table = _best_models(df, 5)
    assert [int(r[0]) for r in table.rows] == sorted(df["trial"])[:5]
    assert main(["status", str(dry_run), "--top", "6"]) == 0
    out = capsys.readouterr().out
    listed = [int(line.split()[0]) for line in out.split("test_error reported separately):")[1].splitlines()[2:]]
    ranked = rank_by_error(load_results(dry_run))["trial"].tolist()
    assert listed == ranked


def test_one_validation_image_is_named_in_points_when_errors_are_image_counts():
    errors = 100 * np.array([1, 3, 7, 12, 40]) / 144  # digits: 144 validation images
    assert image_points(errors) == pytest.approx(100 / 144)
    assert image_points(np.array([1.2345, 2.71828, 3.14159])) is None  # a dry run's continuous errors
    assert image_points(np.array([5.0])) is None


def test_a_run_prints_no_optuna_log_line(tmp_path, capfd):
    assert main(["run", "--trials", "2", "--workers", "1", "--dataset", "synthetic:64", "--objective", DRY,
                 "--out", str(tmp_path), "--no-analyze"]) == 0
    captured = capfd.readouterr()
    assert "[I " not in captured.out + captured.err and "A new study created" not in captured.err


# ------------------------------------------------------------------------------------------ item 14
def test_an_export_records_its_resolution_and_describe_counts_at_it(dry_run, tmp_path, capsys):
    (first, *_) = export_run(dry_run, 2, "yaml", tmp_path)
    data = yaml.safe_load(first.read_text())
    cfg = anynet_search.load_config(first)
    assert data["resolution"] == 16 and data["input"] == f"{cfg.in_channels}x16x16"
    assert data["num_classes"] == cfg.num_classes == 10
    assert anynet_search.read_config_file(first).resolution == 16
    assert complexity(cfg, 16).flops == data["flops"] != complexity(cfg, 224).flops
    capsys.readouterr()
    assert main(["describe", str(first)]) == 0
    out = capsys.readouterr().out
    assert f"flops: {data['flops']:,} (" in out  # the export's own flops, not those at 224 px
    assert "input: 3x16x16" in out and "the one this export's study trained at" in out
    model = anynet_search.build_model(cfg)  # the export's classes and channels
    import torch

    assert model(torch.zeros(2, cfg.in_channels, 16, 16)).shape == (2, data["num_classes"])


# ------------------------------------------------------------------------------------------ item 15
def _pycls_keys() -> tuple[set[str], object | None]:
    """The ANYNET keys pycls PYCLS_VERSION knows: its own config where pycls imports (the CI's builders venv installs
    it without its dependencies), else the list restated from its pycls/core/config.py."""
    try:
        config = importlib.import_module("pycls.core.config")
    except ImportError:
        if os.environ.get("ANYNET_REQUIRE_BUILDERS"):
            raise
        return set(PYCLS_ANYNET_KEYS), None
    return set(config.cfg.ANYNET.keys()), config


def test_the_pycls_export_holds_only_keys_pycls_0_1_1_knows(dry_run, tmp_path):
    keys, real = _pycls_keys()
    assert keys == set(PYCLS_ANYNET_KEYS) and PYCLS_VERSION == "0.1.1"
    paths = [p for p in export_run(dry_run, 3, "pycls", tmp_path) if p.name.endswith(".pycls.yaml")]
    assert paths
    for path in paths:
        data = yaml.safe_load(path.read_text())
        assert set(data["ANYNET"]) <= keys, set(data["ANYNET"]) - keys
        assert f"pycls {PYCLS_VERSION}" in path.read_text().splitlines()[1]
        if real is not None:  # pycls's own loader takes the file (yacs refuses any key it does not know)
            cfg = real.cfg.clone()
            cfg.merge_from_file(str(path))
            assert list(cfg.ANYNET.DEPTHS) == data["ANYNET"]["DEPTHS"]


def test_a_head_conv_is_written_only_with_the_version_that_knows_it_named():
    cfg = anynet_search.regnet_zoo()["RegNetX-200MF"]
    assert "HEAD_W" not in pycls_config(cfg)["ANYNET"]
    from anynet_search.reporting.export_configs import pycls_notes

    headed = cfg.replace(head_width=512)
    assert pycls_config(headed)["ANYNET"]["HEAD_W"] == 512
    assert any("needs a pycls newer than 0.1.1" in n for n in pycls_notes(headed))


def test_models_without_a_regnet_file_get_one_summary_line(dry_run, tmp_path, capsys):
    declined: list[tuple[int, str]] = []
    export_run(dry_run, 6, "yaml", tmp_path / "direct", declined=declined)
    assert main(["export", str(dry_run), "--top", "6", "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out.splitlines()
    summary = [line for line in out if "RegNet" in line]
    assert summary == ([declined_line(declined, 6)] if declined else [])
    assert not any(line.startswith("rank ") for line in out)
    assert declined_line([(1, "a"), (2, "b"), (3, "a")], 5) == "no RegNet file for 3 of 5 models (ranks 1, 3: a; rank 2: b)"


# ------------------------------------------------------------------------------------------ item 16
def test_the_public_entry_points_import_from_the_package_top():
    for name in ("load_config", "save_config", "read_config_file", "train", "TrainConfig", "load_dataset",
                 "seed_everything", "build_model", "edf", "compare_edfs", "expected_best_error", "good_ranges",
                 "derive_constraints", "rank_by_error", "load_results"):
        assert name in anynet_search.__all__ and callable(getattr(anynet_search, name)), name


def test_expected_best_error_takes_one_sample_size_and_refuses_nonsense_in_one_line():
    from anynet_search import expected_best_error

    errors = [1.0, 2.0, 3.0, 4.0]
    assert expected_best_error(errors, 8)["n"].tolist() == [8]  # a raw TypeError before
    with pytest.raises(ValueError, match="ns must be a sample size or a list of them"):
        expected_best_error(errors, "eight")


@pytest.mark.parametrize("module", ["anynet_search", "anynet_search.models.config", "anynet_search.analysis.best",
                                    "anynet_search.analysis.studies", "anynet_search.models.model"])
def test_the_examples_in_the_docstrings_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
