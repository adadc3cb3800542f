"""What a report found, in a few lines: the summary box at the top of the page and the verdict lines `analyze` and
`run` print. Computed from the analysis' results (`summary.StudyReport`); renders nothing itself.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anynet_search.analysis import KEEP, NEUTRAL, REJECT
from anynet_search.analysis.studies import image_points
from anynet_search.reporting.summary import StudyReport
from anynet_search.training.interface import TrainConfig

POWER_GOAL = 0.8  # a neutral verdict below this power says little


@dataclass
class Headline:
    """One study's findings: data and budget, errors, the verdicts that matter and the space to run next."""

    label: str
    budget: str  # data set, models, epochs and training time, in words
    errors: str  # best and median validation error, and what one validation image is worth
    resolution: str = ""  # what one validation image is worth, when the errors are image counts
    kept: list[str] = field(default_factory=list)  # 'name (reason)'
    rejected: list[str] = field(default_factory=list)
    neutral: str = ""  # how many, and how many of them had little power
    derived: str = ""  # the derived space: its file, what it adds and its size
    command: str = ""  # the command that runs the derived space with the same training
    not_added: list[str] = field(default_factory=list)  # kept constraints the derived space cannot express
    note: str = ""  # why there are no verdicts (an adaptive sampler, too few models)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def resolution_line(df: pd.DataFrame) -> str:
    """'one validation image is 0.69 points (144 images), so errors closer than that tie', or '' when the errors
    are no image counts."""
    points = image_points(pd.to_numeric(df["error"], errors="coerce").to_numpy(dtype=float))
    if points is None:
        return ""
    return f"one validation image is {points:.2g} points ({100 / points:.0f} images), so errors closer than that tie"


def errors_line(df: pd.DataFrame) -> str:
    """'best 0.69%, median 5.21% validation error; one validation image is 0.69 points (144 images), ...'."""
    e = pd.to_numeric(df["error"], errors="coerce").to_numpy(dtype=float)
    resolution = resolution_line(df)
    return f"best {np.nanmin(e):.2f}%, median {np.nanmedian(e):.2f}% validation error" + (
        f"; {resolution}" if resolution else "")


def _budget(s: StudyReport, df: pd.DataFrame) -> str:
    seconds = pd.to_numeric(df["train_seconds"], errors="coerce").sum() if "train_seconds" in df else float("nan")
    spent = f", {seconds / 60:.1f} min of training in all" if np.isfinite(seconds) and seconds > 0 else ""
    epochs = f" x {_plural(s.epochs, 'epoch')}" if s.epochs else ""
    return f"{_plural(s.summary['n'], 'model')}{epochs} on {s.dataset or 'an unknown data set'}{spent}"


def next_command(space_file: Path, s: StudyReport, train: dict | None) -> str:
    """`anynet-search run` of a derived space with the study's data set, epochs, trainer settings and model count,
    so that its EDF compares with this study's."""
    words = ["anynet-search", "run", "--space", str(space_file.resolve())]
    if s.dataset:
        words += ["--dataset", s.dataset]
    if s.epochs:
        words += ["--epochs", str(s.epochs)]
    words += ["--trials", str(s.summary["n"])]
    defaults = TrainConfig().to_dict()
    # `augment=auto` gives the shift protocol on every data set but a prepared store: no need to say it there
    implied = {"augment": "shift"} if not str(s.dataset or "").startswith("prepared:") else {}
    for key, value in sorted((train or {}).items()):
        if key != "epochs" and key in defaults and value != defaults[key] and implied.get(key) != value:
            words += ["--train", f"{key}={value}"]
    return shlex.join(words)


def headline(s: StudyReport, df: pd.DataFrame, train: dict | None = None) -> Headline:
    """The findings of one analyzed study."""
    h = Headline(s.label, _budget(s, df), errors_line(df), resolution_line(df))
    if s.adaptive_note or s.constraints is None:
        h.note = s.adaptive_note or s.constraints_note or "no constraint verdicts"
        return h
    table = s.constraints
    skipped = dict(s.derived.skipped) if s.derived is not None else {}
    for row in table.itertuples(index=False):
        name = str(row.constraint)
        if row.verdict == KEEP:
            h.kept.append(f"{name} ({row.reason})")
            if name in skipped:
                h.not_added.append(f"{name}: {skipped[name]}")
        elif row.verdict == REJECT:
            h.rejected.append(f"{name} ({row.reason})")
    neutral = table[table["verdict"] == NEUTRAL]
    if len(neutral):
        weak = int((pd.to_numeric(neutral.get("power"), errors="coerce") < POWER_GOAL).sum()) \
            if "power" in neutral else 0
        h.neutral = f"{len(neutral)} neutral" + (f", {weak} of them with power below {POWER_GOAL:.0%}: 'neutral' "
                                                 "there is not evidence of no effect" if weak else "")
    if s.derived is not None and s.derived_path is not None:
        d = s.derived
        h.derived = (f"{s.derived_path.name}: adds {', '.join(d.added) or 'nothing'}; log10 size "
                     f"{d.log10_size_before:.2f} -> {d.log10_size_after:.2f}")
        h.command = next_command(s.derived_path, s, train)
    return h


def headline_lines(h: Headline) -> list[str]:
    """The findings as the lines `analyze` prints under a study."""
    lines = [f"    {h.resolution}"] if h.resolution else []
    if h.note:
        return [*lines, f"    constraints: {h.note}"]
    lines.append(f"    keep: {', '.join(h.kept) or '-'}; reject: {', '.join(h.rejected) or '-'}; "
                 f"{h.neutral or '0 neutral'}")
    lines += [f"    kept but not in the derived space: {n}" for n in h.not_added]
    if h.command:
        lines.append(f"    next: {h.command}")
    return lines


def as_dict(h: Headline) -> dict:
    """The template's view of a headline."""
    return dataclasses.asdict(h)
