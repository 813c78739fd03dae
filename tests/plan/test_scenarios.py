"""Scenario generators: determinism, bandwidth classes, the reference defects fixed, binding memory."""
import json
from importlib import resources

import numpy as np
import pytest

from edgepsl.plan.errors import ProfileError
from edgepsl.plan.instance import FIELDS
from edgepsl.plan.profiles import load_profile
from edgepsl.plan.scenarios import BANDWIDTH_CLASSES, SCENARIOS, class_counts, sample_bandwidth, scenario_instance


def link_bandwidth(inst, profile):
    """Recover each link's Mbps from the cut-1 gradient download d' = KB * 8 / Mbps."""
    a = inst.meta["cuts"][0]
    return load_profile(profile).activation_kb[a - 1] * 8.0 / inst.d_bwd


@pytest.mark.parametrize("scenario", [1, 2])
def test_same_seed_same_instance_and_seeds_differ(scenario):
    one = scenario_instance("resnet101_cifar10", 30, 4, scenario, seed=11, binding_memory=True)
    two = scenario_instance("resnet101_cifar10", 30, 4, scenario, seed=11, binding_memory=True)
    other = scenario_instance("resnet101_cifar10", 30, 4, scenario, seed=12, binding_memory=True)
    for name, _, _ in FIELDS:
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.meta == two.meta and one.client_names == two.client_names
    assert not np.array_equal(one.r, other.r)


def test_bandwidth_classes_have_corrected_shares():
    shares = np.array([c[2] for c in BANDWIDTH_CLASSES])
    assert shares.sum() == 112.0
    for links in (1, 7, 20, 1000, 12345):
        counts = class_counts(links)
        assert counts.sum() == links
        assert np.all(np.abs(counts - links * shares / shares.sum()) < 1.0)
    bw = sample_bandwidth(np.random.default_rng(3), 100, 10)
    assert np.array_equal(bw, np.round(bw))
    per_class = [int(((bw >= lo) & (bw <= hi)).sum()) for lo, hi, _ in BANDWIDTH_CLASSES]
    assert per_class == class_counts(1000).tolist() == [268, 375, 107, 250]


@pytest.mark.parametrize("scenario", [1, 2])
def test_links_use_physical_units_and_all_classes(scenario):
    inst = scenario_instance("vgg19_cifar10", 50, 4, scenario, seed=2)
    bw = link_bandwidth(inst, "vgg19_cifar10")
    assert np.allclose(bw, np.round(bw), rtol=0, atol=1e-9)
    counts = [int(((bw > lo - 0.5) & (bw < hi + 0.5)).sum()) for lo, hi, _ in BANDWIDTH_CLASSES]
    assert counts == class_counts(200).tolist() == inst.meta["bandwidth_class_links"]
    cut2_kb = load_profile("vgg19_cifar10").activation_kb[9]
    assert np.allclose(inst.d, cut2_kb * 8.0 / bw, rtol=1e-12)
    assert inst.meta["cuts"] == [3, 10]


def test_scenario1_uses_profiled_devices():
    inst = scenario_instance("resnet101_cifar10", 200, 20, 1, seed=4)
    prof = load_profile("resnet101_cifar10")
    assert set(inst.meta["client_devices"]) == {"d1", "d2"}
    assert set(inst.meta["helper_devices"]) == {"VM", "laptop"}
    assert set(np.unique(inst.p).tolist()) == set(prof.part_fwd_ms(3, 33)[[0, 1]].tolist())
    assert set(np.unique(inst.l).tolist()) == set(prof.part_fwd_ms(33, 37)[[2, 3]].tolist())
    assert inst.meta["cuts"] == [3, 33]


def test_scenario2_samples_each_part_within_its_range_and_l_bwd_is_positive():
    prof = load_profile("resnet101_cifar10")
    inst = scenario_instance("resnet101_cifar10", 300, 10, 2, seed=9)
    clients = [prof.devices.index(d) for d in ("d1", "d2", "jetson-gpu", "jetson-cpu")]
    part1_bwd = prof.part_bwd_ms(0, 3)[clients]
    part3_fwd = prof.part_fwd_ms(33, 37)[clients]
    assert (inst.l_bwd > 0).all()
    assert part1_bwd.min() <= inst.l_bwd.min() and inst.l_bwd.max() <= part1_bwd.max()
    assert part3_fwd.min() <= inst.l.min() and inst.l.max() <= part3_fwd.max()
    assert len(np.unique(inst.l_bwd)) > 50
    helper_fwd = prof.part_fwd_ms(3, 33)[[0, 1]]
    assert (inst.p >= helper_fwd.min()).all() and (inst.p <= helper_fwd.max()).all()
    assert (inst.p == inst.p[:1]).all(), "a helper's part-2 time is the same for every client"


