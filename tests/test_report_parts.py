"""The report's parts carry the analysis numbers: constraint EDF splits, validation curves, verdict table."""

import re
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from anynet_search.analysis import edf
from anynet_search.analysis.studies import extreme_curves, split_by_mask
from anynet_search.reporting import plots
from anynet_search.reporting.analyze import analyze_runs
from anynet_search.reporting.figures import MIN_SPLIT_MODELS
from anynet_search.reporting.results import histories_frame, load_results
from anynet_search.reporting.verdicts import verdict_rows
from anynet_search.study.runner import RunOptions, prepare_study
from anynet_search.study.worker import Worker

DRY = "anynet_search.study.dry_run:pseudo_error"


def test_split_by_mask_and_its_plot():
    df = pd.DataFrame({"error": [3.0, 1.0, 2.0, 5.0]})
    split = split_by_mask(df, np.array([True, False, True, False]))
    assert split["satisfy"].tolist() == [3.0, 2.0] and split["violate"].tolist() == [1.0, 5.0]
    with pytest.raises(ValueError, match="the mask has 2 entries"):
        split_by_mask(df, np.array([True, False]))
    fig = plots.plot_split_edf(split, "increasing_widths")
    lines = fig.axes[0].lines
    for line, errors in zip(lines, split.values()):
        e, F = edf(errors)
        np.testing.assert_array_equal(line.get_xdata(), e)
        np.testing.assert_array_equal(line.get_ydata(), F)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "satisfy (n=2, mean 2.50)",
        "violate (n=2, mean 3.00)",
    ]


def _histories(trials, epochs=3):
    rows = [(t, e, 50.0 - t - e) for t in trials for e in range(1, epochs + 1)]
    return pd.DataFrame(rows, columns=["trial", "epoch", "val_error"])


def test_extreme_curves_picks_the_best_and_worst_models():
    df = pd.DataFrame({"trial": range(10), "error": [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.5]})
    hist = _histories([t for t in range(10) if t != 9])  # trial 9 recorded no history
    curves = extreme_curves(df, hist, k=2)
    firsts = curves.drop_duplicates("trial")
    assert firsts["trial"].tolist() == [1, 5, 2, 6] and firsts["rank"].tolist() == [
        "best",
        "best",
        "worst",
        "worst",
    ]
    assert curves.groupby("trial")["epoch"].apply(list).to_dict()[1] == [1, 2, 3]
    assert curves.loc[curves["trial"] == 5, "val_error"].tolist() == [44.0, 43.0, 42.0]
    few = extreme_curves(df.head(3), hist, k=2)  # fewer than 2k models: every model once, best first
    assert few.drop_duplicates("trial")["rank"].tolist() == ["best", "best", "worst"]
    with pytest.raises(ValueError, match="lacks column"):
        extreme_curves(df, hist.drop(columns="epoch"))


def test_plot_validation_curves_draws_each_models_history():
    df = pd.DataFrame({"trial": range(6), "error": [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]})
    curves = extreme_curves(df, _histories(range(6)), k=2)
    fig = plots.plot_validation_curves(curves)
    lines = fig.axes[0].lines
    assert len(lines) == 4
    for line, (_, rows) in zip(lines, curves.groupby("trial", sort=False)):
        np.testing.assert_array_equal(line.get_xdata(), rows["epoch"])
        np.testing.assert_array_equal(line.get_ydata(), rows["val_error"])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0] == "best: trial 1 (1.00%)" and labels[-1] == "worst: trial 4 (7.00%)"
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_validation_curves(curves.iloc[:0])


def test_histories_frame_reads_the_trial_record():
    study = optuna.create_study()
    for number, history in enumerate([[40.0, 30.0], [], None]):
        trial = study.ask()
        if history is not None:
            trial.set_user_attr("result", {"history": history})
        study.tell(trial, 1.0 + number)
    infeasible = study.ask()
    infeasible.set_user_attr("infeasible", "violates x")
    study.tell(infeasible, 100.0)
    hist = histories_frame(study)
    assert hist.to_dict("list") == {"trial": [0, 0], "epoch": [1, 2], "val_error": [40.0, 30.0]}


