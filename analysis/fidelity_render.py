"""Write analysis/fidelity_digits.md from `fidelity_digits.fidelity_numbers` (every sentence from a number)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anynet_search.reporting.plan import human_time
from anynet_search.training.interface import TrainConfig


def _epochs(k: str) -> str:
    e = int(k.split("r")[0])
    words = f"{e} epoch{'s' if e != 1 else ''}"
    return words + (f" retrained (repeat {k.split('r')[1]})" if "r" in k else "")


def _interval(est: float, lo: float, hi: float, signed: bool = False) -> str:
    f = "+.3f" if signed else ".2f"
    return f"{est:{f}} [{lo:{f}}, {hi:{f}}]"


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _p(p: float, floor: bool) -> str:
    return f"{'<= ' if floor else ''}{p:.2g}"


def render(frames: dict[str, pd.DataFrame], numbers: dict, meta: dict, figure: str, n_boot: int) -> str:
    """The note's markdown."""
    high, lows, retrained = numbers["high"], numbers["lows"], numbers["retrained"]
    results = numbers["results"]
    images, margin = meta["validation_images"], numbers["margin"]
    n = len(frames[high])
    lines = [
        f"# Fidelity of short training on {meta['dataset'].split(':')[0]}",
        "",
        f"Does a cheap evaluation rank models like an expensive one? The same {n} configs of `{meta['space']}`, "
        f"sampled at random (seed {meta['seed']}), were trained on `{meta['dataset']}` for {_epochs(high)}"
        f"{' (the trainer default)' if int(high) == TrainConfig().epochs else ''} and, with `anynet-search run "
        f"--configs-from`, for {', '.join(k for k in lows)} epochs: the same slots, data split and per-slot training "
        "seeds"
        + (f"; and for {_epochs(high)} again under other training seeds (`--repeat 1`), which measures how far the "
           "high budget itself moves when retrained: the noise ceiling" if retrained else "")
        + f". Every number here comes from the committed per-model data (`analysis/data/fidelity_models.csv`); the "
        f"validation split has {images} images, so every error is a multiple of {100 / images:.2f} points.",
        "",
    ]
    same = numbers.get("same_as_progression")
    if same:
        lines += [f"The {high}-epoch study is the AnyNetXA study of `anynet_progression.md` trained a second time: "
                  f"the same configs, split and training seeds, and {same[1]} of its {same[2]} errors equal that "
                  f"study's ({same[0]} configs matched). On this machine a training with the same seeds repeats its "
                  "errors, so the two notes rest on one measurement of these models, and the retraining below (other "
                  "seeds) serves both.", ""]
    lines += [
        "```bash",
        "python analysis/fidelity_digits.py --report-only   # this file and its figure from the data (seconds)",
        "python analysis/fidelity_digits.py                 # train the studies again, then the same",
        "anynet-search fidelity " + " ".join(f"runs/fidelity/{meta['space']}-{meta['dataset'].split(':')[0]}-e{k}"
                                             for k in frames)
        + "   # the same comparisons from the recipe's run folders",
        "```",
        "",
        "## The errors at each budget",
        "",
        "| study | models | best error (%) | median error (%) | mean error (%) | median train seconds | "
        "time with a trial running |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, df in frames.items():
        lines.append(f"| {_epochs(k)} | {len(df)} | {df['error'].min():.2f} | {df['error'].median():.2f} | "
                     f"{df['error'].mean():.2f} | {df['train_seconds'].median():.1f} | "
                     f"{human_time(meta['studies'][k]['busy_seconds'])} |")
    busy = sum(v["busy_seconds"] for v in meta["studies"].values())
    lines += ["", f"Measured on a {meta['cores']}-core CPU machine (torch {meta['torch']}), 2 workers, while other jobs "
              f"shared the cores: {human_time(busy)} with a trial running over the {len(frames)} studies; the times "
              "show what the budgets cost here, not a clean speed ratio.", "",
              f"## Each budget against {_epochs(high)}", "",
              f"Rank correlations of each model's two errors with 95% BCa bootstrap intervals ({n_boot} resamples of "
              f"the models); top-10% overlap: how many of the best tenth at {_epochs(high)} are among the best tenth "
              "at the low budget, averaged over random breaks of the ties at each cut, against the mean if the low "
              "budget's ranking said nothing, with its exact p-value (hypergeometric, averaged over the exact law of "
              f"the overlap across the tie breaks) Holm-adjusted over the {len(lows)} budgets; verdicts: the "
              "constraint verdicts of `derive` drawn from each budget's models.", "",
              "| epochs | matched | Spearman rho [95%] | Kendall tau [95%] | top-10% overlap | exact p (Holm) | "
              "verdicts agreeing |", "|---|---|---|---|---|---|---|"]
    for k in lows:
        r = results[k]
        c, o, v = r.correlations, r.overlap, r.verdicts
        sp, kt = c.loc["spearman"], c.loc["kendall"]
        lines.append(f"| {k} | {r.n} | {_interval(sp['estimate'], sp['lo'], sp['hi'])} | "
                     f"{_interval(kt['estimate'], kt['lo'], kt['hi'])} | {o['overlap']:.1f} of {o['k']} (chance "
                     f"{o['chance']:.1f}) | {o['p_value']:.3g} ({numbers['overlap_holm'][k]:.3g}) | "
                     f"{int(v['agree'].sum())} of {len(v)} |")
    lines += ["", f"![{lows[0]} against {high} epochs](figures/{Path(figure).name})", ""]
    lines += _paired(numbers, n_boot)
    lines += _shows(numbers)
    lines += _verdicts(numbers, margin)
    lines += _limits(numbers, meta, n)
    return "\n".join(lines)


def _paired(numbers: dict, n_boot: int) -> list[str]:
    """The paired comparison of the budgets' rank correlations, and the noise ceiling."""
    high, rhos, diffs = numbers["high"], numbers["rhos"], numbers["differences"]
    lines = ["## The budgets compared as pairs", "",
             f"The budgets are measured on the same configs against the same {_epochs(high)} errors, so whether one "
             "ranks the models better than another is a paired question: both rank correlations are computed on each "
             f"of {n_boot} bootstrap resamples of the {numbers['shared']} configs every study trained, and the "
             "difference gets a BCa interval and the two-sided p-value at which that interval reaches 0, "
             f"Holm-adjusted over the {len(diffs)} differences read together (whether two separate intervals overlap "
             "is no test of their difference).", "",
             "| study | Spearman rho with " + _epochs(high) + " [95%] |", "|---|---|"]
    for k, row in rhos.iterrows():
        lines.append(f"| {_epochs(k)}{' (the noise ceiling)' if k in numbers['retrained'] else ''} | "
                     f"{_interval(row['rho'], row['lo'], row['hi'])} |")
    lines += ["", "| difference | estimate [95% BCa] | p | Holm p |", "|---|---|---|---|"]
    for row in diffs.itertuples(index=False):
        lines.append(f"| rho({_epochs(row.a)}) - rho({_epochs(row.b)}) | {_interval(row.diff, row.lo, row.hi, True)} "
                     f"| {_p(row.p, row.at_floor)} | {_p(row.p_holm, row.at_floor)} |")
    lines.append("")
    for nz in numbers["noise"].values():
        c = nz.correlations.loc["spearman"]
        lines += [f"**The noise ceiling.** Trained again under other training seeds, {nz.changed} of the {nz.n} "
                  f"{high}-epoch errors changed: by {nz.mean_abs:.2f} points on average, by up to {nz.largest:.2f}; "
                  f"one model's training noise has sd {nz.model_sd:.2f} points ({100 * nz.noise_share:.0f}% of the "
                  f"errors' variance), and the mean error moved by {nz.shift:+.2f} [{nz.shift_lo:+.2f}, "
                  f"{nz.shift_hi:+.2f}]. The two trainings rank the models alike to Spearman rho "
                  f"{_interval(c['estimate'], c['lo'], c['hi'])}: a second run of the expensive budget itself agrees "
                  "with the first only that far, so no cheap budget can be asked to agree more with one run of it. "
                  f"(Under the model error = quality + independent noise, no evaluation at all could exceed "
                  f"sqrt(rho) = {max(nz.rho, 0) ** 0.5:.2f} against one run.)", ""]
    return lines


def _shows(numbers: dict) -> list[str]:
    """What the numbers show, step by step, from the paired differences."""
    diffs, lows = numbers["differences"], numbers["lows"]
    lines = ["## What this shows", ""]
    for row in diffs.itertuples(index=False):
        apart = row.p_holm <= 0.05
        what = (f"{'higher' if row.diff > 0 else 'lower'} at Holm p {_p(row.p_holm, row.at_floor)}" if apart else
                f"cannot tell at this n (Holm p {_p(row.p_holm, row.at_floor)}; the interval "
                f"[{row.lo:+.3f}, {row.hi:+.3f}] holds both no difference and differences of "
                f"{max(abs(row.lo), abs(row.hi)):.2f})")
        lines.append(f"- rho({_epochs(row.a)}) - rho({_epochs(row.b)}) = {row.diff:+.3f}: {what}.")
    top = "; ".join(f"{_epochs(k)} keep {numbers['results'][k].overlap['overlap']:.1f} of the "
                    f"{numbers['results'][k].overlap['k']} best (chance {numbers['results'][k].overlap['chance']:.1f}, "
                    f"exact p {numbers['results'][k].overlap['p_value']:.3g}, Holm {numbers['overlap_holm'][k]:.3g})"
                    for k in lows)
    return lines + [f"- Top decile: {top}.", ""]


def _verdicts(numbers: dict, margin: float) -> list[str]:
    """The constraint verdicts at both budgets, with the margin stated."""
    high = numbers["high"]
    lines = ["## Constraint verdicts at both budgets", "",
             f"The verdicts use a non-inferiority margin of one validation image, {margin:.2f} points: the smallest "
             "change of one model's error this split can show. (An earlier version of this note used `derive`'s "
             f"default of 0.5 points; {numbers['old_margin_note'] or 'not finer than one image'}.) Each constraint "
             f"whose verdict differs between the budgets, or is not 'neutral' at {_epochs(high)}, with the mean "
             "difference (satisfying minus violating models) and the power of its 'not worse' keep:", ""]
    for k in numbers["lows"]:
        for row in numbers["results"][k].verdicts.itertuples(index=False):
            if not row.agree or row.verdict_high != "neutral":
                lines.append(f"- {_epochs(k)} vs {_epochs(high)}, `{row.constraint}` ({row.n} of {row.n_eval} "
                             f"models): {row.verdict_low} ({row.mean_diff_low:+.2f} points, power "
                             f"{_pct(row.power_low)}) against {row.verdict_high} ({row.mean_diff_high:+.2f}, "
                             f"power {_pct(row.power_high)})")
    return lines + [""]


def _limits(numbers: dict, meta: dict, n: int) -> list[str]:
    """What the note cannot show."""
    diffs, results = numbers["differences"], numbers["results"]
    widths = diffs["hi"] - diffs["lo"]
    powers = pd.concat([r.verdicts[["power_low", "power_high"]] for r in results.values()]).stack()
    frames_high = results[numbers["lows"][0]]
    return ["## What it cannot show", "",
            f"- n = {n} configs: the paired intervals of the differences of rho are {widths.min():.2f}-"
            f"{widths.max():.2f} wide, so differences in fidelity smaller than about half that are beyond this "
            f"sample, and the top-10% overlap rests on {frames_high.overlap['k']} models per budget.",
            "- Constraint verdicts: where verdicts are 'neutral' their agreement says little; the chance to keep a "
            f"constraint as 'not worse' if it changed nothing is {100 * powers.min():.0f}-{100 * powers.max():.0f}% "
            "at these numbers of models.",
            f"- One space ({meta['space']}), one small data set, one retraining: the validation errors move in steps "
            f"of {100 / meta['validation_images']:.2f} points, which ties many models and blurs the ranks. Larger "
            "spaces, longer schedules and real data sets can rank differently.",
            "- No GPU was lent to this session, so the `_cifar` spaces were not measured on one. The same recipe runs "
            "there: `python analysis/fidelity_digits.py --space anynet_xa_cifar --dataset cifar10:PATH --devices cuda "
            "--doc ... --figure ... --data ...`.", ""]
