"""Capture the service's JSON log lines as they are written."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path


class JsonLines(logging.Handler):
    """Keeps each line, raw and parsed (a line that is not JSON fails the test)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(record.getMessage())
        self.lines.append(json.loads(record.getMessage()))

    def events(self, name: str) -> list[dict]:
        return [line for line in self.lines if line["event"] == name]


def read_json_lines(log_file: Path) -> list[dict]:
    """The JSON lines of a server's log file (uvicorn's own plain lines left out)."""
    return [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]


def wait_for_line(log_file: Path, matches: Callable[[dict], bool], timeout: float = 60.0) -> dict:
    """Wait until the server writes a JSON line that `matches`; return it. The server's log
    is the event: the wait ends when the line is there, and `timeout` only bounds a failing
    run (each line is flushed as it is logged)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in read_json_lines(log_file) if matches(line)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching line in {log_file} after {timeout} s")
        time.sleep(0.05)
