"""RegNet generation, compatibility rule, invalid parameters and the inverse fit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anynet_search import fit_regnet, regnet, regnet_zoo
from anynet_search.models.regnet import adjust_compatibility, regnet_block_widths, stages_from_block_widths


def test_published_regnetx_200mf_structure():
    cfg = regnet_zoo()["RegNetX-200MF"]
    assert cfg.widths == (24, 56, 152, 368) and cfg.depths == (1, 1, 4, 7)
    assert cfg.group_widths == (8, 8, 8, 8) and cfg.strides == (2, 2, 2, 2)
    assert cfg.stem_type == "simple" and cfg.stem_width == 32 and cfg.se_ratio == 0


def test_zoo_has_24_models_and_y_has_se():
    zoo = regnet_zoo()
    assert len(zoo) == 24
    assert all(c.se_ratio == (0.25 if n.startswith("RegNetY") else 0.0) for n, c in zoo.items())


def test_block_widths_follow_quantized_linear_rule():
    ws = regnet_block_widths(6, 32, 20.0, 2.0)
    # u = 32, 52, 72, 92, 112, 132 -> s = round(log2(u / 32)) = 0, 1, 1, 2, 2, 2
    assert ws == [32, 64, 64, 128, 128, 128]
    assert stages_from_block_widths(ws) == ([32, 64, 128], [1, 2, 3])


@pytest.mark.parametrize(
    "args,pattern",
    [((10, 24, -1.0, 2.5), "wa must be >= 0"), ((10, 0, 10.0, 2.5), "w0 must be > 0"),
     ((10, 24, 10.0, 1.0), "wm must be > 1"), ((10, 20, 10.0, 2.5), "w0 must be a multiple of 8"),
     ((0, 24, 10.0, 2.5), "depth must be a positive integer")],
)
def test_invalid_regnet_parameters(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        regnet(*args, group_width=8)


def test_compatibility_rule():
    # g = min(g, w_b); w_b rounded to a multiple of g; w = w_b * b
    assert adjust_compatibility([24], [1], [32]) == ([24], [24])
    assert adjust_compatibility([56], [1], [16]) == ([64], [16])
    assert adjust_compatibility([40], [4], [4]) == ([32], [4])  # w_b 10 -> 8
    cfg = regnet(13, 24, 36.44, 2.49, 48, bottleneck_ratio=2)
    for w, b, g in zip(cfg.widths, cfg.bottleneck_ratios, cfg.group_widths):
        assert (w // b) % g == 0


def test_overrides_and_forbidden_overrides():
    cfg = regnet(13, 24, 36.44, 2.49, 8, stem_type="cifar", num_classes=10, strides=[1, 1, 2, 2])
    assert cfg.stem_type == "cifar" and cfg.num_classes == 10 and cfg.strides == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="widths is generated"):
        regnet(13, 24, 36.44, 2.49, 8, widths=[8])


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(4, 30), w0=st.sampled_from([16, 24, 32, 48, 64, 96]),
       wa=st.floats(4.0, 80.0), wm=st.floats(1.6, 2.9))
def test_fit_explains_regnet_widths_closely(depth, w0, wa, wm):
    widths = regnet_block_widths(depth, w0, wa, wm)
    fit = fit_regnet(widths)
    assert fit.fit_error < 0.12
    # and the fitted parameters regenerate widths close to the observed ones
    assert len(regnet_block_widths(depth, fit.w0, fit.wa, fit.wm)) == depth


def test_fit_error_is_large_for_non_monotone_widths():
    assert fit_regnet([256, 16, 512, 8, 128, 8]).fit_error > 0.5
    with pytest.raises(ValueError, match="non-empty"):
        fit_regnet([])


@pytest.mark.parametrize("name", sorted(regnet_zoo()))
def test_reported_fit_error_is_the_error_of_the_returned_parameters(name):
    """Issue 22: the fit used to round wa and wm after scoring them (RegNetY-1.6GF: 0.0205 reported, 0.0358
    from the returned parameters, whose stage-2 width differs). The reported error must be the one the
    returned (w0, wa, wm) give, recomputed here from the published widths."""
    observed = np.asarray(regnet_zoo()[name].block_widths, dtype=float)
    fit = fit_regnet(observed.astype(int).tolist())
    assert round(fit.wa, 4) == fit.wa and round(fit.wm, 4) == fit.wm  # what is returned is what was scored
    predicted = np.asarray(regnet_block_widths(observed.size, fit.w0, fit.wa, fit.wm), dtype=float)
    assert fit.fit_error == pytest.approx(np.abs(np.log(predicted / observed)).mean(), rel=1e-12, abs=1e-15)
