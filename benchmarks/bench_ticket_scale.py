"""Per-trial storage bookkeeping against study size: dry-run studies of N trials on each storage with W workers.

Each cell creates a fresh study of N tickets (anynet_xd_tiny, the zero-cost objective
`anynet_search.study.dry_run:pseudo_error`, ANYNET_DRY_SLEEP=0, so a worker's whole time is bookkeeping),
starts W worker processes that open the study, read it once (so that caches are warm, as in a long
study) and wait at a barrier, releases them together and times them until they stop. With --cap M the
workers stop after about M trials in total (each runs ceil(M / W) tickets), which measures the per-trial
cost at one position of an N-trial study without running all N:
- `--position start` (default): the first M trials, when N - M tickets are still waiting;
- `--position end`: the last M trials, after the first N - M tickets were completed directly in the storage
  (benchmark-only bulk writes with a realistic record: config, complexity, result, worker attributes).
Costs that grow with the waiting tickets show at the start, costs that grow with the finished trials at the
end; a per-trial cost independent of N is flat at both.

Columns (per cell):
- setup s: creating the study and enqueueing its N tickets;
- trials/s: completed trials / wall (wall = barrier release until the last worker returned);
- worker-s/trial: W x wall / completed, the issue's "worker-seconds of bookkeeping per trial";
- CPU ms/trial: the workers' CPU time (user + system, measured inside each worker around its loop)
  / completed; PostgreSQL's own CPU is not in it;
- xact/trial, tuples/trial (PostgreSQL only): pg_stat_database deltas of a database used by this cell
  alone: xact_commit + xact_rollback, and tup_returned + tup_fetched (rows read) / completed;
- PG CPU ms/trial: CPU time of the PostgreSQL server (postmaster and children, read from /proc when the
  server runs on this host) / completed;
- writes/trial (journal only): lines appended to the journal / completed.

Goal from the issue: per-trial bookkeeping at N = 10,000 within 1.5x of that at N = 100 on every storage.

    python benchmarks/bench_ticket_scale.py --quick                       # N 100, 1000; W 2, 8; cap 300
    python benchmarks/bench_ticket_scale.py                               # N 100, 1000, 10000; W 2, 8, 16
    python benchmarks/bench_ticket_scale.py --storages postgresql --trials 10000 --workers 8 --cap 0
    python benchmarks/bench_ticket_scale.py --capacity 20 --workers 1,2,4,8 --trials 20000   # PostgreSQL limits

PostgreSQL cells need a server: --postgres URL, or ANYNET_TEST_POSTGRES_URL (`.ci/postgres.sh` starts one);
each cell creates and drops its own database there.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import queue
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, process_cpu_seconds, process_tree, table, warn_if_busy  # noqa: E402

DRY = "anynet_search.study.dry_run:pseudo_error"
SPACE, DATASET = "anynet_xd_tiny", "synthetic:64"
PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated",
               "tup_deleted")


# ------------------------------------------------------------------------------------------ workers
def _worker(study: str, url: str, max_trials: int | None, ready, go, results) -> None:
    """One benchmark worker: import and open everything, wait for the start signal, work, report."""
    os.environ["ANYNET_DRY_SLEEP"] = "0"
    import optuna
    import torch

    from anynet_search.study.storage import load_study, open_storage
    from anynet_search.study.worker import Worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    st = load_study(study, open_storage(url))
    st.get_trials(deepcopy=False)  # warm Optuna's caches, as in a worker that has been running for a while
    worker = Worker(st, objective=DRY)
    ready.release()
    go.wait()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    summary = worker.run(max_trials=max_trials)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    results.put((summary.completed, cpu))


def _capacity_worker(kind: str, study: str, url: str, seconds: float, ready, go, results) -> None:
    """Ticket pops or heartbeats as fast as one client can, for `seconds`; reports (operations, CPU seconds)."""
    import time as _time

    import optuna

    from anynet_search.study.optuna_adapter import storage_of, trial_index
    from anynet_search.study.storage import load_study, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = load_study(study, open_storage(url))
    index, storage = trial_index(st), storage_of(st)
    mine = index.claim() if kind == "heartbeat" else None
    ready.release()
    go.wait()
    r0, ops = resource.getrusage(resource.RUSAGE_SELF), 0
    end = _time.perf_counter() + seconds
    while _time.perf_counter() < end:
        if kind == "pop":
            if index.claim() is None:
                break
        else:
            storage.set_trial_system_attr(mine, "heartbeat", _time.time())
        ops += 1
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    results.put((ops, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)))


def run_capacity(pg: Postgres, clients: int, seconds: float, tickets: int, tmp: Path) -> list[dict]:
    """Ticket pops and heartbeats per second that one PostgreSQL sustains with `clients` client processes."""
    from anynet_search.study import RunOptions, prepare_study

    rows = []
    for kind in ("pop", "heartbeat"):
        name = f"bench_capacity_{kind}_{clients}_{os.getpid()}"
        url = pg.create(name)
        prepare_study(RunOptions(space=SPACE, trials=tickets, workers=clients, dataset=DATASET, study=name,
                                 storage=url, out=str(tmp / "runs"), objective=DRY))
        ctx = mp.get_context("spawn")
        ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_capacity_worker, args=(kind, name, url, seconds, ready, go, results))
                 for _ in range(clients)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.acquire(timeout=600)
        before, server0 = pg.counters(name), pg.server_cpu()
        t0 = time.perf_counter()
        go.set()
        outcomes = [results.get(timeout=seconds + 600) for _ in procs]
        wall = time.perf_counter() - t0
        server1, after = pg.server_cpu(), pg.counters(name)
        for p in procs:
            p.join()
        ops = sum(o for o, _ in outcomes)
        rows.append({"operation": "ticket pop" if kind == "pop" else "heartbeat", "clients": clients,
                     "ops": ops, "ops/s": ops / wall,
                     "client CPU ms/op": 1000 * sum(c for _, c in outcomes) / ops,
                     "PG CPU ms/op": 1000 * (server1 - server0) / ops if server0 is not None else float("nan"),
                     "xact/op": (after["xact_commit"] + after["xact_rollback"] - before["xact_commit"]
                                 - before["xact_rollback"]) / ops,
                     "tuples/op": (after["tup_returned"] + after["tup_fetched"] - before["tup_returned"]
                                   - before["tup_fetched"]) / ops})
        pg.drop(name)
    return rows


# ------------------------------------------------------------------------------------------ storages
class Postgres:
    """A server URL; each cell gets a database of its own (so pg_stat_database counts that cell only)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.psycopg, self.url = psycopg, url
        self.admin = psycopg.connect(self._dsn(url), autocommit=True)

    @staticmethod
    def _dsn(url: str) -> str:
        return url.replace("postgresql+psycopg://", "postgresql://", 1)

    def create(self, name: str) -> str:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        self.admin.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def counters(self, name: str) -> dict[str, int]:
        self.admin.execute("SELECT pg_stat_clear_snapshot()")
        row = self.admin.execute(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = %s",
                                 (name,)).fetchone()
        return dict(zip(PG_COUNTERS, row))

    def server_cpu(self) -> float | None:
        """CPU seconds used so far by the server (postmaster and all its children), if it runs on this host."""
        try:
            data_dir = self.admin.execute("SHOW data_directory").fetchone()[0]
            with open(Path(data_dir) / "postmaster.pid") as f:
                postmaster = int(f.readline())
        except (OSError, ValueError, self.psycopg.Error):
            return None
        # a backend's CPU moves into the postmaster's children's time when its connection closes
        return process_cpu_seconds(postmaster, exited_children=True) + sum(
            process_cpu_seconds(pid) for pid in process_tree(postmaster))

    def drop(self, name: str) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _record() -> dict:
    """A finished trial's user attributes, shaped like a worker's (config, complexity, result)."""
    cfg = {"depths": [1, 2, 3, 4], "widths": [16, 32, 64, 128], "bottleneck_ratios": [1] * 4,
           "group_widths": [8] * 4, "strides": [1, 2, 2, 2], "stem_type": "cifar", "stem_width": 16}
    result = {"val_error": 12.5, "test_error": 13.0, "train_seconds": 0.0, "eval_seconds": 0.0, "epochs": 0,
              "history": [], "final_train_loss": 0.0, "wall_seconds": 0.0}
    attrs = {"space": SPACE, "space_hash": "prefill", "sampler": "random", "dataset": DATASET, "device": "cpu",
             "worker": "prefill", "train_config": {}, "config": cfg, "flops": 500000, "params": 20000, "acts": 3000,
             "fit_w0": 16.0, "fit_wa": 8.0, "fit_wm": 2.0, "fit_error": 0.1, "result": result}
    return attrs


