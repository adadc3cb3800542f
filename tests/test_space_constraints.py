"""Constraint objects: one mask (sampler and analysis agree), exact count, file form; derivation uses them."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from anynet_search.analysis import KEEP, candidate_constraints, derive_constraints
from anynet_search.analysis.synthetic import synthetic_results
from anynet_search.spaces import DesignSpace, InfeasibleConfig, load_space
from anynet_search.spaces.constraints import (
    STRUCTURAL,
    FitErrorAtMost,
    NonDecreasing,
    Range,
    Shared,
    space_rules,
    split_param,
)
from anynet_search.spaces.derive import derive_space, exact_shrink


def test_masks_over_arrays():
    w = np.array([[8, 16, 16], [16, 8, 32], [8, 8, 8]])
    assert NonDecreasing("w").holds({"w": w}).tolist() == [True, False, True]
    assert Shared("w").holds({"w": w}).tolist() == [False, False, True]
    assert Range("w2", 8, 8).holds({"w": w}).tolist() == [False, True, True]  # stage 2 only
    assert Range("w", 8, 16).holds({"w": w}).tolist() == [True, False, True]  # every stage
    assert Range("wm", 2.0, 2.5).holds({"wm": np.array([1.9, 2.0, 2.6])}).tolist() == [False, True, False]
    assert Range("w0", 16, 32).holds({"w0": np.array([8, 24])}).tolist() == [
        False,
        True,
    ]  # RegNet's w0: no stage 0
    fit = FitErrorAtMost(0.1, 0.25)
    assert fit.holds({"fit_error": np.array([0.05, 0.2, np.nan])}).tolist() == [True, False, False]
    assert (
        split_param("g3") == ("g", 3)
        and split_param("wa") == ("wa", None)
        and split_param("w0") == ("w0", None)
    )


def test_names_labels_formulas_and_file_forms():
    assert list(STRUCTURAL) == ["shared_b", "shared_g", "increasing_widths", "increasing_depths"]
    assert [r.describe(4) for r in STRUCTURAL.values()] == [
        "b1 = ... = b4",
        "g1 = ... = g4",
        "w1 <= ... <= w4",
        "d1 <= ... <= d4",
    ]
    r = Range("w3", 16.0, 64.0)
    assert (r.name, r.label, r.describe(4)) == ("good_range:w3", "range w3 in [16, 64]", "16 <= w3 <= 64")
    assert r.fragment() == {"ranges": {"w3": [16, 64]}}  # integral bounds stay ints in the file
    assert Range("wm", 2.125, 2.5).fragment() == {"ranges": {"wm": [2.125, 2.5]}}
    assert Shared("b").fragment() == {"shared": ["b"]} and NonDecreasing("d").fragment() == {
        "non_decreasing": ["d"]
    }
    fit = FitErrorAtMost(0.1, 0.25)
    assert (
        fit.name == "fit_error<=q25" and fit.fragment() is None and "no space-file form" in fit.no_form_reason
    )
    with pytest.raises(ValueError, match="no space-file form"):
        fit.add_to({})


def test_add_to_merges_without_duplicates_and_leaves_the_input_alone():
    data = {"constraints": {"shared": ["b"], "ranges": {"w1": [8, 32]}}}
    out = Shared("b").add_to(data)
    assert out["constraints"]["shared"] == ["b"]
    out = Range("w3", 16, 64).add_to(Shared("g").add_to(data))
    assert out["constraints"] == {"shared": ["b", "g"], "ranges": {"w1": [8, 32], "w3": [16, 64]}}
    assert data == {"constraints": {"shared": ["b"], "ranges": {"w1": [8, 32]}}}


def test_exact_counts_match_the_spaces_that_hold_them():
    xa = load_space("anynet_xa")
    assert Shared("b").log10_count(xa) == pytest.approx(load_space("anynet_xb").log10_size)
    assert Shared("b").log10_shrink(xa) == pytest.approx(3 * math.log10(3))
    xc = load_space("anynet_xc")
    assert NonDecreasing("w").log10_count(xc) == pytest.approx(load_space("anynet_xd").log10_size)
    tiny = load_space("anynet_xa_tiny")
    w = [v for v in tiny.params["w"].values]
    inside = sum(16 <= v <= 64 for v in w)
    assert Range("w3", 16, 64).log10_shrink(tiny) == pytest.approx(math.log10(len(w) / inside))
    assert exact_shrink(tiny) == {
        name: pytest.approx(rule.log10_shrink(tiny)) for name, rule in STRUCTURAL.items()
    }


def test_the_sampler_masks_with_the_same_objects():
    base = load_space("anynet_xa_tiny")
    data = Range("w3", 16, 64).add_to(NonDecreasing("d").add_to(base.data))
    space = DesignSpace(data, "test")
    assert [r.name for r in space.rules] == ["increasing_depths", "good_range:w3"]
    assert space_rules({"b"}, {"w"}, {"g2": (1, 4)}) == [Shared("b"), NonDecreasing("w"), Range("g2", 1, 4)]
    samples = space.sample_many(200, seed=1)
    raw = {
        f: np.array([[s.params[f"{f}{i}"] for i in range(1, space.stages + 1)] for s in samples])
        for f in ("d", "w", "b", "g")
    }
    for rule in space.rules:
        assert rule.holds(raw).all()
    # a violating tuple is refused with the object's label
    params = dict(samples[0].params, w3=8)
    with pytest.raises(InfeasibleConfig, match=r"violates range w3 in \[16, 64\]"):
        space.config_from_params(params)


def test_results_table_masks_are_the_analysis_candidates():
    df = synthetic_results(300, seed=3)
    for cand in candidate_constraints(df, holdout=False):
        assert cand.rule is not None and cand.rule.name == cand.name
        np.testing.assert_array_equal(cand.rule.mask(df), cand.satisfied)
        assert cand.detail == cand.rule.describe(4)


def test_sampled_values_are_what_a_mask_reads():
    df = pd.DataFrame(
        {
            "error": [1.0, 2.0],
            "d1": [1, 1],
            "d2": [2, 2],
            "w1": [8, 64],
            "w2": [16, 16],
            "sampled_w1": [8, 8],
            "sampled_w2": [16, 16],
            "sampled_d1": [1, 1],
            "sampled_d2": [2, 2],
        }
    )
    # row 2's built w1 changed (compatibility rule), its sampled one did not: the constraint binds the latter
    assert NonDecreasing("w").mask(df).tolist() == [True, True]
    assert NonDecreasing("w").mask(df.drop(columns=["sampled_w1", "sampled_w2"])).tolist() == [True, False]


def test_derive_space_reads_the_objects_not_the_text():
    """Regression: derive_space regex-parsed the `detail` text (6 significant digits) for range bounds."""
    base = load_space("anynet_xa_tiny")
    table = pd.DataFrame(
        {"constraint": ["good_range:w3", "shared_b"], "verdict": [KEEP, KEEP]}
    )  # no text at all
    table.attrs["rules"] = {"good_range:w3": Range("w3", 16, 64)}
    derived = derive_space(base, table, "t")
    assert derived.added == ["good_range:w3", "shared_b"]
    assert derived.data["constraints"]["ranges"] == {"w3": [16, 64]}
    stale = table.assign(detail=["8 <= w3 <= 128", "b1 = ... = b4"])  # the objects win over any text
    stale.attrs["rules"] = table.attrs["rules"]
    assert derive_space(base, stale, "t").data["constraints"]["ranges"] == {"w3": [16, 64]}
    unknown = pd.DataFrame({"constraint": ["good_range:w2"], "verdict": [KEEP]})
    assert [n for n, _ in derive_space(base, unknown).skipped] == ["good_range:w2"]


def test_derive_constraints_records_its_objects_and_a_short_reason(tmp_path):
    df = synthetic_results(300, seed=0)
    table = derive_constraints(df, n_perm=100)
    rules = table.attrs["rules"]
    assert set(rules) == set(table["constraint"])
    assert all(len(r) < 70 for r in table["reason"]) and table["reason"].str.len().min() > 0
    for name, rule in rules.items():
        if name.startswith("good_range:"):
            lo, hi = (float(x) for x in table.set_index("constraint").loc[name, "detail"].split(" <= ")[::2])
            assert (rule.lo, rule.hi) == (lo, hi)
    kept = table.assign(verdict=KEEP)
    kept.attrs = table.attrs
    base = load_space("anynet_xa")
    derived = derive_space(base, kept, "all")
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(derived.data, sort_keys=False))
    assert load_space(path).log10_size == pytest.approx(derived.log10_size_after)
    assert derived.added and set(derived.added) | {n for n, _ in derived.skipped} == set(table["constraint"])
