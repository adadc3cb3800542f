"""The constraint verdict table: short cells with the long text behind them (the page), and the same table fitted
to a terminal (`derive`)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from anynet_search.reporting.cells import fmt


@dataclass
class VerdictRow:
    """One constraint in the verdict table: the short cells and the long text behind a details element."""

    constraint: str
    verdict: str
    n: str
    effect: str
    shrink: str
    power: str
    reason: str
    more: str


def _power(row: Any) -> str:
    """The verdict's power: the chance to keep it as 'not worse' if it changed nothing ('' when not judged, and
    where the verdict came from the significance test instead, whose power this is not)."""
    value = getattr(row, "power", float("nan"))
    if not np.isfinite(value) or str(row.reason).startswith("significantly"):
        return ""
    return f"{100 * value:.0f}%"


def _effect(row: Any) -> str:
    """The change of the mean error with its 95% interval ('unbounded' where too few models bound it)."""
    if not np.isfinite(row.mean_diff):
        return ""
    if np.isfinite(row.mean_diff_lo) and np.isfinite(row.mean_diff_hi):  # the interval kept on one line
        return f"{row.mean_diff:+.2f} [{row.mean_diff_lo:+.2f},\u00a0{row.mean_diff_hi:+.2f}]"
    return f"{row.mean_diff:+.2f} [unbounded]"


def _cell(row: Any, key: str, floor: float) -> str:
    """A number of a verdict's details; a permutation p-value at its floor 1 / (1 + permutations), and its Holm
    adjustment, as '<= value' (no permutation was as extreme: the p-value is at most that)."""
    text = fmt(getattr(row, key))
    raw = getattr(row, "p_value" if key == "p_adjusted" else key)
    at_floor = key in ("p_value", "p_adjusted", "p_not_worse") and np.isfinite(raw) and raw <= floor * (1 + 1e-9)
    return f"<= {text}" if at_floor else text


def verdict_rows(table: pd.DataFrame, skipped: dict[str, str] | None = None
                 ) -> tuple[list[VerdictRow], list[VerdictRow]]:
    """(rows to show, trivial rows to fold away): trivial = no evaluated model violates the constraint. A kept
    constraint that the derived space could not take (`skipped`: name -> why) says so in its reason."""
    shown, folded = [], []
    skipped = skipped or {}
    floor = 1.0 / (1 + table.attrs["n_perm"]) if "n_perm" in table.attrs else 0.0
    for r in table.itertuples(index=False):
        shrink = "" if not np.isfinite(r.log10_shrink) else f"{r.log10_shrink:.2f} ({r.shrink_source})"
        stats = ", ".join(
            f"{k} {_cell(r, k, floor)}"
            for k in (
                "n_eval",
                "fraction",
                "ks_stat",
                "p_value",
                "p_adjusted",
                "p_not_worse",
                "median_diff",
                "margin",
            )
        )
        row = VerdictRow(
            str(r.constraint),
            str(r.verdict),
            f"{r.n}/{r.n_eval}",
            _effect(r) if r.n != r.n_eval else "",
            shrink,
            _power(r),
            str(r.reason) + ("; not in the derived space" if r.verdict == "keep" and r.constraint in skipped else ""),
            (f"Not in the derived space: {skipped[r.constraint]}. " if r.verdict == "keep" and r.constraint in skipped
             else "") + f"{r.detail}. {r.note}. {stats}.",
        )
        (folded if r.n == r.n_eval else shown).append(row)
    return shown, folded


def verdict_text(table: pd.DataFrame, width: int = 100) -> str:
    """The verdict table for a terminal of `width` columns: one line per judged constraint (the reason cut to
    fit), then one line naming the constraints that every evaluated model satisfies."""
    shown, folded = verdict_rows(table)
    head = ("constraint", "verdict", "n/eval", "mean error change [95%]", "log10 shrink", "power")
    head = head if width >= 100 else ("constraint", "verdict", "n/eval", "change [95%]", "shrink", "power")
    cells = [(r.constraint, r.verdict, r.n, r.effect.replace("\u00a0", " "),
              r.shrink.replace("(", "").replace(")", ""), r.power) for r in shown]
    if not any(c[-1] for c in cells):  # power is computed by analyze, not by derive
        head, cells = head[:-1], [c[:-1] for c in cells]
    sizes = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    room = width - sum(sizes) - 2 * len(sizes) - 1  # what is left for the reason (none below 10 characters)

    def line(values: Sequence[str], reason: str) -> str:
        text = "  ".join(v.ljust(n) if i < 2 else v.rjust(n) for i, (v, n) in enumerate(zip(values, sizes)))
        if room < 24:  # too narrow for a column: the reason goes on a line of its own
            reason = reason if len(reason) <= width - 4 else reason[: width - 5] + "…"
            return text.rstrip() + (f"\n    {reason}" if reason != "reason" else "")
        reason = reason if len(reason) <= room else reason[: room - 1] + "…"
        return f"{text}  {reason}".rstrip()

    lines = [line(head, "reason")] + [line(c, r.reason) for c, r in zip(cells, shown)]
    if folded:
        names = ", ".join(r.constraint for r in folded)
        lines += textwrap.wrap(f"satisfied by every evaluated model (nothing to compare, neutral): {names}", width)
    return "\n".join(lines)
