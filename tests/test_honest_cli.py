"""Issue 23 through the installed command, as a user meets it: comparisons that refuse to mislead, settings named
where they differ, exports that explain themselves, report folders that hold one report, a `--help` without
torch, passwords kept out of job files, pruners only where they cannot bias an EDF.

Studies here are tiny: the dry objective where only the bookkeeping matters, the real trainer (1-2 epochs on a
small synthetic set) where the numbers a report judges must be real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

CLI = os.environ.get("ANYNET_CLI") or shutil.which("anynet-search", path=str(Path(sys.executable).parent))
DRY = "anynet_search.study.dry_run:pseudo_error"
SECRET = "issue23-s3cret"


def cli(*args: str, cwd: Path, ok: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed command; with `ok`, exit 0 and no traceback."""
    proc = subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=None if env is None else dict(os.environ, **env))
    if ok:
        assert proc.returncode == 0, f"{args} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single error line of a refused command (exit 2)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[I ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------ item 9, item 10
def test_building_the_parser_and_help_import_no_torch():
    code = ("import sys, anynet_search.cli as c; p = c.build_parser(); p.format_help(); "
            "[s.format_help() for a in p._subparsers._group_actions for s in a.choices.values()]; "
            "print(sorted(m for m in ('torch', 'optuna', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_results_is_a_top_level_name(tmp_path):
    cli("run", "--trials", "3", "--workers", "1", "--dataset", "synthetic:64", "--objective", DRY, "--no-analyze",
        cwd=tmp_path)
    code = ("import sys; from anynet_search import load_results; "
            "df = load_results(sys.argv[1]); print(len(df), 'torch' in sys.modules)")
    run = tmp_path / "runs" / "anynet_xa_tiny-synthetic-random-e8-s0"
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["3", "False"]


# ------------------------------------------------------------------------------------------ item 6
def test_the_default_name_holds_the_epochs_and_a_refused_resume_names_each_differing_setting(tmp_path):
    base = ["run", "--trials", "2", "--workers", "1", "--dataset", "synthetic:64", "--objective", DRY, "--no-analyze"]
    out = cli(*base, "--epochs", "3", cwd=tmp_path).stdout
    assert "study anynet_xa_tiny-synthetic-random-e3-s0: 2/2 completed" in out
    cli(*base, "--epochs", "4", cwd=tmp_path)  # another budget is another study, not a refusal
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "anynet_xa_tiny-synthetic-random-e3-s0", "anynet_xa_tiny-synthetic-random-e4-s0"]
    line = one_error_line(cli(*base, "--epochs", "4", "--study", "anynet_xa_tiny-synthetic-random-e3-s0",
                              "--train", "lr=0.1", "--seed", "2", cwd=tmp_path, ok=False))
    assert "already exists with other settings" in line
    for needle in ("seed 0 (stored) vs 2 (asked)", "--epochs 3 (stored) vs 4 (asked)",
                   "--train lr=0.3 (stored) vs 0.1 (asked)"):
        assert needle in line, line


# ------------------------------------------------------------------------------------------ pruners
def test_a_pruner_is_refused_for_random_and_qmc_with_the_reason(tmp_path):
    for sampler in ("random", "qmc"):
        line = one_error_line(cli("run", "--sampler", sampler, "--pruner", "hyperband", "--trials", "2",
                                  "--dataset", "synthetic:64", "--objective", DRY, cwd=tmp_path, ok=False))
        assert f"--pruner hyperband with --sampler {sampler}" in line and "biased" in line
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_an_adaptive_study_prunes_with_the_pruner_asked_and_a_resume_with_another_is_refused(tmp_path):
    args = ["run", "--sampler", "tpe", "--pruner", "hyperband", "--trials", "3", "--workers", "1",
            "--dataset", "synthetic:64", "--objective", DRY, "--no-analyze", "--study", "s"]
    cli(*args, cwd=tmp_path)
    import optuna

    from anynet_search.study.settings import StudySettings
    from anynet_search.study.storage import open_storage

    study = optuna.load_study(study_name="s", storage=open_storage(f"journal:{tmp_path / 'runs/s/journal.log'}"))
    settings = StudySettings.from_study(study)
    assert settings.pruner == "hyperband"
    assert type(settings.make_pruner()).__name__ == "HyperbandPruner"
    line = one_error_line(cli(*[a if a != "hyperband" else "median" for a in args], cwd=tmp_path, ok=False))
    assert "--pruner hyperband (stored) vs median (asked)" in line


# ------------------------------------------------------------------------------------------ item 11
def _postgres_url() -> str:
    url = os.environ.get("ANYNET_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide ANYNET_TEST_POSTGRES_URL (see .ci/postgres.sh)")
        pytest.skip("set ANYNET_TEST_POSTGRES_URL to run against PostgreSQL (.ci/postgres.sh starts one)")
    return url


