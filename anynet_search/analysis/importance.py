"""fANOVA importance of a study's search parameters for the validation error (Optuna's evaluator).

Reads an Optuna study (the parameters as sampled), not a results frame: fANOVA needs Optuna's
distributions. Kept out of `anynet_search.analysis`'s package namespace so that importing the
statistics does not import Optuna.
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

# fANOVA's cost grows faster than linearly with the trials: 32 s for 1,000, 286 s for 10,000 on one core
# (benchmarks/bench_analysis.py); 1,000 covers the paper's 500 models per space in full.
IMPORTANCE_MAX_TRIALS = 1000


def parameter_importance(
    study: optuna.Study | None, seed: int = 0, max_trials: int | None = IMPORTANCE_MAX_TRIALS
) -> tuple[pd.DataFrame | None, str | None]:
    """fANOVA importances of the search parameters for the validation error (frame, note) or (None, reason).

    Studies with more than `max_trials` completed trials are evaluated on a seeded random subset of that
    many (the note says so); `None` uses them all.
    """
    if study is None:
        return None, "no Optuna study to compute importances from"
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(trials) < 2:
        return None, f"parameter importance needs at least 2 completed trials, the study has {len(trials)}"
    names = {k for t in trials for k in t.params}
    # one pass per parameter name: O(trials x params), not O(trials^2) (this took hours at 10,000 trials)
    if not any(len({repr(t.params.get(k)) for t in trials}) > 1 for k in names):
        return None, "parameter importance needs parameters that vary across trials; none do"
    target, note = study, None
    if max_trials is not None and len(trials) > max_trials:
        picks = np.random.default_rng(seed).choice(len(trials), size=max_trials, replace=False)
        from anynet_search.study.storage import quiet_optuna

        with quiet_optuna():  # no "new study created in memory" line
            target = optuna.create_study(direction=study.direction)
        target.add_trials([trials[i] for i in sorted(picks)])
        note = (
            f"computed on a random {max_trials:,} of the {len(trials):,} completed trials "
            "(fANOVA takes minutes on all of a large study)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(
                target, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
            )
    except Exception as exc:  # noqa: BLE001 - any evaluator failure is reported, not fatal
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"parameter importance failed: {first}"
    frame = pd.DataFrame({"param": list(imp), "importance": [float(v) for v in imp.values()]})
    return frame, note
