"""A study's settings and its work tickets: N slots, each finished by exactly one completed trial.

Every slot is a WAITING trial ("ticket") enqueued in the Optuna storage. Workers pop tickets atomically
(the storage's WAITING -> RUNNING transition), so no two workers train the same ticket. A failed attempt
(divergence, out of memory, a crash, an infeasible adaptive suggestion) is kept as a failed trial and
replaced by a ticket for the same slot with attempt + 1; a killed worker's ticket is replaced by one with
the same config. For random / QMC studies a ticket carries its config's parameters, drawn from one seeded
stream: slot k, attempt a uses stream element a * N + k, so the set of configs does not depend on the
number of workers or on timing; each space has its own stream (`stream_seed`). Adaptive samplers get
empty tickets and propose the parameters themselves.

A study made with `--configs-from RUN` (`configs_from`) trains the configs of another random / QMC study: its
slot k, attempt 0, carries the parameters of the trained model of the source's slot k, stored in its settings
(`StudySettings.configs_from`), so a worker anywhere needs nothing but this study. A config that fails here
(attempt >= 1) is replaced from this study's own stream, like any failed config: the study stays a random
sample of the space, and the fidelity analysis matches only the configs trained in both studies.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import optuna

from anynet_search.choices import ADAPTIVE_SAMPLERS, EDF_SAMPLERS, PRUNERS, SAMPLERS
from anynet_search.errors import InputError
from anynet_search.spaces import DesignSpace, Sample
from anynet_search.training.interface import TrainConfig  # torch-free: settings are read where nothing trains

SETTINGS_ATTR = "anynet_search"
#: Trainer fields that change how fast a model trains, not the error it reaches (same math: graphs, layouts).
SPEED_ONLY_FIELDS = frozenset({"eval_batch_size", "channels_last", "cuda_graphs", "cudnn_benchmark", "compile"})
#: Settings fields older versions stored and nothing reads any more (`max_failures` was never used).
RETIRED_FIELDS = frozenset({"max_failures"})
#: Layout of the stored settings. 1: the fields of `StudySettings` (plus the retired `max_failures`), stored
#: with no version; 2: the same plus FORMAT_KEY, WRITER_KEY and `pruner`, and `configs_from` where a study has
#: one; 3: plus `data_digest` (the data set's fingerprint), the trainer's `augment` (resolved, never auto) and
#: `repeat` where a study has one (`OPTIONAL_FIELDS`). A change of the layout bumps it and adds its migration to
#: `_migrate`; settings of a newer format are refused (a newer anynet-search wrote them).
SETTINGS_FORMAT = 3
FORMAT_KEY = "format"
WRITER_KEY = "written_by"  # the anynet-search version that last stored the settings
#: Fields an older layout or a sampled study may lack, read as these defaults (an empty trainer dict: the
#: trainer's defaults; no `configs_from`: a sampled study; no `pruner`: the sampler's default; no `repeat`: the
#: first training of its configs, slot s with seed + s).
FIELD_DEFAULTS: dict[str, Any] = {"train": {}, "configs_from": None, "pruner": None, "data_digest": None,
                                  "repeat": 0}
#: Trainer fields an older layout lacks, read as what that layout trained with (every study before format 3
#: used the shift augmentation; the trainer's default, `auto`, would stand for a choice never made).
TRAIN_FIELD_DEFAULTS: dict[str, Any] = {"augment": "shift"}
#: Optional fields stored only where they differ from their default, so that a study that does not use them
#: stays readable by versions that do not know them.
OPTIONAL_FIELDS = ("configs_from", "repeat")


def _package_version() -> str:
    import anynet_search

    return str(anynet_search.__version__)


class SettingsError(InputError):
    """Stored settings this version of anynet-search cannot read (one line naming both versions)."""


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Stored settings of an older or the current layout in the current one, without the version keys: format
    1 differs from 2 only by those keys; retired fields are dropped and FIELD_DEFAULTS filled in whatever the
    format."""
    data = {k: v for k, v in data.items() if k not in (FORMAT_KEY, WRITER_KEY, *RETIRED_FIELDS)}
    data = {**{k: v for k, v in FIELD_DEFAULTS.items() if k not in data}, **data}
    if isinstance(data["train"], dict):
        data["train"] = {**TRAIN_FIELD_DEFAULTS, **data["train"]}
    return data


