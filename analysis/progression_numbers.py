"""Every number of analysis/anynet_progression.md, computed from the five studies' results frames (no drawing).

Per step (A -> B, B -> C, C -> D, D -> E) the two studies are independent samples (their configs come
from independent streams; their training seeds are shared by slot, see `seed_correlation`), so the step
is judged by two-sample tests, all exact with tied errors (errors on 144 validation images are
multiples of 100 / 144 = 0.69 points):

- primary, the test planned before any result was seen: the paper's claim on the mean validation error,
  one-sided, with Holm's correction across the four steps, each at one-sided level alpha / 2. "No loss"
  (B, C) is non-inferiority, H0 "the next space is worse by `margin` points or more"; "better" (D, E) is
  superiority, H0 "the next space is not better". Both are the studentized permutation test
  (`anynet_search.analysis.shift_tests`);
- secondary, chosen after the first results were seen: the one-sided permutation KS test "the next
  space's EDF lies nowhere above the previous one's" (`ks_test(..., alternative="greater")`), also
  Holm-adjusted across the steps;
- "unchanged" only by equivalence (two one-sided tests at 5%): the 90% interval of the mean difference
  inside +-margin; otherwise the smallest bound the data support;
- two-sided permutation KS tests of the raw EDFs and of the complexity-normalized EDFs (permutations
  within flops bins, after moving each error to its bin's mean log flops: `compare_edfs` with
  `complexity_a/b`), each with Holm's correction across the four steps, for "any difference at all";
- the power of each test at the effect that matters (`anynet_search.analysis.power`): for "no loss" a
  true difference of 0 (can "no loss of `margin`" be shown when nothing changed?), for "better" a true
  improvement of `margin`; and the models per space that 80% power would need.

The margin is one validation image, 100 / n_val points: the smallest change of one model's error the
data can show, fixed by the split size alone (`one_image`). Within each study `derive_constraints`
judges the step's constraint on that study's models (the project's own keep rule), with the power of
its "not worse" keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from anynet_search.analysis import (
    compare_edfs,
    complexity_bins,
    default_ns,
    derive_constraints,
    expected_best_error,
    holm,
    ks_test,
    shift_tests,
)
from anynet_search.analysis.power import power, required_n, verdict_power
from anynet_search.spaces import DesignSpace
from anynet_search.spaces.band import band_shrink, band_size
from anynet_search.spaces.derive import exact_shrink

#: The paper's finding for each space against the previous one, and the constraint it adds.
CLAIMS: dict[str, tuple[str, str]] = {
    "xb": ("no loss", "shared_b"),
    "xc": ("no loss", "shared_g"),
    "xd": ("better", "increasing_widths"),
    "xe": ("better", "increasing_depths"),
}
CONFIG_COLUMNS = [f"{f}{i}" for f in "dwbg" for i in range(1, 5)]


def label(space: str) -> str:
    """'anynet_xc_tiny' -> 'AnyNetXC'."""
    return "AnyNetX" + space.split("_")[1][1:].upper()


def one_image(validation_images: int) -> float:
    """The margin: one validation image, in error points (100 / n_val)."""
    return 100.0 / validation_images


def _space_row(name: str, df: pd.DataFrame, space: DesignSpace, band_draws: int, seed: int,
               validation_images: int) -> dict[str, Any]:
    e = df["error"].to_numpy(dtype=float)
    band = band_size(space, draws=band_draws, seed=seed)
    # binomial noise of a model's error measured on n_val images, against the spread between models
    noise = float(np.mean(e * (100.0 - e)) / validation_images)
    return {"space": name, "label": label(name), "n": int(e.size), "best": float(e.min()),
            "median": float(np.median(e)), "mean": float(e.mean()), "sd": float(e.std(ddof=1)),
            "log10_size": float(space.log10_size), "band": band, "log10_band": band.log10_size,
            "flops_median": float(df["flops"].median()), "noise_share": noise / float(e.var(ddof=1)),
            "distinct": int(np.unique(np.round(e, 6)).size),
            "mode_share": float(np.unique(np.round(e, 6), return_counts=True)[1].max() / e.size)}


def _step(prev: str, nxt: str, frames: Mapping[str, pd.DataFrame], margin: float, alpha: float, n_perm: int,
          seed: int, bins: int) -> dict[str, Any]:
    a = frames[prev]["error"].to_numpy(dtype=float)
    b = frames[nxt]["error"].to_numpy(dtype=float)
    claim, constraint = CLAIMS[nxt.split("_")[1]]
    pooled = np.concatenate([b, a])
    subset = np.arange(pooled.size) < b.size  # the next space's models; the previous space is the complement
    tests = shift_tests(pooled, subset, n_perm=n_perm, seed=seed)
    coef = a.size / pooled.size  # the tested effect is coef * (mean(next) - mean(prev))
    lo95, hi95 = (x[0] / coef for x in tests.interval(alpha))
    lo90, hi90 = (x[0] / coef for x in tests.interval(2 * alpha))
    p_better = float(tests.p_not_worse(0.0)[0])  # H0: next is not better (mean difference >= 0)
    p_worse = float(tests.p_not_better(0.0)[0])  # H0: next is not worse
    p_noninferior = float(tests.p_not_worse(margin * coef)[0])  # H0: next is worse by margin or more
    fa, fb = frames[prev]["flops"].to_numpy(dtype=float), frames[nxt]["flops"].to_numpy(dtype=float)
    shared = (max(fa.min(), fb.min()), min(fa.max(), fb.max()))
    za, zb = complexity_bins(fa, bins, shared)[0], complexity_bins(fb, bins, shared)[0]
    normalized = compare_edfs(b, a, zb, za, complexity_a=fb, complexity_b=fa, n_perm=n_perm, seed=seed)
    ks, ks_p = ks_test(pooled, subset, n_perm=n_perm, seed=seed)
    configs = [set(map(tuple, frames[s][CONFIG_COLUMNS].to_numpy().tolist())) for s in (prev, nxt)]
    return {
        "prev": prev, "next": nxt, "step": f"{label(prev)[-1]} -> {label(nxt)[-1]}", "claim": claim,
        "constraint": constraint,
        "n_prev": int(a.size), "n_next": int(b.size), "mean_prev": float(a.mean()), "mean_next": float(b.mean()),
        "median_prev": float(np.median(a)), "median_next": float(np.median(b)),
        "diff": float(b.mean() - a.mean()), "lo95": float(lo95), "hi95": float(hi95),
        "lo90": float(lo90), "hi90": float(hi90),
        "p_better": p_better, "p_worse": p_worse, "p_noninferior": p_noninferior,
        "p_primary": p_noninferior if claim == "no loss" else p_better,
        "primary_test": f"mean non-inferiority at +{margin:.2f}" if claim == "no loss" else "mean superiority",
        "p_ks_better": ks_test(pooled, subset, n_perm=n_perm, seed=seed, alternative="greater")[1],
        "ks": ks, "ks_p": ks_p, "ks_norm": normalized.ks_stat, "ks_norm_p": normalized.p_value,
        "shared_configs": len(configs[0] & configs[1]),
    }


def _step_power(step: dict[str, Any], a: np.ndarray, margin: float, level: float, k: int, sims: int,
                seed: int) -> dict[str, Any]:
    """Power of the step's tests at the effect that matters, resampling the previous space's errors."""
    no_loss = step["claim"] == "no loss"
    effect = 0.0 if no_loss else -margin  # no change / an improvement of one margin
    primary = "noninferiority" if no_loss else "superiority"
    sizes = {"n": step["n_prev"], "n_other": step["n_next"], "sims": sims, "seed": seed}
    out = {"power_effect": effect,
           "power_primary": power(a, effect=effect, test=primary, margin=margin, alpha=level, **sizes),
           "power_primary_holm": power(a, effect=effect, test=primary, margin=margin, alpha=level / k, **sizes),
           "power_ks": power(a, effect=effect, test="ks", alpha=level, **sizes),
           "power_equivalence": power(a, effect=0.0, test="equivalence", margin=margin, alpha=2 * level,
                                      **sizes) if no_loss else float("nan")}
    n80, p80 = required_n(a, effect, test=primary, margin=margin, alpha=level / k, sims=sims, seed=seed)
    out["n80"], out["n80_power"] = n80, p80
    return out


def _judge(step: dict[str, Any], margin: float, level: float) -> tuple[str, str]:
    """(agrees / disagrees / cannot tell, the reason in numbers) for one step against the paper's claim."""
    ci = (f"mean difference {step['diff']:+.2f} points, 95% interval [{step['lo95']:+.2f}, {step['hi95']:+.2f}] "
          "before Holm")
    pw = (f"power {100 * step['power_primary_holm']:.0f}% at this n"
          + (" if nothing changed" if step["claim"] == "no loss" else f" against a true gain of {margin:.2f}"))
    if step["claim"] == "no loss":
        if step["p_primary_holm"] <= level:
            return "agrees", (f"a loss of {margin:.2f} points or more is rejected (Holm p = "
                              f"{step['p_primary_holm']:.3g}; {ci}; {pw})")
        if step["p_worse_holm"] <= level:
            return "disagrees", f"the next space is worse (Holm p = {step['p_worse_holm']:.3g}; {ci})"
        return "cannot tell", (f"non-inferiority at +{margin:.2f} points is not shown (p = {step['p_primary']:.3g}, "
                               f"Holm {step['p_primary_holm']:.3g} > {level:g}; {ci}; {pw})")
    if step["p_primary_holm"] <= level:
        return "agrees", (f"the next space's mean error is lower (p = {step['p_primary']:.3g}, Holm "
                          f"{step['p_primary_holm']:.3g}; {ci}; {pw})")
    if step["p_worse_holm"] <= level:
        return "disagrees", f"the next space is worse (Holm p = {step['p_worse_holm']:.3g}; {ci})"
    return "cannot tell", (f"no improvement of the mean shown (p = {step['p_primary']:.3g}, Holm "
                           f"{step['p_primary_holm']:.3g} > {level:g}; {ci}; {pw})")


