"""Which original is behind each TEST image: TEST holds augmented copies (rotation, shift,
shear, flips) of the originals in TEST_SIMPLE, and its file names do not say which (the
`_<k>_` prefix is not the TEST_SIMPLE file's: checked, it mixes originals evenly).

Each TEST image is matched to the TEST_SIMPLE originals of its own class by ORB keypoints
(invariant to rotation and shift; mirrored images are matched against a mirrored copy of
each original): the original with the most distinctive matches (Lowe's ratio test) wins. The
margin over the runner-up is kept, so doubtful matches can be seen."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

RATIO = 0.75
# A match is confident when it has at least MIN_MATCHES and twice the runner-up's. The
# others are left unassigned: TEST_SIMPLE/EOSINOPHIL holds two files twice
# (_0_5239 = _4_8814, _1_5031 = _6_7701, pixel for pixel), so the ~96 TEST copies of two
# eosinophil originals have no original to match.
MIN_MATCHES = 8


def _descriptors(orb, bgr: np.ndarray):
    return orb.detectAndCompute(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), None)[1]


def _matches(matcher, query, train) -> int:
    if query is None or train is None or len(train) < 2:
        return 0
    pairs = matcher.knnMatch(query, train, k=2)
    return sum(1 for pair in pairs
               if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance)


def match_test_to_originals(data_dir: Path) -> dict[str, dict]:
    """`images/TEST/<CLASS>/<file>` -> {"original": originals/..., "matches", "runner_up"}
    for every TEST image; originals come from test_simple_wbc_boxes.json."""
    data_dir = Path(data_dir)
    table = json.loads((data_dir / "test_simple_wbc_boxes.json").read_text())["images"]
    orb, matcher = cv2.ORB_create(nfeatures=600), cv2.BFMatcher(cv2.NORM_HAMMING)
    candidates: dict[str, dict[str, list]] = {}  # class -> original -> descriptors
    for name, entry in sorted(table.items()):
        bgr = cv2.imread(str(data_dir / name))
        per_original = candidates.setdefault(Path(name).parent.name, {})
        per_original.setdefault(entry["original"], []).extend(
            [_descriptors(orb, bgr), _descriptors(orb, np.ascontiguousarray(bgr[:, ::-1]))])
    mapping = {}
    for class_name, originals in sorted(candidates.items()):
        for path in sorted((data_dir / "images" / "TEST" / class_name).glob("*.jpeg")):
            query = _descriptors(orb, cv2.imread(str(path)))
            scores = {original: max(_matches(matcher, query, d) for d in descriptors)
                      for original, descriptors in originals.items()}
            ranked = sorted(scores.values(), reverse=True) + [0]
            mapping[f"images/TEST/{class_name}/{path.name}"] = {
                "original": max(scores, key=scores.get), "matches": ranked[0],
                "runner_up": ranked[1]}
    return mapping


def confident(match: dict) -> bool:
    return match["matches"] >= MIN_MATCHES and match["matches"] >= 2 * match["runner_up"]


def load_or_match(data_dir: Path, cache: Path) -> dict[str, dict]:
    """The mapping from `cache` if it is there, else computed (minutes) and written there."""
    if cache.is_file():
        return json.loads(cache.read_text())
    mapping = match_test_to_originals(data_dir)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(mapping, indent=0, sort_keys=True) + "\n")
    return mapping
