"""Tests for anynet_search.training.data: specs, splits, normalization, CIFAR pickles (safely) and image
folders."""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from anynet_search.training.data import (
    DatasetError,
    DataSplits,
    dataset_names,
    load_dataset,
    synthetic_images,
)

TENSORS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


def assert_well_formed(d: DataSplits, channels: int, resolution: int, num_classes: int) -> None:
    for name in ("train_x", "val_x", "test_x"):
        x = getattr(d, name)
        assert x.dtype == torch.float32
        assert x.shape[1:] == (channels, resolution, resolution), name
        assert torch.isfinite(x).all()
    for name in ("train_y", "val_y", "test_y"):
        y = getattr(d, name)
        assert y.dtype == torch.int64 and y.dim() == 1
        assert int(y.min()) >= 0 and int(y.max()) < num_classes
    assert (
        len(d.train_x) == len(d.train_y) and len(d.val_x) == len(d.val_y) and len(d.test_x) == len(d.test_y)
    )
    assert (d.in_channels, d.resolution, d.num_classes) == (channels, resolution, num_classes)
    # Normalized with the train split's own per-channel statistics.
    mean = d.train_x.mean(dim=(0, 2, 3))
    std = d.train_x.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(channels), atol=1e-4)
    assert torch.allclose(std, torch.ones(channels), atol=1e-2)
    assert len(d.mean) == len(d.std) == channels


def denormalize(d: DataSplits, x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(d.std).view(1, -1, 1, 1) + torch.tensor(d.mean).view(1, -1, 1, 1)


# ----------------------------------------------------------------------------------------------------------
# digits


def test_digits_default_shapes_and_split_sizes() -> None:
    d = load_dataset("digits", resolution=8)
    assert d.name == "digits" and d.flip is False
    assert_well_formed(d, 1, 8, 10)
    assert (len(d.train_x), len(d.val_x), len(d.test_x)) == (1294, 144, 359)
    # Stratified: every class appears in every split.
    for y in (d.train_y, d.val_y, d.test_y):
        assert torch.bincount(y, minlength=10).min() > 0


def test_digits_splits_partition_the_dataset() -> None:
    from sklearn.datasets import load_digits

    d = load_dataset("digits", resolution=8, seed=3)
    raw = load_digits()

    def keys(x: torch.Tensor, y: torch.Tensor) -> Counter:
        pixels = denormalize(d, x).mul(16).round().to(torch.int64).flatten(1)
        return Counter((tuple(p.tolist()), int(t)) for p, t in zip(pixels, y, strict=True))

    everything = Counter(
        (tuple(p), int(t)) for p, t in zip(raw.data.astype(int).tolist(), raw.target, strict=True)
    )
    parts = keys(d.train_x, d.train_y) + keys(d.val_x, d.val_y) + keys(d.test_x, d.test_y)
    assert parts == everything  # disjoint and complete, duplicates included


def test_digits_deterministic_by_seed() -> None:
    a, b, c = (load_dataset("digits", 8, seed=s) for s in (0, 0, 1))
    for name in TENSORS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.test_y, c.test_y) or not torch.equal(a.test_x, c.test_x)
    assert not torch.equal(a.val_x, c.val_x)
    # The test split is the same size regardless of seed.
    assert len(a.test_x) == len(c.test_x)


@pytest.mark.parametrize("resolution", [16, 32])
def test_digits_resized(resolution: int) -> None:
    d = load_dataset("digits", resolution=resolution)
    assert_well_formed(d, 1, resolution, 10)
    # Same split at every resolution; the pixels are a bilinear antialiased resize of the 8x8 originals.
    d8 = load_dataset("digits", resolution=8)
    assert torch.equal(d.train_y, d8.train_y)
    expected = F.interpolate(
        denormalize(d8, d8.train_x), size=(resolution, resolution), mode="bilinear", antialias=True
    )
    assert torch.allclose(denormalize(d, d.train_x), expected, atol=1e-4)


def test_val_fraction_changes_val_size() -> None:
    d = load_dataset("digits", 8, val_fraction=0.25)
    assert len(d.val_x) == round(0.25 * (1797 - 359))
    assert len(d.test_x) == 359


