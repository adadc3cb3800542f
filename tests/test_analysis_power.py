"""Power of the package's own tests by simulation (`anynet_search.analysis.power`): size at the null, agreement
with the normal approximation where it holds, monotonicity, tie handling, and the keep rule's power."""

import math

import numpy as np
import pandas as pd
import pytest

from anynet_search.analysis import derive_constraints
from anynet_search.analysis.power import (
    TESTS,
    default_n_perm,
    keep_power,
    normal_n,
    power,
    required_n,
    verdict_power,
)

IMAGE = 100 / 144  # one validation image of the digits split, in points


def _digits_like(seed: int = 0, m: int = 200) -> np.ndarray:
    """Skewed errors on the 144-image lattice, like the digits studies' (mean ~7, sd ~5)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.gamma(2.0, 3.5, m) / IMAGE) * IMAGE


def _mc(p: float, sims: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / sims)


@pytest.mark.parametrize("test", ["noninferiority", "superiority"])
def test_rejects_at_most_alpha_on_the_null_boundary(test):
    """At effect = margin (non-inferiority) or 0 (superiority) H0 holds with equality: rejection rate <= alpha."""
    errors = _digits_like()
    margin = IMAGE if test == "noninferiority" else 0.0
    p = power(errors, 60, margin, test=test, margin=margin, alpha=0.05, sims=1000, seed=1)
    assert p <= 0.05 + _mc(0.05, 1000)
    assert p >= 0.05 - _mc(0.05, 1000)  # and not far below: the studentized permutation test is exact here


def test_ks_test_keeps_its_size_with_heavy_ties():
    p = power(_digits_like(2), 100, 0.0, test="ks", alpha=0.05, sims=800, seed=3)
    assert p <= 0.05 + _mc(0.05, 800)


def test_superiority_power_matches_the_normal_approximation_on_continuous_errors():
    """Normal errors, n = 100 per group, a true gain of 0.5 sd, one-sided 2.5%: power Phi(0.5 sqrt(50) - 1.96)."""
    errors = np.random.default_rng(4).normal(0.0, 1.0, 5000)
    expected = float(np.clip(0.5 * math.sqrt(50) - 1.959964, -10, 10))
    from scipy import stats

    target = float(stats.norm.cdf(expected))
    p = power(errors, 100, -0.5, test="superiority", alpha=0.025, sims=600, seed=5)
    assert abs(p - target) <= _mc(target, 600) + 0.02


def test_power_grows_with_n_and_with_the_effect():
    errors = _digits_like(6)
    small = power(errors, 50, -IMAGE, test="superiority", sims=600, seed=7)
    large = power(errors, 400, -IMAGE, test="superiority", sims=600, seed=7)
    bigger_effect = power(errors, 50, -4 * IMAGE, test="superiority", sims=600, seed=7)
    assert small + 0.2 < large and small + 0.3 < bigger_effect


def test_equivalence_has_no_power_when_the_interval_cannot_fit_inside_the_margin():
    """The issue's case: equivalence at +-0.5 points with sd ~5 and n = 100 is never shown."""
    assert power(_digits_like(8), 100, 0.0, test="equivalence", margin=0.5, alpha=0.05, sims=300, seed=9) == 0.0
    assert power(_digits_like(8), 100, 0.0, test="equivalence", margin=5.0, alpha=0.05, sims=300, seed=9) > 0.9


def test_a_shift_of_whole_images_is_judged_like_the_same_shift_on_integers():
    """KS compares the EDFs only after the last of tied values; 3 * image - image must tie with 2 * image
    although floating point makes them differ in the last bit. The KS statistic depends only on the
    order, so errors counted in images (exact integers) must give exactly the same power."""
    images = np.round(_digits_like(10) / IMAGE)
    in_points = power(images * IMAGE, 100, -IMAGE, test="ks", sims=400, seed=11)
    in_images = power(images, 100, -1.0, test="ks", sims=400, seed=11)
    assert in_points == in_images


def test_reproducible_and_validated():
    errors = _digits_like(12)
    assert power(errors, 30, -1.0, sims=100, seed=1) == power(errors, 30, -1.0, sims=100, seed=1)
    assert set(TESTS) == {"noninferiority", "superiority", "equivalence", "ks"}
    assert default_n_perm(0.025) == 199 and default_n_perm(0.025 / 4) == 639
    with pytest.raises(ValueError, match="test must be one of"):
        power(errors, 30, 0.0, test="t")
    with pytest.raises(ValueError, match="at least 3 models"):
        power(errors, 1, 0.0, n_other=1)
    with pytest.raises(ValueError, match="margin finite and >= 0"):
        power(errors, 30, 0.0, margin=-1.0)


def test_required_n_reaches_the_target_and_one_ladder_step_below_does_not():
    errors = _digits_like(13)
    n, p = required_n(errors, -2 * IMAGE, test="superiority", alpha=0.025, target=0.8, sims=400, seed=14)
    assert n is not None and p >= 0.8
    below = power(errors, int(n / 1.25), -2 * IMAGE, test="superiority", sims=400, seed=14)
    assert below < 0.8 + _mc(0.8, 400)
    assert normal_n(errors, IMAGE, test="noninferiority", margin=IMAGE) == math.inf  # effect on the margin
    assert required_n(errors, IMAGE, margin=IMAGE)[0] is None


def test_keep_power_is_zero_below_min_n_and_matches_the_rule_it_simulates():
    """keep_power simulates derive_constraints' not-worse keep: at one subset size, running the real rule on
    resampled studies with no effect keeps the constraint about as often."""
    errors = _digits_like(15)
    assert keep_power(errors, 5, 100, margin=IMAGE) == 0.0
    assert math.isnan(keep_power(errors, 100, 100, margin=IMAGE))
    predicted = keep_power(errors, 40, 100, margin=2 * IMAGE, sims=400, seed=16)
    rng = np.random.default_rng(17)
    reps, kept = 120, 0
    for r in range(reps):
        e = rng.choice(errors, 100)
        frame = pd.DataFrame({"error": e, "sampler": "random", "d1": np.where(np.arange(100) < 40, 1, 2),
                              "d2": 1, "d3": 1, "d4": 1})
        table = derive_constraints(frame, n_perm=199, seed=r, margin=2 * IMAGE, holdout=False)
        row = table.set_index("constraint").loc["increasing_depths"]
        kept += row["verdict"] == "keep" and row["p_not_worse"] <= 0.025
    assert abs(kept / reps - predicted) <= _mc(predicted, reps) + _mc(predicted, 400)
    powers = verdict_power(table, e, sims=100)
    assert powers.shape == (len(table),)
    row = table.reset_index(drop=True).index[table["constraint"].eq("increasing_depths")][0]
    assert 0.0 < powers[row] < 1.0
