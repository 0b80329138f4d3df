"""Read the blood-cell data set: class folders, splits.csv, images decoded into memory."""

from __future__ import annotations

import csv
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from model_core.inputs.transform import decode_jpeg
from training.pipeline.config import FoldMethod

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp")
# The data set's own frame: TRAIN, TEST and TEST_SIMPLE are 320x240; originals are 640x480.
FRAME_SIZE = (240, 320)


class DataError(Exception):
    """The data folder is not laid out as expected or holds an unreadable image."""


@dataclass
class LabelledImages:
    """Decoded RGB uint8 images [N, H, W, 3] with integer labels and the files they came from."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)


def class_names_of(split_dir: Path) -> list[str]:
    """Class names, sorted, from the sub-folders of a split folder (the output order)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(
            f"expected a folder of class folders at {split_dir}, but it does not exist; "
            "check the data root (--data-dir)"
        )
    names = sorted(child.name for child in split_dir.iterdir() if child.is_dir())
    if not names:
        raise DataError(
            f"{split_dir} holds no class folders (expected e.g. {split_dir}/EOSINOPHIL/)"
        )
    return names


def list_split(
    split_dir: Path, class_names: list[str], limit_per_class: int | None = None
) -> tuple[list[Path], np.ndarray]:
    """Image paths and labels of a split folder, in class order then file-name order."""
    found = class_names_of(split_dir)
    if found != class_names:
        raise DataError(f"{split_dir} has class folders {found}; expected {class_names}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        files = sorted(
            p for p in (Path(split_dir) / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(f"class folder {Path(split_dir) / name} holds no images")
        files = files[:limit_per_class]
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int32)


def list_originals(
    data_dir: Path,
    class_names: list[str],
    split: str = "train",
    limit_per_class: int | None = None,
) -> tuple[list[Path], np.ndarray]:
    """Originals of one split of splits.csv whose category is one of `class_names`."""
    splits_file = Path(data_dir) / "splits.csv"
    if not splits_file.is_file():
        raise DataError(f"expected {splits_file} (columns original,category,split)")
    per_class: dict[str, list[Path]] = {name: [] for name in class_names}
    with open(splits_file, newline="") as stream:
        for row in csv.DictReader(stream):
            if row["split"] == split and row["category"] in per_class:
                per_class[row["category"]].append(Path(data_dir) / "originals" / row["original"])
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        files = sorted(per_class[name])[:limit_per_class]
        if not files:
            raise DataError(f"{splits_file} lists no {split} originals of class {name}")
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int32)


def _decode_to_frame(path: tf.Tensor) -> tf.Tensor:
    image = decode_jpeg(tf.io.read_file(path))
    if_resize = tf.reduce_any(tf.shape(image)[:2] != FRAME_SIZE)
    return tf.cond(
        if_resize,
        lambda: tf.cast(tf.round(tf.image.resize(image, FRAME_SIZE, antialias=True)), tf.uint8),
        lambda: image,
    )


def load_images(paths: list[Path], labels: np.ndarray) -> LabelledImages:
    """Decode all images in parallel into one uint8 array at the data set's 320x240 frame."""
    dataset = tf.data.Dataset.from_tensor_slices([str(p) for p in paths]).map(
        _decode_to_frame, num_parallel_calls=tf.data.AUTOTUNE
    )
    images = np.empty((len(paths), *FRAME_SIZE, 3), dtype=np.uint8)
    try:
        for index, image in enumerate(dataset.batch(256).as_numpy_iterator()):
            images[index * 256 : index * 256 + len(image)] = image
    except tf.errors.OpError as error:
        raise DataError(_first_unreadable(paths) or f"cannot decode images: {error}") from None
    return LabelledImages(images, labels, list(paths))


def _first_unreadable(paths: list[Path]) -> str | None:
    for path in paths:
        try:
            _decode_to_frame(tf.constant(str(path)))
        except tf.errors.OpError as error:
            return f"cannot read image {path}: {error.message.splitlines()[0]}"
    return None


# How groups are dealt into folds (TrainConfig.fold_method says what each does). Round-robin,
# the older, is kept so that the folds of a study recorded with it can be dealt again; the
# other's folds are scikit-learn's, so they hold for the scikit-learn version of the lock.
FOLD_METHODS: tuple[FoldMethod, ...] = typing.get_args(FoldMethod)


def stratified_holdout(
    labels: np.ndarray,
    fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
    folds: int | None = None,
    fold: int = 0,
    fold_method: FoldMethod = "stratified-group-kfold",
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out): `fraction` of each class's groups held out whole, at least
    one where the class has two or more groups. `groups`: the original behind each image
    (`copy_originals.train_copy_groups`), so no original's copies land on both sides; None:
    each image alone. With `folds`: `fraction` is ignored and the held-out groups are fold
    `fold` of `folds`, dealt by `fold_method` (`FOLD_METHODS`), so the folds of one seed
    hold out every group exactly once."""
    if folds is not None and not 0 <= fold < folds:
        raise ValueError(f"fold {fold} is not one of the {folds} folds (0..{folds - 1})")
    if fraction <= 0 and folds is None:
        return np.arange(len(labels)), np.array([], dtype=np.int64)
    if groups is None:
        groups = np.arange(len(labels))
    if folds is not None:
        held = _fold(labels, groups, seed, folds, fold, fold_method)
        return np.setdiff1d(np.arange(len(labels)), held), held
    rng = np.random.default_rng(seed)
    held_groups: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.unique(groups[labels == label]))
        count = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        held_groups += members[:count].tolist()
    return _split_by_groups(groups, held_groups)


def _fold(
    labels: np.ndarray, groups: np.ndarray, seed: int, folds: int, fold: int, method: FoldMethod
) -> np.ndarray:
    """Indices held out by fold `fold` of `folds`."""
    for label in np.unique(labels):
        count = len(np.unique(groups[labels == label]))
        if count < folds:
            raise DataError(
                f"class {label} has {count} originals, fewer than the "
                f"{folds} folds: some fold would train without it"
            )
    if method == "stratified-group-kfold":
        from sklearn.model_selection import StratifiedGroupKFold

        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(len(labels)), labels, groups))
        return np.sort(splits[fold][1])
    if method != "round-robin":
        raise ValueError(f"unknown fold method {method!r}; expected one of {FOLD_METHODS}")
    rng = np.random.default_rng(seed)
    held_groups: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.unique(groups[labels == label]))
        held_groups += members[fold::folds].tolist()
    return _split_by_groups(groups, held_groups)[1]


def _split_by_groups(groups: np.ndarray, held_groups: list[int]) -> tuple[np.ndarray, np.ndarray]:
    held = np.flatnonzero(np.isin(groups, held_groups))
    return np.setdiff1d(np.arange(len(groups)), held), held
