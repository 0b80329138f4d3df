"""`python -m training fetch-data` against a real HTTP server on loopback serving a small
generated copy of the two public archives (BCCD's zip, the blood-cells images as a tar.gz)."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.utils.http_files import FileServer
from tests.utils.images import ROOT, example_smears
from training.cli import main
from training.dataprep.fetch import DEFAULT_SOURCES, FetchError, _target, load_sources, sha256_of

BCCD_PREFIX = "BCCD_Dataset-1.0/BCCD/"
CELLS_PREFIX = "wbc-classification-0123abc/_inputs/"


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _annotation(name: str, box: list[int]) -> bytes:
    """VOC XML with the WBC box doubled to 640x480 (plus one, which halving floors away) and
    an RBC box that is not a WBC."""
    xmin, ymin, xmax, ymax = (2 * v + 1 for v in box)
    objects = "".join(
        f"<object><name>{kind}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for kind, (a, b, c, d) in (("WBC", (xmin, ymin, xmax, ymax)), ("RBC", (1, 2, 30, 40)))
    )
    return (
        f"<annotation><filename>{name}.jpg</filename><size><width>640</width>"
        f"<height>480</height><depth>3</depth></size>{objects}</annotation>"
    ).encode()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The two archives, served from a folder, and what fetch-data should make of them. The
    eight example smears, blown up to 640x480, are originals 0-7; the first of each class is
    also a TEST_SIMPLE image (so test), the second only a TRAIN image (so train); original 8
    has a mixed label and original 9 none, so splits.csv leaves them out."""
    root = tmp_path_factory.mktemp("published")
    smears = example_smears()
    bccd, cells = {}, {}
    labels = [",Image,Category"]
    expected_splits, expected_boxes = [], {}
    for index, smear in enumerate(smears):
        name = f"BloodImage_{index:05d}"
        with Image.open(smear.path) as image:
            original = image.convert("RGB").resize((640, 480), Image.Resampling.BICUBIC)
        bccd[f"{BCCD_PREFIX}JPEGImages/{name}.jpg"] = _jpeg(original)
        bccd[f"{BCCD_PREFIX}Annotations/{name}.xml"] = _annotation(name, smear.wbc_boxes[0])
        labels.append(f",{index},{smear.label}")
        frame = _jpeg(original.resize((320, 240), Image.Resampling.BOX))
        if index < 4:
            image_path = f"images/TEST_SIMPLE/{smear.label}/_0_{index}.jpeg"
            cells[f"{CELLS_PREFIX}{image_path}"] = frame
            cells[f"{CELLS_PREFIX}images/TEST/{smear.label}/_0_{index}.jpeg"] = frame
            expected_boxes[image_path] = {
                "original": f"originals/{name}.jpg",
                "annotation": f"annotations/{name}.xml",
                "wbc_boxes_xyxy": [smear.wbc_boxes[0]],
            }
        cells[f"{CELLS_PREFIX}images/TRAIN/{smear.label}/_1_{index}.jpeg"] = frame
        expected_splits.append([f"{name}.jpg", smear.label, "test" if index < 4 else "train"])
    with Image.open(smears[0].path) as image:
        mixed = image.convert("RGB").transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    bccd[f"{BCCD_PREFIX}JPEGImages/BloodImage_00008.jpg"] = _jpeg(mixed.resize((640, 480)))
    labels += [',8,"NEUTROPHIL, EOSINOPHIL"', ",9,"]
    cells[f"{CELLS_PREFIX}labels.csv"] = ("\n".join(labels) + "\n").encode()
    bccd["BCCD_Dataset-1.0/README.md"] = b"not part of the data set layout"

    with zipfile.ZipFile(root / "bccd.zip", "w") as bundle:
        for name, payload in bccd.items():
            bundle.writestr(name, payload)
    with tarfile.open(root / "cells.tar.gz", "w:gz") as bundle:
        for name, payload in cells.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            bundle.addfile(info, io.BytesIO(payload))
    return root, sorted(expected_splits), expected_boxes


