"""Design spaces: files, exact conditioned sampling (statistically), determinism, counting, validation."""

import math

import numpy as np
import pytest
from scipy import stats

from anynet_search import complexity
from anynet_search.spaces import InfeasibleConfig, SpaceError, list_spaces, load_space

PAPER = ["anynet_xa", "anynet_xb", "anynet_xc", "anynet_xd", "anynet_xe", "regnet_x", "regnet_y"]


def test_bundled_spaces_include_paper_and_small_variants():
    names = set(list_spaces())
    for base in PAPER:
        assert {base, f"{base}_cifar", f"{base}_tiny"} <= names


@pytest.mark.parametrize("name", list_spaces())
def test_every_bundled_space_samples_valid_configs_in_band(name):
    space = load_space(name)
    for s in space.sample_many(40, seed=3):
        cx = complexity(s.config, space.resolution)
        for key, (lo, hi) in space.band.items():
            assert lo <= getattr(cx, key) <= hi
        for w, b, g in zip(s.config.widths, s.config.bottleneck_ratios, s.config.group_widths):
            assert (w // b) % g == 0  # compatibility rule applied
        assert s.config.num_stages == space.stages
        assert space.config_from_params(s.params) == s.config  # params rebuild the same config


def test_log10_sizes_come_from_counting():
    xa, xb, xc, xd, xe = (load_space(n) for n in PAPER[:5])
    assert xa.log10_size == pytest.approx(4 * math.log10(16 * 128 * 3 * 6))
    assert xa.log10_size - xb.log10_size == pytest.approx(math.log10(3**3))
    assert xb.log10_size - xc.log10_size == pytest.approx(math.log10(6**3))
    # non-decreasing sequences of length 4 from 128 widths: C(128 + 3, 4)
    assert xc.log10_size - xd.log10_size == pytest.approx(4 * math.log10(128) - math.log10(math.comb(131, 4)))
    assert xd.log10_size - xe.log10_size == pytest.approx(4 * math.log10(16) - math.log10(math.comb(19, 4)))


def test_same_seed_same_sequence_and_prefix_stability():
    space = load_space("anynet_xe_tiny")
    a = [s.config for s in space.sample_many(30, seed=7)]
    assert a == [s.config for s in space.sample_many(30, seed=7)]
    assert a[:10] == [s.config for s in space.sample_many(10, seed=7)]
    assert a != [s.config for s in space.sample_many(30, seed=8)]


def _widths(samples):
    return np.array([s.params[f"w{i}"] for s in samples for i in range(1, 5)])


def test_xd_equals_xc_conditioned_on_non_decreasing_widths():
    xc, xd = load_space("anynet_xc_tiny"), load_space("anynet_xd_tiny")
    xc_samples = [s for s in xc.sample_many(6000, seed=1)
                  if all(s.params[f"w{i}"] <= s.params[f"w{i + 1}"] for i in range(1, 4))]
    xd_samples = xd.sample_many(len(xc_samples), seed=2)
    for stage in range(1, 5):
        a = [s.params[f"w{stage}"] for s in xc_samples]
        b = [s.params[f"w{stage}"] for s in xd_samples]
        assert stats.ks_2samp(a, b).pvalue > 0.001
    # and the conditioning really changes the law (XD is not XC): non-decreasing samples only
    assert all(s.params["w1"] <= s.params["w4"] for s in xd_samples)


def test_shared_parameter_is_iid_law_conditioned_on_equality():
    # XB's b is uniform over {1,2,4}: conditioned on 4 equal iid uniform draws it stays uniform
    xa, xb = load_space("anynet_xa_tiny"), load_space("anynet_xb_tiny")
    xa_equal = [s for s in xa.sample_many(20000, seed=4) if len({s.params[f"b{i}"] for i in range(1, 5)}) == 1]
    xb_samples = xb.sample_many(3000, seed=5)
    counts_a = np.array([sum(s.params["b1"] == v for s in xa_equal) for v in (1, 2, 4)])
    counts_b = np.array([sum(s.params["b"] == v for s in xb_samples) for v in (1, 2, 4)])
    assert stats.chi2_contingency(np.stack([counts_a, counts_b])).pvalue > 0.001


def test_log_uniform_marginal_matches_its_exact_probabilities():
    space = load_space("anynet_xa_cifar")
    spec = space.params["d"]
    raw = [s.params["d1"] for s in load_space("anynet_xa_cifar").sample_many(1, seed=0)]
    assert raw  # the band conditions the marginal; check the unconditioned draw directly
    rng = np.random.default_rng(0)
    idx = spec.from_uniform(rng.random(200_000))
    observed = np.bincount(idx, minlength=spec.size)
    expected = np.asarray(spec.probs) * len(idx)
    assert stats.chisquare(observed, expected).pvalue > 0.001
    assert spec.probs[0] > spec.probs[-1]  # log-uniform favours small depths


def test_xe_500_samples_with_narrow_band_is_fast_enough():
    import time
    space = load_space("anynet_xe")
    start = time.perf_counter()
    assert len(space.sample_many(500, seed=0)) == 500
    assert time.perf_counter() - start < 60  # generous: the real figure is in benchmarks/RESULTS.md


def test_starved_space_names_the_rejecting_constraint(tmp_path):
    path = tmp_path / "narrow.yaml"
    path.write_text("extends: anynet_xe_tiny\ndescription: too narrow\nband:\n  flops: [1500000, 1500001]\n")
    space = load_space(path)
    with pytest.raises(SpaceError, match=r"band flops in \[1,500,000, 1,500,001\] rejects most") as exc:
        list(space.iter_samples(np.random.default_rng(0), 5, max_candidates=50_000))
    assert "rate" in str(exc.value)


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("description: x\nextends: anynet_xa\nbogus: 1\n", r"unknown key\(s\) bogus"),
        ("description: x\nextends: anynet_xa\nparameters:\n  d: {low: 5, high: 2}\n", "parameters.d: low must be below high"),
        ("description: x\nextends: anynet_xa\nparameters:\n  q: {values: [1]}\n", "parameters: unknown q"),
        ("description: x\nextends: anynet_xa\nconstraints:\n  shared: [z]\n", "no per-stage parameter 'z'"),
        ("description: x\nextends: anynet_xa\nconstraints:\n  ranges: {w9: [8, 16]}\n", "ranges: no parameter 'w9'"),
        ("description: x\nextends: anynet_xa\nband:\n  flops: [1.0e+15, 2.0e+15]\n", "band.flops=.* is unreachable"),
        ("description: x\nextends: anynet_xa\nband:\n  latency: [1, 2]\n", "unknown metric 'latency'"),
        ("description: x\nextends: anynet_xa\nparameters:\n  d: {low: 1, high: 4, distribution: gaussian}\n", "distribution must be one of"),
        ("description: x\nextends: anynet_xa\nfixed:\n  stem_type: vgg\n", "fixed: stem_type must be one of"),
        ("description: x\nextends: nowhere_space\n", "nowhere_space: no such space file"),
        ("extends: anynet_xa\ndescription: [1, 2]\n", "description must be a one-line string"),
        ("description: x\nextends: anynet_xa\nparameters: [1\n", "not valid YAML"),
        ("description: x\nextends: regnet_x\nparameters:\n  w0: {values: [12, 20]}\n", "w0 values must be multiples of 8"),
    ],
)
def test_invalid_space_files_get_one_line_errors_naming_file_and_key(tmp_path, text, pattern):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=pattern) as exc:
        load_space(path)
    assert "\n" not in str(exc.value)
    if "nowhere" not in text:
        assert "mine.yaml" in str(exc.value)


