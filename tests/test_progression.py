"""analysis/anynet_progression.py: the committed per-model data regenerate the file and figure; the numbers are
consistent, every verdict carries its power, and the data round-trip through the CSV."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from anynet_search.reporting.results import load_results, open_run
from anynet_search.study.runner import RunOptions, prepare_study
from anynet_search.study.settings import StudySettings
from anynet_search.study.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
SPACES = ("anynet_xa", "anynet_xb", "anynet_xc", "anynet_xd", "anynet_xe")
sys.path.insert(0, str(ROOT / "analysis"))

from progression_data import meta_path, read_data, write_data  # noqa: E402
from progression_numbers import one_image, progression_numbers  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Five dry-run studies of 24 models, run in this process (a full gc.collect per trial over the test
    process's heap is the slow part of an in-process worker, and memory is not what is tested here), and
    their per-model data written as the committed CSV would be."""
    out = tmp_path_factory.mktemp("progression")
    dirs = {}
    with mock.patch("anynet_search.study.worker.release_memory", lambda: None):
        for space in SPACES:
            opts = RunOptions(space=f"{space}_tiny", trials=24, workers=1, dataset="synthetic:64", sampler="random",
                              out=str(out), objective="anynet_search.study.dry_run:pseudo_error")
            study, _, _, run_dir = prepare_study(opts)
            Worker(study, objective=opts.objective, poll_seconds=0.05).run()
            dirs[f"{space}_tiny"] = run_dir
    csv, _ = write_data(dirs, out / "data" / "progression_models.csv")
    return csv, dirs


