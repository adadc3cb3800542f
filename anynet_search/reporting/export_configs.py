"""The configs of exported models: rebuilt from a results row and the study's fixed parts; pycls's form."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from anynet_search.models import registry
from anynet_search.models.config import AnyNetConfig
from anynet_search.models.rules import STAGE_COLUMNS
from anynet_search.reporting.results import open_run
from anynet_search.study.settings import StudySettings

#: The pycls release the pycls export targets: the only one on PyPI. Its ANYNET section (pycls/core/config.py)
#: has no HEAD_W (a later pycls on GitHub added the head conv), and yacs refuses a key it does not know.
PYCLS_VERSION = "0.1.1"
PYCLS_ANYNET_KEYS = ("STEM_TYPE", "STEM_W", "BLOCK_TYPE", "DEPTHS", "WIDTHS", "STRIDES", "BOT_MULS", "GROUP_WS",
                     "SE_ON", "SE_R")

#: pycls's names of the built-in stem and block types (each registry entry carries its own).
PYCLS_STEMS = {name: s.pycls for name, s in registry.STEMS.items() if s.pycls}
PYCLS_BLOCKS = {name: b.pycls for name, b in registry.BLOCKS.items() if b.pycls}
SEARCHED = tuple(STAGE_COLUMNS)


def pycls_types(cfg: AnyNetConfig) -> dict[str, str]:
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
    while f"{prefix}{i}" in row and not is_missing(row[f"{prefix}{i}"]):
        v = row[f"{prefix}{i}"]
        values.append(int(v) if float(v).is_integer() else float(v))
        i += 1
    return values


def is_missing(v: Any) -> bool:
    """Whether a results cell holds no value (None or NaN)."""
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


def fixed_source(
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


def pycls_notes(cfg: AnyNetConfig) -> list[str]:
    """What pycls PYCLS_VERSION builds differently from this config (header lines of its export)."""
    notes = []
    if cfg.in_channels != 3:
        notes.append(f"pycls builds 3 input channels; this model has {cfg.in_channels}")
    if cfg.head_width:
        notes.append(f"ANYNET.HEAD_W ({cfg.head_width}, a 1x1 conv before the classifier) needs a pycls newer than "
                     f"{PYCLS_VERSION} (its GitHub main); pycls {PYCLS_VERSION} refuses the key")
    return notes


def pycls_config(cfg: AnyNetConfig, resolution: int | None = None) -> dict[str, Any]:
    """A pycls-style config mapping: `MODEL`, `ANYNET`, `BN`, and `TRAIN.IM_SIZE` if `resolution` is given. The keys
    are those pycls PYCLS_VERSION knows; HEAD_W, which it does not, only for a model with a head conv."""
    types = pycls_types(cfg)
    anynet = {
        "STEM_TYPE": types["STEM_TYPE"],
        "STEM_W": cfg.stem_width,
        "BLOCK_TYPE": types["BLOCK_TYPE"],
        "DEPTHS": list(cfg.depths),
        "WIDTHS": list(cfg.widths),
        "STRIDES": list(cfg.strides),
        "BOT_MULS": [1.0 / b for b in cfg.bottleneck_ratios],
        "GROUP_WS": list(cfg.group_widths),
        "SE_ON": bool(cfg.se_ratio),
        "SE_R": float(cfg.se_ratio) if cfg.se_ratio else 0.25,
    }
    if cfg.head_width:  # no head conv is pycls 0.1.1's only network, and it refuses the key
        anynet["HEAD_W"] = cfg.head_width
    out: dict[str, Any] = {
        "MODEL": {"TYPE": "anynet", "NUM_CLASSES": cfg.num_classes},
        "ANYNET": anynet,
        "BN": {"ZERO_INIT_FINAL_GAMMA": bool(cfg.zero_init_last_bn)},
    }
    if resolution is not None:
        out["TRAIN"] = {"IM_SIZE": int(resolution)}
    return out
