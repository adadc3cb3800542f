"""`anynet-search prepare` (issue 28): sources decoded once into a prepared store that numpy alone reads; the same
bytes for any number of workers; resumable after kill -9; refusals in one line; every image mode to RGB."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data import write_cifar10

from anynet_search import cli
from anynet_search.errors import DatasetError, StorageFullError
from anynet_search.training.data import prepare as prepare_module
from anynet_search.training.data import sources, store
from anynet_search.training.data.decode import decode_image
from anynet_search.training.data.holdout import stratified_holdout
from anynet_search.training.data.prepare import prepare_store
from anynet_search.training.data.store import SKIPPED, TEST, TRAIN, open_store
from anynet_search.training.data.writer import TEST_DELAY_ENV

CLI = str(Path(sys.executable).with_name("anynet-search"))  # the installed console script, as a user runs it
HEX = re.compile(r"^sha256 ([0-9a-f]{64})$")


def photo(rng: np.random.Generator, width: int = 40, height: int = 30) -> np.ndarray:
    """A small RGB image with structure (a gradient) and noise, so JPEG and resizing have work to do."""
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 25, (height, width, 3))
    return np.clip(ramp + noise + rng.uniform(0, 55, 3), 0, 255).astype(np.uint8)


def write_folder(root: Path, per_class: int, classes: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(photo(rng)).save(root / f"class{c}" / f"img{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 JPEGs of 40x30 in 4 class folders."""
    return write_folder(tmp_path_factory.mktemp("photos"), per_class=10, classes=4)


@pytest.fixture(scope="module")
def reference(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> store.Store:
    """The folder prepared at 16 px by one worker, in this process."""
    out = tmp_path_factory.mktemp("reference") / "store"
    prepare_store(f"imagefolder:{folder}", out, 16, workers=1, progress=False)
    return open_store(out)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)