@dataclass(frozen=True)
class StudySettings:
    """Everything a worker anywhere needs to run a study's trials; stored in the study itself."""

    space: dict[str, Any]
    space_source: str
    space_hash: str
    sampler: str
    seed: int
    n_trials: int
    dataset: str
    train: dict[str, Any]
    # the study whose trained configs this one trains, slot by slot (`configs_from.read_source`); None: sampled
    configs_from: dict[str, Any] | None = None
    pruner: str | None = None  # None: the sampler's default (studies made before --pruner stored none)
    # sha256 of the data the study trains on (`DataSplits.digest`: a store's content digest, or of what was read);
    # None for studies made before format 3
    data_digest: str | None = None
    # 0: slot s trains with seed + s; K >= 1: the K-th retraining of the same configs under other training seeds
    # (`train_seed`), the same data split and trainer: the difference between two repeats is the training noise
    repeat: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (a study user attribute), with the layout version and the writing version; optional
        fields at their default (`OPTIONAL_FIELDS`: a sampled study's `configs_from`, a first training's `repeat`)
        are left out."""
        data = dataclasses.asdict(self)
        for key in OPTIONAL_FIELDS:
            if data[key] == FIELD_DEFAULTS[key]:
                del data[key]
        return {**data, FORMAT_KEY: SETTINGS_FORMAT, WRITER_KEY: _package_version()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], study: str | None = None) -> StudySettings:
        """Settings from their stored dict, older layouts migrated; SettingsError (one line naming the study
        and both versions) for a newer layout, or keys this version does not know or misses."""
        where = f"study {study!r}" if study is not None else "a study"
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: its stored settings are not a mapping ({type(data).__name__})")
        version, writer = data.get(FORMAT_KEY, 1), data.get(WRITER_KEY)
        by = f"anynet-search {writer}" if writer else "another version of anynet-search"
        here = f"this anynet-search ({_package_version()}) reads settings formats 1..{SETTINGS_FORMAT}"
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SettingsError(f"{where}: stored settings format {version!r} is not a version number; "
                                f"{here}")
        if version > SETTINGS_FORMAT:
            raise SettingsError(f"{where} was stored by {by} in settings format {version}; {here}: upgrade "
                                "anynet-search to use it")
        fields = {f.name for f in dataclasses.fields(cls)}
        migrated = _migrate(data)
        unknown = sorted(set(migrated) - fields)
        if unknown:
            raise SettingsError(f"{where}: its stored settings (format {version}, by {by}) have key(s) "
                                f"{', '.join(unknown)} that format {version} does not have; {here}")
        missing = sorted(fields - set(migrated))
        if missing:
            raise SettingsError(f"{where}: its stored settings (format {version}, by {by}) lack "
                                f"{', '.join(missing)}; {here}")
        train = migrated["train"]
        known_train = {f.name for f in dataclasses.fields(TrainConfig)}
        if not isinstance(train, dict) or set(train) - known_train:
            extra = sorted(set(train) - known_train) if isinstance(train, dict) else [repr(train)]
            raise SettingsError(f"{where}: its stored trainer settings (by {by}) have {', '.join(extra)}, "
                                f"unknown to this anynet-search ({_package_version()})")
        return cls(**migrated)

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudySettings:
        """Settings stored in a study; ValueError if the study was not created by anynet-search."""
        settings = stored_settings(study)
        if settings is None:
            raise ValueError(
                f"study {study.study_name!r} was not created by anynet-search (no settings stored)"
            )
        return settings

    def train_seed(self, slot: int) -> int:
        """The training seed of a slot's model (`train_seed` of the study's seed and repeat)."""
        return train_seed(self.seed, slot, self.repeat)

    def design_space(self) -> DesignSpace:
        """The study's design space, rebuilt from the stored definition (no file needed)."""
        return DesignSpace(self.space, self.space_source)

    def train_config(self) -> TrainConfig:
        """The study's training hyperparameters."""
        return TrainConfig(**self.train)

    def outcome_settings(self) -> dict[str, Any]:
        """The settings that change what a trained model's error is: the data set and every trainer field but
        those that only change the speed (`SPEED_ONLY_FIELDS`); studies compared as samples must agree on them."""
        train = {**TrainConfig().to_dict(), **self.train}
        return {"dataset": self.dataset, **{k: v for k, v in train.items() if k not in SPEED_ONLY_FIELDS}}

    def other_data(self, other: StudySettings) -> str | None:
        """How `other` trains on other data than this study ('data set X (digest ...) vs Y (...)'), or None when
        the data is the same: the same digest (whatever the paths), or the same spec where a digest is missing."""
        mine, theirs = self.data_digest, other.data_digest
        if mine and theirs:
            if mine == theirs:
                return None
        elif self.dataset == other.dataset:
            return None
        return (f"data set {self.dataset} (digest {(mine or 'not recorded')[:12]}) vs {other.dataset} (digest "
                f"{(theirs or 'not recorded')[:12]})")

    @property
    def pruner_name(self) -> str:
        """The study's pruner: the stored one, else its sampler's default (`default_pruner`)."""
        return self.pruner or default_pruner(self.sampler)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The study's Optuna pruner (`make_pruner` of its sampler, pruner and epochs)."""
        return make_pruner(self.sampler, self.pruner, int(self.train.get("epochs", TrainConfig().epochs)))


