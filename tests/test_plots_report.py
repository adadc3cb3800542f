"""Figures carry exactly the analysis numbers; the report is self-contained and its derived space loads."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from markupsafe import escape as html_escape
from matplotlib.figure import Figure

from anynet_search.analysis import (
    KEEP,
    VERDICTS,
    complexity_bins,
    edf,
    good_range,
    normalized_weights,
    weighted_mean,
)
from anynet_search.analysis.synthetic import synthetic_results
from anynet_search.models.regnet import fit_regnet, regnet_block_widths
from anynet_search.reporting import plots
from anynet_search.reporting.analyze import analyze_runs
from anynet_search.reporting.results import load_results
from anynet_search.spaces import load_space
from anynet_search.spaces.constraints import FitErrorAtMost, Range
from anynet_search.spaces.derive import derive_space, exact_shrink
from anynet_search.study.runner import RunOptions, prepare_study
from anynet_search.study.worker import Worker

DRY = "anynet_search.study.dry_run:pseudo_error"


def _dry_run(out, space: str, trials: int, sampler: str = "random"):
    opts = RunOptions(space=space, trials=trials, workers=1, dataset="synthetic:64", sampler=sampler,
                      out=str(out), objective=DRY)
    study, _, _, run_dir = prepare_study(opts)
    Worker(study, objective=opts.objective, poll_seconds=0.05).run()
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return _dry_run(out, "anynet_xa_tiny", 32), _dry_run(out, "anynet_xd_tiny", 24)


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return analyze_runs([str(r) for r in runs], out, bins=3, n_boot=200)


# ---------------------------------------------------------------------------------------- the report
def test_report_is_self_contained_html(report):
    html = report.report.read_text()
    assert report.report.name == "report.html"
    images = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(images) == len(report.figures) > 0
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "validation error" in html and "test_error" in html and "reported separately" in html


def test_report_writes_pngs_csvs_and_summary(report, runs):
    for path in report.figures:
        assert path.suffix == ".png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = pd.read_csv(report.results_csv)
    assert len(results) == sum(len(load_results(r)) for r in runs)
    assert {"error", "test_error", "flops", "w1", "run"} <= set(results.columns)
    constraints = pd.read_csv(report.constraints_csv)
    assert constraints.columns[0] == "study"
    assert set(constraints["verdict"]) <= set(VERDICTS)
    assert set(constraints["study"]) == {s.label for s in report.studies}
    text = report.text()
    for s in report.studies:
        assert s.label in text and f"n={s.summary['n']}" in text
    assert str(report.report) in text and str(report.derived_space) in text


def test_report_numbers_come_from_the_frames(report, runs):
    for s, run in zip(report.studies, runs):
        df = load_results(run)
        assert s.summary["n"] == len(df)
        assert s.summary["best_error"] == pytest.approx(df["error"].min())
        assert s.summary["median_error"] == pytest.approx(df["error"].median())
        best = df.loc[df["error"].idxmin()]
        assert s.summary["best_test_error"] == pytest.approx(best["test_error"])
    xa = report.studies[0]
    structural = xa.constraints.set_index("constraint")
    assert structural.loc["shared_b", "shrink_source"] == "exact"
    assert structural.loc["shared_b", "log10_shrink"] == pytest.approx(3 * math.log10(3))


def test_derived_space_loads_and_holds_the_kept_constraints(report):
    path = report.derived_space
    assert path is not None and path.name == f"derived_space_{report.studies[0].label}.yaml"
    space = load_space(path)
    study = report.studies[0]
    assert study.derived_path == path
    kept = [c for c, v in zip(study.constraints["constraint"], study.constraints["verdict"]) if v == KEEP]
    assert kept, "the dry-run study is expected to keep at least one constraint"
    expressible = [c for c in kept if not c.startswith("fit_error")]
    assert set(study.derived.added) == set(expressible) - {n for n, _ in study.derived.skipped}
    for name in study.derived.added:
        if name.startswith("good_range:"):
            assert name.split(":")[1] in space.ranges
    assert space.log10_size == pytest.approx(study.derived.log10_size_after)
    assert space.log10_size <= load_space("anynet_xa_tiny").log10_size


def test_derive_space_maps_verdicts_to_space_file_constraints(tmp_path):
    base = load_space("anynet_xa_tiny")
    table = pd.DataFrame({
        "constraint": ["shared_b", "increasing_widths", "good_range:w3", "fit_error<=q25", "shared_g"],
        "verdict": [KEEP, KEEP, KEEP, KEEP, "reject"],
        "detail": ["b1 = ... = b4", "w1 <= ... <= w4", "16 <= w3 <= 64", "fit_error <= 0.1", "g1 = ... = g4"],
    })
    # the objects derive_constraints records; structural ones are also known by name
    table.attrs["rules"] = {"good_range:w3": Range("w3", 16, 64), "fit_error<=q25": FitErrorAtMost(0.1, 0.25)}
    derived = derive_space(base, table, "test")
    assert derived.added == ["shared_b", "increasing_widths", "good_range:w3"]
    assert [n for n, _ in derived.skipped] == ["fit_error<=q25"]
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(derived.data, sort_keys=False))
    space = load_space(path)
    assert space.shared == {"b"} and space.non_decreasing == {"w"} and space.ranges == {"w3": (16.0, 64.0)}
    assert space.log10_size < base.log10_size


def test_exact_shrink_counts_the_constrained_space():
    xa = load_space("anynet_xa")
    shrink = exact_shrink(xa)
    assert shrink["shared_b"] == pytest.approx(xa.log10_size - load_space("anynet_xb").log10_size)
    assert shrink["shared_b"] == pytest.approx(3 * math.log10(3))
    assert exact_shrink(load_space("anynet_xb"))["shared_b"] == 0.0
    assert exact_shrink(load_space("regnet_x")) == {}


def test_adaptive_study_gets_a_report_without_edf_verdicts(tmp_path, runs):
    """Regression (issue 10): a TPE study's report raised "rows come from non-random sampler(s)" instead."""
    run = _dry_run(tmp_path / "runs", "anynet_xa_tiny", 4, sampler="tpe")
    out = tmp_path / "out"
    summary = analyze_runs([str(run)], out, n_boot=100)
    study = summary.studies[0]
    assert study.adaptive_note.startswith("EDF verdicts left out: 4 of 4 rows come from non-random sampler(s) ['tpe']")
    assert "\n" not in study.adaptive_note
    assert study.constraints is None and study.good_ranges is None and study.derived is None
    assert study.importance is not None and set(study.importance["param"]) >= {"d1", "w1"}
    assert summary.derived_spaces == [] and summary.expected_best is None
    names = {f.stem for f in summary.figures}
    assert not any(n.startswith("edf") for n in names) and f"{study.label}_history" in names
    configs = [p for p in study.exports if not p.name.endswith(".regnet.yaml")]
    assert len(configs) == 4 and all(p.is_file() for p in configs)
    html = summary.report.read_text()
    assert html_escape(study.adaptive_note) in html and "Optimization history" in html and "Parameter importance" in html
    assert "<h3>Constraints</h3>" not in html and "<h3>Good ranges</h3>" not in html
    assert study.adaptive_note in summary.text()

    # next to a random study, only the random one is drawn as an EDF and compared
    mixed = analyze_runs([str(runs[0]), str(run)], tmp_path / "mixed", n_boot=100, importance=False)
    assert mixed.comparisons is None and list(mixed.expected_best.columns) == ["n", mixed.studies[0].label]
    assert mixed.studies[0].constraints is not None and mixed.studies[1].constraints is None

    # forced: the biased EDF verdicts are drawn, under a warning
    summary = analyze_runs([str(run)], out, force=True, n_boot=100, importance=False)
    html = summary.report.read_text()
    assert "forced analysis of a possibly biased sample" in html
    assert summary.studies[0].warning and "WARNING" in summary.text()
    assert summary.studies[0].adaptive_note is None and summary.studies[0].constraints is not None


