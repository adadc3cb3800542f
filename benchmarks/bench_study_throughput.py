"""Study throughput: a fixed N-trial study (anynet_xa_tiny on digits, default TrainConfig) end to end.

Three ways to train the same N configs, measured in one run:

1. `run_study(..., workers=1, devices="cpu")`: one worker process that gets all cores as torch threads;
2. `run_study(..., workers=2, devices="cpu")`: the default, two worker processes with cores // 2 threads each;
3. the "common recipe": one process with torch's default threads, a `torch.utils.data.DataLoader`
   (num_workers=0, shuffle, drop_last) over a map-style Dataset whose `__getitem__` does the per-sample
   random crop (zero pad + crop, no torchvision), fp32 NCHW, `torch.optim.SGD` with its CPU default
   (per-parameter loop), a `LambdaLR` schedule; the same configs (from the study's records), seeds,
   epochs, batch size, lr, warmup/cosine, label smoothing, weight decay, and per-epoch validation.

Definitions (W = workers, wall = seconds from calling `run_study` until it returns, study creation,
process spawn and shutdown included):

- models/min = completed trials / wall * 60;
- train = sum over trials of `train_seconds` (the trainer's epoch loops: augmentation, forward,
  backward, optimizer step, the per-epoch loss sync), eval = sum of `eval_seconds`;
- outside-training fraction = 1 - train / (W * wall): the share of the W workers' wall time not spent in
  training steps. It is split into: eval (eval / (W wall)); startup (per worker: first trial start - the
  call of `run_study`; covers study creation, ticket enqueueing, process spawn, imports, storage open);
  per-trial bookkeeping (everything inside a trial outside `train()`, plus popping tickets and storage
  writes: W wall - startup - tail - sum of `wall_seconds` + in-`train` setup); tail (per worker: `run_study`
  return - its last trial's end; idle while the other worker finishes, process exit, final snapshot).

Goals from the issue: the default study >= 1.5x faster (wall) than the common recipe on the same configs;
2 workers on 2 cores >= 1.6x the throughput of 1 worker using both cores.

    python benchmarks/bench_study_throughput.py              # 32 trials
    python benchmarks/bench_study_throughput.py --quick      # 8 trials
    python benchmarks/bench_study_throughput.py --trials 64
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, table, warn_if_busy  # noqa: E402

from anynet_search.models.config import AnyNetConfig  # noqa: E402
from anynet_search.models.model import build_model  # noqa: E402
from anynet_search.study import RunOptions, run_study  # noqa: E402
from anynet_search.study.progress import ProgressView  # noqa: E402
from anynet_search.study.storage import load_study, open_storage  # noqa: E402
from anynet_search.training.data import load_dataset  # noqa: E402
from anynet_search.training.train import TrainConfig, lr_at, seed_everything  # noqa: E402

SPACE, DATASET = "anynet_xa_tiny", "digits"


# ------------------------------------------------------------------------------------------ the study
def study_run(trials: int, workers: int, out: Path) -> dict:
    name = f"bench-w{workers}"
    opts = RunOptions(space=SPACE, trials=trials, workers=workers, dataset=DATASET, devices="cpu", study=name,
                      out=str(out), seed=0)
    t0 = time.time()
    outcome = run_study(opts, progress=ProgressView(stream=io.StringIO()))
    t_end = time.time()
    wall = t_end - t0
    if outcome.snapshot.completed < trials:
        raise RuntimeError(f"study ended with {outcome.snapshot.completed}/{trials} completed "
                           f"({outcome.failing_message})")
    study = load_study(name, open_storage(outcome.storage_url))
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and "result" in t.user_attrs]
    failed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
    train_s = sum(t.user_attrs["result"]["train_seconds"] for t in done)
    eval_s = sum(t.user_attrs["result"]["eval_seconds"] for t in done)
    inside_s = sum(t.user_attrs["result"]["wall_seconds"] for t in done)
    ran = [t for t in done + failed if t.datetime_start and t.datetime_complete]
    by_worker: dict[str, list] = {}
    for t in ran:
        by_worker.setdefault(str(t.user_attrs.get("worker", "?")), []).append(t)
    startup = sum(min(t.datetime_start for t in ts).timestamp() - t0 for ts in by_worker.values())
    tail = sum(t_end - max(t.datetime_complete for t in ts).timestamp() for ts in by_worker.values())
    budget = workers * wall
    configs = [(int(t.user_attrs["slot"]), AnyNetConfig.from_dict(t.user_attrs["config"]), t.value,
                int(t.user_attrs["train_seed"])) for t in done]
    configs.sort(key=lambda c: c[0])
    return {
        "wall": wall, "completed": len(done), "failed": len(failed), "train": train_s, "eval": eval_s,
        "inside": inside_s, "startup": startup, "tail": tail, "budget": budget,
        "bookkeeping": budget - startup - tail - inside_s, "setup_in_train": inside_s - train_s - eval_s,
        "configs": configs, "val_errors": [t.value for t in done], "workers": workers,
        "threads": max(1, len(os.sched_getaffinity(0)) // workers),
    }


# ------------------------------------------------------------------------------------------ common recipe
class CropDataset(torch.utils.data.Dataset):
    """Map-style dataset with a per-sample random crop (zero pad + crop), like a torchvision transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pad: int, train: bool) -> None:
        self.x, self.y, self.pad, self.train = x, y, pad, train

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i]
        if self.train and self.pad:
            h, w = img.shape[-2:]
            padded = F.pad(img, (self.pad,) * 4)
            top = int(torch.randint(0, 2 * self.pad + 1, ()))
            left = int(torch.randint(0, 2 * self.pad + 1, ()))
            img = padded[:, top:top + h, left:left + w]
        return img, self.y[i]


