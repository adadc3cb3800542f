"""The in-flight engine on the CPU: k training tasks interleaved give what one at a time gives, a failing task
ends alone, and closing the engine runs every task's clean-up."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from anynet_search import AnyNetConfig, build_model
from anynet_search.training.data import load_dataset
from anynet_search.training.engine import MAX_SLOTS, InFlight
from anynet_search.training.fences import Delay, Fence, drive
from anynet_search.training.train import DivergedError, TrainConfig, seed_everything, train_task

CFG = AnyNetConfig(depths=(1, 1), widths=(16, 32), bottleneck_ratios=(1, 1), group_widths=(8, 8), strides=(1, 2),
                   stem_type="cifar", stem_width=8, num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def data():
    digits = load_dataset("digits", resolution=16, seed=0)
    return dataclasses.replace(digits, train_x=digits.train_x[:400], train_y=digits.train_y[:400])


def task_for(seed, data, cfg=None, **train):
    """A training task whose model is built under `seed` (built when the task is made, like the worker does)."""
    seed_everything(seed)
    model = build_model(CFG)
    return model, train_task(model, data, cfg or TrainConfig(epochs=2, batch_size=32, **train), "cpu", seed=seed)


def test_tasks_in_flight_give_what_one_at_a_time_gives(data):
    alone = {}
    for seed in (1, 2, 3):
        model, task = task_for(seed, data)
        alone[seed] = (drive(task), [p.detach().clone() for p in model.parameters()])
    engine = InFlight("cpu", 3)
    models = {}
    for seed in (1, 2, 3):
        models[seed], task = task_for(seed, data)
        engine.start(seed, task)
    ended = engine.run_all()
    assert sorted(f.key for f in ended) == [1, 2, 3] and all(f.error is None for f in ended)
    for f in ended:
        result, weights = alone[f.key]
        assert f.value.history == result.history and f.value.test_error == result.test_error
        assert all(torch.equal(a, b) for a, b in zip(weights, models[f.key].parameters()))


def test_tasks_really_interleave(data):
    order = []

    def tagged(key, task):
        while True:
            try:
                fence = next(task)
            except StopIteration as stop:
                return stop.value
            order.append(key)
            yield fence

    engine = InFlight("cpu", 2)
    for seed in (1, 2):
        engine.start(seed, tagged(seed, task_for(seed, data)[1]))
    engine.run_all()
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches > len(order) / 2  # round robin: the two tasks alternate step by step


def test_a_failing_task_ends_alone_and_the_others_finish(data):
    engine = InFlight("cpu", 3)
    engine.start("ok-1", task_for(1, data)[1])
    engine.start("diverges", task_for(2, data, lr=1e6)[1])
    engine.start("ok-3", task_for(3, data)[1])
    ended = {f.key: f for f in engine.run_all()}
    assert isinstance(ended["diverges"].error, DivergedError)
    assert ended["ok-1"].error is None and ended["ok-3"].error is None
    assert 0 <= ended["ok-1"].value.val_error <= 100


def test_close_all_ends_every_task_at_its_yield_and_runs_its_clean_up(data):
    cleaned = []

    def guarded(key, task):
        try:
            return (yield from task)
        except GeneratorExit:
            cleaned.append(key)
            raise

    engine = InFlight("cpu", 2)
    for key in ("a", "b"):
        engine.start(key, guarded(key, task_for(1, data)[1]))
    for _ in range(3):
        assert engine.run_round() == []
    assert sorted(engine.close_all()) == ["a", "b"] and sorted(cleaned) == ["a", "b"]
    assert engine.busy == 0 and engine.free == 2


def test_slots_are_bounded_and_a_full_engine_refuses_more(data):
    for bad in (0, -1, MAX_SLOTS + 1, True, 2.0):
        with pytest.raises(ValueError, match="slots"):
            InFlight("cpu", bad)
    engine = InFlight("cpu", 1)
    engine.start("a", iter(()))
    with pytest.raises(ValueError, match="busy"):
        engine.start("b", iter(()))


def test_a_delay_keeps_its_task_waiting_without_blocking_the_others():
    log = []

    def sleeper():
        log.append("sleep")
        yield Delay(0.05)
        log.append("woke")

    def worker():
        for i in range(3):
            log.append(i)
            yield None

    engine = InFlight("cpu", 2)
    engine.start("s", sleeper())
    engine.start("w", worker())
    engine.run_all()
    assert log.index("woke") > log.index(2)  # the worker ran all its steps while the sleeper waited


def test_cpu_fences_are_done_at_once():
    fence = Fence(torch.device("cpu"), timing=True)
    assert fence.done()
    fence.wait()
    assert Fence(torch.device("cpu")).seconds_since(fence) >= 0


def test_set_up_threads_change_nothing_in_the_results(data):
    """Eager steps handed to set-up threads (what a GPU worker does with warm-ups and captures) train bitwise what
    the engine's own thread trains: a task waits on each handed-over step, and no thread draws from the global
    generators."""
    from anynet_search.training import setup_threads

    ended = {}
    for threads in (None, 2):
        pool = setup_threads.SetupThreads(threads) if threads else None
        setup_threads.install(pool)
        try:
            engine = InFlight("cpu", 3)
            for seed in (1, 2, 3):
                engine.start(seed, task_for(seed, data)[1])
            ended[threads] = {f.key: f.value for f in engine.run_all()}
        finally:
            setup_threads.install(None)
            if pool is not None:
                pool.close()
    for seed in (1, 2, 3):
        assert ended[2][seed].history == ended[None][seed].history
        assert ended[2][seed].final_train_loss == ended[None][seed].final_train_loss
    with pytest.raises(ValueError, match="threads"):
        setup_threads.SetupThreads(0)


def test_a_failure_inside_a_set_up_thread_reaches_its_task(data):
    from anynet_search.training import setup_threads
    from anynet_search.training.interface import OutOfMemoryError

    class OomAt(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            seed_everything(0)
            self.inner, self.calls = build_model(CFG), 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(x)

    pool = setup_threads.SetupThreads(1)
    setup_threads.install(pool)
    try:
        engine = InFlight("cpu", 2)
        engine.start("oom", train_task(OomAt(), data, TrainConfig(epochs=1, batch_size=32), "cpu"))
        engine.start("ok", task_for(1, data)[1])
        ended = {f.key: f for f in engine.run_all()}
    finally:
        setup_threads.install(None)
        pool.close()
    assert isinstance(ended["oom"].error, OutOfMemoryError) and "epoch 1 step 3" in ended["oom"].error.reason
    assert ended["ok"].error is None
