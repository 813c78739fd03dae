"""tools/bench_faults.py refuses settings it cannot run before it starts any process (the undisturbed run alone takes
minutes): faults outside the run, and a --keep path that is not a directory."""
from __future__ import annotations

import pytest

from tools.bench_faults import main


@pytest.mark.parametrize("argv,named", [
    (["--clients", "4"], "client5 is not a role of this run"),  # the paused client5 needs 6 clients
    (["--rounds", "50"], "round 60 is not within the run"),  # the helper is killed at round 60
])
def test_faults_outside_the_run_are_refused_before_anything_runs(argv, named, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "faults.json")])
    assert exc.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "faults.json").exists()


def test_a_keep_path_that_is_a_file_is_refused(capsys, tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["--keep", str(path), "--out", str(tmp_path / "faults.json")])
    assert exc.value.code == 2 and "not a directory" in capsys.readouterr().err