def test_optimization_history_is_the_running_best_by_trial():
    df = pd.DataFrame({"trial": [3, 0, 2, 1], "error": [1.0, 5.0, 4.0, 2.0]})
    hist = plots.history_of(df)
    assert hist["trial"].tolist() == [0, 1, 2, 3] and hist["best_so_far"].tolist() == [5.0, 2.0, 2.0, 1.0]
    fig = plots.plot_history(df)
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == [5.0, 2.0, 2.0, 1.0]


def test_analyze_runs_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="non-empty list"):
        analyze_runs([], tmp_path)
    with pytest.raises(ValueError, match="not a run folder"):
        analyze_runs([str(tmp_path)], tmp_path / "out")


# ---------------------------------------------------------------------------------------- the plots
@pytest.fixture(scope="module")
def frames():
    return {"A": synthetic_results(60, seed=0), "B": synthetic_results(45, seed=1)}


def test_plot_edfs_lines_are_the_edfs(frames):
    fig = plots.plot_edfs(frames, n_boot=50)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # one band per study
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    for line, label, (name, df) in zip(ax.lines, labels, frames.items()):
        e, F = edf(df["error"])
        np.testing.assert_array_equal(line.get_xdata(), e)
        np.testing.assert_array_equal(line.get_ydata(), F)
        assert label == f"{name}  n={len(df)} | min {df['error'].min():.2f} | mean {df['error'].mean():.2f}"


