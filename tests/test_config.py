"""AnyNetConfig validation errors name the field and value; configs round-trip through YAML and JSON."""

import pytest
from hypothesis import given, settings
from strategies import configs

from anynet_search import AnyNetConfig, load_config, save_config

GOOD = dict(depths=[1, 2], widths=[16, 32], bottleneck_ratios=[1, 2], group_widths=[8, 8], strides=[1, 2])


def make(**changes):
    return AnyNetConfig(**{**GOOD, **changes})


@pytest.mark.parametrize(
    "changes,pattern",
    [
        (dict(widths=[16]), "widths has 1 entries but depths has 2"),
        (dict(depths=[]), "at least one stage"),
        (dict(depths=[0, 2]), r"depths\[0\] must be positive, got 0"),
        (dict(widths=[16, -8]), r"widths\[1\] must be positive, got -8"),
        (dict(widths=[16, 33]), r"widths\[1\]=33 is not divisible by its bottleneck ratio 2"),
        (dict(group_widths=[3, 8]), r"group_widths\[0\]=3 does not divide the bottleneck width 16"),
        (dict(bottleneck_ratios=[0, 1]), r"bottleneck_ratios\[0\] must be a positive number"),
        (dict(strides=[1, 1.5]), r"strides\[1\] must be an integer, got 1.5"),
        (dict(stem_type="vgg"), "stem_type must be one of"),
        (dict(block_type="dense"), "block_type must be one of"),
        (dict(se_ratio=1.5), "se_ratio must be in"),
        (dict(se_ratio=0.25, block_type="vanilla", bottleneck_ratios=[1, 1]), "needs block_type 'x'"),
        (dict(head_width=-1), "head_width"),
        (dict(num_classes=0), "num_classes must be a positive integer"),
        (dict(in_channels="3"), "in_channels must be a positive integer"),
        (dict(depths="12"), "depths must be a list"),
    ],
)
def test_validation_names_field_and_value(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        make(**changes)


def test_valid_config_normalizes_lists_to_tuples():
    cfg = make()
    assert cfg.depths == (1, 2) and cfg.bottleneck_widths == (16, 16) and cfg.groups == (2, 2)
    assert cfg.block_widths == [16, 32, 32]


def test_from_dict_rejects_unknown_and_missing_fields():
    with pytest.raises(ValueError, match="unknown config field"):
        AnyNetConfig.from_dict({**GOOD, "width_mult": 2})
    with pytest.raises(ValueError, match="missing required field"):
        AnyNetConfig.from_dict({"depths": [1]})


@settings(max_examples=25, deadline=None)
@given(cfg=configs())
def test_round_trip_yaml_and_json(cfg, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cfg")
    for name in ("c.yaml", "c.json"):
        assert load_config(save_config(cfg, folder / name)) == cfg


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("depths: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("depths: [1]\nwidths: [12]\nbottleneck_ratios: [1]\ngroup_widths: [8]\nstrides: [1]\n")
    with pytest.raises(ValueError, match=r"wrong.yaml: group_widths\[0\]=8 does not divide"):
        load_config(wrong)


def test_yaml_file_is_never_executed(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['touch " + str(tmp_path / "pwned") + "']\n")
    with pytest.raises(ValueError):
        load_config(evil)
    assert not (tmp_path / "pwned").exists()
