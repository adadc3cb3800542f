"""Tests for anynet_search.training.train: learning, determinism, schedule, param groups, failures,
callbacks."""

from __future__ import annotations

import dataclasses
import math
import time

import optuna
import pytest
import torch
from torch import nn

import anynet_search.training.inputs as inputs_mod
import anynet_search.training.train as train_mod
from anynet_search.training.data import DataSplits, load_dataset
from anynet_search.training.train import (
    DIVERGENCE_CHECK_EVERY,
    DivergedError,
    OutOfMemoryError,
    TrainConfig,
    TrainResult,
    TrialFailure,
    evaluate,
    lr_at,
    make_generator,
    param_groups,
    plan_batches,
    seed_everything,
    train,
)


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_dataset("digits", resolution=16, seed=0)


@pytest.fixture(scope="module")
def small_digits(digits: DataSplits) -> DataSplits:
    """A 320-image training subset (5 steps of 64 per epoch) for the tests that only check mechanics."""
    return dataclasses.replace(digits, train_x=digits.train_x[:320], train_y=digits.train_y[:320])


def small_cnn(in_channels: int = 1, num_classes: int = 10, width: int = 16, seed: int = 0) -> nn.Module:
    """A 3-conv BN CNN (~25K params at width 16), built under `seed`."""
    seed_everything(seed)
    w = width
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1, bias=False),
        nn.BatchNorm2d(w),
        nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * w),
        nn.ReLU(),
        nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(4 * w),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, num_classes),
    )


class PoisonAfter(nn.Module):
    """Wraps a model; from training forward call `after` on (or in eval mode, if `in_eval`) outputs `value`."""

    def __init__(self, inner: nn.Module, after: int = 0, value: float = math.nan, in_eval: bool = False):
        super().__init__()
        self.inner, self.after, self.value, self.in_eval = inner, after, value, in_eval
        self.train_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.train_calls += 1
            if not self.in_eval and self.train_calls > self.after:
                out = out * self.value
        elif self.in_eval:
            out = out * self.value
        return out


# ---------------------------------------------------------------------------------------------- learning


def test_small_cnn_learns_digits_fast(digits: DataSplits) -> None:
    calls: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    result = train(small_cnn(), digits, TrainConfig(), seed=0, report=lambda e, v: calls.append((e, v)))
    wall = time.perf_counter() - t0
    assert isinstance(result, TrainResult)
    assert result.epochs == TrainConfig().epochs == len(result.history)
    assert result.val_error == result.history[-1]
    assert result.val_error < 10.0 and result.test_error < 10.0, result
    assert math.isfinite(result.final_train_loss) and result.final_train_loss < 1.5
    assert 0 < result.train_seconds < wall and 0 < result.eval_seconds < wall
    assert calls == [(i + 1, v) for i, v in enumerate(result.history)]
    assert wall < 60.0  # ~2 s on an idle 2-core CPU; generous for a loaded machine


