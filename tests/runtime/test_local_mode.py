"""Local mode over real processes: clients the hybrid plan puts local train part-2 themselves, and the run's model
equals the all-split run's (one part-2 per client either way)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from edgepsl.runtime import checkpoint
from edgepsl.runtime.emulation import Emulation
from edgepsl.runtime.launch import run_local
from tests.runtime.conftest import small_run

ROUNDS = 4
# Jetson GPUs train part-2 about 3x faster than a laptop helper (vgg19_cifar10 profile); a d1 far slower.
CLIENTS = [Emulation(device="jetson-gpu"), Emulation(device="jetson-gpu"), Emulation(device="d1")]
HELPERS = [Emulation(device="laptop")]


def _run(tmp_path, method: str):
    run = small_run(tmp_path / method, clients=3, helpers=1, rounds=ROUNDS, aggregate_every=2, eval_every=ROUNDS,
                    method=method, time_scale=0.002, train_samples=600, test_samples=200)
    summary = run_local(dataclasses.replace(run, secure=False, client_emulation=CLIENTS, helper_emulation=HELPERS))
    records = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    return summary, records, checkpoint.load(tmp_path / method / "checkpoint")


def test_local_clients_train_part2_themselves_and_match_the_all_split_run(tmp_path):
    hybrid, records, local_ckpt = _run(tmp_path, "hybrid")
    plan = json.loads((tmp_path / "hybrid" / "plan.json").read_text())
    assert plan["version"] == 2 and plan["assignment"] == [-1, -1, 0]
    assert hybrid.rounds_done == ROUNDS
    for record in records:
        assert record["local_clients"] == 2
        assert {job["client"] for job in record["jobs"]} == {"client2"}
    split, split_records, split_ckpt = _run(tmp_path, "greedy-ls")
    assert json.loads((tmp_path / "greedy-ls" / "plan.json").read_text())["assignment"] == [0, 0, 0]
    assert [r["client_loss"] for r in records] == [r["client_loss"] for r in split_records]
    assert set(local_ckpt.model) == set(split_ckpt.model)
    for name, value in split_ckpt.model.items():
        diff = np.linalg.norm(local_ckpt.model[name] - value)
        assert diff <= 1e-5 * max(np.linalg.norm(value), 1e-12), name


def test_declared_local_times_give_the_instance_its_local_mode_fields():
    from edgepsl.runtime.links import declared_links
    from edgepsl.runtime.planning import build_instance
    from edgepsl.segment import load_manifest
    from tests.runtime.conftest import SMALL

    clients, helpers = ["client0", "client1"], ["helper0"]
    config = SMALL.replace(links="declared", bandwidth_mbps=100.0, method="hybrid")
    links = declared_links(config, clients, helpers, {"client0": None, "client1": None})
    times = {"part1_fwd": 1.0, "part1_bwd": 2.0, "part3_fwd": 3.0, "part3_bwd": 4.0}
    profiles = {"client0": {"times": times, "local_times": {"part2_fwd": 5.0, "part2_bwd": 6.0}, "memory_mb": 512.0},
                "client1": {"times": times, "local_times": None, "memory_mb": 512.0}}
    args = (config, load_manifest(config.artifact), clients, helpers)
    helper_profiles = {"helper0": {"times": {"part2_fwd": 2.0, "part2_bwd": 3.0}}}
    instance = build_instance(*args, profiles, helper_profiles, links)
    assert instance.hybrid and instance.local_fits.tolist() == [True, False]
    assert instance.cap_own.tolist() == [512.0, 0.0]
    assert instance.local_time[0] == 1.0 + 5.0 + 3.0 + 4.0 + 6.0 + 2.0
    plain = build_instance(*args, {n: {"times": times} for n in clients}, helper_profiles, links)
    assert not plain.hybrid


def test_a_client_that_states_too_little_memory_or_none_is_never_planned_local():
    from edgepsl.plan.hybrid import solve_hybrid
    from edgepsl.plan.schedule import LOCAL
    from edgepsl.runtime.links import declared_links
    from edgepsl.runtime.planning import build_instance, make_plan, part2_memory_mb
    from edgepsl.segment import load_manifest
    from tests.runtime.conftest import SMALL

    clients, helpers = ["short", "silent", "enough"], ["helper0"]
    config = SMALL.replace(links="declared", bandwidth_mbps=100.0, method="hybrid")
    manifest = load_manifest(config.artifact)
    need = part2_memory_mb(manifest, config.batch_size)
    links = declared_links(config, clients, helpers, {n: None for n in clients})
    # Local part-2 far faster than the slow helper: each client would go local if it could.
    times = {"part1_fwd": 1.0, "part1_bwd": 1.0, "part3_fwd": 1.0, "part3_bwd": 1.0}
    own = {"part2_fwd": 1.0, "part2_bwd": 1.0}
    profiles = {"short": {"times": times, "local_times": own, "memory_mb": need * 0.99},
                "silent": {"times": times, "local_times": own},
                "enough": {"times": times, "local_times": own, "memory_mb": need}}
    helper_profiles = {"helper0": {"times": {"part2_fwd": 500.0, "part2_bwd": 500.0}}}
    instance = build_instance(config, manifest, clients, helpers, profiles, helper_profiles, links)
    assert instance.local_fits.tolist() == [False, False, True]
    for assignment in (make_plan(config, instance).plan.assignment, solve_hybrid(instance, seed=1).plan.assignment):
        assert assignment.tolist() == [0, 0, LOCAL]


def test_the_launcher_states_an_emulated_devices_profiled_part2_memory(tmp_path):
    import pytest

    from edgepsl.plan.profiles import load_profile
    from edgepsl.runtime.errors import RunConfigError
    from edgepsl.runtime.launch import LocalRun, client_memory_args
    from tests.runtime.conftest import SMALL

    config = SMALL.replace(clients=3, method="hybrid")
    profiled = load_profile(config.emulation_profile).part2_memory_mb(3, 10)   # vgg19 at its usual cuts
    run = LocalRun(config, tmp_path, client_emulation=[Emulation(device="jetson-gpu"), Emulation(slowdown=2.0)])
    assert client_memory_args(run) == [["--memory-mb", repr(profiled)], [], []]
    given = dataclasses.replace(run, client_memory_mb=[None, 64.0, 128.0])
    assert client_memory_args(given) == [[], ["--memory-mb", "64.0"], ["--memory-mb", "128.0"]]
    with pytest.raises(RunConfigError, match="2 client memories for 3 clients"):
        client_memory_args(dataclasses.replace(run, client_memory_mb=[1.0, 2.0]))


def test_the_client_command_takes_a_finite_positive_memory_for_part2():
    import argparse

    import pytest

    from edgepsl.cli.client import add_arguments

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    base = ["--coordinator", "tcp://127.0.0.1:5555", "--name", "client0"]
    assert parser.parse_args(base).memory_mb is None
    assert parser.parse_args(base + ["--memory-mb", "2048"]).memory_mb == 2048.0
    for bad in ("0", "-5", "nan", "inf", "lots"):
        with pytest.raises(argparse.ArgumentError, match="MB"):
            parser.parse_args(base + ["--memory-mb", bad])
