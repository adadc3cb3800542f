"""The named choices of the command line and the library, in one light module (no numpy, optuna or torch), so
that `anynet-search --help` builds its parser without importing what the commands use."""

from __future__ import annotations

#: Samplers whose trials are an unbiased sample of a design space (EDFs, constraint verdicts).
EDF_SAMPLERS: tuple[str, ...] = ("random", "qmc")
#: Samplers that optimize: they concentrate on good regions, so their EDFs describe the search.
ADAPTIVE_SAMPLERS: tuple[str, ...] = ("tpe", "cmaes", "nsga2", "gp")
SAMPLERS: tuple[str, ...] = EDF_SAMPLERS + ADAPTIVE_SAMPLERS
#: A study's seed: numpy's and torch's generators take 0 .. 2**32 - 1 wherever it goes.
MAX_SEED = 2**32 - 1
#: Largest `run --repeat`: retrainings of one study's configs under other training seeds (each a study of its own).
MAX_REPEAT = 10_000
#: Optuna pruners a study of an adaptive sampler may use (`none` trains every trial to the end).
PRUNERS: tuple[str, ...] = ("median", "percentile", "hyperband", "successive-halving", "none")
#: Units of the constraints' non-inferiority margin.
MARGIN_UNITS: tuple[str, ...] = ("points", "sd")
