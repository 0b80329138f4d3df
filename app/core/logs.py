"""Structured logs: one JSON object per line on stdout, for each request and each model
event (load, reload, device failure). Never image bytes: only what is passed here."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LOGGER_NAME = "app.events"


def events_logger() -> logging.Logger:
    """The JSON-lines logger, given a stdout handler of its own unless one is configured
    (uvicorn configures only its own loggers, so INFO lines would otherwise vanish)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the line is already complete; no second, prefixed copy
    return logger


def log_event(event: str, level: int = logging.INFO, **fields: object) -> None:
    """Write {"time", "level", "event", **fields} as one JSON line."""
    record = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": logging.getLevelName(level).lower(),
        "event": event,
        **fields,
    }
    events_logger().log(level, json.dumps(record, default=str))
