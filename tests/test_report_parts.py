"""The report's parts carry the analysis numbers: constraint EDF splits, validation curves, verdict table."""

import re
from html import escape
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
        "effect on mean error, points [95% interval]",
        "log10 shrink",
        "power (%)",
        "reason",
    ]
    assert f"{len(folded)} more constraints that every evaluated model satisfies" in html
    keep = table[table["verdict"] == "keep"].iloc[0]
    cell = f"{keep['mean_diff']:+.2f} [{keep['mean_diff_lo']:+.2f},\u00a0{keep['mean_diff_hi']:+.2f}]"
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
    by_test = table["reason"].str.startswith("significantly")
    row = table[judged & ~by_test].iloc[0]
    df = load_results(next(Path(dry_report.report).parent.parent.glob("anynet_xa_tiny-*")))
    assert row["power"] == keep_power(df["error"].to_numpy(dtype=float), int(row["n"]), int(row["n_eval"]),
                                      margin=table.attrs["margin"], sims=200, seed=0)
    shown, _ = verdict_rows(table)
    assert next(r for r in shown if r.constraint == row["constraint"]).power == f"{100 * row['power']:.0f}%"
    # issue 30: a verdict the significance test decided shows no power (the number is that of another test)
    assert all(r.power == "" for r in shown if r.reason.startswith("significantly"))
    assert "power" in pd.read_csv(dry_report.constraints_csv).columns


# ------------------------------------------------------------------------------------------ issue 30: the page
def test_the_page_opens_with_what_the_study_found_and_the_command_to_run_next(dry_report):
    html = dry_report.report.read_text()
    box = html[html.index('<section class="summary"'):html.index("</section>")]
    assert html.index('<section class="summary"') < html.index('<nav class="toc">') < html.index('id="studies"')
    study = dry_report.studies[0]
    h = dry_report.headlines[0]
    kept = study.constraints.loc[study.constraints["verdict"] == "keep", "constraint"].tolist()
    assert kept and all(escape(name) in box for name in kept)
    derived = str(study.derived_path.resolve())
    assert h.command.startswith(f"anynet-search run --space {derived} --dataset synthetic:64 --epochs ")
    assert h.command.endswith(f"--trials {study.summary['n']}") and escape(h.command) in box
    assert escape(h.errors) in box and "40 models x" in h.budget  # the data and the budget
    text = dry_report.text()  # what analyze prints: the same findings
    assert f"next: {h.command}" in text and f"keep: {', '.join(h.kept)}" in text


def test_a_keep_the_derived_space_cannot_express_says_so(dry_report):
    study = dry_report.studies[0]
    skipped = dict(study.derived.skipped)
    shown, folded = verdict_rows(study.constraints, skipped)
    flagged = [r for r in shown + folded if r.verdict == "keep" and r.constraint in skipped]
    assert flagged and all(r.reason.endswith("; not in the derived space") for r in flagged)
    assert all(r.more.startswith(f"Not in the derived space: {skipped[r.constraint]}") for r in flagged)
    assert all(any(r.constraint in n for n in dry_report.headlines[0].not_added) for r in flagged)


def test_headers_carry_units_and_alt_texts_say_what_a_figure_shows(dry_report):
    html = dry_report.report.read_text()
    studies = re.search(r'<table class="studies">.*?</thead>', html, re.S).group(0)
    assert "best error (%)" in studies and "median test error (%)" in studies
    best = re.search(r'<table class="best">.*?</thead>', html, re.S).group(0)
    assert "error (%)" in best and "test error (%)" in best
    alts = re.findall(r'<img alt="([^"]*)"', html)
    assert alts and all(len(a.split()) > 3 for a in alts)  # a caption, not a bare file key
    assert not any(re.fullmatch(r"[\w.-]+", a) for a in alts)


def test_the_precision_printed_is_the_one_the_trials_used(dry_report):
    from anynet_search.reporting.summary import describe_training, precision

    training = dry_report.studies[0].training
    # the dry run's trials: device cpu; the data's digest closes the line
    assert re.search(r", fp32 on the CPU; data digest [0-9a-f]{12}$", training) and "bf16" not in training
    assert precision(True, {"cuda:0"}) == "bf16 autocast on CUDA"
    assert precision(False, {"cuda:0", "cpu"}) == "fp32 on CUDA, fp32 on the CPU"
    assert describe_training(None) == "training settings unknown (not an anynet-search study)"

    class OneEpoch:  # a study's stored settings, as describe_training reads them
        @staticmethod
        def outcome_settings():
            return {"dataset": "digits", "epochs": 1, "batch_size": 64, "lr": 0.3, "warmup_epochs": 1,
                    "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "label_smoothing": 0.1,
                    "crop_pad": None, "amp": True}

    text = describe_training(OneEpoch(), {"cpu"})
    assert text.startswith("digits, 1 epoch, batch 64") and "warm-up 1 epoch," in text and "epochs" not in text


def test_integer_parameters_get_whole_ticks_and_a_range_over_every_value_is_not_shaded():
    df = pd.DataFrame({"b1": [1, 2, 4, 1, 2, 4, 2], "error": [5.0, 4.0, 6.0, 5.5, 3.0, 7.0, 4.5]})
    fig = plots.plot_error_vs_param(df, "b1", (1, 4))
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks  # not 1.0, 1.5, 2.0
    assert not ax.patches and "every value" in ax.get_legend().get_texts()[0].get_text()
    narrower = plots.plot_error_vs_param(df, "b1", (1, 2)).axes[0]
    assert len(narrower.patches) == 1 and narrower.get_legend().get_texts()[0].get_text() == "good range [1, 2]"


def test_figures_of_different_sizes_read_at_one_font_scale():
    """A 5-inch figure shown half a column wide and a 9-inch one shown a column wide: 10-point text shows 13 px
    tall in both (it differed by 1.7x)."""
    small = plots.plot_history(pd.DataFrame({"trial": [0, 1, 2], "error": [3.0, 2.0, 2.5]}))
    wide = plots.plot_importance(pd.DataFrame({"param": ["w1", "d1"], "importance": [0.7, 0.3]}))
    shown = {id(small): 527, id(wide): 1068}
    for fig in (small, wide):
        plots.scale_text(fig, shown[id(fig)])

    def shown_px(fig, text):  # points -> pixels of the figure -> CSS pixels as shown
        return text.get_fontsize() / 72 * shown[id(fig)] / fig.get_figwidth()

    labels = [shown_px(f, f.axes[0].xaxis.label) for f in (small, wide)]
    assert labels[0] == pytest.approx(labels[1]) == pytest.approx(13.0)
    ticks = [shown_px(f, f.axes[0].get_xticklabels()[0]) for f in (small, wide)]
    assert ticks[0] == pytest.approx(ticks[1])
