"""Table cells for the report page: numbers formatted once, DataFrames as header, rows and alignment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


def fmt(x: Any) -> str:
    """A table cell: floats to 4 significant digits, NaN empty, everything else as str."""
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "" if np.isnan(x) else str(x)
        return f"{x:.4g}"
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return ""
    return str(x)


@dataclass
class Table:
    """A table ready for the template: header, rows of cells, and which columns hold numbers."""

    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)

    @classmethod
    def of(cls, df: pd.DataFrame | None) -> Table | None:
        """A DataFrame as cells (numeric columns right-aligned); None when there is nothing to show."""
        if df is None or df.empty:
            return None
        cols = list(df.columns)
        numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in cols]
        rows = [[fmt(v) for v in row] for row in df[cols].itertuples(index=False)]
        return cls([str(c) for c in cols], rows, numeric)