def test_model_left_on_device_in_eval_mode(small_digits: DataSplits) -> None:
    model = small_cnn()
    train(model, small_digits, TrainConfig(epochs=1, batch_size=64))
    assert not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_is_bitwise_identical_different_seed_differs(small_digits: DataSplits) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64)
    a_model, b_model = small_cnn(seed=1), small_cnn(seed=1)
    a = train(a_model, small_digits, cfg, seed=7)
    b = train(b_model, small_digits, cfg, seed=7)
    assert a.history == b.history
    assert (a.val_error, a.test_error, a.final_train_loss) == (b.val_error, b.test_error, b.final_train_loss)
    for pa, pb in zip(a_model.state_dict().values(), b_model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    c = train(small_cnn(seed=1), small_digits, cfg, seed=8)
    assert (c.history, c.final_train_loss) != (a.history, a.final_train_loss)


def test_make_generator_and_seed_everything_are_reproducible() -> None:
    g1, g2 = make_generator(3), make_generator(3)
    assert torch.equal(torch.randperm(50, generator=g1), torch.randperm(50, generator=g2))
    seed_everything(5)
    x = torch.rand(4)
    seed_everything(5)
    assert torch.equal(x, torch.rand(4))


# -------------------------------------------------------------------------------------------- divergence


def test_huge_lr_diverges_quickly_with_reason(small_digits: DataSplits) -> None:
    epochs_seen: list[int] = []
    with pytest.raises(DivergedError, match=r"nan|inf") as info:
        train(
            small_cnn(),
            small_digits,
            TrainConfig(epochs=20, batch_size=32, lr=1e6),
            report=lambda e, v: epochs_seen.append(e),
        )
    assert isinstance(info.value, TrialFailure)
    assert info.value.reason == str(info.value)
    assert "epoch" in info.value.reason and "step" in info.value.reason
    assert len(epochs_seen) < 3  # stopped long before the 20 requested epochs


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_loss_stops_within_check_interval(small_digits: DataSplits, value: float) -> None:
    # 320 images at batch 16 = 20 steps per epoch; poison from the 3rd step on.
    model = PoisonAfter(small_cnn(), after=2, value=value)
    reports: list[int] = []
    with pytest.raises(DivergedError, match=r"loss became (nan|inf) at epoch 1 step 10"):
        train(
            model, small_digits, TrainConfig(epochs=5, batch_size=16), report=lambda e, v: reports.append(e)
        )
    assert reports == []
    assert model.train_calls <= 2 + DIVERGENCE_CHECK_EVERY


def test_nonfinite_outputs_at_evaluation_are_divergence(small_digits: DataSplits) -> None:
    model = PoisonAfter(small_cnn(), value=math.nan, in_eval=True)
    with pytest.raises(DivergedError, match=r"nan/inf.*validation.*epoch 1"):
        train(model, small_digits, TrainConfig(epochs=3, batch_size=64))


# ------------------------------------------------------------------------------------ schedule and optim


def test_lr_schedule_warmup_then_cosine() -> None:
    total, warm, peak = 100, 10, 0.4
    lrs = [lr_at(s, total, warm, peak) for s in range(total)]
    assert lrs[0] == pytest.approx(peak / warm) and lrs[0] <= 0.1 * peak + 1e-12
    assert all(b > a for a, b in zip(lrs[:warm], lrs[1:warm], strict=False))  # linear warmup
    assert lrs[warm - 1] == pytest.approx(peak) and lrs[warm] == pytest.approx(peak)
    assert max(lrs) == pytest.approx(peak)
    assert all(b < a for a, b in zip(lrs[warm:], lrs[warm + 1 :], strict=False))  # cosine decay
    mid = warm + (total - warm) // 2
    assert lrs[mid] == pytest.approx(peak / 2)
    assert lrs[-1] < 0.001 * peak
    assert lr_at(total, total, warm, peak) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(0, 10, 0, 1.0) == 1.0  # no warmup: start at the peak
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_at(0, 10, 11, 1.0)
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(0, 0, 0, 1.0)


def test_train_follows_the_schedule_per_step(
    small_digits: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int, int, float]] = []
    real = train_mod.lr_at

    def spy(step: int, total: int, warm: int, peak: float) -> float:
        seen.append((step, total, warm, peak))
        return real(step, total, warm, peak)

    monkeypatch.setattr(train_mod, "lr_at", spy)
    train(small_cnn(), small_digits, TrainConfig(epochs=4, batch_size=64, lr=0.3, warmup_epochs=0.5))
    steps = len(plan_batches(320, 64)) * 4
    assert [s[0] for s in seen] == list(range(steps))
    assert {s[1:] for s in seen} == {(steps, round(0.5 * 5), 0.3)}

    seen.clear()  # one epoch with the default one-epoch warmup: warmup capped at half, so the lr still decays
    train(small_cnn(), small_digits, TrainConfig(epochs=1, batch_size=32))
    assert {s[1:3] for s in seen} == {(10, 5)}


