"""Profiles -> instance: units, per-client cuts, and every error path."""
import json
from importlib import resources

import numpy as np
import pytest

from edgepsl.plan.errors import ProfileError
from edgepsl.plan.profiles import build_instance, list_profiles, load_profile, transfer_ms


def raw(name: str) -> dict:
    return json.loads(resources.files("edgepsl.data.profiles").joinpath(f"{name}.json").read_text())


def test_shipped_profiles_are_listed_and_load():
    assert list_profiles() == ["resnet101_cifar10", "resnet101_mnist", "vgg19_cifar10", "vgg19_mnist"]
    for name in list_profiles():
        prof = load_profile(name)
        assert prof.layers == {"resnet101": 37, "vgg19": 25}[prof.model]
        assert prof.fwd_ms.shape == (len(prof.devices), prof.layers)
    assert load_profile("resnet101_mnist").profiled_devices == ("VM", "laptop", "d1", "d2")


def test_units_of_a_known_cut_and_bandwidth():
    data = raw("resnet101_cifar10")
    d1, vm = data["devices"]["d1"], data["devices"]["VM"]
    inst = build_instance("resnet101_cifar10", ["d1"], ["VM"], (3, 33), 10.0)
    # cut-1 activation (row 2) is 2049.568359375 KB: 2049.568359375 * 8 / 10 = 1639.6546875 ms at 10 Mbps;
    # cut-2 activation (row 32) is 257.568359375 KB: 206.0546875 ms.
    assert data["memory"]["activation_kb"][2] == 2049.568359375
    assert data["memory"]["activation_kb"][32] == 257.568359375
    assert inst.r[0, 0] == pytest.approx(sum(d1["fwd_ms"][:3]) + 1639.6546875, rel=1e-12)
    assert inst.d[0, 0] == pytest.approx(206.0546875, rel=1e-12)
    assert inst.d_bwd[0, 0] == pytest.approx(1639.6546875, rel=1e-12)
    assert inst.r_bwd[0, 0] == pytest.approx(sum(d1["bwd_ms"][33:]) + sum(d1["update_ms"][33:]) + 206.0546875, rel=1e-12)
    assert inst.p[0, 0] == pytest.approx(sum(vm["fwd_ms"][3:33]), rel=1e-12)
    assert inst.p_bwd[0, 0] == pytest.approx(sum(vm["bwd_ms"][3:33]) + sum(vm["update_ms"][3:33]), rel=1e-12)
    assert inst.l[0] == pytest.approx(sum(d1["fwd_ms"][33:]), rel=1e-12)
    assert inst.l_bwd[0] == pytest.approx(sum(d1["bwd_ms"][:3]) + sum(d1["update_ms"][:3]), rel=1e-12)
    mem_kb = sum(data["memory"]["activation_kb"][3:33]) + sum(data["memory"]["weights_kb"][3:33])
    assert inst.mem[0] == pytest.approx(mem_kb / 1024, rel=1e-12)
    # KB * 8 / 1000 / Mbps seconds.
    assert float(transfer_ms(1000.0, 8.0)) == 1000.0


def test_bandwidth_matrix_sets_each_link():
    bw = np.array([[1.0, 20.0], [5.0, 10.0]])
    inst = build_instance("vgg19_cifar10", ["d1", "jetson-gpu"], ["VM", "laptop"], (3, 10), bw)
    act = load_profile("vgg19_cifar10").activation_kb
    assert np.allclose(inst.d_bwd, act[2] * 8 / bw, rtol=1e-12)
    assert np.allclose(inst.d, act[9] * 8 / bw, rtol=1e-12)
    assert inst.r[0, 0] - inst.r[0, 1] == pytest.approx(act[2] * 8 * (1 / 1.0 - 1 / 20.0), rel=1e-12)


def test_per_client_cuts_match_single_cut_instances():
    devices, helpers = ["d1", "d2", "jetson-cpu"], ["laptop", "VM"]
    cuts = [(3, 33), (9, 33), (17, 35)]
    mixed = build_instance("resnet101_cifar10", devices, helpers, cuts, 7.0)
    for j, cut in enumerate(cuts):
        alone = build_instance("resnet101_cifar10", [devices[j]], helpers, cut, 7.0)
        for name in ("r", "p", "d", "r_bwd", "p_bwd", "d_bwd"):
            assert np.array_equal(getattr(mixed, name)[j], getattr(alone, name)[0]), (name, j)
        for name in ("l", "l_bwd", "mem"):
            assert getattr(mixed, name)[j] == getattr(alone, name)[0], (name, j)
    assert len(set(mixed.mem.tolist())) == 3
    assert mixed.meta["cuts"] == {"17,35": 1, "3,33": 1, "9,33": 1}


def test_meta_records_what_built_the_instance():
    inst = build_instance("vgg19_mnist", ["d1", "d2", "d1"], ["VM"], (3, 10), 12.5, helper_capacity_mb=300.0)
    assert inst.meta["profile"] == "vgg19_mnist"
    assert inst.meta["client_devices"] == {"d1": 2, "d2": 1}
    assert inst.meta["helper_devices"] == {"VM": 1}
    assert inst.meta["cuts"] == [3, 10]
    assert inst.meta["bandwidth_mbps"] == {"min": 12.5, "mean": 12.5, "max": 12.5}
    assert inst.cap.tolist() == [300.0]


