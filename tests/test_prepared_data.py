"""Training from prepared stores: memory-mapped uint8 rows, on-device normalization and crops, the ImageNet
protocol, and the data digest a study records and checks."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from stores import write_store
from torch import nn

from anynet_search.study.objective import dataset_for
from anynet_search.study.settings import StudySettings
from anynet_search.training.augment import CROP_RATIO, CROP_SCALE, crop_resize, draw_boxes
from anynet_search.training.data import DatasetError, load_dataset
from anynet_search.training.data.store import TEST, TRAIN
from anynet_search.training.inputs import InputPipeline, resolve_augment
from anynet_search.training.programs import StepSettings, TrainProgram
from anynet_search.training.train import TrainConfig, seed_everything, train


def tiny_cnn(channels: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """120 random uint8 images of 10x10 (4 classes), 96 train rows then 24 test rows."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (120, 10, 10, 3), dtype=np.uint8)
    labels = np.arange(120) % 4
    splits = np.where(np.arange(120) < 96, TRAIN, TEST).astype(np.int8)
    return images, labels, splits


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, rows: tuple) -> Path:
    out = tmp_path_factory.mktemp("store") / "s"
    write_store(out, *rows, classes=["a", "b", "c", "d"], resolution=8)  # side 10: a margin around 8 px
    return out


# ------------------------------------------------------------------------------------------- crops


def test_crop_resize_is_exact_on_whole_boxes_pixel_crops_and_mirrors() -> None:
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    whole = torch.tensor([[0, 0, 6, 6]] * 2, dtype=torch.float32)
    assert torch.allclose(crop_resize(x, whole, None, 6), x, atol=1e-4)
    box = torch.tensor([[1, 2, 3, 3], [2, 0, 3, 3]], dtype=torch.float32)  # top, left, h, w
    out = crop_resize(x, box, None, 3)
    assert torch.allclose(out[0], x[0, :, 1:4, 2:5], atol=1e-4)
    assert torch.allclose(out[1], x[1, :, 2:5, 0:3], atol=1e-4)
    mirror = torch.tensor([[True], [False]])
    flipped = crop_resize(x, box, mirror, 3)
    assert torch.allclose(flipped[0], x[0, :, 1:4, 2:5].flip(-1), atol=1e-4)
    assert torch.allclose(flipped[1], out[1], atol=1e-4)


def test_draw_boxes_follow_random_resized_crop() -> None:
    side = 73
    boxes = draw_boxes(20000, side, torch.Generator().manual_seed(0), torch.device("cpu"))
    top, left, h, w = boxes.unbind(1)
    assert bool((h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all())
    assert bool((top + h <= side).all() and (left + w <= side).all())
    assert bool((top == top.round()).all() and (w == w.round()).all())  # whole pixels, as torchvision crops
    share, ratio = h * w / side**2, w / h
    # the drawn share and ratio, up to the rounding of w and h to whole pixels
    assert float(share.min()) >= CROP_SCALE[0] * 0.9 and float(share.max()) <= 1.0
    assert float(ratio.min()) >= CROP_RATIO[0] * 0.95 and float(ratio.max()) <= CROP_RATIO[1] * 1.05
    # log-uniform ratios around 1 and a mean share near torchvision's (~0.5 with the too-large tries redrawn)
    assert abs(float(torch.log(ratio).mean())) < 0.02
    assert 0.4 < float(share.mean()) < 0.6
    # the same generator state gives the same boxes
    again = draw_boxes(20000, side, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(boxes, again)


def test_resolve_augment_picks_imagenet_for_stores_with_a_margin(store: Path) -> None:
    data = load_dataset(f"prepared:{store}", 8)
    assert resolve_augment("auto", data) == "imagenet"
    assert resolve_augment("shift", data) == "shift"
    assert resolve_augment("auto", load_dataset("digits", 8)) == "shift"
    with pytest.raises(ValueError, match="augment"):
        resolve_augment("random", data)
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="cutout")


# ------------------------------------------------------------------------------------------- the store


def test_prepared_data_is_a_memory_map_with_row_splits(store: Path, rows: tuple) -> None:
    images, labels, splits = rows
    data = load_dataset(f"prepared:{store}", 8, seed=3, val_fraction=0.25)
    assert data.raw and data.side == 10 and data.resolution == 8 and data.in_channels == 3
    # one tensor for every split, mapped from the file (not a decoded copy in this process)
    assert data.train_x is data.val_x is data.test_x
    address = data.train_x.data_ptr()
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines()
              if int(line.split("-")[0], 16) <= address < int(line.split()[0].split("-")[1], 16)]
    assert mapped and mapped[0].endswith(str(store / "images.npy"))
    assert torch.equal(data.train_x, torch.from_numpy(images))
    train, val, test = (set(getattr(data, f"{k}_rows").tolist()) for k in ("train", "val", "test"))
    assert test == set(range(96, 120)) and train | val == set(range(96)) and not train & val
    assert len(val) == 24 and data.digest and len(data.digest) == 64
    # the validation split depends on the study's seed; the test split is the store's
    other = load_dataset(f"prepared:{store}", 8, seed=4, val_fraction=0.25)
    assert set(other.val_rows.tolist()) != val and set(other.test_rows.tolist()) == test
    assert other.digest == data.digest
    tr = images[:96].astype(np.float64) / 255
    assert np.allclose(data.mean, tr.mean(axis=(0, 1, 2))) and np.allclose(data.std, tr.std(axis=(0, 1, 2)))


