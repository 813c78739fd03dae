"""tools/plan_vs_realised.py names what is wrong with the run directory it is given instead of a traceback."""
from __future__ import annotations

import json

import pytest

from tools.plan_vs_realised import main


def _run_dir(tmp_path, records):
    (tmp_path / "instance.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


ROUND = {"round": 0, "plan_version": 0, "planned_makespan_ms": 10.0, "nominal_makespan_ms": 8.0,
         "realised_makespan_ms": 11.0}


@pytest.mark.parametrize("records,argv,named", [
    (None, [], "metrics.jsonl is missing"),
    ([ROUND, {**ROUND, "round": 1}], ["--from-round", "2"], "--from-round 2"),
    ([{k: v for k, v in ROUND.items() if k != "nominal_makespan_ms"}], ["--from-round", "0"],
     "has no nominal_makespan_ms"),
])
def test_a_bad_run_directory_is_named(records, argv, named, tmp_path, capsys):
    run_dir = tmp_path if records is None else _run_dir(tmp_path, records)
    with pytest.raises(SystemExit) as exc:
        main([str(run_dir), *argv, "--out", str(tmp_path / "out.json")])
    assert exc.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
