"""Fidelity of short training: the same configs of anynet_xa_tiny trained on digits for 1, 2 and 4 epochs and for 8
(the trainer's default); writes analysis/fidelity_digits.md and its figure.

    python analysis/fidelity_digits.py --report-only   # rewrite the note and figure from the committed data (seconds)
    python analysis/fidelity_digits.py                 # train the studies, then the same (2 h 50 min on 2 busy cores)

Training runs (or resumes) one random study at the high budget, then one study per low budget made from it with
`run --configs-from` (the same configs in the same slots, the same data split and per-slot training seeds), and
writes every model's results to `--data` (analysis/data/fidelity_models.csv and fidelity_meta.json, committed),
which is all `--report-only` reads. Each low budget is compared with the high one by
`anynet_search.analysis.fidelity.fidelity`, as `anynet-search fidelity RUN_LOW RUN_HIGH` does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from anynet_search.analysis.fidelity import Fidelity, fidelity
from anynet_search.reporting import plots
from anynet_search.reporting.plan import human_time, pilot_pace
from anynet_search.reporting.results import load_results, open_run
from anynet_search.study import RunOptions, run_study
from anynet_search.study.plan import StudySettings
from anynet_search.training.data import load_dataset
from anynet_search.training.interface import TrainConfig

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "fidelity_models.csv"
KEEP = ["budget", "trial", "slot", "flops", "params", "acts", "error", "test_error", "train_seconds"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="anynet_xa_tiny")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=100, help="configs (default 100)")
    parser.add_argument("--high", type=int, default=8, help="epochs of the high budget (default 8)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 4], help="epochs of the low budgets")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", default=None, help="cpu | cuda | cuda:0,cuda:1 (default: all GPUs, else cpu)")
    parser.add_argument("--prefix", default=None, help="study names PREFIX-eEPOCHS (default SPACE-DATASET)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/fidelity", help="folder of the run folders (git-ignored)")
    parser.add_argument("--doc", default=str(HERE / "fidelity_digits.md"), help="markdown file to write")
    parser.add_argument("--figure", default=str(HERE / "figures" / "fidelity_digits.png"))
    parser.add_argument("--data", default=str(DATA), help="per-model CSV written after training, read by --report-only")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--report-only", action="store_true", help="do not train; analyze the committed --data")
    parser.add_argument("--objective", default=None, help=argparse.SUPPRESS)  # dry runs in the tests
    return parser.parse_args(argv)


def meta_path(csv: Path) -> Path:
    """The JSON beside the data CSV."""
    return csv.with_name(csv.stem.replace("_models", "") + "_meta.json")


def train(args: argparse.Namespace) -> dict[int, Path]:
    """Run (or resume) the high-budget study, then each low budget from its configs; budget -> run folder."""
    name = args.prefix or f"{args.space}-{args.dataset.split(':')[0]}"
    common = dict(workers=args.workers, devices=args.devices, out=args.out, objective=args.objective)
    high = run_study(RunOptions(space=args.space, dataset=args.dataset, trials=args.trials, epochs=args.high,
                                seed=args.seed, study=f"{name}-e{args.high}", **common)).run_dir
    runs = {args.high: high}
    for epochs in args.budgets:
        runs[epochs] = run_study(RunOptions(configs_from=str(high), epochs=epochs, study=f"{name}-e{epochs}",
                                            **common)).run_dir
    return dict(sorted(runs.items()))


def write_data(runs: dict[int, Path], csv: Path, high: int) -> None:
    """Every model of every budget (the results columns the analysis reads) and a JSON of the settings and times."""
    frames, studies = [], {}
    for epochs, run in runs.items():
        df = load_results(run)
        config = [c for c in df.columns if c.startswith("sampled_") or c[:1] in "dwbg" and c[1:].isdigit()]
        frames.append(df.assign(budget=epochs)[KEEP + config])
        _, study = open_run(run)
        pace = pilot_pace(study)
        settings = StudySettings.from_study(study)
        studies[str(epochs)] = {"study": study.study_name, "models": len(df), "busy_seconds": pace.busy_seconds,
                                "workers": pace.workers, "configs_from": (settings.configs_from or {}).get("study")}
    settings = StudySettings.from_study(open_run(runs[high])[1])
    data = load_dataset(settings.dataset, settings.design_space().resolution, seed=settings.seed)
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(csv, index=False)
    meta = {"space": settings.space["name"], "space_hash": settings.space_hash, "dataset": settings.dataset,
            "seed": settings.seed, "high": high, "validation_images": int(data.val_y.numel()), "studies": studies,
            "machine": platform.machine(), "cores": os.cpu_count(), "torch": __import__("torch").__version__,
            "written": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    meta_path(csv).write_text(json.dumps(meta, indent=1) + "\n")


def read_data(csv: Path) -> tuple[dict[int, pd.DataFrame], dict]:
    """Budget -> results frame, and the meta JSON."""
    table = pd.read_csv(csv)
    meta = json.loads(meta_path(csv).read_text())
    frames = {int(e): g.drop(columns="budget").reset_index(drop=True) for e, g in table.groupby("budget")}
    for df in frames.values():  # what fidelity's verdicts need of a results frame
        df["sampler"] = "random"
    return frames, meta


def compare(frames: dict[int, pd.DataFrame], high: int, n_boot: int) -> dict[int, Fidelity]:
    """Each low budget against the high one."""
    return {e: fidelity(df, frames[high], n_boot=n_boot, seed=0) for e, df in frames.items() if e != high}


def _interval(row: pd.Series) -> str:
    return f"{row['estimate']:.2f} [{row['lo']:.2f}, {row['hi']:.2f}]"


def render(frames: dict[int, pd.DataFrame], results: dict[int, Fidelity], meta: dict, figure: str, doc: Path,
           n_boot: int) -> str:
    """The note's markdown: every number from `frames` and `results`."""
    high, images = meta["high"], meta["validation_images"]
    n = len(frames[high])
    rows, verdict_lines = [], []
    for e, r in results.items():
        c, o, v = r.correlations, r.overlap, r.verdicts
        rows.append(f"| {e} | {r.n} | {_interval(c.loc['spearman'])} | {_interval(c.loc['kendall'])} | "
                    f"{c.loc['spearman', 'hi'] - c.loc['spearman', 'lo']:.2f} | {o['overlap']:.1f} of {o['k']} "
                    f"(chance {o['chance']:.1f}, p = {o['p_value']:.2g}) | {int(v['agree'].sum())} of {len(v)} |")
        for row in v.itertuples(index=False):
            if not row.agree or row.verdict_high != "neutral":
                verdict_lines.append(f"- {e} vs {high} epochs, `{row.constraint}` ({row.n} of {row.n_eval} models): "
                                     f"{row.verdict_low} ({row.mean_diff_low:+.2f} points, power "
                                     f"{100 * row.power_low:.0f}%) against {row.verdict_high} "
                                     f"({row.mean_diff_high:+.2f}, power {100 * row.power_high:.0f}%)")
    budgets = [f"| {e} | {len(df)} | {df['error'].min():.2f} | {df['error'].median():.2f} | {df['error'].mean():.2f} | "
               f"{df['train_seconds'].median():.1f} | {human_time(meta['studies'][str(e)]['busy_seconds'])} |"
               for e, df in frames.items()]
    lowest = min(results)
    c1 = results[lowest].correlations
    widths = [results[e].correlations.loc["spearman", "hi"] - results[e].correlations.loc["spearman", "lo"]
              for e in results]
    neutral_all = all((r.verdicts["verdict_high"] == "neutral").all() and (r.verdicts["verdict_low"] == "neutral").all()
                      for r in results.values())
    powers = pd.concat([r.verdicts[["power_low", "power_high"]] for r in results.values()]).stack()
    lines = [
        f"# Fidelity of short training on {meta['dataset'].split(':')[0]}",
        "",
        f"Does a cheap evaluation rank models like an expensive one? The same {n} configs of `{meta['space']}`, "
        f"sampled at random (seed {meta['seed']}), were trained on `{meta['dataset']}` for {_epochs(high)}"
        f"{' (the trainer default)' if high == TrainConfig().epochs else ''} and, with `anynet-search run "
        f"--configs-from`, for {', '.join(str(e) for e in results)} epochs: the same slots, data split and per-slot "
        "training seeds. "
        f"Every number here comes from the committed per-model data (`analysis/data/fidelity_models.csv`); the "
        f"validation split has {images} images, so every error is a multiple of {100 / images:.2f} points.",
        "",
        "```bash",
        "python analysis/fidelity_digits.py --report-only   # this file and its figure from the data (seconds)",
        "python analysis/fidelity_digits.py                 # train the studies again, then the same",
        f"anynet-search fidelity {_run_of(meta, lowest)} {_run_of(meta, high)}   # one pair, from its run folders",
        "```",
        "",
        "## The errors at each budget",
        "",
        "| epochs | models | best error (%) | median error (%) | mean error (%) | median train seconds | "
        "wall time of the study |",
        "|---|---|---|---|---|---|---|",
        *budgets,
        "",
        f"Measured on this {meta['cores']}-core CPU machine (torch {meta['torch']}, {meta['written']}), 2 workers, "
        "while other jobs shared the cores: the times show what the budgets cost here, not a clean speed ratio.",
        "",
        f"## Each budget against {high} epochs",
        "",
        f"Rank correlations of the two errors of each model with 95% BCa bootstrap intervals ({n_boot} resamples "
        "of the models); top-10% overlap: how many of the best tenth at "
        f"{high} epochs are among the best tenth at the low budget (ties at the cut broken at random), against the "
        "mean if the low budget's ranking said nothing; verdicts: the constraint verdicts of `derive` drawn from each "
        "budget's models (constraints that every model satisfies left out).",
        "",
        "| epochs | matched | Spearman rho [95%] | Kendall tau [95%] | width of rho's interval | top-10% overlap | "
        "verdicts agreeing |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"![{lowest} against {high} epochs](figures/{Path(figure).name})",
        "",
        "## What this shows",
        "",
        f"- At {_epochs(lowest)} the ranking of these {n} models agrees with the "
        f"{high}-epoch ranking to Spearman rho {_interval(c1.loc['spearman'])}: "
        + (f"clearly above 0, so {_epochs(lowest)} already separate{'s' if lowest == 1 else ''} good configs from "
           "bad ones here, "
           if c1.loc["spearman", "lo"] > 0 else "an interval that reaches 0: no evidence of agreement, ")
        + ("and clearly below 1: many pairs of models swap places."
           if c1.loc["spearman", "hi"] < 0.95 else "and an interval that reaches 0.95."),
        "- "
        + " ".join(f"{_epochs(e)}: rho {_interval(results[e].correlations.loc['spearman'])}." for e in results)
        + (" The point estimates rise with the budget" if _rising(results) else " The point estimates do not rise "
           "steadily with the budget")
        + (", but the intervals of the lowest and the highest low budget overlap, so at this n the data cannot "
           "order the budgets by fidelity." if _overlap(results) else ", and the intervals of the lowest and the "
           "highest low budget do not overlap."),
        f"- Top decile: {'; '.join(_top(results[e], e) for e in results)}. Holm-adjusted over these {len(results)} "
        f"tests: {', '.join(f'{_epochs(e)} p = {p:.2g}' for e, p in _holm(results).items())}.",
        *(["", "## Constraint verdicts at both budgets", "",
           f"Each constraint whose verdict differs between the budgets, or is not 'neutral' at {high} epochs, with "
           "the mean difference (satisfying minus violating models) and the power of its 'not worse' keep:", "",
           *verdict_lines] if verdict_lines else []),
        "",
        "## What it cannot show",
        "",
        f"- n = {n} configs: the 95% intervals of rho are {min(widths):.2f}-{max(widths):.2f} wide, so a "
        "difference in fidelity of 0.1 between two budgets is beyond what this sample resolves, and the top-10% "
        f"overlap rests on {results[lowest].overlap['k']} models per budget.",
        "- Constraint verdicts: "
        + ("every verdict at every budget is 'neutral', so their agreement says nothing about fidelity; the "
           if neutral_all else "where verdicts are 'neutral' their agreement says little; the ")
        + f"chance to keep a constraint as 'not worse' if it changed nothing is {100 * powers.min():.0f}-"
        f"{100 * powers.max():.0f}% at these numbers of models.",
        f"- One space ({meta['space']}, {frames[high]['flops'].min() / 1e6:.1f}-{frames[high]['flops'].max() / 1e6:.1f} "
        "MF), one small data set, one seed per config: the "
        f"validation errors move in steps of {100 / images:.2f} points, which ties many models and blurs the "
        "ranks. Larger spaces, longer schedules and real data sets can rank differently.",
        "- No GPU was lent to this session, so the `_cifar` spaces were not measured on one. The same recipe runs "
        "there: `python analysis/fidelity_digits.py --space anynet_xa_cifar --dataset cifar10:PATH --devices cuda "
        "--doc ... --figure ... --data ...`.",
        "",
    ]
    text = "\n".join(lines)
    doc.write_text(text)
    return text


