"""`python -m training fetch-data`: download the public data set into the layout training reads.

Each source (training/dataprep/data_sources.json, or --sources FILE in JSON or TOML) is one archive
with a pinned size and SHA-256. A download goes to `<cache>/<name>.<ext>.part`, resumes with
an HTTP Range request after an interruption, is checked against the pinned size and SHA-256,
and only then is renamed and unpacked: folders of the archive map onto folders of the data set
(`originals/`, `annotations/`, `images/`, `labels.csv`). Finally `splits.csv` and
`test_simple_wbc_boxes.json` are derived where their inputs are there
(training/dataprep/derive_splits.py).

Standard library for the network (urllib); tqdm draws the progress bars.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import json
import shutil
import sys
import tarfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, TextIO

from tqdm import tqdm

from training.dataprep.derive_splits import Derived, derive

DEFAULT_SOURCES = Path(__file__).resolve().parent / "data_sources.json"
SOURCES_FILE_HINT = "the sources file (training/dataprep/data_sources.json unless --sources)"
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
            sources.append(
                Source(
                    name=entry["name"],
                    url=entry["url"],
                    size=entry.get("size"),
                    sha256=(entry.get("sha256") or None) and entry["sha256"].lower(),
                    extract=dict(entry["extract"]),
                    description=entry.get("description", ""),
                    homepage=entry.get("homepage", ""),
                )
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise FetchError(
                f"{path}: a source lacks or mistypes {error}; each needs name, "
                "url, size, sha256 and extract"
            ) from None
    if not sources:
        raise FetchError(f"{path} lists no sources")
    return sources


# -- download ------------------------------------------------------------------------------


def _progress(label: str, total: int | None, done: int, stream: TextIO) -> tqdm:
    """A progress bar on `stream` (stderr), from `done` bytes of `total`: redrawn 10 times a
    second on a terminal; elsewhere (logs, CI) in ASCII, once per tenth of `total` (every 10
    seconds when the size is unknown)."""
    interactive = stream.isatty()
    return tqdm(
        total=total,
        initial=done,
        desc=label,
        unit="B",
        unit_scale=True,
        file=stream,
        ascii=not interactive,
        dynamic_ncols=interactive,
        mininterval=0.1 if interactive else 0.0 if total else 10.0,
        miniters=None if interactive or not total else max(1, total // 10),
    )


def _unreachable(url: str, reason: object) -> FetchError:
    host = urllib.parse.urlparse(url).netloc
    return FetchError(
        f"cannot reach {host} to download {url} ({reason}). fetch-data needs internet access "
        "to the sources' hosts: check the connection or proxy (HTTPS_PROXY), or point "
        "--sources at a file naming a mirror you can reach. Whatever was downloaded is kept "
        "and the next run resumes it."
    )


def _open(url: str, offset: int) -> tuple[BinaryIO | None, int, int | None]:
    """(response, status, total size if known) for `url` from byte `offset` on; no response
    where nothing is left after `offset` (HTTP 416: the part is whole)."""
    request = urllib.request.Request(url, headers={"User-Agent": "wbc-explain-fetch-data"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left after offset: the part is whole
            error.close()
            return None, 416, offset
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
    if response is not None:
        if offset and status != 206:  # the server ignored the Range: start over
            offset = done = 0
        expected = source.size or total
        try:
            with (
                response,
                open(part, "ab" if offset else "wb") as output,
                _progress(source.name, expected, done, stream) as progress,
            ):
                while chunk := response.read(CHUNK):
                    output.write(chunk)
                    done += len(chunk)
                    progress.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:
            raise FetchError(
                f"{source.name}: the connection to {source.url} broke after "
                f"{done} bytes ({error!r}); run fetch-data again to resume "
                "it"
            ) from None
        if expected is not None and done < expected:
            raise FetchError(
                f"{source.name}: the download stopped at {done} of {expected} "
                "bytes; run fetch-data again to resume it"
            )
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
        size, digest = path.stat().st_size, sha256_of(path)
        print(
            f"warning: {source.name} is not pinned: {size} bytes, SHA-256 {digest}. To pin "
            f'it, set "size": {size} and "sha256": "{digest}" on {source.name} in '
            f"{SOURCES_FILE_HINT} (check them against a trusted copy if you can); later runs "
            "then verify it",
            file=stream,
        )


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
        raise FetchError(
            f"{source.name}: refusing {source.url}: {problem}. The download "
            "was deleted and nothing was written to the data folder. A mismatch "
            "means the archive is not the one pinned: if it changed upstream and "
            "you trust the new one, re-pin it (set its size and sha256 to null "
            f"in {SOURCES_FILE_HINT}, run with --allow-unpinned, which prints "
            "the new values, and pin those)"
        )


# -- unpack --------------------------------------------------------------------------------


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """(path inside the archive, opener) of each regular file of a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                if not info.is_dir():
                    yield info.filename, functools.partial(bundle.open, info)
        return
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile():
                    yield member.name, functools.partial(_extract, tar, member)
    except tarfile.TarError as error:
        raise FetchError(f"{archive} is neither a zip nor a tar archive: {error}") from None


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    extracted = tar.extractfile(member)
    assert extracted is not None  # None only for what is not a regular file
    return extracted


