"""`imagenet:PATH`: the ILSVRC2012 folders as the official archives or Kaggle's copy unpack them.

`PATH/train/<wnid>/*.JPEG` are the TRAIN rows; the classes are the sorted wnids of train/. `PATH/val/` is the TEST
split, either in class folders (`val/<wnid>/*.JPEG`) or flat, labelled by

- Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`, the first word of the prediction string is the
  wnid), in PATH, PATH/.. or PATH/val; or
- the devkit's `ILSVRC2012_validation_ground_truth.txt` (one 1-based ILSVRC2012_ID per line, for the val files
  in sorted order) with `meta.mat` (its synsets map ILSVRC2012_ID to WNID), in PATH or
  PATH/ILSVRC2012_devkit_t12/data.

Human-readable class names come from `LOC_synset_mapping.txt` (PATH or PATH/..) when present, else from the
devkit's meta.mat. A val file labelled with a wnid train/ lacks, or without a label, is a one-line error.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from anynet_search.errors import DatasetError
from anynet_search.training.data.decode import decoder_name
from anynet_search.training.data.imagefolder import image_files, scan_classes
from anynet_search.training.data.sources import SourceRows, files_fingerprint

KAGGLE_LABELS = "LOC_val_solution.csv"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META = "meta.mat"
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"
SYNSET_NAMES = "LOC_synset_mapping.txt"


def imagenet_rows(path: str) -> SourceRows:
    """The train/ and val/ images of the ImageNet folder `path` (val is the test split)."""
    spec = f"imagenet:{path}"
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{spec}: {'not a directory' if root.exists() else 'path does not exist'}")
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise DatasetError(f"{spec}: no {sub}/ folder (expected PATH/train/<wnid>/*.JPEG and PATH/val/)")
    classes, train_files, train_y = scan_classes(root / "train", spec)
    val = root / "val"
    label_files: list[str] = []
    meta_words: dict[str, str] = {}
    if any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(val)):
        _, val_files, val_y = scan_classes(val, spec, classes)
    else:
        val_files = image_files(val)
        if not val_files:
            raise DatasetError(f"{spec}: {val} holds neither class folders nor images")
        val_y, label_files, meta_words = _flat_val_labels(root, val_files, classes, spec)
    names_file = _first_file([root / SYNSET_NAMES, root.parent / SYNSET_NAMES])
    names = _synset_names(names_file, spec) if names_file else meta_words
    if names_file:
        label_files.append(str(names_file))
    files = train_files + val_files
    fingerprint = files_fingerprint(path, files + label_files, spec)
    test = np.concatenate([np.zeros(len(train_files), bool), np.ones(len(val_files), bool)])
    return SourceRows(kind="imagenet", spec=spec, classes=classes, labels=np.concatenate([train_y, val_y]),
                      test=test, fingerprint=fingerprint, paths=files, decoder=decoder_name(),
                      class_names=[names.get(c, c) for c in classes] if names else None)


def _first_file(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def _flat_val_labels(root: Path, val_files: list[str], classes: list[str],
                     spec: str) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """(labels of the flat val files, the label files read, meta.mat's class names)."""
    index = {c: i for i, c in enumerate(classes)}
    kaggle = _first_file([root / KAGGLE_LABELS, root.parent / KAGGLE_LABELS, root / "val" / KAGGLE_LABELS])
    if kaggle is not None:
        wnids = _kaggle_labels(kaggle, spec)
        words: dict[str, str] = {}
        used = [str(kaggle)]
        per_file = [wnids.get(Path(f).stem) for f in val_files]
        source = kaggle.name
    else:
        truth = _first_file([root / GROUND_TRUTH, root / DEVKIT_DATA / GROUND_TRUTH])
        meta = _first_file([root / META, root / DEVKIT_DATA / META])
        if truth is None or meta is None:
            raise DatasetError(
                f"{spec}: val/ is flat and nothing labels it: expected {KAGGLE_LABELS} in {root}, {root.parent} or "
                f"{root / 'val'}, or {GROUND_TRUTH} and {META} in {root} or {root / DEVKIT_DATA} (or val/ in class "
                "folders)")
        ids, words = _devkit_synsets(meta, spec)
        truth_ids = _ground_truth(truth, spec)
        if len(truth_ids) != len(val_files):
            raise DatasetError(f"{spec}: {truth} lists {len(truth_ids)} labels for {len(val_files)} val images (one "
                               "per val file, in sorted order)")
        per_file = [ids.get(i) for i in truth_ids]
        used = [str(truth), str(meta)]
        source = truth.name
    labels = np.empty(len(val_files), np.int64)
    for k, (f, wnid) in enumerate(zip(val_files, per_file)):
        if wnid is None:
            raise DatasetError(f"{spec}: val image {f} has no label in {source}")
        if wnid not in index:
            raise DatasetError(f"{spec}: val image {f} is labelled {wnid}, which is not a class of {root / 'train'}")
        labels[k] = index[wnid]
    return labels, used, words


def _kaggle_labels(path: Path, spec: str) -> dict[str, str]:
    """ImageId -> wnid from Kaggle's LOC_val_solution.csv."""
    out: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
                raise DatasetError(f"{spec}: {path} has no ImageId,PredictionString header")
            for line, row in enumerate(reader, start=2):
                words = (row.get("PredictionString") or "").split()
                if not row.get("ImageId") or not words:
                    raise DatasetError(f"{spec}: {path} line {line}: expected ImageId,PredictionString "
                                       "('n01751748 x y x y ...')")
                out[row["ImageId"].strip()] = words[0]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{spec}: cannot read {path} ({type(exc).__name__}: {exc})") from None
    return out


def _ground_truth(path: Path, spec: str) -> list[int]:
    """The devkit's 1-based ILSVRC2012_IDs, one per val file in sorted order."""
    try:
        lines = path.read_text(encoding="ascii").split()
        return [int(v) for v in lines]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{spec}: cannot read {path} as one integer per line ({type(exc).__name__}: "
                           f"{exc})") from None


def _devkit_synsets(path: Path, spec: str) -> tuple[dict[int, str], dict[str, str]]:
    """(ILSVRC2012_ID -> WNID, WNID -> words) from the devkit's meta.mat."""
    try:
        from scipy.io import loadmat

        synsets = np.atleast_1d(loadmat(path, squeeze_me=True)["synsets"])
        ids = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
        words = {str(s["WNID"]): str(s["words"]) for s in synsets} if "words" in synsets.dtype.names else {}
    except Exception as exc:  # scipy raises many kinds on a damaged .mat; a missing field is a KeyError/ValueError
        raise DatasetError(f"{spec}: cannot read the synsets of {path} ({type(exc).__name__}: {exc})") from None
    return ids, words


def _synset_names(path: Path, spec: str) -> dict[str, str]:
    """WNID -> human-readable name from LOC_synset_mapping.txt ('n01440764 tench, Tinca tinca')."""
    try:
        pairs = (line.split(maxsplit=1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return {p[0]: (p[1].strip() if len(p) > 1 else p[0]) for p in pairs}
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{spec}: cannot read {path} ({type(exc).__name__}: {exc})") from None
