"""Size and power of the constraint verdicts and EDF tests, by simulation; writes analysis/verdict_calibration.md.

    python analysis/verdict_calibration.py            # a few minutes on 2 cores
    python analysis/verdict_calibration.py --quick    # fewer repetitions (a smoke run)

1. False keeps at the margin: a constraint whose subset is worse than the whole space by exactly the
   margin (+0.5 points) is kept at most alpha / 2 = 2.5% of the time by the rule in `derive_constraints`
   (studentized permutation test of subset against complement), across subset fractions and sample
   sizes; main's rule (e5ecb52: percentile bootstrap of the subset against its own superset) shown beside.
   Errors are gamma(2, 10): skewed like error EDFs (skewness 1.4; the digits studies: 1.2-1.6) and spread
   28 margins wide (sd 14 points; the digits studies: sd 5 = 10 margins), where main's rule fails most.
   Two more tables let the complement's spread differ (2x or 0.5x), where the permutation test is no
   longer exact, only asymptotically valid.
2. Power against a real improvement: studies resampled from the AnyNetXC study of the A -> E run, in
   which a constraint keeps a fraction of the models and improves them by the AnyNetXC -> AnyNetXD
   difference in mean error measured there (the paper's "increasing widths" step).
3. The complexity-normalized EDF comparison: size and power of the stratified permutation KS test
   (`compare_edfs` with strata) beside main's weighted asymptotic test and the raw KS test, when the
   error falls with flops and the two studies sample flops differently.
4. The null case that the stratified test's old docstring ("exact whatever the flops distributions")
   missed: one error law falling with flops, but study A's models sit at the low end of every flops bin
   and B's at the high end. Size of the plain stratified test, of finer strata, and of the test after
   moving each error to its bin's mean log flops (`compare_edfs(..., complexity_a=, complexity_b=)`).
5. Tied errors: size and power of the one-sided KS test on errors resampled from the committed
   AnyNetXD models (multiples of 100 / 144 points), `scipy.stats.ks_2samp` against the package's
   permutation KS test (`ks_test`).

Maxima over cells come with their Monte-Carlo interval (Wilson) and a Holm-corrected check against the nominal rate.

Inputs: simulations only, plus the committed per-model data of the A -> E progression
(analysis/data/progression_models.csv) for sections 2 and 5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from progression_data import DATA, read_data
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from anynet_search.analysis import compare_edfs, complexity_bins, holm, ks_tests, shift_tests
from anynet_search.analysis.bootstrap import effective_sample_size, resample_counts
from anynet_search.analysis.edf import edf_at
from anynet_search.analysis.weights import weights_from_bins

HERE = Path(__file__).resolve().parent
MARGIN, ALPHA = 0.5, 0.05
FRACTIONS = (0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97)
MIN_N = 10  # derive_constraints' default: fewer satisfying models give 'neutral' whatever the test says
SIZES = (16, 32, 100, 300, 1000, 3000)


def kept(errors: np.ndarray, subset: np.ndarray, rng: np.random.Generator, batch: int = 200,
         margin: float = MARGIN) -> np.ndarray:
    """The new rule's keep decision per simulated study; each batch of studies draws its own permutations."""
    return np.concatenate([shift_tests(errors[i : i + batch], subset, n_perm=399, seed=rng).p_not_worse(margin)
                           <= ALPHA / 2 for i in range(0, len(errors), batch)])


