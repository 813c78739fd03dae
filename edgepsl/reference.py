"""Resolve a user's `path/to/file.py:name` or `package.module:name` reference to the Python object it names."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from edgepsl.errors import EdgePSLError


class UnresolvedReferenceError(EdgePSLError):
    """A `file.py:name` or `module:name` reference cannot be resolved (bad form, missing file, module or name)."""


def load_reference(ref: str, what: str) -> object:
    """The object named by `file.py:name` (a file anywhere) or `module.path:name` (importable, or found in the
    current directory)."""
    location, sep, name = ref.rpartition(":")
    if not sep or not location or not name.isidentifier():
        raise UnresolvedReferenceError(f"{what} must be path/to/file.py:NAME or module.path:NAME, got {ref!r}")
    if location.endswith(".py"):
        module = _load_file(Path(location), what)
    else:
        try:
            module = _import_module(location)
        except Exception as exc:
            raise UnresolvedReferenceError(f"{what} {ref!r}: cannot import module {location!r}: "
                                           f"{type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        raise UnresolvedReferenceError(f"{what} {ref!r}: {location} has no attribute {name!r}")
    return getattr(module, name)


def _import_module(name: str) -> object:
    """Import a module, also from the current directory (a console script, unlike `python -m`, leaves it off
    sys.path)."""
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        return importlib.import_module(name)
    sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(cwd)


def _load_file(path: Path, what: str) -> object:
    """Import a Python file as a module of its own (a private name, so two files named model.py do not clash)."""
    if not path.is_file():
        raise UnresolvedReferenceError(f"{what}: file {path} does not exist")
    resolved = path.resolve()
    module_name = f"_edgepsl_user_{hashlib.sha256(str(resolved).encode()).hexdigest()[:16]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise UnresolvedReferenceError(f"{what}: {path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise UnresolvedReferenceError(f"{what}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module
