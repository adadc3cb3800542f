"""The committed per-model data of the A -> E progression: one CSV row per trained model, plus a small JSON.

`analysis/data/progression_models.csv` holds every number the analysis reads (space, trial, slot,
training seed and epochs, the built config d/w/b/g per stage, the sampled values the space's constraints
bind, flops/params/acts, the validation and test error, and the RegNet fit error recomputed with the
current `fit_regnet`), so `analysis/anynet_progression.py --report-only` needs no studies.
`progression_meta.json` holds what is not per model: the settings, the validation and test set sizes,
the space files' hashes, the machine and each study's wall time.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from anynet_search.models.regnet import fit_regnet
from anynet_search.models.rules import block_widths
from anynet_search.reporting.results import load_results, open_run
from anynet_search.spaces import DesignSpace, load_space
from anynet_search.study.settings import StudySettings
from anynet_search.training.data import load_dataset

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "progression_models.csv"
STAGES = 4
CONFIG = [f"{f}{i}" for f in "dwbg" for i in range(1, STAGES + 1)]
SAMPLED = [f"sampled_{f}{i}" for f in "dwbg" for i in range(1, STAGES + 1)] + ["sampled_b", "sampled_g"]
COLUMNS = ["space", "trial", "slot", "seed", "epochs", "sampler", *CONFIG, *SAMPLED, "flops", "params", "acts",
           "error", "test_error", "fit_error", "train_seconds"]
INTEGER = ["trial", "slot", "seed", "epochs", *CONFIG, "flops", "params", "acts"]


def meta_path(csv: Path) -> Path:
    """The JSON beside a data CSV."""
    return csv.with_name(csv.stem.replace("_models", "") + "_meta.json")


def fit_error(row: pd.Series) -> float:
    """The RegNet fit error of a results row's built widths (the current `fit_regnet`)."""
    widths = block_widths([int(row[f"d{i}"]) for i in range(1, STAGES + 1)],
                          [int(row[f"w{i}"]) for i in range(1, STAGES + 1)])
    return float(fit_regnet(widths).fit_error)


def study_rows(run: Path) -> tuple[pd.DataFrame, float, StudySettings]:
    """A run folder's models in the CSV's columns, its wall time (first trial start to last trial end, seconds)
    and its settings."""
    df = load_results(run)
    df["fit_error"] = df.apply(fit_error, axis=1)
    _, study = open_run(run)
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    wall = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return df.reindex(columns=COLUMNS), wall, StudySettings.from_study(study)


def write_table(table: pd.DataFrame, csv: Path) -> None:
    """Write a per-model table: errors at full precision (they tie exactly), whole numbers as whole numbers."""
    table = table.dropna(axis=1, how="all").round({"fit_error": 6, "train_seconds": 3})
    for col in table.columns:  # whole numbers stay whole where other spaces leave a column empty
        values = table[col]
        if values.dtype.kind == "f" and np.allclose(values.dropna() % 1, 0):
            table[col] = values.astype("Int64")
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False, lineterminator="\n")


def write_data(runs: Mapping[str, Path], csv: Path) -> tuple[Path, Path]:
    """Write the CSV and its JSON from the finished run folders (space name -> run folder)."""
    frames, wall, hashes, settings = [], {}, {}, None
    for name, run in runs.items():
        df, wall[name], settings = study_rows(run)
        frames.append(df.assign(space=name))
        hashes[name] = settings.design_space().hash
    write_table(pd.concat(frames, ignore_index=True).sort_values(["space", "trial"], kind="stable"), csv)
    space = settings.design_space()
    data = load_dataset(settings.dataset, space.resolution, seed=settings.seed)
    train = settings.train_config()
    meta = {
        "dataset": settings.dataset, "seed": settings.seed, "sampler": settings.sampler, "epochs": train.epochs,
        "resolution": space.resolution, "num_classes": space.fixed["num_classes"],
        "in_channels": space.fixed["in_channels"], "validation_images": int(data.val_y.numel()),
        "test_images": int(data.test_y.numel()), "space_hashes": hashes, "wall_seconds": wall,
        "machine": platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
        "written": f"{datetime.now(timezone.utc):%Y-%m-%d}",
    }
    path = meta_path(csv)
    path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return csv, path


def snap_to_lattice(errors: np.ndarray, images: int) -> np.ndarray:
    """Errors that are whole numbers of `images` images put back exactly on that lattice (a CSV rounds them), so
    that they tie; other values (a dry run's pseudo-errors) as they are."""
    wrong = errors * images / 100.0
    if np.abs(wrong - np.round(wrong)).max() < 1e-4:
        return np.round(wrong) * 100.0 / images
    return errors


def read_data(csv: Path) -> tuple[dict[str, pd.DataFrame], dict[str, DesignSpace], dict[str, Any]]:
    """(results frame per space, the bundled design space per space, the JSON) from the committed files.

    Each space is the bundled file for the data set's classes and channels (the band counts the real stem
    and head), as the studies stored it. Raises SystemExit when it differs from what the studies stored
    (its hash): sizes and shrink factors would then describe another space than the one sampled.
    """
    if not csv.exists():
        raise SystemExit(f"{csv}: no data; run `python analysis/anynet_progression.py` to train the studies")
    meta = json.loads(meta_path(csv).read_text(encoding="utf-8"))
    table = pd.read_csv(csv)
    frames, spaces = {}, {}
    for name, df in table.groupby("space", sort=False):
        df = df.dropna(axis=1, how="all").reset_index(drop=True)
        for col in INTEGER:
            if col in df:
                df[col] = df[col].astype(np.int64)
        for col in ("error", "test_error"):  # whole images of their split: exactly on that lattice, so they tie
            df[col] = snap_to_lattice(df[col].to_numpy(dtype=float),
                                      meta["validation_images" if col == "error" else "test_images"])
        frames[str(name)] = df
        # the bundled file for the data set's classes and channels: what the studies stored and sampled
        space = load_space(str(name)).with_task(meta["num_classes"], meta["in_channels"])
        if space.hash != meta["space_hashes"].get(name, space.hash):
            raise SystemExit(f"{name}: the bundled space file changed since {csv.name} was written "
                             f"(hash {space.hash} != {meta['space_hashes'][name]}); re-run the studies")
        spaces[str(name)] = space
    return frames, spaces, meta
