"""Run folders work whatever the storage; every results command takes `URL --study NAME` (dry objective).

Regression tests for issue 10: on SQL storage `run` ended with exit 2 ("not a run folder (no journal.log)")
after training, `analyze`/`derive`/`export` had no `--study`, and adaptive-sampler studies ended with
exit 2 ("rows come from non-random sampler(s)") instead of a report.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import time

import pytest

from anynet_search import load_config, load_space
from anynet_search.cli import main
from anynet_search.study.run_folder import RECORD_NAME, folder_storage, portable_url, write_record

DRY = "anynet_search.study.dry_run:pseudo_error"


def cli(*args, cwd, code=0):
    """`run` in a subprocess, as a user starts it; the reading commands in-process (faster, same code path)."""
    if args[0] == "run":
        proc = subprocess.run([sys.executable, "-m", "anynet_search", *args], cwd=cwd, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            returncode = main(list(args))
    finally:
        os.chdir(here)
    assert returncode == code, out.getvalue()[-2000:] + err.getvalue()[-2000:]
    return subprocess.CompletedProcess(args, returncode, out.getvalue(), err.getvalue())


def test_sqlite_run_ends_exit_0_and_its_folder_and_url_work_from_anywhere(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    out = cli("run", "--trials", "6", "--workers", "2", "--dataset", "synthetic:64", "--storage", "sqlite:///s.db",
              "--study", "a", "--objective", DRY, cwd=work).stdout
    assert "a: 6/6 completed" in out and "report:" in out
    run = work / "runs" / "a"
    assert (run / "report" / "report.html").is_file() and (run / "report" / "derived_space_a.yaml").is_file()
    record = json.loads((run / RECORD_NAME).read_text())
    assert record == {"study": "a", "storage": f"sqlite:///{work / 's.db'}", "password_removed": False}

    # a second study in the same database: the URL then needs --study, the folder never does
    cli("run", "--trials", "3", "--workers", "1", "--dataset", "synthetic:64", "--storage", "sqlite:///s.db",
        "--study", "b", "--objective", DRY, "--no-analyze", cwd=work)
    url = f"sqlite:///{work / 's.db'}"
    assert "6/6 completed" in cli("status", str(run), cwd=elsewhere).stdout
    assert "3/3 completed" in cli("status", url, "--study", "b", cwd=elsewhere).stdout
    err = cli("analyze", url, "--out", "x", cwd=elsewhere, code=2).stderr
    assert "storage holds 2 studies (a, b); name one with --study" in err

    # analyze both studies of one storage in one report: --study is repeatable
    out = cli("analyze", url, "--study", "a", "--study", "b", "--out", "both", cwd=elsewhere).stdout
    assert "a (anynet_xa_tiny, random): n=6" in out and "b (anynet_xa_tiny, random): n=3" in out
    out = cli("derive", url, "--study", "a", "--out", "d.yaml", cwd=elsewhere).stdout
    assert "derived space (" in out and load_space(elsewhere / "d.yaml").stages == 4
    cli("derive", str(run), "--out", "d2.yaml", cwd=elsewhere)
    assert (elsewhere / "d2.yaml").read_text().split("\n", 1)[1] == (elsewhere / "d.yaml").read_text().split("\n", 1)[1]
    paths = cli("export", url, "--study", "b", "--top", "2", "--out", "ex", cwd=elsewhere).stdout.split()
    configs = [p for p in paths if p.endswith(".yaml") and not p.endswith(".regnet.yaml")]
    assert len(configs) == 2 and all("study: b" in open(os.path.join(elsewhere, p)).read() for p in configs)
    assert load_config(os.path.join(elsewhere, configs[0])).num_stages == 4


def test_postgresql_run_folder_records_no_password(tmp_path):
    url = os.environ.get("ANYNET_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide ANYNET_TEST_POSTGRES_URL (see .ci/postgres.sh)")
        pytest.skip("set ANYNET_TEST_POSTGRES_URL to run against PostgreSQL (.ci/postgres.sh starts one)")
    with_password = url.replace("://postgres@", "://postgres:pw-s3cret@", 1)  # the CI server trusts loopback
    assert with_password != url
    name = f"folder-{os.getpid()}-{time.time_ns()}"
    proc = cli("run", "--trials", "4", "--workers", "2", "--dataset", "synthetic:64", "--storage", with_password,
               "--study", name, "--objective", DRY, cwd=tmp_path)
    assert "pw-s3cret" not in proc.stdout + proc.stderr and f"{name}: 4/4 completed" in proc.stdout
    run = tmp_path / "runs" / name
    text = (run / RECORD_NAME).read_text()
    assert "pw-s3cret" not in text and json.loads(text) == {"study": name, "storage": url, "password_removed": True}
    for args in (["status", str(run)], ["analyze", str(run), "--out", "rep"], ["export", str(run), "--out", "ex"]):
        proc = cli(*args, cwd=tmp_path)
        assert "pw-s3cret" not in proc.stdout + proc.stderr


def test_a_folder_whose_storage_needs_its_password_says_how_to_give_it(tmp_path):
    write_record(tmp_path, "postgresql://alice:s3cret@127.0.0.1:1/studies", "x")
    assert "s3cret" not in (tmp_path / RECORD_NAME).read_text()
    with pytest.raises(ValueError, match="without its password: set PGPASSWORD or ~/.pgpass, or pass the full URL"):
        folder_storage(tmp_path)
    err = cli("status", str(tmp_path), cwd=tmp_path, code=2).stderr.strip()
    assert "\n" not in err and "PGPASSWORD" in err and "s3cret" not in err
    with pytest.raises(ValueError, match="not a run folder"):
        folder_storage(tmp_path / "missing")


def test_recorded_urls_are_absolute_and_the_default_journal_needs_no_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert portable_url("sqlite:///s.db") == f"sqlite:///{tmp_path / 's.db'}"
    assert portable_url("sqlite:////abs/s.db?timeout=5") == "sqlite:////abs/s.db?timeout=5"
    assert portable_url("journal:j/x.log") == f"journal:{tmp_path / 'j' / 'x.log'}"
    assert portable_url("postgresql://u:p@h:5/db") == "postgresql://u@h:5/db"
    assert write_record(tmp_path, f"journal:{tmp_path / 'journal.log'}", "s") is None


@pytest.mark.filterwarnings("ignore:forced analysis of a possibly biased sample")
def test_adaptive_sampler_run_ends_exit_0_with_a_report_that_fits_it(tmp_path):
    out = cli("run", "--trials", "6", "--workers", "1", "--dataset", "synthetic:64", "--sampler", "tpe",
              "--space", "anynet_xc_tiny", "--objective", DRY, cwd=tmp_path).stdout
    assert "6/6 completed" in out and "EDF verdicts left out: 6 of 6 rows come from non-random sampler(s) ['tpe']" in out
    run = tmp_path / "runs" / "anynet_xc_tiny-synthetic-tpe-e8-s0"
    html = (run / "report" / "report.html").read_text()
    assert "Optimization history" in html and "Parameter importance" in html and "Best models" in html
    assert len(list((run / "report" / "best_configs").glob("*/rank0*_trial*.yaml"))) >= 5
    out = cli("derive", str(run), cwd=tmp_path).stdout
    assert out.startswith("no constraints judged and no space derived: EDF verdicts left out")
    # infeasible suggestions (told back to TPE, never trained) are not counted as completed trials
    status = cli("status", str(run), cwd=tmp_path).stdout
    assert "6/6 completed; by state: complete 6" in status
    forced = cli("derive", str(run), "--force", "--out", "forced.yaml", cwd=tmp_path)
    assert "verdict" in forced.stdout and "possibly biased" in forced.stderr and (tmp_path / "forced.yaml").is_file()
