"""The study-facing commands end to end (dry objective, no training): run, status, derive, analyze, export, spaces."""

import subprocess
import sys

import pytest

from anynet_search import load_config
from anynet_search.cli import main
from anynet_search.spaces import load_space

DRY = "anynet_search.study.dry_run:pseudo_error"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    code = main(["run", "--space", "anynet_xa_tiny", "--trials", "40", "--workers", "1", "--dataset", "synthetic:64",
                 "--out", str(out), "--objective", DRY, "--no-analyze"])
    assert code == 0
    return out / "anynet_xa_tiny-synthetic-random-e8-s0"


def test_run_prints_where_results_are(run_dir, capsys):
    assert (run_dir / "journal.log").is_file()


def test_status_lists_states_and_best(run_dir, capsys):
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "40/40 completed" in out and "best 5" in out and "validation" in out


def test_derive_prints_verdicts_and_writes_a_loadable_space(run_dir, tmp_path, capsys):
    out_file = tmp_path / "derived.yaml"
    assert main(["derive", str(run_dir), "--out", str(out_file)]) == 0
    text = capsys.readouterr().out
    for name in ("shared_b", "shared_g", "increasing_widths", "increasing_depths"):
        assert name in text
    assert "exact" in text  # shrink factors counted on the stored design space
    assert load_space(out_file).stages == 4


def test_analyze_writes_report(run_dir, tmp_path, capsys):
    assert main(["analyze", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64" in html and "validation" in html
    assert (tmp_path / "rep" / "constraints.csv").is_file()


def test_export_writes_configs_that_load_back(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--top", "3", "--format", "yaml", "--out", str(tmp_path / "ex")]) == 0
    paths = [p for p in capsys.readouterr().out.split() if p.endswith(".yaml") and "regnet" not in p]
    assert paths and load_config(paths[0]).num_stages == 4


def test_spaces_list_and_show(capsys):
    assert main(["spaces"]) == 0
    assert "anynet_xe" in capsys.readouterr().out
    assert main(["spaces", "show", "anynet_xc"]) == 0
    assert "log10 size: 14.50" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [(["run", "--space", "no_such_space"], "no_such_space"),
     (["run", "--dataset", "cifar10:/no/such/folder"], "/no/such/folder"),
     (["run", "--train", "lr"], "KEY=VALUE"),
     (["status", "/no/such/run"], "not a run folder")],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    proc = subprocess.run([sys.executable, "-m", "anynet_search", *args, *(["--out", str(tmp_path)] if args[0] == "run" else [])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]
