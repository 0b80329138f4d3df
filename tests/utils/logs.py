"""Capture the service's JSON log lines as they are written."""

from __future__ import annotations

import json
import logging


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
