"""Fidelity of short training: the same configs of anynet_xa_tiny trained on digits for 1, 2 and 4 epochs and for 8
(the trainer's default), and the 8 epochs again under other training seeds; writes analysis/fidelity_digits.md.

    python analysis/fidelity_digits.py --report-only   # rewrite the note and figure from the committed data (seconds)
    python analysis/fidelity_digits.py                 # train the studies, then the same (the note gives their times)
    python analysis/fidelity_digits.py --report-only --add-retrained RUN   # add a retraining of the high budget

Training runs (or resumes) one random study at the high budget, then one study per low budget made from it with
`run --configs-from` (the same configs in the same slots, the same data split and per-slot training seeds) and,
with `--retrain` (default 1), the high budget's configs again under other training seeds (`run --configs-from
HIGH --repeat 1`): the noise ceiling. Every model's results go to `--data` (analysis/data/fidelity_models.csv,
columns `budget` and `repeat`, and fidelity_meta.json, committed), which is all `--report-only` reads. The
numbers are those of `anynet-search fidelity RUN_1 RUN_2 RUN_4 RUN_8 RUN_8_RETRAINED` (`fidelity_numbers`).
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
from fidelity_render import render
from progression_data import DATA as PROGRESSION

from anynet_search.analysis import holm
from anynet_search.analysis.fidelity import error_resolution, fidelity, margin_note
from anynet_search.analysis.noise import retrain_noise
from anynet_search.analysis.paired import rho_against, rho_differences, shared_errors
from anynet_search.reporting import plots
from anynet_search.reporting.plan import pilot_pace
from anynet_search.reporting.results import load_results, open_run
from anynet_search.study import RunOptions, run_study
from anynet_search.study.settings import StudySettings
from anynet_search.training.data import load_dataset

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "fidelity_models.csv"
KEEP = ["budget", "repeat", "trial", "slot", "flops", "params", "acts", "error", "test_error", "train_seconds"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="anynet_xa_tiny")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=100, help="configs (default 100)")
    parser.add_argument("--high", type=int, default=8, help="epochs of the high budget (default 8)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 2, 4], help="epochs of the low budgets")
    parser.add_argument("--retrain", type=int, default=1,
                        help="trainings of the high budget under other training seeds (default 1: the noise ceiling)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", default=None, help="cpu | cuda | cuda:0,cuda:1 (default: all GPUs, else cpu)")
    parser.add_argument("--prefix", default=None, help="study names PREFIX-eEPOCHS (default SPACE-DATASET)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/fidelity", help="folder of the run folders (git-ignored)")
    parser.add_argument("--doc", default=str(HERE / "fidelity_digits.md"), help="markdown file to write")
    parser.add_argument("--figure", default=str(HERE / "figures" / "fidelity_digits.png"))
    parser.add_argument("--data", default=str(DATA), help="per-model CSV written after training, read by --report-only")
    parser.add_argument("--add-retrained", default=None, metavar="RUN",
                        help="add a retraining of the high budget (run --repeat K) from its run folder to --data")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--report-only", action="store_true", help="do not train; analyze the committed --data")
    parser.add_argument("--objective", default=None, help=argparse.SUPPRESS)  # dry runs in the tests
    return parser.parse_args(argv)


def meta_path(csv: Path) -> Path:
    """The JSON beside the data CSV."""
    return csv.with_name(csv.stem.replace("_models", "") + "_meta.json")


def key(epochs: int, repeat: int = 0) -> str:
    """A study's key in the data and the meta: '8', or '8r1' for the first retraining of 8 epochs."""
    return f"{epochs}r{repeat}" if repeat else str(epochs)


def train(args: argparse.Namespace) -> dict[tuple[int, int], Path]:
    """Run (or resume) the high-budget study, each low budget and each retraining from its configs;
    (epochs, repeat) -> run folder."""
    name = args.prefix or f"{args.space}-{args.dataset.split(':')[0]}"
    common = dict(workers=args.workers, devices=args.devices, out=args.out, objective=args.objective)
    high = run_study(RunOptions(space=args.space, dataset=args.dataset, trials=args.trials, epochs=args.high,
                                seed=args.seed, study=f"{name}-e{args.high}", **common)).run_dir
    runs = {(args.high, 0): high}
    jobs = [(e, 0) for e in args.budgets] + [(args.high, k) for k in range(1, args.retrain + 1)]
    for epochs, repeat in jobs:
        runs[(epochs, repeat)] = run_study(RunOptions(configs_from=str(high), epochs=epochs, repeat=repeat,
                                                      study=f"{name}-e{key(epochs, repeat)}", **common)).run_dir
    return dict(sorted(runs.items()))


def _study_rows(run: Path, epochs: int, repeat: int) -> tuple[pd.DataFrame, dict, StudySettings]:
    """A study's rows (the columns the analysis reads) and its entry in the meta JSON."""
    df = load_results(run)
    config = [c for c in df.columns if c.startswith("sampled_") or c[:1] in "dwbg" and c[1:].isdigit()]
    _, study = open_run(run)
    pace = pilot_pace(study)
    settings = StudySettings.from_study(study)
    entry = {"study": study.study_name, "models": len(df), "busy_seconds": pace.busy_seconds, "workers": pace.workers,
             "configs_from": (settings.configs_from or {}).get("study"), "repeat": settings.repeat}
    return df.assign(budget=epochs, repeat=repeat)[KEEP + config], entry, settings


