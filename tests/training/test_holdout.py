"""Validation held out by original: no original's copies on both sides, TEST never read."""

import shutil

import numpy as np
import pytest

from training.dataprep.copy_originals import (
    confident,
    match_copies,
    train_copy_groups,
    train_originals,
)
from training.pipeline.config import TrainConfig
from training.pipeline.data import DataError, list_split, stratified_holdout
from training.pipeline.train import load_training_data


def copies_of_originals(rng, originals_per_class, max_copies):
    """Labels and groups of 1..max_copies copies of each class's originals (group
    100 * class + original), in class order."""
    labels, groups = [], []
    for label, originals in enumerate(originals_per_class):
        for original in range(originals):
            copies = rng.integers(1, max_copies + 1)
            labels += [label] * copies
            groups += [100 * label + original] * copies
    return np.array(labels), np.array(groups)


def test_grouped_holdout_keeps_every_copy_of_an_original_on_one_side():
    rng = np.random.default_rng(0)
    # 3 classes with 20, 10 and 4 originals of 1..6 copies each, shuffled.
    labels, groups = copies_of_originals(rng, (20, 10, 4), max_copies=6)
    order = rng.permutation(len(labels))
    labels, groups = labels[order], groups[order]
    kept, held = stratified_holdout(labels, 0.25, seed=5, groups=groups)

    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    assert not set(groups[kept]) & set(groups[held])
    held_per_class = [len(set(groups[held][labels[held] == c])) for c in range(3)]
    assert held_per_class == [5, 2, 1]  # a quarter of each class's originals, at least one
    again = stratified_holdout(labels, 0.25, seed=5, groups=groups)
    assert np.array_equal(again[1], held)
    assert len(stratified_holdout(labels, 0.0, seed=5, groups=groups)[1]) == 0


def test_without_groups_each_image_is_held_out_alone():
    labels = np.array([0] * 10 + [1] * 10)
    kept, held = stratified_holdout(labels, 0.2, seed=3)
    assert np.bincount(labels[held]).tolist() == [2, 2]
    grouped = stratified_holdout(labels, 0.2, seed=3, groups=np.arange(20))
    assert np.array_equal(grouped[1], held)


def test_train_copies_are_matched_to_their_own_class_originals(data_dir):
    """The `_K_` of a TRAIN copy's name is not its original (it mixes them), so copies are
    matched by keypoints; on real copies every match is to an original of the same class."""
    class_names = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    originals = train_originals(data_dir, class_names)
    assert [len(originals[name]) for name in class_names] == [77, 27, 16, 159]
    copies = sorted((data_dir / "images" / "TRAIN" / "MONOCYTE").glob("_0_*.jpeg"))[:24]
    matches = match_copies({"MONOCYTE": copies}, {"MONOCYTE": originals["MONOCYTE"]})
    assert all(match["original"] in originals["MONOCYTE"] for match in matches.values())
    assert sum(confident(match) for match in matches.values()) >= 20
    assert len({match["original"] for match in matches.values()}) > 3  # one prefix, many


def test_example_copies_group_into_their_originals(example_data_dir):
    class_names = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    paths, labels = list_split(example_data_dir / "images" / "TRAIN", class_names)
    groups, doubtful = train_copy_groups(example_data_dir, class_names, paths)
    assert doubtful == 0
    assert len(set(groups.tolist())) == len(paths) == 8  # each copy is its own original


def test_train_folder_source_validates_on_held_out_originals_without_test(
    example_data_dir, tmp_path
):
    data_dir = tmp_path / "data"
    shutil.copytree(example_data_dir, data_dir)
    shutil.rmtree(data_dir / "images" / "TEST")  # training must not need it
    config = TrainConfig(data_dir=data_dir, source="train-folder", validation_fraction=0.5)
    class_names, train, validation = load_training_data(config)

    assert class_names == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert validation is not None
    # Two originals per class in TRAIN: one of each trains, the other validates.
    assert sorted(train.labels.tolist()) == sorted(validation.labels.tolist()) == [0, 1, 2, 3]
    assert not {p.name for p in train.paths} & {p.name for p in validation.paths}
    assert len(train) == len(validation) == 4
    assert all(p.parent.parent.name == "TRAIN" for p in train.paths + validation.paths)


@pytest.mark.parametrize("source, expected", [("originals", 16), ("train-folder", 0)])
def test_frame_copies_follow_the_source_unless_given(source, expected):
    assert TrainConfig(source=source).frame_copies() == expected
    assert TrainConfig(source=source, bank_copies=3).frame_copies() == 3


def test_an_unreadable_copy_is_named(example_data_dir, tmp_path):
    from training.pipeline.data import DataError

    data_dir = tmp_path / "data"
    shutil.copytree(example_data_dir, data_dir)
    broken = next((data_dir / "images" / "TRAIN" / "MONOCYTE").iterdir())
    broken.write_bytes(b"not a jpeg")
    class_names = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    paths, _ = list_split(data_dir / "images" / "TRAIN", class_names)
    with pytest.raises(DataError, match=f"cannot read image .*{broken.name}"):
        train_copy_groups(data_dir, class_names, paths)


