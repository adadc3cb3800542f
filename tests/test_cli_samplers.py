"""The sampler a user asks `run` for is the sampler its spawned workers use (dry objective).

Found by the scenario matrix (issue 10): `run_worker` loaded the study without its sampler and pruner, so
every spawned worker of `run` (and `anynet-search worker`) fell back to Optuna's defaults: an unseeded
TPESampler for `--sampler tpe|cmaes|nsga2|gp`, and a MedianPruner without warm-up that pruned 1-epoch
trials after their only epoch. Workers now load the study with its own sampler and pruner
(`worker.load_worker_study`).
"""

import subprocess
import sys

import optuna

from anynet_search.study.storage import open_storage

DRY = "anynet_search.study.dry_run:pseudo_error"


def test_spawned_workers_use_the_requested_sampler(tmp_path):
    subprocess.run([sys.executable, "-m", "anynet_search", "run", "--space", "anynet_xc_tiny", "--trials", "6",
                    "--workers", "1", "--dataset", "synthetic:64", "--sampler", "nsga2", "--study", "n",
                    "--objective", DRY, "--no-analyze"], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    study = optuna.load_study(study_name="n", storage=open_storage(f"journal:{tmp_path / 'runs/n/journal.log'}"))
    keys = {k for t in study.trials for k in t.system_attrs}
    assert "NSGAIISampler:generation" in keys and not any(k.startswith("tpe:") for k in keys), sorted(keys)
