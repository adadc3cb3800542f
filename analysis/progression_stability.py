"""Does the A -> E progression survive a rerun? Retrain noise and verdict stability for analysis/anynet_progression.md.

    python analysis/progression_stability.py --seeds 1 2 3 --spaces anynet_xc anynet_xd anynet_xe --retrain anynet_xa

trains (or resumes) the reruns of C, D and E under seeds 1-3 and the A study's configs again under other training
seeds (what the committed data hold; about 2 hours of running trials on 2 shared cores), then writes the data.

Two kinds of studies are trained (or resumed) into `--out` and written to `--data`
(analysis/data/progression_reruns_models.csv and its meta JSON, committed), which is what
`anynet_progression.py --report-only` reads for its two sections on reruns:

- reruns: the progression's studies under other `--seed`s. A study's seed picks its configs (its stream), its
  training seeds (slot s trains with seed + s) and its data split, so a rerun draws other models, trains them
  with other seeds and judges them on another validation split of the same size: every source of chance but
  the spaces themselves. Each rerun's steps are judged exactly as the first run's (`progression_numbers._step`,
  Holm across the 4 steps);
- a retraining (`--retrain SPACE`): the first run's configs of that space again, on the same split, under other
  training seeds (`run --repeat 1`): the difference model by model is the training noise alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from progression_data import COLUMNS, DATA, meta_path, snap_to_lattice, study_rows, write_table
from progression_numbers import _step, label

from anynet_search.analysis import holm
from anynet_search.analysis.noise import noise_sd_of_difference, retrain_noise
from anynet_search.reporting.plan import pilot_pace
from anynet_search.reporting.results import open_run
from anynet_search.study import RunOptions, run_study

RERUNS = DATA.with_name("progression_reruns_models.csv")
SPACES = ("anynet_xa", "anynet_xb", "anynet_xc", "anynet_xd", "anynet_xe")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="rerun seeds (the first run used 0)")
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), help="spaces of the reruns")
    parser.add_argument("--retrain", nargs="*", default=[], help="spaces whose seed-0 configs to train again")
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/progression-reruns")
    parser.add_argument("--data", default=str(RERUNS))
    parser.add_argument("--objective", default=None, help=argparse.SUPPRESS)  # dry runs in the tests
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> dict[tuple[str, int, int], Path]:
    """Run (or resume) each rerun and retraining; (space, seed, repeat) -> run folder, with their wall times."""
    jobs = [(f"{s}_{args.variant}", 0, 1) for s in args.retrain]
    jobs += [(f"{s}_{args.variant}", seed, 0) for seed in args.seeds for s in args.spaces]
    out = {}
    for space, seed, repeat in jobs:
        start = time.perf_counter()
        outcome = run_study(RunOptions(space=space, trials=args.trials, workers=args.workers, dataset=args.dataset,
                                       out=args.out, sampler="random", seed=seed, repeat=repeat,
                                       objective=args.objective))
        if outcome.interrupted or outcome.failing_message:
            raise SystemExit(f"{space} seed {seed}: {outcome.failing_message or 'interrupted'}; run again to resume")
        print(f"{space} seed {seed} repeat {repeat}: {time.perf_counter() - start:.0f} s", flush=True)
        out[(space, seed, repeat)] = outcome.run_dir
    return out


def write_reruns(runs: Mapping[tuple[str, int, int], Path], csv: Path) -> None:
    """The per-model CSV of the reruns and retrainings (columns `rerun` = the study seed, `repeat`, then the
    progression's columns) and its meta JSON (each study's wall time from its first trial's start to its last
    trial's end, and its time with a trial running, which leaves out the pauses of a study stopped and resumed;
    the machine; the date)."""
    frames, wall, busy = [], {}, {}
    for (space, seed, repeat), run in runs.items():
        name = f"{label(space)} seed {seed}" + (f" repeat {repeat}" if repeat else "")
        df, wall[name], _ = study_rows(run)
        busy[name] = pilot_pace(open_run(run)[1]).busy_seconds  # a study stopped and resumed: only its running time
        frames.append(df.assign(space=space, rerun=seed, repeat=repeat))
    table = pd.concat(frames, ignore_index=True)
    write_table(table[["rerun", "repeat", *COLUMNS]].sort_values(["rerun", "repeat", "space", "trial"], kind="stable"),
                csv)
    import torch

    meta = {"wall_seconds": wall, "busy_seconds": busy, "machine": platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
            "written": f"{datetime.now(timezone.utc):%Y-%m-%d}"}
    meta_path(csv).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def read_reruns(csv: Path, validation_images: int) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The reruns' per-model table (errors back on their image lattice) and its meta; None without the file."""
    if not csv.exists():
        return None
    table = pd.read_csv(csv)
    table["error"] = snap_to_lattice(table["error"].to_numpy(dtype=float), validation_images)
    return table, json.loads(meta_path(csv).read_text(encoding="utf-8"))


