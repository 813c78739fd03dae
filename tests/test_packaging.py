"""The wheel and the sdist carry the default artifact: every one of its files is package data and in MANIFEST.in.

Building a wheel compiles the extensions, too slow for the suite; `pip wheel --no-deps --no-build-isolation .`
and a zipfile listing check the same by hand (docs/byo.md, "Installing from a wheel")."""
from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from edgepsl.runtime.config import DEFAULT_ARTIFACT
from edgepsl.segment import load_manifest, names

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgepsl" / "artifacts"


def test_default_artifact_lives_in_the_package_and_loads():
    assert Path(DEFAULT_ARTIFACT).parent == PACKAGE and (PACKAGE / "__init__.py").is_file()
    assert load_manifest(DEFAULT_ARTIFACT).model == "lenet5"


def test_every_artifact_file_is_package_data_and_in_the_sdist():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "edgepsl.artifacts"]
    files = sorted(p.relative_to(PACKAGE).as_posix() for p in Path(DEFAULT_ARTIFACT).iterdir())
    expected = {names.MANIFEST_FILE, *load_manifest(DEFAULT_ARTIFACT).files}
    assert {Path(f).name for f in files} >= expected
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
    sdist = [line.split() for line in (ROOT / "MANIFEST.in").read_text().splitlines()]
    rule = next(words for words in sdist if words[:2] == ["recursive-include", "edgepsl/artifacts"])
    assert [f for f in files if not any(fnmatch.fnmatch(Path(f).name, p) for p in rule[2:])] == []
