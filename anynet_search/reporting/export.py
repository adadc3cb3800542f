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

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

from anynet_search.models import registry
from anynet_search.models.config import AnyNetConfig
from anynet_search.models.regnet import fit_regnet, regnet
from anynet_search.models.regnet_targets import (
    RULES,
    RegNetSolution,
    StageLayout,
    find_params,
    layout_of,
    stage_layout,
)
from anynet_search.models.rules import STAGE_COLUMNS
from anynet_search.reporting.results import completed_frame, open_run
from anynet_search.study.plan import StudySettings, stored_settings

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
#: Largest `fit_regnet` error (mean |log(predicted / observed)|) for which RegNet parameters are exported.
REGNET_FIT_THRESHOLD = 0.05
#: pycls's names of the built-in stem and block types (each registry entry carries its own).
PYCLS_STEMS = {name: s.pycls for name, s in registry.STEMS.items() if s.pycls}
PYCLS_BLOCKS = {name: b.pycls for name, b in registry.BLOCKS.items() if b.pycls}
SEARCHED = tuple(STAGE_COLUMNS)


def _pycls_types(cfg: AnyNetConfig) -> dict[str, str]:
    """pycls's STEM_TYPE and BLOCK_TYPE of a config; ValueError for a type pycls does not have."""
    out = {}
    for key, kind, entry in (("STEM_TYPE", "stem", registry.stem_type(cfg.stem_type)),
                             ("BLOCK_TYPE", "block", registry.block_type(cfg.block_type))):
        if entry.pycls is None:
            name = cfg.stem_type if kind == "stem" else cfg.block_type
            raise ValueError(f"pycls has no {kind} type matching {name!r}; export it as yaml or json")
        out[key] = entry.pycls
    return out


# ------------------------------------------------------------------------------------------ configs
def configs_for(run: str | Path | optuna.Study) -> dict[int, AnyNetConfig]:
    """The stored config of every completed trial of a run (folder, storage URL or Study), by trial number."""
    if isinstance(run, optuna.Study):
        study = run
    else:
        _, study = open_run(run)
    out = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        data = t.user_attrs.get("config")
        if data is not None:
            out[t.number] = AnyNetConfig.from_dict(data)
    return out


def fixed_fields(cfg: AnyNetConfig) -> dict[str, Any]:
    """Every field of a config but the four searched per-stage lists (d, w, b, g): strides, stem, head..."""
    data = cfg.to_dict()
    return {k: v for k, v in data.items() if k not in SEARCHED}


def _stage_values(row: Mapping[str, Any], prefix: str) -> list[Any]:
    values = []
    i = 1
    while f"{prefix}{i}" in row and not _missing(row[f"{prefix}{i}"]):
        v = row[f"{prefix}{i}"]
        values.append(int(v) if float(v).is_integer() else float(v))
        i += 1
    return values


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def config_from_row(row: Mapping[str, Any], fixed: Mapping[str, Any]) -> AnyNetConfig:
    """Rebuild a config from a results row's d1..dN, w1..wN, b1..bN, g1..gN plus the fixed fields.

    `fixed` holds any other `AnyNetConfig` fields; `strides` defaults to 2 in every stage.
    """
    stages = {field: _stage_values(row, prefix) for field, prefix in STAGE_COLUMNS.items()}
    n = len(stages["depths"])
    if n == 0:
        raise ValueError("the row has no per-stage columns d1.., w1.., b1.., g1..")
    known = {f.name for f in dataclasses.fields(AnyNetConfig)} - set(SEARCHED)
    unknown = sorted(set(fixed) - known)
    if unknown:
        raise ValueError(f"fixed names unknown or searched config field(s) {unknown}; "
                         f"allowed: {sorted(known)}")
    fields = {"strides": [2] * n, **dict(fixed), **stages}
    return AnyNetConfig(**fields)


def _fixed_source(
    study_settings: StudySettings | None, fixed: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, int | None]:
    """Fixed config fields and input resolution from the study settings or an explicit mapping."""
    resolution = None
    base = None
    if study_settings is not None:
        space = study_settings.design_space()
        base, resolution = dict(space.fixed), space.resolution
    if fixed is not None:
        base = {**(base or {}), **dict(fixed)}
    return base, resolution


