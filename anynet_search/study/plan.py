"""A study's settings and its work tickets: N slots, each finished by exactly one completed trial.

Every slot is a WAITING trial ("ticket") enqueued in the Optuna storage. Workers pop tickets atomically
(the storage's WAITING -> RUNNING transition), so no two workers train the same ticket. A failed attempt
(divergence, out of memory, a crash, an infeasible adaptive suggestion) is kept as a failed trial and
replaced by a ticket for the same slot with attempt + 1; a killed worker's ticket is replaced by one with
the same config. For random / QMC studies a ticket carries its config's parameters, drawn from one seeded
stream: slot k, attempt a uses stream element a * N + k, so the set of configs does not depend on the
number of workers or on timing; each space has its own stream (`stream_seed`). Adaptive samplers get
empty tickets and propose the parameters themselves.
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
    pruner: str | None = None  # None: the sampler's default (studies made before --pruner stored none)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored as a study user attribute)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        """Settings from their stored dict, ignoring the retired fields older versions stored."""
        return cls(**{k: v for k, v in data.items() if k not in RETIRED_FIELDS})

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudySettings:
        """Settings stored in a study; ValueError if the study was not created by anynet-search."""
        data = study.user_attrs.get(SETTINGS_ATTR)
        if not data:
            raise ValueError(
                f"study {study.study_name!r} was not created by anynet-search (no settings stored)"
            )
        return cls.from_dict(data)

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

    @property
    def pruner_name(self) -> str:
        """The study's pruner: the stored one, else its sampler's default (`default_pruner`)."""
        return self.pruner or default_pruner(self.sampler)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The study's Optuna pruner (`make_pruner` of its sampler, pruner and epochs)."""
        return make_pruner(self.sampler, self.pruner, int(self.train.get("epochs", TrainConfig().epochs)))


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


def _ticket_params(settings: StudySettings, space: DesignSpace, slot: int, attempt: int) -> dict[str, Any]:
    """The fixed parameters of a ticket: the planned config's for random / QMC studies, none for adaptive."""
    if settings.sampler not in EDF_SAMPLERS:
        return {}
    return planned_sample(space, settings.sampler, settings.seed, settings.n_trials, slot, attempt).params


def enqueue_ticket(study: optuna.Study, settings: StudySettings, space: DesignSpace, slot: int, attempt: int,
                   params: dict[str, Any] | None = None, retry_of: int | None = None,
                   deaths: int = 0, solo: bool = False) -> None:
    """Add a WAITING trial for a slot (with the planned config's parameters for random / QMC studies)."""
    if params is None:
        params = _ticket_params(settings, space, slot, attempt)
    study.enqueue_trial(params, user_attrs=ticket_attrs(slot, attempt, retry_of, deaths, solo))


def planned_tickets(settings: StudySettings, space: DesignSpace,
                    first_slot: int = 0) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(parameters, user attributes) of the tickets for slots first_slot .. N-1 (a new study, or one whose N
    was raised), for `optuna_adapter.enqueue_many` to write in bulk."""
    return [(_ticket_params(settings, space, slot, 0), ticket_attrs(slot, 0))
            for slot in range(first_slot, settings.n_trials)]
