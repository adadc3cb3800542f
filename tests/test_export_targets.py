"""Every RegNet export rebuilds the same network in its library: widths, depths, group widths and parameters.

timm and torchvision are used for real where they import (`pytest -m builders` in the CI's builders
venv: PyPI's torchvision needs a CUDA build of torch and fails to import beside the CPU torch 2.13.0 of
the main test venv). Elsewhere each library is checked against an independent restatement of its code
written out below (`*_oracle`), which `test_oracles_and_restatements_match_the_real_builders` pins to the
real builders. pycls cannot be installed beside current torch: its YAML is re-counted from its fields
with pycls's own generation and compatibility rules (`pycls_oracle`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from anynet_search import AnyNetConfig, complexity, load_config, regnet_zoo
from anynet_search.models.regnet_targets import (
    TARGETS,
    StageLayout,
    compatible,
    find_params,
    layout_of,
    stage_layout,
)
from anynet_search.reporting.export import export_top
from anynet_search.reporting.export_configs import PYCLS_BLOCKS, PYCLS_STEMS


def _module(name: str):
    """The module, or None when it is missing or fails to import (torchvision without its compiled ops)."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - RuntimeError "operator torchvision::nms does not exist", ImportError...
        return None


TV = _module("torchvision.models.regnet")
TIMM = _module("timm.models.regnet")
REAL = TV is not None and TIMM is not None
if os.environ.get("ANYNET_REQUIRE_BUILDERS") and not REAL:  # the CI's builders venv: no silent fallback
    raise RuntimeError("ANYNET_REQUIRE_BUILDERS is set but timm / torchvision do not import")
builders = pytest.mark.builders


# ------------------------------------------------------------------------------------------ oracles
def _contiguous(block_widths: list[int]) -> tuple[list[int], list[int]]:
    widths, depths = [], []
    for w in block_widths:
        if widths and widths[-1] == w:
            depths[-1] += 1
        else:
            widths.append(int(w))
            depths.append(1)
    return widths, depths


def pycls_oracle(w_a: float, w_0: int, w_m: float, d: int, bot_mul: float, group_w: int) -> StageLayout:
    """pycls: `generate_regnet` (float64, np.unique) then `adjust_block_compatibility`."""
    u = np.arange(d) * w_a + w_0
    ks = np.round(np.log(u / w_0) / np.log(w_m))
    per_block = np.round(np.divide(w_0 * np.power(w_m, ks), 8)).astype(int) * 8
    ws, ds = np.unique(per_block, return_counts=True)
    vs = [int(max(1, w * bot_mul)) for w in ws]
    gs = [int(min(group_w, v)) for v in vs]
    ms = [int(np.lcm(g, int(bot_mul))) if bot_mul > 1 else g for g in gs]
    vs = [max(m, int(round(v / m) * m)) for v, m in zip(vs, ms)]
    return StageLayout(tuple(int(v / bot_mul) for v in vs), tuple(int(x) for x in ds), tuple(gs))


def timm_oracle(depth: int, w0: int, wa: float, wm: float, group_size: int, bottle_ratio: float, **_) -> StageLayout:
    """timm 1.0: float32 `generate_regnet`, torch.unique, `adjust_widths_groups_comp` with `quantize_float`."""
    cont = torch.arange(depth, dtype=torch.float32) * wa + w0
    exps = torch.round(torch.log(cont / w0) / math.log(wm))
    per_block = (torch.round((w0 * torch.pow(wm, exps)) / 8) * 8).int()
    ws, ds = torch.unique(per_block, return_counts=True)
    w_bot = [int(w * bottle_ratio) for w in ws.tolist()]
    gs = [min(group_size, v) for v in w_bot]
    w_bot = [int(round(v / g) * g) for v, g in zip(w_bot, gs)]
    return StageLayout(tuple(int(v / bottle_ratio) for v in w_bot), tuple(ds.tolist()), tuple(gs))


