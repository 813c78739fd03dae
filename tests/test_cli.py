"""The edgepsl console script: version, doctor, and a full planning run with its outputs."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from edgepsl.cli import main
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import Plan


def test_version_names_the_backend(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "scheduling core:" in capsys.readouterr().out


def test_doctor_reports_backend_and_components(capsys) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "scheduling core:" in out and "wire codec:" in out and "onnxruntime" in out


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`edgepsl doctor | head -1`: the reader leaves early; the command exits 141 without a traceback."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line is written when printed, as on a terminal
    proc = subprocess.Popen([sys.executable, "-m", "edgepsl", "doctor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"edgepsl")
    proc.stdout.close()  # the reader leaves; the command's next writes meet a closed pipe
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err


def test_plan_writes_consistent_outputs(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["plan", "--profile", "resnet101_cifar10", "-K", "12", "-H", "3", "--seed", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "plan.json").read_text())
    inst = Instance.load(out / "instance.json")
    timeline = evaluate(inst, Plan.from_dict(doc))
    assert timeline.makespan == pytest.approx(doc["evaluation"]["makespan_ms"])
    assert f"{timeline.makespan:.1f} ms" in printed and "gap" in printed
    trace = json.loads((out / "trace.json").read_text())
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    png = (out / "gantt.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 400 and height > 300
    # The written instance plans again from the file.
    assert main(["plan", "--instance", str(out / "instance.json"), "--method", "random", "--no-plot",
                 "--out", str(tmp_path / "again")]) == 0


def test_plan_needs_exactly_one_source(capsys) -> None:
    assert main(["plan", "--no-plot"]) == 1
    assert "exactly one of --instance" in capsys.readouterr().err


def test_plan_reports_a_bad_instance_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "edgepsl-instance", "version": 99}')
    assert main(["plan", "--instance", str(bad)]) == 1
    assert "version 99 is not supported" in capsys.readouterr().err


def test_plan_with_the_exact_milp(tmp_path, capsys) -> None:
    out = tmp_path / "milp"
    assert main(["plan", "--profile", "resnet101_cifar10", "-K", "8", "-H", "2", "--method", "milp",
                 "--time-limit", "30", "--no-plot", "--out", str(out)]) == 0
    assert "HiGHS        Optimal" in capsys.readouterr().out
    doc = json.loads((out / "plan.json").read_text())
    assert doc["method"] == "milp" and doc["evaluation"]["highs_status"] == "Optimal"


def test_plan_with_a_time_limit_on_tight_memory_and_the_milp(tmp_path, capsys) -> None:
    # Memory 2, 2, 2, 3 MB on helpers of 6 and 3 MB: every greedy start fails, the packing start fits.
    ones = [[1.0, 2.0]] * 4
    Instance(r=ones, p=ones, d=ones, l=[1.0] * 4, r_bwd=ones, p_bwd=ones, d_bwd=ones, l_bwd=[1.0] * 4,
             mem=[2.0, 2.0, 2.0, 3.0], cap=[6.0, 3.0]).save(tmp_path / "tight.json")
    for method in ("greedy-ls", "milp"):
        out = tmp_path / method
        assert main(["plan", "--instance", str(tmp_path / "tight.json"), "--method", method, "--time-limit-ms", "50",
                     "--no-plot", "--out", str(out)]) == 0
        doc = json.loads((out / "plan.json").read_text())
        assert doc["assignment"] == [0, 0, 0, 1]
    with pytest.raises(SystemExit):
        main(["plan", "--instance", str(tmp_path / "tight.json"), "--time-limit-ms", "0"])
    assert "positive number of milliseconds" in capsys.readouterr().err