@pytest.mark.parametrize("method", ["stratified-group-kfold", "round-robin"])
def test_folds_hold_out_every_original_exactly_once_stratified_by_class(method):
    labels, groups = copies_of_originals(np.random.default_rng(1), (21, 8, 4), max_copies=4)
    held = [
        stratified_holdout(labels, 0.1, 7, groups, folds=4, fold=k, fold_method=method)[1]
        for k in range(4)
    ]

    assert np.array_equal(np.sort(np.concatenate(held)), np.arange(len(labels)))
    for fold in held:  # each class in each fold: 21 originals -> 4 to 6, 8 -> 2, 4 -> 1
        per_class = [len(set(groups[fold][labels[fold] == c])) for c in range(3)]
        assert 4 <= per_class[0] <= 6 and per_class[1:] == [2, 1]
    kept, again = stratified_holdout(labels, 0.1, 7, groups, folds=4, fold=2, fold_method=method)
    assert np.array_equal(again, held[2])
    assert not set(groups[kept]) & set(groups[again])
    with pytest.raises(ValueError, match="fold 4 is not one of the 4 folds"):
        stratified_holdout(labels, 0.1, 7, groups, folds=4, fold=4, fold_method=method)
    with pytest.raises(DataError, match="class 2 has 4 originals, fewer than the 5 folds"):
        stratified_holdout(labels, 0.1, 7, groups, folds=5, fold=0, fold_method=method)


def test_round_robin_folds_are_dealt_as_before():
    """Studies recorded before StratifiedGroupKFold (fold_method round-robin) get back the
    folds they held out: these are the indices the round-robin code gave."""
    labels = np.array([0] * 6 + [1] * 4)
    groups = np.array([0, 0, 1, 2, 2, 3, 10, 11, 11, 12])
    folds = [
        stratified_holdout(labels, 0, 3, groups, folds=2, fold=k, fold_method="round-robin")[1]
        for k in range(2)
    ]
    assert [fold.tolist() for fold in folds] == [[2, 5, 6, 9], [0, 1, 3, 4, 7, 8]]
    # Dealt by originals, each class's in turn: 2 of class 0's 4 and 1 or 2 of class 1's 3.
    by_kfold = [stratified_holdout(labels, 0, 3, groups, folds=2, fold=k)[1] for k in range(2)]
    assert [fold.tolist() for fold in by_kfold] == [[3, 4, 5, 7, 8], [0, 1, 2, 6, 9]]


def test_stratified_group_kfold_balances_each_classs_images_across_folds():
    """Round-robin balanced the count of originals per class and fold, whatever their copies;
    StratifiedGroupKFold balances the class shares of the images held out."""
    rng = np.random.default_rng(2)
    labels, groups = copies_of_originals(rng, (40, 12), max_copies=30)
    share = labels.mean()

    def worst_share(method):
        return max(
            abs(labels[held].mean() - share)
            for held in (
                stratified_holdout(labels, 0, 4, groups, folds=4, fold=k, fold_method=method)[1]
                for k in range(4)
            )
        )

    assert worst_share("stratified-group-kfold") < 0.02 < worst_share("round-robin")


def test_records_without_a_fold_method_meant_round_robin():
    record = TrainConfig(folds=4).to_record()
    assert record["fold_method"] == "stratified-group-kfold"
    del record["fold_method"]
    assert TrainConfig.from_record(record).fold_method == "round-robin"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--folds", "1"], "--folds must be at least 2, not 1"),
        (["--strategy", "multi-worker"], "--strategy multi-worker is for `train`"),
        (["--temperature-from", "runs/cv"], "cross-validate fits its own temperature"),
    ],
)
def test_cross_validate_refuses_what_it_cannot_run(tmp_path, capsys, argv, message):
    from training.cli import main

    assert main(["cross-validate", "--output-dir", str(tmp_path / "cv"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cv" / "fold-0").exists()  # refused before any training


def test_a_study_saved_before_fold_method_existed_reads_as_round_robin(tmp_path):
    """Fold answers saved before `fold_method` was recorded were dealt round-robin: such a
    study resumes with `--fold-method round-robin` and is refused with the new folds."""
    from training.pipeline.config import TrainConfig
    from training.studies.cross_validation import _with_legacy_defaults, study_record

    old_folds = study_record(TrainConfig(fold_method="round-robin"), 4, tmp_path)
    saved_then = {key: value for key, value in old_folds.items() if key != "fold_method"}
    assert _with_legacy_defaults(saved_then) == old_folds
    new_folds = study_record(TrainConfig(), 4, tmp_path)
    assert {k for k in new_folds if new_folds[k] != _with_legacy_defaults(saved_then)[k]} == {
        "fold_method"
    }
    assert _with_legacy_defaults({}) == {}  # answers saved with no record at all
