"""`anynet-search derive` on a real (dry-run) study: the margin is an option and is printed; constraints and
ranges are judged on the sampled values, which are what a space's constraints bind."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from anynet_search.analysis import derive_constraints
from anynet_search.reporting.results import load_results
from anynet_search.spaces import load_space


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anynet_search", *args], capture_output=True, text=True,
                          timeout=300, check=check)


@pytest.fixture(scope="module")
def xc_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    _cli("run", "--space", "anynet_xc_tiny", "--trials", "40", "--workers", "1", "--dataset", "synthetic:64",
         "--out", str(out), "--no-analyze", "--objective", "anynet_search.study.dry_run:pseudo_error")
    return next(out.iterdir())


def test_results_carry_the_sampled_values(xc_run):
    df = load_results(xc_run)
    assert {"sampled_b", "sampled_g", "sampled_w1", "sampled_d4"} <= set(df.columns)
    # the compatibility rule shrank g where the bottleneck is narrower than the sampled group width
    built = df[["g1", "g2", "g3", "g4"]].to_numpy()
    assert (built != df["sampled_g"].to_numpy()[:, None]).any()
    assert (built <= df["sampled_g"].to_numpy()[:, None]).all()


def test_shared_g_is_judged_on_the_sampled_values_and_ranges_lie_on_the_grid(xc_run):
    df = load_results(xc_run)
    table = derive_constraints(df, n_perm=200).set_index("constraint")
    shared_g = table.loc["shared_g"]
    # XC samples one g for all stages: every model satisfies shared_g (main judged the built g: n = 21 of 32)
    assert shared_g["n"] == shared_g["n_eval"] == len(df)
    assert shared_g["verdict"] == "neutral" and "the space samples one g for every stage" in shared_g["note"]
    grid = set(load_space("anynet_xc_tiny").params["g"].values)
    g_range = table.loc["good_range:g"]
    lo, _, hi = g_range["detail"].partition(" <= g <= ")
    assert {float(lo), float(hi)} <= grid
    w_grid = set(load_space("anynet_xc_tiny").params["w"].values)
    for stage in range(1, 5):
        lo, _, hi = table.loc[f"good_range:w{stage}"]["detail"].partition(f" <= w{stage} <= ")
        assert {float(lo), float(hi)} <= w_grid
    assert "good_range:g1" not in table.index  # one shared parameter, one range


def test_derive_prints_the_margin_and_takes_it_as_an_option(xc_run, tmp_path):
    res = _cli("derive", str(xc_run), "--out", str(tmp_path / "d.yaml"))
    assert "non-inferiority margin +0.5 points" in res.stdout and "p_not_worse" in res.stdout
    res = _cli("derive", str(xc_run), "--margin", "0.2", "--margin-unit", "sd", "--out", str(tmp_path / "e.yaml"))
    sd = float(np.std(load_results(xc_run)["error"], ddof=1))
    assert f"+0.2 x the errors' standard deviation {sd:.3g} = +{0.2 * sd:.3g} points" in res.stdout
    derived = yaml.safe_load((tmp_path / "e.yaml").read_text())
    for key in (derived.get("constraints") or {}).get("ranges") or {}:
        assert key in {"b", "g"} | {f"{f}{i}" for f in "dw" for i in range(1, 5)}
    bad = _cli("derive", str(xc_run), "--margin", "-1", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "anynet-search derive: error: margin must be a finite number >= 0, got -1.0"]
    bad = _cli("derive", str(xc_run), "--margin-unit", "percent", check=False)
    assert bad.returncode == 2 and "invalid choice: 'percent'" in bad.stderr


def test_margin_changes_what_not_worse_means(xc_run):
    df = load_results(xc_run)
    wide = derive_constraints(df, n_perm=200, margin=50.0)
    none = derive_constraints(df, n_perm=200, margin=0.0)
    assert wide.attrs["margin"] == 50.0 and none.attrs["margin_spec"] == "+0 points"
    assert (wide["verdict"] == "keep").sum() >= (none["verdict"] == "keep").sum()
    assert (wide["margin"] == 50.0).all()
    with pytest.raises(ValueError, match="margin unit must be one of points, sd"):
        derive_constraints(df, margin_unit="percent")


def test_analyze_takes_the_margin_and_reports_it(xc_run, tmp_path):
    _cli("analyze", str(xc_run), "--out", str(tmp_path / "report"), "--margin", "0.25")
    table = pd.read_csv(tmp_path / "report" / "constraints.csv")
    assert (table["margin"] == 0.25).all() and "p_not_worse" in table.columns
    assert "non-inferiority margin (+0.25 points)" in (tmp_path / "report" / "report.html").read_text()