def test_report_only_writes_the_file_and_the_figure_from_the_data_alone(runs, tmp_path):
    csv, _ = runs
    doc, fig = tmp_path / "progression.md", tmp_path / "figures" / "edf.png"
    cmd = [sys.executable, str(ROOT / "analysis" / "anynet_progression.py"), "--report-only", "--data", str(csv),
           "--doc", str(doc), "--figure", str(fig), "--n-perm", "500", "--power-sims", "100"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # no run folder
    text = doc.read_text()
    assert fig.stat().st_size > 10_000 and "![EDFs and expected best error](figures/edf.png)" in text
    for step in ("A -> B", "B -> C", "C -> D", "D -> E"):
        assert re.search(rf"^\| {step} \| ", text, re.M) and f"**{step}**" in text
    assert "configs that two consecutive studies share: A -> B: 0, B -> C: 0, C -> D: 0, D -> E: 0." in text
    assert "--report-only" in text.split("```bash")[1].split("```")[0]
    # every verdict line states its power, and the margin is one validation image of this data set
    verdicts = [line for line in text.splitlines() if line.startswith("- **")]
    assert len(verdicts) == 4 and all("% at this n" in line for line in verdicts)
    images = __import__("json").loads(meta_path(csv).read_text())["validation_images"]
    assert f"100 / {images} = {100 / images:.2f} points" in text


def test_the_csv_holds_what_the_runs_hold(runs):
    csv, dirs = runs
    frames, spaces, meta = read_data(csv)
    assert list(frames) == list(dirs) and meta["seed"] == 0
    for name, run in dirs.items():
        df = load_results(run)
        mine = frames[name]
        assert spaces[name].hash == StudySettings.from_study(open_run(run)[1]).design_space().hash
        for col in ("trial", "slot", "error", "test_error", "flops", "params", "acts", "d1", "w4", "b2", "g3"):
            assert mine[col].to_numpy() == pytest.approx(df[col].to_numpy(dtype=float), rel=1e-5), (name, col)
        sampled = [c for c in df.columns if c.startswith("sampled_")]
        assert sampled and set(sampled) <= set(mine.columns)


def test_data_written_for_another_space_file_is_refused(runs, tmp_path):
    csv, _ = runs
    copy = tmp_path / "progression_models.csv"
    copy.write_text(csv.read_text())
    meta = __import__("json").loads(meta_path(csv).read_text())
    meta["space_hashes"]["anynet_xc_tiny"] = "0000000000000000"
    meta_path(copy).write_text(__import__("json").dumps(meta))
    with pytest.raises(SystemExit, match="anynet_xc_tiny: the bundled space file changed"):
        read_data(copy)


def test_numbers_are_consistent(runs):
    csv, _ = runs
    frames, spaces, meta = read_data(csv)
    margin = one_image(meta["validation_images"])
    nums = progression_numbers(frames, spaces, margin=margin, n_perm=500, power_sims=100, band_draws=1 << 15,
                               validation_images=meta["validation_images"])
    assert [round(s["log10_shrink_before_band"], 2) for s in nums["steps"]][:2] == [1.43, 2.10]
    for s in nums["steps"]:
        assert s["shrink_lo"] < s["log10_shrink"] < s["shrink_hi"]
        assert s["diff"] == pytest.approx(s["mean_next"] - s["mean_prev"])
        assert s["lo95"] <= s["lo90"] <= s["diff"] <= s["hi90"] <= s["hi95"]
        assert s["p_primary_holm"] >= s["p_primary"] and s["ks_p_holm"] >= s["ks_p"]
        assert s["p_primary"] == (s["p_noninferior"] if s["claim"] == "no loss" else s["p_better"])
        assert 0 <= s["power_primary_holm"] <= s["power_primary"] <= 1
        assert s["result"] in ("agrees", "disagrees", "cannot tell")
        assert s["equivalent"] == (s["equivalence_bound"] < nums["margin"])
    assert {d["constraint"] for d in nums["derived"]} == {"shared_b", "shared_g", "increasing_widths",
                                                          "increasing_depths"}
    assert len(nums["seeds"]) == 10 and all(-1 <= c["rho"] <= 1 for c in nums["seeds"])


def test_errors_are_put_back_on_their_image_lattice(runs, tmp_path):
    """Whole numbers of validation images tie exactly after the CSV, however it rounded them: a KS power figure
    with a one-image shift split ties that rounding had moved apart (57% instead of 20% on digits data)."""
    import json

    import pandas as pd

    csv, _ = runs
    meta = json.loads(meta_path(csv).read_text())
    table = pd.read_csv(csv)
    images = meta["validation_images"] = 144  # a lattice that 4 decimals cannot hold exactly
    wrong = np.arange(len(table)) % (images + 1)
    table["error"] = np.round(wrong * 100 / images, 4)  # what a 4-decimal CSV would hold
    copy = tmp_path / "progression_models.csv"
    table.to_csv(copy, index=False)
    meta_path(copy).write_text(json.dumps(meta))
    frames, _, _ = read_data(copy)
    got = np.concatenate([f["error"].to_numpy() for f in frames.values()])
    assert set(got) <= {k * 100.0 / images for k in range(images + 1)}  # exactly, not within a tolerance


def test_the_committed_note_follows_from_the_committed_data():
    """analysis/anynet_progression.md's per-space table and its regenerate command come from
    analysis/data/ (the command is repository-relative, the data hold 100 models per space)."""
    from progression_data import DATA
    from progression_numbers import label

    frames, spaces, meta = read_data(DATA)
    note = (ROOT / "analysis" / "anynet_progression.md").read_text()
    assert "```bash\npython analysis/anynet_progression.py --report-only\n```" in note
    assert list(frames) == [f"{s}_tiny" for s in SPACES] and meta["validation_images"] == 144
    for name, df in frames.items():
        e = df["error"].to_numpy()
        row = (f"| {label(name)} | {e.size} | {e.min():.2f} | {np.median(e):.2f} | {e.mean():.2f} | "
               f"{e.std(ddof=1):.2f} | {spaces[name].log10_size:.2f} |")
        assert row in note, row
        assert set(np.round(e * 144 / 100, 9)) <= set(range(145))  # whole validation images


def test_reruns_and_a_retraining_add_the_stability_and_retrain_noise_sections(runs, tmp_path):
    """progression_stability.py's data (C and D under seed 1, A trained again under other training seeds) give
    the note a stability table for C -> D only, and the retrain noise of A with A -> B judged again."""
    from anynet_progression import main as progression_main
    from progression_stability import write_reruns

    csv, _ = runs
    reruns = {}
    with mock.patch("anynet_search.study.worker.release_memory", lambda: None):
        for space, seed, repeat in (("anynet_xc_tiny", 1, 0), ("anynet_xd_tiny", 1, 0), ("anynet_xa_tiny", 0, 1)):
            opts = RunOptions(space=space, trials=24, workers=1, dataset="synthetic:64", sampler="random", seed=seed,
                              repeat=repeat, out=str(tmp_path / "runs"), objective="anynet_search.study.dry_run:pseudo_error")
            study, _, _, run_dir = prepare_study(opts)
            Worker(study, objective=opts.objective, poll_seconds=0.05).run()
            reruns[(space, seed, repeat)] = run_dir
    data = tmp_path / "progression_reruns_models.csv"
    write_reruns(reruns, data)
    doc = tmp_path / "note.md"
    progression_main(["--report-only", "--data", str(csv), "--reruns", str(data), "--doc", str(doc), "--figure",
                      str(tmp_path / "f.png"), "--n-perm", "200", "--power-sims", "50", "--band-draws", "4096"])
    text = doc.read_text()
    assert "## Retrain noise: the same models trained again" in text and "## Stability: the steps rerun" in text
    assert "24 of 24 errors changed" in text  # the dry run's noise follows the repeat
    assert "- A -> B judged again with the retrained AnyNetXA: mean difference" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "seed 1" not in line and "of 1 |" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| C -> D"], rows  # only the step whose two spaces were rerun
    assert "Reruns with other seeds: the same verdict in" in text and "seed 1" in text