def test_default_capacity_holds_every_client_on_any_helper():
    inst = build_instance("resnet101_cifar10", ["d1"] * 5, ["VM", "laptop"], (3, 33), 10)
    assert (inst.cap > inst.mem.sum()).all() and (inst.cap == np.floor(inst.mem.sum()) + 1).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"client_devices": ["rpi9"]}, "unknown client device 'rpi9' .* valid devices: VM, laptop, d1, d2, jetson-cpu, jetson-gpu"),
        ({"helper_devices": ["gpu-box"]}, "unknown helper device 'gpu-box'"),
        ({"client_devices": []}, "at least one client device"),
        ({"cuts": (0, 33)}, r"cut \(0, 33\) is out of range .* need 1 <= a < b <= 36"),
        ({"cuts": (5, 5)}, r"cut \(5, 5\) is out of range"),
        ({"cuts": (3, 37)}, r"cut \(3, 37\) is out of range"),
        ({"cuts": [(3, 33), (3, 40)]}, r"cut \(3, 40\) is out of range"),
        ({"cuts": [(3, 33)] * 3}, r"one \(a, b\) pair or K=2 pairs .* got shape \(3, 2\)"),
        ({"cuts": (3.5, 33)}, "cuts must be integer layer indices"),
        ({"bandwidth_mbps": 0}, "bandwidth must be finite and > 0 Mbps; got 0.0"),
        ({"bandwidth_mbps": -3.0}, "bandwidth must be finite and > 0 Mbps"),
        ({"bandwidth_mbps": float("nan")}, "bandwidth must be finite and > 0 Mbps"),
        ({"bandwidth_mbps": [10.0, 10.0]}, r"scalar or a K x H = \(2, 1\) array .* got shape \(2,\)"),
        ({"bandwidth_mbps": "fast"}, "bandwidth must be a number or a K x H array"),
        ({"helper_capacity_mb": [100.0, 200.0]}, "helper capacity must be a scalar or 1 values"),
        ({"helper_capacity_mb": -1.0}, "helper capacities must be finite and >= 0 MB"),
    ],
)
def test_build_errors_are_actionable(kwargs, message):
    args = {"client_devices": ["d1", "d2"], "helper_devices": ["VM"], "cuts": (3, 33), "bandwidth_mbps": 10.0}
    args.update(kwargs)
    with pytest.raises(ProfileError, match=message):
        build_instance("resnet101_cifar10", **args)


def test_unprofiled_device_is_rejected():
    with pytest.raises(ProfileError, match="'jetson-gpu' was not profiled in 'vgg19_mnist' .* use one of: VM, laptop, d1, d2"):
        build_instance("vgg19_mnist", ["jetson-gpu"], ["VM"], (3, 10), 10.0)


def test_unknown_profile_name_lists_shipped_profiles():
    with pytest.raises(ProfileError, match="no profile named 'resnet50' .* resnet101_cifar10, resnet101_mnist, vgg19_cifar10, vgg19_mnist"):
        load_profile("resnet50")


def write(tmp_path, data, text=None):
    path = tmp_path / "broken.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


def test_profile_file_by_path_loads(tmp_path):
    prof = load_profile(write(tmp_path, raw("vgg19_cifar10")))
    assert prof.name == "broken" and prof.layers == 25
    assert np.array_equal(prof.fwd_ms, load_profile("vgg19_cifar10").fwd_ms)


def corrupt(mutate):
    data = raw("vgg19_cifar10")
    mutate(data)
    return data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["devices"]["d1"]["fwd_ms"].pop(), r"devices.d1.fwd_ms has 24 values, expected one per layer \(25\)"),
        (lambda d: d["memory"]["weights_kb"].append(1.0), r"memory.weights_kb has 26 values"),
        (lambda d: d["devices"]["VM"]["bwd_ms"].__setitem__(4, -2.0), r"devices.VM.bwd_ms\[4\] = -2.0; values must be finite numbers >= 0"),
        (lambda d: d["devices"]["VM"]["update_ms"].__setitem__(0, "1.5"), r"devices.VM.update_ms\[0\] = '1.5'"),
        (lambda d: d["devices"]["laptop"].pop("update_ms"), "devices.laptop.update_ms is missing"),
        (lambda d: d.pop("memory"), "missing key\\(s\\): memory"),
        (lambda d: d.update(layers=2), "'layers' must be an integer >= 3"),
        (lambda d: d.update(devices={}), "'devices' must be a non-empty object"),
        (lambda d: d["devices"].update(d1=[1.0]), "devices.d1 must be an object"),
        (lambda d: d.update(memory=[]), "'memory' must be an object"),
    ],
)
def test_inconsistent_profile_files_are_rejected(tmp_path, mutate, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(write(tmp_path, corrupt(mutate)))


def test_truncated_and_non_finite_profile_files_are_rejected(tmp_path):
    text = json.dumps(raw("vgg19_mnist"))
    with pytest.raises(ProfileError, match="is not valid JSON \\(truncated\\?\\)"):
        load_profile(write(tmp_path, None, text[: len(text) // 2]))
    with pytest.raises(ProfileError, match="non-finite number Infinity"):
        load_profile(write(tmp_path, None, text.replace('"fwd_ms": [', '"fwd_ms": [Infinity, ', 1)))
    with pytest.raises(ProfileError, match="must be a JSON object"):
        load_profile(write(tmp_path, [1, 2, 3]))
