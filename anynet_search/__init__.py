"""anynet-search: design network design spaces (AnyNet/RegNet generation, sampling, training, analysis)."""

from anynet_search.complexity import Complexity, complexity
from anynet_search.config import AnyNetConfig, load_config, save_config
from anynet_search.model import build_model
from anynet_search.regnet import RegNetFit, fit_regnet, regnet
from anynet_search.spaces import DesignSpace, list_spaces, load_space
from anynet_search.zoo import regnet_zoo

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
    "load_space",
    "regnet",
    "regnet_zoo",
    "save_config",
]
__version__ = "0.1.0"
