"""Fidelity: `run --configs-from` trains exactly another study's configs on every storage; `fidelity` matches the two
studies' models and reports rank correlations whose intervals cover the truth, the top-10% overlap and the verdicts
of both budgets; `analyze` puts the same section into its report."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats
from test_tickets import storage_url

from anynet_search.analysis.fidelity import match_models, rank_correlations, top_overlap
from anynet_search.analysis.noise import retrain_noise
from anynet_search.analysis.samplers import sample_bias
from anynet_search.reporting.analyze import analyze_runs
from anynet_search.reporting.fidelity import fidelity_runs
from anynet_search.reporting.results import load_results, open_run
from anynet_search.study.settings import SETTINGS_ATTR, is_trained

DRY = "anynet_search.study.dry_run:pseudo_error"
PASSWORD = "fidelity-s3cret"
TESTS = Path(__file__).parent


def with_password(url: str) -> str:
    """A PostgreSQL URL with a password (the test server trusts loopback: any password connects; none may leak)."""
    return re.sub(r"://([^:@/]+)@", rf"://\1:{PASSWORD}@", url, count=1) if url.startswith("postgres") else url


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m anynet_search ARGS` (tests/ on the path for the planted objective); asserts exit 0."""
    full = dict(os.environ, **(env or {}), PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "anynet_search", *args], capture_output=True, text=True, env=full,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def trained_by_slot(run: str | Path, study: str | None = None) -> tuple[dict[int, dict], optuna.Study]:
    _, st = open_run(run, study)
    return {t.user_attrs["slot"]: t.params for t in st.get_trials() if is_trained(t)}, st


def base_run(out: Path, study: str, trials: int, *extra: str) -> list[str]:
    return ["run", "--workers", "1", "--trials", str(trials), "--dataset", "synthetic:64", "--no-analyze",
            "--out", str(out), "--study", study, *extra]


# (source storage, storage of the study made from it): every storage is a source and a target
PAIRS = [("journal", "sqlite"), ("sqlite", "journal"), ("journal", "postgres"), ("postgres", "sqlite")]


