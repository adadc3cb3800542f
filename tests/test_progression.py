"""analysis/anynet_progression.py: one command regenerates the file and figure; its numbers are consistent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from anynet_search.reporting.results import load_results, open_run
from anynet_search.study.plan import StudySettings
from anynet_search.study.runner import RunOptions, prepare_study
from anynet_search.study.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
SPACES = ("anynet_xa", "anynet_xb", "anynet_xc", "anynet_xd", "anynet_xe")
sys.path.insert(0, str(ROOT / "analysis"))

from progression_numbers import progression_numbers  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Five dry-run studies of 24 models, run in this process (a full gc.collect per trial over the test
    process's heap is the slow part of an in-process worker, and memory is not what is tested here)."""
    out = tmp_path_factory.mktemp("progression")
    dirs = {}
    with mock.patch("anynet_search.study.worker.release_memory", lambda: None):
        for space in SPACES:
            opts = RunOptions(space=f"{space}_tiny", trials=24, workers=1, dataset="synthetic:64", sampler="random",
                              out=str(out), objective="anynet_search.study.dry_run:pseudo_error")
            study, _, _, run_dir = prepare_study(opts)
            Worker(study, objective=opts.objective, poll_seconds=0.05).run()
            dirs[f"{space}_tiny"] = run_dir
    return out, dirs


def test_one_command_writes_the_file_and_the_figure(runs, tmp_path):
    out, _ = runs
    doc, fig = tmp_path / "progression.md", tmp_path / "figures" / "edf.png"
    cmd = [sys.executable, str(ROOT / "analysis" / "anynet_progression.py"), "--report-only", "--trials", "24",
           "--dataset", "synthetic:64", "--out", str(out), "--doc", str(doc), "--figure", str(fig),
           "--n-perm", "500"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    text = doc.read_text()
    assert fig.stat().st_size > 10_000 and "![EDFs and expected best error](figures/edf.png)" in text
    for step in ("A -> B", "B -> C", "C -> D", "D -> E"):
        assert re.search(rf"^\| {step} \| ", text, re.M) and f"**{step}**" in text
    assert "Configs that two consecutive studies share: A -> B: 0, B -> C: 0, C -> D: 0, D -> E: 0." in text
    assert "--report-only" in text.split("```bash")[1].split("```")[0]


def test_numbers_are_consistent(runs):
    _, dirs = runs
    frames = {n: load_results(d) for n, d in dirs.items()}
    spaces = {n: StudySettings.from_study(open_run(d)[1]).design_space() for n, d in dirs.items()}
    nums = progression_numbers(frames, spaces, n_perm=500)
    assert [round(s["log10_shrink"], 2) for s in nums["steps"]][:2] == [1.43, 2.10]  # the tiny spaces' own sizes
    for s in nums["steps"]:
        assert s["diff"] == pytest.approx(s["mean_next"] - s["mean_prev"])
        assert s["lo95"] <= s["lo90"] <= s["diff"] <= s["hi90"] <= s["hi95"]
        assert s["p_claim_holm"] >= s["p_claim"] and s["ks_p_holm"] >= s["ks_p"]
        assert s["result"] in ("agrees", "disagrees", "cannot tell")
        assert s["equivalent"] == (s["equivalence_bound"] < nums["margin"])
    assert {d["constraint"] for d in nums["derived"]} == {"shared_b", "shared_g", "increasing_widths",
                                                          "increasing_depths"}