def _frames(table: pd.DataFrame, seed: int, repeat: int = 0) -> dict[str, pd.DataFrame]:
    rows = table[(table["rerun"] == seed) & (table["repeat"] == repeat)]
    # each space's own columns, as `progression_data.read_data` gives them (another space's sampled_b stays out)
    return {str(s): df.dropna(axis=1, how="all").reset_index(drop=True) for s, df in rows.groupby("space", sort=False)}


def _verdict(step: dict[str, Any], level: float) -> str:
    """The primary verdict of a step from its Holm-adjusted p-values (as `progression_numbers._judge` decides)."""
    if step["p_primary_holm"] <= level:
        return "agrees"
    return "disagrees" if step["p_worse_holm"] <= level else "cannot tell"


def judge_steps(frames: Mapping[str, pd.DataFrame], names: list[str], margin: float, n_perm: int,
                seed: int, alpha: float = 0.05) -> list[dict[str, Any]]:
    """The steps between consecutive spaces of `names` present in `frames`, judged as in the first run: each
    step's tests, Holm across the len(names) - 1 steps (a step not rerun counts as p = 1, where Holm then
    multiplies the others' p-values as if it were not significant), and the primary verdict."""
    pairs = list(zip(names, names[1:]))
    steps = [_step(p, q, frames, margin, alpha, n_perm, seed, 5) if p in frames and q in frames else None
             for p, q in pairs]
    for key in ("p_primary", "p_worse", "p_ks_better"):
        adjusted = holm([s[key] if s else 1.0 for s in steps])
        for s, adj in zip(steps, adjusted):
            if s:
                s[f"{key}_holm"] = float(adj)
    for s in steps:
        if s:
            s["verdict"] = _verdict(s, alpha / 2)
    return [s for s in steps if s]


def stability_numbers(first: list[dict[str, Any]], table: pd.DataFrame, names: list[str], margin: float,
                      n_perm: int, level: float) -> dict[str, Any]:
    """Per step: the first run's and every rerun's difference, p-values and verdict, and how many agree."""
    seeds = sorted(int(s) for s in table.loc[table["repeat"] == 0, "rerun"].unique())
    reruns = {seed: judge_steps(_frames(table, seed), names, margin, n_perm, seed) for seed in seeds}
    rows = []
    for s in first:
        runs = [(seed, r) for seed, steps in reruns.items() for r in steps if r["step"] == s["step"]]
        if not runs:
            continue
        verdict = _verdict(s, level)
        diffs = [s["diff"]] + [r["diff"] for _, r in runs]
        holm_p = sorted((x["p_primary_holm"], x["p_primary"]) for x in [s] + [r for _, r in runs])
        verdicts = [verdict] + [r["verdict"] for _, r in runs]
        rows.append({"step": s["step"], "claim": s["claim"], "first": s, "reruns": runs,
                     "p_min": holm_p[0], "p_max": holm_p[-1],  # (Holm p, its raw p)
                     "counts": {v: verdicts.count(v) for v in ("agrees", "cannot tell", "disagrees") if v in verdicts},
                     "first_verdict": verdict, "same": sum(r["verdict"] == verdict for _, r in runs),
                     "diff_min": min(diffs), "diff_max": max(diffs), "diff_sd": float(np.std(diffs, ddof=1)),
                     "ks_same": sum((r["p_ks_better_holm"] <= level) == (s["p_ks_better_holm"] <= level)
                                    for _, r in runs)})
    rerun = {r["step"] for r in rows}
    return {"seeds": seeds, "steps": rows, "level": level, "not_rerun": [s["step"] for s in first if s["step"] not in rerun],
            "closest": min(first, key=lambda s: s["p_primary_holm"])["step"]}


