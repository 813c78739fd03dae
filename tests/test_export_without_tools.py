"""Without torch the exporter's package still imports, and `edgepsl export` names the extra that installs it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None; "


def _run(code: str) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter in which `import torch` fails."""
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_export_without_torch_names_the_tools_extra(tmp_path):
    done = _run("from edgepsl.cli import main; sys.exit(main(['export', '--model', 'x.py:f', '--cuts', '1', "
                f"'--input-shape', '3', '--out', {str(tmp_path / 'out')!r}]))")
    assert done.returncode == 1
    assert "needs torch, which is not installed" in done.stderr and "pip install 'edgepsl[tools]'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_python_api_without_torch_raises_a_specific_error():
    done = _run("import edgepsl.export as e\n"
                "try:\n    e.export_model\nexcept e.ExportToolsMissingError as exc:\n    print('OK', exc)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK") and "edgepsl[tools]" in done.stdout