def test_returned_tensors_are_not_shared_between_loads() -> None:
    a = load_dataset("digits", 8)
    expected = a.train_x.clone()
    a.train_x.fill_(123.0)
    a.test_y.zero_()
    b = load_dataset("digits", 8)
    assert torch.equal(b.train_x, expected)
    assert int(b.test_y.max()) == 9


def test_to_device() -> None:
    d = load_dataset("synthetic:100", 8)
    m = d.to("meta")
    for name in TENSORS:
        assert getattr(m, name).device.type == "meta"
        assert getattr(m, name).shape == getattr(d, name).shape
    assert (m.name, m.num_classes, m.flip, m.mean) == (d.name, d.num_classes, d.flip, d.mean)
    assert d.train_x.device.type == "cpu"  # the original is untouched
    assert torch.equal(d.to(torch.device("cpu")).train_x, d.train_x)


# ----------------------------------------------------------------------------------------------------------
# synthetic


def test_synthetic_default() -> None:
    d = load_dataset("synthetic", 32)
    assert d.name == "synthetic:512" and d.flip is True
    assert_well_formed(d, 3, 32, 10)
    assert len(d.train_x) + len(d.val_x) + len(d.test_x) == 512
    assert len(d.test_x) == round(0.2 * 512)


def test_synthetic_deterministic_and_seeded_split() -> None:
    a, b, c = (load_dataset("synthetic:200", 16, seed=s) for s in (7, 7, 8))
    for name in TENSORS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert len(a.train_x) + len(a.val_x) + len(a.test_x) == 200
    assert not torch.equal(a.train_x, c.train_x)
    # Disjoint: no validation image is also a training image.
    assert torch.cdist(a.val_x.flatten(1), a.train_x.flatten(1)).min() > 1e-3
    # The images themselves do not depend on the seed, only the split does.
    x1, _ = synthetic_images(50, 8)
    x2, _ = synthetic_images(50, 8)
    assert torch.equal(x1, x2)