def test_all_zero_devices_are_never_sampled():
    prof = load_profile("resnet101_mnist")
    inst = scenario_instance("resnet101_mnist", 200, 5, 2, seed=1)
    assert inst.meta["sampled_from"]["clients"] == ["d1", "d2"]
    part1_fwd = prof.part_fwd_ms(0, 3)[[2, 3]]
    upload = prof.activation_kb[2] * 8.0 / link_bandwidth(inst, "resnet101_mnist")
    local = inst.r - upload
    assert local.min() >= part1_fwd.min() - 1e-9 and local.max() <= part1_fwd.max() + 1e-9
    assert part1_fwd.min() > 0


def test_memory_is_loose_by_default():
    inst = scenario_instance("vgg19_mnist", 40, 3, 1, seed=0)
    assert (inst.cap > inst.mem.sum()).all()


@pytest.mark.parametrize(
    "K, H, scenario, seed", [(10, 2, 1, 0), (100, 10, 2, 3), (1000, 50, 1, 8), (7, 9, 2, 1), (2, 2, 1, 0), (3, 2, 2, 5)]
)
def test_binding_memory_binds_yet_stays_feasible(K, H, scenario, seed):
    inst = scenario_instance("resnet101_cifar10", K, H, scenario, seed=seed, binding_memory=True)
    m = inst.mem.max()
    slots = np.floor(inst.cap / m).astype(int)
    assert slots.min() >= 1 and slots.sum() >= K, "placing clients slot by slot fits everyone"
    assert inst.cap.sum() <= (np.ceil(1.25 * K) + H) * m + H, "total room only modestly above the demand"
    assert inst.cap.max() < inst.mem.sum(), "no helper can take every client"
    if np.ceil(1.25 * K) >= 2 * H and K > 3:
        assert len(np.unique(inst.cap)) > 1, "capacities are heterogeneous"
    else:
        assert (slots <= 2).all(), "with more helpers than spare room, each helper holds one or two clients"


def test_binding_memory_breaks_round_robin():
    inst = scenario_instance("resnet101_cifar10", 100, 10, 1, seed=3, binding_memory=True)
    load = np.bincount(np.arange(100) % 10, minlength=10) * inst.mem.max()
    assert (load > inst.cap).any()


def test_binding_memory_with_one_helper_holds_all_clients():
    inst = scenario_instance("vgg19_cifar10", 12, 1, 2, seed=0, binding_memory=True)
    assert inst.mem.sum() <= inst.cap[0] < inst.mem.sum() + inst.mem[0]


def test_large_instance_builds():
    for scenario in (1, 2):
        inst = scenario_instance("resnet101_cifar10", 10000, 100, scenario, seed=0)
        assert inst.r.shape == (10000, 100)


def test_scenario_errors(tmp_path):
    assert set(SCENARIOS) == {1, 2}
    with pytest.raises(ProfileError, match="unknown scenario 3"):
        scenario_instance("vgg19_cifar10", 5, 2, 3, seed=0)
    with pytest.raises(ProfileError, match="K >= 1 clients and H >= 1 helpers"):
        scenario_instance("vgg19_cifar10", 0, 2, 1, seed=0)
    with pytest.raises(ProfileError, match=r"cut \(3, 33\) is out of range for 'vgg19_cifar10' .* <= 24"):
        scenario_instance("vgg19_cifar10", 5, 2, 1, seed=0, cuts=(3, 33))
    data = json.loads(resources.files("edgepsl.data.profiles").joinpath("vgg19_cifar10.json").read_text())
    data["model"] = "mobilenet"
    path = tmp_path / "mobilenet.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="no default cuts for model 'mobilenet'; pass cuts"):
        scenario_instance(str(path), 5, 2, 1, seed=0)
    assert scenario_instance(str(path), 5, 2, 1, seed=0, cuts=(2, 8)).meta["profile"] == "mobilenet"