@pytest.mark.parametrize("source,target", PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_configs_from_trains_the_same_configs_in_the_same_slots_across_storages(tmp_path, source, target):
    uid = f"{os.getpid()}-{time.time_ns()}"
    src, dst = f"src-{uid}", f"dst-{uid}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src_url = with_password(storage_url(source, tmp_path / "a")) if source != "journal" else None
    dst_url = with_password(storage_url(target, tmp_path / "b")) if target != "journal" else None
    cli(*base_run(tmp_path / "runs", src, 8, "--space", "anynet_xd_tiny", "--objective", DRY,
                  *(["--storage", src_url] if src_url else [])))
    # a journal source through its run folder; a database through its URL and the study's name
    where = ["--configs-from", str(tmp_path / "runs" / src)] if src_url is None else \
        ["--configs-from", src_url, "--configs-study", src]
    proc = cli(*base_run(tmp_path / "runs", dst, 8, "--epochs", "2", "--objective", DRY, *where,
                         *(["--storage", dst_url] if dst_url else [])))
    assert f"study {dst}: 8/8 completed, 0 failed" in proc.stdout and PASSWORD not in proc.stdout + proc.stderr

    theirs, _ = trained_by_slot(src_url or tmp_path / "runs" / src, src if src_url else None)
    mine, study = trained_by_slot(tmp_path / "runs" / dst)
    assert sorted(mine) == sorted(theirs) == list(range(8))
    assert mine == theirs  # the same parameters in every slot
    settings = study.user_attrs[SETTINGS_ATTR]
    record = settings["configs_from"]
    assert record["study"] == src and record["sampler"] == "random" and len(record["values"]) == 8
    assert settings["train"]["epochs"] == 2 and record["epochs"] != 2  # another budget, and it says which
    assert settings["space"]["name"] == "anynet_xd_tiny" and settings["seed"] == 0  # the source's, not defaults
    assert PASSWORD not in str(settings)  # where the configs came from is recorded without the password
    if source == "postgres":
        assert record["storage"].startswith("postgresql://")
    # the analysis reads it as the random sample of the source's space that it is
    df = load_results(tmp_path / "runs" / dst)
    assert set(df["sampler"]) == {"random"} and sample_bias(df) is None and set(df["space"]) == {"anynet_xd_tiny"}


def test_a_config_that_kills_its_worker_here_moves_its_slot_on_and_fidelity_matches_the_rest(tmp_path):
    """Slot 2's config kills its worker: it is re-enqueued with the source's config (the same config), recorded failed
    after two deaths, and the slot goes on with this study's own stream; fidelity then matches the 7 others."""
    cli(*base_run(tmp_path / "runs", "src", 8, "--space", "anynet_xd_tiny", "--objective", DRY))
    cli(*base_run(tmp_path / "runs", "dst", 8, "--epochs", "3", "--objective", DRY, "--configs-from",
                  str(tmp_path / "runs" / "src")), env={"ANYNET_DRY_KILL": "2"})
    theirs, _ = trained_by_slot(tmp_path / "runs" / "src")
    mine, study = trained_by_slot(tmp_path / "runs" / "dst")
    assert sorted(mine) == list(range(8))
    assert {k: v for k, v in mine.items() if k != 2} == {k: v for k, v in theirs.items() if k != 2}
    assert mine[2] != theirs[2]
    died = [t for t in study.get_trials() if t.user_attrs.get("slot") == 2 and t.state.name == "FAIL"]
    assert len(died) == 2 and all(t.user_attrs["attempt"] == 0 for t in died)
    assert all(t.params == theirs[2] for t in died if t.params)  # the re-enqueued ticket kept the source's config
    status = cli("status", str(tmp_path / "runs" / "dst")).stdout
    assert "trains the configs of study src (journal:" in status and "its first 8 slots, in order" in status
    rep = fidelity_runs(str(tmp_path / "runs" / "src"), str(tmp_path / "runs" / "dst"), tmp_path / "fid", n_boot=200)
    assert rep.result.n == 7 and "7 of 8 (low) and 8 (high)" in rep.result.notes[0]


@pytest.fixture(scope="module")
def dry_pair(tmp_path_factory) -> Path:
    """Dry-run studies of the same 24 configs (the dry error depends on the config and the repeat only): 'low' (1
    epoch), 'low2' (2 epochs), 'high' (8) and 'again' (8, retrained under other training seeds: --repeat 1)."""
    root = tmp_path_factory.mktemp("pair")
    cli(*base_run(root / "runs", "high", 24, "--space", "anynet_xa_tiny", "--objective", DRY))
    for name, extra in (("low", ("--epochs", "1")), ("low2", ("--epochs", "2")), ("again", ("--repeat", "1"))):
        cli(*base_run(root / "runs", name, 24, *extra, "--objective", DRY, "--configs-from", str(root / "runs" / "high")))
    cli(*base_run(root / "runs", "other", 24, "--space", "anynet_xd_tiny", "--objective", DRY))
    return root


def test_fidelity_of_the_same_configs_is_a_rank_correlation_of_1_with_every_verdict_agreeing(dry_pair, tmp_path):
    runs = dry_pair / "runs"
    out = cli("fidelity", str(runs / "low"), str(runs / "high"), "--out", str(tmp_path / "fid"), "--n-boot", "500").stdout
    assert "24 models matched by config (24 trained in low, 24 in high)" in out
    assert "Spearman rho 1.000 [1.000, 1.000], Kendall tau 1.000 [1.000, 1.000]" in out
    assert "1 epoch on synthetic:64" in out and "8 epochs on synthetic:64" in out
    verdicts = pd.read_csv(tmp_path / "fid" / "fidelity_verdicts.csv")
    assert len(verdicts) >= 3 and verdicts["agree"].all()
    assert (verdicts["verdict_low"] == verdicts["verdict_high"]).all()
    assert f"constraint verdicts agree on {len(verdicts)} of {len(verdicts)}" in out
    pairs = pd.read_csv(tmp_path / "fid" / "fidelity_pairs.csv")
    assert len(pairs) == 24 and np.allclose(pairs["error_low"], pairs["error_high"])
    assert "top 10%: 3 of the 3 best at" in out and (tmp_path / "fid" / "fidelity.png").stat().st_size > 10_000


def test_fidelity_writes_beside_the_high_run_by_default_and_prints_full_paths(dry_pair, tmp_path, monkeypatch,
                                                                              capsys):
    """Issue 30: it wrote ./fidelity/ into the current folder (a repository root, in the case tried)."""
    from anynet_search.cli import main

    runs, elsewhere = dry_pair / "runs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["fidelity", str(runs / "low"), str(runs / "high"), "--n-boot", "100"]) == 0
    assert list(elsewhere.iterdir()) == []
    folder = (runs / "high" / "fidelity").resolve()
    assert (folder / "fidelity.png").is_file() and (folder / "fidelity_pairs.csv").is_file()
    files = capsys.readouterr().out.splitlines()[-1]
    assert files.startswith("  files: ") and all(p.startswith(str(folder)) for p in files[9:].split(", "))


def test_fidelity_of_several_budgets_and_a_retraining_compares_their_rho_as_pairs_against_the_noise_ceiling(
        dry_pair, tmp_path):
    runs = dry_pair / "runs"
    out = cli("fidelity", str(runs / "again"), str(runs / "low2"), str(runs / "high"), str(runs / "low"), "--out",
              str(tmp_path / "fid"), "--n-boot", "300").stdout
    assert "fidelity of 4 studies of the same configs against high (8 epochs on synthetic:64); 24 configs" in out
    assert "non-inferiority margin 0.5 points" in out and "note:" not in out  # dry errors lie on no image lattice
    high, again = (load_results(runs / name) for name in ("high", "again"))
    noise = retrain_noise(high, again, n_boot=300)
    assert noise.changed == 24 and 0 < noise.rho < 1  # other training seeds: every pseudo-error moved
    assert "noise ceiling: again (8 epochs on synthetic:64, repeat 1) trains the configs of high" in out
    assert f"Spearman rho of the two trainings {noise.rho:.3f}" in out
    # lower budgets in order of epochs; each against the one below, and the ceiling against each, as pairs
    assert "rho(low2) - rho(low) = +0.000" in out
    assert f"rho(again) - rho(low) = {noise.rho - 1:+.3f}" in out and f"rho(again) - rho(low2) = {noise.rho - 1:+.3f}" in out
    assert "Holm-adjusted over the 3 differences" in out
    overlap = top_overlap(load_results(runs / "low")["error"], high["error"], 0.1)["p_value"]
    assert f"p = {overlap:.2g}, exact" in out and "Holm-adjusted over the 2 lower budgets" in out
    table = pd.read_csv(tmp_path / "fid" / "fidelity_differences.csv")
    assert list(zip(table["a"], table["b"])) == [("low2", "low"), ("again", "low"), ("again", "low2")]
    assert pd.read_csv(tmp_path / "fid" / "fidelity_errors.csv").shape == (24, 4)


def test_analyze_and_derive_measure_the_retrain_noise_and_compare_the_spaces_against_it(dry_pair, tmp_path):
    runs = dry_pair / "runs"
    summary = analyze_runs([runs / "high", runs / "again", runs / "other"], tmp_path / "rep", n_boot=200,
                           importance=False)
    assert [(p.first, p.second) for p in summary.noise] == [("high", "again")] and not summary.fidelity
    table = summary.comparisons  # the retraining re-measures high's models: no sample of its own to compare
    assert list(table["study"]) == ["other"]
    sd = summary.noise[0].noise.model_sd * math.sqrt(1 / 24 + 1 / 24)
    assert table["retrain_sd"].iloc[0] == pytest.approx(sd)
    assert table["beyond_noise"].iloc[0] == pytest.approx(abs(table["mean_diff"].iloc[0]) / sd)
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Retrain noise" in html and "beyond_noise" in html and 'href="#noise-0"' in html
    out = cli("derive", str(runs / "high"), "--retrained", str(runs / "again"), "--out",
              str(tmp_path / "d.yaml")).stdout
    assert "retrain noise: again trains the configs of high again under other training seeds" in out
    assert re.search(r"the verdicts drawn from the retrained errors agree on \d+ of \d+", out)


def test_a_planted_low_fidelity_pair_gets_intervals_that_cover_the_planted_correlation(tmp_path):
    rho = 0.6
    cli(*base_run(tmp_path / "runs", "high", 60, "--space", "anynet_xa_tiny", "--objective", "faults:planted_objective"))
    cli(*base_run(tmp_path / "runs", "low", 60, "--epochs", "1", "--objective", "faults:planted_objective",
                  "--configs-from", str(tmp_path / "runs" / "high")), env={"ANYNET_TEST_PLANTED_RHO": str(rho)})
    rep = fidelity_runs(str(tmp_path / "runs" / "low"), str(tmp_path / "runs" / "high"), tmp_path / "fid")
    c = rep.result.correlations
    planted = {"spearman": 6 / math.pi * math.asin(rho / 2), "kendall": 2 / math.pi * math.asin(rho)}
    for name, value in planted.items():
        assert c.loc[name, "lo"] <= value <= c.loc[name, "hi"], (name, value, c)
        assert c.loc[name, "hi"] < 0.95  # the noise is there: not the identical pair
    assert rep.result.n == 60


def test_the_bootstrap_intervals_cover_the_planted_correlation_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    rho, n, reps = 0.6, 40, 200
    planted = {"spearman": 6 / math.pi * math.asin(rho / 2), "kendall": 2 / math.pi * math.asin(rho)}
    covered = {k: 0 for k in planted}
    for r in range(reps):
        z1, z2 = rng.normal(size=(2, n))
        t = rank_correlations(z1, rho * z1 + math.sqrt(1 - rho**2) * z2, n_boot=1000, seed=r)
        for k, v in planted.items():
            covered[k] += t.loc[k, "lo"] <= v <= t.loc[k, "hi"]
    for k in planted:  # 95% nominal; 200 replicates give a standard error of 1.5 points
        assert 0.90 <= covered[k] / reps <= 0.99, (k, covered[k] / reps)


def test_the_estimates_are_scipys_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 50).astype(float)
    y = x + rng.integers(0, 4, 50)
    t = rank_correlations(x, y, n_boot=300)
    assert t.loc["spearman", "estimate"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert t.loc["kendall", "estimate"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert t.loc["kendall", "lo"] < t.loc["kendall", "estimate"] < t.loc["kendall", "hi"]


def test_top_overlap_breaks_ties_at_the_cut_at_random_and_compares_with_chance():
    high = np.arange(10.0)  # the 2 best: models 0 and 1
    low = np.array([1.0, 1.0, 1.0, 4, 5, 6, 7, 8, 9, 10])  # models 0, 1, 2 tie for the 2 places
    o = top_overlap(low, high, 0.2)
    assert o["k"] == 2 and o["overlap"] == pytest.approx(4 / 3) and o["chance"] == pytest.approx(0.4)
    # overlap 2 (tie break {0, 1}, 1 in 3) or 1; P(at least 2 | at least 1 of 2 drawn from 10 among 2): 1/45, 17/45
    assert o["p_value"] == pytest.approx(1 / 3 * 1 / 45 + 2 / 3 * 17 / 45)
    assert top_overlap(high, high, 0.1)["overlap"] == 1.0
    assert top_overlap(high, high[::-1], 0.3)["overlap"] == 0.0


def test_models_are_matched_by_config_occurrence_by_occurrence():
    low = pd.DataFrame({"trial": [0, 1, 2, 3], "error": [1.0, 2.0, 3.0, 4.0],
                        "sampled_d1": [1, 2, 1, 5], "sampled_w1": [8, 8, 8, 16]})
    high = pd.DataFrame({"trial": [10, 11, 12], "error": [5.0, 6.0, 7.0],
                         "sampled_d1": [1.0, 1.0, 2.0], "sampled_w1": [8.0, 8.0, 8.0]})
    pairs = match_models(low, high)
    assert pairs[["trial_low", "trial_high"]].values.tolist() == [[0, 10], [2, 11], [1, 12]]
    with pytest.raises(ValueError, match="not one design space"):
        match_models(low, high.rename(columns={"sampled_w1": "sampled_w"}))


def test_analyze_puts_the_fidelity_section_into_the_report_and_states_each_comparisons_power(dry_pair, tmp_path):
    runs = dry_pair / "runs"
    summary = analyze_runs([runs / "high", runs / "low", runs / "other"], tmp_path / "rep", n_boot=200,
                           importance=False)
    assert [(f.low, f.high) for f in summary.fidelity] == [("low", "high")]  # 'other' samples another space
    html = (tmp_path / "rep" / "report.html").read_text()
    assert 'Fidelity: <span class="name">low</span> against <span class="name">high</span>' in html
    assert "fidelity_1" in html and 'href="#fidelity-0"' in html  # in the contents too
    assert "low train the configs of another study otherwise (epochs: high 8, low 1)" in html
    assert "1.000 [1.000, 1.000]" in html
    assert "Trains the configs of study high" in html
    text = summary.text()
    assert "fidelity of low (1 epoch on synthetic:64) against high (8 epochs on synthetic:64)" in text
    # every comparison of studies states its power against a shift of the margin (0.5 points)
    table = summary.comparisons
    assert list(table["study"]) == ["low", "other"] and table["power"].between(0, 1).all()
    from anynet_search.analysis.power import power

    high = summary.studies[0]
    errors = pd.read_csv(tmp_path / "rep" / "results.csv").query("study == 'high'")["error"].to_numpy()
    expected = power(errors, high.summary["n"], -0.5, test="ks", alpha=0.025, sims=200, seed=0, n_other=24)
    assert table["power"].iloc[0] == pytest.approx(expected)
    assert f"low against high: this comparison had {100 * expected:.0f}% power to detect a 0.5-point shift" in html


def test_a_fractional_top_overlap_says_it_averages_over_tie_breaks():
    """Issue 30: 'fidelity' printed '1.3 of the 3 best' with no word on why a count is fractional."""
    from anynet_search.analysis.fidelity import top_overlap
    from anynet_search.reporting.fidelity import overlap_count, overlap_tie_note

    low = np.array([1.0, 2.0, 2.0, 2.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])  # three tied at the top-2 cut
    high = np.arange(10.0)
    tied = top_overlap(low, high, fraction=0.2)
    assert tied["k"] == 2 and 1 < tied["overlap"] < 2
    assert overlap_count(tied) == f"{tied['overlap']:.1f}" and "tied errors at the cuts" in overlap_tie_note(tied)
    clean = top_overlap(high, high, fraction=0.2)
    assert (overlap_count(clean), overlap_tie_note(clean)) == ("2", "")
