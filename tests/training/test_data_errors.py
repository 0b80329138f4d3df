import numpy as np
import pytest
from PIL import Image

from training.cli import main
from training.pipeline.data import DataError, class_names_of, list_split, load_images


def _class_folder(root, name, count=2):
    folder = root / name
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(np.full((24, 32, 3), 40 * index, np.uint8)).save(folder / f"{index}.jpeg")
    return folder


def test_missing_split_folder_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"expected a folder of class folders at .*TRAIN"):
        class_names_of(tmp_path / "images" / "TRAIN")


def test_split_without_class_folders(tmp_path):
    (tmp_path / "TRAIN").mkdir()
    with pytest.raises(DataError, match="holds no class folders"):
        class_names_of(tmp_path / "TRAIN")


def test_empty_class_folder_is_named(tmp_path):
    _class_folder(tmp_path, "A")
    (tmp_path / "B").mkdir()
    with pytest.raises(DataError, match=r"class folder .*B holds no images"):
        list_split(tmp_path, ["A", "B"])


def test_class_mismatch_between_splits(tmp_path):
    _class_folder(tmp_path, "A")
    with pytest.raises(DataError, match=r"has class folders \['A'\]; expected \['A', 'B'\]"):
        list_split(tmp_path, ["A", "B"])


def test_unreadable_image_is_named(tmp_path):
    folder = _class_folder(tmp_path, "A")
    (folder / "broken.jpeg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    paths, labels = list_split(tmp_path, ["A"])
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpeg"):
        load_images(paths, labels)


def test_decoded_images_reach_the_data_set_frame(tmp_path):
    _class_folder(tmp_path, "A", count=3)
    data = load_images(*list_split(tmp_path, ["A"]))
    assert data.images.shape == (3, 240, 320, 3)
    assert data.images.dtype == np.uint8


def test_cli_reports_a_bad_data_root(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data-dir",
                str(tmp_path / "nowhere"),
                "--store-dir",
                str(tmp_path / "store"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
