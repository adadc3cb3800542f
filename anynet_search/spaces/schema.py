"""The space file's schema: which keys a design space has and what values they take, checked one by one.

Every check raises `SpaceError` with one line that names the file and the key. The `constraints:`
section is read where the constraints live (`space.py`); the rest of the file is read here.
"""

from __future__ import annotations

from typing import Any

from anynet_search.models.config import AnyNetConfig
from anynet_search.models.rules import QUANTUM
from anynet_search.spaces.params import ParamSpec, SpaceError, make_param

ANYNET_PARAMS = ("d", "w", "b", "g")
REGNET_PARAMS = ("d", "w0", "wa", "wm", "g", "b")
FIXED_KEYS = {"stem_type", "stem_width", "block_type", "se_ratio", "head_width", "num_classes", "in_channels",
              "strides", "zero_init_last_bn"}
CONSTRAINT_KEYS = {"shared", "non_decreasing", "ranges"}
METRICS = ("flops", "params", "acts")


def fmt_number(x: float) -> str:
    """A bound or metric as the messages print it: thousands separated from 1000 on, else `%g`."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:g}"


def check_description(description: Any, where: str) -> None:
    """A description, when given, is one line of text."""
    if description is not None and (not isinstance(description, str) or not description.strip()
                                    or "\n" in description.strip()):
        raise SpaceError(f"{where}: description must be a one-line string")


def check_family(family: Any, where: str) -> str:
    """anynet or regnet."""
    if family not in ("anynet", "regnet"):
        raise SpaceError(f"{where}: family must be anynet or regnet, got {family!r}")
    return family


def check_resolution(resolution: Any, where: str) -> int:
    """A positive integer input side in pixels."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise SpaceError(f"{where}: resolution must be a positive integer, got {resolution!r}")
    return resolution


def check_stages(stages: Any, where: str) -> int:
    """The number of stages, 1..16."""
    if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= 16:
        raise SpaceError(f"{where}: stages must be an integer in 1..16, got {stages!r}")
    return stages


def check_fixed(fixed: Any, stages: int, where: str) -> dict[str, Any]:
    """The fixed `AnyNetConfig` fields with their defaults filled in, validated by `AnyNetConfig` itself."""
    if not isinstance(fixed, dict):
        raise SpaceError(f"{where}: fixed must be a mapping of AnyNetConfig fields")
    unknown = sorted(set(fixed) - FIXED_KEYS)
    if unknown:
        raise SpaceError(f"{where}: fixed: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(FIXED_KEYS))}")
    out = {"stem_type": "simple", "stem_width": 32, "block_type": "x", "se_ratio": 0.0, "head_width": 0,
           "num_classes": 1000, "in_channels": 3, "strides": [2] * stages, "zero_init_last_bn": True}
    out.update(fixed)
    if not isinstance(out["strides"], list) or len(out["strides"]) != stages:
        raise SpaceError(f"{where}: fixed.strides must list one stride per stage ({stages}), "
                         f"got {out['strides']!r}")
    try:  # let AnyNetConfig validate the fixed fields on a trivially valid stage layout
        AnyNetConfig(depths=[1] * stages, widths=[8] * stages, bottleneck_ratios=[1] * stages,
                     group_widths=[1] * stages, **out)
    except ValueError as exc:
        raise SpaceError(f"{where}: fixed: {exc}") from None
    return out


def check_parameters(raw_params: Any, family: str, where: str) -> dict[str, ParamSpec]:
    """The free parameters of a family (exactly d, w, b, g or d, w0, wa, wm, g, b) with valid domains."""
    expected = ANYNET_PARAMS if family == "anynet" else REGNET_PARAMS
    if not isinstance(raw_params, dict):
        raise SpaceError(f"{where}: parameters must be a mapping of {', '.join(expected)}")
    missing = [p for p in expected if p not in raw_params]
    extra = sorted(set(raw_params) - set(expected))
    if missing or extra:
        problem = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
        raise SpaceError(f"{where}: parameters: {problem}; "
                         f"a {family} space has exactly {', '.join(expected)}")
    params = {p: make_param(p, raw_params[p], where) for p in expected}
    _check_domains(params, family, where)
    return params


def _check_domains(p: dict[str, ParamSpec], family: str, where: str) -> None:
    for name in ("d", "w", "b", "g", "w0"):
        if name in p and (not p[name].is_int or p[name].values[0] <= 0) and name != "b":
            raise SpaceError(f"{where}: parameters.{name} must take positive integer values")
    if p["b"].values[0] <= 0:
        raise SpaceError(f"{where}: parameters.b must be positive")
    if family == "regnet":
        if any(v % QUANTUM for v in p["w0"].values):
            raise SpaceError(f"{where}: parameters.w0 values must be multiples of {QUANTUM}")
        if p["wa"].values[0] < 0:
            raise SpaceError(f"{where}: parameters.wa must be >= 0")
        if p["wm"].values[0] <= 1:
            raise SpaceError(f"{where}: parameters.wm must be > 1")


def check_band(band: Any, where: str) -> dict[str, tuple[float, float]]:
    """The complexity band: flops / params / acts mapped to [low, high] with 0 <= low < high."""
    if not isinstance(band, dict):
        raise SpaceError(f"{where}: band must map flops / params / acts to [low, high]")
    out = {}
    for key, bounds in band.items():
        if key not in METRICS:
            raise SpaceError(f"{where}: band: unknown metric {key!r}; known: {', '.join(METRICS)}")
        ok = isinstance(bounds, list) and len(bounds) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        if not ok or not 0 <= bounds[0] < bounds[1]:
            raise SpaceError(f"{where}: band.{key} must be [low, high] with 0 <= low < high, got {bounds!r}")
        out[key] = (float(bounds[0]), float(bounds[1]))
    return out


def check_band_reachable(band: dict[str, tuple[float, float]], lowest: dict[str, float],
                         highest: dict[str, float], resolution: int, where: str) -> None:
    """The band overlaps the complexity the space's configs can have (`lowest`..`highest`)."""
    for key, (lo, hi) in band.items():
        if hi < lowest[key] or lo > highest[key]:
            raise SpaceError(
                f"{where}: band.{key}=[{fmt_number(lo)}, {fmt_number(hi)}] is unreachable: configs of this "
                f"space have {key} between {fmt_number(lowest[key])} and {fmt_number(highest[key])} "
                f"at {resolution} px"
            )
