"""Declarative design spaces: files, exact constrained sampling, counting and Optuna integration."""

from anynet_search.spaces.files import bundled_dir, list_spaces
from anynet_search.spaces.params import ParamSpec, SpaceError
from anynet_search.spaces.space import DesignSpace, InfeasibleConfig, Sample, load_space

__all__ = ["DesignSpace", "InfeasibleConfig", "ParamSpec", "Sample", "SpaceError", "bundled_dir",
           "list_spaces", "load_space"]
