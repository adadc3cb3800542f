"""Export the best models of a study: config files, pycls configs, RegNet parameters for timm / torchvision.

`export_top(df, k, fmt, out_dir)` ranks the models by validation error (`error`; `test_error` is copied
into the files as information only) and writes, for each of the best k:

- `yaml` / `json`: our `AnyNetConfig` file (the config under `config:` plus its metrics), readable by
  `anynet_search.load_config` and equal to the trial's stored config;
- `pycls`: a pycls-style YAML (`MODEL.TYPE: anynet` and the `ANYNET` section, `BOT_MULS` = 1 / b);
- for models that are RegNets, or fit one closely (`fit_regnet` error <= `regnet_threshold`), a
  `*.regnet.yaml` / `.json` with the RegNet parameters spelled for each library: timm's `RegNetCfg`
  (depth, w0, wa, wm, group_size, bottle_ratio, se_ratio), torchvision's
  `BlockParams.from_init_params` (depth, w_0, w_a, w_m, group_width, bottleneck_multiplier, se_ratio),
  pycls's `REGNET` section and this package's `regnet(...)` keywords. timm, torchvision and pycls take
  the bottleneck *multiplier* 1 / b where this package (and the paper) uses the ratio b. The libraries
  round differently (`anynet_search.models.regnet_targets`), so each gets its own parameters, searched to
  rebuild the model's widths, depths and group widths exactly under its own rounding and checked by
  rebuilding; where none is found (or pycls's single STRIDE cannot hold the strides) the entry is null
  and `checks` says why.

A config is rebuilt from the row's d/w/b/g columns plus the study's fixed parts (stem, strides, head,
classes...), taken from the trials' stored configs (`configs_for(run)`), from the study settings, or
from an explicit `fixed` mapping.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from anynet_search.analysis.best import rank_by_error
from anynet_search.models.config import AnyNetConfig
from anynet_search.reporting.export_configs import (
    PYCLS_VERSION,
    config_from_row,
    configs_for,
    fixed_fields,
    fixed_source,
    is_missing,
    pycls_config,
    pycls_notes,
)
from anynet_search.reporting.export_regnet import (
    REGNET_FIT_THRESHOLD,
    RegNetParams,
    no_regnet_kind,
    no_regnet_reason,
    regnet_params,
    regnet_record,
    sampled_regnet,
)
from anynet_search.reporting.results import completed_frame, open_run
from anynet_search.study.settings import StudySettings, stored_settings

__all__ = [
    "FORMATS",
    "REGNET_FIT_THRESHOLD",
    "RegNetParams",
    "config_from_row",
    "configs_for",
    "export_run",
    "export_top",
    "fixed_fields",
    "pycls_config",
    "regnet_params",
]

FORMATS: tuple[str, ...] = ("yaml", "json", "pycls")
#: `--format all` writes every format.
ALL_FORMATS = "all"


# ------------------------------------------------------------------------------------------ export
def _plain(x: Any) -> Any:
    """JSON/YAML-safe scalar: numpy to Python, NaN/None to None."""
    if x is None:
        return None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x if isinstance(x, (int, str, bool)) else str(x)


def _dump(data: Mapping[str, Any], path: Path, header: list[str]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    else:
        text = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, width=120)
        path.write_text("".join(f"# {h}\n" for h in header) + text, encoding="utf-8")
    return path


def _check_args(df: pd.DataFrame, k: int, fmt: str) -> str:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    fmt = str(fmt).lower()
    if fmt not in (*FORMATS, ALL_FORMATS):
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)} or {ALL_FORMATS}")
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ValueError("export_top: the results frame is empty; nothing to export")
    if "error" not in df.columns:
        raise ValueError("export_top: the results frame has no 'error' column to rank by")
    return fmt


def export_top(
    df: pd.DataFrame,
    k: int,
    fmt: str,
    out_dir: str | Path,
    study_settings: StudySettings | None = None,
    *,
    fixed: Mapping[str, Any] | None = None,
    configs: Mapping[int, AnyNetConfig] | None = None,
    regnet_threshold: float = REGNET_FIT_THRESHOLD,
    notes: list[str] | None = None,
    declined: list[tuple[int, str]] | None = None,
) -> list[Path]:
    """Write the k lowest-validation-error models as `fmt` files (yaml, json, pycls, or all three) and return the
    paths.

    The fixed parts of each config come from `configs` (trial number -> stored config, see `configs_for`;
    the rebuilt config must equal the stored one), else from `study_settings`' design space, else from
    `fixed`. RegNet parameters are written next to configs that are RegNets (the trial's own sampled RegNet
    parameters are tried first) or fit one within `regnet_threshold`; for every other model a line saying
    why is appended to `notes`, and (rank, why without its numbers) to `declined` (`declined_line` sums them up).
    """
    fmt = _check_args(df, k, fmt)
    formats = FORMATS if fmt == ALL_FORMATS else (fmt,)
    base_fixed, resolution = fixed_source(study_settings, fixed)
    if configs is None and base_fixed is None:
        raise ValueError("export_top: pass configs= (configs_for(run)), study_settings= or fixed= to give "
                         "the fixed parts of the configs (stem, strides, head, classes)")
    if configs is not None and "study" in df.columns and df["study"].nunique() > 1:
        raise ValueError("export_top: the frame mixes studies, whose trial numbers collide; "
                         "export one at a time")
    errors = pd.to_numeric(df["error"], errors="coerce")
    finite = df.assign(error=errors).dropna(subset=["error"])
    ranked = rank_by_error(finite).head(int(k))  # ties broken by trial number, as status and the report do
    if ranked.empty:
        raise ValueError("export_top: no model has a finite validation error")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        trial = int(row["trial"]) if "trial" in row.index and not is_missing(row["trial"]) else None
        if configs is not None:
            if trial is None or trial not in configs:
                raise ValueError(f"export_top: trial {trial} has no stored config "
                                 "(configs from another run?)")
            stored = configs[trial]
            cfg = config_from_row(row, fixed_fields(stored))
            if cfg != stored:
                raise ValueError(f"export_top: trial {trial}'s d/w/b/g in the frame differ from its stored "
                                 "config (configs from another run?)")
        else:
            cfg = config_from_row(row, base_fixed or {})
        stem = f"rank{rank:02d}" + (f"_trial{trial:04d}" if trial is not None else "")
        meta = {"rank": rank, "study": _plain(row.get("study")), "trial": trial,
                "error": _plain(row["error"]), "test_error": _plain(row.get("test_error")),
                "flops": _plain(row.get("flops")), "params": _plain(row.get("params")),
                "acts": _plain(row.get("acts")),
                # what the complexity was counted at and what the model takes: read_config_file and describe use it
                "resolution": resolution, "input": f"{cfg.in_channels}x{resolution}x{resolution}" if resolution
                else None, "num_classes": cfg.num_classes}
        header = [f"rank {rank} by validation error (error = {meta['error']}%) of study {meta['study']}, "
                  f"trial {trial}; test_error is reported only, never used for ranking"]
        for each in formats:
            if each == "pycls":
                pycls_header = header + [f"for pycls {PYCLS_VERSION} (pip install pycls=={PYCLS_VERSION}), the last "
                                         "release on PyPI"] + pycls_notes(cfg)
                paths.append(_dump(pycls_config(cfg, resolution), out / f"{stem}.pycls.yaml", pycls_header))
            else:
                paths.append(_dump({**meta, "config": cfg.to_dict()}, out / f"{stem}.{each}", header))
        sampled = sampled_regnet(row)
        params = regnet_params(cfg, regnet_threshold, sampled=sampled)
        if params is None:
            if notes is not None:
                notes.append(f"rank {rank} (trial {trial}): no RegNet file: {no_regnet_reason(cfg, regnet_threshold)}")
            if declined is not None:
                declined.append((rank, no_regnet_kind(cfg, regnet_threshold)))
            continue
        record = {"rank": rank, "trial": trial, **regnet_record(cfg, params, sampled)}
        for suffix in dict.fromkeys("json" if each == "json" else "yaml" for each in formats):
            paths.append(_dump(record, out / f"{stem}.regnet.{suffix}",
                               header + ["RegNet parameters for timm (RegNetCfg), torchvision "
                                         "(BlockParams.from_init_params), pycls and anynet_search.regnet"]))
    return paths


def declined_line(declined: list[tuple[int, str]], total: int) -> str | None:
    """One line for the models that got no RegNet file, grouped by why (None when every model got one)."""
    if not declined:
        return None
    groups: dict[str, list[int]] = {}
    for rank, why in declined:
        groups.setdefault(why, []).append(rank)
    parts = [f"rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}: {why}" for why, r in groups.items()]
    return f"no RegNet file for {len(declined)} of {total} models ({'; '.join(parts)})"


def export_run(
    run: str | Path, k: int, fmt: str, out_dir: str | Path, study: str | None = None, **kwargs: Any
) -> list[Path]:
    """`export_top` of a run folder or storage URL (+ study name), with its stored configs and settings."""
    _, loaded = open_run(run, study)
    df = completed_frame(run, loaded, "export")
    settings = stored_settings(loaded)
    return export_top(df, k, fmt, out_dir, settings, configs=configs_for(loaded), **kwargs)