def digest_of(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    match = HEX.match(result.stdout.strip().splitlines()[-1])  # the last line printed is the digest
    assert match, result.stdout
    return match.group(1)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one-line error of a refused command (exit 2, no traceback)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------------------
# the store


def test_an_image_folder_store_opens_with_open_store_and_with_numpy_alone(folder, reference):
    m = reference.manifest
    images = np.load(reference.path / "images.npy", mmap_mode="r")
    labels, splits = np.load(reference.path / "labels.npy"), np.load(reference.path / "splits.npy")
    assert images.shape == (40, 16, 16, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and splits.dtype == np.int8
    assert reference.digest == m["digest"] and reference.classes == ["class0", "class1", "class2", "class3"]
    # carved: 20% of each class held out with seed 0; TRAIN rows first, then TEST rows, each in source order
    assert m["test_source"] == "carved" and m["split_counts"] == {"train": 32, "test": 8, "skipped": 0}
    assert list(splits) == [TRAIN] * 32 + [TEST] * 8
    assert np.bincount(labels[splits == TEST]).tolist() == [2, 2, 2, 2]
    files = sorted(folder.glob("*/*.jpg"), key=lambda f: (f.parent.name, f.name))  # sorted classes, then names
    source_labels = np.array([int(f.parent.name.removeprefix("class")) for f in files])
    keep, hold = stratified_holdout(source_labels, 0.2, np.random.default_rng(0))
    order = [*np.sort(keep), *np.sort(hold)]
    assert np.array_equal(images, np.stack([decode_image(files[i], 16) for i in order]))
    assert labels.tolist() == source_labels[order].tolist()
    # the statistics are those of the train rows, 0..1 scale
    train = images[splits == TRAIN].reshape(-1, 3).astype(np.float64) / 255
    assert np.allclose(m["mean"], train.mean(axis=0), atol=1e-12)
    assert np.allclose(m["std"], train.std(axis=0), atol=1e-12)
    assert m["source"] == f"imagefolder:{folder}" and Path(m["source"].split(":", 1)[1]).is_absolute()
    assert m["margin"] == "none" and m["resolution"] == 16 and m["side"] == 16
    assert "Pillow" in m["decoder"] and m["written_by"] and m["created"].endswith("+00:00")
    assert len(m["inputs"]) == 64 and m["carved"]["seed"] == 0
    assert not (reference.path / store.PROGRESS).exists()
    code = ("import json, sys, numpy as np; d = sys.argv[1]; x = np.load(d + '/images.npy', mmap_mode='r'); "
            "m = json.load(open(d + '/manifest.json')); print(x.shape, np.load(d + '/labels.npy')[-1], m['digest'], "
            "'anynet_search' in sys.modules)")
    alone = subprocess.run([sys.executable, "-I", "-c", code, str(reference.path)], capture_output=True, text=True)
    assert alone.stdout.split() == ["(40,", "16,", "16,", "3)", str(labels[-1]), reference.digest, "False"]


def test_workers_1_and_2_write_the_same_bytes_through_the_cli(folder, reference, tmp_path):
    one = run_cli("prepare", f"imagefolder:{folder}", "--out", str(tmp_path / "w1"), "--resolution", "16",
                  "--workers", "1")
    argv = ["prepare", f"imagefolder:{folder}", "--out", str(tmp_path / "w2"), "--resolution", "16", "--workers", "2"]
    # the same command in a fresh interpreter that then says whether torch was imported (start-up time counts)
    code = f"import sys; from anynet_search.cli import main; main({argv!r}); print('torch', 'torch' in sys.modules)"
    two = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert two.stdout.splitlines()[-1] == "torch False", two.stderr
    two.stdout = "\n".join(two.stdout.splitlines()[:-1])
    assert digest_of(one) == digest_of(two) == reference.digest
    assert "2 workers" in two.stdout and "Traceback" not in two.stderr
    for name in store.ARRAY_FILES:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    again = run_cli(*argv)
    assert digest_of(again) == reference.digest and "nothing to do" in again.stdout


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_for_chunks(log: Path, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) > count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} chunks logged ({proc.poll()=})")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 and /proc: Linux")
def test_kill_9_then_the_same_command_finishes_with_the_same_digest(folder, reference, tmp_path):
    out = tmp_path / "store"
    args = [CLI, "prepare", f"imagefolder:{folder}", "--out", str(out), "--resolution", "16", "--workers", "2"]
    proc = subprocess.Popen(args, env={**os.environ, TEST_DELAY_ENV: "0.15"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _wait_for_chunks(out / store.PROGRESS, 3, proc)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10  # the workers die with their parent
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(_alive(w) for w in workers)
    with pytest.raises(DatasetError, match="unfinished store"):
        open_store(out)
    assert not (out / store.MANIFEST).exists()
    rerun = run_cli(*args[1:])
    assert digest_of(rerun) == reference.digest
    total = int(re.findall(r"\d+/(\d+) \[", rerun.stderr)[-1])  # the rerun's progress bar counts what was left
    assert 0 < total < 40
    assert open_store(out).digest == reference.digest


def test_a_worker_that_dies_is_one_line_and_the_rerun_finishes(folder, reference, tmp_path):
    out = tmp_path / "store"
    args = [CLI, "prepare", f"imagefolder:{folder}", "--out", str(out), "--resolution", "16", "--workers", "2"]
    proc = subprocess.Popen(args, env={**os.environ, TEST_DELAY_ENV: "0.15"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_chunks(out / store.PROGRESS, 1, proc)
    os.kill(_children(proc.pid)[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    line = error_line(subprocess.CompletedProcess(args, proc.returncode, "", stderr))
    assert "killed by signal 9 (SIGKILL)" in line and "run the same command again" in line
    assert digest_of(run_cli(*args[1:])) == reference.digest


def test_a_full_disk_mid_write_is_one_error_and_the_rerun_finishes(folder, reference, tmp_path, monkeypatch):
    real, calls = os.pwrite, []

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append(offset)  # per process: the one worker counts its own writes
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    out = tmp_path / "store"
    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(StorageFullError, match="no space left"):
        prepare_store(f"imagefolder:{folder}", out, 16, workers=1, progress=False)
    monkeypatch.setattr(os, "pwrite", real)
    logged = (out / store.PROGRESS).read_text().splitlines()
    assert len(logged) - 1 == 4  # the header, and the chunks written before the disk filled (the 1st write: header)
    assert prepare_store(f"imagefolder:{folder}", out, 16, workers=1, progress=False).digest == reference.digest


# ----------------------------------------------------------------------------------------------------------
# inputs: every mode to RGB, bad files


def test_every_image_mode_decodes_to_rgb(tmp_path):
    rgb = photo(np.random.default_rng(1))
    gray = rgb[:, :, 1]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(gray).save(tmp_path / "gray.jpg", quality=95)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "png_inside.JPEG", format="PNG")  # like ImageNet's n02105855_2933.JPEG
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "palette.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")  # 16-bit grayscale (I;16)
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16" and Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert Image.open(tmp_path / "png_inside.JPEG").format == "PNG"
    decoded = {p.name: decode_image(p, 16) for p in tmp_path.iterdir()}
    assert all(a.shape == (16, 16, 3) and a.dtype == np.uint8 for a in decoded.values())
    assert np.array_equal(decoded["png_inside.JPEG"], decoded["rgb.png"])
    assert np.array_equal(decoded["rgba.png"], decoded["rgb.png"])  # alpha dropped
    assert np.array_equal(decoded["sixteen.png"], decoded["gray.png"])  # scaled to 8 bits, not clipped at 255
    assert np.array_equal(decoded["la.png"], decoded["gray.png"])
    for name in ("gray.png", "gray.jpg"):  # grayscale: three equal channels
        assert np.array_equal(decoded[name][:, :, 0], decoded[name][:, :, 2])
    assert np.abs(decoded["cmyk.jpg"].astype(int) - decoded["rgb.png"]).mean() < 6  # lossy, but the same colours
    expected = np.asarray(palette.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR, box=(5, 0, 35, 30)))
    assert np.array_equal(decoded["palette.png"], expected)  # colours resized, not palette indices


def test_a_jpeg_is_decoded_at_reduced_size_close_to_the_full_decode(tmp_path):
    rng = np.random.default_rng(2)
    big = np.kron(rng.integers(0, 255, (12, 16, 3)), np.ones((32, 32, 1))).astype(np.uint8)  # 384x512
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    with Image.open(tmp_path / "big.jpg") as img:
        full = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR, box=(64, 0, 448, 384)))
    reduced = decode_image(tmp_path / "big.jpg", 32)
    assert np.abs(reduced.astype(int) - full).mean() < 4


def test_an_undecodable_file_stops_with_one_line_and_skip_bad_records_it(folder, tmp_path):
    bad = write_folder(tmp_path / "photos", per_class=6, classes=2)
    good = bad / "class1" / "img002.jpg"
    (bad / "class1" / "img003.jpg").write_bytes(good.read_bytes()[:300])  # truncated
    out = tmp_path / "store"
    args = ["prepare", f"imagefolder:{bad}", "--out", str(out), "--resolution", "8", "--workers", "1"]
    line = error_line(run_cli(*args))
    assert "img003.jpg" in line and "cannot read image" in line and "--skip-bad" in line
    with pytest.raises(DatasetError, match="unfinished store"):
        open_store(out)
    skipping = run_cli(*args, "--skip-bad")  # the same folder: finished chunks stay, the bad file is recorded
    digest = digest_of(skipping)
    assert "skipped 1 undecodable file" in skipping.stdout
    opened = open_store(out)
    [entry] = opened.manifest["skipped"]
    assert entry["path"].endswith("class1/img003.jpg") and "Truncated" in entry["reason"]
    assert opened.splits[entry["row"]] == SKIPPED and not opened.images[entry["row"]].any()
    assert opened.manifest["split_counts"]["skipped"] == 1 and opened.digest == digest
    fresh = run_cli("prepare", f"imagefolder:{bad}", "--out", str(tmp_path / "fresh"), "--resolution", "8",
                    "--skip-bad")
    assert digest_of(fresh) == digest


def refused(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The one-line error of `anynet-search ARGV` run in this process (exit 2, no traceback)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_refusals_are_one_line_and_leave_the_folder_as_it_was(folder, reference, tmp_path, monkeypatch, capsys):
    spec = f"imagefolder:{folder}"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "exists and is not a folder" in refused(capsys, "prepare", spec, "--out", str(a_file), "--resolution", "16")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "not a prepared store" in refused(capsys, "prepare", spec, "--out", str(other), "--resolution", "16")
    assert sorted(os.listdir(other)) == ["notes.txt"]
    line = refused(capsys, "prepare", spec, "--out", str(reference.path), "--resolution", "8")
    assert "other inputs or arguments" in line and "resolution 16 there, 8 here" in line
    assert open_store(reference.path).digest == reference.digest
    for option, value, words in (("--resolution", "0", "1..1024"), ("--resolution", "2000", "1..1024"),
                                 ("--workers", "0", "positive"), ("--workers", "100000", "per usable core"),
                                 ("--classes", "9", "has only 4 classes"), ("--margin", "wide", "invalid choice")):
        given = {"--resolution": "16", option: value}
        argv = ["prepare", spec, "--out", str(tmp_path / "new"), *[x for kv in given.items() for x in kv]]
        assert words in refused(capsys, *argv), option
    assert not (tmp_path / "new").exists()
    assert cli.MAX_RESOLUTION == sources.MAX_RESOLUTION
    assert "unknown source 'mnist:x'" in refused(capsys, "prepare", "mnist:x", "--out", str(tmp_path / "new"),
                                                 "--resolution", "8")
    assert "inside the image folder" in refused(capsys, "prepare", spec, "--out", str(folder / "class0" / "st"),
                                                 "--resolution", "8")
    assert not (folder / "class0" / "st").exists()

    monkeypatch.setattr(prepare_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    line = refused(capsys, "prepare", spec, "--out", str(tmp_path / "small"), "--resolution", "16")
    assert re.search(r"the store needs [\d.]+ MB and its disk has 1.0 KB free", line)
    assert not (tmp_path / "small").exists()


def test_the_margin_stores_the_evaluation_crop_for_photos_from_64_px(folder, tmp_path):
    spec = f"imagefolder:{folder}"
    assert (sources.open_source(spec, 64).side, sources.open_source(spec, 64).margin) == (73, "imagenet")
    assert sources.open_source(spec, 224).side == 256 and sources.open_source(spec, 32).side == 32
    assert sources.open_source(spec, 64, margin="none").side == 64
    assert sources.open_source("digits", 64).side == 64  # arrays are not photos: auto is none
    result = prepare_store(spec, tmp_path / "st", 8, margin="imagenet", progress=False)
    opened = open_store(result.path)
    assert opened.images.shape == (40, 9, 9, 3) and (opened.resolution, opened.side) == (8, 9)
    assert opened.manifest["margin"] == "imagenet" and opened.manifest["arguments"]["side"] == 9
    assert any(np.array_equal(opened.images[0], decode_image(f, 9)) for f in folder.glob("class0/*.jpg"))


def test_a_damaged_store_is_refused_by_open_store(reference, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (*store.ARRAY_FILES, store.MANIFEST):
        (copy / name).write_bytes((reference.path / name).read_bytes())
    data = bytearray((copy / "images.npy").read_bytes())
    data[-100] ^= 0xFF
    (copy / "images.npy").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"rows \d+\.\.\d+ of images.npy do not match"):
        open_store(copy)
    (copy / "images.npy").write_bytes(bytes(data[:-1000]))
    with pytest.raises(DatasetError, match="images.npy is truncated"):
        open_store(copy)


# ----------------------------------------------------------------------------------------------------------
# sources


def _imagenet(root: Path) -> tuple[Path, list[str]]:
    """train/ of 3 wnids x 5 JPEGs, and 6 val JPEGs (flat); returns the val wnids in file order."""
    rng = np.random.default_rng(3)
    wnids = ["n01440764", "n01443537", "n01484850"]
    for w in wnids:
        (root / "train" / w).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(photo(rng)).save(root / "train" / w / f"{w}_{i}.JPEG", quality=90)
    (root / "val").mkdir()
    truth = [wnids[k] for k in (2, 0, 1, 1, 0, 2)]
    for i in range(6):
        Image.fromarray(photo(rng)).save(root / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG", quality=90)
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n"
                                                  "n01484850 great white shark\n")
    return root, truth


def _test_labels(out: Path, classes: list[str]) -> list[str]:
    opened = open_store(out)
    return [classes[k] for k in opened.labels[opened.splits == TEST]]


def test_imagenet_val_labelled_by_class_folders_by_the_kaggle_csv_or_by_the_devkit(tmp_path):
    from scipy.io import savemat

    root, truth = _imagenet(tmp_path / "flat")
    with pytest.raises(DatasetError, match="val/ is flat and nothing labels it"):
        prepare_store(f"imagenet:{root}", tmp_path / "none", 8, progress=False)
    rows = ["ImageId,PredictionString"] + [f"ILSVRC2012_val_{i + 1:08d},{w} 1 2 30 40 {w} 3 4 5 6"
                                            for i, w in enumerate(truth)]
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    prepare_store(f"imagenet:{root}", tmp_path / "kaggle", 8, workers=2, progress=False)
    m = open_store(tmp_path / "kaggle").manifest
    assert m["test_source"] == "official" and m["split_counts"] == {"train": 15, "test": 6, "skipped": 0}
    assert _test_labels(tmp_path / "kaggle", m["classes"]) == truth
    assert m["class_names"] == ["tench, Tinca tinca", "goldfish", "great white shark"]

    (root / "LOC_val_solution.csv").unlink()
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    ids = {"n01484850": 1, "n01440764": 2, "n01443537": 3}  # ILSVRC2012_IDs are not the sorted order
    synsets = np.zeros(3, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])
    for k, (w, i) in enumerate(ids.items()):
        synsets[k] = (i, w, f"words of {w}")
    savemat(devkit / "meta.mat", {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ids[w]}\n" for w in truth))
    prepare_store(f"imagenet:{root}", tmp_path / "devkit", 8, progress=False)
    assert open_store(tmp_path / "devkit").digest == open_store(tmp_path / "kaggle").digest
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\n")
    with pytest.raises(DatasetError, match="lists 2 labels for 6 val images"):
        prepare_store(f"imagenet:{root}", tmp_path / "short", 8, progress=False)

    folders, _ = _imagenet(tmp_path / "folders")
    for i, w in enumerate(truth):
        (folders / "val" / w).mkdir(exist_ok=True)
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        (folders / "val" / name).rename(folders / "val" / w / name)
    prepare_store(f"imagenet:{folders}", tmp_path / "folders_store", 8, progress=False)
    assert sorted(_test_labels(tmp_path / "folders_store", m["classes"])) == sorted(truth)

    rows[3] = "ILSVRC2012_val_00000003,n09999999 1 2 3 4"
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"ILSVRC2012_val_00000003.JPEG is labelled n09999999, which is not"):
        prepare_store(f"imagenet:{root}", tmp_path / "unknown", 8, progress=False)
    (root / "LOC_val_solution.csv").write_text("\n".join(rows[:3]) + "\n")
    with pytest.raises(DatasetError, match=r"ILSVRC2012_val_00000003.JPEG has no label in LOC_val_solution.csv"):
        prepare_store(f"imagenet:{root}", tmp_path / "unlabelled", 8, progress=False)


def _write_batch(path: Path, data: np.ndarray, labels: np.ndarray, compressed: bool) -> None:
    (np.savez_compressed if compressed else np.savez)(path, data=data, labels=labels)


def test_downsampled_imagenet_batches_in_numeric_order_with_classes_and_resizing(tmp_path):
    rng = np.random.default_rng(4)
    r = 8
    parts = {}
    for k, name in enumerate(["train_data_batch_1", "train_data_batch_2", "train_data_batch_10", "val_data"]):
        data = rng.integers(0, 256, (12, 3 * r * r), dtype=np.uint8)
        labels = np.arange(12) % 5 + 1  # 1-based
        _write_batch(tmp_path / f"{name}.npz", data, labels, compressed=k % 2 == 1)  # both zip kinds
        parts[name] = (data, labels)
    (tmp_path / "map_clsloc.txt").write_text("".join(f"n0{i} {i} name_{i}\n" for i in range(1, 6)))
    prepare_store(f"downsampled-imagenet:{tmp_path}", tmp_path / "s8", 8, classes=3, workers=2, progress=False)
    s8 = open_store(tmp_path / "s8")
    assert s8.classes == ["n01", "n02", "n03"] and s8.manifest["class_names"] == ["name_1", "name_2", "name_3"]
    order = ["train_data_batch_1", "train_data_batch_2", "train_data_batch_10", "val_data"]
    expected = np.concatenate([parts[n][0][parts[n][1] <= 3] for n in order]).reshape(-1, 3, r, r)
    assert np.array_equal(s8.images, expected.transpose(0, 2, 3, 1))  # channel-planar to channels-last, exact
    assert s8.splits.tolist() == [TRAIN] * 24 + [TEST] * 8
    assert s8.labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1] * 4
    prepare_store(f"downsampled-imagenet:{tmp_path}", tmp_path / "s16", 16, classes=3, progress=False)
    s16 = open_store(tmp_path / "s16")
    assert s16.images.shape == (32, 16, 16, 3)
    first = [Image.fromarray(expected[0, c].astype(np.float32)).resize((16, 16), Image.Resampling.BILINEAR)
             for c in range(3)]  # resized in float (antialiased bilinear), rounded once
    assert np.array_equal(s16.images[0], np.clip(np.rint(np.stack(first, axis=-1)), 0, 255).astype(np.uint8))


def test_digits_synthetic_and_cifar_stores(tmp_path):
    prepare_store("digits", tmp_path / "digits", 8, progress=False)
    digits = open_store(tmp_path / "digits")
    assert digits.images.shape == (1797, 8, 8, 1) and digits.images.max() == 255
    assert digits.manifest["test_source"] == "carved" and digits.manifest["split_counts"]["test"] == 359

    prepare_store("synthetic:60", tmp_path / "synthetic", 12, workers=2, progress=False)
    synthetic = open_store(tmp_path / "synthetic")
    assert synthetic.images.shape == (60, 12, 12, 3) and "128 + 25" in synthetic.manifest["quantization"]
    assert synthetic.manifest["split_counts"] == {"train": 48, "test": 12, "skipped": 0}
    assert 0 < synthetic.images.mean() < 255 and synthetic.images.std() > 10  # quantized, not clipped flat

    folder = write_cifar10(tmp_path / "cifar-10-batches-py", n=12)
    prepare_store(f"cifar10:{tmp_path}", tmp_path / "cifar", 32, progress=False)
    cifar = open_store(tmp_path / "cifar")
    assert cifar.manifest["test_source"] == "official" and cifar.manifest["split_counts"]["test"] == 12
    assert cifar.manifest["class_names"] == [f"c{i}" for i in range(10)]
    import pickle

    with open(folder / "data_batch_1", "rb") as fh:
        first = pickle.load(fh, encoding="bytes")[b"data"][0].reshape(3, 32, 32)
    assert np.array_equal(cifar.images[0], first.transpose(1, 2, 0))
