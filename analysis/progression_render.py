"""Write analysis/anynet_progression.md and its figure from `progression_numbers` (every sentence from a number)."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import seaborn as sns
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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


def _p(x: float) -> str:
    if x != x:  # NaN: no test
        return "-"
    return f"{x:.3g}" if x >= 0.001 else f"{x:.1e}"


def _pts(x: float) -> str:
    return "-" if x != x else f"{x:+.2f}"


def render_markdown(numbers: dict[str, Any], command: str, dataset: str, figure: Path,
                    meta: dict[str, Any] | None = None) -> str:
    """The markdown file: settings, tables, figure, derivations, and the point-by-point comparison with the paper."""
    meta = meta or {}
    spaces, steps, derived = numbers["spaces"], numbers["steps"], numbers["derived"]
    margin, level = numbers["margin"], numbers["level"]
    n_min = min(r["n"] for r in spaces)
    lines = [
        "# AnyNetX A -> E at small scale",
        "",
        "Regenerate (runs or resumes the five studies, then rewrites this file and its figure):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Written {datetime.now(timezone.utc):%Y-%m-%d} on {platform.machine()} with {meta.get('cores', '?')} cores "
        f"(shared with other jobs), torch {torch.__version__}. Data set: {dataset}; "
        f"{meta.get('settings', '')} Errors are validation errors in percent.",
        "",
        "Independence: all studies share one seed, so every model is judged on the same validation split, and "
        "each space's configs come from its own stream (its seed combines the study seed with the space's hash). "
        "Configs that two consecutive studies share: "
        + ", ".join(f"{s['step']}: {s['shared_configs']}" for s in steps) + ".",
        "",
    ]
    if meta.get("wall"):
        lines += ["Wall time per study (first trial start to last trial end): "
                  + ", ".join(f"{k} {v / 60:.1f} min" for k, v in meta["wall"].items()) + ".", ""]
    lines += ["| space | n | best | median | mean | sd | log10 size | median flops |", "|---|---|---|---|---|---|---|---|"]
    for r in spaces:
        lines.append(f"| {r['label']} | {r['n']} | {r['best']:.2f} | {r['median']:.2f} | {r['mean']:.2f} | "
                     f"{r['sd']:.2f} | {r['log10_size']:.2f} | {r['flops_median'] / 1e6:.2f}M |")
    lines += [
        "",
        "`log10 size` counts the distinct parameter tuples of the space actually run (`space.log10_size`, before "
        "the flops band).",
        "",
        "## Steps",
        "",
        f"Each step compares the next space's models with the previous space's (two independent samples). The "
        f"paper's claim is tested one-sided at level {level:g}, with Holm's correction across the four steps: "
        f"'no loss' as non-inferiority of the mean error (H0: the next space is worse by {margin:g} points or "
        f"more; studentized permutation test, {numbers['n_perm']} permutations), 'better' as the EDF being better "
        "(one-sided KS test; H0: the next space's EDF lies nowhere above the previous one's). The mean difference "
        "and its intervals come from the same permutation tests. 'Unchanged' would need equivalence: the 90% "
        "interval inside "
        f"+-{margin:g} points (two one-sided tests at 5%). KS p-values test any difference of the EDFs, raw and "
        f"complexity-normalized ({numbers['bins']} flops bins over the shared range, permutations within bins), "
        "each Holm-adjusted across the steps.",
        "",
        "| step | shrink (log10) | paper | mean diff (next - prev) | 95% interval | 90% interval | claim test | p (Holm) "
        "| KS p (Holm) | normalized KS p (Holm) | here |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['step']} | {s['log10_shrink']:.2f} | {s['claim']} | {s['diff']:+.2f} | [{s['lo95']:+.2f}, "
            f"{s['hi95']:+.2f}] | [{s['lo90']:+.2f}, {s['hi90']:+.2f}] | {s['claim_test']} | "
            f"{_p(s['p_claim'])} ({_p(s['p_claim_holm'])}) | "
            f"{_p(s['ks_p'])} ({_p(s['ks_p_holm'])}) | {_p(s['ks_norm_p'])} ({_p(s['ks_norm_p_holm'])}) | "
            f"{s['result']} |")
    lines += ["", f"![EDFs and expected best error]({figure.as_posix()})", "", "## Expected best error", "",
              "Expected lowest validation error among n models drawn at random from each study (exact from the order "
              "statistics; 95% bootstrap interval over the models).", ""]
    ns = sorted({b["n"] for b in numbers["expected_best"]})
    lines += ["| n | " + " | ".join(r["label"] for r in spaces) + " |", "|---" * (len(spaces) + 1) + "|"]
    for n in ns:
        cells = []
        for r in spaces:
            b = next(x for x in numbers["expected_best"] if x["space"] == r["space"] and x["n"] == n)
            cells.append(f"{b['expected_min']:.2f} [{b['lo']:.2f}, {b['hi']:.2f}]")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## The project's own keep rule inside each study", "",
              f"`derive_constraints` (margin +{margin:g} points) judges the step's constraint on the previous "
              "space's models alone (those satisfying it against those violating it; sampled values).", "",
              "| study | constraint | models satisfying it | verdict | mean diff | upper 95% bound | p_not_worse | reason |",
              "|---|---|---|---|---|---|---|---|"]
    for d in derived:
        lines.append(f"| {d['study']} | {d['constraint']} | {d['n']} of {d['n_eval']} | {d['verdict']} | "
                     f"{_pts(d['mean_diff'])} | {_pts(d['hi'])} | {_p(d['p_not_worse'])} | {d['note']} |")
    lines += ["", "## Against the paper, point by point", "",
              f"The paper ({PAPER}) trains 500 models per space for 10 ImageNet epochs and finds: AnyNetXB and "
              "AnyNetXC lose nothing, AnyNetXD and AnyNetXE are better. Here:", ""]
    for s in steps:
        lines.append(f"- **{s['step']}** ({s['constraint']}, the space shrinks 10^{s['log10_shrink']:.2f}x; paper: "
                     f"{s['claim']}): **{s['result']}**: {s['reason']}.")
        if s["claim"] == "no loss":
            if s["equivalent"]:
                lines.append(f"  Equivalence holds: the 90% interval [{s['lo90']:+.2f}, {s['hi90']:+.2f}] lies "
                             f"inside +-{margin:g} points, so 'unchanged' is shown at this margin.")
            else:
                lines.append(f"  'Unchanged' is not shown: the 90% interval [{s['lo90']:+.2f}, {s['hi90']:+.2f}] "
                             f"only excludes changes larger than {s['equivalence_bound']:.2f} points, and the KS "
                             f"test's p = {_p(s['ks_p'])} is no evidence of equality.")
    agree = [s["step"] for s in steps if s["result"] == "agrees"]
    unclear = [s["step"] for s in steps if s["result"] == "cannot tell"]
    disagree = [s["step"] for s in steps if s["result"] == "disagrees"]
    widths = [s["hi95"] - s["lo95"] for s in steps]
    n_max = max(r["n"] for r in spaces)
    sizes = str(n_min) if n_min == n_max else f"{n_min} to {n_max}"
    lines += ["", f"Small data agrees with the paper on {len(agree)} of {len(steps)} steps "
              f"({', '.join(agree) or 'none'}), cannot tell on {len(unclear)} ({', '.join(unclear) or 'none'}) and "
              f"contradicts it on {len(disagree)} ({', '.join(disagree) or 'none'}). With {sizes} models per space the "
              f"95% intervals of the steps' mean differences are {min(widths):.2f} to {max(widths):.2f} points wide.",
              ""]
    better = [s for s in steps if s["claim"] == "better"]
    if better:
        lines += ["How the 'better' test was chosen: it was first the mean's superiority test, Holm-adjusted with the "
                  "other steps' claim tests; the one-sided KS test replaced it after those results were seen, "
                  "because the paper's claim is about the EDF. With the mean test the Holm-adjusted p-values are "
                  + ", ".join(f"{s['step']}: {_p(s['p_claim_mean_holm'])}" for s in better)
                  + f" (level {level:g}). Read the 'better' verdicts with that choice in mind.", ""]
    kept = [d for d in derived if d["verdict"] == "keep"]
    lines += [f"Inside single studies the keep rule kept {len(kept)} of the {len(derived)} step constraints "
              f"({', '.join(d['constraint'] for d in kept) or 'none'}); the models satisfying each one numbered "
              + ", ".join(f"{d['n']} of {d['n_eval']} ({d['constraint']})" for d in derived) + ".", ""]
    return "\n".join(lines)
