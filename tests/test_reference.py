"""`file.py:name` and `module.path:name` references: files anywhere, modules importable or in the current
directory (as a console script runs), and errors that say what is wrong."""
from __future__ import annotations

import sys

import pytest

from edgepsl.reference import UnresolvedReferenceError, load_reference


def test_file_and_module_references(tmp_path, monkeypatch):
    (tmp_path / "user_pkg_ref").mkdir()
    (tmp_path / "user_pkg_ref" / "__init__.py").write_text("")
    (tmp_path / "user_pkg_ref" / "nets.py").write_text("VALUE = 41\n")
    (tmp_path / "loose.py").write_text("def build():\n    return 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_reference("user_pkg_ref.nets:VALUE", "--model") == 41
    assert str(tmp_path) not in sys.path
    assert load_reference(f"{tmp_path / 'loose.py'}:build", "--model")() == 7
    assert load_reference("loose.py:build", "--model")() == 7


@pytest.mark.parametrize("ref, message", [
    ("no_colon", "must be path/to/file.py:NAME or module.path:NAME"),
    ("x.py:not-an-identifier", "must be path/to/file.py:NAME"),
    ("missing_file.py:build", "file missing_file.py does not exist"),
    ("no_such_module_abc:build", "cannot import module 'no_such_module_abc'"),
    ("json:no_such_name", "json has no attribute 'no_such_name'"),
])
def test_bad_references_say_what_is_wrong(tmp_path, monkeypatch, ref, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnresolvedReferenceError, match=message):
        load_reference(ref, "--model")


def test_a_file_that_fails_to_import_is_named(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(UnresolvedReferenceError, match="importing .*broken.py failed: RuntimeError: no GPU here"):
        load_reference(f"{tmp_path / 'broken.py'}:build", "--model")
