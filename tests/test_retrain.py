"""Retraining the same configs under other training seeds (`run --repeat K`): the seeds, the stored setting, and
the noise numbers computed from two such studies."""


from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from anynet_search.analysis.fidelity import error_resolution, margin_note, overlap_law, top_overlap
from anynet_search.analysis.noise import beyond_noise, noise_sd_of_difference, retrain_noise
from anynet_search.analysis.paired import rho_differences
from anynet_search.reporting.fidelity import fidelity_of
from anynet_search.reporting.results import RunData
from anynet_search.study.settings import StudySettings, train_seed


def _settings(**kw):
    base = dict(space={}, space_source="x", space_hash="h", sampler="random", seed=5, n_trials=10, dataset="digits",
                train={})
    return StudySettings(**{**base, **kw})


def test_the_first_training_keeps_seed_plus_slot_and_a_repeat_reuses_no_seed():
    assert [train_seed(5, s) for s in range(4)] == [5, 6, 7, 8]
    first = {train_seed(seed, s) for seed in range(3) for s in range(1000)}
    again = [train_seed(0, s, 1) for s in range(1000)] + [train_seed(0, s, 2) for s in range(1000)]
    assert len(set(again)) == len(again) and not first & set(again)
    assert train_seed(0, 3, 1) == train_seed(0, 3, 1) and 0 <= train_seed(7, 3, 9) < 2**31
    assert _settings(repeat=2).train_seed(3) == train_seed(5, 3, 2)


def test_repeat_is_stored_only_when_set_and_older_settings_read_as_the_first_training():
    first = _settings().to_dict()
    assert "repeat" not in first  # readable by versions that do not know the field
    assert StudySettings.from_dict(first).repeat == 0
    again = _settings(repeat=3).to_dict()
    assert again["repeat"] == 3 and StudySettings.from_dict(again).repeat == 3


