"""Reading edgepsl's versioned JSON files: parse, reject non-finite numbers, check format name and version."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgepsl.errors import EdgePSLError


def parse_json(text: str, where: str, what: str, error: type[EdgePSLError]) -> Any:
    """Parse JSON text from `where`, raising `error` for malformed text or a non-finite number."""
    def reject(constant: str) -> float:
        """Refuse NaN and Infinity, which JSON allows only as an extension."""
        raise error(f"{what} {where} contains the non-finite number {constant}; numbers must be finite")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {where} is not valid JSON (truncated?): {exc}") from None


def read_json(path: str | Path, what: str, error: type[EdgePSLError]) -> Any:
    """Read and parse a JSON file, raising `error` with the path and reason if it cannot be read or parsed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror}") from None
    return parse_json(text, str(path), what, error)


def check_header(data: Any, what: str, format_name: str, version: int | tuple[int, ...],
                 error: type[EdgePSLError]) -> dict:
    """Check that `data` is an object with the expected format name and a version it reads; return it."""
    versions = version if isinstance(version, tuple) else (version,)
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object, got {type(data).__name__}")
    if data.get("format") != format_name:
        raise error(f"not an edgepsl {what}: format is {data.get('format')!r}, expected {format_name!r}")
    if data.get("version") not in versions:
        raise error(f"{what} format version {data.get('version')!r} is not supported (this edgepsl reads version "
                    f"{' or '.join(map(str, versions))})")
    return data
