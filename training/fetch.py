"""`python -m training fetch-data`: download the public data set into the layout training reads.

Each source (training/data_sources.json, or --sources FILE in JSON or TOML) is one archive
with a pinned size and SHA-256. A download goes to `<cache>/<name>.<ext>.part`, resumes with
an HTTP Range request after an interruption, is checked against the pinned size and SHA-256,
and only then is renamed and unpacked: folders of the archive map onto folders of the data set
(`originals/`, `annotations/`, `images/`, `labels.csv`). Finally `splits.csv` and
`test_simple_wbc_boxes.json` are derived where their inputs are there (see `derive`).

Standard library only for the network (urllib), so no new dependency; numpy and Pillow (already
dependencies) are imported only to derive the splits.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import http.client
import json
import math
import shutil
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TextIO

DEFAULT_SOURCES = Path(__file__).resolve().parent / "data_sources.json"
CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")
CHUNK = 1 << 16
TIMEOUT_S = 30.0


class FetchError(Exception):
    """A download or unpacking that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    size: int | None
    sha256: str | None
    extract: dict[str, str]
    """Archive path prefix (a folder ending in "/", or one file) -> path in the data folder."""
    description: str = ""
    homepage: str = ""

    @property
    def pinned(self) -> bool:
        return self.size is not None and self.sha256 is not None

    @property
    def archive_name(self) -> str:
        suffix = ".tar.gz" if self.url.endswith((".tar.gz", ".tgz")) else ".zip"
        return f"{self.name}{suffix}"


def load_sources(path: Path = DEFAULT_SOURCES) -> list[Source]:
    """Sources from a JSON or TOML file holding a `sources` list."""
    try:
        text = Path(path).read_text()
        document = tomllib.loads(text) if Path(path).suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as error:
        raise FetchError(f"cannot read the sources file {path}: {error}") from None
    sources = []
    for entry in document.get("sources", []):
        try:
            sources.append(Source(
                name=entry["name"], url=entry["url"], size=entry.get("size"),
                sha256=(entry.get("sha256") or None) and entry["sha256"].lower(),
                extract=dict(entry["extract"]), description=entry.get("description", ""),
                homepage=entry.get("homepage", ""),
            ))
        except (KeyError, TypeError, AttributeError) as error:
            raise FetchError(f"{path}: a source lacks or mistypes {error}; each needs name, "
                             "url, size, sha256 and extract") from None
    if not sources:
        raise FetchError(f"{path} lists no sources")
    return sources


