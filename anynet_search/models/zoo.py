"""The 24 published RegNetX / RegNetY models as `AnyNetConfig`s."""

from __future__ import annotations

from anynet_search.models.config import AnyNetConfig
from anynet_search.models.regnet import regnet

# name: (depth, w0, wa, wm, group width), from the paper's model zoo
REGNET_PARAMS: dict[str, tuple[int, int, float, float, int]] = {
    "RegNetX-200MF": (13, 24, 36.44, 2.49, 8),
    "RegNetX-400MF": (22, 24, 24.48, 2.54, 16),
    "RegNetX-600MF": (16, 48, 36.97, 2.24, 24),
    "RegNetX-800MF": (16, 56, 35.73, 2.28, 16),
    "RegNetX-1.6GF": (18, 80, 34.01, 2.25, 24),
    "RegNetX-3.2GF": (25, 88, 26.31, 2.25, 48),
    "RegNetX-4.0GF": (23, 96, 38.65, 2.43, 40),
    "RegNetX-6.4GF": (17, 184, 60.83, 2.07, 56),
    "RegNetX-8.0GF": (23, 80, 49.56, 2.88, 120),
    "RegNetX-12GF": (19, 168, 73.36, 2.37, 112),
    "RegNetX-16GF": (22, 216, 55.59, 2.1, 128),
    "RegNetX-32GF": (23, 320, 69.86, 2.0, 168),
    "RegNetY-200MF": (13, 24, 36.44, 2.49, 8),
    "RegNetY-400MF": (16, 48, 27.89, 2.09, 8),
    "RegNetY-600MF": (15, 48, 32.54, 2.32, 16),
    "RegNetY-800MF": (14, 56, 38.84, 2.4, 16),
    "RegNetY-1.6GF": (27, 48, 20.71, 2.65, 24),
    "RegNetY-3.2GF": (21, 80, 42.63, 2.66, 24),
    "RegNetY-4.0GF": (22, 96, 31.41, 2.24, 64),
    "RegNetY-6.4GF": (25, 112, 33.22, 2.27, 72),
    "RegNetY-8.0GF": (17, 192, 76.82, 2.19, 56),
    "RegNetY-12GF": (19, 168, 73.36, 2.37, 112),
    "RegNetY-16GF": (18, 200, 106.23, 2.48, 112),
    "RegNetY-32GF": (20, 232, 115.89, 2.53, 232),
}


def regnet_zoo() -> dict[str, AnyNetConfig]:
    """Published name -> config (simple stem of width 32, stride 2 per stage, b = 1, SE 0.25 for Y)."""
    return {
        name: regnet(d, w0, wa, wm, g, se_ratio=0.25 if name.startswith("RegNetY") else 0.0)
        for name, (d, w0, wa, wm, g) in REGNET_PARAMS.items()
    }
