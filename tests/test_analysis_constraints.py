"""Constraint derivation: planted helpful/neutral/harmful constraints, sampler guard, verdict rule."""

import warnings

import numpy as np
import pandas as pd
import pytest

from anynet_search.analysis import constraint_verdict, derive_constraints, holm, require_unbiased_samples
from anynet_search.analysis.synthetic import synthetic_results

REQUIRED = [
    "constraint",
    "verdict",
    "n",
    "fraction",
    "ks_stat",
    "p_value",
    "mean_diff",
    "mean_diff_lo",
    "mean_diff_hi",
    "median_diff",
    "log10_shrink",
    "shrink_source",
    "note",
]


def study(n=800, seed=0, n_stages=3):
    """Random sample whose error is pure noise (tests add the effects they plant)."""
    df = synthetic_results(n, n_stages=n_stages, seed=seed)
    df["error"] = 40.0 + np.random.default_rng(seed + 100).normal(0, 1, n)
    return df


def non_decreasing(df, family):
    cols = [c for c in df.columns if c[0] == family and c[1:].isdigit()]
    return (np.diff(df[cols].to_numpy(), axis=1) >= 0).all(axis=1)


def row(result, name):
    return result.set_index("constraint").loc[name]


def test_planted_helpful_constraint_is_kept():
    df = study()
    df["error"] -= 1.5 * non_decreasing(df, "w")
    result = derive_constraints(df, n_perm=300)
    assert all(c in result.columns for c in REQUIRED)
    r = row(result, "increasing_widths")
    assert r["verdict"] == "keep" and "significantly better" in r["note"]
    # the permutation KS p-value (exact with ties) is the smallest 300 permutations can give
    assert r["mean_diff_hi"] < 0 and r["p_value"] == pytest.approx(1 / 301) and r["median_diff"] < 0
    assert r["mean_diff"] == pytest.approx(-1.5 * (1 - r["fraction"]), abs=0.3)
    assert r["log10_shrink"] == pytest.approx(-np.log10(r["fraction"])) and r["shrink_source"] == "estimated"
    # Keeps come first, the strongest effect first.
    assert result["verdict"].iloc[0] == "keep" and result["constraint"].iloc[0] == "increasing_widths"
    order = result["verdict"].map({"keep": 0, "neutral": 1, "reject": 2})
    assert order.is_monotonic_increasing


def test_planted_harmful_constraint_is_rejected():
    df = study(seed=1)
    df["error"] += 1.5 * non_decreasing(df, "d")
    r = row(derive_constraints(df, n_perm=300), "increasing_depths")
    assert r["verdict"] == "reject" and r["mean_diff_lo"] > 0 and "significantly worse" in r["note"]


def test_constraint_without_effect():
    """No effect: neutral if it does not shrink the space or the sample cannot rule out harm; else kept."""
    df = study(n=2000, seed=2)
    exact = derive_constraints(df, shrink={"increasing_depths": 0.0}, n_perm=300)
    r = row(exact, "increasing_depths")
    assert r["shrink_source"] == "exact" and r["log10_shrink"] == 0.0
    assert r["verdict"] == "neutral" and "does not shrink" in r["note"]
    # The same constraint with its estimated shrink (~1/6 of the models satisfy it): not worse and smaller.
    r = row(derive_constraints(df, n_perm=300), "increasing_depths")
    assert r["verdict"] == "keep" and "not worse" in r["note"] and r["log10_shrink"] > 0.5
    # A small, noisy sample cannot show that it is not worse (by more than the 0.5 point tolerance).
    small = study(n=90, seed=3)
    small["error"] = 40.0 + np.random.default_rng(3).normal(0, 3, 90)
    r = row(derive_constraints(small, n_perm=300), "increasing_depths")
    assert r["n"] >= 10 and r["mean_diff_hi"] >= 0.5
    assert r["verdict"] == "neutral" and "inconclusive" in r["note"]


def test_too_few_models_is_neutral_with_note():
    df = study(n=120, seed=4)
    r = row(derive_constraints(df, n_perm=100), "shared_g")
    assert r["n"] < 10 and r["verdict"] == "neutral" and "too few" in r["note"]


def test_good_range_constraint_found_with_holdout():
    df = study(n=800, seed=5)
    df["error"] += 2.0 * np.log2(df["w2"] / 64.0) ** 2
    result = derive_constraints(df, n_perm=300)
    r = row(result, "good_range:w2")
    assert r["verdict"] == "keep" and r["mean_diff_hi"] < 0
    assert r["n_eval"] == 400 and "other half" in r["note"]
    assert result["constraint"].iloc[0] == "good_range:w2"


def test_fit_error_candidates_and_exact_shrink():
    df = study(seed=6)
    df["fit_error"] = np.random.default_rng(0).random(len(df))
    df["error"] += 3.0 * df["fit_error"]
    result = derive_constraints(df, shrink={"shared_b": 2.0}, n_perm=300)
    assert {"fit_error<=q25", "fit_error<=q50"} <= set(result["constraint"])
    assert row(result, "fit_error<=q25")["verdict"] == "keep"
    assert row(result, "shared_b")["shrink_source"] == "exact"
    assert row(result, "shared_b")["log10_shrink"] == 2.0
    with pytest.raises(ValueError, match="unknown constraint"):
        derive_constraints(df, shrink={"shared_bb": 1.0})
    with pytest.raises(ValueError, match="shrink"):
        derive_constraints(df, shrink={"shared_b": -1.0})