def test_plot_edfs_normalized_uses_the_weights(frames):
    one = {"A": frames["A"]}
    fig = plots.plot_edfs(one, normalized=True, bins=4, band=False)
    df = frames["A"]
    w = normalized_weights(df["flops"], 4)
    e, F = edf(df["error"], w)
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), F)
    np.testing.assert_array_equal(line.get_xdata(), e)
    assert f"mean {weighted_mean(df['error'], w):.2f}" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert not fig.axes[0].collections


def test_plot_error_vs_param_scatter_and_good_range(frames):
    df = frames["A"]
    fig = plots.plot_error_vs_param(df, "w3")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), df[["w3", "error"]].to_numpy(dtype=float))
    gr = good_range(df, "w3")
    span = ax.patches[0]
    assert span.get_x() == pytest.approx(gr.lo) and span.get_x() + span.get_width() == pytest.approx(gr.hi)
    fig = plots.plot_error_vs_param(df, "d2", (2, 5))
    span = fig.axes[0].patches[0]
    assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((2, 5))


def test_plot_block_widths_and_fits(frames):
    df = frames["A"]
    fig = plots.plot_block_widths(df, top=3)
    lines = fig.axes[0].lines
    assert len(lines) == 6
    for i, (_, row) in enumerate(df.sort_values("error").head(3).iterrows()):
        widths = [int(row[f"w{s}"]) for s in range(1, 5) for _ in range(int(row[f"d{s}"]))]
        fit = fit_regnet(widths)
        np.testing.assert_array_equal(lines[2 * i].get_ydata(), widths)
        np.testing.assert_array_equal(lines[2 * i + 1].get_ydata(),
                                      regnet_block_widths(len(widths), fit.w0, fit.wa, fit.wm))
    with pytest.raises(ValueError, match="top"):
        plots.plot_block_widths(df, top=0)


def test_plot_error_vs_flops_and_complexity_hist(frames):
    df = frames["A"]
    fig = plots.plot_error_vs_flops(df)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), df[["flops", "error"]].to_numpy(dtype=float))
    fig = plots.plot_complexity_hist(frames, bins=8)
    stairs = fig.axes[0].patches
    allv = np.concatenate([f["flops"].to_numpy() for f in frames.values()])
    for patch, f in zip(stairs, frames.values()):
        idx, edges = complexity_bins(f["flops"], 8, value_range=(allv.min(), allv.max()))
        np.testing.assert_array_equal(patch.get_data().values, np.bincount(idx, minlength=8))
        np.testing.assert_allclose(patch.get_data().edges, edges)


def test_plots_reject_bad_input(frames):
    with pytest.raises(ValueError):
        plots.plot_edfs({})
    with pytest.raises(ValueError, match="no 'nope' column"):
        plots.plot_error_vs_param(frames["A"], "nope")
    far = frames["B"].assign(flops=frames["B"]["flops"] * 1e6)
    with pytest.raises(ValueError, match="do not overlap"):
        plots.plot_edfs({"A": frames["A"], "far": far}, normalized=True)


# ------------------------------------------------------------------------------ parameter importance
def test_parameter_importance_ranks_the_parameter_that_drives_the_error():
    import optuna

    from anynet_search.analysis.importance import parameter_importance

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    # the error depends on d1 only; w1 and b1 (which never varies) are irrelevant
    study.optimize(lambda t: 10.0 * t.suggest_int("d1", 1, 8) + 0.0 * t.suggest_int("w1", 8, 64)
                   + 0.0 * t.suggest_int("b1", 1, 1), n_trials=40)
    frame, reason = parameter_importance(study)
    assert reason is None
    assert set(frame["param"]) <= {"d1", "w1", "b1"}
    assert frame.iloc[0]["param"] == "d1" and frame.iloc[0]["importance"] > 0.9
    assert frame.set_index("param")["importance"].drop("d1").max() < 0.05

    sub, note = parameter_importance(study, max_trials=20)
    assert note.startswith("computed on a random 20 of the 40 completed trials")
    assert sub.iloc[0]["param"] == "d1" and sub.iloc[0]["importance"] > 0.9
    assert len(study.trials) == 40  # the subset lives in its own in-memory study

    constant = optuna.create_study()
    constant.optimize(lambda t: t.suggest_int("b1", 1, 1) * 1.0, n_trials=3)
    frame, reason = parameter_importance(constant)
    assert frame is None and "vary" in reason
    assert parameter_importance(None)[1].startswith("no Optuna study")
