"""Time to load and analyze a large study (default 10,000 trials) from its journal file.

Builds, in a temp dir, a run folder whose journal holds N completed trials shaped exactly like a real
anynet_xa_tiny / digits / random study's (same study settings attribute; per trial the worker's user
attrs: slot, attempt, space, space_hash, sampler, dataset, device, worker, train_config, config, flops,
params, acts, fit_*, train_seed and the `result` dict; its system attrs host/pid/worker/heartbeat; 8
intermediate values; the space's parameters with their Optuna distributions). Configs are the space's
own seeded samples; errors follow the dry-run objective's formula (falls with log flops, plus noise).
Trials are written with `optuna.trial.create_trial` + `study.add_trials` (building is not timed as part
of the analysis, but reported).

Then times `load_results`, `normalized_weights`, `edf_band`, `expected_best_error`, `good_ranges`,
`derive_constraints` and the full `analyze_runs` report (also without parameter importance, and
`parameter_importance` alone: as the report runs it, on a random subset of at most
`IMPORTANCE_MAX_TRIALS`, and on all trials), each with the library defaults (n_boot=1000 bootstraps,
n_perm=1000 permutations), plus a table of
the fANOVA and PED-ANOVA evaluators' cost at a few study sizes.

    python benchmarks/bench_analysis.py              # 10,000 trials
    python benchmarks/bench_analysis.py --quick      # 1,000 trials
    python benchmarks/bench_analysis.py --trials 3000
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import optuna  # noqa: E402
from _common import machine_line, rss_mib, table, time_call, warn_if_busy  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from anynet_search.analysis import (  # noqa: E402
    derive_constraints,
    edf_band,
    expected_best_error,
    good_ranges,
    normalized_weights,
)
from anynet_search.analysis.importance import IMPORTANCE_MAX_TRIALS, parameter_importance  # noqa: E402
from anynet_search.models.complexity import complexity  # noqa: E402
from anynet_search.reporting.analyze import analyze_runs  # noqa: E402
from anynet_search.reporting.results import load_results  # noqa: E402
from anynet_search.spaces import load_space  # noqa: E402
from anynet_search.study.objective import config_record  # noqa: E402
from anynet_search.study.settings import SETTINGS_ATTR, StudySettings  # noqa: E402
from anynet_search.study.storage import default_storage_url, load_study, open_storage  # noqa: E402
from anynet_search.training.train import TrainConfig  # noqa: E402

SPACE = "anynet_xa_tiny"


def build_run(run_dir: Path, n: int, seed: int = 0) -> float:
    """Write an N-trial study into run_dir/journal.log; returns seconds taken."""
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True)
    space = load_space(SPACE).with_task(10, 1)
    train = TrainConfig().to_dict()
    settings = StudySettings(space=space.data, space_source=space.source, space_hash=space.hash, sampler="random",
                             seed=seed, n_trials=n, dataset="digits", train=train)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=run_dir.name, storage=open_storage(default_storage_url(run_dir)),
                                direction="minimize")
    study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
    samples = space.sample_many(n, seed=seed)
    fixed = optuna.trial.FixedTrial(samples[0].params)
    space.suggest(fixed)
    distributions = fixed.distributions
    rng = np.random.default_rng(seed)
    trials = []
    now = time.time()
    for slot, s in enumerate(samples):
        cfg = s.config
        flops = complexity(cfg, space.resolution).flops
        decreasing = sum(b < a for a, b in zip(cfg.widths, cfg.widths[1:]))
        noise = np.random.default_rng(zlib.crc32(repr(cfg.to_dict()).encode())).normal(0, 0.5)
        error = float(max(0.5, 30 - 3 * math.log10(flops) + 1.5 * decreasing + noise))
        history = [error + 20.0 * 0.5**e for e in range(8)]
        history[-1] = error
        train_s = float(rng.uniform(4, 12))
        attrs = {"slot": slot, "attempt": 0, "space": space.name, "space_hash": space.hash, "sampler": "random",
                 "dataset": "digits", "device": "cpu", "worker": f"w{slot % 2}", "train_config": train,
                 **config_record(cfg, space.resolution), "train_seed": seed + slot,
                 "result": {"val_error": error, "test_error": error + float(rng.normal(0.3, 0.3)),
                            "train_seconds": train_s, "eval_seconds": 0.05 * train_s, "epochs": 8,
                            "history": history, "final_train_loss": 0.6, "wall_seconds": 1.1 * train_s}}
        sys_attrs = {"host": "bench-host", "pid": 1000 + slot % 2, "worker": f"w{slot % 2}", "heartbeat": now}
        trials.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE, value=error, params=s.params, distributions=distributions, user_attrs=attrs,
            system_attrs=sys_attrs, intermediate_values={e + 1: v for e, v in enumerate(history)}))
    study.add_trials(trials)
    return time.perf_counter() - t0


def importance(trials: list, kind: str) -> dict:
    """Optuna parameter importances of these trials (in-memory study), as `parameter_importance` calls them."""
    import warnings

    study = optuna.create_study(direction="minimize")
    study.add_trials(trials)
    evaluator = (optuna.importance.FanovaImportanceEvaluator(seed=0) if kind == "fanova"
                 else optuna.importance.PedAnovaImportanceEvaluator())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.importance.get_param_importances(study, evaluator=evaluator)


def timed(label: str, fn, rows: list, repeats: int = 1, note: str = ""):
    seconds, value = time_call(fn, repeats)
    rows.append({"step": label, "seconds": seconds, "runs": repeats, "note": note})
    print(f"  {label}: {seconds:.2f} s", file=sys.stderr, flush=True)
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1,000 trials")
    p.add_argument("--trials", type=int, default=None, help="default 10,000, quick 1,000")
    p.add_argument("--repeats", type=int, default=None, help="repeats of the fast steps (default 3, quick 1)")
    p.add_argument("--skip-slow", action="store_true",
                   help="skip fANOVA on all trials (about 5 minutes at 10,000 trials)")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="trial counts of the importance scaling table (default 500 1000 2000, quick 250 500)")
    args = p.parse_args(argv)
    n = args.trials or (1000 if args.quick else 10_000)
    sizes = [k for k in (args.sizes or ([250, 500] if args.quick else [500, 1000, 2000])) if k <= n]
    reps = args.repeats or (1 if args.quick else 3)

    print("# bench_analysis")
    print("machine:", machine_line())
    warn_if_busy()
    tmp = Path(tempfile.mkdtemp(prefix="anynet-bench-analysis-"))
    try:
        run_dir = tmp / f"{SPACE}-synthetic-{n}"
        print(f"  building a {n}-trial journal ...", file=sys.stderr, flush=True)
        build_s = build_run(run_dir, n)
        journal_mib = (run_dir / "journal.log").stat().st_size / 2**20
        print(f"study: {n} completed trials of {SPACE} in a {journal_mib:.1f} MiB journal, written in {build_s:.1f} s "
              f"(create_trial + add_trials; not part of the timings below)")
        rows: list[dict] = []
        rss0 = rss_mib()
        df = timed("load_results(run_dir)", lambda: load_results(run_dir), rows, reps,
                   "open journal, replay it, build the frame")
        url = default_storage_url(run_dir)
        timed("  open storage + load study + get_trials alone",
              lambda: load_study(run_dir.name, open_storage(url)).get_trials(deepcopy=False), rows, reps)
        timed("normalized_weights(flops, bins=10)", lambda: normalized_weights(df["flops"], bins=10), rows, reps)
        timed("edf_band(error)", lambda: edf_band(df["error"]), rows, reps, "n_boot=1000")
        timed("expected_best_error(error)", lambda: expected_best_error(df["error"]), rows, reps, "exact")
        timed("expected_best_error(error, n_boot=1000)", lambda: expected_best_error(df["error"], n_boot=1000), rows, 1)
        timed("good_ranges(df)", lambda: good_ranges(df), rows, 1, f"{sum(c[0] in 'dwbg' and c[1:].isdigit() for c in df.columns)} params")
        cons = timed("derive_constraints(df)", lambda: derive_constraints(df), rows, 1, "n_perm=1000")
        timed("derive_constraints(df, bins=10)", lambda: derive_constraints(df, bins=10), rows, 1, "complexity-normalized")
        study = load_study(run_dir.name, open_storage(url))
        timed("analyze_runs([run], out, importance=False)",
              lambda: analyze_runs([run_dir], tmp / "report-noimp", importance=False), rows, 1,
              "everything but parameter importance")
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        timed("parameter_importance(study)", lambda: parameter_importance(study), rows, 1,
              f"what the report runs: fANOVA on a random {min(n, IMPORTANCE_MAX_TRIALS):,} trials")
        if not args.skip_slow:
            timed("parameter_importance(study, max_trials=None)",
                  lambda: parameter_importance(study, max_trials=None), rows, 1, f"fANOVA on all {n:,} trials")
        timed(f"PedAnovaImportanceEvaluator ({n} trials)", lambda: importance(trials, "pedanova"), rows, 1,
              "faster evaluator, for comparison")
        timed("analyze_runs([run], out)  (the full report)", lambda: analyze_runs([run_dir], tmp / "report"), rows, 1,
              "defaults: n_boot=1000, importance on")
        rows.append({"step": "  difference: parameter importance inside the report", "runs": 1,
                     "seconds": rows[-1]["seconds"] - next(r["seconds"] for r in rows
                                                           if r["step"].startswith("analyze_runs([run], out, imp")),
                     "note": "full report - report without importance"})
        scaling = []
        for k in sizes:
            sub = trials[:k]
            row = {"trials": k}
            for label, fn in (("fANOVA evaluator (s)", lambda sub=sub: importance(sub, "fanova")),
                              ("PED-ANOVA evaluator (s)", lambda sub=sub: importance(sub, "pedanova"))):
                t0 = time.perf_counter()
                fn()
                row[label] = time.perf_counter() - t0
            scaling.append(row)
            print(f"  importance scaling at {k}: {row}", file=sys.stderr, flush=True)
        rss1 = rss_mib()
        print(f"frame: {df.shape[0]} rows x {df.shape[1]} columns; constraints judged: {len(cons)}; "
              f"RSS {rss0:.0f} -> {rss1:.0f} MiB\n")
        print(table(rows))
        print("\n## Parameter importance cost vs number of trials (first k trials of the same study)\n")
        print(table(scaling))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