def test_a_store_for_another_resolution_or_too_small_is_one_line(store: Path, tmp_path: Path,
                                                                  rows: tuple) -> None:
    with pytest.raises(DatasetError, match=r"prepared for 8 px but the space trains at 16 px.*--resolution 16"):
        load_dataset(f"prepared:{store}", 16)
    images, labels, splits = rows
    write_store(tmp_path / "small", images[:5], labels[:5], np.array([0, 0, 0, 0, 1], np.int8), ["a", "b", "c", "d"], 8)
    with pytest.raises(DatasetError, match="too small to split"):
        load_dataset(f"prepared:{tmp_path / 'small'}", 8)
    with pytest.raises(DatasetError, match="read by `anynet-search prepare` only"):
        load_dataset("imagenet:/data/imagenet", 64)


# ------------------------------------------------------------------------------------- the input pipeline


def test_the_device_pipeline_normalizes_and_center_crops_like_a_float_copy(store: Path, rows: tuple) -> None:
    images = rows[0]
    data = load_dataset(f"prepared:{store}", 8)
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    reference = (torch.from_numpy(images[:7]).permute(0, 3, 1, 2).double() / 255 - mean) / std
    shift = InputPipeline(data, "shift", 0, False, torch.device("cpu"))
    got = shift.evaluate(data.train_x[:7])
    assert got.shape == (7, 3, 8, 8) and got.dtype == torch.float32
    assert torch.allclose(got.double(), reference[:, :, 1:9, 1:9], atol=1e-5)
    assert torch.allclose(shift.train(data.train_x[:7], None, None).double(), reference[:, :, 1:9, 1:9], atol=1e-5)
    # the ImageNet protocol: a whole-image box is the stored image resized to 8 px; evaluation is the center crop
    imagenet = InputPipeline(data, "imagenet", 2, True, torch.device("cpu"))
    boxes = torch.tensor([[0, 0, 10, 10]] * 7, dtype=torch.float32)
    resized = torch.nn.functional.interpolate(reference.float(), size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(imagenet.train(data.train_x[:7], boxes, None), resized, atol=1e-4)
    assert torch.allclose(imagenet.evaluate(data.train_x[:7]).double(), reference[:, :, 1:9, 1:9], atol=1e-5)


def test_an_epoch_draws_each_train_row_once_and_no_other(store: Path) -> None:
    data = load_dataset(f"prepared:{store}", 8, seed=1)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = InputPipeline(data, "imagenet", 0, True, torch.device("cpu"))
    program = TrainProgram(model, opt, data.train_x, data.train_y, data.train_rows, inputs,
                           StepSettings(16, False, 0.0, False), [0.1] * 100, None, None)
    assert program.n_train == data.split_size("train")
    for epoch in range(2):
        program.start_epoch(torch.Generator().manual_seed(epoch))
        drawn = program.order.tolist()
        assert len(drawn) == len(set(drawn)) and set(drawn) <= set(data.train_rows.tolist())
        boxes, mirror = program.draws
        assert boxes.shape == (len(drawn), 4) and mirror.shape == (len(drawn), 1)


def test_training_from_a_store_feeds_the_model_what_a_float_copy_would(store: Path) -> None:
    data = load_dataset(f"prepared:{store}", 8, seed=0)
    # the same rows as a normalized float copy in memory, the form every other data set takes
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    as_float = ((data.train_x.permute(0, 3, 1, 2).double() / 255 - mean) / std)[:, :, 1:9, 1:9].float()
    copy = dataclasses.replace(
        data, train_x=as_float[data.train_rows], train_y=data.train_y[data.train_rows], train_rows=None,
        val_x=as_float[data.val_rows], val_y=data.train_y[data.val_rows], val_rows=None,
        test_x=as_float[data.test_rows], test_y=data.train_y[data.test_rows], test_rows=None)
    assert not copy.raw and copy.side == 8
    seen: dict[str, list[torch.Tensor]] = {"store": [], "copy": []}
    results = {}
    for name, splits in (("store", data), ("copy", copy)):
        seed_everything(0)
        model = tiny_cnn()
        model[0].register_forward_pre_hook(lambda _m, args, name=name: seen[name].append(args[0].detach().clone()))
        results[name] = train(model, splits, TrainConfig(epochs=1, batch_size=16, crop_pad=0, augment="shift"))
    # no augmentation: every batch is the same images in the same order (the permutation is over the train rows)
    assert len(seen["store"]) == len(seen["copy"]) > 6  # steps, then validation and test batches
    for a, b in zip(seen["store"], seen["copy"], strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    assert seen["store"][0].shape == (16, 3, 8, 8)
    assert abs(results["store"].final_train_loss - results["copy"].final_train_loss) < 1e-3


def test_training_from_a_store_is_deterministic_and_uses_either_protocol(store: Path) -> None:
    data = load_dataset(f"prepared:{store}", 8, seed=0)
    out = {}
    for protocol in ("imagenet", "imagenet", "shift"):
        seed_everything(5)
        result = train(tiny_cnn(), data, TrainConfig(epochs=2, batch_size=16, augment=protocol), seed=5)
        assert math.isfinite(result.final_train_loss) and len(result.history) == 2
        out.setdefault(protocol, []).append(result.history)
    assert out["imagenet"][0] == out["imagenet"][1]  # bitwise on the CPU


# ------------------------------------------------------------------------------------------ the digest


def test_studies_record_and_check_the_data_digest(store: Path) -> None:
    data = load_dataset(f"prepared:{store}", 8)
    settings = StudySettings(space={}, space_source="x", space_hash="h", sampler="random", seed=0, n_trials=1,
                             dataset=f"prepared:{store}", train={}, data_digest=data.digest)
    assert dataset_for(settings, 8, "cpu").digest == data.digest
    other = dataclasses.replace(settings, data_digest="0" * 64)
    with pytest.raises(DatasetError, match="this worker reads data with digest .* the study was made with 000000"):
        dataset_for(other, 8, "cpu")
    # one store under two paths is one data set; a spec without a digest compares by its name
    moved = dataclasses.replace(settings, dataset="prepared:/elsewhere")
    assert settings.other_data(moved) is None
    assert "digest" in settings.other_data(other)
    legacy = dataclasses.replace(settings, data_digest=None)
    assert legacy.other_data(dataclasses.replace(legacy)) is None
    assert legacy.other_data(dataclasses.replace(legacy, dataset="digits")) is not None
    # the digest of in-memory data sets is of what was read (digits: the 8x8 originals), whatever the split seed
    assert load_dataset("digits", 8, seed=0).digest == load_dataset("digits", 12, seed=1).digest
    assert load_dataset("synthetic:60", 8).digest != load_dataset("synthetic:70", 8).digest


def test_settings_of_older_formats_read_the_shift_protocol_and_no_digest() -> None:
    stored = {"space": {}, "space_source": "x", "space_hash": "h", "sampler": "random", "seed": 0, "n_trials": 1,
              "dataset": "digits", "train": {"epochs": 2}, "format": 2, "written_by": "0.1.0"}
    settings = StudySettings.from_dict(stored)
    assert settings.data_digest is None and settings.train["augment"] == "shift"
    assert settings.train_config().augment == "shift"
    fresh = StudySettings.from_dict({**stored, "train": {"epochs": 2, "augment": "imagenet"}, "format": 3,
                                     "data_digest": "ab" * 32})
    assert fresh.train_config().augment == "imagenet" and fresh.data_digest == "ab" * 32
    assert fresh.to_dict()["format"] == 3


# ------------------------------------------------------------------------------------- studies on stores


def _store16(path: Path, shift: int) -> str:
    rng = np.random.default_rng(shift)
    images = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    splits = np.where(np.arange(60) < 48, TRAIN, TEST).astype(np.int8)
    return write_store(path, images, np.arange(60) % 10, splits, [str(c) for c in range(10)], 16)


def test_a_study_on_a_store_records_its_digest_and_refuses_other_data(tmp_path: Path) -> None:
    from anynet_search.errors import InputError
    from anynet_search.reporting.analyze import settings_differences
    from anynet_search.reporting.results import load_run
    from anynet_search.study import RunOptions, Worker, prepare_study

    digest = _store16(tmp_path / "a", 0)
    dry = "anynet_search.study.dry_run:pseudo_error"
    opts = RunOptions(trials=5, workers=1, dataset=f"prepared:{tmp_path / 'a'}", study="a", out=str(tmp_path / "runs"),
                      objective=dry)
    study, settings, _, run_dir = prepare_study(opts)
    assert settings.data_digest == digest and settings.train["augment"] == "shift"  # 16 px stored: no margin
    Worker(study, objective=dry, poll_seconds=0.01).run()
    # the same path, other content: resuming is refused, naming the change
    other = _store16(tmp_path / "a", 1)
    with pytest.raises(InputError, match=f"data digest {digest[:12]} \\(stored\\) vs {other[:12]} \\(asked\\)"):
        prepare_study(opts)
    # --configs-from on other data: refused unless asked for, then trained and recorded
    _store16(tmp_path / "a", 0)
    _store16(tmp_path / "b", 2)
    proxy = RunOptions(configs_from=str(run_dir), dataset=f"prepared:{tmp_path / 'b'}", study="b", workers=1,
                       out=str(tmp_path / "runs"), objective=dry, epochs=2)
    with pytest.raises(InputError, match="trained on other data than asked .*--other-data"):
        prepare_study(proxy)
    study_b, settings_b, *_ = prepare_study(dataclasses.replace(proxy, other_data=True))
    Worker(study_b, objective=dry, poll_seconds=0.01).run()
    assert settings_b.data_digest != digest
    # analyze sees two data sets (digests), even though both are prepared stores
    diffs = settings_differences([load_run(run_dir), load_run(tmp_path / "runs" / "b")])
    assert any(d.startswith("data: ") and "digest" in d for d in diffs)
    # so does fidelity: refused, or compared with a warning when asked for
    from anynet_search.reporting.fidelity_set import fidelity_set

    both = [str(run_dir), str(tmp_path / "runs" / "b")]
    with pytest.raises(InputError, match="fidelity compares budgets on the same data, but b: data set prepared:.*"
                                         "digest.*--other-data compares them anyway"):
        fidelity_set(both, tmp_path / "fid", n_boot=50)
    assert not (tmp_path / "fid").exists()
    lines = fidelity_set(both, tmp_path / "fid", n_boot=50, other_data=True).lines()
    assert lines[0].startswith("WARNING: trained on other data than a (--other-data): b: data set prepared:")
    with pytest.raises(InputError, match="--other-data is for --configs-from"):
        prepare_study(dataclasses.replace(opts, other_data=True))


def test_a_worker_that_reads_other_data_stops_and_requeues_its_trial(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    from anynet_search.study import RunOptions, Worker, prepare_study

    _store16(tmp_path / "s", 0)
    opts = RunOptions(trials=2, workers=1, dataset=f"prepared:{tmp_path / 's'}", study="w", out=str(tmp_path))
    study, *_ = prepare_study(opts)
    _store16(tmp_path / "s", 1)  # the data changes under the study (or another machine holds another copy)
    with pytest.raises(DatasetError, match="this worker reads data with digest"):
        Worker(study, poll_seconds=0.01).run()
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "this worker's data" in failed[0].user_attrs["failure"]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["slot"] for t in waiting) == [0, 1]  # nothing lost: both slots still to train
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.COMPLETE)]