def main_rule_keeps(errors: np.ndarray, subset: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """main's 'not worse' keep (e5ecb52): percentile-bootstrap interval of mean(S) - mean(all) below +margin."""
    reps, n = errors.shape
    keeps = np.zeros(reps, dtype=bool)
    for r in range(reps):
        diffs = []
        for counts in resample_counts(rng, n, n, n_boot):
            with np.errstate(invalid="ignore", divide="ignore"):  # resamples without a subset model: dropped
                s = counts[:, subset] @ errors[r, subset] / counts[:, subset].sum(axis=1)
            diffs.append(s - counts @ errors[r] / n)
        d = np.concatenate(diffs)
        keeps[r] = np.quantile(d[np.isfinite(d)], 1 - ALPHA / 2) < MARGIN
    return keeps


def at_margin(rng: np.random.Generator, reps: int, n: int, n_subset: int, spread: float = 1.0):
    """Errors whose subset is worse than the whole by exactly the margin; the complement's spread scaled."""
    subset = np.arange(n) < n_subset
    base = rng.gamma(2.0, 10.0, (reps, n))
    mean = 20.0
    base[:, ~subset] = mean + spread * (base[:, ~subset] - mean)  # same mean, other spread
    base[:, subset] += MARGIN * n / (n - n_subset)
    return base, subset


def _wilson(rate: float, reps: int) -> str:
    """The 95% Wilson interval of a simulated rate (percent) from `reps` studies, as '[lo, hi]'."""
    lo, hi = proportion_confint(round(rate / 100 * reps), reps, alpha=0.05, method="wilson")
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def summary(cells: list[tuple[int, int, float]], reps: dict[int, int]) -> str:
    """The largest rate among the cells the verdict acts on (subset of at least MIN_N models), overall and n >= 300,
    each with its Monte-Carlo interval, and whether any acting cell exceeds the nominal rate beyond its noise
    (one-sided binomial tests, Holm over the cells): the largest of many noisy cells is biased upward."""
    judged = [c for c in cells if c[1] >= MIN_N]
    big = [c for c in judged if c[0] >= 300]
    worst, worst_big = max(judged, key=lambda c: c[2]), max(big, key=lambda c: c[2])
    p = [stats.binomtest(round(c[2] / 100 * reps[c[0]]), reps[c[0]], ALPHA / 2, alternative="greater").pvalue
         for c in judged]
    least = float(np.min(holm(p)))
    return (f"Largest rate where the verdict acts (subset of {MIN_N} or more models): {worst[2]:.1f}% "
            f"{_wilson(worst[2], reps[worst[0]])} (95% Wilson interval; n = {worst[0]}, {worst[1]} in the subset); "
            f"at n >= 300: {worst_big[2]:.1f}% {_wilson(worst_big[2], reps[worst_big[0]])} (n = {worst_big[0]}, "
            f"{worst_big[1]} in the subset). The largest of {len(judged)} noisy cells overstates its own rate; "
            f"tested cell by cell against {100 * ALPHA / 2:g}% (one-sided binomial, Holm over the {len(judged)} "
            f"cells) the smallest adjusted p is {least:.2g}"
            + (", so no cell exceeds the nominal rate beyond its Monte-Carlo noise." if least > 0.05 else
               ": some cell exceeds the nominal rate beyond its Monte-Carlo noise."))


def size_table(reps: dict[int, int], with_main: bool, spread: float, rng: np.random.Generator,
               rates: list[tuple[int, int, float]]) -> list[str]:
    """Markdown rows of false-keep rates (n x fraction); appends (n, subset size, rate %) to `rates`."""
    rows = ["| n | " + " | ".join(f"{f:g}" for f in FRACTIONS) + " |", "|---" * (len(FRACTIONS) + 1) + "|"]
    for n in SIZES:
        cells = []
        for f in FRACTIONS:
            k = int(np.clip(round(f * n), 1, n - 1))
            errors, subset = at_margin(rng, reps[n], n, k, spread)
            new = kept(errors, subset, rng).mean()
            rates.append((n, k, 100 * new))
            cell = f"{100 * new:.1f}" + ("*" if k < MIN_N else "")
            if with_main:
                m = min(reps[n], 300)
                cell += f" / {100 * main_rule_keeps(errors[:m], subset, 300, rng).mean():.1f}"
            cells.append(cell)
        rows.append(f"| {n} ({reps[n]}) | " + " | ".join(cells) + " |")
    return rows


def power_rows(population: np.ndarray, effect: float, margin: float, rng: np.random.Generator,
               reps: int) -> list[str]:
    """Markdown rows of the keep rate against a real improvement; below MIN_N satisfying models the rule says
    'neutral' whatever the test says, so the rate there is 0 (the test alone beside it, marked *)."""
    rows = ["| n | fraction 0.1 | fraction 0.3 | fraction 0.5 |", "|---|---|---|---|"]
    for n in (32, 100, 300, 1000):
        cells = []
        for f in (0.1, 0.3, 0.5):
            k = int(round(f * n))
            errors = rng.choice(population, size=(reps, n))
            subset = np.arange(n) < k
            errors[:, subset] += effect
            rate = 100 * kept(errors, subset, rng, margin=margin).mean()
            cells.append(f"0%* (test alone {rate:.0f}%)" if k < MIN_N else f"{rate:.0f}%")
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return rows


def old_weighted_p(a: np.ndarray, b: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> float:
    """main's weighted KS p-value: Kolmogorov tail at the Kish effective sample sizes."""
    points = np.union1d(a, b)
    d = float(np.max(np.abs(edf_at(a, points, wa) - edf_at(b, points, wb))))
    na, nb = effective_sample_size(wa), effective_sample_size(wb)
    return float(stats.kstwo.sf(d, max(1, int(round(na * nb / (na + nb))))))


def ks_rows(rng: np.random.Generator, reps: int, n: int = 100, bins: int = 5) -> list[str]:
    rows = ["| true shift of B (points) | stratified permutation | stratified, log-flops adjusted "
            "| weighted asymptotic (main) | raw ks_2samp |", "|---|---|---|---|---|"]
    for shift in (0.0, 0.25, 0.5, 1.0):
        hits = np.zeros(4)
        for r in range(reps):
            fa, fb = 10 ** rng.uniform(8, 9, n), 10 ** (8 + rng.uniform(0, 1, n) ** 0.5)
            ea = 10 - 3 * np.log10(fa / 1e8) + rng.normal(0, 1, n)
            eb = 10 - 3 * np.log10(fb / 1e8) + rng.normal(0, 1, n) + shift
            shared = (max(fa.min(), fb.min()), min(fa.max(), fb.max()))
            za, zb = complexity_bins(fa, bins, shared)[0], complexity_bins(fb, bins, shared)[0]
            wa, wb = weights_from_bins(za, bins), weights_from_bins(zb, bins)
            hits += [compare_edfs(eb, ea, zb, za, n_perm=199, seed=r).p_value <= ALPHA,
                     compare_edfs(eb, ea, zb, za, complexity_a=fb, complexity_b=fa, n_perm=199,
                                  seed=r).p_value <= ALPHA,
                     old_weighted_p(eb[wb > 0], ea[wa > 0], wb[wb > 0], wa[wa > 0]) <= ALPHA,
                     stats.ks_2samp(eb, ea).pvalue <= ALPHA]
        rows.append(f"| {shift:+.2f} | " + " | ".join(f"{100 * h / reps:.1f}%" for h in hits) + " |")
    return rows


def placed_in_bins(rng: np.random.Generator, n: int, bins: int, low: bool, curved: bool = False,
                   shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(flops, errors) of one study: n models spread evenly over `bins` bins of [1e8, 1e9], each model in
    the low (or high) 40% of its bin's log range; error 10 - 3 log10(f / 1e8) (+ 4 (x - 0.5)^2 if
    `curved`) + N(0, 0.5^2) + shift."""
    edges = np.linspace(8.0, 9.0, bins + 1)
    j = np.arange(n) % bins
    offset = rng.uniform(0.0, 0.4, n) if low else rng.uniform(0.6, 1.0, n)
    x = edges[j] + offset * (edges[1] - edges[0])
    e = 10 - 3 * (x - 8) + (4 * (x - 8.5) ** 2 if curved else 0.0) + rng.normal(0, 0.5, n) + shift
    return 10**x, e


def placement_rows(rng: np.random.Generator, reps: int,
                   n: int = 100) -> tuple[list[str], list[tuple[float, float, int]]]:
    """Markdown rows: rejection rates at p <= 0.05 of the stratified tests when models sit differently in bins;
    and per row (plain %, adjusted %, studies the 10-bin test could compare)."""
    rates: list[tuple[float, float, int]] = []
    rows = ["| error law | true shift of B | 5 bins, plain | 10 bins, plain | 5 bins, log-flops adjusted |",
            "|---|---|---|---|---|"]
    for curved, shift in ((False, 0.0), (True, 0.0), (False, 0.5)):
        hits, fine, compared = np.zeros(2), 0, 0
        for r in range(reps):
            fa, ea = placed_in_bins(rng, n, 5, low=True, curved=curved)
            fb, eb = placed_in_bins(rng, n, 5, low=False, curved=curved, shift=shift)
            z5 = [complexity_bins(f, 5, (1e8, 1e9))[0] for f in (fa, fb)]
            z10 = [complexity_bins(f, 10, (1e8, 1e9))[0] for f in (fa, fb)]
            hits += [compare_edfs(eb, ea, z5[1], z5[0], n_perm=199, seed=r).p_value <= ALPHA,
                     compare_edfs(eb, ea, z5[1], z5[0], complexity_a=fb, complexity_b=fa, n_perm=199,
                                  seed=r).p_value <= ALPHA]
            try:  # finer bins can separate the two studies entirely
                fine += compare_edfs(eb, ea, z10[1], z10[0], n_perm=199, seed=r).p_value <= ALPHA
                compared += 1
            except ValueError:
                pass
        law = "curved (+4 (x - 8.5)^2)" if curved else "linear in log flops"
        finer = f"{100 * fine / compared:.1f}%" if compared else f"no shared bin in {reps} of {reps}"
        rows.append(f"| {law} | {shift:+.2f} | {100 * hits[0] / reps:.1f}% | {finer} | {100 * hits[1] / reps:.1f}% |")
        rates.append((100 * hits[0] / reps, 100 * hits[1] / reps, compared))
    return rows, rates


def tie_rows(population: np.ndarray, image: float, rng: np.random.Generator, reps: int,
             n: int = 100) -> tuple[list[str], list[tuple[float, float]]]:
    """Markdown rows: one-sided KS (B better) at 2.5%, ks_2samp against the permutation test, on tied errors;
    B shifted by 0 and by one image, the shifted errors put back exactly on the lattice (a shift in floating
    point would leave them a rounding error off it, and ks_2samp would split ties that are there)."""
    rows = ["| true shift of B (points) | ks_2samp | permutation KS (ks_test) |", "|---|---|---|"]
    rates: list[tuple[float, float]] = []
    subset = np.arange(2 * n) < n
    for shift in (0.0, -image):
        x = rng.choice(population, (reps, 2 * n))
        x[:, subset] = np.round((x[:, subset] + shift) / image) * image
        scipy_p = np.array([stats.ks_2samp(r[subset], r[~subset], alternative="greater").pvalue for r in x])
        perm_p = np.concatenate([ks_tests(x[i : i + 200], subset, n_perm=399, seed=rng, alternative="greater")[1]
                                 for i in range(0, reps, 200)])
        rows.append(f"| {shift:+.2f} | {100 * (scipy_p <= ALPHA / 2).mean():.1f}% | "
                    f"{100 * (perm_p <= ALPHA / 2).mean():.1f}% |")
        rates.append((100 * (scipy_p <= ALPHA / 2).mean(), 100 * (perm_p <= ALPHA / 2).mean()))
    return rows, rates


def main(argv: list[str] | None = None) -> int:
    """Run the simulations and write the markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--data", default=str(DATA), help="committed per-model data of the A -> E studies")
    parser.add_argument("--out", default=str(HERE / "verdict_calibration.md"))
    args = parser.parse_args(argv)
    scale = 0.2 if args.quick else 1.0
    reps = {16: 4000, 32: 4000, 100: 2000, 300: 1000, 1000: 400, 3000: 150}
    reps = {n: max(20, int(r * scale)) for n, r in reps.items()}
    rng = np.random.default_rng(2026)
    start = time.perf_counter()
    cells: dict[float, list[tuple[int, int, float]]] = {1.0: [], 2.0: [], 0.5: []}
    size = size_table(reps, True, 1.0, rng, cells[1.0])
    spread2 = size_table(reps, False, 2.0, rng, cells[2.0])
    spread05 = size_table(reps, False, 0.5, rng, cells[0.5])
    frames, _, meta = read_data(Path(args.data))
    xc, xd, xe = (frames[f"anynet_{s}_tiny"]["error"].to_numpy(dtype=float) for s in ("xc", "xd", "xe"))
    effect, n_pop = float(xd.mean() - xc.mean()), xc.size
    image = 100.0 / meta["validation_images"]
    power = power_rows(xc, effect, image, rng, max(50, int(1000 * scale)))
    ks = ks_rows(rng, max(50, int(1000 * scale)))
    placement, rates = placement_rows(rng, max(50, int(400 * scale)))
    ties, ties_rates = tie_rows(np.round(xd / image) * image, image, rng, max(200, int(2000 * scale)))
    seconds = time.perf_counter() - start
    mc = {n: 100 * 3 * np.sqrt(0.025 * 0.975 / r) for n, r in reps.items()}
    lines = [
        "# Calibration of the constraint verdicts and EDF tests",
        "",
        "```bash",
        ("python analysis/verdict_calibration.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "```",
        "",
        f"Ran in {seconds / 60:.1f} min on 2 shared cores. Nominal false-keep rate: {100 * ALPHA / 2:g}% "
        f"(the rule keeps a constraint as 'not worse' when p_not_worse <= alpha / 2 = {ALPHA / 2:g}).",
        "",
        "## 1. False keeps at the margin",
        "",
        "Percent of simulated studies whose constraint is kept although it worsens the space's mean error by "
        f"exactly +{MARGIN:g} points (errors gamma(2, 10): mean 20, sd 14, skewness 1.4; the subset's errors "
        "shifted up); rows: models per study (simulated studies), columns: fraction of models "
        "satisfying the constraint. Cells: new rule / main's rule (main's on at most 300 studies per cell). "
        "Three Monte-Carlo standard errors around 2.5%: "
        + ", ".join(f"n = {n}: +-{mc[n]:.1f}" for n in SIZES) + " points. * marks cells with fewer than "
        f"{MIN_N} models in the subset, where the verdict is 'neutral' (min_n) whatever the test says: the "
        "numbers there describe the test alone. The issue's cases are n = 16, fraction 0.9 (2 models excluded) "
        "and n = 32, fraction 0.9 (3 excluded).",
        "",
        *size,
        "",
        summary(cells[1.0], reps),
        "",
        "Where the complement's spread differs from the subset's, permutations are no longer exchangeable under "
        "the null and the test is exact no longer; the statistic is studentized so that the size returns to "
        "nominal as both groups grow. Complement spread 2x (new rule only):",
        "",
        *spread2,
        "",
        summary(cells[2.0], reps),
        "",
        "Complement spread 0.5x (new rule only):",
        "",
        *spread05,
        "",
        summary(cells[0.5], reps),
        "",
        "## 2. Power against a real improvement",
        "",
    ]
    lines += [f"Studies resampled from the {n_pop} AnyNetXC models of the A -> E run (committed data); the models "
              f"satisfying the constraint are improved by {effect:+.2f} points, the AnyNetXC -> AnyNetXD difference "
              "in mean error measured there. That alternative was chosen after the data were seen (it is the "
              "difference this data shows), not fixed in advance: the table is the power against an effect of the "
              "size observed, which says nothing about whether that observation was real. Percent of studies in "
              f"which the constraint is kept (margin one validation image, +{image:.2f} points, as in the A -> E "
              f"note); * marks cells with fewer than {MIN_N} satisfying models, where `derive_constraints` says "
              "'neutral' whatever the test says, so the rule keeps nothing (the test's own rate beside it):", "",
              *power]
    lines += ["", "## 3. Complexity-normalized EDF comparison", "",
              "Two studies of 100 models whose error falls by 3 points per decade of flops (noise sd 1); study B "
              "samples larger models. 5 flops bins over the shared range. Percent of studies with p <= 0.05 "
              "(the first row is the size, the others power):", "", *ks, "",
              "## 4. Models placed differently inside the flops bins", "",
              "The stratified test permutes models within bins, so it is exact only when the errors inside a bin "
              "are exchangeable. Here both studies have one error law (10 - 3 log10(flops / 1e8) + N(0, 0.5^2); "
              "'curved' adds 4 (x - 8.5)^2, x = log10 flops), 100 models each, spread evenly over the 5 equal bins of "
              "[1e8, 1e9] flops, but A's models sit in the lowest 40% of every bin's log range and B's in the "
              "highest 40%. Percent of studies with p <= 0.05 (rows with shift 0 are the size, nominal 5%; the "
              "last row is power against B worse by 0.5 points):", "", *placement, "",
              f"With one linear law the plain test rejects the true null in {rates[0][0]:.0f}% of the studies (a "
              f"curved law: {rates[1][0]:.0f}%): its old docstring's 'exact whatever the flops distributions' was "
              "false. Finer strata are no way out here: at 10 bins the two studies "
              + ("share no bin at all, so nothing is left to compare. " if rates[0][2] == 0 else
                 f"could be compared in {rates[0][2]} studies only. ")
              + "Moving each error to its bin's mean log flops along the pooled within-bin slope brings the linear "
              f"law's rate to {rates[0][1]:.1f}% (nominal 5%), but its power against B worse by 0.5 points is "
              f"{rates[2][1]:.1f}%: where the two studies' models sit apart inside every bin, a difference at equal "
              "flops cannot be told from the slope, so the adjusted test keeps its size by giving up power there. A "
              f"curved law leaves its curvature inside the bins, and the adjusted test still rejects "
              f"{rates[1][1]:.0f}% of null studies: the adjustment is linear. Where the studies' flops overlap inside "
              "the bins (section 3) the adjusted test keeps its size and loses no power.", "",
              "## 5. One-sided KS on tied errors", "",
              f"Errors resampled from the {xd.size} committed AnyNetXD models (multiples of {image:.2f} points, "
              f"{np.unique(np.round(xd, 6)).size} distinct values), 100 per study; study B shifted by the given "
              f"amount (the second row: one validation image better). Percent of studies in which the one-sided "
              f"KS test (B better) rejects at {ALPHA / 2:g}; the first row is the size:", "", *ties, "",
              f"`ks_2samp` assumes continuous errors; with ties its p-values are too large: it rejects "
              f"{ties_rates[0][0]:.1f}% of null studies at level {ALPHA / 2:g} "
              + (f"and {ties_rates[1][0]:.1f}% against the one-image gain, where the permutation test rejects "
                 f"{ties_rates[0][1]:.1f}% and {ties_rates[1][1]:.1f}%. " if ties_rates[1][0] < ties_rates[1][1]
                 else f"(the permutation test {ties_rates[0][1]:.1f}%). ")
              + "The permutation test permutes the tied errors as they are, so under the null (both samples from "
              "one population) its rate stays at or below the level, as here (below it because the KS distance of "
              "100 + 100 tied models takes few values); its p-value is a Monte-Carlo estimate, (1 + count) / "
              "(1 + permutations).", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
