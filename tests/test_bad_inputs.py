"""Every bad input a demanding user tried: one line naming the culprit, exit 2, no traceback, nothing written.

Each row runs the CLI (`main`, in this process; capfd also sees spawned processes) in a fresh copy of a
small world of fixtures (finished / empty / adaptive / corrupt runs, runs stored by another version, a plain
Optuna journal, databases, data sets, space and config files, a symbolic-link loop), and checks that the copy
and the working folder are byte for byte what they were before: a refused command loses nothing and writes
nothing, inside --out or outside it. Places the OS refuses (/proc, /sys) are refused with its reason, whether
the check finds them unwritable or the OS refuses as the folder is made (as root).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from anynet_search.cli import main
from anynet_search.study import RunOptions, Worker, prepare_study
from anynet_search.study.dry_run import pseudo_error
from anynet_search.study.settings import SETTINGS_ATTR
from anynet_search.study.storage import open_storage

DRY = "anynet_search.study.dry_run:pseudo_error"
RUN = ["run", "--dataset", "synthetic:64", "--trials", "3", "--workers", "1", "--objective", DRY, "--no-analyze",
       "--out", "{W}/out"]
R = "{W}/runs/finished"  # a finished random study (12 trials)
DEAD_DB = "127.0.0.1:1"  # nothing listens on port 1: connecting fails at once


def _study(root: Path, name: str, trials: int, sampler: str = "random", work: bool = True,
           space: str = "anynet_xa_tiny") -> None:
    opts = RunOptions(space=space, trials=trials, workers=1, dataset="synthetic:64", sampler=sampler,
                      study=name, out=str(root / "runs"), objective=DRY)
    study, *_ = prepare_study(opts)
    if work:
        Worker(study, objective=pseudo_error, poll_seconds=0.01).run()


def _as_other_version(root: Path, name: str, **changes: object) -> None:
    """Store the study's settings as another version would have: keys changed, added (a value) or removed
    (None)."""
    journal = root / "runs" / name / "journal.log"
    study = optuna.load_study(study_name=name, storage=open_storage(f"journal:{journal}"))
    settings = {**study.user_attrs[SETTINGS_ATTR], **changes}
    study.set_user_attr(SETTINGS_ATTR, {k: v for k, v in settings.items() if v is not None})


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
    _study(root, "newer", 4)
    _as_other_version(root, "newer", format=99, written_by="9.0.0", cache="ram")  # a newer anynet-search's
    _study(root, "unknownkey", 4)
    _as_other_version(root, "unknownkey", cache="ram")  # a key this format does not have
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    plain = JournalStorage(JournalFileBackend(str(root / "plain.log")))
    optuna.create_study(study_name="plain", storage=plain).optimize(lambda t: t.suggest_float("x", 0, 1),
                                                                    n_trials=5)
    os.symlink("loop_b", root / "loop_a")  # a symbolic-link loop
    os.symlink("loop_a", root / "loop_b")
    _study(root, "other_space", 6, space="anynet_xb_tiny")
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
    ("seed-minus-seven-blames-seed", [*RUN, "--seed", "-7"], ["--seed", "-7"]),
    ("seed-above-32-bits", [*RUN, "--seed", "4294967296"], ["--seed", "4294967296", "4294967295"]),
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
    ("out-empty", [*RUN, "--out", ""], ["--out", "empty"]),
    ("out-symlink-loop", [*RUN, "--out", "{W}/loop_a/runs"], ["--out", "loop_a", "symbolic links"]),
    ("out-in-proc", [*RUN, "--out", "/proc/anynet-search-x"], ["--out", "/proc/anynet-search-x"]),
    ("out-in-read-only-sys", [*RUN, "--out", "/sys/anynet-search-x"], ["--out", "/sys/anynet-search-x"]),
    ("storage-empty", [*RUN, "--storage", ""], ["--storage", "empty"]),
    ("space-unknown", [*RUN, "--space", "anynet_zz"], ["anynet_zz"]),
    ("resume-with-other-seed", [*RUN, "--study", "finished", "--out", "{W}/runs", "--seed", "3", "--trials", "12"],
     ["finished", "seed"]),
    ("run-into-foreign-study", [*RUN, "--storage", "sqlite:///{W}/foreign.db", "--study", "foreign"],
     ["foreign", "not created by anynet-search"]),
    ("run-storage-dead-db", [*RUN, "--storage", f"postgresql://u:pw@{DEAD_DB}/db"], ["cannot connect"]),
    ("run-storage-not-a-journal", [*RUN, "--storage", "journal:{W}/notes.log"], ["notes.log", "journal"]),
    ("run-storage-journal-is-a-folder", [*RUN, "--storage", "journal:{W}/adir"], ["--storage", "adir"]),
    # ---- studies stored by another version of anynet-search
    ("run-newer-settings", [*RUN, "--study", "newer", "--out", "{W}/runs", "--trials", "8"],
     ["'newer'", "anynet-search 9.0.0", "format 99", "formats 1..3"]),
    ("run-settings-unknown-key", [*RUN, "--study", "unknownkey", "--out", "{W}/runs", "--trials", "8"],
     ["'unknownkey'", "cache"]),
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
    ("worker-newer-settings",
     ["worker", "--study", "newer", "--storage", "journal:{W}/runs/newer/journal.log"],
     ["'newer'", "anynet-search 9.0.0", "format 99"]),
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
     ["no such database file", "nope/x.db"]),
    ("status-storage-journal-folder", ["status", "--storage", "journal:{W}/adir", "--study", "x"],
     ["adir", "not a file"]),
    ("status-storage-journal-missing", ["status", "--storage", "journal:{W}/nope.log", "--study", "x"],
     ["nope.log", "does not exist"]),
    ("status-storage-two-studies", ["status", "sqlite:///{W}/two.db"], ["2 studies", "--study"]),
    ("status-storage-unknown-study", ["status", "--storage", "sqlite:///{W}/two.db", "--study", "third"],
     ["third", "first, second"]),
    # ---- journals and result folders
    ("analyze-no-completed", ["analyze", "{W}/runs/empty", "--out", "{W}/rep"], ["empty", "no completed trials"]),
    ("status-newer-settings", ["status", "{W}/runs/newer"], ["'newer'", "anynet-search 9.0.0", "format 99"]),
    ("status-settings-unknown-key", ["status", "{W}/runs/unknownkey"], ["'unknownkey'", "cache"]),
    ("analyze-newer-settings", ["analyze", "{W}/runs/newer", "--out", "{W}/rep"], ["'newer'", "format 99"]),
    ("derive-newer-settings", ["derive", "{W}/runs/newer", "--out", "{W}/d.yaml"], ["'newer'", "format 99"]),
    ("export-newer-settings", ["export", "{W}/runs/newer", "--out", "{W}/ex"], ["'newer'", "format 99"]),
    ("analyze-plain-optuna-journal", ["analyze", "journal:{W}/plain.log", "--out", "{W}/rep"],
     ["'plain'", "not made by anynet-search", "5 complete"]),
    ("export-plain-optuna-journal", ["export", "journal:{W}/plain.log", "--out", "{W}/ex"],
     ["'plain'", "not made by anynet-search"]),
    ("derive-plain-optuna-journal", ["derive", "journal:{W}/plain.log"],
     ["'plain'", "not made by anynet-search"]),
    ("export-no-completed", ["export", "{W}/runs/empty", "--out", "{W}/ex"], ["empty", "no completed trials"]),
    ("analyze-missing", ["analyze", "{W}/nope", "--out", "{W}/rep"], ["nope", "not a run folder"]),
    ("analyze-bins-zero", ["analyze", R, "--out", "{W}/rep", "--bins", "0"], ["--bins"]),
    ("analyze-bins-negative", ["analyze", R, "--out", "{W}/rep", "--bins", "-2"], ["--bins"]),
    ("analyze-out-is-a-file", ["analyze", R, "--out", "{W}/afile.txt"], ["--out", "afile.txt"]),
    ("analyze-out-empty", ["analyze", R, "--out", ""], ["--out", "empty"]),
    ("analyze-out-symlink-loop", ["analyze", R, "--out", "{W}/loop_a"],
     ["--out", "loop_a", "symbolic links"]),
    ("analyze-out-in-proc", ["analyze", R, "--out", "/proc/anynet-search-x"], ["/proc/anynet-search-x"]),
    ("derive-out-empty", ["derive", R, "--out", ""], ["--out", "empty"]),
    ("derive-out-symlink-loop", ["derive", R, "--out", "{W}/loop_a"], ["--out", "loop_a", "symbolic links"]),
    ("derive-out-is-a-folder", ["derive", R, "--out", "{W}/adir"], ["--out", "adir", "folder"]),
    ("derive-out-below-a-file", ["derive", R, "--out", "{W}/afile.txt/d.yaml"], ["afile.txt"]),
    ("derive-missing", ["derive", "{W}/nope"], ["nope", "not a run folder"]),
    ("export-top-zero", ["export", R, "--top", "0", "--out", "{W}/ex"], ["--top"]),
    ("export-top-negative", ["export", R, "--top", "-1", "--out", "{W}/ex"], ["--top"]),
    ("export-out-is-a-file", ["export", R, "--out", "{W}/afile.txt"], ["--out", "afile.txt"]),
    ("export-out-empty", ["export", R, "--out", ""], ["--out", "empty"]),
    ("export-out-symlink-loop", ["export", R, "--out", "{W}/loop_a/ex"],
     ["--out", "loop_a", "symbolic links"]),
    ("export-out-in-proc", ["export", R, "--out", "/proc/anynet-search-x"], ["/proc/anynet-search-x"]),
    ("export-format-unknown", ["export", R, "--format", "onnx", "--out", "{W}/ex"], ["--format", "onnx"]),
    # ---- run --configs-from, fidelity, plan
    ("configs-from-adaptive", [*RUN, "--configs-from", "{W}/runs/adaptive"], ["adaptive", "tpe", "random"]),
    ("configs-from-missing", [*RUN, "--configs-from", "{W}/nope"], ["nope", "not a run folder"]),
    ("configs-from-unfinished", [*RUN, "--configs-from", "{W}/runs/empty"], ["empty", "no trained model"]),
    ("configs-from-too-many", [*RUN, "--configs-from", R, "--trials", "13"], ["13", "12 slots"]),
    ("configs-from-other-sampler", [*RUN, "--configs-from", R, "--sampler", "qmc"], ["--sampler", "random"]),
    ("configs-from-other-space", [*RUN, "--configs-from", R, "--space", "anynet_xb_tiny"],
     ["--space", "anynet_xa_tiny"]),
    ("configs-from-two-studies", [*RUN, "--configs-from", "sqlite:///{W}/two.db"], ["2 studies", "--configs-study"]),
    ("configs-study-alone", [*RUN, "--configs-study", "finished"], ["--configs-study", "--configs-from"]),
    ("resume-with-other-configs", [*RUN, "--study", "finished", "--out", "{W}/runs",
                                   "--configs-from", "{W}/runs/other_space"], ["finished", "space"]),
    ("run-repeat-negative", [*RUN, "--repeat", "-1"], ["--repeat", "0..10000"]),
    ("derive-retrained-not-a-retraining", ["derive", R, "--retrained", "{W}/runs/other_space", "--out", "{W}/d.yaml"],
     ["--retrained", "not a retraining"]),
    ("derive-retrained-study-alone", ["derive", R, "--retrained-study", "x", "--out", "{W}/d.yaml"],
     ["--retrained-study", "--retrained"]),
    ("fidelity-one-run", ["fidelity", R, "--out", "{W}/f"], ["two studies", "got 1 RUN"]),
    ("fidelity-study-for-folders", ["fidelity", R, "{W}/runs/other_space", "--study", "x", "--out", "{W}/f"],
     ["two studies", "--study"]),
    ("fidelity-same-run", ["fidelity", R, R, "--out", "{W}/f"], ["finished", "both are"]),
    ("fidelity-other-space", ["fidelity", R, "{W}/runs/other_space", "--out", "{W}/f"], ["not one design space"]),
    ("fidelity-out-is-a-file", ["fidelity", R, "{W}/runs/other_space", "--out", "{W}/afile.txt"],
     ["--out", "afile.txt"]),
    ("fidelity-no-completed", ["fidelity", R, "{W}/runs/empty", "--out", "{W}/f"], ["empty", "no completed"]),
    ("plan-nothing", ["plan", "--effect", "1"], ["RUN", "--spread"]),
    ("plan-no-effect", ["plan", R], ["--effect"]),
    ("plan-effect-zero", ["plan", R, "--effect", "0"], ["--effect", "0"]),
    ("plan-spread-negative", ["plan", "--spread", "-2", "--effect", "1"], ["--spread", "-2"]),
    ("plan-alpha-one", ["plan", R, "--effect", "1", "--alpha", "1"], ["--alpha"]),
    ("plan-power-zero", ["plan", R, "--effect", "1", "--power", "0"], ["--power"]),
    ("plan-adaptive-pilot", ["plan", "{W}/runs/adaptive", "--effect", "1"], ["adaptive", "tpe", "--spread"]),
    ("plan-missing-pilot", ["plan", "{W}/nope", "--effect", "1"], ["nope", "not a run folder"]),
    ("plan-study-without-run", ["plan", "--spread", "2", "--effect", "1", "--study", "x"], ["--study", "RUN"]),
    # ---- describe and spaces
    ("describe-unknown", ["describe", "RegNetZ-1GF"], ["RegNetZ-1GF"]),
    ("describe-resolution-zero", ["describe", "RegNetX-200MF", "--resolution", "0"], ["--resolution"]),
    ("describe-bad-config", ["describe", "{W}/bad_config.yaml"], ["bad_config.yaml", "depths"]),
    ("describe-garbage-config", ["describe", "{W}/garbage_config.yaml"], ["garbage_config.yaml"]),
    ("spaces-show-nothing", ["spaces", "show"], ["space name"]),
    ("spaces-show-unknown", ["spaces", "show", "anynet_zz"], ["anynet_zz"]),
    ("command-unknown", ["train"], ["train"]),
    # ---- prepare (a refused prepare writes nothing, not even the folder)
    ("prepare-out-is-a-file", ["prepare", "digits", "--out", "{W}/afile.txt", "--resolution", "8"],
     ["--out", "afile.txt", "not a folder"]),
    ("prepare-out-not-a-store", ["prepare", "digits", "--out", "{W}/runs", "--resolution", "8"],
     ["--out", "runs", "not a prepared store"]),
    ("prepare-out-in-proc", ["prepare", "digits", "--out", "/proc/anynet-search-x", "--resolution", "8"],
     ["/proc/anynet-search-x"]),
    ("prepare-resolution-zero", ["prepare", "digits", "--out", "{W}/st", "--resolution", "0"], ["--resolution"]),
    ("prepare-resolution-huge", ["prepare", "digits", "--out", "{W}/st", "--resolution", "5000"], ["1..1024"]),
    ("prepare-source-unknown", ["prepare", "mnist", "--out", "{W}/st", "--resolution", "8"], ["mnist"]),
    ("prepare-source-missing", ["prepare", "imagefolder:{W}/nope", "--out", "{W}/st", "--resolution", "8"],
     ["nope", "does not exist"]),
    ("run-prepared-missing", [*RUN, "--dataset", "prepared:{W}/nostore"], ["prepared:", "nostore", "does not exist"]),
    ("run-prepared-not-a-store", [*RUN, "--dataset", "prepared:{W}/runs"], ["runs", "not a prepared store"]),
    ("run-imagenet-unprepared", [*RUN, "--dataset", "imagenet:{W}/imagenet"], ["imagenet", "anynet-search prepare"]),
    ("run-other-data-alone", [*RUN, "--other-data"], ["--other-data", "--configs-from"]),
    ("prepare-classes-too-many", ["prepare", "digits", "--out", "{W}/st", "--resolution", "8", "--classes", "11"],
     ["--classes 11", "only 10 classes"]),
]
SECRETS = ("s3cr3t", "s3c", "r3t")


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder below root with a hash of its bytes."""
    return {str(p.relative_to(root)): f"<link {os.readlink(p)}>" if p.is_symlink() else "<dir>" if p.is_dir()
            else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))}


