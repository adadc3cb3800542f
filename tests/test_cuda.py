"""The CUDA paths: bf16 + channels-last training, CUDA graphs, OOM and divergence as recorded failures,
several workers pinned to one GPU, and a killed GPU worker. Skipped without a GPU (`pytest -m cuda` on one);
`benchmarks/gpu_check.sh` runs them on a lent GPU."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch
from optuna.trial import TrialState

from anynet_search import AnyNetConfig, build_model
from anynet_search.study import RunOptions, Worker, prepare_study, run_study
from anynet_search.study.objective import run_trial
from anynet_search.study.storage import open_storage
from anynet_search.training.data import load_dataset
from anynet_search.training.engine import InFlight
from anynet_search.training.fences import drive
from anynet_search.training.train import (
    DivergedError,
    OutOfMemoryError,
    TrainConfig,
    seed_everything,
    train,
    train_task,
)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SMALL = AnyNetConfig(depths=(1, 2, 1), widths=(16, 32, 64), bottleneck_ratios=(1, 2, 1), group_widths=(8, 8, 16),
                     strides=(1, 2, 2), stem_type="cifar", stem_width=16, num_classes=10)


def opts(tmp_path, **kw):
    base = dict(space="anynet_xa_tiny", trials=4, workers=1, dataset="synthetic:300", out=str(tmp_path / "runs"),
                devices="cuda:0", train_overrides=(("epochs", 1),))
    base.update(kw)
    return RunOptions(**base)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic:600", 32, seed=0)


def test_training_runs_in_bf16_and_channels_last_on_the_gpu(data):
    seed_everything(0)
    model = build_model(SMALL)
    dtypes = []
    model.stem[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    result = train(model, data, TrainConfig(epochs=2, batch_size=64), device="cuda", seed=0)
    assert torch.bfloat16 in dtypes  # autocast ran the convs in bf16
    weight = model.stages[0][0].b[0].weight
    assert weight.is_cuda and weight.dtype == torch.float32  # master weights stay fp32
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert 0.0 <= result.val_error < 90.0 and len(result.history) == 2
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 0
    assert result.step_mode == "cuda_graph"  # the whole step is one CUDA graph by default


def _run(data, cuda_graphs, **kw):
    seed_everything(3)
    model = build_model(SMALL)
    cfg = TrainConfig(epochs=2, cuda_graphs=cuda_graphs, **kw)
    result = train(model, data, cfg, device="cuda", seed=3)
    return result, [p.detach().float().cpu() for p in model.parameters()]


def test_cuda_graph_steps_compute_what_eager_steps_compute(data):
    # deterministic cuDNN and fp32: the replayed graph runs the very kernels of the eager steps.
    # batch 72 leaves a partial last batch (405 = 5 * 72 + 45), which runs eagerly between replays.
    torch.backends.cudnn.deterministic = True
    try:
        eager, w_eager = _run(data, False, batch_size=72, amp=False, cudnn_benchmark=False)
        graph, w_graph = _run(data, True, batch_size=72, amp=False, cudnn_benchmark=False)
    finally:
        torch.backends.cudnn.deterministic = False
    assert graph.step_mode == "cuda_graph" and eager.step_mode == "eager"
    assert graph.history == pytest.approx(eager.history, abs=2.0)  # 60 validation images: at most one flips
    assert graph.final_train_loss == pytest.approx(eager.final_train_loss, rel=1e-3)
    for a, b in zip(w_eager, w_graph):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_cuda_graphs_with_bf16_train_to_a_finite_error(data):
    result, _ = _run(data, True, batch_size=64)
    assert result.step_mode == "cuda_graph"
    assert 0.0 <= result.val_error < 90.0


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_divergence_is_detected_on_the_gpu(data, cuda_graphs):
    model = build_model(SMALL)
    with pytest.raises(DivergedError, match="nan|inf"):
        train(model, data, TrainConfig(epochs=3, batch_size=32, lr=1e6, cuda_graphs=cuda_graphs), device="cuda")


def test_out_of_memory_is_a_recorded_failure_and_the_gpu_trains_on(data):
    huge = AnyNetConfig(depths=(8, 8), widths=(2048, 2048), bottleneck_ratios=(1, 1), group_widths=(64, 64),
                        strides=(1, 2), stem_type="cifar", stem_width=64, num_classes=10)
    fraction = 2.0 * 2**30 / torch.cuda.get_device_properties(0).total_memory  # a 2 GiB budget
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    try:
        with pytest.raises(OutOfMemoryError, match="out of memory at batch size 256"):
            train(build_model(huge), data, TrainConfig(epochs=1, batch_size=256), device="cuda")
        assert torch.cuda.memory_allocated(0) < 1.0 * 2**30  # released before raising
        result = train(build_model(SMALL), data, TrainConfig(epochs=1, batch_size=64), device="cuda")
        assert 0.0 <= result.val_error <= 100.0
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)


HUGE_SLOT = 1


def _huge_on_slot_one(trial, cfg, settings, resolution, device):
    if trial.user_attrs["slot"] == HUGE_SLOT and trial.user_attrs["attempt"] == 0:
        cfg = AnyNetConfig(depths=(8, 8), widths=(2048, 2048), bottleneck_ratios=(1, 1), group_widths=(64, 64),
                           strides=(1, 2), stem_type="cifar", stem_width=64, num_classes=cfg.num_classes,
                           in_channels=cfg.in_channels)
    return run_trial(trial, cfg, settings, resolution, device)


def test_an_oom_trial_in_a_study_is_recorded_and_the_next_trial_on_that_gpu_trains(tmp_path):
    study, *_ = prepare_study(opts(tmp_path, trials=3))
    torch.cuda.set_per_process_memory_fraction(2.0 * 2**30 / torch.cuda.get_device_properties(0).total_memory, 0)
    try:
        Worker(study, device="cuda:0", objective=_huge_on_slot_one).run()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["slot"] == HUGE_SLOT
    assert "out of memory" in failed[0].user_attrs["failure"]
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["slot"] for t in done) == [0, 1, 2]  # the slot's next config trained on the GPU
    assert all(t.user_attrs["result"]["peak_memory_mb"] > 0 for t in done)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_share_one_gpu(tmp_path, workers):
    n = 2 * workers
    outcome = run_study(opts(tmp_path, trials=n, workers=workers))
    assert outcome.snapshot.completed == n and outcome.failing_message is None
    study = optuna.load_study(study_name=outcome.study_name, storage=open_storage(outcome.storage_url))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == n
    assert {t.user_attrs["device"] for t in done} == {"cuda:0"}
    assert {t.user_attrs["worker"] for t in done} <= {f"w{i}" for i in range(workers)}
    assert all(t.user_attrs["result"]["peak_memory_mb"] > 0 for t in done)  # really trained on the GPU


def test_a_killed_gpu_worker_is_requeued(tmp_path):
    o = opts(tmp_path, trials=4, dataset="synthetic:3000", train_overrides=(("epochs", 6),))  # seconds per trial
    study, _, url, _ = prepare_study(o)
    env = dict(os.environ)

    def worker():
        return subprocess.Popen([sys.executable, "-m", "anynet_search", "worker", "--study", study.study_name,
                                 "--storage", url, "--device", "cuda:0", "--threads", "1", "--in-flight", "1"],
                                env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    victim = worker()
    deadline = time.time() + 120
    while time.time() < deadline and not any(t.system_attrs.get("pid") == victim.pid and "config" in t.user_attrs
                                             for t in study.get_trials(states=(TrialState.RUNNING,))):
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = worker()
    assert survivor.wait(timeout=300) == 0, survivor.stderr.read()
    died = [t for t in study.get_trials(states=(TrialState.FAIL,)) if "worker died" in t.user_attrs.get("failure", "")]
    assert len(died) == 1
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["slot"] for t in done) == [0, 1, 2, 3]
    retried = [t for t in done if t.user_attrs.get("retry_of") == died[0].number]
    assert len(retried) == 1 and retried[0].params == died[0].params


# ------------------------------------------------------------------------------- trials in flight on streams


@pytest.fixture
def deterministic():
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic = False


def _task(seed, data, **kw):
    seed_everything(seed)
    model = build_model(SMALL)
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 64, "amp": False, **kw})
    return model, train_task(model, data, cfg, "cuda:0", seed=seed, reset_peak=False)


def _alone(seed, data, **kw):
    model, task = _task(seed, data, **kw)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        result = drive(task)
    torch.cuda.synchronize()
    return result, [p.detach().cpu() for p in model.parameters()]


def _in_flight(data, seeds, per_seed=None):
    per_seed = per_seed or {}
    engine = InFlight("cuda:0", len(seeds))
    models = {}
    for seed in seeds:
        models[seed], task = _task(seed, data, **per_seed.get(seed, {}))
        engine.start(seed, task)
    ended = {f.key: f for f in engine.run_all()}
    torch.cuda.synchronize()
    return ended, {k: [p.detach().cpu() for p in m.parameters()] for k, m in models.items()}


def test_trials_in_flight_on_streams_give_what_one_at_a_time_gives(data, deterministic):
    alone = {seed: _alone(seed, data) for seed in (1, 2, 3)}
    ended, weights = _in_flight(data, (1, 2, 3))
    for seed, (result, w) in alone.items():
        f = ended[seed]
        assert f.error is None and f.value.step_mode == "cuda_graph"
        assert f.value.history == result.history and f.value.test_error == result.test_error
        for a, b in zip(w, weights[seed]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_diverging_trial_among_those_in_flight_leaves_the_others_intact(data, deterministic):
    alone = {seed: _alone(seed, data) for seed in (1, 3)}
    ended, weights = _in_flight(data, (1, 2, 3), {2: {"lr": 1e6}})
    assert isinstance(ended[2].error, DivergedError)
    for seed in (1, 3):
        assert ended[seed].value.history == alone[seed][0].history
        for a, b in zip(alone[seed][1], weights[seed]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _SyncsInForward(torch.nn.Module):
    """A model whose forward reads a value on the host: fine eagerly, impossible inside a CUDA graph."""

    def __init__(self) -> None:
        super().__init__()
        seed_everything(0)
        self.inner = build_model(SMALL)

    def forward(self, x):
        out = self.inner(x)
        if float(out.detach().abs().max()) < 0:  # a host sync
            raise AssertionError
        return out


def test_a_failed_capture_falls_back_to_eager_for_that_trial_only(data):
    model = _SyncsInForward()
    result = train(model, data, TrainConfig(epochs=2, batch_size=64), device="cuda", seed=0)
    assert result.step_mode.startswith("eager (CUDA graph capture failed")
    assert 0.0 <= result.val_error <= 100.0 and len(result.history) == 2
    after = train(build_model(SMALL), data, TrainConfig(epochs=1, batch_size=64), device="cuda", seed=0)
    assert after.step_mode == "cuda_graph"  # the next trial captures again


def test_set_up_threads_on_the_gpu_change_nothing_in_the_results(data, deterministic):
    """Warm-up steps and captures on set-up threads (the default of a GPU worker with trials in flight), each on
    its trial's stream, while the engine's thread replays the others' graphs."""
    from anynet_search.training import setup_threads

    alone = {seed: _alone(seed, data) for seed in (1, 2, 3)}
    pool = setup_threads.SetupThreads(2)
    setup_threads.install(pool)
    try:
        ended, weights = _in_flight(data, (1, 2, 3))
    finally:
        setup_threads.install(None)
        pool.close()
    for seed, (result, w) in alone.items():
        assert ended[seed].error is None and ended[seed].value.step_mode == "cuda_graph"
        assert ended[seed].value.history == result.history
        for a, b in zip(w, weights[seed]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_default_gpu_study_keeps_trials_in_flight_on_graphs(tmp_path):
    outcome = run_study(opts(tmp_path, trials=6, workers=None, in_flight=3))
    assert outcome.snapshot.completed == 6 and outcome.failing_message is None
    study = optuna.load_study(study_name=outcome.study_name, storage=open_storage(outcome.storage_url))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert {t.user_attrs["result"]["step_mode"] for t in done} == {"cuda_graph"}
    assert max(t.user_attrs["in_flight"] for t in done) == 3
    assert {t.user_attrs["worker"] for t in done} == {"w0"}  # one process for the GPU


# ------------------------------------------------------------------------------------ prepared stores


@pytest.fixture(scope="module")
def store32(tmp_path_factory):
    """600 synthetic images stored at 36 px (a margin around 32 px), as uint8 rows."""
    import numpy as np
    from stores import write_store

    from anynet_search.training.data import synthetic_images

    x, y = synthetic_images(600, 36)
    images = np.clip(np.round(128 + 25 * x.numpy()), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()
    out = tmp_path_factory.mktemp("store") / "s36"
    write_store(out, images, y.numpy(), (np.arange(600) >= 480).astype(np.int8), [str(c) for c in range(10)], 32)
    return out


@pytest.mark.parametrize("stream", ["0", "1"])
def test_a_store_trains_in_graphs_uploaded_or_streamed_from_the_host(store32, stream, monkeypatch):
    monkeypatch.setenv("ANYNET_STREAM_DATA", stream)
    data = load_dataset(f"prepared:{store32}", 32, seed=0)
    seed_everything(0)
    result = train(build_model(SMALL), data, TrainConfig(epochs=2, batch_size=64), device="cuda", seed=0)
    assert result.step_mode == "cuda_graph"  # the ImageNet protocol (auto: the store has a margin) is captured
    assert 0.0 <= result.val_error < 90.0 and len(result.history) == 2


def test_graphed_store_steps_compute_what_eager_store_steps_compute(store32):
    data = load_dataset(f"prepared:{store32}", 32, seed=0)
    torch.backends.cudnn.deterministic = True
    try:
        eager, w_eager = _run(data, False, batch_size=72, amp=False, cudnn_benchmark=False, augment="imagenet")
        graph, w_graph = _run(data, True, batch_size=72, amp=False, cudnn_benchmark=False, augment="imagenet")
    finally:
        torch.backends.cudnn.deterministic = False
    assert graph.step_mode == "cuda_graph" and eager.step_mode == "eager"
    assert graph.final_train_loss == pytest.approx(eager.final_train_loss, rel=1e-3)
    for a, b in zip(w_eager, w_graph):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