def _noisy_pair(n: int = 80, noise: float = 0.5, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two trainings of the same n configs (sampled_w1 identifies them) on the lattice of 144 validation images."""
    rng = np.random.default_rng(seed)
    quality = rng.gamma(2.0, 3.0, n)
    image = 100 / 144
    first, second = (np.round((quality + rng.normal(0, noise, n)) / image) * image for _ in range(2))
    make = lambda e: pd.DataFrame({"trial": range(n), "sampled_w1": np.arange(n) * 8.0, "error": e})  # noqa: E731
    return make(first), make(second).iloc[::-1].reset_index(drop=True)  # matched by config, not by row


def test_retrain_noise_measures_the_per_model_differences_and_the_retest_rank_correlation():
    a, b = _noisy_pair()
    noise = retrain_noise(a, b, n_boot=300)
    d = b.set_index("sampled_w1")["error"].loc[a["sampled_w1"]].to_numpy() - a["error"].to_numpy()
    assert noise.n == 80 and noise.changed == int(np.sum(np.abs(d) > 1e-9))
    assert noise.mean_abs == pytest.approx(np.abs(d).mean()) and noise.largest == pytest.approx(np.abs(d).max())
    assert noise.model_sd == pytest.approx(np.std(d, ddof=1) / np.sqrt(2))
    assert noise.shift_lo < d.mean() < noise.shift_hi
    assert noise.rho == pytest.approx(stats.spearmanr(a["error"], b.set_index("sampled_w1")["error"].loc[
        a["sampled_w1"]]).statistic)
    assert 0.25 < noise.model_sd < 0.8  # the planted noise, 0.5 points, on the 0.69-point lattice
    # retraining alone moves a difference of two means of 100 models by sd model_sd * sqrt(2 / 100)
    assert noise_sd_of_difference(noise.model_sd, 100, 100) == pytest.approx(noise.model_sd * np.sqrt(0.02))
    assert beyond_noise(-1.0, noise, 100, 100) == pytest.approx(1.0 / noise_sd_of_difference(noise.model_sd, 100, 100))


def test_paired_differences_of_rho_are_the_differences_of_scipys_estimates_and_hold_their_size():
    rng = np.random.default_rng(5)
    t = rng.normal(size=60)
    errors = pd.DataFrame({"high": t + rng.normal(0, 0.3, 60), "e1": t + rng.normal(0, 2, 60),
                           "e4": t + rng.normal(0, 0.6, 60)})
    table = rho_differences(errors, "high", [("e4", "e1")], n_boot=500)
    rho = {k: stats.spearmanr(errors[k], errors["high"]).statistic for k in ("e1", "e4")}
    row = table.iloc[0]
    assert row["diff"] == pytest.approx(rho["e4"] - rho["e1"]) and row["lo"] < row["diff"] < row["hi"]
    assert row["lo"] > 0 and row["p"] < 0.05 and row["p_holm"] == pytest.approx(row["p"])  # one test: Holm = p
    rejected = 0  # two budgets of equal noise: the paired test rejects about 5% of the time at 0.05
    for r in range(80):
        t = rng.normal(size=40)
        same = pd.DataFrame({"high": t + rng.normal(0, 0.5, 40), "a": t + rng.normal(0, 1, 40),
                             "b": t + rng.normal(0, 1, 40)})
        rejected += rho_differences(same, "high", [("a", "b")], n_boot=300, seed=r)["p"].iloc[0] <= 0.05
    assert rejected <= 10, rejected  # 4 expected; 3 binomial sds above it


def test_the_overlap_p_is_exact_over_every_tie_break_of_both_cuts():
    """Brute force over all tie breaks of a small case agrees with the law `top_overlap` sums in closed form."""
    low = np.array([1.0, 1, 1, 2, 3, 3, 3, 9, 9, 9])
    high = np.array([0.0, 1, 1, 1, 2, 5, 6, 7, 8, 9])
    k, n = 3, 10
    tops_low = [set(c) | {i for i in range(n) if low[i] < 1} for c in combinations(range(3), 3)]  # 3 tied for 3
    tops_high = [{0} | set(c) for c in combinations(range(1, 4), 2)]  # 3 tied for 2 places
    law = np.zeros(k + 1)
    for a in tops_low:
        for b in tops_high:
            law[len(a & b)] += 1 / (len(tops_low) * len(tops_high))
    assert np.allclose(overlap_law(low, high, k), law)
    o = top_overlap(low, high, 0.3)
    assert o["p_value"] == pytest.approx(sum(law[j] * stats.hypergeom.sf(j - 1, n, k, k) for j in range(k + 1)))
    assert o["overlap"] == pytest.approx(sum(j * law[j] for j in range(k + 1)))


def test_one_validation_image_is_read_off_the_errors_and_a_finer_margin_is_flagged():
    errors = np.array([3, 7, 8, 10, 21]) * 100 / 144
    assert error_resolution(errors) == pytest.approx(100 / 144)
    assert error_resolution(np.random.default_rng(0).uniform(0, 30, 20)) is None  # not counts of images
    assert "finer than one validation image (0.69 points, 144 images)" in margin_note(0.5, 100 / 144)
    assert margin_note(100 / 144, 100 / 144) is None and margin_note(0.5, None) is None


def test_fidelity_flags_a_margin_finer_than_one_validation_image_and_not_one_image_itself():
    rng = np.random.default_rng(2)
    n = 40
    configs = {f"sampled_{p}{i}": rng.integers(1, 9, n) * (8 if p == "w" else 1) for p in "dwbg" for i in (1, 2)}
    wrong = rng.integers(0, 30, n)
    built = {k.removeprefix("sampled_"): v for k, v in configs.items()}
    high = pd.DataFrame({"trial": range(n), "error": wrong * 100 / 144, "sampler": "random", "flops": 1e6,
                         **configs, **built})
    low = high.assign(error=(wrong + rng.integers(0, 5, n)) * 100 / 144)
    runs = [RunData(label=k, run=k, df=df) for k, df in (("low", low), ("high", high))]
    flagged = fidelity_of(*runs, n_boot=200, margin=0.5, figure=False)
    assert "finer than one validation image (0.69 points, 144 images)" in flagged.margin_flag
    assert any("finer than one validation image" in line for line in flagged.lines(table=False))
    assert fidelity_of(*runs, n_boot=200, margin=100 / 144, figure=False).margin_flag is None


def test_the_committed_fidelity_note_follows_from_the_committed_data():
    """analysis/fidelity_digits.md's per-study table, the retraining and the exact overlap p of 1 epoch come from
    analysis/data/fidelity_models.csv."""
    import sys
    from pathlib import Path

    from anynet_search.analysis.fidelity import match_models

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "analysis"))
    from fidelity_digits import DATA, read_data

    frames, meta = read_data(DATA)
    note = (root / "analysis" / "fidelity_digits.md").read_text()
    assert list(frames) == ["1", "2", "4", "8", "8r1"] and meta["studies"]["8r1"]["repeat"] == 1
    for df in frames.values():
        e = df["error"]
        assert f"| {len(df)} | {e.min():.2f} | {e.median():.2f} | {e.mean():.2f} |" in note
    pairs = match_models(frames["1"], frames["8"])
    p = top_overlap(pairs["error_low"], pairs["error_high"], 0.1)["p_value"]
    assert f"| {p:.3g} (" in note and "**The noise ceiling.**" in note
    noise = retrain_noise(frames["8"], frames["8r1"], n_boot=200)
    assert f"{noise.changed} of the {noise.n} 8-epoch errors changed: by {noise.mean_abs:.2f} points" in note


def test_permutation_p_values_at_their_floor_print_as_at_most():
    from anynet_search.analysis import derive_constraints
    from anynet_search.analysis.synthetic import synthetic_results
    from anynet_search.reporting.verdicts import verdict_rows

    table = derive_constraints(synthetic_results(200), n_perm=200)
    shown, _ = verdict_rows(table)
    floor = {r.constraint: r for r in table.itertuples() if r.p_value <= 1 / 201 + 1e-12}
    assert floor  # the data hold a constraint whose permutation p is at its floor
    for row in shown:
        if row.constraint in floor:
            assert "p_value <= 0.004975" in row.more and "p_adjusted <= " in row.more, row.more
        else:
            assert "p_value <=" not in row.more
