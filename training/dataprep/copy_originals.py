"""Which original is behind each augmented copy. images/TRAIN and images/TEST hold augmented
copies (rotation, shift, shear, flips) of originals, and their file names do not say which:
the `_<k>_` prefix is the copy's place in a shuffled batch of the generator that made them
(checked on TEST: each prefix mixes all originals of its class evenly).

Each copy is matched to the originals of its own class by ORB keypoints (invariant to
rotation and shift; mirrored copies are matched against a mirrored copy of each original):
the original with the most distinctive matches (Lowe's ratio test) wins. The margin over the
runner-up is kept, so doubtful matches can be seen.

- TEST copies against the TEST_SIMPLE originals: per-original accuracy (seed_report).
- TRAIN copies against the train originals of splits.csv: validation holds out every copy
  of an original (train.load_training_data)."""

from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from training.pipeline.data import DataError, list_originals

RATIO = 0.75
# A match is confident when it has at least MIN_MATCHES and twice the runner-up's. The
# others keep their best guess: TEST_SIMPLE/EOSINOPHIL holds two files twice
# (_0_5239 = _4_8814, _1_5031 = _6_7701, pixel for pixel), so the ~96 TEST copies of two
# eosinophil originals have no original to match.
MIN_MATCHES = 8
# The data set's frame (copies and TEST_SIMPLE): originals are matched at this size.
FRAME_WH = (320, 240)


def _descriptors(orb, bgr: np.ndarray):
    return orb.detectAndCompute(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), None)[1]


def _matches(matcher, query, train) -> int:
    if query is None or train is None or len(train) < 2:
        return 0
    pairs = matcher.knnMatch(query, train, k=2)
    return sum(
        1 for pair in pairs if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance
    )


def _frame(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise DataError(f"cannot read image {path}")
    if bgr.shape[1::-1] != FRAME_WH:
        bgr = cv2.resize(bgr, FRAME_WH, interpolation=cv2.INTER_AREA)
    return bgr


def match_copies(
    copies: dict[str, list[Path]], originals: dict[str, dict[str, Path]], workers: int = 2
) -> dict[Path, dict]:
    """class -> copy paths, class -> {original name: image path} -> for every copy
    {"original", "matches", "runner_up"}. OpenCV releases the GIL, so threads share cores."""
    orb = cv2.ORB.create(nfeatures=600)
    candidates: dict[str, dict[str, list]] = {}  # class -> original -> descriptors
    for class_name, named in originals.items():
        for name, path in sorted(named.items()):
            bgr = _frame(path)
            candidates.setdefault(class_name, {}).setdefault(name, []).extend(
                [_descriptors(orb, bgr), _descriptors(orb, np.ascontiguousarray(bgr[:, ::-1]))]
            )

    def match_one(item: tuple[str, Path]) -> tuple[Path, dict]:
        class_name, path = item
        local_orb, matcher = cv2.ORB.create(nfeatures=600), cv2.BFMatcher(cv2.NORM_HAMMING)
        query = _descriptors(local_orb, _frame(path))
        scores = {
            original: max(_matches(matcher, query, d) for d in descriptors)
            for original, descriptors in candidates.get(class_name, {}).items()
        }
        if not scores:
            return path, {"original": None, "matches": 0, "runner_up": 0}
        ranked = sorted(scores.values(), reverse=True) + [0]
        return path, {
            "original": max(scores, key=lambda original: scores[original]),
            "matches": ranked[0],
            "runner_up": ranked[1],
        }

    items = [(class_name, path) for class_name, paths in sorted(copies.items()) for path in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(match_one, items))


def match_test_to_originals(data_dir: Path) -> dict[str, dict]:
    """`images/TEST/<CLASS>/<file>` -> {"original": originals/..., "matches", "runner_up"}
    for every TEST image; originals come from test_simple_wbc_boxes.json."""
    data_dir = Path(data_dir)
    table = json.loads((data_dir / "test_simple_wbc_boxes.json").read_text())["images"]
    originals: dict[str, dict[str, Path]] = {}
    for name, entry in sorted(table.items()):
        # An original listed twice (two identical TEST_SIMPLE files) keeps its first file.
        originals.setdefault(Path(name).parent.name, {}).setdefault(
            entry["original"], data_dir / name
        )
    copies = {
        class_name: sorted((data_dir / "images" / "TEST" / class_name).glob("*.jpeg"))
        for class_name in originals
    }
    return {
        f"images/TEST/{path.parent.name}/{path.name}": match
        for path, match in match_copies(copies, originals).items()
    }


def train_originals(data_dir: Path, class_names: list[str]) -> dict[str, dict[str, Path]]:
    """class -> {original file name: path} of the originals splits.csv marks `train`."""
    paths, labels = list_originals(data_dir, class_names, "train")
    originals: dict[str, dict[str, Path]] = {name: {} for name in class_names}
    for path, label in zip(paths, labels, strict=True):
        originals[class_names[label]][path.name] = path
    return originals


def train_copy_groups(
    data_dir: Path, class_names: list[str], paths: list[Path]
) -> tuple[np.ndarray, int]:
    """The train original behind each TRAIN copy in `paths` (images/TRAIN/<CLASS>/...), as
    one integer per copy (a copy whose class has no original stands alone), and how many
    matches were doubtful (not `confident`; they keep their best guess). Remembered for the
    process: training and then calibration hold out the same copies and match once."""
    groups, doubtful = _train_copy_groups(
        str(Path(data_dir).resolve()), tuple(class_names), tuple(map(str, paths))
    )
    return groups.copy(), doubtful


@functools.lru_cache(maxsize=2)
def _train_copy_groups(
    data_dir: str, class_names: tuple[str, ...], paths: tuple[str, ...]
) -> tuple[np.ndarray, int]:
    copies = [Path(path) for path in paths]
    by_class: dict[str, list[Path]] = {}
    for path in copies:
        by_class.setdefault(path.parent.name, []).append(path)
    matches = match_copies(by_class, train_originals(Path(data_dir), list(class_names)))
    keys: dict[str, int] = {}
    groups = np.array(
        [keys.setdefault(matches[path]["original"] or str(path), len(keys)) for path in copies],
        dtype=np.int64,
    )
    return groups, sum(not confident(matches[path]) for path in copies)


def confident(match: dict) -> bool:
    return match["matches"] >= MIN_MATCHES and match["matches"] >= 2 * match["runner_up"]


def load_or_match(data_dir: Path, cache: Path) -> dict[str, dict]:
    """The TEST mapping from `cache` if it is there, else computed and written there."""
    if cache.is_file():
        return json.loads(cache.read_text())
    mapping = match_test_to_originals(data_dir)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(mapping, indent=0, sort_keys=True) + "\n")
    return mapping