def seed_correlation(frames: Mapping[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Spearman correlation of validation errors between two studies' models of the same slot (same training
    seed: `study/objective.py` trains slot s with seed study seed + s), for every pair of studies."""
    names = list(frames)
    out = []
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            joined = frames[p][["slot", "error"]].merge(frames[q][["slot", "error"]], on="slot")
            rho, pval = stats.spearmanr(joined["error_x"], joined["error_y"])
            out.append({"pair": f"{label(p)[-1]}-{label(q)[-1]}", "consecutive": q == names[i + 1],
                        "n": len(joined), "rho": float(rho), "p": float(pval)})
    return out


def progression_numbers(
    frames: Mapping[str, pd.DataFrame],
    spaces: Mapping[str, DesignSpace],
    margin: float,
    alpha: float = 0.05,
    n_perm: int = 4000,
    seed: int = 0,
    bins: int = 5,
    power_sims: int = 400,
    band_draws: int = 1 << 19,
    validation_images: int = 144,
) -> dict[str, Any]:
    """All numbers of the file: per space, per step (with Holm across steps and power), expected best
    errors, derivations, the seed correlation. `margin` in points (`one_image`)."""
    names = list(frames)
    level = alpha / 2  # one-sided level of every directional test (the 95% intervals' tails)
    space_rows = [_space_row(n, frames[n], spaces[n], band_draws, seed, validation_images) for n in names]
    steps = [_step(p, q, frames, margin, alpha, n_perm, seed, bins) for p, q in zip(names, names[1:])]
    for prev, row, s in zip(space_rows, space_rows[1:], steps):
        s["log10_shrink_before_band"] = row_shrink = prev["log10_size"] - row["log10_size"]
        s["log10_shrink"], s["shrink_lo"], s["shrink_hi"] = band_shrink(prev["band"], row["band"])
        s["band_effect"] = s["log10_shrink"] - row_shrink
    for key in ("p_primary", "p_ks_better", "p_worse", "ks_p", "ks_norm_p"):
        for s, adj in zip(steps, holm([s[key] for s in steps])):
            s[f"{key}_holm"] = float(adj)
    for s in steps:
        s.update(_step_power(s, frames[s["prev"]]["error"].to_numpy(dtype=float), margin, level, len(steps),
                             power_sims, seed))
        s["equivalent"] = bool(-margin < s["lo90"] and s["hi90"] < margin)
        s["equivalence_bound"] = float(max(abs(s["lo90"]), abs(s["hi90"])))
        s["result"], s["reason"] = _judge(s, margin, level)
    ns = sorted(set(default_ns(min(r["n"] for r in space_rows))) | {min(r["n"] for r in space_rows)})
    best = []
    for n in names:
        eb = expected_best_error(frames[n]["error"].to_numpy(dtype=float), ns=ns, n_boot=1000, seed=seed)
        best += [{"space": n, "label": label(n), "n": int(k), "expected_min": float(v), "lo": float(lo), "hi": float(hi)}
                 for k, v, lo, hi in eb[["n", "expected_min", "lo", "hi"]].itertuples(index=False)]
    derived = []
    for prev, s in zip(names, steps):  # the step's constraint, judged inside the previous space's study
        table = derive_constraints(frames[prev], shrink=exact_shrink(spaces[prev]), n_perm=n_perm, seed=seed,
                                   margin=margin)
        table = table[table["constraint"] == s["constraint"]]
        row = table.iloc[0]
        keep_power = float(verdict_power(table, frames[prev]["error"].to_numpy(dtype=float), sims=power_sims,
                                         seed=seed)[0])
        derived.append({"study": label(prev), "constraint": s["constraint"], "n": int(row["n"]),
                        "n_eval": int(row["n_eval"]), "verdict": str(row["verdict"]), "mean_diff": float(row["mean_diff"]),
                        "hi": float(row["mean_diff_hi"]), "p_not_worse": float(row["p_not_worse"]),
                        "note": str(row["note"]).split(" (")[0], "keep_power": keep_power,
                        "min_n": int(table.attrs["min_n"])})
    return {"spaces": space_rows, "steps": steps, "expected_best": best, "derived": derived,
            "seeds": seed_correlation(frames), "margin": margin, "alpha": alpha, "level": level, "n_perm": n_perm,
            "bins": bins, "power_sims": power_sims, "validation_images": validation_images,
            "frames": dict(frames)}
