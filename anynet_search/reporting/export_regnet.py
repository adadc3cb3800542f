"""RegNet parameters of exported models, spelled for each library (timm, torchvision, pycls, this package) and
searched to rebuild the model exactly under that library's rounding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
from anynet_search.reporting.export_configs import fixed_fields, is_missing, pycls_types

#: Largest `fit_regnet` error (mean |log(predicted / observed)|) for which RegNet parameters are exported.
REGNET_FIT_THRESHOLD = 0.05


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
        types = pycls_types(cfg)
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
        if v is None or is_missing(v):
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


def no_regnet_kind(cfg: AnyNetConfig, threshold: float = REGNET_FIT_THRESHOLD) -> str:
    """`no_regnet_reason` without the config's own numbers, to group the models that share it."""
    if len(set(cfg.bottleneck_ratios)) != 1:
        return "their stages differ in bottleneck ratio (a RegNet shares one)"
    return f"their block widths are further than {threshold} from every RegNet (quantized-linear) fit"


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


def regnet_record(cfg: AnyNetConfig, p: RegNetParams, sampled: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `.regnet.yaml` record of a model: the fit, its exactness and each library's parameters with checks."""
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