@pytest.mark.parametrize("url", [f"postgresql://u:{SECRET}@127.0.0.1:1/db",
                                 f"postgresql://u@127.0.0.1:1/db?sslpassword={SECRET}"])
def test_a_password_in_the_url_of_submitted_jobs_is_refused_before_anything_is_written(tmp_path, url):
    pytest.importorskip("submitit")
    proc = cli("run", "--storage", url, "--local-jobs", "--detach", "--trials", "2", "--dataset", "synthetic:64",
               "--objective", DRY, cwd=tmp_path, ok=False)
    line = one_error_line(proc)
    assert SECRET not in proc.stdout + proc.stderr
    assert "would be stored in plain text in the job files" in line and "PGPASSWORD" in line
    assert not list(tmp_path.rglob("*"))  # no run folder, no jobs folder


def test_jobs_get_the_password_from_the_environment_and_their_files_hold_none(tmp_path):
    pytest.importorskip("submitit")
    url = _postgres_url()
    name = f"pw-{os.getpid()}-{time.time_ns()}"
    env = {"PGPASSWORD": SECRET, "ANYNET_DRY_SLEEP": "0.05"}  # the test server trusts loopback: any password works
    out = cli("run", "--storage", url, "--study", name, "--local-jobs", "--detach", "--trials", "3",
              "--dataset", "synthetic:64", "--objective", DRY, "--no-analyze", "--cpus-per-worker", "1",
              cwd=tmp_path, env=env).stdout
    watch = re.search(r"watch them with: (anynet-search status \S+)", out)
    assert watch, out
    deadline = time.time() + 300
    while True:  # the printed command works as printed (the run folder's record finds the database)
        status = cli(*watch.group(1).split()[1:], cwd=tmp_path, env=env).stdout
        if "3/3 completed" in status or time.time() > deadline:
            break
        time.sleep(1)
    assert "3/3 completed" in status, status
    jobs = tmp_path / "runs" / name / "jobs"
    files = [p for p in jobs.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pkl" for p in files)  # submitit's pickles are there, and none holds the password
    assert not [p for p in files if SECRET.encode() in p.read_bytes()]
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


# ------------------------------------------------------------------------------------------ item 5
def test_every_exported_regnet_gets_its_file_from_its_own_sampled_parameters(tmp_path):
    from anynet_search import load_config, regnet
    from anynet_search.models.regnet_targets import find_params, layout_of

    cli("run", "--space", "regnet_x_tiny", "--trials", "16", "--workers", "1", "--dataset", "synthetic:64",
        "--objective", DRY, "--no-analyze", "--study", "rx", cwd=tmp_path)
    out = cli("export", "runs/rx", "--top", "16", "--format", "all", "--out", "ex", cwd=tmp_path).stdout
    assert "no RegNet file" not in out
    missed_by_search = 0
    for rank in range(1, 17):
        (config,) = (tmp_path / "ex").glob(f"rank{rank:02d}_*[0-9].yaml")
        assert config.with_suffix(".json").is_file() and config.with_suffix(".pycls.yaml").is_file()
        record = yaml.safe_load(config.with_suffix(".regnet.yaml").read_text())
        assert config.with_suffix(".regnet.json").is_file()
        cfg = load_config(config)
        assert record["exact"] and regnet(**record["anynet_search"]) == cfg
        missed_by_search += find_params("anynet_search", layout_of(cfg.widths, cfg.depths, cfg.group_widths),
                                        cfg.bottleneck_ratios[0]) is None
    assert missed_by_search > 0  # the models the old export skipped silently are among these


def test_a_model_without_a_regnet_file_gets_a_printed_reason(tmp_path):
    cli("run", "--trials", "4", "--workers", "1", "--dataset", "synthetic:64", "--objective", DRY, "--no-analyze",
        "--study", "xa", cwd=tmp_path)
    out = cli("export", "runs/xa", "--top", "4", "--out", "ex", cwd=tmp_path).stdout
    configs = [line for line in out.splitlines() if re.search(r"rank\d\d_trial\d+\.yaml$", line)]
    regnets = [line for line in out.splitlines() if line.endswith(".regnet.yaml")]
    # issue 30: one summary line, grouped by why, instead of a line per model
    (summary,) = [line for line in out.splitlines() if "no RegNet file" in line]
    declined = re.fullmatch(r"no RegNet file for (\d) of 4 models \((.+)\)", summary)
    assert len(configs) == 4 and declined and len(regnets) + int(declined.group(1)) == 4, out
    assert all("bottleneck ratio" in why or "RegNet (quantized-linear) fit" in why
               for why in declined.group(2).split("; "))


# ------------------------------------------------------------------------------------------ item 8
def test_derive_fits_an_80_column_terminal_and_names_its_file_as_analyze_does(tmp_path):
    cli("run", "--trials", "30", "--workers", "1", "--dataset", "synthetic:64", "--objective", DRY, "--study", "xa",
        cwd=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = cli("derive", "runs/xa", cwd=tmp_path, env={"COLUMNS": "80"})
    table = proc.stdout.splitlines()[1:-2]  # between the margin line and the file lines
    assert table[0].startswith("constraint") and len(table) > 3
    assert max(len(line) for line in table) <= 80, table
    assert not re.search(r"[-+]inf\b|\bnan\b", proc.stdout, flags=re.I)
    # issue 30: beside the run (as run and analyze write), named with its full path; the current folder untouched
    assert (tmp_path / "runs/xa/derived_space_xa.yaml").is_file() and sorted(p.name for p in tmp_path.iterdir()) == before
    assert proc.stdout.splitlines()[-1].endswith(f": {tmp_path.resolve() / 'runs/xa/derived_space_xa.yaml'}")
    assert (tmp_path / "runs/xa/report/derived_space_xa.yaml").is_file()  # the same name from analyze


# ------------------------------------------------------------------------------------------ items 1, 2, 7
def dry_study(cwd: Path, name: str, *extra: str, trials: int = 40) -> Path:
    cli("run", "--trials", str(trials), "--workers", "1", "--dataset", "synthetic:64", "--objective", DRY,
        "--no-analyze", "--study", name, *extra, cwd=cwd)
    return cwd / "runs" / name


def test_studies_trained_differently_are_refused_and_forced_ones_carry_a_warning(tmp_path):
    dry_study(tmp_path, "a", "--epochs", "2", trials=12)
    dry_study(tmp_path, "b", "--epochs", "4", "--train", "lr=0.1", "--seed", "1", trials=12)
    line = one_error_line(cli("analyze", "runs/a", "runs/b", "--out", "rep", cwd=tmp_path, ok=False))
    assert "the studies were trained differently (epochs: a 2, b 4; lr: a 0.3, b 0.1)" in line and "--force" in line
    assert not (tmp_path / "rep").exists()
    out = cli("analyze", "runs/a", "runs/b", "--out", "rep", "--force", cwd=tmp_path).stdout
    assert "WARNING: the studies were trained differently (epochs: a 2, b 4; lr: a 0.3, b 0.1)" in out
    html = (tmp_path / "rep" / "report.html").read_text()
    assert 'class="warning">the studies were trained differently (epochs: a 2, b 4; lr: a 0.3, b 0.1)' in html
    studies = html[html.index('<table class="studies">'):html.index("</table>", html.index('<table class="studies">'))]
    assert "<th>data set</th>" in studies and '<th class="num">epochs</th>' in studies
    assert re.search(r"<td>a</td>.*?<td>synthetic:64</td><td class=\"num\">2</td>", studies, flags=re.S)
    assert re.search(r"<td>b</td>.*?<td>synthetic:64</td><td class=\"num\">4</td>", studies, flags=re.S)
    assert "trained with different settings" in html and "synthetic:64, 4 epochs, batch 64, lr 0.1" in html


def test_comparisons_are_normalized_when_the_flops_distributions_differ_and_say_so(tmp_path):
    dry_study(tmp_path, "xa")
    dry_study(tmp_path, "xe", "--space", "anynet_xe_tiny")
    dry_study(tmp_path, "xa2", "--seed", "1")
    out = cli("analyze", "runs/xa", "runs/xe", "--out", "ae", cwd=tmp_path).stdout
    assert re.search(r"comparisons on complexity-normalized \(4 flops bins; chosen because the studies' flops "
                     r"distributions differ \(KS xe vs xa p = [0-9.e-]+ < 0.05\)\) EDFs, raw ones beside them", out), out
    html = (tmp_path / "ae" / "report.html").read_text()
    assert "Study comparisons use complexity-normalized (4 flops bins; chosen because" in html
    assert html.index("on complexity-normalized (4 flops bins") < html.index("The same comparisons on raw EDFs")
    assert (tmp_path / "ae" / "figures" / "edf_normalized_4bins.png").is_file()
    out = cli("analyze", "runs/xa", "runs/xa2", "--out", "aa", cwd=tmp_path).stdout
    assert "comparisons on raw EDFs" in out and "raw ones beside" not in out  # same space: same flops distribution


def test_analyzing_into_a_report_folder_replaces_the_report_it_holds(tmp_path):
    dry_study(tmp_path, "first", trials=12)
    dry_study(tmp_path, "second", "--seed", "3", trials=12)
    cli("analyze", "runs/first", "--out", "rep", cwd=tmp_path)
    (tmp_path / "rep" / "notes.txt").write_text("mine")
    assert (tmp_path / "rep" / "best_configs" / "first").is_dir()
    cli("analyze", "runs/second", "--out", "rep", cwd=tmp_path)
    left = sorted(str(p.relative_to(tmp_path / "rep")) for p in (tmp_path / "rep").rglob("*"))
    assert not [p for p in left if "first" in p], left
    assert "notes.txt" in left and "derived_space_second.yaml" in left and "best_configs/second" in left
    assert "first" not in (tmp_path / "rep" / "results.csv").read_text()


# ------------------------------------------------------------------------------------------ items 4, 13
def test_good_ranges_show_the_range_kept_and_the_best_models_both_sampled_and_built_values(tmp_path):
    import optuna
    import pandas as pd

    from anynet_search.study.storage import open_storage

    run = dry_study(tmp_path, "xa", trials=60)
    cli("analyze", "runs/xa", "--out", "rep", cwd=tmp_path)
    html = (tmp_path / "rep" / "report.html").read_text()
    kept = yaml.safe_load((tmp_path / "rep" / "derived_space_xa.yaml").read_text())["constraints"]["ranges"]
    assert kept, "no range kept: the check below would test nothing"
    for param, (lo, hi) in kept.items():  # the judged range, as the derived space keeps it, beside the good range
        assert re.search(rf"<td>{param}</td><td class=\"num\">[^<]*</td><td class=\"num\">[^<]*</td>"
                         rf"<td class=\"num\">{lo:g} \.\. {hi:g}</td><td>keep</td>", html), param
    # item 13: every trial records the built values beside Optuna's (sampled) parameters
    study = optuna.load_study(study_name="xa", storage=open_storage(f"journal:{run / 'journal.log'}"))
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert all(t.user_attrs["built"]["w"] == t.user_attrs["config"]["widths"] for t in trials)
    assert any(t.params[f"w{i}"] != t.user_attrs["built"]["w"][i - 1] for t in trials for i in range(1, 5))
    best = pd.read_csv(tmp_path / "rep" / "results.csv").sort_values("error", kind="stable").head(5)
    for _, row in best.iterrows():
        for i in range(1, 5):
            if row[f"sampled_w{i}"] != row[f"w{i}"]:
                assert f"w{i} {row[f'sampled_w{i}']:g} -&gt; {row[f'w{i}']:g}" in html
    assert "<th>built w</th>" in html and "sampled -&gt; built, where they differ" in html


# ------------------------------------------------------------------------------------------ item 3
def test_undertrained_models_get_a_warning_in_the_report_and_from_derive(tmp_path):
    """Real training, 1 epoch: the whole improvement over chance happened in the last (only) epoch."""
    out = cli("run", "--trials", "3", "--workers", "1", "--dataset", "synthetic:128", "--epochs", "1",
              "--study", "short", cwd=tmp_path).stdout
    assert "WARNING: far from converged: the median model made 100% of its improvement over chance in its last " \
           "epoch of 1 epoch" in out, out
    html = (tmp_path / "runs/short/report/report.html").read_text()
    assert html.count("far from converged") >= 2  # at the top and in the study's section
    err = cli("derive", "runs/short", "--out", "d.yaml", cwd=tmp_path).stderr
    assert "warning: far from converged" in err


def test_training_warnings_follow_the_curves_and_the_chance_error():
    import pandas as pd

    from anynet_search.analysis.studies import training_warnings

    def frame(finals):
        return pd.DataFrame({"error": finals, "epochs": 4, "trial": range(len(finals))})

    def curves(per_trial):
        return pd.DataFrame([(t, e + 1, v) for t, c in enumerate(per_trial) for e, v in enumerate(c)],
                            columns=["trial", "epoch", "val_error"])

    converged = [[40, 12, 10, 9.8], [50, 15, 11, 10.9], [45, 14, 12, 11.8]]
    assert training_warnings(frame([9.8, 10.9, 11.8]), curves(converged), 10) == []
    still_learning = [[85, 75, 60, 40], [88, 80, 70, 50], [86, 78, 65, 45]]
    warnings = training_warnings(frame([40, 50, 45]), curves(still_learning), 10)
    assert len(warnings) == 1 and warnings[0].startswith("far from converged: the median model made 4")
    near_chance = [[89, 88, 75, 62], [89, 89, 80, 70], [89, 87, 77, 60]]
    warnings = training_warnings(frame([62, 70, 60]), curves(near_chance), 10)
    assert warnings[0].startswith("near chance: the median validation error 62.00% is more than 50% of the "
                                  "chance error (90.00% for 10 classes)")
