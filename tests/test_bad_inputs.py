"""Every bad input a demanding user tried: one line naming the culprit, exit 2, no traceback, nothing written.

Each row runs the CLI (`main`, in this process; capfd also sees spawned processes) in a fresh copy of a
small world of fixtures (finished / empty / adaptive / corrupt runs, databases, data sets, space and
config files), and checks that the copy and the working folder are byte for byte what they were before:
a refused command loses nothing and writes nothing, inside --out or outside it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from anynet_search.cli import main
from anynet_search.study import RunOptions, Worker, prepare_study
from anynet_search.study.dry_run import pseudo_error

DRY = "anynet_search.study.dry_run:pseudo_error"
RUN = ["run", "--dataset", "synthetic:64", "--trials", "3", "--workers", "1", "--objective", DRY, "--no-analyze",
       "--out", "{W}/out"]
R = "{W}/runs/finished"  # a finished random study (12 trials)
DEAD_DB = "127.0.0.1:1"  # nothing listens on port 1: connecting fails at once


def _study(root: Path, name: str, trials: int, sampler: str = "random", work: bool = True) -> None:
    opts = RunOptions(space="anynet_xa_tiny", trials=trials, workers=1, dataset="synthetic:64", sampler=sampler,
                      study=name, out=str(root / "runs"), objective=DRY)
    study, *_ = prepare_study(opts)
    if work:
        Worker(study, objective=pseudo_error, poll_seconds=0.01).run()


def _image(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


SPACE_FILES = {
    "bad_yaml.yaml": "extends: anynet_xa_tiny\nparameters: [unclosed\n",
    "unknown_key.yaml": "extends: anynet_xa_tiny\nlayers: 3\n",
    "huge.yaml": "extends: anynet_xa_tiny\nparameters:\n  d: {values: [10000]}\nband: null\n",
    "unreachable.yaml": "extends: anynet_xa_tiny\nband:\n  flops: [1.0e+15, 2.0e+15]\n",
    "stages0.yaml": "extends: anynet_xa_tiny\nstages: 0\n",
    "cycle_a.yaml": "extends: cycle_b.yaml\n",
    "cycle_b.yaml": "extends: cycle_a.yaml\n",
    "evil_name.yaml": "extends: anynet_xa_tiny\nname: ../../evil\n",
    "missing_w.yaml": ("description: no widths\nfamily: anynet\nresolution: 16\nstages: 2\n"
                       "parameters:\n  d: {values: [1]}\n  b: {values: [1]}\n  g: {values: [1]}\n"),
    "negative_d.yaml": "extends: anynet_xa_tiny\nparameters:\n  d: {values: [-2]}\n",
    "bad_band.yaml": "extends: anynet_xa_tiny\nband:\n  flops: [5, 1]\n",
    "bad_fixed.yaml": "extends: anynet_xa_tiny\nfixed:\n  stem_type: pyramid\n",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    _study(root, "finished", 12)
    _study(root, "empty", 3, work=False)  # tickets queued, nothing completed
    _study(root, "adaptive", 10, sampler="tpe")
    shutil.copytree(root / "runs" / "finished", root / "runs" / "corrupt")
    journal = root / "runs" / "corrupt" / "journal.log"
    lines = journal.read_bytes().split(b"\n")
    lines[19] = lines[19][:12] + lines[20]  # a torn line 20 with line 21 glued onto it
    del lines[20]
    journal.write_bytes(b"\n".join(lines))
    (root / "afile.txt").write_text("a file, not a folder\n")
    (root / "adir").mkdir()
    (root / "notes.log").write_text("notes\nnot a journal\n")
    for name, text in SPACE_FILES.items():
        (root / name).write_text(text)
    (root / "bad_config.yaml").write_text("depths: [-1]\nwidths: [8]\nbottleneck_ratios: [1]\ngroup_widths: [1]\n"
                                          "strides: [1]\n")
    (root / "garbage_config.yaml").write_text("depths: [1\n")
    optuna.create_study(study_name="foreign", storage=f"sqlite:///{root / 'foreign.db'}").optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    for name in ("first", "second"):
        optuna.create_study(study_name=name, storage=f"sqlite:///{root / 'two.db'}")
    for i in range(3):
        _image(root / "one_class" / "cat" / f"{i}.png", i)
        _image(root / "bad_image" / "cat" / f"{i}.png", i)
    (root / "bad_image" / "dog").mkdir()
    (root / "bad_image" / "dog" / "0.png").write_bytes(b"not a png")
    (root / "no_classes").mkdir()
    cifar = root / "cifar_bad" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        (cifar / name).write_bytes(b"garbage")
    return root


# (id, argv template, needles the one error line must contain)
ROWS = [
    # ---- run: options
    ("trials-zero", [*RUN, "--trials", "0"], ["--trials"]),
    ("trials-word", [*RUN, "--trials", "many"], ["--trials", "many"]),
    ("trials-absurd", [*RUN, "--trials", "1000000000"], ["--trials", "limit"]),
    ("workers-zero", [*RUN, "--workers", "0"], ["--workers"]),
    ("workers-negative", [*RUN, "--workers", "-3"], ["--workers"]),
    ("epochs-zero", [*RUN, "--epochs", "0"], ["--epochs"]),
    ("seed-negative", [*RUN, "--seed", "-1"], ["seed"]),
    ("sampler-unknown", [*RUN, "--sampler", "bayes"], ["--sampler", "bayes"]),
    ("pruner-with-random", [*RUN, "--pruner", "median"], ["--pruner median with --sampler random", "biased"]),
    ("pruner-unknown", [*RUN, "--sampler", "tpe", "--pruner", "early"], ["--pruner", "early"]),
    ("jobs-password-in-url", [*RUN, "--local-jobs", "--storage", "postgresql://u:pw@127.0.0.1:1/db"],
     ["password in the URL", "PGPASSWORD"]),
    ("train-lr-word", [*RUN, "--train", "lr=abc"], ["lr", "abc"]),
    ("train-momentum-word", [*RUN, "--train", "momentum=abc"], ["momentum", "abc"]),
    ("train-amp-maybe", [*RUN, "--train", "amp=maybe"], ["amp", "maybe"]),
    ("train-no-value", [*RUN, "--train", "lr"], ["--train", "KEY=VALUE"]),
    ("train-unknown-key", [*RUN, "--train", "learning_rate=0.1"], ["learning_rate"]),
    ("train-batch-one", [*RUN, "--train", "batch_size=1"], ["batch_size"]),
    ("train-epochs-fraction", [*RUN, "--train", "epochs=2.5"], ["epochs", "2.5"]),
    ("train-warmup-too-long", [*RUN, "--train", "warmup_epochs=100"], ["warmup_epochs"]),
    ("train-compile-and-graphs", [*RUN, "--train", "compile=true", "--train", "cuda_graphs=true"], ["cuda_graphs"]),
    ("train-lr-infinite", [*RUN, "--train", "lr=.inf"], ["lr"]),
    ("devices-word-index", [*RUN, "--devices", "cuda:abc"], ["cuda:abc"]),
    ("devices-negative-index", [*RUN, "--devices", "cuda:-1"], ["cuda:-1"]),
    ("devices-unknown", [*RUN, "--devices", "banana"], ["banana"]),
    ("devices-empty", [*RUN, "--devices", ","], ["--devices"]),
    ("study-escapes", [*RUN, "--study", "../../etc/evil"], ["../../etc/evil"]),
    ("study-separator", [*RUN, "--study", "a/b"], ["'a/b'"]),
    ("study-dotdot", [*RUN, "--study", ".."], ["'..'"]),
    ("study-control-char", [*RUN, "--study", "bad\nname"], ["control character"]),
    ("study-empty", [*RUN, "--study", ""], ["--study", "empty"]),
    ("out-is-a-file", [*RUN, "--out", "{W}/afile.txt"], ["--out", "afile.txt"]),
    ("out-below-a-file", [*RUN, "--out", "{W}/afile.txt/sub"], ["--out", "afile.txt"]),
    ("space-unknown", [*RUN, "--space", "anynet_zz"], ["anynet_zz"]),
    ("resume-with-other-seed", [*RUN, "--study", "finished", "--out", "{W}/runs", "--seed", "3", "--trials", "12"],
     ["finished", "seed"]),
    ("run-into-foreign-study", [*RUN, "--storage", "sqlite:///{W}/foreign.db", "--study", "foreign"],
     ["foreign", "not created by anynet-search"]),
    ("run-storage-dead-db", [*RUN, "--storage", f"postgresql://u:pw@{DEAD_DB}/db"], ["cannot connect"]),
    ("run-storage-not-a-journal", [*RUN, "--storage", "journal:{W}/notes.log"], ["notes.log", "journal"]),
    ("run-storage-journal-is-a-folder", [*RUN, "--storage", "journal:{W}/adir"], ["--storage", "adir"]),
    # ---- run: space files
    ("space-bad-yaml", [*RUN, "--space", "{W}/bad_yaml.yaml"], ["bad_yaml.yaml", "YAML"]),
    ("space-unknown-key", [*RUN, "--space", "{W}/unknown_key.yaml"], ["unknown_key.yaml", "layers"]),
    ("space-cannot-fit", [*RUN, "--space", "{W}/huge.yaml"], ["huge.yaml", "smallest network needs"]),
    ("space-band-unreachable", [*RUN, "--space", "{W}/unreachable.yaml"], ["unreachable.yaml", "unreachable"]),
    ("space-zero-stages", [*RUN, "--space", "{W}/stages0.yaml"], ["stages0.yaml", "stages"]),
    ("space-extends-cycle", [*RUN, "--space", "{W}/cycle_a.yaml"], ["cycle"]),
    ("space-name-escapes", [*RUN, "--space", "{W}/evil_name.yaml"], ["../../evil", "study name"]),
    ("space-missing-parameter", [*RUN, "--space", "{W}/missing_w.yaml"], ["missing_w.yaml", "missing w"]),
    ("space-negative-depth", [*RUN, "--space", "{W}/negative_d.yaml"], ["negative_d.yaml", "parameters.d"]),
    ("space-band-reversed", [*RUN, "--space", "{W}/bad_band.yaml"], ["bad_band.yaml", "band.flops"]),
    ("space-bad-fixed", [*RUN, "--space", "{W}/bad_fixed.yaml"], ["bad_fixed.yaml", "pyramid"]),
    # ---- run: data sets
    ("dataset-unknown", [*RUN, "--dataset", "imagenet"], ["imagenet"]),
    ("dataset-cifar-missing", [*RUN, "--dataset", "cifar10:{W}/nope"], ["nope", "does not exist"]),
    ("dataset-cifar-garbage", [*RUN, "--dataset", "cifar10:{W}/cifar_bad"], ["data_batch_1", "CIFAR"]),
    ("dataset-one-class", [*RUN, "--dataset", "imagefolder:{W}/one_class"], ["one_class", "at least two"]),
    ("dataset-no-classes", [*RUN, "--dataset", "imagefolder:{W}/no_classes"], ["no_classes", "no class"]),
    ("dataset-bad-image", [*RUN, "--dataset", "imagefolder:{W}/bad_image"], ["0.png", "cannot read image"]),
    ("dataset-synthetic-word", [*RUN, "--dataset", "synthetic:lots"], ["synthetic:lots"]),
    ("dataset-synthetic-tiny", [*RUN, "--dataset", "synthetic:10"], ["synthetic:10", ">= 50"]),
    # ---- worker
    ("worker-threads-negative", ["worker", "--study", "finished", "--storage", f"journal:{R}/journal.log",
                                 "--threads", "-1"], ["--threads"]),
    ("worker-threads-zero", ["worker", "--study", "finished", "--storage", f"journal:{R}/journal.log",
                             "--threads", "0"], ["--threads"]),
    ("worker-device-unknown", ["worker", "--study", "finished", "--storage", f"journal:{R}/journal.log",
                               "--device", "banana"], ["banana"]),
    ("worker-device-word-index", ["worker", "--study", "finished", "--storage", f"journal:{R}/journal.log",
                                  "--device", "cuda:x"], ["cuda:x"]),
    ("worker-unknown-study", ["worker", "--study", "nosuch", "--storage", f"journal:{R}/journal.log"],
     ["nosuch", "finished"]),
    ("worker-foreign-study", ["worker", "--study", "foreign", "--storage", "sqlite:///{W}/foreign.db"],
     ["foreign", "not created by anynet-search"]),
    ("worker-missing-journal-folder", ["worker", "--study", "x", "--storage", "journal:{W}/nope/journal.log"],
     ["nope"]),
    # ---- status and storage URLs
    ("status-nothing", ["status"], ["run folder"]),
    ("status-missing-folder", ["status", "{W}/nope"], ["nope", "not a run folder"]),
    ("status-a-file", ["status", "{W}/afile.txt"], ["afile.txt", "not a run folder"]),
    ("status-top-zero", ["status", R, "--top", "0"], ["--top"]),
    ("status-storage-not-a-url", ["status", "--storage", "mystudies", "--study", "x"], ["mystudies"]),
    ("status-storage-dead-db", ["status", "--storage", f"postgresql://alice:s3cr3t@{DEAD_DB}/db", "--study", "x"],
     ["cannot connect", "alice:***@"]),
    ("status-storage-query-password", ["status", "--storage", f"postgresql://alice@{DEAD_DB}/db?password=s3cr3t",
                                       "--study", "x"], ["password=***"]),
    ("status-storage-at-in-password", ["status", "--storage", f"postgresql://alice:s3c@r3t@{DEAD_DB}/db",
                                       "--study", "x"], ["alice:***@", "%40"]),
    ("status-storage-sqlite-missing-dir", ["status", "--storage", "sqlite:///{W}/nope/x.db", "--study", "x"],
     ["cannot connect"]),
    ("status-storage-journal-folder", ["status", "--storage", "journal:{W}/adir", "--study", "x"],
     ["adir", "not a file"]),
    ("status-storage-journal-missing", ["status", "--storage", "journal:{W}/nope.log", "--study", "x"],
     ["nope.log", "does not exist"]),
    ("status-storage-two-studies", ["status", "sqlite:///{W}/two.db"], ["2 studies", "--study"]),
    ("status-storage-unknown-study", ["status", "--storage", "sqlite:///{W}/two.db", "--study", "third"],
     ["third", "first, second"]),
    # ---- journals and result folders
    ("status-corrupt-journal", ["status", "{W}/runs/corrupt"], ["corrupt/journal.log", "line 20"]),
    ("analyze-corrupt-journal", ["analyze", "{W}/runs/corrupt", "--out", "{W}/rep"], ["journal.log", "line 20"]),
    ("export-corrupt-journal", ["export", "{W}/runs/corrupt", "--out", "{W}/ex"], ["journal.log", "line 20"]),
    ("derive-corrupt-journal", ["derive", "{W}/runs/corrupt", "--out", "{W}/d.yaml"], ["journal.log", "line 20"]),
    ("analyze-no-completed", ["analyze", "{W}/runs/empty", "--out", "{W}/rep"], ["empty", "no completed trials"]),
    ("export-no-completed", ["export", "{W}/runs/empty", "--out", "{W}/ex"], ["empty", "no completed trials"]),
    ("analyze-missing", ["analyze", "{W}/nope", "--out", "{W}/rep"], ["nope", "not a run folder"]),
    ("analyze-bins-zero", ["analyze", R, "--out", "{W}/rep", "--bins", "0"], ["--bins"]),
    ("analyze-bins-negative", ["analyze", R, "--out", "{W}/rep", "--bins", "-2"], ["--bins"]),
    ("analyze-out-is-a-file", ["analyze", R, "--out", "{W}/afile.txt"], ["--out", "afile.txt"]),
    ("derive-out-is-a-folder", ["derive", R, "--out", "{W}/adir"], ["--out", "adir", "folder"]),
    ("derive-out-below-a-file", ["derive", R, "--out", "{W}/afile.txt/d.yaml"], ["afile.txt"]),
    ("derive-missing", ["derive", "{W}/nope"], ["nope", "not a run folder"]),
    ("export-top-zero", ["export", R, "--top", "0", "--out", "{W}/ex"], ["--top"]),
    ("export-top-negative", ["export", R, "--top", "-1", "--out", "{W}/ex"], ["--top"]),
    ("export-out-is-a-file", ["export", R, "--out", "{W}/afile.txt"], ["--out", "afile.txt"]),
    ("export-format-unknown", ["export", R, "--format", "onnx", "--out", "{W}/ex"], ["--format", "onnx"]),
    # ---- describe and spaces
    ("describe-unknown", ["describe", "RegNetZ-1GF"], ["RegNetZ-1GF"]),
    ("describe-resolution-zero", ["describe", "RegNetX-200MF", "--resolution", "0"], ["--resolution"]),
    ("describe-bad-config", ["describe", "{W}/bad_config.yaml"], ["bad_config.yaml", "depths"]),
    ("describe-garbage-config", ["describe", "{W}/garbage_config.yaml"], ["garbage_config.yaml"]),
    ("spaces-show-nothing", ["spaces", "show"], ["space name"]),
    ("spaces-show-unknown", ["spaces", "show", "anynet_zz"], ["anynet_zz"]),
    ("command-unknown", ["train"], ["train"]),
]
SECRETS = ("s3cr3t", "s3c", "r3t")


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder below root with a hash of its bytes."""
    return {str(p.relative_to(root)): "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def test_the_table_has_at_least_60_rows_across_every_kind_of_input():
    assert len(ROWS) >= 60
    assert len({row[0] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("args,needles", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line_naming_the_culprit_exit_2_and_nothing_written(world, tmp_path, monkeypatch, capfd,
                                                                              args, needles):
    if "--devices" in args and "cuda" in args[args.index("--devices") + 1] and torch.cuda.is_available():
        pytest.skip("this row is about a machine without the named GPU")
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{W}", str(w)) for a in args]
    before = _snapshot(tmp_path)
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capfd.readouterr()
    assert code == 2, err
    assert "Traceback" not in err + out
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("[I ", "[W "))]
    assert len(lines) == 1, err
    assert lines[0].startswith("anynet-search") and "error:" in lines[0]
    for needle in needles:
        assert needle.replace("{W}", str(w)) in lines[0], lines[0]
    if any(s in " ".join(argv) for s in SECRETS):
        assert not any(s in err + out for s in SECRETS), err
    assert _snapshot(tmp_path) == before  # nothing lost, nothing written (inside --out or elsewhere)
