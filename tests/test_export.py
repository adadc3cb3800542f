"""Exports: config files round-trip to the stored configs, pycls keys, and RegNet parameters that rebuild the model."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import yaml

from anynet_search import AnyNetConfig, load_config, regnet, regnet_zoo
from anynet_search.reporting.export import (
    FORMATS,
    config_from_row,
    configs_for,
    export_run,
    export_top,
    fixed_fields,
    pycls_config,
    regnet_params,
)
from anynet_search.reporting.export_configs import PYCLS_ANYNET_KEYS
from anynet_search.reporting.results import load_results, resolve_run
from anynet_search.study.runner import RunOptions, prepare_study
from anynet_search.study.settings import StudySettings
from anynet_search.study.storage import load_study, open_storage
from anynet_search.study.worker import Worker

TIMM_KEYS = {"depth", "w0", "wa", "wm", "group_size", "bottle_ratio", "se_ratio"}
TORCHVISION_KEYS = {"depth", "w_0", "w_a", "w_m", "group_width", "bottleneck_multiplier", "se_ratio"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    opts = RunOptions(space="anynet_xa_tiny", trials=16, workers=1, dataset="synthetic:64", sampler="random",
                      out=str(tmp_path_factory.mktemp("runs")), objective="anynet_search.study.dry_run:pseudo_error")
    study, _, _, run_dir = prepare_study(opts)
    Worker(study, objective=opts.objective, poll_seconds=0.05).run()
    return run_dir


@pytest.fixture(scope="module")
def study(run_dir) -> optuna.Study:
    url, name = resolve_run(run_dir)
    return load_study(name, open_storage(url))


def _config_files(paths):
    return [p for p in paths if ".regnet." not in p.name and ".pycls." not in p.name]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_config_files_round_trip_to_the_stored_configs(run_dir, study, tmp_path, fmt):
    df = load_results(run_dir)
    stored = {t.number: AnyNetConfig.from_dict(t.user_attrs["config"]) for t in study.trials
              if t.state == optuna.trial.TrialState.COMPLETE}
    assert configs_for(run_dir) == stored == configs_for(study)
    paths = export_top(df, 4, fmt, tmp_path, configs=configs_for(run_dir))
    files = _config_files(paths)
    best = df.sort_values("error", kind="stable").head(4)
    assert len(files) == 4
    for path, (_, row) in zip(files, best.iterrows()):
        assert path.suffix == f".{fmt}"
        assert load_config(path) == stored[int(row["trial"])]
        meta = json.loads(path.read_text()) if fmt == "json" else yaml.safe_load(path.read_text())
        assert meta["trial"] == int(row["trial"]) and meta["error"] == pytest.approx(row["error"])
        assert meta["test_error"] == pytest.approx(row["test_error"])
    errors = [float(yaml.safe_load(p.read_text())["error"]) for p in files]
    assert errors == sorted(errors)


def test_study_settings_and_fixed_give_the_same_configs(run_dir, study, tmp_path):
    df = load_results(run_dir)
    stored = configs_for(study)
    settings = StudySettings.from_study(study)
    by_settings = _config_files(export_top(df, 3, "yaml", tmp_path / "s", settings))
    by_run = _config_files(export_run(run_dir, 3, "yaml", tmp_path / "r"))
    for a, b in zip(by_settings, by_run):
        assert load_config(a) == load_config(b) == stored[yaml.safe_load(a.read_text())["trial"]]
    row = df.iloc[0]
    cfg = config_from_row(row, fixed_fields(stored[int(row["trial"])]))
    assert cfg == stored[int(row["trial"])]


def test_pycls_export_has_the_anynet_keys(run_dir, tmp_path):
    df = load_results(run_dir)
    configs = configs_for(run_dir)
    paths = [p for p in export_top(df, 2, "pycls", tmp_path, configs=configs) if p.name.endswith(".pycls.yaml")]
    assert len(paths) == 2
    for path in paths:
        data = yaml.safe_load(path.read_text())
        cfg = configs[int(path.name.split("trial")[1].split(".")[0])]
        assert data["MODEL"] == {"TYPE": "anynet", "NUM_CLASSES": cfg.num_classes}
        any_ = data["ANYNET"]
        # pycls 0.1.1's keys (issue 30: it refuses HEAD_W, which these models, with no head conv, do not need)
        assert set(any_) == set(PYCLS_ANYNET_KEYS) and cfg.head_width == 0
        assert any_["STEM_TYPE"] == "res_stem_cifar" and any_["BLOCK_TYPE"] == "res_bottleneck_block"
        assert any_["DEPTHS"] == list(cfg.depths) and any_["WIDTHS"] == list(cfg.widths)
        assert any_["STRIDES"] == list(cfg.strides) and any_["GROUP_WS"] == list(cfg.group_widths)
        assert any_["BOT_MULS"] == [1 / b for b in cfg.bottleneck_ratios]
        assert any_["STEM_W"] == cfg.stem_width and any_["SE_ON"] is False


def test_pycls_stems_and_se():
    cfg = regnet_zoo()["RegNetY-400MF"]
    data = pycls_config(cfg, resolution=224)
    assert data["ANYNET"]["STEM_TYPE"] == "simple_stem_in"
    assert data["ANYNET"]["SE_ON"] is True and data["ANYNET"]["SE_R"] == 0.25
    assert data["TRAIN"] == {"IM_SIZE": 224}
    assert pycls_config(cfg.replace(stem_type="res"))["ANYNET"]["STEM_TYPE"] == "res_stem_in"


@pytest.mark.parametrize("name", list(regnet_zoo()))
def test_regnet_parameters_of_the_zoo_rebuild_the_model(name):
    cfg = regnet_zoo()[name]
    p = regnet_params(cfg)
    assert p is not None and p.exact
    assert set(p.timm()) == TIMM_KEYS and set(p.torchvision()) == TORCHVISION_KEYS
    tv = p.torchvision()
    rebuilt = regnet(tv["depth"], tv["w_0"], tv["w_a"], tv["w_m"], tv["group_width"],
                     1 / tv["bottleneck_multiplier"], p.timm()["se_ratio"])
    assert rebuilt == cfg
    t = p.timm()
    assert regnet(t["depth"], t["w0"], t["wa"], t["wm"], t["group_size"], 1 / t["bottle_ratio"]).widths == cfg.widths


def test_export_writes_regnet_blocks_for_regnets(tmp_path):
    zoo = regnet_zoo()
    names = ["RegNetX-400MF", "RegNetY-800MF"]
    rows = []
    for i, name in enumerate(names):
        cfg = zoo[name]
        row = {"study": "zoo", "trial": i, "error": 20.0 + i, "test_error": 21.0 + i}
        for field, prefix in (("depths", "d"), ("widths", "w"), ("bottleneck_ratios", "b"), ("group_widths", "g")):
            row.update({f"{prefix}{s + 1}": v for s, v in enumerate(getattr(cfg, field))})
        rows.append(row)
    df = pd.DataFrame(rows)
    paths = export_top(df, 5, "yaml", tmp_path, fixed={"se_ratio": 0.0})
    regnet_files = [p for p in paths if p.name.endswith(".regnet.yaml")]
    assert len(regnet_files) == 2 and len(paths) == 4
    record = yaml.safe_load(regnet_files[0].read_text())
    assert record["exact"] is True and set(record["timm"]) == TIMM_KEYS
    assert set(record["torchvision"]) == TORCHVISION_KEYS
    assert record["pycls"]["MODEL"]["TYPE"] == "regnet" and record["pycls"]["REGNET"]["BOT_MUL"] == 1.0
    assert regnet(**record["anynet_search"]) == zoo[names[0]]
    assert load_config(paths[0]) == zoo[names[0]]
    json_paths = export_top(df, 1, "json", tmp_path / "j", fixed={"se_ratio": 0.0})
    assert [p.name for p in json_paths] == ["rank01_trial0000.json", "rank01_trial0000.regnet.json"]
    assert json.loads(json_paths[1].read_text())["torchvision"]["w_0"] == record["torchvision"]["w_0"]


def test_non_regnet_configs_get_no_regnet_block():
    cfg = AnyNetConfig(depths=(2, 1, 3, 1), widths=(128, 8, 64, 16), bottleneck_ratios=(1, 1, 1, 1),
                       group_widths=(8, 8, 8, 8), strides=(2, 2, 2, 2))
    assert regnet_params(cfg) is None
    mixed = cfg.replace(widths=(16, 32, 64, 128), bottleneck_ratios=(1, 2, 1, 1))
    assert regnet_params(mixed) is None


def test_export_errors_are_one_line(run_dir, tmp_path):
    df = load_results(run_dir)
    configs = configs_for(run_dir)
    cases = [
        (dict(df=df, k=0, fmt="yaml"), "k must be a positive integer"),
        (dict(df=df, k=-2, fmt="json"), "k must be a positive integer"),
        (dict(df=df, k=1, fmt="onnx"), "unknown export format"),
        (dict(df=df.iloc[0:0], k=1, fmt="yaml"), "empty"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            export_top(out_dir=tmp_path, configs=configs, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="fixed parts"):
        export_top(df, 1, "yaml", tmp_path)
    with pytest.raises(ValueError, match="stored config"):
        export_top(df.assign(trial=df["trial"] + 1000), 1, "yaml", tmp_path, configs=configs)
    assert FORMATS == ("yaml", "json", "pycls")


def test_open_run_resolves_folders_and_urls_with_one_storage_open(run_dir, study, tmp_path, monkeypatch):
    from anynet_search.reporting import results
    from anynet_search.study import run_folder

    opened = []
    real_open = results.open_storage
    counting = lambda url, **kw: opened.append(url) or real_open(url, **kw)  # noqa: E731
    for module in (results, run_folder):  # finding the study (run_folder) and loading it (results)
        monkeypatch.setattr(module, "open_storage", counting)
    url, loaded = results.open_run(run_dir)
    assert loaded.study_name == study.study_name and len(loaded.trials) == len(study.trials)
    assert opened == [url]  # the journal is replayed once, not once to find the name and again to load

    # a storage URL with two studies needs the study's name, and then loads that one
    db = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("first", "second"):
        optuna.create_study(study_name=name, storage=db).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with pytest.raises(ValueError, match="storage holds 2 studies \\(first, second\\); name one with --study"):
        results.open_run(db)
    assert results.open_run(db, "second")[1].study_name == "second"
    with pytest.raises(ValueError, match="no study 'third'"):
        results.open_run(db, "third")
