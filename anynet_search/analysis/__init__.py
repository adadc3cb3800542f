"""Design-space statistics: error EDFs, complexity normalization, bootstrap bands, EDF comparison,
expected best error, good parameter ranges, and constraint derivation. Pure functions over
DataFrames and arrays: no plotting, printing or I/O.
"""

from anynet_search.analysis.best import default_ns, expected_best_error
from anynet_search.analysis.bootstrap import (
    draw_count,
    edf_band,
    effective_sample_size,
    resample_counts,
    resample_indices,
)
from anynet_search.analysis.columns import (
    SAMPLED_PREFIX,
    STAGE_FAMILIES,
    param_columns,
    sampled_columns,
    stage_columns,
    stage_count,
)
from anynet_search.analysis.compare import EdfComparison, compare_edfs, complexity_adjusted, ks_distance
from anynet_search.analysis.constraints import (
    KEEP,
    MARGIN_UNITS,
    NEUTRAL,
    REJECT,
    VERDICTS,
    Candidate,
    candidate_constraints,
    constraint_verdict,
    derive_constraints,
    holm,
    resolve_margin,
)
from anynet_search.analysis.edf import edf, edf_at, edf_confidence_band, weighted_mean, weighted_median
from anynet_search.analysis.permutation import (
    ShiftTests,
    ks_test,
    ks_tests,
    shift_tests,
    stratified_permutations,
)
from anynet_search.analysis.ranges import (
    DEFAULT_SAMPLE_FRACTION,
    GoodRange,
    best_model_distribution,
    default_sample_size,
    discrete_quantiles,
    good_range,
    good_ranges,
)
from anynet_search.analysis.samplers import UNBIASED_SAMPLERS, require_unbiased_samples, sample_bias
from anynet_search.analysis.weights import (
    bin_weights,
    complexity_bins,
    normalized_weights,
    shared_bins,
    weights_from_bins,
)

__all__ = [
    "DEFAULT_SAMPLE_FRACTION",
    "KEEP",
    "MARGIN_UNITS",
    "NEUTRAL",
    "REJECT",
    "SAMPLED_PREFIX",
    "STAGE_FAMILIES",
    "UNBIASED_SAMPLERS",
    "VERDICTS",
    "Candidate",
    "EdfComparison",
    "GoodRange",
    "ShiftTests",
    "bin_weights",
    "best_model_distribution",
    "candidate_constraints",
    "compare_edfs",
    "complexity_adjusted",
    "complexity_bins",
    "constraint_verdict",
    "default_ns",
    "default_sample_size",
    "derive_constraints",
    "discrete_quantiles",
    "draw_count",
    "edf",
    "edf_at",
    "edf_band",
    "edf_confidence_band",
    "effective_sample_size",
    "expected_best_error",
    "good_range",
    "good_ranges",
    "holm",
    "ks_distance",
    "ks_test",
    "ks_tests",
    "normalized_weights",
    "param_columns",
    "require_unbiased_samples",
    "resolve_margin",
    "resample_counts",
    "resample_indices",
    "sample_bias",
    "sampled_columns",
    "shared_bins",
    "shift_tests",
    "stage_columns",
    "stage_count",
    "stratified_permutations",
    "weighted_mean",
    "weighted_median",
    "weights_from_bins",
]
