"""Describe the device a profile was measured on."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Sequence

import onnxruntime as ort


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(providers: Sequence[str], threads: int | None, batch: int) -> dict[str, Any]:
    """CPU model, cores, architecture, onnxruntime version and provider, threads and batch size."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": list(providers),
        "threads": threads,
        "batch": batch,
    }
