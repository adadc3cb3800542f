"""Input validation shared by the analysis modules: every bad input becomes a one-line ValueError."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


def as_errors(errors: Any, name: str = "errors") -> np.ndarray:
    """Return `errors` as a non-empty 1-D float array of finite values, or raise ValueError."""
    arr = np.asarray(errors, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one model")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} NaN/infinite values (failed trials?); drop them before the analysis"
        )
    return arr


def as_weights(weights: Any, n: int, name: str = "weights") -> np.ndarray | None:
    """Return `weights` normalized to sum 1 (None stays None), or raise ValueError on a bad vector."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"{name} must have one entry per error ({n}), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (w < 0).any():
        raise ValueError(f"{name} must be non-negative, got minimum {w.min()}")
    total = w.sum()
    if total <= 0:
        raise ValueError(f"{name} sum to zero: at least one model needs a positive weight")
    return w / total


def require_frame(df: Any, columns: Iterable[str], what: str) -> None:
    """Raise ValueError unless `df` is a non-empty DataFrame holding `columns`."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise ValueError(f"{what}: the results frame is empty")


def numeric_column(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """Return a column as a finite float array, or raise ValueError naming the column."""
    try:
        values = pd.to_numeric(df[column], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: column {column!r} is not numeric ({exc})") from None
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"{what}: column {column!r} has {int(bad.sum())} NaN/infinite values; drop or fill those rows first"
        )
    return values


def error_column(df: pd.DataFrame, what: str) -> np.ndarray:
    """Return the `error` column as a finite float array, or raise ValueError."""
    require_frame(df, ["error"], what)
    return numeric_column(df, "error", what)


def check_level(level: float, name: str = "level") -> float:
    """Return a confidence level in (0, 1), or raise ValueError."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {level}")
    return level


def check_positive_int(value: Any, name: str) -> int:
    """Return `value` as a positive int, or raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