class _ParamRecorder:
    """Stands in for an Optuna trial in `DesignSpace.suggest`: records each parameter's distribution and returns
    the ticket's planned value, so a prefilled trial carries its parameters as a worker's would."""

    def __init__(self, fixed: dict) -> None:
        from optuna import distributions as d

        self.d, self.fixed, self.params = d, fixed, {}

    def _take(self, name: str, dist):  # noqa: ANN001, ANN202
        value = self.fixed[name]
        self.params[name] = (dist, value)
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False):  # noqa: ANN201
        return self._take(name, self.d.IntDistribution(low, high, step=step, log=log))

    def suggest_float(self, name: str, low: float, high: float, step=None, log: bool = False):  # noqa: ANN001, ANN201
        return self._take(name, self.d.FloatDistribution(low, high, step=step, log=log))

    def suggest_categorical(self, name: str, choices: list):  # noqa: ANN201
        return self._take(name, self.d.CategoricalDistribution(choices))


def _planned_params(study, space, trial) -> dict:  # noqa: ANN001
    """name -> (distribution, value) of a ticket's planned config."""
    recorder = _ParamRecorder(trial.system_attrs["fixed_params"])
    space.suggest(recorder)
    return recorder.params


def prefill(study, count: int) -> None:
    """Complete the study's first `count` tickets directly in the storage, in bulk (benchmark only)."""
    import datetime as dt

    from optuna.distributions import distribution_to_json
    from optuna.storages import JournalStorage
    from optuna.trial import TrialState

    from anynet_search.study.settings import StudySettings

    storage = study._storage
    tickets = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[:count]
    space = StudySettings.from_study(study).design_space()
    # real finished trials carry their parameters: Optuna's journal replay of a new parameter scans the study
    # for the first trial that has it, which a study of parameterless trials makes O(N) per parameter
    planned = {t._trial_id: _planned_params(study, space, t) for t in tickets}
    now = dt.datetime.now(dt.timezone.utc)
    if isinstance(storage, JournalStorage):
        from optuna.storages.journal._storage import JournalOperation as Op

        logs = []
        for t in tickets:
            attrs = _record()
            tid, stamp = t._trial_id, now.isoformat(timespec="microseconds")
            logs.append({"op_code": Op.SET_TRIAL_STATE_VALUES, "worker_id": "prefill", "trial_id": tid,
                         "state": TrialState.RUNNING, "values": None, "datetime_start": stamp})
            for pname, (dist, value) in planned[tid].items():
                logs.append({"op_code": Op.SET_TRIAL_PARAM, "worker_id": "prefill", "trial_id": tid,
                             "param_name": pname, "param_value_internal": dist.to_internal_repr(value),
                             "distribution": distribution_to_json(dist)})
            for key, value in attrs.items():
                logs.append({"op_code": Op.SET_TRIAL_USER_ATTR, "worker_id": "prefill", "trial_id": tid,
                             "user_attr": {key: value}})
            logs.append({"op_code": Op.SET_TRIAL_STATE_VALUES, "worker_id": "prefill", "trial_id": tid,
                         "state": TrialState.COMPLETE, "values": [12.5], "datetime_complete": stamp})
        for i in range(0, len(logs), 5000):
            storage._backend.append_logs(logs[i:i + 5000])
        return
    import json

    from optuna.storages._rdb import models

    backend = storage._backend
    session = backend.scoped_session()
    naive = now.astimezone().replace(tzinfo=None)  # the models take local naive times
    for t in tickets:
        attrs = _record()
        tid = t._trial_id
        row = session.get(models.TrialModel, tid)
        row.state, row.datetime_start, row.datetime_complete = TrialState.COMPLETE, naive, naive
        session.add(models.TrialValueModel(trial_id=tid, objective=0, value=12.5,
                                           value_type=models.TrialValueModel.TrialValueType.FINITE))
        for pname, (dist, value) in planned[tid].items():
            session.add(models.TrialParamModel(trial_id=tid, param_name=pname,
                                               param_value=dist.to_internal_repr(value),
                                               distribution_json=distribution_to_json(dist)))
        for key, value in attrs.items():
            session.add(models.TrialUserAttributeModel(trial_id=tid, key=key, value_json=json.dumps(value)))
    session.commit()
    session.close()