def _run_of(meta: dict, epochs: int) -> str:
    """The run folder of a budget's study under the default --out."""
    return f"runs/fidelity/{meta['studies'][str(epochs)]['study']}"


def _epochs(e: int) -> str:
    return f"{e} epoch{'s' if e != 1 else ''}"


def _rising(results: dict[int, Fidelity]) -> bool:
    """Whether Spearman's rho rises with the budget."""
    rho = [results[e].correlations.loc["spearman", "estimate"] for e in sorted(results)]
    return bool(all(b > a for a, b in zip(rho, rho[1:])))


def _overlap(results: dict[int, Fidelity]) -> bool:
    """Whether the Spearman intervals of the lowest and the highest low budget overlap."""
    lo, hi = min(results), max(results)
    a, b = results[lo].correlations.loc["spearman"], results[hi].correlations.loc["spearman"]
    return bool(a["hi"] >= b["lo"] and b["hi"] >= a["lo"])


def _holm(results: dict[int, Fidelity]) -> dict[int, float]:
    """The top-decile overlap p-values of the low budgets, Holm-adjusted together."""
    from statsmodels.stats.multitest import multipletests

    budgets = list(results)
    adjusted = multipletests([results[e].overlap["p_value"] for e in budgets], method="holm")[1]
    return dict(zip(budgets, (float(p) for p in adjusted)))


def _top(r: Fidelity, epochs: int) -> str:
    o = r.overlap
    return f"{_epochs(epochs)} keep {o['overlap']:.1f} of the {o['k']} best (chance {o['chance']:.1f}, p = {o['p_value']:.2g})"


def main(argv: list[str] | None = None) -> int:
    """Train (unless --report-only), write the data, then the note and its figure."""
    args = parse_args(argv)
    csv = Path(args.data)
    if not args.report_only:
        write_data(train(args), csv, args.high)
    frames, meta = read_data(csv)
    results = compare(frames, meta["high"], args.n_boot)
    lowest = min(results)
    fig = plots.plot_fidelity(results[lowest].pairs, results[lowest].correlations,
                              (f"low: {lowest} epoch{'s' if lowest != 1 else ''}", f"high: {meta['high']} epochs"))
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=90)
    render(frames, results, meta, args.figure, Path(args.doc), args.n_boot)
    print(f"wrote {args.doc} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
