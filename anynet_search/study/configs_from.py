"""`run --configs-from RUN`: train exactly the configs another random / QMC study trained, at another budget.

`read_source` reads the source study (a run folder, or a storage URL and a study name; any storage) and
returns what the new study stores in its settings (`StudySettings.configs_from`): where the configs came
from (study, storage without password, sampler, seed, space hash, the source's epochs) and, for each of
the first N slots, the parameters of the source's trained model of that slot. The new study's tickets
carry them in the same slots and order (`plan.planned_params`), so both studies hold the same models
(same ids and parameters) and the analysis still reads the new one as a random sample of the space: it
is one, with the source's sampler label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from anynet_search.errors import InputError
from anynet_search.study.run_folder import portable_url, resolve_study
from anynet_search.study.settings import EDF_SAMPLERS, StudySettings, is_trained
from anynet_search.study.storage import load_study, open_storage

#: Keys of a `configs_from` record that must agree when a study made from it is resumed.
IDENTITY_KEYS = ("study", "sampler", "seed", "space_hash", "names")


@dataclass(frozen=True)
class ConfigSource:
    """A source study: its settings and the `configs_from` record a study trained on its configs stores."""

    settings: StudySettings
    record: dict[str, Any]

    @property
    def name(self) -> str:
        """The source study's name."""
        return str(self.record["study"])

    @property
    def n_slots(self) -> int:
        """How many slots (configs) the record holds."""
        return len(self.record["values"])


def read_source(run: str | Path, study: str | None = None, n_trials: int | None = None) -> ConfigSource:
    """The trained configs of slots 0 .. n_trials - 1 (default: all its slots) of a random / QMC study.

    InputError (one line) when the source is not an anynet-search study, was sampled adaptively (its configs
    are no random sample of the space), has fewer slots than asked for, or has a slot without a trained model.
    """
    where = f"--configs-from {run}"
    url, name, storage = resolve_study(run, study, option="--configs-study")
    source = load_study(name, storage if storage is not None else open_storage(url, repair=False))
    try:
        settings = StudySettings.from_study(source)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None
    if settings.sampler not in EDF_SAMPLERS:
        raise InputError(f"{where}: study {name!r} was sampled by {settings.sampler}, whose configs are not a random "
                         f"sample of its space; copy the configs of a {' or '.join(EDF_SAMPLERS)} study")
    n = settings.n_trials if n_trials is None else int(n_trials)
    if n > settings.n_trials:
        raise InputError(f"{where}: --trials {n:,} is more than the {settings.n_trials:,} slots of study {name!r}")
    by_slot: dict[int, Any] = {}
    for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        slot = t.user_attrs.get("slot")
        if is_trained(t) and isinstance(slot, int) and slot < n and slot not in by_slot:
            by_slot[slot] = t
    missing = [k for k in range(n) if k not in by_slot]
    if missing:
        raise InputError(f"{where}: study {name!r} has no trained model in {len(missing):,} of its first {n:,} slots "
                         f"(the first is slot {missing[0]}); let it finish, or take fewer with --trials")
    names = list(by_slot[0].params)
    for k in range(n):
        if list(by_slot[k].params) != names:
            raise InputError(f"{where}: study {name!r}: slot {k} sampled {sorted(by_slot[k].params)}, slot 0 "
                             f"{sorted(names)}; not one design space")
    record = {"study": name, "storage": portable_url(url), "sampler": settings.sampler, "seed": settings.seed,
              "space_hash": settings.space_hash, "n_trials": settings.n_trials,
              "epochs": settings.train_config().epochs, "names": names,
              "values": [[by_slot[k].params[p] for p in names] for k in range(n)]}
    return ConfigSource(settings, record)


def same_source(stored: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether a resumed study's stored `configs_from` and the one read now name the same configs (the slots
    both hold must agree; one may hold more slots than the other)."""
    if stored is None or new is None:
        return stored is new
    if any(stored.get(k) != new.get(k) for k in IDENTITY_KEYS):
        return False
    k = min(len(stored["values"]), len(new["values"]))
    return [list(v) for v in stored["values"][:k]] == [list(v) for v in new["values"][:k]]


def describe_source(record: dict[str, Any]) -> str:
    """One line: where a study's configs came from."""
    return (f"configs of study {record['study']} ({record['storage']}; {record['sampler']}, seed {record['seed']}, "
            f"{record['epochs']} epochs there): its first {len(record['values']):,} slots, in order")
