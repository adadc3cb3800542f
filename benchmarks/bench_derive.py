"""Time `derive_constraints` (permutation tests of every candidate, subset against complement).

Frames are `synthetic_results` (AnyNetXA-like, 4 stages: 22 candidates with the fit-error ones), with the
library defaults (1000 permutations), raw and complexity-normalized (10 flops bins); the median of
`--repeats` calls. Also the peak memory of the permutation index arrays (n_perm x rows, int32).

    python benchmarks/bench_derive.py                  # 1,000 and 10,000 rows
    python benchmarks/bench_derive.py --rows 300 3000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, table, time_call, warn_if_busy  # noqa: E402

from anynet_search.analysis import derive_constraints  # noqa: E402
from anynet_search.analysis.synthetic import synthetic_results  # noqa: E402


def main() -> None:
    """Print a markdown table of derive_constraints timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    warn_if_busy()
    rows = []
    for n in args.rows:
        df = synthetic_results(n, seed=0)
        df["fit_error"] = np.random.default_rng(0).random(n)
        for label, kwargs in (("raw", {}), ("bins=10", {"bins": 10})):
            seconds, out = time_call(lambda kw=kwargs, d=df: derive_constraints(d, **kw), args.repeats)
            rows.append({"rows": n, "EDFs": label, "candidates": len(out), "seconds": seconds,
                         "permutation indices (MiB)": 1000 * n * 4 / 2**20})
    print(table(rows))


if __name__ == "__main__":
    main()