def recipe_train(cfg: AnyNetConfig, data, tc: TrainConfig, seed: int) -> tuple[float, float, float, float]:
    """(val error %, test error %, train-loop seconds, total seconds incl. build and eval)."""
    t_start = time.perf_counter()
    seed_everything(seed)
    model = build_model(cfg)
    pad = tc.resolved_crop_pad(data.resolution)
    train_loader = torch.utils.data.DataLoader(CropDataset(data.train_x, data.train_y, pad, True),
                                               batch_size=tc.batch_size, shuffle=True, drop_last=True, num_workers=0)
    val_loader = torch.utils.data.DataLoader(CropDataset(data.val_x, data.val_y, 0, False), batch_size=tc.eval_batch_size)
    test_loader = torch.utils.data.DataLoader(CropDataset(data.test_x, data.test_y, 0, False),
                                              batch_size=tc.eval_batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, nesterov=tc.nesterov,
                          weight_decay=tc.weight_decay)
    steps_per_epoch = len(train_loader)
    total = tc.epochs * steps_per_epoch
    warmup = min(total // 2, round(tc.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(min(s, total - 1), total, warmup, tc.lr) / tc.lr)

    def error(loader) -> float:
        model.eval()
        wrong = n = 0
        with torch.no_grad():
            for xb, yb in loader:
                wrong += int((model(xb).argmax(1) != yb).sum())
                n += len(yb)
        model.train()
        return 100.0 * wrong / n

    train_s, val = 0.0, float("nan")
    for _ in range(tc.epochs):
        t0 = time.perf_counter()
        model.train()
        for xb, yb in train_loader:
            loss = F.cross_entropy(model(xb), yb, label_smoothing=tc.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        train_s += time.perf_counter() - t0
        val = error(val_loader)
    test = error(test_loader)
    return val, test, train_s, time.perf_counter() - t_start


def recipe_run(configs: list) -> dict:
    t0 = time.perf_counter()
    data = load_dataset(DATASET, 16, seed=0)
    tc = TrainConfig()
    vals, train_s = [], 0.0
    for _, cfg, _, seed in configs:
        val, _, tr, _ = recipe_train(cfg, data, tc, seed)
        vals.append(val)
        train_s += tr
    wall = time.perf_counter() - t0
    return {"wall": wall, "completed": len(configs), "train": train_s, "val_errors": vals,
            "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="8 trials")
    p.add_argument("--trials", type=int, default=None, help="trials per study (default 32, quick 8)")
    p.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = p.parse_args(argv)
    trials = args.trials or (8 if args.quick else 32)

    print("# bench_study_throughput")
    print("machine:", machine_line())
    print(f"study: space {SPACE}, dataset {DATASET}, {trials} trials, TrainConfig() = {TrainConfig()}")
    warn_if_busy()
    out = Path(tempfile.mkdtemp(prefix="anynet-bench-study-"))
    try:
        runs = {}
        for workers in (2, 1):
            print(f"  running the study with {workers} worker(s) ...", file=sys.stderr, flush=True)
            runs[workers] = study_run(trials, workers, out)
            print(f"    {runs[workers]['wall']:.1f} s", file=sys.stderr, flush=True)
        w2, w1 = runs[2], runs[1]
        same = [c[1] for c in w1["configs"]] == [c[1] for c in w2["configs"]]
        print("  running the common recipe ...", file=sys.stderr, flush=True)
        rec = recipe_run(w2["configs"])
        print(f"    {rec['wall']:.1f} s", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"run folders kept in {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)

    rows = []
    for label, r in ((f"study, 1 worker x {w1['threads']} threads", w1),
                     (f"study, 2 workers x {w2['threads']} thread(s) (default)", w2),
                     (f"common recipe, 1 process x {rec['threads']} threads", rec)):
        budget = r.get("budget", r["wall"])
        rows.append({"setup": label, "wall s": r["wall"], "models/min": 60 * r["completed"] / r["wall"],
                     "sum train s": r["train"], "train s/model": r["train"] / r["completed"],
                     "outside-training %": 100 * (1 - r["train"] / budget),
                     "median val err %": statistics.median(r["val_errors"]),
                     "failed": r.get("failed", 0)})
    print(f"\nSame {trials} configs in both studies: {'yes' if same else 'NO'}; the common recipe trains the "
          "2-worker study's configs with the same seeds.\n")
    print(table(rows))
    print("\n## Where the workers' wall time goes (percent of W x wall)\n")
    brk = []
    for label, r in (("1 worker", w1), ("2 workers", w2)):
        b = r["budget"]
        brk.append({"study": label, "W x wall s": b, "training steps %": 100 * r["train"] / b,
                    "evaluation %": 100 * r["eval"] / b, "trainer setup %": 100 * r["setup_in_train"] / b,
                    "per-trial bookkeeping %": 100 * r["bookkeeping"] / b, "startup %": 100 * r["startup"] / b,
                    "tail %": 100 * r["tail"] / b, "startup s/worker": r["startup"] / r["workers"],
                    "bookkeeping s/trial": r["bookkeeping"] / r["completed"]})
    print(table(brk))
    speed_recipe = rec["wall"] / w2["wall"]
    speed_workers = w1["wall"] / w2["wall"]
    print(f"\nGoal 1: default study vs common recipe: {speed_recipe:.2f}x faster -> "
          f"{'MET' if speed_recipe >= 1.5 else 'MISSED'} (goal >= 1.5x)")
    print(f"Goal 2: 2 workers vs 1 worker using both cores: {speed_workers:.2f}x throughput -> "
          f"{'MET' if speed_workers >= 1.6 else 'MISSED'} (goal >= 1.6x)")
    print(f"Training-step time only (sum train s): recipe / 1-worker study = {rec['train'] / w1['train']:.2f}x; "
          f"per-model train s at 1 thread (2-worker study) / at 2 threads (1-worker study) = "
          f"{w2['train'] / w1['train']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