# ------------------------------------------------------------------------------------------- streaming


def test_streaming_from_the_host_feeds_the_rows_of_the_host_drawn_order(store: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The path a GPU takes for a store too large to upload, exercised on the CPU: every step's rows are staged
    through the pinned-buffer ring in the order drawn on the host, and evaluation counts the same errors."""
    from anynet_search.training import placement
    from anynet_search.training.programs import EvalProgram
    from anynet_search.training.train import make_generator

    data = dataclasses.replace(load_dataset(f"prepared:{store}", 8, seed=0), flip=False)
    monkeypatch.setattr(placement, "streams", lambda data, device: True)
    seen: list[torch.Tensor] = []
    seed_everything(0)
    model = tiny_cnn()
    hook = model[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    result = train(model, data, TrainConfig(epochs=2, batch_size=16, crop_pad=0, augment="shift"), seed=7)
    hook.remove()
    inputs = InputPipeline(data, "shift", 0, False, torch.device("cpu"))
    host = make_generator(7)
    steps = len(range(0, data.split_size("train") - 15, 16))
    for epoch in range(2):
        order = data.train_rows[torch.randperm(data.split_size("train"), generator=host)]
        batches = [b for b in seen if b.shape[0] == 16][epoch * steps:(epoch + 1) * steps]
        for k, batch in enumerate(batches):
            assert torch.allclose(batch, inputs.evaluate(data.train_x[order[16 * k:16 * (k + 1)]]), atol=1e-6)
    # evaluation streamed through the ring counts what the resident path counts
    wrong = []
    for feed in (True, False):
        program = EvalProgram(model, 10, tuple(data.val_x.shape[1:]), data.val_x.dtype, torch.device("cpu"), False,
                              False, None, None, inputs.evaluate)
        for _ in program.run(data.val_x, data.val_y, data.val_rows, feed):
            pass
        wrong.append(int(program.wrong))
    assert wrong[0] == wrong[1] == round(result.val_error * data.split_size("val") / 100)


def test_run_on_a_truncated_store_is_one_line_and_leaves_the_store_alone(tmp_path: Path, capfd) -> None:
    from anynet_search.cli import main

    _store16(tmp_path / "s", 0)
    images = tmp_path / "s" / "images.npy"
    with open(images, "r+b") as fh:
        fh.truncate(images.stat().st_size - 100)
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
    code = main(["run", "--dataset", f"prepared:{tmp_path / 's'}", "--trials", "1", "--out", str(tmp_path / "runs"),
                 "--objective", "anynet_search.study.dry_run:pseudo_error"])
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "images.npy is truncated" in err[0] and "Traceback" not in err[0]
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()} == before
    assert not (tmp_path / "runs").exists()  # refused before anything was written
