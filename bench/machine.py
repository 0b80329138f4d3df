"""What the numbers were measured on, recorded beside them."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import tensorflow as tf


def machine_info() -> dict:
    return {
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": [gpu.name for gpu in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # Anything else busy on the machine (a training run) shows up here.
        "load_average_1m_at_start": os.getloadavg()[0],
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
