"""Instance JSON round trip and validation errors."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgepsl.plan.errors import InstanceError, InstanceFormatError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.instance import FIELDS, Instance
from edgepsl.plan.profiles import build_instance
from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.schedule import Plan


def small_instance() -> Instance:
    return build_instance("resnet101_cifar10", ["d1", "d2", "d1"], ["VM", "laptop"], (3, 33), [[3, 7], [10, 20], [1, 16]])


def test_json_round_trip_is_exact(tmp_path):
    inst = scenario_instance("vgg19_cifar10", 7, 3, 2, seed=5, binding_memory=True)
    path = tmp_path / "inst.json"
    inst.save(path)
    back = Instance.load(path)
    for name, _, _ in FIELDS:
        assert np.array_equal(getattr(back, name), getattr(inst, name)), name
    assert back.meta == inst.meta
    assert back.client_names == inst.client_names and back.helper_names == inst.helper_names
    assert json.loads(path.read_text())["format"] == "edgepsl-instance"


def test_round_trip_keeps_names_and_dict_form():
    inst = small_instance()
    back = Instance.from_dict(json.loads(json.dumps(inst.to_dict())))
    assert back.client_names == ("client 0 (d1)", "client 1 (d2)", "client 2 (d1)")
    assert back.helper_names == ("helper 0 (VM)", "helper 1 (laptop)")
    assert back.to_dict() == inst.to_dict()


def with_field(inst: Instance, name: str, value) -> dict:
    data = inst.to_dict()
    data[name] = value
    return data


@pytest.mark.parametrize("name", ["r", "p", "d", "r_bwd", "p_bwd", "d_bwd"])
def test_negative_time_is_rejected(name):
    inst = small_instance()
    arr = getattr(inst, name).copy()
    arr[1, 1] = -0.5
    with pytest.raises(InstanceError, match=f"field '{name}' has a negative value -0.5 at index \\(1, 1\\)"):
        Instance.from_dict(with_field(inst, name, arr.tolist()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_time_is_rejected(bad):
    inst = small_instance()
    l = inst.l.copy()
    l[2] = bad
    with pytest.raises(InstanceError, match="field 'l' has a non-finite value"):
        Instance.from_dict(with_field(inst, "l", l.tolist()))


def test_non_finite_number_in_a_file_is_rejected(tmp_path):
    text = json.dumps(small_instance().to_dict()).replace('"l": [', '"l": [NaN, ', 1)
    path = tmp_path / "nan.json"
    path.write_text(text)
    with pytest.raises(InstanceError, match="non-finite number NaN"):
        Instance.load(path)


def test_shape_mismatch_is_rejected():
    inst = small_instance()
    with pytest.raises(InstanceError, match=r"field 'p' has shape \(3, 1\), expected \(3, 2\)"):
        Instance.from_dict(with_field(inst, "p", inst.p[:, :1].tolist()))
    with pytest.raises(InstanceError, match=r"field 'l_bwd' has shape \(2,\), expected \(3,\)"):
        Instance.from_dict(with_field(inst, "l_bwd", inst.l_bwd[:2].tolist()))
    with pytest.raises(InstanceError, match="declares clients=4"):
        Instance.from_dict(with_field(inst, "clients", 4))


def test_client_that_fits_nowhere_is_rejected():
    inst = small_instance()
    mem = inst.mem.copy()
    mem[1] = inst.cap.max() + 1.0
    with pytest.raises(InstanceError, match="client 1 \\(d2\\) needs .* MB .* fits on no helper"):
        Instance.from_dict(with_field(inst, "mem", mem.tolist()))


def test_bad_format_version_and_missing_fields_are_rejected(tmp_path):
    inst = small_instance()
    with pytest.raises(InstanceFormatError, match="format is 'edgepsl-plan'"):
        Instance.from_dict(with_field(inst, "format", "edgepsl-plan"))
    with pytest.raises(InstanceFormatError, match="version 5 is not supported"):
        Instance.from_dict(with_field(inst, "version", 5))
    data = inst.to_dict()
    del data["d_bwd"]
    with pytest.raises(InstanceFormatError, match="missing field\\(s\\): d_bwd"):
        Instance.from_dict(data)
    with pytest.raises(InstanceFormatError, match="must be a JSON object"):
        Instance.from_dict([1, 2])
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(inst.to_dict())[:200])
    with pytest.raises(InstanceFormatError, match="is not valid JSON"):
        Instance.load(path)
    with pytest.raises(InstanceFormatError, match="cannot read instance file"):
        Instance.load(tmp_path / "absent.json")


def test_docs_formats_examples_load_and_evaluate_as_documented():
    text = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    inst = Instance.from_dict(json.loads(blocks[0]))
    assert (inst.K, inst.H) == (3, 2) and inst.helper_names == ("gpu-server", "laptop")
    plans = [json.loads(b) for b in blocks if '"edgepsl-plan"' in b]
    plan = Plan.from_dict(next(d for d in plans if d["version"] == 1))
    timeline = evaluate(inst, plan)
    assert timeline.fwd_start.tolist() == [600.0, 1500.0, 300.0]
    assert timeline.bwd_start.tolist() == [18350.0, 38800.0, 1090.0]
    assert timeline.finish.tolist() == [21730.0, 43860.0, 3240.0]
    assert timeline.makespan == 43860.0