# ------------------------------------------------------------------------------------------ RegNet
@dataclass(frozen=True)
class RegNetParams:
    """RegNet parameters (d, w0, wa, wm, g, b, se) of a config; `exact` if its target rebuilds it exactly."""

    depth: int
    w0: int
    wa: float
    wm: float
    group_width: int
    bottleneck_ratio: float
    se_ratio: float
    fit_error: float
    exact: bool

    def timm(self) -> dict[str, Any]:
        """Keyword arguments of timm's `RegNetCfg` (bottle_ratio is the multiplier 1 / b)."""
        return {"depth": self.depth, "w0": self.w0, "wa": self.wa, "wm": self.wm,
                "group_size": self.group_width,
                "bottle_ratio": 1.0 / self.bottleneck_ratio, "se_ratio": float(self.se_ratio)}

    def torchvision(self) -> dict[str, Any]:
        """Keyword arguments of torchvision's `BlockParams.from_init_params` (bottleneck_multiplier 1 / b)."""
        return {"depth": self.depth, "w_0": self.w0, "w_a": self.wa, "w_m": self.wm,
                "group_width": self.group_width, "bottleneck_multiplier": 1.0 / self.bottleneck_ratio,
                "se_ratio": float(self.se_ratio) if self.se_ratio else None}

    def anynet_search(self) -> dict[str, Any]:
        """Keyword arguments of `anynet_search.regnet(...)` for the searched part (add the fixed fields)."""
        return {"depth": self.depth, "w0": self.w0, "wa": self.wa, "wm": self.wm,
                "group_width": self.group_width,
                "bottleneck_ratio": self.bottleneck_ratio, "se_ratio": self.se_ratio}

    def pycls(self, cfg: AnyNetConfig) -> dict[str, Any]:
        """pycls's `MODEL` + `REGNET` sections for this RegNet with the config's stem, block and head.

        ValueError when the strides differ between stages: the `REGNET` section has one `STRIDE` for all.
        """
        if len(set(cfg.strides)) != 1:
            raise ValueError(f"strides {list(cfg.strides)} differ between stages; pycls's REGNET section has "
                             "one STRIDE for every stage (the ANYNET form, --format pycls, holds them)")
        types = _pycls_types(cfg)
        regnet_section = {
            "STEM_TYPE": types["STEM_TYPE"], "STEM_W": cfg.stem_width,
            "BLOCK_TYPE": types["BLOCK_TYPE"], "STRIDE": cfg.strides[0],
            "SE_ON": bool(self.se_ratio), "SE_R": float(self.se_ratio) if self.se_ratio else 0.25,
            "DEPTH": self.depth, "W0": self.w0, "WA": self.wa, "WM": self.wm, "GROUP_W": self.group_width,
            "BOT_MUL": 1.0 / self.bottleneck_ratio, "HEAD_W": cfg.head_width,
        }
        return {"MODEL": {"TYPE": "regnet", "NUM_CLASSES": cfg.num_classes}, "REGNET": regnet_section}


def _layout(cfg: AnyNetConfig) -> StageLayout:
    return layout_of(cfg.widths, cfg.depths, cfg.group_widths)


def _overrides(cfg: AnyNetConfig) -> dict[str, Any]:
    fixed = fixed_fields(cfg)
    fixed.pop("se_ratio")
    return fixed


REGNET_SAMPLED = ("d", "w0", "wa", "wm", "g")  # a RegNet space's sampled parameters (b too, when it is sampled)