def test_param_groups_exclude_norm_and_bias_from_weight_decay() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 4))
    groups = param_groups(model, 5e-4)
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decay == {id(model[0].weight), id(model[3].weight)}
    assert no_decay == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[3].bias)}
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(frozen, 1e-4)


def test_train_uses_nesterov_sgd_with_those_groups(
    small_digits: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[torch.optim.SGD] = []
    real_sgd = torch.optim.SGD

    def spy(*args, **kwargs):
        opt = real_sgd(*args, **kwargs)
        made.append(opt)
        return opt

    monkeypatch.setattr(torch.optim, "SGD", spy)
    model = small_cnn()
    train(model, small_digits, TrainConfig(epochs=1, batch_size=64, weight_decay=1e-3))
    (opt,) = made
    by_decay = {g["weight_decay"]: g for g in opt.param_groups}
    assert set(by_decay) == {1e-3, 0.0}
    assert all(p.ndim > 1 for p in by_decay[1e-3]["params"])
    assert all(p.ndim <= 1 for p in by_decay[0.0]["params"])
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_plan_batches_drops_tiny_remainders_and_never_makes_size_one() -> None:
    assert plan_batches(1294, 128) == [(i * 128, (i + 1) * 128) for i in range(10)]  # 14 left: dropped
    assert plan_batches(200, 128) == [(0, 128), (128, 200)]  # 72 >= 64: kept
    assert plan_batches(129, 128) == [(0, 128)]
    assert plan_batches(50, 128) == [(0, 50)]  # smaller than a batch: one batch of everything
    assert plan_batches(3, 2) == [(0, 2)]  # a remainder of 1 is never a batch
    for n in range(2, 300):
        for bs in (2, 3, 16, 64, 128):
            sizes = [b - a for a, b in plan_batches(n, bs)]
            assert sizes and min(sizes) >= 2 and max(sizes) <= bs
            assert n - sum(sizes) < max(bs, 2)
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches(10, 1)


# ------------------------------------------------------------------------------------------ augmentation


def test_augmentation_uses_crop_pad_and_dataset_flip(
    small_digits: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, bool, int]] = []
    real = inputs_mod.shift_flip

    def spy(x: torch.Tensor, pad: int, offsets: torch.Tensor | None, mirror: torch.Tensor | None) -> torch.Tensor:
        if offsets is not None:  # every crop lies inside the padded image
            assert int(offsets.min()) >= 0 and int(offsets.max()) <= 2 * pad
        calls.append((pad, mirror is not None, x.shape[0]))
        return real(x, pad, offsets, mirror)

    monkeypatch.setattr(inputs_mod, "shift_flip", spy)
    train(small_cnn(), small_digits, TrainConfig(epochs=1, batch_size=64))
    assert calls and set(calls) == {(16 // 8, False, 64)}  # digits: pad = resolution // 8, no flips

    calls.clear()
    flipped = dataclasses.replace(small_digits, flip=True)
    train(small_cnn(), flipped, TrainConfig(epochs=1, batch_size=64, crop_pad=3))
    assert set(calls) == {(3, True, 64)}

    calls.clear()
    train(small_cnn(), small_digits, TrainConfig(epochs=1, batch_size=64, crop_pad=0))
    assert calls == []  # nothing to augment: no call, no copy


# ----------------------------------------------------------------------------------- report and pruning


def test_report_raising_trial_pruned_propagates(small_digits: DataSplits) -> None:
    seen: list[tuple[int, float]] = []

    def report(epoch: int, val_error: float) -> None:
        seen.append((epoch, val_error))
        if epoch == 2:
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 2"):
        train(small_cnn(), small_digits, TrainConfig(epochs=5, batch_size=64), report=report)
    assert [e for e, _ in seen] == [1, 2]
    assert all(0.0 <= v <= 100.0 for _, v in seen)


def test_report_works_with_an_optuna_trial(small_digits: DataSplits) -> None:
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())

    def objective(trial: optuna.Trial) -> float:
        # Note the argument order: our callback takes (epoch, val_error), Trial.report takes (value, step).
        result = train(
            small_cnn(),
            small_digits,
            TrainConfig(epochs=2, batch_size=64),
            report=lambda e, v: trial.report(v, e),
        )
        return result.val_error

    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2]
    assert trial.intermediate_values[2] == trial.value