def torchvision_oracle(depth: int, w_0: int, w_a: float, w_m: float, group_width: int,
                       bottleneck_multiplier: float, **_) -> StageLayout:
    """torchvision: `BlockParams.from_init_params` (float32) with `_make_divisible`."""
    cont = torch.arange(depth) * w_a + w_0
    cap = torch.round(torch.log(cont / w_0) / math.log(w_m))
    per_block = (torch.round(torch.divide(w_0 * torch.pow(w_m, cap), 8)) * 8).int().tolist()
    ws, ds = _contiguous(per_block)
    w_bot = [int(w * bottleneck_multiplier) for w in ws]
    gs = [min(group_width, v) for v in w_bot]

    def make_divisible(v: float, divisor: int) -> int:
        new = max(divisor, int(v + divisor / 2) // divisor * divisor)
        return new + divisor if new < 0.9 * v else new

    w_bot = [make_divisible(v, g) for v, g in zip(w_bot, gs)]
    return StageLayout(tuple(int(v / bottleneck_multiplier) for v in w_bot), tuple(ds), tuple(gs))


# ------------------------------------------------------------------------------------------ builders
def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_torchvision(p: dict, cfg: AnyNetConfig) -> tuple[StageLayout, int | None]:
    """(layout, parameter count) torchvision builds from an export entry; the count only with the real library."""
    if TV is None:
        return torchvision_oracle(**p), None
    model = TV.RegNet(TV.BlockParams.from_init_params(**p), num_classes=cfg.num_classes, stem_width=cfg.stem_width)
    stages = list(model.trunk_output.children())
    widths = tuple(s[0].f.c[0].out_channels for s in stages)
    groups = tuple(s[0].f.b[0].out_channels // s[0].f.b[0].groups for s in stages)
    return StageLayout(widths, tuple(len(s) for s in stages), groups), _params(model)


def build_timm(p: dict, cfg: AnyNetConfig) -> tuple[StageLayout, int | None]:
    """(layout, parameter count) timm builds from an export entry; the count only with the real library."""
    if TIMM is None:
        return timm_oracle(**p), None
    model = TIMM.RegNet(TIMM.RegNetCfg(**p, stem_width=cfg.stem_width), in_chans=cfg.in_channels,
                        num_classes=cfg.num_classes)
    stages = [model.s1, model.s2, model.s3, model.s4]
    widths = tuple(s.b1.conv3.conv.out_channels for s in stages)
    groups = tuple(s.b1.conv2.conv.out_channels // s.b1.conv2.conv.groups for s in stages)
    return StageLayout(widths, tuple(len(list(s.children())) for s in stages), groups), _params(model)


def pycls_config_from_regnet(data: dict) -> AnyNetConfig:
    """The network pycls builds from a `MODEL` + `REGNET` YAML, re-counted from its fields."""
    r = data["REGNET"]
    lay = pycls_oracle(r["WA"], r["W0"], r["WM"], r["DEPTH"], r["BOT_MUL"], r["GROUP_W"])
    n = len(lay.widths)
    return AnyNetConfig(depths=lay.depths, widths=lay.widths, bottleneck_ratios=[1 / r["BOT_MUL"]] * n,
                        group_widths=lay.group_widths, strides=[r["STRIDE"]] * n,
                        stem_type={v: k for k, v in PYCLS_STEMS.items()}[r["STEM_TYPE"]], stem_width=r["STEM_W"],
                        block_type={v: k for k, v in PYCLS_BLOCKS.items()}[r["BLOCK_TYPE"]],
                        se_ratio=r["SE_R"] if r["SE_ON"] else 0.0, head_width=r.get("HEAD_W", 0),
                        num_classes=data["MODEL"]["NUM_CLASSES"])


def pycls_config_from_anynet(data: dict, in_channels: int) -> AnyNetConfig:
    """The network pycls builds from a `MODEL` + `ANYNET` YAML, read field by field."""
    a = data["ANYNET"]
    return AnyNetConfig(depths=a["DEPTHS"], widths=a["WIDTHS"], bottleneck_ratios=[1 / m for m in a["BOT_MULS"]],
                        group_widths=a["GROUP_WS"], strides=a["STRIDES"],
                        stem_type={v: k for k, v in PYCLS_STEMS.items()}[a["STEM_TYPE"]], stem_width=a["STEM_W"],
                        block_type={v: k for k, v in PYCLS_BLOCKS.items()}[a["BLOCK_TYPE"]],
                        se_ratio=a["SE_R"] if a["SE_ON"] else 0.0, head_width=a.get("HEAD_W", 0),
                        num_classes=data["MODEL"]["NUM_CLASSES"], in_channels=in_channels,
                        zero_init_last_bn=data["BN"]["ZERO_INIT_FINAL_GAMMA"])


def _row(i: int, cfg: AnyNetConfig, name: str = "zoo") -> dict:
    row = {"study": name, "trial": i, "error": 20.0 + i, "test_error": 21.0 + i}
    for field, prefix in (("depths", "d"), ("widths", "w"), ("bottleneck_ratios", "b"), ("group_widths", "g")):
        row.update({f"{prefix}{s + 1}": v for s, v in enumerate(getattr(cfg, field))})
    return row


def as_built(cfg: AnyNetConfig, target: str) -> AnyNetConfig:
    """The config with the fixed parts a library imposes (its `library_notes`): stride 2 in every stage (a
    stride-1 stage of unchanged width then gains a shortcut projection), 3 input channels in torchvision."""
    cfg = cfg.replace(strides=(2,) * cfg.num_stages)
    return cfg.replace(in_channels=3) if target == "torchvision" else cfg


def check_record(record: dict, cfg: AnyNetConfig, resolution: int) -> dict[str, bool]:
    """Rebuild every library entry of a `.regnet` record and compare it with `cfg`; which targets were exported."""
    want = layout_of(cfg.widths, cfg.depths, cfg.group_widths)
    assert (record["widths"], record["depths"], record["group_widths"]) == (
        list(cfg.widths), list(cfg.depths), list(cfg.group_widths))
    exported = {}
    for target, build in (("torchvision", build_torchvision), ("timm", build_timm)):
        entry = record[target]
        exported[target] = entry is not None
        if entry is None:
            assert record["checks"][target].startswith("not exported: ")
            continue
        assert record["checks"][target].startswith("rebuilds ")
        layout, params = build(entry, cfg)
        assert layout == want, f"{target} builds {layout}, the model is {want}"
        if params is not None:  # the real library: its parameter count equals ours for what it builds
            assert params == complexity(as_built(cfg, target), resolution).params, f"{target}: {params} parameters"
    exported["pycls"] = record["pycls"] is not None
    if record["pycls"] is not None:
        rebuilt = pycls_config_from_regnet(record["pycls"])
        assert rebuilt == cfg.replace(in_channels=3, zero_init_last_bn=True)
        assert complexity(rebuilt, resolution) == complexity(cfg.replace(in_channels=3), resolution)
    else:
        assert record["checks"]["pycls"].startswith("not exported: ")
    return exported


# ------------------------------------------------------------------------------------------ tests
def test_every_zoo_export_rebuilds_the_model_in_each_library(tmp_path):
    zoo = regnet_zoo()
    rows = [_row(i, cfg) for i, cfg in enumerate(zoo.values())]
    se = {name: cfg.se_ratio for name, cfg in zoo.items()}
    exported = {}
    for i, (name, cfg) in enumerate(zoo.items()):
        paths = export_top(pd.DataFrame(rows).iloc[[i]], 1, "yaml", tmp_path / name, fixed={"se_ratio": se[name]})
        record = yaml.safe_load(next(p for p in paths if p.name.endswith(".regnet.yaml")).read_text())
        assert record["exact"] is True
        exported[name] = check_record(record, cfg, 224)
    # timm and pycls rebuild all 24; torchvision's rounding leaves 2 with no exact parameters (not exported)
    assert all(e["timm"] and e["pycls"] for e in exported.values())
    assert sorted(n for n, e in exported.items() if not e["torchvision"]) == ["RegNetY-8.0GF", "RegNetY-800MF"]


def test_torchvision_gets_its_own_parameters_where_the_shared_ones_build_other_widths(tmp_path):
    """RegNetX-800MF: (56, 38.0, 2.3) rebuilds it under pycls's rounding, but torchvision builds (64, 128, 304, 688)."""
    cfg = regnet_zoo()["RegNetX-800MF"]
    shared = {"depth": 16, "w_0": 56, "w_a": 38.0, "w_m": 2.3, "group_width": 16, "bottleneck_multiplier": 1.0}
    assert pycls_oracle(38.0, 56, 2.3, 16, 1.0, 16).widths == cfg.widths == (64, 128, 288, 672)
    assert torchvision_oracle(**shared).widths == (64, 128, 304, 688)
    paths = export_top(pd.DataFrame([_row(0, cfg)]), 1, "yaml", tmp_path, fixed={"se_ratio": 0.0})
    record = yaml.safe_load(paths[1].read_text())
    assert build_torchvision(record["torchvision"], cfg)[0].widths == (64, 128, 288, 672)
    assert build_timm(record["timm"], cfg)[0].widths == (64, 128, 288, 672)


def test_restatements_agree_with_the_oracles_on_random_parameters():
    rng = np.random.default_rng(0)
    for _ in range(300):
        d, w0 = int(rng.integers(1, 30)), int(rng.integers(1, 40)) * 8
        wa, wm = float(np.round(rng.uniform(0, 120), 2)), float(np.round(rng.uniform(1.2, 3.0), 3))
        g, b = int(rng.choice([1, 2, 4, 8, 16, 24, 48, 64])), float(rng.choice([1, 2, 4]))
        assert stage_layout("pycls", d, w0, wa, wm, g, b) == pycls_oracle(wa, w0, wm, d, 1 / b, g)
        assert stage_layout("timm", d, w0, wa, wm, g, b) == timm_oracle(d, w0, wa, wm, g, 1 / b)
        assert stage_layout("torchvision", d, w0, wa, wm, g, b) == torchvision_oracle(d, w0, wa, wm, g, 1 / b)


@builders
@pytest.mark.skipif(not REAL, reason="timm / torchvision do not import here (the CI's builders venv has them)")
def test_oracles_and_restatements_match_the_real_builders():
    rng = np.random.default_rng(1)
    for _ in range(200):
        d, w0 = int(rng.integers(1, 30)), int(rng.integers(1, 40)) * 8
        wa, wm = float(np.round(rng.uniform(0, 120), 2)), float(np.round(rng.uniform(1.2, 3.0), 3))
        g, b = int(rng.choice([1, 2, 4, 8, 16, 24, 48, 64])), float(rng.choice([1, 2, 4]))
        bp = TV.BlockParams.from_init_params(d, w0, wa, wm, g, 1 / b)
        real = StageLayout(tuple(bp.widths), tuple(bp.depths), tuple(bp.group_widths))
        assert real == torchvision_oracle(d, w0, wa, wm, g, 1 / b) == stage_layout("torchvision", d, w0, wa, wm, g, b)
        cfg = TIMM.RegNetCfg(depth=d, w0=w0, wa=wa, wm=wm, group_size=g, bottle_ratio=1 / b)
        args, _ = TIMM.RegNet._get_stage_args(None, cfg)
        real = StageLayout(tuple(a["out_chs"] for a in args), tuple(a["depth"] for a in args),
                           tuple(a["group_size"] for a in args))
        assert real == timm_oracle(d, w0, wa, wm, g, 1 / b) == stage_layout("timm", d, w0, wa, wm, g, b)


def test_search_finds_parameters_for_each_target_or_none():
    cfg = regnet_zoo()["RegNetX-800MF"]
    lay = layout_of(cfg.widths, cfg.depths, cfg.group_widths)
    for target in TARGETS:
        found = find_params(target, lay)
        assert found is not None and stage_layout(target, found.depth, found.w0, found.wa, found.wm,
                                                  found.group_width) == lay
    # widths no quantized-linear rule reaches: no parameters, for any target
    odd = StageLayout((64, 56, 320, 72), (1, 1, 1, 1), (16, 8, 16, 8))
    assert all(find_params(t, odd) is None for t in TARGETS)
    with pytest.raises(ValueError, match="target must be one of"):
        find_params("keras", lay)


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
    """The best 6 models of a dry-run regnet_x_tiny study (cifar stem, strides 1, 2, 2, 2), exported by the CLI."""
    base = tmp_path_factory.mktemp("tiny")
    run = [sys.executable, "-m", "anynet_search", "run", "--space", "regnet_x_tiny", "--trials", "16", "--workers",
           "1", "--dataset", "synthetic:64", "--out", str(base / "runs"), "--no-analyze",
           "--objective", "anynet_search.study.dry_run:pseudo_error"]
    subprocess.run(run, check=True, capture_output=True, text=True, timeout=300)
    run_dir = next((base / "runs").iterdir())
    out = {}
    for fmt in ("yaml", "pycls"):
        res = subprocess.run([sys.executable, "-m", "anynet_search", "export", str(run_dir), "--top", "6",
                              "--format", fmt, "--out", str(base / fmt)], check=True, capture_output=True, text=True,
                             timeout=300)
        out[fmt] = res.stdout.split()
    return out


def test_tiny_exports_rebuild_in_each_library_and_pycls_refuses_the_single_stride(tiny_exports):
    records = {Path(p).name.split(".")[0]: yaml.safe_load(Path(p).read_text()) for p in tiny_exports["yaml"]
               if p.endswith(".regnet.yaml")}
    by_name = {Path(p).name.split(".")[0]: load_config(p) for p in tiny_exports["yaml"]
               if not p.endswith(".regnet.yaml")}
    assert len(by_name) == 6 and records
    for name, record in records.items():
        cfg = by_name[name]
        assert list(cfg.strides) == [1, 2, 2, 2]
        check_record(record, cfg, 16)
        # pycls's REGNET section has one STRIDE: refused, with the reason, instead of a 0.36x-flops model
        assert record["pycls"] is None and "one STRIDE for every stage" in record["checks"]["pycls"]
    # the ANYNET form holds the strides: pycls re-counts the same network from its fields
    for path in (p for p in tiny_exports["pycls"] if p.endswith(".pycls.yaml")):
        name = Path(path).name.split(".")[0]
        data = yaml.safe_load(Path(path).read_text())
        cfg = by_name[name]
        rebuilt = pycls_config_from_anynet(data, cfg.in_channels)
        assert rebuilt == cfg and complexity(rebuilt, 16) == complexity(cfg, 16)


def test_json_records_carry_the_same_entries(tmp_path):
    cfg = regnet_zoo()["RegNetY-800MF"]
    paths = export_top(pd.DataFrame([_row(0, cfg)]), 1, "json", tmp_path, fixed={"se_ratio": cfg.se_ratio})
    record = json.loads(paths[1].read_text())
    assert record["torchvision"] is None and "no (w0, wa, wm) found" in record["checks"]["torchvision"]
    assert check_record(record, cfg, 224) == {"torchvision": False, "timm": True, "pycls": True}



def test_anynet_search_target_is_the_package_rule():
    from anynet_search.models.regnet import adjust_compatibility, regnet

    rng = np.random.default_rng(2)
    raw = rng.integers(1, 200, 400) * 8
    b = rng.choice([1, 2, 4], 400).astype(float)
    g = rng.choice([1, 2, 4, 8, 16, 24, 64], 400)
    want = adjust_compatibility(raw.tolist(), b.tolist(), g.tolist())
    got = [compatible("anynet_search", np.array([w]), bb, gg) for w, bb, gg in zip(raw, b, g)]
    assert [int(w[0][0]) for w in got] == want[0] and [int(w[1][0]) for w in got] == want[1]
    for d, w0, wa, wm, gw in ((13, 24, 36.44, 2.49, 8), (22, 24, 24.48, 2.54, 16)):
        cfg = regnet(d, w0, wa, wm, gw)
        assert stage_layout("anynet_search", d, w0, wa, wm, gw) == layout_of(cfg.widths, cfg.depths, cfg.group_widths)
