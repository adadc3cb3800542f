"""Permutation tests of a subset of models against its complement, stratified by complexity bins.

Both tests permute the subset/complement labels *within strata* (complexity bins; one stratum when the
comparison is not complexity-normalized). A p-value is (1 + #{permutations at least as extreme}) /
(1 + n_perm), exact at any sample size, any error distribution and any number of tied errors *when the
errors within each stratum are exchangeable under the null*. With one stratum that is "both groups are
random samples of one error law". Within complexity bins it needs more than "at equal complexity both
groups have one error law": if the error depends on complexity inside a bin and the groups place their
models differently inside it, the permutations are not equally likely and the test is not exact (it can
reject every time; analysis/verdict_calibration.md, section 4). `compare.compare_edfs` can remove a
linear trend in log complexity within bins before testing (`complexity_a`, `complexity_b`).

- `ks_tests`: the KS distance between the (bin-normalized) error EDFs of the subset and the complement,
  two- or one-sided, over the strata both groups occupy (`weights.bin_weights`, `weights.shared_bins`).
- `shift_tests`: the effect of a constraint on the mean error of the space,

      effect = sum_j w_j (mean_j(subset) - mean_j(subset + complement))
             = sum_j w_j (n_Cj / n_j) (mean_j(subset) - mean_j(complement)),

  with stratum weights w_j = 1/k over all k strata (the complexity-normalized mean; w = 1 for one
  stratum). A stratum without a complement model adds 0 (the constraint changes nothing there); a stratum
  without a subset model raises (the constrained space's mean is undefined there).
  Writing it through the complement makes it a comparison of two disjoint samples, never of a sample
  with its own superset. `p_not_worse(margin)` tests H0: effect >= margin by shifting the subset's
  errors down by margin / sum_j w_j n_Cj / n_j and permuting within strata; the statistic is the
  studentized (Welch-type) estimate, so the test is exact under a location shift and keeps its size
  asymptotically when the two groups' spreads differ. `interval(alpha)` inverts the same tests (two
  one-sided tests at alpha / 2 each).

Strata are integer labels per model: 0..k-1 for models in the comparison, -1 for models left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from anynet_search.analysis._checks import check_level, check_positive_int
from anynet_search.analysis.bootstrap import CHUNK_ELEMENTS
from anynet_search.analysis.weights import shared_bins

#: Relative tolerance under which a permuted statistic counts as equal to the observed one.
_TIE = 1e-9
#: Elements per vectorized evaluation (rows x margins x permutations x strata) held at once.
_EVAL_ELEMENTS = 2_000_000


def stratified_permutations(
    strata: np.ndarray, n_perm: int, rng: np.random.Generator, chunk_elements: int = CHUNK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Yield (b, m) index arrays, n_perm rows in all: uniformly random permutations that keep every stratum.

    Row p maps position i to position perm[p, i] of the same stratum, so `labels[perm]` is a random
    relabeling within strata (models with stratum -1 are only permuted among themselves).
    """
    z = np.asarray(strata, dtype=np.int64)
    m = z.size
    members = [np.flatnonzero(z == label) for label in np.unique(z)]
    per_chunk = max(1, chunk_elements // max(1, m))
    done = 0
    while done < n_perm:
        b = min(per_chunk, n_perm - done)
        perm = np.empty((b, m), dtype=np.int64)
        for idx in members:  # a uniform shuffle of each stratum's members, row by row (O(b m) in all)
            perm[:, idx] = idx[rng.permuted(np.broadcast_to(np.arange(idx.size), (b, idx.size)), axis=1)]
        done += b
        yield perm


def _draw(strata: np.ndarray, n_perm: int, seed: int | np.random.Generator) -> Iterator[np.ndarray]:
    """`stratified_permutations` from a seed or a generator."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return stratified_permutations(strata, check_positive_int(n_perm, "n_perm"), rng)


def _check_strata(strata: np.ndarray | None, m: int) -> np.ndarray:
    if strata is None:
        return np.zeros(m, dtype=np.int64)
    z = np.asarray(strata)
    if z.shape != (m,) or not np.issubdtype(z.dtype, np.integer):
        raise ValueError(f"strata must be one integer label per model ({m}), got shape {z.shape} of {z.dtype}")
    return z.astype(np.int64)


# ------------------------------------------------------------------------------------------ shift tests
@dataclass(frozen=True)
class ShiftTests:
    """R subset-versus-complement comparisons under B permutations: tests and intervals of the mean effect.

    Shifting the subset's errors by -s changes every permuted statistic in closed form: its numerator
    by -s * a and its squared standard error to q0 + q1 s + q2 s^2 (each group's variance is quadratic
    in s). So each permutation is stored as five numbers (n0, a, q0, q1, q2), and a test at any margin
    costs O(R B), whatever the number of strata. A permutation that maps the subset onto itself gives the
    observed statistic at every margin and always counts (computed, it would drift by rounding).
    """

    estimate: np.ndarray  # (R,) the effect on the mean error (see the module docstring)
    se: np.ndarray  # (R,) its standard error (Welch-type)
    coef_sum: np.ndarray  # (R,) sum_j w_j n_Cj / n_j: a margin m shifts the subset by m / coef_sum
    perm: np.ndarray  # (R, B, 6) per permutation: n0, a, q0, q1, q2, and 1 where it keeps the subset in place

    @property
    def n_perm(self) -> int:
        """Number of permutations (B)."""
        return int(self.perm.shape[1])

    @classmethod
    def stack(cls, tests: list[ShiftTests]) -> ShiftTests:
        """One object holding the rows of several (same number of permutations), tested at once."""
        return cls(*(np.concatenate([getattr(t, f.name) for t in tests]) for f in fields(cls)))

    def _count(self, margin: np.ndarray, worse: bool) -> np.ndarray:
        """Permutations at least as extreme as the data, (R, G), for margins (R, G) of a one-sided test.

        `worse`: H0 effect >= margin (extreme: a small statistic); else H0 effect <= margin.
        """
        r_rows, g = margin.shape
        out = np.empty((r_rows, g), dtype=np.int64)
        step = max(1, _EVAL_ELEMENTS // max(1, g * self.n_perm))
        for lo in range(0, r_rows, step):
            rows = slice(lo, lo + step)
            shift = (margin[rows] / self.coef_sum[rows, None])[:, :, None]  # (r, G, 1)
            n0, a, q0, q1, q2, same = (self.perm[rows, None, :, i] for i in range(6))  # (r, 1, B)
            num = n0 - shift * a
            se = np.sqrt(np.maximum(q0 + shift * (q1 + shift * q2), 0.0))
            t_perm = num / np.maximum(se, 1e-12 * (1.0 + np.abs(num)))
            t_obs = ((self.estimate[rows, None] - margin[rows]) / self.se[rows, None])[:, :, None]
            tol = _TIE * (1.0 + np.abs(t_obs))
            extreme = t_perm <= t_obs + tol if worse else t_perm >= t_obs - tol
            out[rows] = (extreme | (same > 0)).sum(axis=-1)
        return out

    def _p(self, margin: float | np.ndarray, worse: bool) -> np.ndarray:
        m = np.broadcast_to(np.asarray(margin, dtype=float), self.estimate.shape)[:, None]
        return (1.0 + self._count(m, worse)[:, 0]) / (1.0 + self.n_perm)

    def p_not_worse(self, margin: float | np.ndarray) -> np.ndarray:
        """p-value of H0: effect >= margin (small when the subset is better than the margin allows)."""
        return self._p(margin, worse=True)

    def p_not_better(self, margin: float | np.ndarray) -> np.ndarray:
        """p-value of H0: effect <= margin (small when the subset is worse than the margin)."""
        return self._p(margin, worse=False)

    def interval(self, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): margins not rejected by the one-sided tests at alpha / 2 each (a 1 - alpha interval).

        hi is +inf when no margin can be rejected (too few permutations differ, e.g. a single excluded
        model among few), and lo is -inf likewise. The bounds are found on grids (a doubling one, then
        four rounds of 32 points), to about 1e-6 of their distance from the estimate.
        """
        level = check_level(alpha, "alpha") / 2
        limit = level * (1.0 + self.n_perm) - 1.0  # a test rejects when its count is at most this
        return self._boundary(limit, worse=False), self._boundary(limit, worse=True)

    def _boundary(self, limit: float, worse: bool) -> np.ndarray:
        """The margin where the one-sided test starts to reject, searched from the estimate outwards."""
        side = 1.0 if worse else -1.0
        scale = np.maximum(self.se, 1e-9 * (1.0 + np.abs(self.estimate)))[:, None]
        grid = self.estimate[:, None] + side * scale * np.concatenate([[0.0], 2.0 ** np.arange(-2, 41)])
        rejected = self._count(grid, worse) <= limit
        found = rejected.any(axis=1)
        rows = np.arange(grid.shape[0])
        first = np.argmax(rejected, axis=1)
        outer, inner = grid[rows, first], grid[rows, np.maximum(first - 1, 0)]
        fractions = np.arange(1, 33) / 32
        for _ in range(4):
            grid = inner[:, None] + (outer - inner)[:, None] * fractions
            rejected = self._count(grid, worse) <= limit
            rejected[:, -1] = True  # the bracket's outer end was rejected (guards non-monotone noise)
            first = np.argmax(rejected, axis=1)
            outer, inner = grid[rows, first], np.where(first > 0, grid[rows, np.maximum(first - 1, 0)], inner)
        return np.where(found, (inner + outer) / 2, side * np.inf)


def _variance_terms(sx: np.ndarray, sxx: np.ndarray, sy: np.ndarray, cnt: np.ndarray, n: np.ndarray) -> tuple:
    """Sum of squared deviations of a group after shifting its true-subset members by -s, as c0 + c1 s + c2 s^2.

    `sx`, `sxx`: the group's sum of x and x^2; `sy`: sum of x over its true-subset members; `cnt`: their count.
    """
    nn = np.maximum(n, 1)
    return sxx - sx**2 / nn, 2.0 * (sx * cnt / nn - sy), cnt - cnt**2 / nn


def _permutation_coefficients(
    sx: np.ndarray, sxx: np.ndarray, sy: np.ndarray, cnt: np.ndarray,
    totals: np.ndarray, n_s: np.ndarray, n_c: np.ndarray, coef: np.ndarray,
) -> np.ndarray:
    """(..., 5): n0, a, q0, q1, q2 of each permutation from its subset sums per stratum (last axis).

    `totals` (..., k, 4): per stratum sum x, sum x^2, and both over the true subset. A group of one
    model has no variance of its own and borrows its stratum partner's (equal spreads).
    """
    s1, s2, s1_sub = totals[..., 0], totals[..., 1], totals[..., 2]
    ns, nc = np.maximum(n_s, 1), np.maximum(n_c, 1)
    n0 = (coef * (sx / ns - (s1 - sx) / nc)).sum(axis=-1)
    a = (coef * (cnt / ns - (n_s - cnt) / nc)).sum(axis=-1)
    ss = _variance_terms(sx, sxx, sy, cnt, n_s)
    sc = _variance_terms(s1 - sx, s2 - sxx, s1_sub - sy, n_s - cnt, n_c)
    q = []
    for c_s, c_c in zip(ss, sc):
        var_s = c_s / np.maximum(n_s - 1, 1)
        var_c = c_c / np.maximum(n_c - 1, 1)
        var_s, var_c = np.where(n_s > 1, var_s, np.where(n_c > 1, var_c, 0.0)), np.where(n_c > 1, var_c, 0.0)
        var_c = np.where(n_c > 1, var_c, var_s)
        q.append((coef**2 * (var_s / ns + var_c / nc)).sum(axis=-1))
    return np.stack(np.broadcast_arrays(n0, a, *q), axis=-1)


def shift_tests(
    errors: np.ndarray,
    subset: np.ndarray,
    strata: np.ndarray | None = None,
    n_perm: int = 1000,
    seed: int | np.random.Generator = 0,
    permutations: list[np.ndarray] | None = None,
    n_strata: int | None = None,
) -> ShiftTests:
    """Permutation tests of the effect of restricting a sample to `subset` (see the module docstring).

    `errors` is (m,) or (R, m) (R samples sharing one subset and strata, e.g. a simulation); `subset` is
    a boolean mask over the m models; `strata` labels each model's complexity bin (-1: left out; None:
    one stratum; `n_strata` defaults to the largest label + 1). Every stratum must hold a subset model.
    `permutations` (chunks from `stratified_permutations` over the same strata) lets several subsets
    share one set of permutations.
    """
    x = np.atleast_2d(np.asarray(errors, dtype=float))
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"errors must be a finite (m,) or (R, m) array, got shape {x.shape}")
    r_rows, m = x.shape
    sub = np.asarray(subset, dtype=bool)
    if sub.shape != (m,):
        raise ValueError(f"subset must be one boolean per model ({m}), got shape {sub.shape}")
    z = _check_strata(strata, m)
    n_s, n_c, k = _stratum_counts(sub, z, n_strata)
    empty = np.flatnonzero(n_s == 0)
    if empty.size:
        raise ValueError(f"shift_tests: stratum {int(empty[0])} of {k} holds no model of the subset")
    if n_c.sum() == 0:
        raise ValueError("shift_tests: every model is in the subset; there is no complement to compare with")
    inside = z >= 0
    # Center on the compared models' mean: sums of squares then carry no large offset.
    x = x - x[:, inside].mean(axis=1, keepdims=True)
    onehot = np.zeros((m, k))
    onehot[np.flatnonzero(inside), z[inside]] = 1.0
    sub_f = (sub & inside).astype(float)
    coef = n_c / np.maximum(n_s + n_c, 1) / k  # stratum weight 1/k times n_Cj / n_j
    # per row and stratum: sum x, sum x^2, and both over the true subset
    totals = np.stack([x @ onehot, x**2 @ onehot, (x * sub_f) @ onehot, (x**2 * sub_f) @ onehot], axis=-1)
    # Columns summed over a permuted subset: per row x, x^2, x on the true subset; and the count.
    rk = r_rows * k
    rhs = np.concatenate(
        [
            (x.T[:, :, None] * onehot[:, None, :]).reshape(m, rk),
            ((x**2).T[:, :, None] * onehot[:, None, :]).reshape(m, rk),
            ((x * sub_f).T[:, :, None] * onehot[:, None, :]).reshape(m, rk),
            sub_f[:, None] * onehot,
        ],
        axis=1,
    )
    if permutations is None:
        permutations = _draw(z, n_perm, seed)
    chunks = []
    for perm in permutations:
        s = sub_f[perm] @ rhs  # (b, 3 R k + k): sums over the permuted subset
        b = s.shape[0]
        sx, sxx, sy = (s[:, i * rk : (i + 1) * rk].reshape(b, r_rows, k).transpose(1, 0, 2) for i in range(3))
        cnt = s[None, :, 3 * rk :]
        coefs = _permutation_coefficients(sx, sxx, sy, cnt, totals[:, None], n_s, n_c, coef)
        same = np.broadcast_to((np.abs(cnt - n_s) < 0.5).all(axis=-1), coefs.shape[:-1])
        chunks.append(np.concatenate([coefs, same[..., None].astype(float)], axis=-1))
    perm = np.concatenate(chunks, axis=1)
    # The observed statistic is the identity permutation's: the subset's own sums.
    own = _permutation_coefficients(totals[..., 2], totals[..., 3], totals[..., 2], n_s, totals, n_s, n_c, coef)
    estimate = own[:, 0]
    se = np.maximum(np.sqrt(np.maximum(own[:, 2], 0.0)), 1e-12 * (1.0 + np.abs(estimate)))
    return ShiftTests(estimate, se, np.full(r_rows, coef.sum()), perm)