@pytest.fixture(scope="module")
def dry_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts")
    opts = RunOptions(
        space="anynet_xa_tiny", trials=40, workers=1, dataset="synthetic:64", out=str(out), objective=DRY
    )
    study, _, _, run_dir = prepare_study(opts)
    Worker(study, objective=opts.objective, poll_seconds=0.05).run()
    return analyze_runs([str(run_dir)], out / "report", n_boot=100, importance=False)


def test_verdict_table_shows_short_rows_and_folds_the_trivial_ones(dry_report):
    table = dry_report.studies[0].constraints
    shown, folded = verdict_rows(table)
    trivial = table["n"] == table["n_eval"]
    assert [r.constraint for r in folded] == table.loc[trivial, "constraint"].tolist() and folded
    assert [r.constraint for r in shown] == table.loc[~trivial, "constraint"].tolist()
    html = dry_report.report.read_text()
    head = re.search(r'<table class="verdicts">.*?</thead>', html, re.S).group(0)
    assert re.findall(r"<th[^>]*>([^<]*)</th>", head) == [
        "constraint",
        "verdict",
        "n / evaluated",
        "effect on mean error [95% interval]",
        "log10 shrink",
        "power",
        "reason",
    ]
    assert f"{len(folded)} more constraints that every evaluated model satisfies" in html
    keep = table[table["verdict"] == "keep"].iloc[0]
    cell = f"{keep['mean_diff']:+.2f} [{keep['mean_diff_lo']:+.2f}, {keep['mean_diff_hi']:+.2f}]"
    assert cell in html and keep["reason"] in html
    assert html.count("<details><summary>details</summary>") == len(table)  # the long text of every row


def test_dry_run_report_explains_missing_curves_and_draws_constraint_splits(dry_report):
    study = dry_report.studies[0]
    assert study.curves is None and "no per-epoch validation history" in study.curves_note
    assert study.curves_note in dry_report.report.read_text()
    assert (
        set(study.splits) <= {"shared_b", "shared_g", "increasing_widths", "increasing_depths"}
        and study.splits
    )
    names = {p.stem for p in dry_report.figures}
    drawn = {n for n, split in study.splits.items() if min(map(len, split.values())) >= MIN_SPLIT_MODELS}
    assert {n for n in names if "_split_" in n} == {f"{study.label}_split_{n}" for n in drawn} and drawn
    for name, split in study.splits.items():
        rule = study.constraints.attrs["rules"][name]
        row = study.constraints.set_index("constraint").loc[name]
        assert split["satisfy"].size == row["n"] == int(rule.mask(pd.read_csv(dry_report.results_csv)).sum())


def test_every_judged_verdict_states_its_power(dry_report):
    """Issue 22: the power of each verdict's 'not worse' keep (no true effect), as analysis.power computes it,
    is in the table, in constraints.csv and in the verdict row; 0 below min_n, empty where nothing is judged."""
    from anynet_search.analysis.power import keep_power

    table = dry_report.studies[0].constraints
    judged = table["n"].between(table.attrs["min_n"], table["n_eval"] - 1)
    assert judged.any() and table.loc[judged, "power"].between(0, 1).all()
    assert (table.loc[table["n"] < table.attrs["min_n"], "power"] == 0).all()
    assert table.loc[table["n"] == table["n_eval"], "power"].isna().all()
    row = table[judged].iloc[0]
    df = load_results(next(Path(dry_report.report).parent.parent.glob("anynet_xa_tiny-*")))
    assert row["power"] == keep_power(df["error"].to_numpy(dtype=float), int(row["n"]), int(row["n_eval"]),
                                      margin=table.attrs["margin"], sims=200, seed=0)
    shown, _ = verdict_rows(table)
    assert next(r for r in shown if r.constraint == row["constraint"]).power == f"{100 * row['power']:.0f}%"
    assert "power" in pd.read_csv(dry_report.constraints_csv).columns
