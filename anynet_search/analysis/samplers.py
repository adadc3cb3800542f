"""Guard against design-space EDFs built from adaptive samplers (TPE, CMA-ES, ...), which are biased."""

from __future__ import annotations

import warnings

import pandas as pd

from anynet_search.errors import InputError

#: Samplers whose trials are an unbiased sample of the design space's distribution.
UNBIASED_SAMPLERS: frozenset[str] = frozenset({"random", "qmc"})


def _canonical(name: object) -> str:
    """'RandomSampler', 'random', ' QMC ' -> 'random' / 'qmc' (Optuna class names are accepted)."""
    text = str(name).strip().lower()
    return text[: -len("sampler")] if text.endswith("sampler") and text != "sampler" else text


def sample_bias(df: pd.DataFrame) -> str | None:
    """Why a results frame is not an unbiased sample of its design space; None when every row is random/QMC.

    A missing `sampler` column counts as unknown (biased).
    """
    if "sampler" not in df.columns:
        return "the frame has no 'sampler' column, so it cannot be shown to be an unbiased sample"
    samplers = [("<missing>" if pd.isna(s) else str(s)) for s in df["sampler"]]
    flagged = [s for s in samplers if _canonical(s) not in UNBIASED_SAMPLERS]
    if not flagged:
        return None
    return f"{len(flagged)} of {len(df)} rows come from non-random sampler(s) {sorted(set(flagged))}"


def require_unbiased_samples(df: pd.DataFrame, force: bool = False, stacklevel: int = 2) -> str | None:
    """Raise InputError (a ValueError) unless every row's `sampler` is random or QMC; with `force`, warn and return the text.

    Returns None when the sample is unbiased. A missing `sampler` column counts as unknown (biased).
    """
    problem = sample_bias(df)
    if problem is None:
        return None
    text = (
        f"{problem}; EDFs and constraint verdicts from adaptive samplers are biased "
        "(they over-sample good regions), so use random or QMC trials or pass force=True (--force)"
    )
    if not force:
        raise InputError(text)
    text = f"forced analysis of a possibly biased sample: {problem}"
    warnings.warn(text, UserWarning, stacklevel=stacklevel + 1)
    return text


def adaptive_note(df: pd.DataFrame) -> str | None:
    """One line saying why a study's EDF verdicts are left out (an adaptive sampler); None if random/QMC."""
    problem = sample_bias(df)
    if problem is None:
        return None
    return (f"EDF verdicts left out: {problem}, which concentrate trials where errors are low, so the error "
            "EDF describes the search, not the design space (sample with --sampler random or qmc for EDFs, "
            "constraints and good ranges; --force draws them anyway)")
