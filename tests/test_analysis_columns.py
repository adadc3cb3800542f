"""Stage-count detection and parameter column listing."""

import pandas as pd
import pytest

from anynet_search.analysis import param_columns, stage_columns, stage_count


def frame(cols):
    return pd.DataFrame({c: [1] for c in cols})


def test_stage_count_and_param_order():
    df = frame(["error", "w0", "wa", "params", "g2", "g1", "b1", "b2", "w1", "w2", "d2", "d1", "flops"])
    assert stage_count(df) == 2
    assert param_columns(df) == ["d1", "d2", "w1", "w2", "b1", "b2", "g1", "g2"]
    assert stage_columns(df, "w") == ["w1", "w2"]


def test_missing_family_is_allowed():
    df = frame(["d1", "d2", "d3", "w1", "w2", "w3"])
    assert stage_count(df) == 3
    assert stage_columns(df, "g") == []
    assert param_columns(df) == ["d1", "d2", "d3", "w1", "w2", "w3"]


@pytest.mark.parametrize(
    ("cols", "match"),
    [
        (["error", "flops"], "no per-stage columns"),
        (["d1", "d3"], "gaps"),
        (["d1", "d2", "w1"], "disagree"),
    ],
)
def test_bad_columns(cols, match):
    with pytest.raises(ValueError, match=match):
        stage_count(frame(cols))
