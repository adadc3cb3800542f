"""`anynet-search status`: trials by state and the best completed ones, credentials never shown."""

from __future__ import annotations

from collections import Counter

from optuna.trial import TrialState

from anynet_search.analysis.best import rank_by_error
from anynet_search.analysis.columns import param_columns
from anynet_search.reporting.headline import errors_line
from anynet_search.reporting.results import foreign_study, open_run, trials_frame
from anynet_search.study.configs_from import describe_source
from anynet_search.study.interrupts import is_requeued
from anynet_search.study.launch import job_lines
from anynet_search.study.settings import is_trained, stored_settings
from anynet_search.study.storage import redact


def study_status(run: str, study: str | None = None, top: int = 5) -> str:
    """Multi-line status of a study: settings, counts by state, recent failure reasons, best trials."""
    url, st = open_run(run, study)
    name = st.study_name
    settings = stored_settings(st)  # SettingsError (one line) if a newer anynet-search stored it
    trials = st.get_trials(deepcopy=False)
    # an infeasible adaptive suggestion is told back as COMPLETE, but trained nothing: counted on its own
    # a trial stopped mid-training whose config went back to the queue is no failure of its config
    counts = Counter("infeasible" if "infeasible" in t.user_attrs else "interrupted (re-queued)" if is_requeued(t)
                     else t.state.name.lower() for t in trials)
    done = sum(is_trained(t) for t in trials)  # what a study's N counts
    lines = [f"study {name} ({redact(url)})"]
    if settings is None:
        lines.append(f"  {foreign_study(st)}")
    else:
        lines.append(f"  space {settings.space.get('name')}, sampler {settings.sampler}, "
                     f"dataset {settings.dataset}, seed {settings.seed}")
        if settings.configs_from is not None:
            lines.append(f"  trains the {describe_source(settings.configs_from)}")
        if settings.repeat:
            lines.append(f"  repeat {settings.repeat}: its configs trained again under other training seeds (run "
                         "--repeat), on the same data split")
    lines.append(f"  {done}/{settings.n_trials if settings else '?'} completed; by state: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if len(df := trials_frame(st)):
        lines.append(f"  {errors_line(df)}")
    reasons = Counter(str(t.user_attrs.get("failure")) for t in trials if t.state == TrialState.FAIL)
    for reason, n in reasons.most_common(3):
        lines.append(f"  failed x{n}: {reason}")
    lines += job_lines(st, trials)
    if len(df):
        lines.append(f"  best {min(top, len(df))} (error = validation %, test_error reported separately):")
        cols = [c for c in ["trial", "error", "test_error", "flops", "params"] if c in df.columns]
        stage = param_columns(df)
        best = rank_by_error(df).head(top)[cols + stage]  # ties broken by trial number, as the report does
        table = best.to_string(index=False, float_format=lambda v: f"{v:.2f}")
        lines += ["    " + line for line in table.splitlines()]
    return "\n".join(lines)