def _sources(tmp_path: Path, server: FileServer, root: Path, **changes) -> Path:
    """A sources file naming the served archives with their true size and SHA-256, unless
    `changes` (per source name) says otherwise."""
    entries = []
    for name, archive, extract in (
        (
            "bccd",
            "bccd.zip",
            {
                f"{BCCD_PREFIX}JPEGImages/": "originals/",
                f"{BCCD_PREFIX}Annotations/": "annotations/",
            },
        ),
        (
            "blood-cells",
            "cells.tar.gz",
            {f"{CELLS_PREFIX}images/": "images/", f"{CELLS_PREFIX}labels.csv": "labels.csv"},
        ),
    ):
        entry = {
            "name": name,
            "url": server.url(archive),
            "size": (root / archive).stat().st_size,
            "sha256": sha256_of(root / archive),
            "extract": extract,
        }
        entries.append(entry | changes.get(name, {}))
    path = tmp_path / "sources.json"
    path.write_text(json.dumps({"sources": entries}))
    return path


def _fetch(data_dir: Path, sources: Path, *extra: str) -> int:
    return main(["fetch-data", "--data-dir", str(data_dir), "--sources", str(sources), *extra])


def test_fetch_writes_the_layout_training_reads(published, tmp_path, capsys):
    root, expected_splits, expected_boxes = published
    data_dir = tmp_path / "data"
    with FileServer(root) as server:
        assert _fetch(data_dir, _sources(tmp_path, server, root)) == 0
    out, err = capsys.readouterr()
    assert sorted(p.name for p in (data_dir / "originals").iterdir()) == [
        f"BloodImage_{i:05d}.jpg" for i in range(9)
    ]
    assert len(list((data_dir / "annotations").glob("*.xml"))) == 8
    for split, count in (("TRAIN", 8), ("TEST", 4), ("TEST_SIMPLE", 4)):
        folders = sorted(p.name for p in (data_dir / "images" / split).iterdir())
        assert folders == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
        assert len(list((data_dir / "images" / split).glob("*/*.jpeg"))) == count
    assert (data_dir / "labels.csv").read_text().startswith(",Image,Category")
    assert not (data_dir / "README.md").exists()
    with open(data_dir / "splits.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["original", "category", "split"]
    assert sorted(rows[1:]) == expected_splits
    boxes = json.loads((data_dir / "test_simple_wbc_boxes.json").read_text())
    assert boxes["image_size_wh"] == [320, 240] and boxes["images"] == expected_boxes
    # tqdm's progress bars, in ASCII and a redraw per tenth off a terminal.
    assert "bccd: 100%|##########|" in err and "blood-cells: 100%|##########|" in err
    assert err.count("bccd:") <= 12
    assert "derived splits.csv (8 originals, 4 test)" in out and "not derived" not in out
    # The data set now reads like the real one.
    from training.pipeline.data import list_originals, list_split

    classes = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    paths, labels = list_originals(data_dir, classes, "train")
    assert len(paths) == 4 and sorted(labels.tolist()) == [0, 1, 2, 3]
    assert len(list_split(data_dir / "images" / "TEST_SIMPLE", classes)[0]) == 4


def test_an_interrupted_download_resumes_where_it_stopped(published, tmp_path, capsys):
    root, _, _ = published
    data_dir = tmp_path / "data"
    size = (root / "bccd.zip").stat().st_size
    with FileServer(root) as server:
        sources = _sources(tmp_path, server, root)
        server.break_after = size // 3
        assert _fetch(data_dir, sources) == 2
        err = capsys.readouterr().err
        assert "run fetch-data again to resume" in err and "Traceback" not in err
        part = data_dir / ".downloads" / "bccd.zip.part"
        assert part.stat().st_size == size // 3
        assert not (data_dir / "originals").exists()

        assert _fetch(data_dir, sources) == 0
    first, resumed = server.requests[0], server.requests[1]
    assert (first.range, first.sent) == (None, size // 3)
    assert resumed.range == f"bytes={size // 3}-" and resumed.status == 206
    assert resumed.sent == size - size // 3
    assert sha256_of(data_dir / ".downloads" / "bccd.zip") == sha256_of(root / "bccd.zip")
    assert len(list((data_dir / "originals").glob("*.jpg"))) == 9


def test_a_whole_part_file_is_checked_not_downloaded_again(published, tmp_path):
    """A .part that already holds every byte (a run stopped before renaming it): the server
    answers the Range request with 416, and the part is verified and used as it is."""
    root, _, _ = published
    data_dir = tmp_path / "data"
    (data_dir / ".downloads").mkdir(parents=True)
    (data_dir / ".downloads" / "bccd.zip.part").write_bytes((root / "bccd.zip").read_bytes())
    with FileServer(root) as server:
        assert _fetch(data_dir, _sources(tmp_path, server, root)) == 0
    size = (root / "bccd.zip").stat().st_size
    assert (server.requests[0].range, server.requests[0].status) == (f"bytes={size}-", 416)
    assert len(list((data_dir / "originals").glob("*.jpg"))) == 9


def test_a_checksum_mismatch_is_refused_and_nothing_is_written(published, tmp_path, capsys):
    root, _, _ = published
    data_dir = tmp_path / "data"
    with FileServer(root) as server:
        sources = _sources(tmp_path, server, root, bccd={"sha256": "0" * 64})
        assert _fetch(data_dir, sources) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "SHA-256" in err and "0" * 64 in err
    assert not (data_dir / "originals").exists()
    assert not list((data_dir / ".downloads").iterdir())  # the bad download is gone


def test_a_size_mismatch_is_refused(published, tmp_path, capsys):
    root, _, _ = published
    with FileServer(root) as server:
        size = (root / "cells.tar.gz").stat().st_size
        sources = _sources(tmp_path, server, root, **{"blood-cells": {"size": size - 1}})
        assert _fetch(tmp_path / "data", sources) == 2
    assert f"{size} bytes where {size - 1} are pinned" in capsys.readouterr().err


def test_an_unreachable_host_gives_a_clear_message_and_no_traceback(published, tmp_path):
    root, _, _ = published
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sources = tmp_path / "sources.json"
    sources.write_text(
        json.dumps(
            {
                "sources": [
                    {
                        "name": "bccd",
                        "url": f"http://127.0.0.1:{port}/bccd.zip",
                        "size": 10,
                        "sha256": "0" * 64,
                        "extract": {"x/": "originals/"},
                    }
                ]
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "fetch-data",
            "--data-dir",
            str(tmp_path / "data"),
            "--sources",
            str(sources),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"error: cannot reach 127.0.0.1:{port}" in result.stderr
    assert "needs internet access" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unpinned_sources_are_refused_unless_allowed(published, tmp_path, capsys):
    root, _, _ = published
    data_dir = tmp_path / "data"
    with FileServer(root) as server:
        sources = _sources(tmp_path, server, root, bccd={"size": None, "sha256": None})
        assert _fetch(data_dir, sources) == 2
        assert "no size and SHA-256 pinned for bccd" in capsys.readouterr().err
        assert not server.requests  # refused before downloading anything
        assert _fetch(data_dir, sources, "--allow-unpinned") == 0
    err = capsys.readouterr().err
    assert f"SHA-256 {sha256_of(root / 'bccd.zip')}" in err  # the value to pin


def test_the_shipped_sources_and_unsafe_archive_paths():
    sources = {s.name: s for s in load_sources(DEFAULT_SOURCES)}
    assert set(sources) == {"bccd", "blood-cells"}
    assert sources["bccd"].pinned and sources["bccd"].url.startswith("https://github.com/")
    assert sources["blood-cells"].url.startswith("https://github.com/")
    for name in ("../evil.jpg", "/etc/passwd", "a/../../b"):
        with pytest.raises(FetchError, match="unsafe path"):
            _target(name, {"a/": "originals/"}, Path("/tmp/data"))


def test_derived_splits_match_the_real_data_set(data_dir, tmp_path):
    """On the full data set, the derivation gives back its own splits.csv and WBC boxes."""
    from training.dataprep.derive_splits import derive

    derived = derive(data_dir, tmp_path)
    assert derived.missing == []
    assert (tmp_path / "splits.csv").read_text() == (data_dir / "splits.csv").read_text()
    assert (
        json.loads((tmp_path / "test_simple_wbc_boxes.json").read_text())["images"]
        == json.loads((data_dir / "test_simple_wbc_boxes.json").read_text())["images"]
    )
