"""`SpaceView`: what the space's helper modules read of a `DesignSpace`.

`space.py` ties `sampling`, `trial_params`, `summary` and `constraints` together and imports them; they take
a `SpaceView` instead of importing `DesignSpace` back, so no import circle is left, not even a type-only one.
"""

from __future__ import annotations

from typing import Any, Protocol

from anynet_search.models.config import AnyNetConfig
from anynet_search.spaces.params import ParamSpec


class SpaceView(Protocol):
    """The read-only surface of a loaded design space (`DesignSpace` is the one implementation)."""

    source: str
    data: dict[str, Any]  # the (merged) space definition it was built from
    name: str
    description: str | None
    family: str  # anynet or regnet
    resolution: int
    stages: int
    fixed: dict[str, Any]
    params: dict[str, ParamSpec]
    shared: set[str]
    non_decreasing: set[str]
    ranges: dict[str, tuple[float, float]]
    band: dict[str, tuple[float, float]]

    @property
    def dimension(self) -> int:
        """Uniforms needed per candidate."""
        ...

    @property
    def log10_size(self) -> float:
        """log10 of the exact number of distinct parameter tuples allowed (before the complexity band)."""
        ...

    def complexity_range(self) -> tuple[dict[str, float], dict[str, float]]:
        """Lowest and highest flops / params / acts of its configs (before the band)."""
        ...

    def config_from_params(self, values: dict[str, Any]) -> AnyNetConfig:
        """The config of one raw parameter tuple; InfeasibleConfig naming the violated constraint."""
        ...