def test_the_table_has_at_least_60_rows_across_every_kind_of_input():
    assert len(ROWS) >= 60
    assert len({row[0] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("args,needles", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line_naming_the_culprit_exit_2_and_nothing_written(world, tmp_path, monkeypatch, capfd,
                                                                              args, needles):
    if "--devices" in args and "cuda" in args[args.index("--devices") + 1] and torch.cuda.is_available():
        pytest.skip("this row is about a machine without the named GPU")
    w = tmp_path / "w"
    shutil.copytree(world, w, symlinks=True)
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


@pytest.mark.parametrize("command", [["status"], ["export", "--out", "{W}/ex"], ["derive", "--out", "{W}/d.yaml"]])
def test_read_only_commands_read_past_a_torn_journal_line_and_leave_the_journal_alone(world, tmp_path, capfd, command):
    """A torn line 20 (line 21 glued onto it): read-only commands keep every readable record in memory, warn in
    one line naming the line, and write nothing into the journal (run and worker repair it, test_journal_salvage)."""
    w = tmp_path / "w"
    shutil.copytree(world, w, symlinks=True)
    journal = w / "runs" / "corrupt" / "journal.log"
    before = journal.read_bytes()
    capfd.readouterr()
    code = main([command[0], str(w / "runs" / "corrupt"), *(a.replace("{W}", str(w)) for a in command[1:])])
    out, err = capfd.readouterr()
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "line 20" in warnings[0] and "journal.log" in warnings[0]
    assert journal.read_bytes() == before and "Traceback" not in err + out


# ------------------------------------------------------------------------------------------ beyond one line
def test_absurd_workers_start_no_more_processes_than_trials(tmp_path):
    """`--workers 10000 --trials 2` once started ~390 worker processes on 2 cores and took the machine down.
    The processes `run` spawns are counted while it works: never more than the 2 trials, and one line says
    why."""
    import subprocess
    import sys
    import time

    from faults import spawned_workers

    cmd = [sys.executable, "-m", "anynet_search", "run", "--workers", "10000", "--trials", "2", "--dataset",
           "synthetic:64", "--objective", DRY, "--no-analyze", "--out", str(tmp_path / "runs")]
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(cmd, env=dict(os.environ, ANYNET_DRY_SLEEP="2"), stdout=log,
                            stderr=subprocess.STDOUT)
    most = 0
    try:
        while proc.poll() is None:
            most = max(most, len(spawned_workers(proc.pid)))
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    out = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, out
    assert 1 <= most <= 2
    assert [line for line in out.splitlines() if line.startswith("--workers 10,000:")]
    assert "2/2 completed" in out


def test_a_band_too_hard_to_sample_leaves_no_study_so_the_fixed_file_runs(tmp_path, monkeypatch, capfd):
    """A band reachable by a few configs in a million used to fail after the study was created: the empty
    study then refused the corrected file ("already exists with a different space_hash"). The tickets are
    drawn first."""
    from anynet_search.spaces import DesignSpace

    monkeypatch.setattr(DesignSpace.iter_samples, "__defaults__", (20_000,))  # give up after 20,000 draws
    space = tmp_path / "narrow.yaml"
    space.write_text("extends: anynet_xa_tiny\nband:\n  flops: [1.49e+6, 1.5e+6]\n")  # ~0.2% of the draws
    argv = ["run", "--space", str(space), "--trials", "100", "--workers", "1", "--dataset", "synthetic:64",
            "--objective", DRY, "--no-analyze", "--out", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("anynet-search")]
    assert len(err) == 1 and "narrow: only" in err[0] and "candidates accepted" in err[0], err
    assert not (tmp_path / "runs").exists()  # nothing written: no folder, no journal, no empty study
    space.write_text("extends: anynet_xa_tiny\n")  # the corrected file: the parent's band
    study, *_ = prepare_study(RunOptions(space=str(space), trials=100, workers=1, dataset="synthetic:64",
                                         out=str(tmp_path / "runs"), objective=DRY))
    assert len(study.get_trials(deepcopy=False)) == 100


def test_an_empty_study_with_another_space_is_replaced_not_refused(tmp_path):
    """What older versions left after failing to draw the tickets: a study with settings and no trials."""
    opts = RunOptions(space="anynet_xa_tiny", trials=3, workers=1, dataset="synthetic:64", study="s",
                      out=str(tmp_path), objective=DRY)
    study, settings, url, _ = prepare_study(opts)
    storage = open_storage(url)
    optuna.delete_study(study_name="s", storage=storage)
    left = optuna.create_study(study_name="s", storage=storage)
    left.set_user_attr(SETTINGS_ATTR, {**settings.to_dict(), "space_hash": "another space"})
    study, settings, *_ = prepare_study(opts)
    assert optuna.get_all_study_names(open_storage(url)) == ["s"]
    assert study.user_attrs[SETTINGS_ATTR]["space_hash"] == settings.space_hash != "another space"
    assert len(study.get_trials(deepcopy=False)) == 3


def test_status_says_what_a_plain_optuna_study_is(world, capsys):
    assert main(["status", f"journal:{world / 'plain.log'}"]) == 0
    out = capsys.readouterr().out
    assert "study 'plain' was not made by anynet-search: a plain Optuna study (5 complete)" in out
    assert "5/? completed; by state: complete 5" in out


def test_a_read_only_file_system_while_writing_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    """As root every folder passes the writability check; the OS still refuses a read-only file system, as the
    report is written: one line with the file, the folder given and the OS's reason."""
    import errno

    target = tmp_path / "report" / "figures" / "edf.png"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr("anynet_search.reporting.analyze.analyze_runs", read_only)
    assert main(["analyze", str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    expected = f"--out {tmp_path / 'report'}: {target}: Read-only file system"
    assert err == f"anynet-search analyze: error: {expected}\n"