# -- download ------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a text stream (stderr): redrawn in place on a terminal, a
    line per tenth otherwise (logs, CI)."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_tenth = -1

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.total:
            tenth = min(10, done * 10 // self.total)
            if not final and not self.interactive and tenth == self._last_tenth:
                return
            self._last_tenth = tenth
        if not final and self.interactive and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        speed = done / max(now - self.started, 1e-6) / 1e6
        if self.total:
            filled = min(30, done * 30 // self.total)
            line = (f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                    f"{100 * done / self.total:5.1f}% {done / 1e6:.1f}/{self.total / 1e6:.1f} MB "
                    f"{speed:.1f} MB/s")
        else:
            line = f"{self.label} {done / 1e6:.1f} MB {speed:.1f} MB/s"
        end = "\n" if final or not self.interactive else ""
        self.stream.write(("\r" if self.interactive else "") + line + end)
        self.stream.flush()


def _unreachable(url: str, reason: object) -> FetchError:
    host = urllib.request.urlparse(url).netloc
    return FetchError(
        f"cannot reach {host} to download {url} ({reason}). fetch-data needs internet access "
        "to the sources' hosts: check the connection or proxy (HTTPS_PROXY), or point "
        "--sources at a file naming a mirror you can reach. Whatever was downloaded is kept "
        "and the next run resumes it."
    )


def _open(url: str, offset: int) -> tuple[BinaryIO, int, int | None]:
    """(response, status, total size if known) for `url` from byte `offset` on."""
    request = urllib.request.Request(url, headers={"User-Agent": "wbc-explain-fetch-data"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left after offset: the part is whole
            return error, 416, offset
        raise FetchError(f"{url} answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise _unreachable(url, getattr(error, "reason", error)) from None
    status = response.status
    total: int | None = None
    if status == 206:
        content_range = response.headers.get("Content-Range", "")
        total_text = content_range.rpartition("/")[2]
        total = int(total_text) if total_text.isdigit() else None
    elif response.headers.get("Content-Length", "").isdigit():
        total = int(response.headers["Content-Length"])
    return response, status, total


def download(source: Source, cache_dir: Path, stream: TextIO | None = None) -> Path:
    """The archive of `source` in `cache_dir`, downloaded or resumed as needed, and checked
    against its pinned size and SHA-256 (an unpinned source's are printed, to pin)."""
    stream = stream or sys.stderr
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / source.archive_name
    if final.is_file() and (not source.pinned or _matches(final, source)):
        _report_unpinned(final, source, stream)
        return final
    part = final.with_name(final.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if source.size is not None and offset > source.size:
        part.unlink()  # longer than the pinned size: not a prefix of the right file
        offset = 0
    response, status, total = _open(source.url, offset)
    done = offset
    if status != 416:
        if offset and status != 206:  # the server ignored the Range: start over
            offset = done = 0
        expected = source.size or total
        progress = Progress(source.name, expected, stream)
        try:
            with response, open(part, "ab" if offset else "wb") as output:
                while chunk := response.read(CHUNK):
                    output.write(chunk)
                    done += len(chunk)
                    progress.update(done)
        except (OSError, http.client.HTTPException) as error:
            raise _unreachable(source.url, f"the connection broke after {done} bytes: "
                               f"{error!r}") from None
        progress.update(done, final=True)
        if expected is not None and done < expected:
            raise FetchError(f"{source.name}: the download stopped at {done} of {expected} "
                             "bytes; run fetch-data again to resume it")
    if source.pinned:
        _verify(part, source)
    part.replace(final)
    _report_unpinned(final, source, stream)
    return final


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, source: Source) -> bool:
    return path.stat().st_size == source.size and sha256_of(path) == source.sha256


def _report_unpinned(path: Path, source: Source, stream: TextIO) -> None:
    if not source.pinned:
        print(f"warning: {source.name} is not pinned: it is {path.stat().st_size} bytes with "
              f"SHA-256 {sha256_of(path)}; check them against a trusted copy and pin them as "
              "`size` and `sha256` in the sources file", file=stream)


def _verify(path: Path, source: Source) -> None:
    """Size, then SHA-256, against the pinned values. A file that fails is deleted, so the
    next run starts afresh instead of resuming a wrong file."""
    size = path.stat().st_size
    problem = None
    if size != source.size:
        problem = f"{size} bytes where {source.size} are pinned"
    elif (digest := sha256_of(path)) != source.sha256:
        problem = f"SHA-256 {digest} where {source.sha256} is pinned"
    if problem:
        path.unlink()
        raise FetchError(f"{source.name}: refusing {source.url}: {problem}. The download "
                         "was deleted and nothing was written to the data folder; if the "
                         "source changed on purpose, pin its new size and SHA-256")


# -- unpack --------------------------------------------------------------------------------


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], BinaryIO]]]:
    """(path inside the archive, opener) of each regular file of a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: bundle.open(info)
        return
    try:
        with tarfile.open(archive) as bundle:
            for member in bundle:
                if member.isfile():
                    yield member.name, lambda m=member: bundle.extractfile(m)
    except tarfile.TarError as error:
        raise FetchError(f"{archive} is neither a zip nor a tar archive: {error}") from None


def _target(name: str, extract: dict[str, str], data_dir: Path) -> Path | None:
    """Where archive member `name` goes in `data_dir`, or None when no rule takes it."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise FetchError(f"the archive holds an unsafe path {name!r}; refusing it")
    for prefix, destination in extract.items():
        if prefix.endswith("/") and name.startswith(prefix) and len(name) > len(prefix):
            return data_dir / destination / name[len(prefix):]
        if name == prefix:
            return data_dir / destination
    return None


def unpack(archive: Path, source: Source, data_dir: Path) -> int:
    """Write the archive's mapped files into `data_dir`; the number written. Each file is
    written beside its place and renamed, so an interrupted unpack leaves no half file."""
    written = 0
    for name, opener in _members(archive):
        target = _target(name, source.extract, data_dir)
        if target is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        with opener() as member, open(partial, "wb") as output:
            shutil.copyfileobj(member, output)
        partial.replace(target)
        written += 1
    if not written:
        raise FetchError(f"{source.name}: none of {sorted(source.extract)} is in {archive}; "
                         "the archive's layout differs from the sources file's `extract`")
    return written


# -- derive --------------------------------------------------------------------------------


@dataclass
class Derived:
    written: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """What could not be derived, and why."""


def single_type_labels(labels_csv: Path) -> dict[str, str]:
    """{"BloodImage_00000.jpg": "NEUTROPHIL", ...} for originals labelled with one of the four
    classes (not BASOPHIL, not mixed such as "NEUTROPHIL, EOSINOPHIL", not blank)."""
    labels = {}
    with open(labels_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            category = (row.get("Category") or "").strip()
            if category in CLASSES and row.get("Image", "").strip().isdigit():
                labels[f"BloodImage_{int(row['Image']):05d}.jpg"] = category
    return labels


def _thumbnail(path: Path):
    """A 64x48 grey thumbnail, centred and scaled to unit norm: its dot product with another
    is their correlation, blind to brightness and stain strength."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        small = np.asarray(image.convert("L").resize((64, 48), Image.Resampling.BOX),
                           np.float32).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


def match_test_simple(data_dir: Path, originals: list[Path]) -> dict[Path, Path]:
    """{TEST_SIMPLE image: the original it was resized from}, by pixels: the original whose
    thumbnail correlates best, kept when the correlation is at least 0.95 (on the real data
    set the right original scores 0.999 or more, the runner-up 0.62 at most)."""
    import numpy as np

    if not originals:
        return {}
    thumbs = np.stack([_thumbnail(p) for p in originals])
    matches = {}
    for image in sorted((data_dir / "images" / "TEST_SIMPLE").glob("*/*.jpeg")):
        correlations = thumbs @ _thumbnail(image)
        best = int(np.argmax(correlations))
        if correlations[best] >= 0.95:
            matches[image] = originals[best]
    return matches


def wbc_boxes(annotation: Path, scale: float) -> list[list[int]]:
    import xml.etree.ElementTree as ElementTree

    boxes = []
    for item in ElementTree.parse(annotation).getroot().iter("object"):
        if (item.findtext("name") or "").strip() == "WBC":
            box = item.find("bndbox")
            assert box is not None
            boxes.append([math.floor(float(box.findtext(k) or 0) * scale)
                          for k in ("xmin", "ymin", "xmax", "ymax")])
    return boxes


def derive(data_dir: Path, out_dir: Path | None = None) -> Derived:
    """splits.csv (every single-type labelled original: `test` when a TEST_SIMPLE image was
    resized from it, else `train`) and test_simple_wbc_boxes.json (each TEST_SIMPLE image's
    original and WBC boxes, halved to its 320x240 frame), as far as the inputs allow; written
    to `out_dir` (default: the data folder)."""
    out_dir = out_dir or data_dir
    result = Derived()
    labels_csv, originals_dir = data_dir / "labels.csv", data_dir / "originals"
    test_simple = data_dir / "images" / "TEST_SIMPLE"
    needs = [p for p in (labels_csv, originals_dir, test_simple) if not p.exists()]
    if needs:
        result.missing.append("splits.csv and test_simple_wbc_boxes.json: no "
                              + ", ".join(str(p.relative_to(data_dir)) for p in needs))
        return result
    labels = single_type_labels(labels_csv)
    originals = sorted(p for p in originals_dir.glob("BloodImage_*.jpg") if p.name in labels)
    matches = match_test_simple(data_dir, originals)
    unmatched = len(list(test_simple.glob("*/*.jpeg"))) - len(matches)
    if unmatched:
        result.missing.append(f"{unmatched} TEST_SIMPLE images matched no original clearly; "
                              "their originals count as train in splits.csv")
    test_originals = {original.name for original in matches.values()}
    with open(out_dir / "splits.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["original", "category", "split"])
        for original in originals:
            split = "test" if original.name in test_originals else "train"
            writer.writerow([original.name, labels[original.name], split])
    result.written.append(f"splits.csv ({len(originals)} originals, "
                          f"{len(test_originals)} test)")
    boxes = {}
    for image, original in matches.items():
        annotation = data_dir / "annotations" / f"{original.stem}.xml"
        if annotation.is_file():
            boxes[str(image.relative_to(data_dir))] = {
                "original": f"originals/{original.name}",
                "annotation": f"annotations/{annotation.name}",
                "wbc_boxes_xyxy": wbc_boxes(annotation, 0.5),
            }
    if len(boxes) < len(matches):
        result.missing.append(f"{len(matches) - len(boxes)} matched TEST_SIMPLE images have "
                              "no annotation, so no WBC box")
    (out_dir / "test_simple_wbc_boxes.json").write_text(json.dumps({
        "image_size_wh": [320, 240],
        "box_format": "xmin,ymin,xmax,ymax in pixels of the 320x240 image",
        "images": dict(sorted(boxes.items())),
    }, indent=1) + "\n")
    result.written.append(f"test_simple_wbc_boxes.json ({len(boxes)} images)")
    return result


# -- command -------------------------------------------------------------------------------


def fetch_data(data_dir: Path, sources: list[Source], cache_dir: Path,
               allow_unpinned: bool = False, stream: TextIO | None = None) -> Derived:
    """Download, verify and unpack every source into `data_dir`, then derive what can be."""
    stream = stream or sys.stderr
    unpinned = [s.name for s in sources if not s.pinned]
    if unpinned and not allow_unpinned:
        raise FetchError(
            f"no size and SHA-256 pinned for {', '.join(unpinned)}: fetch-data will not "
            "write unverified files. Pin them in the sources file, or pass --allow-unpinned "
            "to download anyway (the measured values are printed, to pin)")
    for source in sources:
        print(f"{source.name}: {source.url}", file=stream)
        archive = download(source, cache_dir, stream)
        count = unpack(archive, source, data_dir)
        print(f"{source.name}: {count} files written under {data_dir}", file=stream)
    return derive(data_dir)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fetch-data", help="download the public data set into the layout training reads",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from training.config import DEFAULT_DATA_DIR

    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="data folder to write")
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES,
                        help="JSON or TOML file listing the archives (url, size, sha256, "
                        "extract)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where archives are downloaded and resumed (default: "
                        "<data-dir>/.downloads)")
    parser.add_argument("--allow-unpinned", action="store_true",
                        help="also fetch sources without a pinned size and SHA-256")


def run(args: argparse.Namespace) -> int:
    try:
        derived = fetch_data(args.data_dir, load_sources(args.sources),
                             args.cache_dir or args.data_dir / ".downloads", args.allow_unpinned)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run fetch-data again to resume the download", file=sys.stderr)
        return 130
    for line in derived.written:
        print(f"derived {line}")
    for line in derived.missing:
        print(f"not derived: {line}")
    print(f"data set ready at {args.data_dir}")
    return 0