def test_complexity_normalized_comparison():
    """Flops confound the raw comparison; normalized weights compare at equal complexity."""
    rng = np.random.default_rng(7)
    n = 1500
    df = study(n=n, seed=7, n_stages=2)
    inc = non_decreasing(df, "w")
    # Constrained models are mostly small, and small models are worse; the constraint itself does nothing.
    big = rng.random(n) < np.where(inc, 0.2, 0.8)
    df["flops"] = 10 ** (8 + big + rng.uniform(0.05, 0.95, n))
    df["error"] = 50.0 - 3.0 * big + rng.normal(0, 1, n)
    raw = row(derive_constraints(df, n_perm=300), "increasing_widths")
    assert raw["verdict"] == "reject" and raw["mean_diff"] > 0.5
    normalized = row(derive_constraints(df, bins=2, n_perm=300), "increasing_widths")
    assert normalized["verdict"] == "keep" and "not worse" in normalized["note"]
    assert abs(normalized["mean_diff"]) < 0.2
    # A bin that the subset leaves empty is reported in the note, not raised.
    df.loc[inc, "flops"] = 10 ** (8 + rng.uniform(0.05, 0.95, int(inc.sum())))
    empty = row(derive_constraints(df, bins=2, n_perm=100), "increasing_widths")
    assert empty["verdict"] == "neutral" and "is empty" in empty["note"]


def test_adaptive_samplers_are_refused_unless_forced():
    df = study(n=200, seed=8)
    df.loc[:9, "sampler"] = "tpe"
    with pytest.raises(ValueError, match=r"non-random sampler.*'tpe'.*biased.*force=True"):
        derive_constraints(df)
    with pytest.raises(ValueError, match="no 'sampler' column"):
        derive_constraints(df.drop(columns="sampler"))
    with pytest.warns(UserWarning, match="biased"):
        result = derive_constraints(df, force=True, n_perm=50)
    assert "tpe" in result.attrs["warning"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = df.assign(sampler=["RandomSampler", "qmc", "QMCSampler", "random"] * 50)
        assert require_unbiased_samples(clean) is None
        assert "warning" not in derive_constraints(clean, n_perm=50).attrs


def test_bad_frames():
    df = study(n=100, seed=9)
    with pytest.raises(ValueError, match="missing column"):
        derive_constraints(df.drop(columns="error"))
    with pytest.raises(ValueError, match="empty"):
        derive_constraints(df.iloc[:0])
    with pytest.raises(ValueError, match="NaN"):
        derive_constraints(df.assign(error=np.where(np.arange(100) == 3, np.nan, df["error"])))
    with pytest.raises(ValueError, match="mixes design spaces"):
        derive_constraints(df.assign(space=["A", "B"] * 50))
    with pytest.raises(ValueError, match="alpha"):
        derive_constraints(df, alpha=0.0)


@pytest.mark.parametrize(
    ("args", "verdict"),
    [
        # (n, n_excluded, p_adjusted, mean_diff_lo, mean_diff_hi, p_not_worse, log10_shrink)
        ((5, 40, 1e-9, -2.0, -1.0, 1e-3, 1.0), "neutral"),  # too few models
        ((50, 0, 1.0, 0.0, 0.0, np.nan, 1.0), "neutral"),  # nothing excluded: nothing to compare with
        ((50, 40, 0.001, -2.0, -1.0, 1e-3, 0.0), "keep"),  # significantly better, even without shrinking
        ((50, 40, 0.001, 0.1, 0.3, 1e-3, 3.0), "reject"),  # significantly worse, however much it shrinks
        ((50, 40, 0.4, -0.3, 0.2, 0.01, 1.0), "keep"),  # not worse (p_not_worse <= alpha / 2) and shrinks
        ((50, 40, 0.4, -0.3, 0.2, 0.01, 0.0), "neutral"),  # not worse but no shrink
        ((50, 40, 0.4, -0.3, 0.9, 0.2, 1.0), "neutral"),  # inconclusive: harm not ruled out
        ((50, 40, 0.4, -0.3, 0.45, 0.03, 1.0), "neutral"),  # interval below the margin is not enough: p > alpha / 2
        ((50, 40, 0.2, 0.1, 0.3, 0.01, 1.0), "keep"),  # above 0 but KS not significant after adjustment: not worse
    ],
)
def test_verdict_rule(args, verdict):
    assert constraint_verdict(*args)[0] == verdict


def test_verdict_states_the_margin():
    keep = constraint_verdict(50, 40, 0.4, -0.3, 0.2, 0.01, 1.0, margin=0.25)[1]
    assert "+0.25 points" in keep and "p = 0.01 <= 0.025" in keep
    assert "+0.25 points is not ruled out" in constraint_verdict(50, 40, 0.4, -0.3, 0.9, 0.2, 1.0, margin=0.25)[1]


def test_holm():
    assert holm([0.01, 0.04, 0.03, np.nan]).tolist()[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([np.nan])[0])


def test_result_is_pure_and_reproducible():
    df = study(n=300, seed=10)
    before = df.copy()
    a, b = derive_constraints(df, n_perm=100), derive_constraints(df, n_perm=100)
    pd.testing.assert_frame_equal(df, before)
    pd.testing.assert_frame_equal(a, b)
