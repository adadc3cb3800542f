"""`anynet-search fidelity RUN RUN [RUN ...]`: several studies of the same configs against the highest budget, paired.

`fidelity_set` sorts the studies into roles (`roles`): the reference is the study of most epochs (the first given
among equals, a first training before a retraining); a study trained like it (the same data and trainer settings)
under other training seeds is a retraining of it (`run --repeat K`), which measures the noise ceiling; every
other study is a lower budget. Each lower budget gets the pairwise comparison of `reporting.fidelity`; with two or
more studies beside the reference, their rank correlations against it are compared on the configs every study
trained, as pairs (`analysis.paired`); a retraining adds the training noise (`analysis.noise`). The margin of the
constraint verdicts is stated, and flagged when finer than one validation image (`analysis.fidelity.margin_note`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from anynet_search.analysis import resolve_margin
from anynet_search.analysis.constraints import holm
from anynet_search.analysis.fidelity import MIN_MATCHED, error_resolution, margin_note
from anynet_search.analysis.noise import RetrainNoise, retrain_noise
from anynet_search.analysis.paired import rho_against, rho_differences, shared_errors
from anynet_search.errors import InputError
from anynet_search.paths import check_out_dir, run_folder_of, safe_file_name
from anynet_search.reporting import plots
from anynet_search.reporting.fidelity import FidelityReport, epochs_of, fidelity_of
from anynet_search.reporting.noise import trained_alike
from anynet_search.reporting.results import RunData, load_run


def roles(runs: Sequence[RunData]) -> tuple[int, list[int], list[int]]:
    """(the reference, the lower budgets in order of epochs, the retrainings of the reference) as indices.

    The reference has the most epochs (the first given among equals, preferring a first training, repeat 0); with
    a study of unknown budget the last one given is the reference and the others are lower budgets.
    """
    epochs = [epochs_of(r) for r in runs]
    if any(e is None for e in epochs):
        return len(runs) - 1, list(range(len(runs) - 1)), []
    top = max(e for e in epochs if e is not None)
    tied = [k for k, e in enumerate(epochs) if e == top]
    ref = min(tied, key=lambda k: (runs[k].settings.repeat if runs[k].settings else 0, k))
    retrains = [k for k in range(len(runs)) if k != ref and trained_alike(runs[ref], runs[k])]
    lows = sorted((k for k in range(len(runs)) if k != ref and k not in retrains), key=lambda k: (epochs[k], k))
    return ref, lows, retrains


def budget_words(run: RunData, reference: RunData) -> str:
    """A study's budget in words: epochs and data set, the trainer settings in which it differs from the reference,
    and its repeat (`run --repeat`) where it is one."""
    s, r = run.settings, reference.settings
    if s is None or r is None:
        return "budget unknown"
    mine, theirs = s.train_config().to_dict(), r.train_config().to_dict()
    words = f"{mine['epochs']} epoch{'s' if mine['epochs'] != 1 else ''} on {s.dataset}"
    words += "".join(f", {k}={mine[k]}" for k in mine if k != "epochs" and mine[k] != theirs.get(k))
    return words + (f", repeat {s.repeat}" if s.repeat else "")


def _p(p: float, floor: bool = False) -> str:
    return f"{'<= ' if floor else ''}{p:.2g}"


@dataclass
class FidelitySet:
    """Every comparison of `fidelity_set`: the pairs, the noise ceiling, the paired rank correlations."""

    reference: str
    words: dict[str, str]  # study -> its budget in words
    pairs: list[FidelityReport]  # each lower budget against the reference
    noise: list[tuple[str, RetrainNoise]]  # each retraining of the reference, with its noise
    margin: float
    margin_flag: str | None
    rhos: pd.DataFrame | None = None  # `rho_against` on the shared configs
    differences: pd.DataFrame | None = None  # `rho_differences`
    overlap_holm: dict[str, float] = field(default_factory=dict)
    shared: int = 0
    files: list[Path] = field(default_factory=list)
    other_data: list[str] = field(default_factory=list)  # the studies trained on other data (--other-data)

    def lines(self) -> list[str]:
        """What `anynet-search fidelity` prints."""
        ref = f"{self.reference} ({self.words[self.reference]})"
        out = [f"WARNING: trained on other data than {self.reference} (--other-data): {why}; the ranks compare data "
               "sets as well as budgets" for why in self.other_data]
        if len(self.words) > 2:
            out.append(f"fidelity of {len(self.words)} studies of the same configs against {ref}; {self.shared} "
                       "configs trained in every one")
        if self.pairs:  # the margin is that of the lower budgets' constraint verdicts
            out.append(f"constraint verdicts judged with the non-inferiority margin {self.margin:g} points (--margin)")
            if self.margin_flag:
                out.append(f"note: {self.margin_flag}")
        for rep in self.pairs:
            out += rep.lines(table=len(self.words) == 2, margin=False)
            if rep.low in self.overlap_holm:
                out.append(f"  top {100 * rep.result.overlap['fraction']:.0f}% overlap p Holm-adjusted over the "
                           f"{len(self.overlap_holm)} lower budgets: {self.overlap_holm[rep.low]:.2g}")
        for name, noise in self.noise:
            out += [f"noise ceiling: {name} ({self.words[name]}) trains the configs of {ref} again under other "
                    "training seeds:", f"  {noise.line()}",
                    f"  a second training of this budget ranks its models like the first to rho {noise.rho:.3f}: "
                    "no cheaper budget can be asked to rank them more alike"]
        if self.rhos is not None:
            out.append(f"rank correlation with {self.reference} on the {self.shared} configs every study trained "
                       f"(95% BCa intervals, {self.differences.attrs.get('n_boot', '?')} paired resamples):")
            for name, row in self.rhos.iterrows():
                role = " (noise ceiling)" if name in dict(self.noise) else ""
                out.append(f"  {name} ({self.words[name]}){role}: Spearman rho {row['rho']:.3f} "
                           f"[{row['lo']:.3f}, {row['hi']:.3f}]")
        if self.differences is not None and len(self.differences):
            d = self.differences
            out.append(f"paired differences of rho (the same configs in every resample; p: where the BCa interval "
                       f"reaches 0, Holm-adjusted over the {len(d)} differences read together):")
            for row in d.itertuples(index=False):
                out.append(f"  rho({row.a}) - rho({row.b}) = {row.diff:+.3f} [{row.lo:+.3f}, {row.hi:+.3f}], "
                           f"p = {_p(row.p, row.at_floor)}, Holm {_p(row.p_holm, row.at_floor)}")
        return out


def fidelity_set(targets: Sequence[str | tuple[str, str]], out_dir: str | Path | None, *, n_boot: int = 2000,
                 seed: int = 0, margin: float = 0.5, margin_unit: str = "points",
                 other_data: bool = False) -> FidelitySet:
    """Load two or more runs of the same configs, compare them (see the module docstring) and write into `out_dir`
    `fidelity.png`, `fidelity_pairs.csv` and `fidelity_verdicts.csv` (two studies) or per lower budget
    `fidelity_K.png`, and `fidelity_errors.csv` (each shared config's error in every study),
    `fidelity_rho.csv`, `fidelity_differences.csv`, `fidelity_verdicts.csv` (more). `out_dir` None: `fidelity/` in
    the reference study's run folder (the working folder for a database URL). Studies trained on other data than
    the reference (their data digests differ) are refused unless `other_data`, which makes it a warning."""
    runs = [load_run(*t) if isinstance(t, tuple) else load_run(t) for t in targets]
    seen: dict[tuple[str, str], int] = {}
    for run in runs:
        if (run.label, run.run) in seen:
            raise InputError(f"fidelity compares different studies; two of the RUNs given both are {run.label!r} in "
                             f"{run.run}")
        seen[(run.label, run.run)] = 1
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # the same study name in two storages: tell them apart
        for k, run in enumerate(runs):
            run.label = f"{run.label} ({k + 1})"
    ref, lows, retrains = roles(runs)
    reference = runs[ref]
    differ = [f"{run.label}: {why}" for run in runs if run is not reference and reference.settings is not None
              and run.settings is not None and (why := reference.settings.other_data(run.settings))]
    if differ and not other_data:
        raise InputError(f"fidelity compares budgets on the same data, but {differ[0]} (against {reference.label}"
                         f"{f', and {len(differ) - 1} more' if len(differ) > 1 else ''}); --other-data compares "
                         "them anyway")
    words = {r.label: budget_words(r, reference) for r in runs}
    pairs = [fidelity_of(runs[k], reference, n_boot=n_boot, seed=seed, margin=margin, margin_unit=margin_unit)
             for k in lows]
    noise = []
    for k in retrains:
        try:
            noise.append((runs[k].label, retrain_noise(reference.df, runs[k].df, n_boot=n_boot, seed=seed)))
        except ValueError as exc:
            raise InputError(f"fidelity of {runs[k].label} against {reference.label}: {exc}") from None
    errors = reference.df["error"].to_numpy(dtype=float)
    margin_points = resolve_margin(errors, margin, margin_unit)[0]
    result = FidelitySet(reference.label, words, pairs, noise, margin_points,
                         margin_note(margin_points, error_resolution(errors)), other_data=differ)
    with_overlap = [p for p in pairs if p.result.overlap is not None]
    if len(with_overlap) > 1:
        adjusted = holm([p.result.overlap["p_value"] for p in with_overlap])
        result.overlap_holm = {p.low: float(q) for p, q in zip(with_overlap, adjusted)}
    others = [runs[k].label for k in lows + retrains]
    if out_dir is None:
        out = (run_folder_of(targets[ref]) or Path()) / "fidelity"
        check_out_dir(str(out))
    else:
        out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(others) >= 2:
        errors = shared_errors({r.label: r.df for r in runs}, reference.label)
        result.shared = len(errors)
        if len(errors) >= MIN_MATCHED:
            result.rhos = rho_against(errors, reference.label, n_boot=n_boot, seed=seed)
            low_names = [runs[k].label for k in lows]
            steps = list(zip(low_names[1:], low_names[:-1]))  # each budget against the one below it
            steps += [(runs[k].label, low) for k in retrains for low in low_names]  # the ceiling against each
            result.differences = rho_differences(errors, reference.label, steps, n_boot=n_boot, seed=seed)
            errors.to_csv(out / "fidelity_errors.csv", index=False)
            result.rhos.to_csv(out / "fidelity_rho.csv")
            result.differences.to_csv(out / "fidelity_differences.csv", index=False)
            result.files += [out / "fidelity_errors.csv", out / "fidelity_rho.csv", out / "fidelity_differences.csv"]
    _write_pairs(result, out, single=len(runs) == 2)
    return result


def _write_pairs(result: FidelitySet, out: Path, single: bool) -> None:
    """Each pair's figure and CSVs (one pair: the file names of a two-study fidelity)."""
    verdicts = []
    for k, rep in enumerate(result.pairs):
        if rep.result.verdicts is not None:
            verdicts.append(rep.result.verdicts.assign(low=rep.low))
        if single:
            rep.result.pairs.drop(columns=["row_low", "row_high"]).to_csv(out / "fidelity_pairs.csv", index=False)
            result.files.append(out / "fidelity_pairs.csv")
        if rep.figure is not None:
            path = out / ("fidelity.png" if single else f"fidelity_{k + 1}.png")
            rep.figure.savefig(path, dpi=90)
            result.files.append(path)
    for name, noise in result.noise:
        if single:  # each model's two errors and their difference: the training noise model by model
            table = noise.pairs.drop(columns=["row_low", "row_high"]).rename(columns={
                "trial_low": "trial_first", "trial_high": "trial_retrained", "error_low": "error_first",
                "error_high": "error_retrained"})
            table["difference"] = table["error_retrained"] - table["error_first"]
            table.to_csv(out / "fidelity_pairs.csv", index=False)
            result.files.append(out / "fidelity_pairs.csv")
        fig = plots.plot_fidelity(noise.pairs, noise.correlations,
                                  (f"{result.reference} (first training)", f"{name} (retrained)"))
        path = out / ("fidelity.png" if single else f"fidelity_noise_{safe_file_name(name)}.png")
        fig.savefig(path, dpi=90)
        result.files.append(path)
    if verdicts:
        table = pd.concat(verdicts, ignore_index=True)
        if single:
            table = table.drop(columns="low")
        table.to_csv(out / "fidelity_verdicts.csv", index=False)
        result.files.append(out / "fidelity_verdicts.csv")