def sampled_regnet(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A results row's sampled RegNet parameters (`sampled_d`, `sampled_w0`, ...), or None when it has none."""
    values = {}
    for name in (*REGNET_SAMPLED, "b"):
        v = row.get(f"sampled_{name}")
        if v is None or _missing(v):
            if name == "b":
                continue
            return None
        values[name] = int(v) if name in ("d", "w0", "g") else float(v)
    return values


def _from_sampled(cfg: AnyNetConfig, sampled: Mapping[str, Any] | None, target: str) -> RegNetSolution | None:
    """The trial's own sampled (d, w0, wa, wm, g) when `target` rebuilds the config from them exactly."""
    if not sampled:
        return None
    b = float(sampled.get("b", cfg.bottleneck_ratios[0]))
    if b != cfg.bottleneck_ratios[0]:
        return None
    solution = RegNetSolution(int(sampled["d"]), int(sampled["w0"]), float(sampled["wa"]), float(sampled["wm"]),
                              int(sampled["g"]))
    try:
        if stage_layout(target, solution.depth, solution.w0, solution.wa, solution.wm, solution.group_width,
                        b) != _layout(cfg):
            return None
    except ValueError:
        return None
    return solution


def regnet_params(
    cfg: AnyNetConfig, threshold: float = REGNET_FIT_THRESHOLD, target: str = "anynet_search",
    sampled: Mapping[str, Any] | None = None,
) -> RegNetParams | None:
    """RegNet parameters with which `target` rebuilds the config exactly (its own rounding; checked).

    The trial's own sampled parameters (`sampled`: d, w0, wa, wm, g and b of a RegNet space, see
    `sampled_regnet`) are tried first; then a search (`find_params`), which assumes consecutive stage exponents.
    For `anynet_search` without exact parameters, the `fit_regnet` fit if its error <= threshold
    (`exact` False: it describes a slightly different network). None when the stages do not share one
    bottleneck ratio, or nothing qualifies (`no_regnet_reason` says which).
    """
    if len(set(cfg.bottleneck_ratios)) != 1:
        return None
    depth, b = sum(cfg.depths), cfg.bottleneck_ratios[0]
    found = _from_sampled(cfg, sampled, target) or find_params(target, _layout(cfg), b)
    if found is not None and target == "anynet_search":  # the whole config, fixed parts too, must come back
        rebuilt = regnet(found.depth, found.w0, found.wa, found.wm, found.group_width, b, cfg.se_ratio,
                         **_overrides(cfg))
        found = found if rebuilt == cfg else None
    if found is not None:
        return RegNetParams(found.depth, found.w0, found.wa, found.wm, found.group_width, b, cfg.se_ratio, 0.0,
                            True)
    if target != "anynet_search":
        return None
    fit = fit_regnet(cfg.block_widths)
    if not fit.fit_error <= threshold:
        return None
    return RegNetParams(depth, fit.w0, fit.wa, fit.wm, max(cfg.group_widths), b, cfg.se_ratio,
                        float(fit.fit_error), False)


def no_regnet_reason(cfg: AnyNetConfig, threshold: float = REGNET_FIT_THRESHOLD) -> str:
    """Why a config gets no RegNet parameters (`regnet_params` returned None)."""
    if len(set(cfg.bottleneck_ratios)) != 1:
        return f"its stages have different bottleneck ratios {list(cfg.bottleneck_ratios)}; a RegNet shares one"
    fit = fit_regnet(cfg.block_widths)
    return (f"its block widths are not a RegNet: the closest quantized-linear fit is off by {fit.fit_error:.3f} "
            f"(mean |log ratio|), more than the {threshold} an export allows")


def _library_notes(cfg: AnyNetConfig) -> list[str]:
    """Where the config's fixed parts differ from what timm / torchvision build by default."""
    notes = []
    if cfg.stem_type != "simple" or cfg.stem_width != 32:
        notes.append(f"stem is {cfg.stem_type} of width {cfg.stem_width}; timm and torchvision default to a "
                     "3x3 stride-2 stem of width 32 (set stem_width / stem_type there)")
    if any(s != 2 for s in cfg.strides):
        notes.append(f"strides are {list(cfg.strides)}; timm and torchvision use stride 2 in every stage")
    if cfg.head_width:
        notes.append(f"head has a 1x1 conv to {cfg.head_width} channels before the classifier")
    if cfg.block_type != "x":
        notes.append(f"block type is {cfg.block_type}; "
                     "timm and torchvision RegNets use the X (bottleneck) block")
    if cfg.in_channels != 3:
        notes.append(f"the input has {cfg.in_channels} channels")
    return notes


def _target_entry(cfg: AnyNetConfig, target: str,
                  sampled: Mapping[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
    """One library's parameters (None when it cannot build this config) and what was checked or why not."""
    lay = _layout(cfg)
    what = f"widths {list(lay.widths)}, depths {list(lay.depths)}, group widths {list(lay.group_widths)}"
    if target == "timm" and cfg.num_stages != 4:
        return None, f"not exported: timm's RegNet builds exactly 4 stages, this model has {cfg.num_stages}"
    rule = "pycls" if target == "pycls" else target
    p = regnet_params(cfg, target=rule, sampled=sampled)
    if p is None:
        return None, (f"not exported: no (w0, wa, wm) found that rebuilds {what} under {target}'s rounding "
                      f"({RULES[rule]}); the search tries consecutive stage exponents, w0 multiples of 8 "
                      "and wm on grids down to 0.0001")
    if target == "pycls":
        try:
            section = p.pycls(cfg)
        except ValueError as exc:
            return None, f"not exported: {exc}"
    else:
        section = p.timm() if target == "timm" else p.torchvision()
    return section, (f"rebuilds {what} exactly under {target}'s rounding ({RULES[rule]}); "
                     "checked by rebuilding")


def _regnet_record(cfg: AnyNetConfig, p: RegNetParams, sampled: Mapping[str, Any] | None = None) -> dict[str, Any]:
    entries = {t: _target_entry(cfg, t, sampled) for t in ("timm", "torchvision", "pycls")}
    return {
        "exact": p.exact,
        "fit_error": p.fit_error,
        "note": ("regnet(**anynet_search) rebuilds this config exactly" if p.exact else
                 "closest quantized-linear fit; the RegNet it describes differs from this config, so no "
                 "library parameters are given unless a library's own rounding rebuilds it exactly"),
        "widths": list(cfg.widths),
        "depths": list(cfg.depths),
        "group_widths": list(cfg.group_widths),
        **{t: section for t, (section, _) in entries.items()},
        "anynet_search": {**p.anynet_search(), **_overrides(cfg)},
        "checks": {t: why for t, (_, why) in entries.items()},
        "library_notes": _library_notes(cfg),
    }


# ------------------------------------------------------------------------------------------ pycls
def pycls_config(cfg: AnyNetConfig, resolution: int | None = None) -> dict[str, Any]:
    """A pycls-style config mapping: `MODEL`, `ANYNET`, `BN`, and `TRAIN.IM_SIZE` if `resolution` is given."""
    types = _pycls_types(cfg)
    anynet = {
        "STEM_TYPE": types["STEM_TYPE"],
        "STEM_W": cfg.stem_width,
        "BLOCK_TYPE": types["BLOCK_TYPE"],
        "DEPTHS": list(cfg.depths),
        "WIDTHS": list(cfg.widths),
        "STRIDES": list(cfg.strides),
        "BOT_MULS": [1.0 / b for b in cfg.bottleneck_ratios],
        "GROUP_WS": list(cfg.group_widths),
        "HEAD_W": cfg.head_width,
        "SE_ON": bool(cfg.se_ratio),
        "SE_R": float(cfg.se_ratio) if cfg.se_ratio else 0.25,
    }
    out: dict[str, Any] = {
        "MODEL": {"TYPE": "anynet", "NUM_CLASSES": cfg.num_classes},
        "ANYNET": anynet,
        "BN": {"ZERO_INIT_FINAL_GAMMA": bool(cfg.zero_init_last_bn)},
    }
    if resolution is not None:
        out["TRAIN"] = {"IM_SIZE": int(resolution)}
    return out


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
) -> list[Path]:
    """Write the k lowest-validation-error models as `fmt` files (yaml, json, pycls, or all three) and return the
    paths.

    The fixed parts of each config come from `configs` (trial number -> stored config, see `configs_for`;
    the rebuilt config must equal the stored one), else from `study_settings`' design space, else from
    `fixed`. RegNet parameters are written next to configs that are RegNets (the trial's own sampled RegNet
    parameters are tried first) or fit one within `regnet_threshold`; for every other model a line saying
    why is appended to `notes`.
    """
    fmt = _check_args(df, k, fmt)
    formats = FORMATS if fmt == ALL_FORMATS else (fmt,)
    base_fixed, resolution = _fixed_source(study_settings, fixed)
    if configs is None and base_fixed is None:
        raise ValueError("export_top: pass configs= (configs_for(run)), study_settings= or fixed= to give "
                         "the fixed parts of the configs (stem, strides, head, classes)")
    if configs is not None and "study" in df.columns and df["study"].nunique() > 1:
        raise ValueError("export_top: the frame mixes studies, whose trial numbers collide; "
                         "export one at a time")
    errors = pd.to_numeric(df["error"], errors="coerce")
    ranked = df.assign(_err=errors).dropna(subset=["_err"]).sort_values("_err", kind="stable").head(int(k))
    if ranked.empty:
        raise ValueError("export_top: no model has a finite validation error")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        trial = int(row["trial"]) if "trial" in row.index and not _missing(row["trial"]) else None
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
                "acts": _plain(row.get("acts"))}
        header = [f"rank {rank} by validation error (error = {meta['error']}%) of study {meta['study']}, "
                  f"trial {trial}; test_error is reported only, never used for ranking"]
        for each in formats:
            if each == "pycls":
                pycls_header = header + ([f"pycls builds 3 input channels; this model has {cfg.in_channels}"]
                                         if cfg.in_channels != 3 else [])
                paths.append(_dump(pycls_config(cfg, resolution), out / f"{stem}.pycls.yaml", pycls_header))
            else:
                paths.append(_dump({**meta, "config": cfg.to_dict()}, out / f"{stem}.{each}", header))
        sampled = sampled_regnet(row)
        params = regnet_params(cfg, regnet_threshold, sampled=sampled)
        if params is None:
            if notes is not None:
                notes.append(f"rank {rank} (trial {trial}): no RegNet file: {no_regnet_reason(cfg, regnet_threshold)}")
            continue
        record = {"rank": rank, "trial": trial, **_regnet_record(cfg, params, sampled)}
        for suffix in dict.fromkeys("json" if each == "json" else "yaml" for each in formats):
            paths.append(_dump(record, out / f"{stem}.regnet.{suffix}",
                               header + ["RegNet parameters for timm (RegNetCfg), torchvision "
                                         "(BlockParams.from_init_params), pycls and anynet_search.regnet"]))
    return paths


def export_run(
    run: str | Path, k: int, fmt: str, out_dir: str | Path, study: str | None = None, **kwargs: Any
) -> list[Path]:
    """`export_top` of a run folder or storage URL (+ study name), with its stored configs and settings."""
    _, loaded = open_run(run, study)
    df = completed_frame(run, loaded, "export")
    settings = stored_settings(loaded)
    return export_top(df, k, fmt, out_dir, settings, configs=configs_for(loaded), **kwargs)