# ---------------------------------------------------------------------------------------- out of memory


def test_cuda_oom_becomes_a_recorded_failure(small_digits: DataSplits) -> None:
    class OomAt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = small_cnn()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 3:
                raise torch.cuda.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 2.00 GiB.\nGPU 0 has a total capacity of 8 GiB"
                )
            return self.inner(x)

    model = OomAt()
    with pytest.raises(OutOfMemoryError) as info:
        train(model, small_digits, TrainConfig(epochs=2, batch_size=32))
    err = info.value
    assert isinstance(err, TrialFailure) and not isinstance(err, torch.cuda.OutOfMemoryError)
    assert "out of memory" in err.reason and "batch size 32" in err.reason
    assert "epoch 1 step 3" in err.reason and "Tried to allocate 2.00 GiB" in err.reason
    assert "\n" not in err.reason
    assert err.__cause__ is None and err.__context__ is None  # no traceback keeps device tensors alive
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_oom_during_evaluation_is_reported_too(small_digits: DataSplits) -> None:
    model = small_cnn()

    class OomInEval(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
            return self.inner(x)

    with pytest.raises(OutOfMemoryError, match=r"batch size 64 \(validation, epoch 1\)"):
        train(OomInEval(), small_digits, TrainConfig(epochs=2, batch_size=64))


# -------------------------------------------------------------------------------------------- evaluate


def test_evaluate_counts_errors_and_restores_mode() -> None:
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(len(x), 3)
            logits[:, 1] = 1.0  # always predicts class 1
            return logits

    x = torch.zeros(10, 1, 4, 4)
    y = torch.tensor([1, 1, 1, 0, 2, 1, 1, 1, 1, 0])
    model = Fixed()
    assert evaluate(model, x, y, batch_size=3) == pytest.approx(30.0)
    assert model.training  # restored
    model.eval()
    assert evaluate(model, x, y, batch_size=100, device="cpu", amp=True) == pytest.approx(30.0)
    assert not model.training
    assert math.isnan(evaluate(PoisonAfter(Fixed(), value=math.inf, in_eval=True), x, y))
    with pytest.raises(ValueError, match="matching"):
        evaluate(model, x, y[:5])


# ------------------------------------------------------------------------------------------------ config


def test_train_config_defaults_validation_and_record() -> None:
    cfg = TrainConfig()
    d = cfg.to_dict()
    assert TrainConfig(**d) == cfg
    assert d["momentum"] == 0.9 and d["nesterov"] is True and d["label_smoothing"] == 0.1
    assert cfg.resolved_crop_pad(16) == 2 and cfg.resolved_crop_pad(32) == 4
    assert TrainConfig(crop_pad=0).resolved_crop_pad(32) == 0
    for bad, field in [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=1), "batch_size"),
        (dict(lr=0.0), "lr"),
        (dict(momentum=1.0), "momentum"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(warmup_epochs=11.0), "warmup_epochs"),
        (dict(crop_pad=-1), "crop_pad"),
        (dict(eval_batch_size=0), "eval_batch_size"),
    ]:
        with pytest.raises(ValueError, match=field):
            TrainConfig(**bad)


def test_train_result_to_dict_is_plain() -> None:
    r = TrainResult(1.0, 2.0, 0.5, 0.1, 2, (3.0, 1.0), 0.4)
    d = r.to_dict()
    assert d["history"] == [3.0, 1.0] and d["val_error"] == 1.0


def test_failures_pickle_with_their_reason() -> None:
    import pickle

    for cls in (DivergedError, OutOfMemoryError):
        err = pickle.loads(pickle.dumps(cls("loss became nan at epoch 1 step 10")))
        assert type(err) is cls and err.reason == "loss became nan at epoch 1 step 10"
