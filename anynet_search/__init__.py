"""anynet-search: design network design spaces (AnyNet/RegNet generation, sampling, training, analysis).

Only torch-free modules are imported here; `build_model` (torch) is imported on first use, so
`import anynet_search.analysis` or loading a results table does not pay for torch and the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anynet_search import _compat
from anynet_search.models.complexity import Complexity, complexity
from anynet_search.models.config import AnyNetConfig, load_config, save_config
from anynet_search.models.regnet import RegNetFit, fit_regnet, regnet
from anynet_search.models.zoo import regnet_zoo
from anynet_search.spaces import DesignSpace, list_spaces, load_space

if TYPE_CHECKING:
    from anynet_search.models.model import build_model
    from anynet_search.reporting.results import load_results

# imported on first use: build_model needs torch, load_results optuna and pandas
_LAZY = {"build_model": "anynet_search.models.model", "load_results": "anynet_search.reporting.results"}

_compat.install()  # the old module paths (anynet_search.train, ...) work for one more release, with a warning

__all__ = [
    "AnyNetConfig",
    "Complexity",
    "DesignSpace",
    "RegNetFit",
    "build_model",
    "complexity",
    "fit_regnet",
    "list_spaces",
    "load_config",
    "load_results",
    "load_space",
    "regnet",
    "regnet_zoo",
    "save_config",
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