def retrain_numbers(frames: Mapping[str, pd.DataFrame], table: pd.DataFrame, first: list[dict[str, Any]],
                    margin: float, n_perm: int, alpha: float = 0.05) -> list[dict[str, Any]]:
    """For each space trained again (repeat 1 of seed 0): the noise against the first run's models, the steps
    next to it judged again with the retrained errors, and each step's difference in sds of that noise."""
    out = []
    for space, again in _frames(table, 0, 1).items():
        noise = retrain_noise(frames[space], again, n_boot=2000, seed=0)
        retrained = {**frames, space: again}
        names = list(frames)
        moved = []
        for s in judge_steps(retrained, names, margin, n_perm, 0, alpha):
            if space in (s["prev"], s["next"]):
                old = next(f for f in first if f["step"] == s["step"])
                moved.append({"step": s["step"], "old": old, "new": s})
        steps = [{"step": s["step"], "diff": s["diff"], "n": s["n_prev"],
                  "sd": noise_sd_of_difference(noise.model_sd, s["n_prev"], s["n_next"])} for s in first]
        out.append({"space": space, "label": label(space), "noise": noise, "moved": moved, "steps": steps})
    return out


def _p(x: float, floor: float, raw: float | None = None) -> str:
    """A p-value; '<= x' where it (or, for a Holm-adjusted one, its `raw` p-value) sits at the permutation floor."""
    at_floor = (x if raw is None else raw) <= floor * (1 + 1e-9)
    return ("<= " if at_floor else "") + (f"{x:.3g}" if x >= 0.001 else f"{x:.1e}")


def _cell(step: dict[str, Any], verdict: str, floor: float) -> str:
    """One run of one step in the stability table: mean difference, primary Holm p, verdict."""
    return f"{step['diff']:+.2f}, p {_p(step['p_primary_holm'], floor, step['p_primary'])}, {verdict}"


def render_retrain(retrained: list[dict[str, Any]], level: float, n_val: int, floor: float) -> list[str]:
    """The note's section on the retrain noise (every sentence from `retrain_numbers`)."""
    lines = ["## Retrain noise: the same models trained again", ""]
    for r in retrained:
        nz, c = r["noise"], r["noise"].correlations.loc["spearman"]
        lines += [
            f"The {nz.n} {r['label']} configs of the first run were trained again on the same split, under other "
            f"training seeds (`anynet-search run --space {r['space']} --seed 0 --repeat 1`): {nz.changed} of {nz.n} "
            f"errors changed, by {nz.mean_abs:.2f} points on average ({nz.mean_abs * n_val / 100:.1f} validation "
            f"images of {n_val}) and by up to {nz.largest:.2f} ({nz.largest * n_val / 100:.0f} images). One model's training "
            f"noise has sd {nz.model_sd:.2f} points (sd of the differences / sqrt 2), {100 * nz.noise_share:.0f}% of "
            f"the variance of the errors; the study's mean error moved by {nz.shift:+.2f} points (95% interval "
            f"[{nz.shift_lo:+.2f}, {nz.shift_hi:+.2f}]). The two trainings rank the models alike to Spearman rho "
            f"{c['estimate']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}] (BCa, 2000 resamples).",
            "",
            f"Retraining alone moves the difference of two studies' mean errors ({r['steps'][0]['n']} models each) by "
            f"sd {r['steps'][0]['sd']:.2f} points; the steps' mean differences are "
            + ", ".join(f"{s['step']} {s['diff']:+.2f} ({abs(s['diff']) / s['sd']:.1f} sds)" for s in r["steps"])
            + ". A step within 2 such sds could come from training noise alone; the tests above count that noise "
            "already (it is part of the errors' spread), so this is what the same models would show if trained "
            "again, not a second test.",
            "",
        ]
        for m in r["moved"]:
            old, new = m["old"], m["new"]
            same = _verdict(old, level) == new["verdict"]
            lines.append(
                f"- {m['step']} judged again with the retrained {r['label']}: mean difference {old['diff']:+.2f} -> "
                f"{new['diff']:+.2f} points, primary p {_p(old['p_primary'], floor)} -> {_p(new['p_primary'], floor)}"
                f" (Holm {_p(old['p_primary_holm'], floor, old['p_primary'])} -> "
                f"{_p(new['p_primary_holm'], floor, new['p_primary'])}), verdict "
                f"'{_verdict(old, level)}' -> '{new['verdict']}'" + ("" if same else ": the verdict does not survive "
                                                                      "a retraining of the same models") + ".")
        lines.append("")
    return lines


