"""Backend selection: the compiled core is active after install; EDGEPSL_PURE=1 forces the twin."""
from __future__ import annotations

import os
import subprocess
import sys

from edgepsl.plan.backend import backend_name


def test_compiled_core_is_active_unless_pure_is_forced() -> None:
    expected = "pure (EDGEPSL_PURE=1)" if os.environ.get("EDGEPSL_PURE", "") not in ("", "0") else "compiled"
    assert backend_name() == expected


def test_pure_env_variable_forces_the_twin() -> None:
    env = dict(os.environ, EDGEPSL_PURE="1")
    out = subprocess.run([sys.executable, "-m", "edgepsl", "--version"], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert "scheduling core: pure (EDGEPSL_PURE=1)" in out.stdout