def _stratum_counts(subset: np.ndarray, z: np.ndarray, n_strata: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    k = (int(z.max()) + 1 if (z >= 0).any() else 0) if n_strata is None else check_positive_int(n_strata, "n_strata")
    if k == 0:
        raise ValueError("no model lies in a stratum (all strata are -1)")
    if z.max(initial=-1) >= k:
        raise ValueError(f"strata labels must lie in -1..{k - 1}, got {int(z.max())}")
    inside = z >= 0
    return (np.bincount(z[inside & subset], minlength=k).astype(float),
            np.bincount(z[inside & ~subset], minlength=k).astype(float), k)


# ------------------------------------------------------------------------------------------ KS tests
#: The KS alternatives: any difference, the subset's EDF above the complement's somewhere (the subset has
#: lower errors there), or below it (scipy.stats.ks_2samp(subset, complement, alternative=...) names).
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")


def ks_tests(
    errors: np.ndarray,
    subset: np.ndarray,
    strata: np.ndarray | None = None,
    n_perm: int = 1000,
    seed: int | np.random.Generator = 0,
    permutations: list[np.ndarray] | None = None,
    alternative: str = "two-sided",
) -> tuple[np.ndarray, np.ndarray]:
    """(KS statistics, permutation p-values), each (R,), of R samples (`errors` (R, m)) sharing one subset.

    The EDFs are bin-normalized over the strata both groups occupy (`weights.bin_weights` over
    `weights.shared_bins`: weight 1/(k m_j); a model in a stratum the other group leaves empty, or in
    stratum -1, is left out); with one stratum these are the plain EDFs. Tied errors are handled exactly:
    the EDFs are compared only after the last of tied values (equal to within a relative 1e-9, so that
    rounding in a shifted copy does not split a tie), and labels are permuted within strata, so the
    p-value is exact for any number of ties. `alternative` is one of `ALTERNATIVES`: the statistic is
    max |F_S - F_C|, max (F_S - F_C) or max (F_C - F_S). The R samples share one set of permutations.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    x = np.atleast_2d(np.asarray(errors, dtype=float))
    sub = np.asarray(subset, dtype=bool)
    if x.ndim != 2 or sub.shape != (x.shape[1],) or not np.isfinite(x).all():
        raise ValueError(f"errors must be finite, (m,) or (R, m), and subset one boolean per model; got "
                         f"{np.shape(errors)} and {sub.shape}")
    r_rows, m = x.shape
    z = _check_strata(strata, m)
    n_s, n_c, _ = _stratum_counts(sub, z, None)
    if not (n_s.sum() and n_c.sum()):
        raise ValueError("ks_test: both groups need at least one model")
    both = shared_bins(np.where(sub, z, -1), np.where(sub, -1, z))
    if both.size == 0:
        raise ValueError("ks_test: the two groups share no stratum; there is nothing to compare")
    # each model's weight in either group (`bin_weights`' 1/(k m_j); permutations keep every m_j)
    in_both = np.isin(z, both)
    zc = np.maximum(z, 0)
    k = both.size
    gain_s = np.where(in_both, 1.0 / (k * np.maximum(n_s, 1))[zc], 0.0)
    gain_c = np.where(in_both, 1.0 / (k * np.maximum(n_c, 1))[zc], 0.0)
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    # errors within _TIE (relative) of each other tie: 3 * (100 / 144) - 100 / 144 is 2 * (100 / 144) here
    gap = xs[:, 1:] - xs[:, :-1] > _TIE * (1.0 + np.abs(xs[:, 1:]))
    last = np.concatenate([gap, np.ones((r_rows, 1), dtype=bool)], axis=1)
    gs, gc = gain_s[order], gain_c[order]  # (R, m) in each row's sorted order
    sign = -1.0 if alternative == "less" else 1.0

    def statistic(labels: np.ndarray, rows: slice) -> np.ndarray:
        """(r, b) statistics of the labelings (b, m) for a block of rows."""
        lab = labels[:, order[rows]]  # (b, r, m)
        diff = np.cumsum(np.where(lab, gs[rows], -gc[rows]), axis=-1)
        diff = np.where(last[rows], sign * diff, 0.0)  # steps only after the last of tied values
        if alternative == "two-sided":
            diff = np.abs(diff)
        return diff.max(axis=-1).T

    step = max(1, _EVAL_ELEMENTS // max(1, m))
    d_obs = np.concatenate([statistic(sub[None, :], slice(lo, lo + step))[:, 0] for lo in range(0, r_rows, step)])
    if permutations is None:
        permutations = _draw(z, n_perm, seed)
    hits = np.zeros(r_rows, dtype=np.int64)
    total = 0
    for perm in permutations:
        labels = sub[perm]
        per_block = max(1, _EVAL_ELEMENTS // max(1, m * labels.shape[0]))
        for lo in range(0, r_rows, per_block):
            rows = slice(lo, lo + per_block)
            d = statistic(labels, rows)
            hits[rows] += (d >= (d_obs[rows] - _TIE * (1.0 + np.abs(d_obs[rows])))[:, None]).sum(axis=1)
        total += labels.shape[0]
    return d_obs, (1.0 + hits) / (1.0 + total)


def ks_test(
    errors: np.ndarray,
    subset: np.ndarray,
    strata: np.ndarray | None = None,
    n_perm: int = 1000,
    seed: int | np.random.Generator = 0,
    permutations: list[np.ndarray] | None = None,
    alternative: str = "two-sided",
) -> tuple[float, float]:
    """(KS distance, permutation p-value) between the bin-normalized error EDFs of `subset` and its complement.

    One sample of `ks_tests` (see there: weights over the strata both groups occupy, exact with ties).
    """
    x = np.asarray(errors, dtype=float)
    if x.ndim != 1 or np.shape(subset) != x.shape:
        raise ValueError(f"errors and subset must be 1-D of one length, got {x.shape} and {np.shape(subset)}")
    d, p = ks_tests(x, subset, strata, n_perm, seed, permutations, alternative)
    return float(d[0]), float(p[0])