def _journal_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


# ------------------------------------------------------------------------------------------ one cell
def run_cell(storage: str, n: int, w: int, cap: int | None, tmp: Path, pg: Postgres | None,
             position: str = "start") -> dict:
    import optuna

    from anynet_search.study import RunOptions, prepare_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"bench_{storage}_{n}_{w}_{os.getpid()}"
    path = None
    if storage == "journal":
        path = tmp / f"{name}.log"
        url = f"journal:{path}"
    elif storage == "sqlite":
        url = f"sqlite:///{tmp / (name + '.db')}"
    else:
        url = pg.create(name)
    t0 = time.perf_counter()
    study, *_ = prepare_study(RunOptions(space=SPACE, trials=n, workers=w, dataset=DATASET, study=name,
                                         storage=url, out=str(tmp / "runs"), objective=DRY))
    setup = time.perf_counter() - t0
    if cap and position == "end":
        prefill(study, n - cap)

    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    per_worker = math.ceil(cap / w) if cap else None
    procs = [ctx.Process(target=_worker, args=(name, url, per_worker, ready, go, results)) for _ in range(w)]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=600):
            raise RuntimeError("a benchmark worker did not start")
    before = pg.counters(name) if pg and storage == "postgresql" else None
    server0 = pg.server_cpu() if before is not None else None
    lines0 = _journal_lines(path) if path else 0
    t0 = time.perf_counter()
    go.set()
    outcomes = []
    while len(outcomes) < w:
        try:
            outcomes.append(results.get(timeout=1.0))
        except queue.Empty:
            if sum(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError(f"a worker failed (exit codes {[p.exitcode for p in procs]})") from None
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    done = sum(c for c, _ in outcomes)
    row = {"storage": storage, "N": n, "W": w, "at": position if cap else "all", "measured": done,
           "setup s": setup, "trials/s": done / wall,
           "worker-s/trial": w * wall / done, "CPU ms/trial": 1000 * sum(c for _, c in outcomes) / done}
    if before is not None:
        server1 = pg.server_cpu()
        if server0 is not None and server1 is not None:
            row["PG CPU ms/trial"] = 1000 * (server1 - server0) / done
        after = pg.counters(name)
        d = {k: after[k] - before[k] for k in PG_COUNTERS}
        row["xact/trial"] = (d["xact_commit"] + d["xact_rollback"]) / done
        row["tuples/trial"] = (d["tup_returned"] + d["tup_fetched"]) / done
        pg.drop(name)
    if path:
        row["writes/trial"] = (_journal_lines(path) - lines0) / done
    return row


# ------------------------------------------------------------------------------------------ main
def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N 100,1000; W 2,8; cap 300")
    p.add_argument("--storages", default="journal,sqlite,postgresql")
    p.add_argument("--trials", type=_ints, default=None, help="study sizes N (default 100,1000,10000)")
    p.add_argument("--workers", type=_ints, default=None, help="worker counts W (default 2,8,16)")
    p.add_argument("--cap", type=int, default=None,
                   help="stop after about this many trials per cell (0: run every study to N; default 1000, quick 300)")
    p.add_argument("--position", choices=["start", "end"], default="start",
                   help="with a cap: measure the first or the last trials of each study")
    p.add_argument("--capacity", type=float, default=None, metavar="SECONDS",
                   help="instead of the grid: ticket pops and heartbeats per second on PostgreSQL with W clients")
    p.add_argument("--postgres", default=os.environ.get("ANYNET_TEST_POSTGRES_URL"), help="PostgreSQL server URL")
    args = p.parse_args(argv)
    trials = args.trials or ([100, 1000] if args.quick else [100, 1000, 10000])
    workers = args.workers or ([2, 8] if args.quick else [2, 8, 16])
    cap = args.cap if args.cap is not None else (300 if args.quick else 1000)
    storages = [s for s in args.storages.split(",") if s]
    pg = None
    if "postgresql" in storages:
        if not args.postgres:
            print("no PostgreSQL URL (--postgres or ANYNET_TEST_POSTGRES_URL): skipping postgresql", file=sys.stderr)
            storages.remove("postgresql")
        else:
            pg = Postgres(args.postgres)

    print("# bench_ticket_scale")
    print("machine:", machine_line())
    print(f"grid: storages {storages}, N {trials}, W {workers}, cap {cap or 'none'} trials per cell "
          f"(position {args.position}); "
          f"space {SPACE}, objective {DRY}, ANYNET_DRY_SLEEP=0")
    warn_if_busy()
    tmp = Path(tempfile.mkdtemp(prefix="anynet-bench-tickets-"))
    if args.capacity:
        if pg is None:
            raise SystemExit("--capacity needs PostgreSQL (--postgres URL)")
        try:
            rows = [r for w in workers for r in run_capacity(pg, w, args.capacity, max(trials), tmp)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(table(rows))
        return 0
    rows = []
    try:
        for storage in storages:
            for n in trials:
                for w in workers:
                    print(f"  {storage} N={n} W={w} ...", file=sys.stderr, flush=True)
                    row = run_cell(storage, n, w, cap if cap and cap < n else None, tmp, pg, args.position)
                    print(f"    {row['trials/s']:.2f} trials/s, {row['worker-s/trial']:.3f} worker-s/trial",
                          file=sys.stderr, flush=True)
                    rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cols = ["storage", "N", "W", "at", "measured", "setup s", "trials/s", "worker-s/trial", "CPU ms/trial", "xact/trial",
            "tuples/trial", "PG CPU ms/trial", "writes/trial"]
    print(table(rows, cols))
    print("\n## Per-trial bookkeeping at the largest N over the smallest (worker-s/trial; goal <= 1.5)\n")
    ratios = []
    for storage in storages:
        for w in workers:
            cell = {r["N"]: r for r in rows if r["storage"] == storage and r["W"] == w}
            lo, hi = cell[min(trials)], cell[max(trials)]
            ratio = hi["worker-s/trial"] / lo["worker-s/trial"]
            ratios.append({"storage": storage, "W": w, f"N={min(trials)}": lo["worker-s/trial"],
                           f"N={max(trials)}": hi["worker-s/trial"], "ratio": ratio,
                           "CPU ratio": hi["CPU ms/trial"] / lo["CPU ms/trial"],
                           "goal": "MET" if ratio <= 1.5 else "MISSED"})
    print(table(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