def test_synthetic_is_learnable_by_nearest_class_mean() -> None:
    # A sanity check that labels carry signal: class means of train classify val far above chance.
    d = load_dataset("synthetic:1000", 16)
    means = torch.stack([d.train_x[d.train_y == c].mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(d.val_x.flatten(1), means).argmin(1)
    assert (pred == d.val_y).float().mean() > 0.5


# ----------------------------------------------------------------------------------------------------------
# CIFAR


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def cifar_batch(n: int, label_key: str, num_classes: int, seed: int, str_keys: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"fake batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key.encode(): [int(i % num_classes) for i in range(n)],
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return {k.decode(): v for k, v in batch.items()} if str_keys else batch


def write_cifar10(folder: Path, n: int = 20, protocol: int = 2, str_keys: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", cifar_batch(n, "labels", 10, i, str_keys), protocol)
    write_pickle(folder / "test_batch", cifar_batch(n, "labels", 10, 99, str_keys), protocol)
    write_pickle(folder / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]}, protocol)
    return folder


def write_cifar100(folder: Path, n_train: int = 200, n_test: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        batch = cifar_batch(n, "fine_labels", 100, seed)
        batch[b"coarse_labels"] = [i % 20 for i in range(n)]
        write_pickle(folder / name, batch)
    write_pickle(folder / "meta", {b"fine_label_names": [b"x"] * 100})
    return folder


def test_cifar10_from_folder_and_parent(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    for path in (folder, tmp_path):
        d = load_dataset(f"cifar10:{path}", 32, seed=0)
        assert d.name == "cifar10" and d.flip is True
        assert_well_formed(d, 3, 32, 10)
        assert (len(d.train_x), len(d.val_x), len(d.test_x)) == (90, 10, 20)


def test_cifar10_pixels_and_test_split_are_exact(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    d = load_dataset(f"cifar10:{folder}", 32)
    test = cifar_batch(20, "labels", 10, 99)
    raw = torch.from_numpy(test[b"data"].reshape(-1, 3, 32, 32).astype(np.float32)) / 255
    assert torch.allclose(denormalize(d, d.test_x), raw, atol=1e-5)  # test split kept in file order
    assert d.test_y.tolist() == test[b"labels"]


def test_cifar10_resized_and_seeded_val(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    a = load_dataset(f"cifar10:{folder}", 16, seed=0)
    b = load_dataset(f"cifar10:{folder}", 16, seed=1)
    assert_well_formed(a, 3, 16, 10)
    # The test batch never depends on the seed (only its normalization, which uses the train split).
    assert torch.allclose(denormalize(a, a.test_x), denormalize(b, b.test_x), atol=1e-5)
    assert not torch.equal(a.val_x, b.val_x)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_other_protocols_and_str_keys(tmp_path: Path, protocol: int) -> None:
    folder = write_cifar10(tmp_path / "c10", protocol=protocol, str_keys=protocol == 4)
    d = load_dataset(f"cifar10:{folder}", 32)
    assert len(d.train_x) + len(d.val_x) == 100


class Py2Pickler(pickle._Pickler):
    """Writes every str/bytes as a Python 2 byte string, as the official CIFAR files (cPickle) do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def test_cifar10_python2_style_pickles(tmp_path: Path) -> None:
    # Official files: Python 2 strings (bytes under encoding="bytes") and numpy<2's numpy.core module name.
    folder = write_cifar10(tmp_path / "c10")
    for f in folder.iterdir():
        buf = io.BytesIO()
        Py2Pickler(buf, protocol=2).dump(pickle.loads(f.read_bytes()))
        f.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    raw = (folder / "test_batch").read_bytes()
    assert b"numpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    d = load_dataset(f"cifar10:{folder}", 32)
    assert d.test_y.tolist() == cifar_batch(20, "labels", 10, 99)[b"labels"]
    assert len(d.train_x) + len(d.val_x) == 100


def test_cifar100(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "cifar-100-python")
    d = load_dataset(f"cifar100:{tmp_path}", 32)
    assert d.name == "cifar100"
    assert_well_formed(d, 3, 32, 100)
    assert (len(d.train_x), len(d.val_x), len(d.test_x)) == (180, 20, 100)
    assert d.test_y.tolist() == [i % 100 for i in range(100)]  # fine labels, not coarse


class Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    marker = tmp_path / "pwned"
    write_pickle(folder / "data_batch_2", {b"data": Evil(f"echo pwned > {marker}"), b"labels": []})
    with pytest.raises(DatasetError, match=r"data_batch_2.*forbidden global .*system") as info:
        load_dataset(f"cifar10:{folder}", 32)
    assert not marker.exists()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("target", [eval, getattr, Path])
def test_other_globals_are_refused(tmp_path: Path, target: object) -> None:
    folder = write_cifar10(tmp_path / "c10")
    write_pickle(folder / "test_batch", {b"data": target, b"labels": []})
    with pytest.raises(DatasetError, match="forbidden global"):
        load_dataset(f"cifar10:{folder}", 32)


def test_cifar_wrong_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nope'}", 32)


def test_cifar_missing_batch_named(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="missing data_batch_3") as info:
        load_dataset(f"cifar10:{folder}", 32)
    assert "data_batch_1" not in str(info.value).split("missing")[1].split("(")[0]


def test_cifar100_folder_given_to_cifar10(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "cifar-100-python")
    with pytest.raises(DatasetError, match="missing data_batch_1.*test_batch"):
        load_dataset(f"cifar10:{tmp_path / 'cifar-100-python'}", 32)


def test_cifar_corrupt_and_malformed_batches(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    (folder / "data_batch_4").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetError, match="data_batch_4"):
        load_dataset(f"cifar10:{folder}", 32)
    folder = write_cifar10(tmp_path / "c10b")
    write_pickle(folder / "data_batch_1", {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(DatasetError, match=r"data_batch_1.*\(N, 3072\)"):
        load_dataset(f"cifar10:{folder}", 32)
    write_pickle(folder / "data_batch_1", {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 12]})
    with pytest.raises(DatasetError, match=r"data_batch_1.*\[0, 10\)"):
        load_dataset(f"cifar10:{folder}", 32)
    write_pickle(folder / "data_batch_1", {b"images": np.zeros((3, 3072), np.uint8)})
    with pytest.raises(DatasetError, match="data_batch_1.*'data'"):
        load_dataset(f"cifar10:{folder}", 32)


def test_cifar_file_change_invalidates_cache(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    a = load_dataset(f"cifar10:{folder}", 32)
    write_pickle(folder / "test_batch", cifar_batch(30, "labels", 10, 5))
    b = load_dataset(f"cifar10:{folder}", 32)
    assert (len(a.test_x), len(b.test_x)) == (20, 30)


# ----------------------------------------------------------------------------------------------------------
# image folders

COLORS = {"cat": (220, 40, 40), "dog": (40, 220, 40), "emu": (40, 40, 220)}


def write_images(root: Path, per_class: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (10, 14) if i % 2 else (12, 12)  # non-square images too
            pixels = np.clip(np.array(color) + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(pixels)
            if i == 0:
                img = img.convert("L")  # grayscale must become RGB
            img.save(root / name / f"{i}.png")
        (root / name / "notes.txt").write_text("ignored: not an image")


def test_imagefolder_seeded_split(tmp_path: Path) -> None:
    write_images(tmp_path, per_class=10)
    d = load_dataset(f"imagefolder:{tmp_path}", 8, seed=0)
    assert d.flip is True
    assert_well_formed(d, 3, 8, 3)
    assert len(d.train_x) + len(d.val_x) + len(d.test_x) == 30
    assert len(d.test_x) == 6 and len(d.val_x) == round(0.1 * 24)
    # Classes are the sorted folder names: cat=0 is red, dog=1 green, emu=2 blue (on average).
    raw = denormalize(d, d.train_x).mean(dim=(2, 3))
    for c in range(3):
        assert int(raw[d.train_y == c].mean(0).argmax()) == c
    again = load_dataset(f"imagefolder:{tmp_path}", 8, seed=0)
    assert torch.equal(again.train_x, d.train_x)


def test_imagefolder_train_test_layout(tmp_path: Path) -> None:
    write_images(tmp_path / "train", per_class=5)
    write_images(tmp_path / "val", per_class=2, seed=1)
    d = load_dataset(f"imagefolder:{tmp_path}", 16)
    assert_well_formed(d, 3, 16, 3)
    assert len(d.test_x) == 6
    assert len(d.train_x) + len(d.val_x) == 15
    assert sorted(d.test_y.tolist()) == [0, 0, 1, 1, 2, 2]


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}", 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load_dataset(f"imagefolder:{empty}", 8)
    root = tmp_path / "root"
    write_images(root, per_class=3)
    (root / "fox").mkdir()
    (root / "fox" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"fox.*has no images"):
        load_dataset(f"imagefolder:{root}", 8)
    (root / "fox" / "broken.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.png") as info:
        load_dataset(f"imagefolder:{root}", 8)
    assert "\n" not in str(info.value)


def test_imagefolder_test_class_unknown_to_train(tmp_path: Path) -> None:
    write_images(tmp_path / "train", per_class=3)
    write_images(tmp_path / "test", per_class=1)
    (tmp_path / "test" / "yak").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "yak" / "a.png")
    with pytest.raises(DatasetError, match="yak"):
        load_dataset(f"imagefolder:{tmp_path}", 8)


# ----------------------------------------------------------------------------------------------------------
# bad specs


@pytest.mark.parametrize(
    "spec", ["mnist", "digits:extra", "cifar10", "cifar10:", "imagefolder:", "", "svhn:/x"]
)
def test_unknown_spec_lists_accepted_forms(spec: str) -> None:
    with pytest.raises(DatasetError, match="accepted forms: digits") as info:
        load_dataset(spec, 32)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["synthetic:abc", "synthetic:0", "synthetic:-5", "synthetic:"])
def test_bad_synthetic_n(spec: str) -> None:
    with pytest.raises(DatasetError, match="N must be"):
        load_dataset(spec, 32)


@pytest.mark.parametrize("resolution", [0, -8, 2.5, True])
def test_bad_resolution(resolution: object) -> None:
    with pytest.raises(DatasetError, match="resolution"):
        load_dataset("digits", resolution)  # type: ignore[arg-type]


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.1])
def test_bad_val_fraction(val_fraction: float) -> None:
    with pytest.raises(DatasetError, match="val_fraction"):
        load_dataset("digits", 8, val_fraction=val_fraction)


def test_dataset_error_is_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


def test_dataset_names() -> None:
    names = dataset_names()
    assert names[0] == "digits"
    assert {"synthetic:N", "cifar10:PATH", "cifar100:PATH", "imagefolder:PATH"} <= set(names)
