"""Keep TensorFlow's start-up noise off a command's stderr.

TF_CPP_MIN_LOG_LEVEL quiets TensorFlow's C++ log, but since TensorFlow logs through absl,
what it logs while its libraries load, before `absl::InitializeLog()` (the absl preamble,
oneDNN's notice), reaches stderr at every level. So the first import runs with stderr
captured at the file descriptor, and what it printed is passed on without the lines the level
would have dropped: errors, Python warnings and tracebacks still show."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "2"  # drop INFO and WARNING lines, keep errors
# absl's line prefix: severity, MMDD, time, thread id, file:line.
_LOG_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} [\d:.]+\s+\d+ [^\]]+\] ")
_SEVERITIES = "IWEF"
_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
# The second line of cpu_feature_guard's INFO message.
_CONTINUATION = "To enable the following instructions:"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow with its C++ log at the user's TF_CPP_MIN_LOG_LEVEL, or at errors
    only where none is set, and the Python loggers of TensorFlow and absl (Keras warns through
    it) at errors only. With `verbose`, TensorFlow logs as it would by itself."""
    if verbose or "tensorflow" in sys.modules:
        return
    level = os.environ.setdefault(LEVEL_VARIABLE, QUIET_LEVEL)
    dropped = _SEVERITIES[: int(level)] if level.isdigit() else ""
    if not dropped:
        return
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with _stderr_without(dropped):
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _stderr_without(severities: str) -> Iterator[None]:
    """Capture file descriptor 2, then write what came through without log lines of
    `severities` (and the absl preamble)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            sys.stderr.write("".join(_kept(text, severities)))
            sys.stderr.flush()


def _kept(text: str, severities: str) -> Iterator[str]:
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match and match["severity"] in severities:
            continue
        if line.startswith(_PREAMBLE) or (line.startswith(_CONTINUATION) and "I" in severities):
            continue
        yield line
