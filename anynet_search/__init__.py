"""anynet-search: design network design spaces (AnyNet/RegNet generation, sampling, training, analysis)."""

from anynet_search.config import AnyNetConfig, load_config, save_config

__all__ = ["AnyNetConfig", "load_config", "save_config"]
__version__ = "0.1.0"
