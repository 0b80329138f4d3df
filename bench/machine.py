"""What the numbers were measured on, recorded beside them."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def machine_info() -> dict:
    """The machine, without importing TensorFlow (a benchmark process that did would share
    its libraries' pages with the server under test, and keep them resident)."""
    return {
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": _gpus(),
        "python": platform.python_version(),
        "tensorflow": _tensorflow_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # Anything else busy on the machine (a training run) shows up here.
        "load_average_1m_at_start": os.getloadavg()[0],
    }


def _tensorflow_version() -> str | None:
    """The installed TensorFlow's version (the CPU build on a machine without a GPU)."""
    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return None


def _gpus() -> list[str]:
    """NVIDIA GPUs the driver lists (/proc/driver/nvidia/gpus), by model name."""
    found = []
    for information in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in information.read_text().splitlines():
            if line.startswith("Model:"):
                found.append(line.split(":", 1)[1].strip())
    return found


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
