"""What every benchmark ends with: its result written as indented JSON where --out says."""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    """Write a benchmark's result as indented JSON to path (creating its folder), say so, and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return out


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """The machine a run-time benchmark ran on: platform, Python, CPUs, load averages at its start and now."""
    load = {"before": list(load_before), "after": list(os.getloadavg()), "cpus": os.cpu_count()}
    return {"platform": platform.platform(), "python": platform.python_version(), "load_average_1_5_15min": load}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """A benchmark's command-line settings as JSON values (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
