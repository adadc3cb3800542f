"""anynet-search: design network design spaces (AnyNet/RegNet generation, sampling, training, analysis).

The public entry points, all importable from here:

- networks: `AnyNetConfig`, `regnet`, `regnet_zoo`, `build_model`, `complexity`, `fit_regnet`, and config files
  (`load_config`, `save_config`, `read_config_file` for an export's resolution);
- design spaces: `list_spaces`, `load_space`, `DesignSpace`;
- training one network: `load_dataset`, `TrainConfig`, `train`, `seed_everything`;
- results and analysis (pandas in, numbers out): `load_results`, `edf`, `compare_edfs`, `expected_best_error`,
  `good_ranges`, `derive_constraints`, `rank_by_error`.

>>> from anynet_search import regnet_zoo, complexity
>>> complexity(regnet_zoo()["RegNetX-400MF"], 224).flops
397678568

Train one tiny network for one epoch on the bundled digits (about a second on a CPU; errors in percent):

>>> from anynet_search import AnyNetConfig, TrainConfig, build_model, load_dataset, seed_everything, train
>>> data = load_dataset("digits", resolution=16)
>>> cfg = AnyNetConfig(depths=(1, 1), widths=(16, 32), bottleneck_ratios=(1, 1), group_widths=(8, 8),
...                    strides=(1, 2), stem_type="cifar", stem_width=16, num_classes=data.num_classes,
...                    in_channels=data.in_channels)
>>> seed_everything(0)
>>> result = train(build_model(cfg), data, TrainConfig(epochs=1), device="cpu")
>>> 0 <= result.val_error <= 100 and result.epochs == 1
True

Only torch-free modules are imported here; the rest (`build_model` and the trainer need torch, the analysis
pandas and scipy) is imported on first use, so `import anynet_search` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anynet_search import _compat
from anynet_search.models.complexity import Complexity, complexity
from anynet_search.models.config import AnyNetConfig, ConfigFile, load_config, read_config_file, save_config
from anynet_search.models.regnet import RegNetFit, fit_regnet, regnet
from anynet_search.models.zoo import regnet_zoo
from anynet_search.spaces import DesignSpace, list_spaces, load_space

if TYPE_CHECKING:
    from anynet_search.analysis import compare_edfs, derive_constraints, edf, expected_best_error, good_ranges
    from anynet_search.analysis.best import rank_by_error
    from anynet_search.models.model import build_model
    from anynet_search.reporting.results import load_results
    from anynet_search.training.data import load_dataset
    from anynet_search.training.interface import TrainConfig
    from anynet_search.training.train import seed_everything, train

# imported on first use: build_model and the trainer need torch, load_results optuna and pandas, the analysis scipy
_LAZY = {"build_model": "anynet_search.models.model", "load_results": "anynet_search.reporting.results",
         "load_dataset": "anynet_search.training.data", "TrainConfig": "anynet_search.training.interface",
         "train": "anynet_search.training.train", "seed_everything": "anynet_search.training.train",
         "edf": "anynet_search.analysis", "compare_edfs": "anynet_search.analysis",
         "expected_best_error": "anynet_search.analysis", "good_ranges": "anynet_search.analysis",
         "derive_constraints": "anynet_search.analysis", "rank_by_error": "anynet_search.analysis.best"}

_compat.install()  # the old module paths (anynet_search.train, ...) work for one more release, with a warning

__all__ = [
    "AnyNetConfig",
    "Complexity",
    "ConfigFile",
    "DesignSpace",
    "RegNetFit",
    "TrainConfig",
    "build_model",
    "compare_edfs",
    "complexity",
    "derive_constraints",
    "edf",
    "expected_best_error",
    "fit_regnet",
    "good_ranges",
    "list_spaces",
    "load_config",
    "load_dataset",
    "load_results",
    "load_space",
    "rank_by_error",
    "read_config_file",
    "regnet",
    "regnet_zoo",
    "save_config",
    "seed_everything",
    "train",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anynet-search")  # pyproject.toml is the one place the version is written
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _version()
    elif name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'anynet_search' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})