def render_stability(stab: dict[str, Any], meta: dict[str, Any], floor: float, first_minutes: float) -> list[str]:
    """The note's section on the reruns (every sentence from `stability_numbers`; `first_minutes`: the first run's
    wall time, which decided how much to rerun)."""
    seeds, level = stab["seeds"], stab["level"]
    wall = meta.get("busy_seconds", {})
    lines = ["## Stability: the steps rerun with other seeds", "",
             f"Each rerun trains the spaces again under another seed ({', '.join(str(s) for s in seeds)}; the first "
             "run used 0): other configs from each space's stream, other training seeds and another validation "
             "split of the same size, judged exactly as above (primary test, Holm across the 4 steps, a step not "
             "rerun counted as p = 1). Per step, the first run and each rerun: mean difference (next - previous), "
             "primary p (Holm) and verdict. `python analysis/progression_stability.py --seeds "
             + " ".join(str(x) for x in seeds) + " --spaces " + " ".join(
                 sorted({r["first"]["prev"].rsplit("_", 1)[0] for r in stab["steps"]}
                        | {r["first"]["next"].rsplit("_", 1)[0] for r in stab["steps"]}))
             + "` trains them and writes their per-model data (`analysis/data/progression_reruns_models.csv`)."
             + (f" Not rerun: {', '.join(stab['not_rerun'])}. The first run's five studies took {first_minutes:.0f} "
                "min here, so one full rerun takes about an hour on these 2 shared cores; the steps "
                f"{', '.join(r['step'] for r in stab['steps'])} were rerun instead ({stab['closest']} had the first "
                "run's smallest primary p-value), and nothing is said here about how the others repeat."
                if stab["not_rerun"] else ""), "",
             "| step | paper | " + " | ".join(["first run (seed 0)"] + [f"seed {s}" for s in seeds])
             + " | same verdict as the first run | mean differences from .. to (sd) | Holm p from .. to |",
             "|---" * (len(seeds) + 6) + "|"]
    for row in stab["steps"]:
        by_seed = dict(row["reruns"])
        cells = [_cell(row["first"], row["first_verdict"], floor)]
        cells += [_cell(by_seed[s], by_seed[s]["verdict"], floor) if s in by_seed else "not rerun" for s in seeds]
        lines.append(f"| {row['step']} | {row['claim']} | " + " | ".join(cells) + f" | {row['same']} of "
                     f"{len(row['reruns'])} | {row['diff_min']:+.2f} .. {row['diff_max']:+.2f} ({row['diff_sd']:.2f}) | "
                     f"{_p(row['p_min'][0], floor, row['p_min'][1])} .. {_p(row['p_max'][0], floor, row['p_max'][1])} |")
    lines.append("")
    for row in stab["steps"]:
        k = len(row["reruns"])
        repeats = "" if row["same"] == k else ": it does not repeat, so it is a property of one run, not of the spaces"
        ks_first = row["first"]["p_ks_better_holm"] <= level
        lines.append(f"- **{row['step']}**: the first run's verdict '{row['first_verdict']}' comes back in "
                     f"{row['same']} of {k} reruns{repeats}; the mean difference ranged over {row['diff_min']:+.2f} .. "
                     f"{row['diff_max']:+.2f} points over the {k + 1} runs (sd {row['diff_sd']:.2f}); over all "
                     f"{k + 1} runs the verdict was "
                     + ", ".join(f"'{v}' {c} time{'s' if c != 1 else ''}" for v, c in row["counts"].items()) + ". "
                     + (f"The secondary one-sided KS test {'rejected' if ks_first else 'did not reject'} 'not better' "
                        f"in the first run (Holm p {_p(row['first']['p_ks_better_holm'], floor, row['first']['p_ks_better'])}) "
                        f"and gives the same answer in {row['ks_same']} of {k} reruns (Holm p "
                        + ", ".join(_p(r['p_ks_better_holm'], floor, r['p_ks_better']) for _, r in row["reruns"])
                        + ")."
                        if row["claim"] == "better" else ""))
    if wall:
        lines += ["", "Time with a trial running, per study of the reruns (2 workers on this 2-core machine, shared "
                  "with other jobs and niced, so these are not clean speeds): "
                  + ", ".join(f"{k} {v / 60:.0f} min" for k, v in wall.items())
                  + f"; {sum(wall.values()) / 60:.0f} min in all."]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    """Train the reruns and retrainings asked for, then write their data (all of `--data`, resumed studies
    included: the run folders in `--out`)."""
    args = parse_args(argv)
    start = time.perf_counter()
    runs = train(args)
    csv = Path(args.data)
    if csv.exists():  # keep the studies trained by earlier calls whose folders are listed in the data
        old = pd.read_csv(csv)[["rerun", "repeat", "space"]].drop_duplicates()
        for seed, repeat, space in old.itertuples(index=False):
            name = f"{space}-{args.dataset.split(':')[0]}-random-e8-s{seed}" + (f"-r{repeat}" if repeat else "")
            if (space, seed, repeat) not in runs and (Path(args.out) / name).is_dir():
                runs[(space, int(seed), int(repeat))] = Path(args.out) / name
    write_reruns(runs, csv)
    print(f"wrote {csv} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