def _target(name: str, extract: dict[str, str], data_dir: Path) -> Path | None:
    """Where archive member `name` goes in `data_dir`, or None when no rule takes it."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise FetchError(f"the archive holds an unsafe path {name!r}; refusing it")
    for prefix, destination in extract.items():
        if prefix.endswith("/") and name.startswith(prefix) and len(name) > len(prefix):
            return data_dir / destination / name[len(prefix) :]
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
        raise FetchError(
            f"{source.name}: none of {sorted(source.extract)} is in {archive}; "
            "the archive's layout differs from the sources file's `extract`"
        )
    return written


# -- command -------------------------------------------------------------------------------


def fetch_data(
    data_dir: Path,
    sources: list[Source],
    cache_dir: Path,
    allow_unpinned: bool = False,
    stream: TextIO | None = None,
) -> Derived:
    """Download, verify and unpack every source into `data_dir`, then derive what can be."""
    stream = stream or sys.stderr
    unpinned = [s.name for s in sources if not s.pinned]
    if unpinned and not allow_unpinned:
        pinned = [s.name for s in sources if s.pinned]
        raise FetchError(
            f"no size and SHA-256 pinned for {', '.join(unpinned)}, so fetch-data will not "
            "write unverified files"
            + (f" (pinned and checked: {', '.join(pinned)})" if pinned else "")
            + ". To fetch anyway, run again with --allow-unpinned: it downloads and writes "
            "every source and prints each unpinned archive's size and SHA-256. To pin, put "
            f'those as "size" and "sha256" on the source in {SOURCES_FILE_HINT}; later runs '
            "then verify them, and a mismatch means the archive changed: re-pin it"
        )
    for source in sources:
        print(f"{source.name}: {source.url}", file=stream)
        archive = download(source, cache_dir, stream)
        count = unpack(archive, source, data_dir)
        print(f"{source.name}: {count} files written under {data_dir}", file=stream)
    return derive(data_dir)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fetch-data",
        help="download the public data set into the layout training reads",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from training.pipeline.config import DEFAULT_DATA_DIR

    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="data folder to write"
    )
    parser.add_argument(
        "--sources",
        type=Path,
        default=DEFAULT_SOURCES,
        help="JSON or TOML file listing the archives (url, size, sha256, extract)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where archives are downloaded and resumed (default: <data-dir>/.downloads)",
    )
    parser.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="also fetch sources without a pinned size and SHA-256",
    )


def run(args: argparse.Namespace) -> int:
    try:
        derived = fetch_data(
            args.data_dir,
            load_sources(args.sources),
            args.cache_dir or args.data_dir / ".downloads",
            args.allow_unpinned,
        )
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
