"""A design space's parameters as Optuna sees them: their names, `suggest` on a trial, and raw values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from anynet_search.models.config import AnyNetConfig
from anynet_search.spaces.schema import ANYNET_PARAMS, REGNET_PARAMS
from anynet_search.spaces.view import SpaceView


def param_names(space: SpaceView) -> list[str]:
    """Names `suggest` registers parameters under: one per shared or RegNet parameter, else one a stage."""
    if space.family == "regnet":
        return list(REGNET_PARAMS)
    return [n if n in space.shared else f"{n}{s + 1}" for n in ANYNET_PARAMS
            for s in range(1 if n in space.shared else space.stages)]


def suggest(space: SpaceView, trial: Any) -> AnyNetConfig:
    """Register every parameter with an Optuna trial; the config `DesignSpace.config_from_params` gives."""
    values = {}
    for name in param_names(space):
        base = name if name in space.params else name[0]
        values[name] = space.params[base].suggest(trial, name)
    return space.config_from_params(values)


def params_of(space: SpaceView, raw: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """Row i of a batch's raw values (`sampling.Batch.raw`) under the names `suggest` uses (what Optuna
    records for the trial)."""
    out = {}
    for name, arr in raw.items():
        spec = space.params[name]
        cast = int if spec.is_int else float
        if arr.ndim == 1:
            out[name] = cast(arr[i])
        elif name in space.shared:
            out[name] = cast(arr[i, 0])
        else:
            for s in range(space.stages):
                out[f"{name}{s + 1}"] = cast(arr[i, s])
    return out
