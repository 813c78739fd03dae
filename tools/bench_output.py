"""What every benchmark ends with: its result written as indented JSON where --out says."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    """Write a benchmark's result as indented JSON to path (creating its folder), say so, and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return out