def stored_settings(study: optuna.Study) -> StudySettings | None:
    """A study's stored settings, None if anynet-search did not make it; SettingsError if unreadable here."""
    data = study.user_attrs.get(SETTINGS_ATTR)
    if data is None or data == {}:
        return None
    return StudySettings.from_dict(data, study.study_name)


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of a study; random and QMC tickets arrive with their parameters fixed."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {kind!r}")
    if kind in EDF_SAMPLERS:
        return optuna.samplers.RandomSampler(seed=seed)
    # constraint values reach the samplers through Trial.set_constraint (see the worker)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


# the worst possible error in percent: what adaptive samplers are told for infeasible configs
INFEASIBLE_VALUE = 100.0


INFEASIBLE_ATTR = "infeasible"  # user attribute of a completed trial that was an infeasible suggestion


def is_trained(trial: optuna.trial.FrozenTrial) -> bool:
    """A completed trial that trained a model (not an infeasible suggestion told back to the sampler)."""
    return trial.state == optuna.trial.TrialState.COMPLETE and INFEASIBLE_ATTR not in trial.user_attrs


def default_pruner(sampler: str) -> str:
    """'none' for random / QMC studies, 'median' for adaptive samplers (what studies used before --pruner)."""
    return "none" if sampler in EDF_SAMPLERS else "median"


def check_pruner(sampler: str, pruner: str | None) -> None:
    """InputError for a pruner the sampler cannot use (any pruner but 'none' with random / QMC)."""
    if pruner is None:
        return
    if pruner not in PRUNERS:
        raise InputError(f"--pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    if sampler in EDF_SAMPLERS and pruner != "none":
        raise InputError(f"--pruner {pruner} with --sampler {sampler}: pruning stops the models that look worse "
                         "early, so their recorded errors would be those of shorter training and the EDFs of the "
                         "design space biased toward the models that looked good; prune only adaptive searches "
                         f"({', '.join(ADAPTIVE_SAMPLERS)})")


def make_pruner(kind: str, pruner: str | None = None, epochs: int = 8) -> optuna.pruners.BasePruner:
    """The Optuna pruner of a study: EDF studies never prune (it would truncate the distribution); adaptive ones
    use `pruner` (default: the median rule), with the training epochs as the resource."""
    check_pruner(kind, pruner)
    name = pruner or default_pruner(kind)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=8, n_warmup_steps=2)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=8, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


