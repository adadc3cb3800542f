"""Every number of analysis/anynet_progression.md, computed from the five studies' results frames (no drawing).

Per step (A -> B, B -> C, C -> D, D -> E) the two studies are independent samples (their configs come
from independent streams), so the step is judged by two-sample tests:

- the paper's claim as a one-sided test, Holm's correction across the four steps, each at one-sided level
  alpha / 2: "no loss" (B, C) is the non-inferiority test of the mean validation error "the next space
  is worse by `margin` points or more" (studentized permutation test, `anynet_search.analysis.shift_tests`);
  "better" (D, E) is about the EDF, so it is the one-sided KS test "the next space's EDF lies nowhere
  above the previous one's" (`scipy.stats.ks_2samp(next, prev, alternative="greater")`). The mean's
  superiority test is reported beside it (on skewed errors it is the weaker test);
- "unchanged" only by equivalence (two one-sided tests at 5%): the 90% interval of the mean difference
  inside +-margin; otherwise the file states the smallest bound the data support;
- KS tests of the raw EDFs and of the complexity-normalized EDFs (stratified permutation), each with
  Holm's correction across the four steps, for "any difference at all".

Within each study `derive_constraints` judges the step's constraint on that study's models (the
project's own keep rule).
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
    shift_tests,
)
from anynet_search.spaces import DesignSpace
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


def _space_row(name: str, df: pd.DataFrame, space: DesignSpace) -> dict[str, Any]:
    e = df["error"].to_numpy(dtype=float)
    return {"space": name, "label": label(name), "n": int(e.size), "best": float(e.min()),
            "median": float(np.median(e)), "mean": float(e.mean()), "sd": float(e.std(ddof=1)),
            "log10_size": float(space.log10_size), "flops_median": float(df["flops"].median())}


def _step(prev: str, nxt: str, frames: Mapping[str, pd.DataFrame], spaces: Mapping[str, DesignSpace],
          margin: float, alpha: float, n_perm: int, seed: int, bins: int) -> dict[str, Any]:
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
    normalized = compare_edfs(b, a, zb, za, n_perm=n_perm, seed=seed)
    configs = [set(map(tuple, frames[s][CONFIG_COLUMNS].to_numpy().tolist())) for s in (prev, nxt)]
    return {
        "prev": prev, "next": nxt, "step": f"{label(prev)[-1]} -> {label(nxt)[-1]}", "claim": claim,
        "constraint": constraint, "log10_shrink": float(spaces[prev].log10_size - spaces[nxt].log10_size),
        "n_prev": int(a.size), "n_next": int(b.size), "mean_prev": float(a.mean()), "mean_next": float(b.mean()),
        "median_prev": float(np.median(a)), "median_next": float(np.median(b)),
        "diff": float(b.mean() - a.mean()), "lo95": float(lo95), "hi95": float(hi95),
        "lo90": float(lo90), "hi90": float(hi90),
        "p_better": p_better, "p_worse": p_worse, "p_noninferior": p_noninferior,
        "p_edf_better": float(stats.ks_2samp(b, a, alternative="greater").pvalue),
        "claim_test": f"mean non-inferiority at +{margin:g}" if claim == "no loss" else "one-sided KS",
        "ks": float(stats.ks_2samp(b, a).statistic), "ks_p": float(stats.ks_2samp(b, a).pvalue),
        "ks_norm": normalized.ks_stat, "ks_norm_p": normalized.p_value,
        "shared_configs": len(configs[0] & configs[1]),
    }


def _judge(step: dict[str, Any], margin: float, level: float) -> tuple[str, str]:
    """(agrees / disagrees / cannot tell, the reason in numbers) for one step against the paper's claim."""
    ci = f"mean difference {step['diff']:+.2f} points, 95% interval [{step['lo95']:+.2f}, {step['hi95']:+.2f}]"
    if step["claim"] == "no loss":
        if step["p_claim_holm"] <= level:
            return "agrees", (f"a loss of {margin:g} points or more is rejected (Holm p = {step['p_claim_holm']:.3g}; "
                              f"{ci})")
        if step["p_worse_holm"] <= level:
            return "disagrees", f"the next space is worse (Holm p = {step['p_worse_holm']:.3g}; {ci})"
        return "cannot tell", (f"non-inferiority at +{margin:g} points is not shown (p = {step['p_claim']:.3g}, "
                               f"Holm {step['p_claim_holm']:.3g} > {level:g}; {ci})")
    mean = f"the mean's superiority test: p = {step['p_better']:.3g}"
    if step["p_claim_holm"] <= level:
        return "agrees", (f"the next space's EDF is better (one-sided KS p = {step['p_claim']:.3g}, Holm "
                          f"{step['p_claim_holm']:.3g}; {ci}; {mean})")
    if step["p_worse_holm"] <= level:
        return "disagrees", f"the next space is worse (Holm p = {step['p_worse_holm']:.3g}; {ci})"
    return "cannot tell", (f"no improvement shown (one-sided KS p = {step['p_claim']:.3g}, Holm "
                           f"{step['p_claim_holm']:.3g} > {level:g}; {ci}; {mean})")


def progression_numbers(
    frames: Mapping[str, pd.DataFrame],
    spaces: Mapping[str, DesignSpace],
    margin: float = 0.5,
    alpha: float = 0.05,
    n_perm: int = 4000,
    seed: int = 0,
    bins: int = 5,
) -> dict[str, Any]:
    """All numbers of the file: per space, per step (with Holm across steps), expected best errors, derivations."""
    names = list(frames)
    level = alpha / 2  # one-sided level of every directional test (the 95% intervals' tails)
    space_rows = [_space_row(n, frames[n], spaces[n]) for n in names]
    steps = [_step(p, q, frames, spaces, margin, alpha, n_perm, seed, bins) for p, q in zip(names, names[1:])]
    for s in steps:
        s["p_claim"] = s["p_noninferior"] if s["claim"] == "no loss" else s["p_edf_better"]
        # the test first planned for 'better' (the mean), kept so the file can say what it would have concluded
        s["p_claim_mean"] = s["p_noninferior"] if s["claim"] == "no loss" else s["p_better"]
    for key in ("p_claim", "p_claim_mean", "p_worse", "ks_p", "ks_norm_p"):
        for s, adj in zip(steps, holm([s[key] for s in steps])):
            s[f"{key}_holm"] = float(adj)
    for s in steps:
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
        row = table.set_index("constraint").loc[s["constraint"]]
        derived.append({"study": label(prev), "constraint": s["constraint"], "n": int(row["n"]),
                        "n_eval": int(row["n_eval"]), "verdict": str(row["verdict"]), "mean_diff": float(row["mean_diff"]),
                        "hi": float(row["mean_diff_hi"]), "p_not_worse": float(row["p_not_worse"]),
                        "note": str(row["note"]).split(" (")[0], "keeps": int((table["verdict"] == "keep").sum()),
                        "candidates": len(table)})
    return {"spaces": space_rows, "steps": steps, "expected_best": best, "derived": derived,
            "margin": margin, "alpha": alpha, "level": level, "n_perm": n_perm, "bins": bins, "frames": dict(frames)}