def write_data(runs: dict[tuple[int, int], Path], csv: Path, high: int) -> None:
    """Every model of every study (the results columns the analysis reads) and a JSON of the settings and times."""
    frames, studies = [], {}
    for (epochs, repeat), run in runs.items():
        df, studies[key(epochs, repeat)], _ = _study_rows(run, epochs, repeat)
        frames.append(df)
    settings = StudySettings.from_study(open_run(runs[(high, 0)])[1])
    data = load_dataset(settings.dataset, settings.design_space().resolution, seed=settings.seed)
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(csv, index=False)
    meta = {"space": settings.space["name"], "space_hash": settings.space_hash, "dataset": settings.dataset,
            "seed": settings.seed, "high": high, "validation_images": int(data.val_y.numel()), "studies": studies,
            "machine": platform.machine(), "cores": os.cpu_count(), "torch": __import__("torch").__version__,
            "written": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    meta_path(csv).write_text(json.dumps(meta, indent=1) + "\n")


def add_retrained(run: Path, csv: Path) -> None:
    """Append a retraining of the high budget (its study's rows and meta entry) to the data; SystemExit when it is
    not one (another space, data set, data split or number of epochs, or no repeat)."""
    table, meta = pd.read_csv(csv), json.loads(meta_path(csv).read_text())
    _, study = open_run(run)
    settings = StudySettings.from_study(study)
    ours = (settings.space_hash, settings.dataset, settings.seed, settings.train_config().epochs)
    theirs = (meta["space_hash"], meta["dataset"], meta["seed"], meta["high"])
    if ours != theirs or settings.repeat == 0:
        raise SystemExit(f"{run}: not a retraining of the high budget (space hash, data set, seed, epochs {ours} vs "
                         f"{theirs}; repeat {settings.repeat})")
    df, entry, _ = _study_rows(run, meta["high"], settings.repeat)
    if "repeat" not in table:
        table.insert(1, "repeat", 0)
    table = table[table["repeat"] != settings.repeat] if (table["budget"] == meta["high"]).any() else table
    pd.concat([table, df[table.columns.intersection(df.columns)]], ignore_index=True).to_csv(csv, index=False)
    meta["studies"][key(meta["high"], settings.repeat)] = {**entry, "run": str(run),
                                                          "written": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    meta_path(csv).write_text(json.dumps(meta, indent=1) + "\n")


def read_data(csv: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Study key ('1', '2', '4', '8', '8r1') -> results frame, in order of budget and repeat, and the meta JSON."""
    table = pd.read_csv(csv)
    if "repeat" not in table:  # data written before retrainings
        table["repeat"] = 0
    meta = json.loads(meta_path(csv).read_text())
    frames = {key(int(e), int(r)): g.drop(columns=["budget", "repeat"]).reset_index(drop=True)
              for (e, r), g in table.groupby(["budget", "repeat"])}
    for df in frames.values():  # what fidelity's verdicts need of a results frame
        df["sampler"] = "random"
    return frames, meta


def fidelity_numbers(frames: dict[str, pd.DataFrame], meta: dict, n_boot: int) -> dict:
    """Every number of the note: each low budget against the high one (its margin one validation image), the
    overlap p-values Holm-adjusted together, the rank correlations on the configs every study trained and their
    paired differences (each budget against the one below, the ceiling against each), the retrain noise."""
    high = str(meta["high"])
    lows = [k for k in frames if "r" not in k and k != high]
    retrained = [k for k in frames if k.startswith(f"{high}r")]
    image = 100.0 / meta["validation_images"]
    results = {k: fidelity(frames[k], frames[high], n_boot=n_boot, seed=0, margin=image) for k in lows}
    overlap_holm = dict(zip(lows, holm([results[k].overlap["p_value"] for k in lows])))
    errors = shared_errors(frames, high)
    steps = list(zip(lows[1:], lows[:-1])) + [(r, k) for r in retrained for k in lows]
    out = {"high": high, "lows": lows, "retrained": retrained, "results": results, "overlap_holm": overlap_holm,
           "shared": len(errors), "rhos": rho_against(errors, high, n_boot=n_boot, seed=0),
           "differences": rho_differences(errors, high, steps, n_boot=n_boot, seed=0), "margin": image,
           "resolution": error_resolution(frames[high]["error"].to_numpy(dtype=float)),
           "noise": {r: retrain_noise(frames[high], frames[r], n_boot=n_boot, seed=0) for r in retrained},
           "old_margin_note": margin_note(0.5, 100.0 / meta["validation_images"])}
    if PROGRESSION.exists():  # the high budget against the progression note's AnyNetXA study
        a = pd.read_csv(PROGRESSION).query("space == @meta['space']")
        merged = a.merge(frames[high], on=[c for c in frames[high] if c.startswith("sampled_")], suffixes=("_a", ""))
        out["same_as_progression"] = (len(merged), int((abs(merged["error_a"] - merged["error"]) < 1e-9).sum()),
                                      len(frames[high]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Train (unless --report-only), write the data, then the note and its figure."""
    args = parse_args(argv)
    csv = Path(args.data)
    if not args.report_only:
        write_data(train(args), csv, args.high)
    if args.add_retrained:
        add_retrained(Path(args.add_retrained), csv)
    frames, meta = read_data(csv)
    numbers = fidelity_numbers(frames, meta, args.n_boot)
    lowest = numbers["lows"][0]
    result = numbers["results"][lowest]
    fig = plots.plot_fidelity(result.pairs, result.correlations,
                              (f"low: {lowest} epoch{'s' if lowest != '1' else ''}", f"high: {meta['high']} epochs"))
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=90)
    Path(args.doc).write_text(render(frames, numbers, meta, args.figure, args.n_boot))
    print(f"wrote {args.doc} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