_STREAMS: dict[tuple[str, int, bool], list[Sample]] = {}


def stream_seed(seed: int, space: DesignSpace) -> int:
    """Seed of a study's config stream: the study seed combined with its space's hash.

    Studies of different spaces therefore draw independent streams even under the same `seed` (which
    also picks the data split, so they can share one): with one shared stream, a constrained space's
    configs would be the unconstrained space's draws that pass the constraint, and two studies compared
    as independent samples would hold the same models.
    """
    digest = hashlib.sha256(f"{int(seed)}:{space.hash}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def train_seed(seed: int, slot: int, repeat: int = 0) -> int:
    """The training seed (weights and batch order) of slot `slot`: seed + slot for the first training (repeat 0),
    else a hash of (seed, slot, repeat), in 0 .. 2**31 - 1, so that no repeat reuses a seed of another slot or
    repeat (a study seeded seed + k trains slot 0 with seed + k)."""
    if repeat == 0:
        return int(seed) + int(slot)
    digest = hashlib.sha256(f"train:{int(seed)}:{int(slot)}:{int(repeat)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def planned_sample(space: DesignSpace, sampler: str, seed: int, n_trials: int, slot: int,
                   attempt: int) -> Sample:
    """The config of a slot's attempt: element attempt * N + slot of the study's stream (`stream_seed`)."""
    index = attempt * n_trials + slot
    key = (space.hash, seed, sampler == "qmc")
    stream = _STREAMS.get(key, [])
    if index >= len(stream):  # the stream is prefix-stable: regrow it N samples at a time
        n = (index // n_trials + 1) * n_trials
        stream = space.sample_many(n, seed=stream_seed(seed, space), qmc=key[2])
        _STREAMS[key] = stream
    return stream[index]


def ticket_attrs(slot: int, attempt: int, retry_of: int | None = None, deaths: int = 0,
                 solo: bool = False) -> dict[str, Any]:
    """User attributes that identify a ticket (`deaths`: workers that already died on this config; `solo`: train it
    with no other trial in flight on its device, after it failed beside others without blame)."""
    attrs: dict[str, Any] = {"slot": slot, "attempt": attempt}
    if retry_of is not None:
        attrs["retry_of"] = retry_of
    if deaths:
        attrs["deaths"] = deaths
    if solo:
        attrs["solo"] = True
    return attrs


def source_params(source: dict[str, Any], slot: int) -> dict[str, Any]:
    """The parameters of the source study's trained config of `slot` (a `configs_from` record)."""
    return dict(zip(source["names"], source["values"][slot]))


def planned_params(settings: StudySettings, space: DesignSpace, slot: int, attempt: int) -> dict[str, Any]:
    """The fixed parameters of a slot's attempt: the planned config's for random / QMC studies (the source study's
    config for attempt 0 of a `configs_from` study), none for adaptive ones."""
    if settings.sampler not in EDF_SAMPLERS:
        return {}
    if settings.configs_from is not None and attempt == 0:
        return source_params(settings.configs_from, slot)
    return planned_sample(space, settings.sampler, settings.seed, settings.n_trials, slot, attempt).params


def enqueue_ticket(study: optuna.Study, settings: StudySettings, space: DesignSpace, slot: int, attempt: int,
                   params: dict[str, Any] | None = None, retry_of: int | None = None,
                   deaths: int = 0, solo: bool = False) -> None:
    """Add a WAITING trial for a slot (with the planned config's parameters for random / QMC studies)."""
    if params is None:
        params = planned_params(settings, space, slot, attempt)
    study.enqueue_trial(params, user_attrs=ticket_attrs(slot, attempt, retry_of, deaths, solo))


def planned_tickets(settings: StudySettings, space: DesignSpace,
                    first_slot: int = 0) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(parameters, user attributes) of the tickets for slots first_slot .. N-1 (a new study, or one whose N
    was raised), for `optuna_adapter.enqueue_many` to write in bulk."""
    return [(planned_params(settings, space, slot, 0), ticket_attrs(slot, 0))
            for slot in range(first_slot, settings.n_trials)]
