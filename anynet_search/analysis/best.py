"""Expected best error among n models drawn from a design space, exact from the order statistics; the one order
of the best models (`rank_by_error`) that status, the report and export share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from anynet_search.analysis._checks import as_errors, as_weights, check_level, check_positive_int
from anynet_search.analysis.bootstrap import draw_count, resample_counts


def rank_by_error(df: pd.DataFrame) -> pd.DataFrame:
    """The results rows by validation error, lowest first, ties broken by trial number (errors measured on a finite
    validation set tie often): the one order of `status`, the report's best models and `export`.

    >>> rank_by_error(pd.DataFrame({"trial": [3, 1, 2], "error": [2.5, 2.5, 1.0]}))["trial"].tolist()
    [2, 1, 3]
    """
    keys = ["error", "trial"] if "trial" in df.columns else ["error"]
    return df.sort_values(keys, kind="stable")


def default_ns(m: int) -> list[int]:
    """Powers of two 1, 2, 4, ... up to m."""
    return [2**k for k in range(int(np.floor(np.log2(m))) + 1)]


def _expected_min(es: np.ndarray, s_after: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """E[min of n draws] from P(one draw > e_i) = s_after[..., i]; broadcasts over leading axes.

    Summation by parts of sum_i e_i (P(min >= e_i) - P(min > e_i)):
    E[min] = e_1 + sum_{i<m} (e_{i+1} - e_i) * s_after_i^n.
    """
    gaps = np.diff(es)
    tail = s_after[..., :-1]
    return np.stack([es[0] + tail**n @ gaps for n in ns], axis=-1)


def expected_best_error(
    errors: ArrayLike,
    ns: Sequence[int] | int | None = None,
    weights: ArrayLike | None = None,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Expected minimum error of n models drawn with replacement, for each n in `ns`; exact, no simulation.

    For sorted errors e_1..e_m, E[min of n] = sum_i e_i [((m-i+1)/m)^n - ((m-i)/m)^n]; with `weights`
    the draws have those probabilities. `ns` defaults to 1, 2, 4, ... up to m. With `n_boot` > 0 the
    frame also has `lo`/`hi`, a percentile-bootstrap interval at `level` (resampling the models). `ns` may be one
    sample size.

    >>> expected_best_error([1.0, 2.0, 3.0, 4.0], 2)["expected_min"].tolist()
    [1.875]
    """
    e = as_errors(errors)
    w = as_weights(weights, e.size)
    if isinstance(ns, (int, np.integer)) and not isinstance(ns, bool):
        ns = [int(ns)]
    elif ns is not None and (isinstance(ns, str) or not isinstance(ns, Sequence | np.ndarray)):
        raise ValueError(f"ns must be a sample size or a list of them, got {ns!r}")
    ns = default_ns(e.size) if ns is None else [check_positive_int(n, "ns entry") for n in ns]
    if not ns:
        raise ValueError("ns is empty: give at least one sample size")
    order = np.argsort(e, kind="stable")
    es = e[order]
    ws = None if w is None else w[order]
    if ws is None:
        s_after = (e.size - 1 - np.arange(e.size)) / e.size  # fraction of models after sorted position i
    else:
        s_after = np.append(np.cumsum(ws[::-1])[::-1][1:], 0.0)
        s_after = np.minimum(s_after / ws.sum(), 1.0)
    out = pd.DataFrame({"n": np.asarray(ns, dtype=np.int64), "expected_min": _expected_min(es, s_after, ns)})
    if n_boot:
        n_boot = check_positive_int(n_boot, "n_boot")
        tail = (1.0 - check_level(level)) / 2
        n_draw = draw_count(e.size, ws)
        rng = np.random.default_rng(seed)
        # A resample's survival fractions are k / n_draw for integers k: look their powers up in a table.
        tables = [(np.arange(n_draw + 1) / n_draw) ** n for n in ns]
        gaps = np.diff(es)
        boots = []
        for counts in resample_counts(rng, e.size, n_draw, n_boot, ws):
            after = (n_draw - np.cumsum(counts, axis=1)[:, :-1]).astype(np.int64)
            boots.append(np.stack([es[0] + table[after] @ gaps for table in tables], axis=-1))
        lo, hi = np.quantile(np.concatenate(boots), [tail, 1.0 - tail], axis=0)
        out["lo"], out["hi"] = lo, hi
    return out
