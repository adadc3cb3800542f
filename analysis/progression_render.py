"""Write analysis/anynet_progression.md and its figure from `progression_numbers` (every sentence from a number)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from progression_numbers import label
from progression_stability import render_retrain, render_stability
from scipy import stats

from anynet_search.analysis import edf, edf_band

PAPER = "Radosavovic et al., Designing Network Design Spaces (CVPR 2020), Sec. 3.2"


def plot_progression(numbers: dict[str, Any], path: Path) -> None:
    """Two panels: the error EDFs with 95% bootstrap bands, and the expected best error of n random models."""
    fig = Figure(figsize=(11.0, 4.2))
    FigureCanvasAgg(fig)
    with sns.axes_style("whitegrid"):
        ax_edf, ax_best = fig.subplots(1, 2)
    colors = sns.color_palette(n_colors=len(numbers["spaces"]))
    for color, row in zip(colors, numbers["spaces"]):
        errors = numbers["frames"][row["space"]]["error"].to_numpy(dtype=float)
        e, f = edf(errors)
        ax_edf.plot(e, f, drawstyle="steps-post", color=color, lw=1.6,
                    label=f"{row['label']}  n={row['n']} | mean {row['mean']:.2f}")
        band = edf_band(errors, n_boot=1000, seed=0)
        ax_edf.fill_between(band["error"], band["lo"], band["hi"], step="post", color=color, alpha=0.15, lw=0)
        best = [b for b in numbers["expected_best"] if b["space"] == row["space"]]
        ns = [b["n"] for b in best]
        ax_best.plot(ns, [b["expected_min"] for b in best], marker="o", ms=3, color=color, label=row["label"])
        ax_best.fill_between(ns, [b["lo"] for b in best], [b["hi"] for b in best], color=color, alpha=0.15, lw=0)
    ax_edf.set_xlabel("validation error (%)")
    ax_edf.set_ylabel("fraction of models with lower error")
    ax_edf.set_title("error EDFs (95% bootstrap bands)")
    ax_edf.legend(fontsize=7, loc="lower right")
    ax_best.set_xscale("log", base=2)
    ax_best.set_xlabel("models drawn at random (n)")
    ax_best.set_ylabel("expected best validation error (%)")
    ax_best.set_title("expected best error (95% bootstrap intervals)")
    ax_best.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


#: The smallest p-value of the permutation tests, 1 / (1 + permutations) (set by `render_markdown`).
_FLOOR = [0.0]


def _p(x: float, raw: float | None = None) -> str:
    """A p-value; '<= x' where it (or, for a Holm-adjusted one, its `raw` p-value) sits at the permutation floor."""
    if x != x:  # NaN: no test
        return "-"
    at_floor = (x if raw is None else raw) <= _FLOOR[0] * (1 + 1e-9)
    return ("<= " if at_floor else "") + (f"{x:.3g}" if x >= 0.001 else f"{x:.1e}")


def _pts(x: float) -> str:
    return "-" if x != x else f"{x:+.2f}"


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _rho80(n: int, pairs: int) -> float:
    """Smallest |rho| a two-sided test at 5% / pairs detects with 80% power at n pairs (Fisher's z)."""
    return float(np.tanh((stats.norm.ppf(1 - 0.025 / pairs) + stats.norm.ppf(0.8)) / np.sqrt(n - 3)))


def _n80(s: dict[str, Any]) -> str:
    return f"{s['n80']:,}" if s["n80"] is not None else "more than 20,000"


def render_markdown(numbers: dict[str, Any], command: str, figure: Path, meta: dict[str, Any], data: str,
                    seconds: float) -> str:
    """The markdown file: data, what it can resolve, tables, figure, derivations, and the comparison with the paper."""
    spaces, steps, derived, seeds = numbers["spaces"], numbers["steps"], numbers["derived"], numbers["seeds"]
    _FLOOR[0] = 1.0 / (1 + numbers["n_perm"])
    margin, level, n_val = numbers["margin"], numbers["level"], numbers["validation_images"]
    k = len(steps)
    n_min = min(r["n"] for r in spaces)
    sd = float(np.mean([r["sd"] for r in spaces]))
    wall = meta.get("wall_seconds", {})
    minutes = sum(wall.values()) / 60
    per_model = 60 * minutes / sum(r["n"] for r in spaces)  # wall seconds per trained model, 2 workers
    n80 = [s["n80"] for s in steps if s["claim"] == "no loss" and s["n80"] is not None]
    lines = [
        "# AnyNetX A -> E at small scale",
        "",
        f"Regenerate this file and its figure from the committed per-model data ({seconds:.0f} s here):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"The data: `{data}`, one row per trained model (space, trial, slot, training seed and epochs, d/w/b/g per "
        "stage as built and as sampled, flops, params, acts, validation and test error, RegNet fit error), and "
        f"`{Path(data).with_name(Path(data).stem.replace('_models', '') + '_meta.json').as_posix()}` (settings, split "
        "sizes, the space files' hashes, machine, wall time). `python analysis/anynet_progression.py` retrains the "
        f"five studies into `runs/progression/` and rewrites both (it took {minutes:.0f} min of wall time on "
        f"{meta.get('cores', '?')} shared cores).",
        "",
        f"Data trained {meta.get('written', '?')} on {meta.get('machine', '?')} with {meta.get('cores', '?')} cores "
        f"(shared with other jobs), torch {meta.get('torch', '?')}. Data set: {meta['dataset']}, {n_val} validation "
        f"and {meta.get('test_images', '?')} test images; the `*_tiny` spaces at {meta.get('resolution', '?')} px, "
        f"{meta.get('epochs', '?')} epochs per model, {meta.get('sampler', '?')} sampler, seed {meta['seed']}. Errors are "
        f"validation errors in percent: every one is a multiple of 100 / {n_val} = {100 / n_val:.2f} points "
        f"({', '.join(str(r['distinct']) for r in spaces)} distinct values in the five studies), so many errors tie. "
        "Every test below is a permutation test, which permutes tied errors as they are; its p-value is "
        f"(1 + permutations at least as extreme) / (1 + {numbers['n_perm']}), so it is never below "
        f"{1 / (1 + numbers['n_perm']):.1e} (printed '<=' there). The studentized mean test is exact only where "
        "the two spaces' errors are exchangeable (equal spreads); with unequal spreads its size is right only as "
        "the samples grow (`analysis/verdict_calibration.md`, section 1).",
        "",
        "## What this data can resolve",
        "",
        f"**The margin.** 'No loss' and 'unchanged' are judged against a margin of one validation image, "
        f"100 / {n_val} = {margin:.2f} points ({margin / sd:.2f} of the errors' sd of {sd:.1f} points): the smallest "
        "change of one model's error the validation split can show. It depends on the split size alone, not on "
        "any error. (The first version of this file used 0.5 points, less than one image; one image replaced it "
        "after an audit of that version. The repository does not record whether that happened before the errors "
        "of the data here were first looked at, so this file does not claim the margin was fixed before them.)",
        "",
        f"**Power.** Every verdict below states the power of its test at the effect that matters, simulated with "
        f"the package's own tests (`anynet_search.analysis.power`, {numbers['power_sims']} resampled studies per "
        f"figure, Monte-Carlo standard error at most {50 / np.sqrt(numbers['power_sims']):.1f} points): for 'no loss' "
        f"the chance to show it when nothing changed; for 'better' the chance to detect a true gain of one image. "
        f"At {n_min} models per space; 'with Holm' is the power at level {level:g} / {k}, the level a step's "
        f"p-value faces when it is the smallest of the {k} (later ones face up to {level:g}), so it is a lower "
        "bound:",
        "",
        "| step | paper | effect that matters | primary test | power | power with Holm | one-sided KS power "
        "| equivalence power | models per space for 80% (with Holm) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        effect = "no change" if s["claim"] == "no loss" else f"{s['power_effect']:+.2f} points"
        lines.append(f"| {s['step']} | {s['claim']} | {effect} | {s['primary_test']} | {_pct(s['power_primary'])} | "
                     f"{_pct(s['power_primary_holm'])} | {_pct(s['power_ks']) if s['claim'] != 'no loss' else '-'} | "
                     f"{_pct(s['power_equivalence'])} | "
                     f"{_n80(s)} ({_pct(s['n80_power'])} simulated there) |")
    noise = float(np.mean([r["noise_share"] for r in spaces]))
    better = [s for s in steps if s["claim"] != "no loss"]
    if better:
        shares = {r["space"]: r["mode_share"] for r in spaces}
        lines += ["", "The KS figures model the gain as every model's error falling by exactly one image. On a "
                  f"{n_val}-image lattice that moves whole point masses of the EDF (the most common error value "
                  "holds " + ", ".join(f"{100 * shares[s['prev']]:.0f}% of {label(s['prev'])}'s models"
                                       for s in better)
                  + "), which the KS test sees and the mean test does not; a gain that differs from model to "
                  "model would be harder for the KS test to see, so these figures are optimistic."]
    weak = [s["step"] for s in steps if s["power_primary_holm"] < 0.5]
    lines.append("")
    if weak:
        lines += [
            f"Where the power is below 50% ({', '.join(weak)}) a 'cannot tell' says little: it is the likely "
            f"outcome whether or not the paper is right. {meta['dataset'].split(':')[0].capitalize()} at {n_min} "
            "models per space cannot resolve those questions. What would: more models per space"
            + (f" (about {min(n80):,} to {max(n80):,} for 'no loss' at one image with 80% power and Holm; at "
               f"{per_model:.1f} s of wall time per model here that is about "
               f"{len(spaces) * max(n80) * per_model / 3600:.0f} hours for the {len(spaces)} spaces)"
               if n80 and wall else "")
            + f". A larger validation split alone would not: the binomial noise of {n_val} images is "
            f"{100 * noise:.0f}% of the variance of the errors between models, so the spread that limits the tests "
            "lies between models; a larger split would only let a smaller margin be resolved. The paper's own "
            "scale (500 models per space, or CIFAR-10 with the `*_cifar` spaces) needs a GPU "
            "(`--variant cifar --dataset cifar10:PATH --trials 500 --devices cuda`).",
            ""]
    else:
        lines += ["Every primary test has at least 50% power here, so a 'cannot tell' is informative: an effect "
                  "of the size that matters would likely have been seen.", ""]
    lines += [
        "## Spaces",
        "",
        "| space | n | best | median | mean | sd | log10 size | log10 size in the band [95%] | median flops |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in spaces:
        b = r["band"]
        lines.append(f"| {r['label']} | {r['n']} | {r['best']:.2f} | {r['median']:.2f} | {r['mean']:.2f} | "
                     f"{r['sd']:.2f} | {r['log10_size']:.2f} | {b.log10_size:.3f} [{b.lo:.3f}, {b.hi:.3f}] | "
                     f"{r['flops_median'] / 1e6:.2f}M |")
    lines += [
        "",
        "`log10 size` counts the distinct parameter tuples of each space exactly, before its flops band "
        "(`space.log10_size`). The models are sampled inside the band, so shrink factors below are counted inside "
        f"it: `anynet_search.spaces.band.band_size` draws {spaces[0]['band'].drawn:,} tuples uniformly from each "
        "space (uniform over its tuples, not with its sampling distribution), counts them with the sampler's own "
        "flops counter and gives the share inside the band with a Wilson interval (exact enumeration of ~1e12 "
        "tuples is out of reach). Shares in the band: "
        + ", ".join(f"{r['label']} {100 * r['band'].share:.1f}%" for r in spaces) + ".",
        "",
        "Independence: each space's configs come from its own stream (its seed combines the study seed with the "
        "space's hash); configs that two consecutive studies share: "
        + ", ".join(f"{s['step']}: {s['shared_configs']}" for s in steps) + ". All studies share one seed, so every "
        "model is judged on the same validation split, and training seeds are shared by slot across spaces "
        "(`study/objective.py`: slot s trains with seed + s, so the s-th model of every space starts from the same "
        "random state and sees batches in the same order). Spearman correlation of the errors of same-slot models, "
        "consecutive spaces: "
        + ", ".join(f"{c['pair']} {c['rho']:+.3f} (p {c['p']:.3g})" for c in seeds if c["consecutive"])
        + f"; largest |rho| over all {len(seeds)} pairs {max(abs(c['rho']) for c in seeds):.3f}"
        + (f" ({sum(c['p'] <= 0.05 for c in seeds)} of {len(seeds)} pairs at p <= 0.05, "
           f"{0.05 * len(seeds):.1f} expected by chance)") + "."
        + f" At {seeds[0]['n']} pairs of models a correlation of |rho| >= {_rho80(seeds[0]['n'], len(seeds)):.2f} "
        f"would be seen (two-sided 5% with Bonferroni over the {len(seeds)} pairs) with 80% power. "
        + ("No correlation is visible, so the steps are treated as independent samples; a positive one would "
           "make the two-sample tests conservative." if all(c["p"] > 0.05 / len(seeds) for c in seeds) else
           "Some pair is correlated beyond chance (Bonferroni over the pairs): the two-sample tests assume "
           "independence, and a positive correlation makes them conservative."),
        "",
    ]
    if wall:
        lines += ["Wall time per study (first trial start to last trial end): "
                  + ", ".join(f"{label(k_)} {v / 60:.1f} min" for k_, v in wall.items()) + ".", ""]
    lines += [
        "## Steps",
        "",
        f"Each step compares the next space's models with the previous space's (two independent samples). The "
        f"primary test is the one planned before any result was seen: the paper's claim on the mean validation "
        f"error, one-sided at level {level:g} with Holm's correction across the {k} steps; 'no loss' as "
        f"non-inferiority (H0: the next space is worse by {margin:.2f} points or more), 'better' as superiority "
        f"(H0: the next space is not better), both the studentized permutation test ({numbers['n_perm']} "
        "permutations) whose inversion gives the mean difference's intervals. The secondary test, chosen after the "
        "first version's results were seen, is the one-sided permutation KS test (H0: the next space's EDF lies "
        "nowhere above the previous one's), Holm-adjusted likewise. 'Unchanged' would need equivalence: the 90% "
        f"interval inside +-{margin:.2f} points. The last two p-values test any difference of the EDFs "
        f"(permutation KS), raw and complexity-normalized ({numbers['bins']} flops bins over the "
        "shared range; each error first moved to its bin's mean log flops along the pooled within-bin slope, "
        "then permutations within bins), each Holm-adjusted across the steps.",
        "",
        "| step | shrink in the band (log10) [95%] | paper | mean diff (next - prev) | 95% interval | 90% interval "
        "| primary test | p (Holm) | power (Holm) | one-sided KS p (Holm) | KS p (Holm) | normalized KS p (Holm) "
        "| here |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['step']} | {s['log10_shrink']:.2f} [{s['shrink_lo']:.2f}, {s['shrink_hi']:.2f}] | {s['claim']} | "
            f"{s['diff']:+.2f} | [{s['lo95']:+.2f}, {s['hi95']:+.2f}] | [{s['lo90']:+.2f}, {s['hi90']:+.2f}] | "
            f"{s['primary_test']} | {_p(s['p_primary'])} ({_p(s['p_primary_holm'], s['p_primary'])}) | "
            f"{_pct(s['power_primary'])} ({_pct(s['power_primary_holm'])}) | "
            f"{_p(s['p_ks_better'])} ({_p(s['p_ks_better_holm'], s['p_ks_better'])}) | "
            f"{_p(s['ks_p'])} ({_p(s['ks_p_holm'], s['ks_p'])}) | {_p(s['ks_norm_p'])} ({_p(s['ks_norm_p_holm'], s['ks_norm_p'])}) | "
            f"{s['result']} |")
    lines += [
        "",
        "Shrink factors before the band (exact counts of the spaces' tuples) would be "
        + ", ".join(f"{s['step']}: {s['log10_shrink_before_band']:.2f}" for s in steps)
        + "; the band removes different shares of different spaces, so the figures above, counted inside it, "
        "are the shrink of what is sampled.",
        "",
        f"![EDFs and expected best error]({figure.as_posix()})",
        "",
        "## Expected best error",
        "",
        "Expected lowest validation error among n models drawn at random from each study (exact from the order "
        "statistics; 95% bootstrap interval over the models).",
        "",
    ]
    ns = sorted({b["n"] for b in numbers["expected_best"]})
    lines += ["| n | " + " | ".join(r["label"] for r in spaces) + " |", "|---" * (len(spaces) + 1) + "|"]
    for n in ns:
        cells = []
        for r in spaces:
            b = next(x for x in numbers["expected_best"] if x["space"] == r["space"] and x["n"] == n)
            cells.append(f"{b['expected_min']:.2f} [{b['lo']:.2f}, {b['hi']:.2f}]")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## The project's own keep rule inside each study", "",
              f"`derive_constraints` (margin +{margin:.2f} points) judges the step's constraint on the previous "
              "space's models alone (those satisfying it against those violating it; sampled values). 'Power to keep' "
              "is the chance that the rule keeps the constraint as 'not worse' if it changed nothing (simulated at "
              f"the same numbers of models; 0 when fewer than {derived[0]['min_n'] if derived else 10} satisfy it, "
              "where the rule says 'neutral' whatever the data).", "",
              "| study | constraint | models satisfying it | verdict | mean diff | upper 95% bound | p_not_worse "
              "| power to keep | reason |",
              "|---|---|---|---|---|---|---|---|---|"]
    for d in derived:
        lines.append(f"| {d['study']} | {d['constraint']} | {d['n']} of {d['n_eval']} | {d['verdict']} | "
                     f"{_pts(d['mean_diff'])} | {_pts(d['hi'])} | {_p(d['p_not_worse'])} | {_pct(d['keep_power'])} | "
                     f"{d['note']} |")
    lines += ["", "## Against the paper, point by point", "",
              f"The paper ({PAPER}) trains 500 models per space for 10 ImageNet epochs and finds: AnyNetXB and "
              "AnyNetXC lose nothing, AnyNetXD and AnyNetXE are better. Here:", ""]
    for s in steps:
        lines.append(f"- **{s['step']}** ({s['constraint']}, the space shrinks 10^{s['log10_shrink']:.2f}x inside "
                     f"the band; paper: {s['claim']}): **{s['result']}**: {s['reason']}.")
        rerun = next((r for r in (numbers.get("stability") or {}).get("steps", []) if r["step"] == s["step"]), None)
        if rerun is not None:
            lines.append(f"  Reruns with other seeds: the same verdict in {rerun['same']} of {len(rerun['reruns'])}"
                         + (" (it repeats)" if rerun["same"] == len(rerun["reruns"]) else
                            " (it does not repeat: read it as a property of this run, not of the spaces)")
                         + f"; mean difference {rerun['diff_min']:+.2f} .. {rerun['diff_max']:+.2f} points over "
                         f"the {len(rerun['reruns']) + 1} runs (see 'Stability').")
        if s["result"] == "cannot tell" and s["power_primary_holm"] < 0.8:
            lines.append(f"  Cannot tell at this n: the test had {_pct(s['power_primary_holm'])} power, and about "
                         f"{_n80(s)} models per space would give it 80%.")
        elif s["result"] == "cannot tell":
            lines.append(f"  The test had {_pct(s['power_primary_holm'])} power at the effect that matters, so an "
                         "effect that large would likely have been seen; what the data leave open is smaller.")
        if s["claim"] == "no loss":
            if s["equivalent"]:
                lines.append(f"  Equivalence holds: the 90% interval [{s['lo90']:+.2f}, {s['hi90']:+.2f}] lies "
                             f"inside +-{margin:.2f} points, so 'unchanged' is shown at this margin.")
            else:
                lines.append(f"  'Unchanged' is not shown: the 90% interval [{s['lo90']:+.2f}, {s['hi90']:+.2f}] "
                             f"only excludes changes larger than {s['equivalence_bound']:.2f} points (equivalence "
                             f"at +-{margin:.2f} had {_pct(s['power_equivalence'])} power), and the KS test's "
                             f"p = {_p(s['ks_p'])} is no evidence of equality.")
        else:
            lines.append(f"  Secondary (one-sided KS, chosen after the first version's results were seen): p = "
                         f"{_p(s['p_ks_better'])}, Holm {_p(s['p_ks_better_holm'], s['p_ks_better'])}; its power against the same "
                         f"gain: {_pct(s['power_ks'])} at level {level:g}.")
    agree = [s["step"] for s in steps if s["result"] == "agrees"]
    unclear = [s["step"] for s in steps if s["result"] == "cannot tell"]
    disagree = [s["step"] for s in steps if s["result"] == "disagrees"]
    widths = [s["hi95"] - s["lo95"] for s in steps]
    n_max = max(r["n"] for r in spaces)
    sizes = str(n_min) if n_min == n_max else f"{n_min} to {n_max}"
    lines += ["", f"Small data agrees with the paper on {len(agree)} of {len(steps)} steps "
              f"({', '.join(agree) or 'none'}), cannot tell on {len(unclear)} ({', '.join(unclear) or 'none'}) and "
              f"contradicts it on {len(disagree)} ({', '.join(disagree) or 'none'}). With {sizes} models per space the "
              f"95% intervals of the steps' mean differences are {min(widths):.2f} to {max(widths):.2f} points wide, "
              f"{min(widths) / margin:.1f} to {max(widths) / margin:.1f} margins."]
    if better:
        second = [s["step"] for s in better if s["p_ks_better_holm"] <= level]
        lines[-1] += (" The secondary one-sided KS test, chosen after the first version's results were seen, "
                      + (f"rejects 'not better' on {', '.join(second)} (Holm p "
                         + ", ".join(f"{_p(s['p_ks_better_holm'], s['p_ks_better'])}" for s in better if s["step"] in second)
                         + f" <= {level:g}); read it as the finding of a test picked after a look at data from "
                         "the same spaces, not as the planned verdict."
                         if second else "rejects 'not better' on no step either."))
    stab = (numbers.get("stability") or {}).get("steps", [])
    if stab:
        lines[-1] += (" Counting the reruns under other seeds (see 'Stability'), the verdicts over all runs were: "
                      + "; ".join(f"{r['step']} " + ", ".join(f"'{v}' {c} of {len(r['reruns']) + 1}"
                                                             for v, c in r["counts"].items()) for r in stab)
                      + ". One run's verdict is no property of the spaces where the runs disagree.")
    lines.append("")
    kept = [d for d in derived if d["verdict"] == "keep"]
    lines += [f"Inside single studies the keep rule kept {len(kept)} of the {len(derived)} step constraints "
              f"({', '.join(d['constraint'] for d in kept) or 'none'}); the models satisfying each one numbered "
              + ", ".join(f"{d['n']} of {d['n_eval']} ({d['constraint']}, power to keep "
                          f"{_pct(d['keep_power'])})" for d in derived) + ".", ""]
    if numbers.get("retrain"):
        lines += render_retrain(numbers["retrain"], level, n_val, _FLOOR[0])
    if numbers.get("stability"):
        lines += render_stability(numbers["stability"], numbers.get("reruns_meta", {}), _FLOOR[0], minutes)
    return "\n".join(lines)