def test_space_file_is_data_not_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text(f"!!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    with pytest.raises(SpaceError):
        load_space(path)
    assert not (tmp_path / "pwned").exists()


def test_user_file_with_extends_and_ranges(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("description: my XC with wide last stage\nextends: anynet_xc_tiny\nconstraints:\n"
                    "  shared: [b, g]\n  ranges: {w4: [64, 128]}\n")
    space = load_space(path)
    assert all(s.params["w4"] >= 64 for s in space.sample_many(50, seed=0))
    base = load_space("anynet_xc_tiny")
    assert space.log10_size == pytest.approx(base.log10_size - math.log10(16 / 9))  # w4: 16 -> 9 values


def test_config_from_params_rejects_constraint_violations():
    xd = load_space("anynet_xd_tiny")
    good = xd.sample_many(1, seed=0)[0].params
    bad = dict(good, w1=128, w2=8)
    with pytest.raises(InfeasibleConfig, match="non_decreasing w"):
        xd.config_from_params(bad)
    with pytest.raises(SpaceError, match="not one of the parameter's values"):
        xd.config_from_params(dict(good, w1=12))


def test_regnet_space_accepts_only_intended_stage_count():
    space = load_space("regnet_x_tiny")
    assert all(s.config.num_stages == 4 for s in space.sample_many(100, seed=0))
    assert set(space.param_names()) == {"d", "w0", "wa", "wm", "g", "b"}


def test_with_task_changes_head_and_stem():
    space = load_space("anynet_xa_tiny").with_task(num_classes=3, in_channels=1)
    cfg = space.sample(np.random.default_rng(0))
    assert cfg.num_classes == 3 and cfg.in_channels == 1
