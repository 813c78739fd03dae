"""Measured links: clients probe every helper at registration, the coordinator plans with the K x H matrix."""
from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest

from edgepsl.plan.instance import Instance
from edgepsl.plan.profiles import transfer_ms
from edgepsl.runtime.client import Client, ClientOptions
from edgepsl.runtime.coordinator import Coordinator
from edgepsl.runtime.emulation import Emulation
from edgepsl.runtime.errors import RunAbortedError
from edgepsl.runtime.helper import Helper, HelperOptions
from edgepsl.runtime.launch import run_local
from edgepsl.runtime.links import DECLARED_CLIENT, DECLARED_CONFIG, MEASURED, Links, assembled, declared_links
from edgepsl.runtime.planning import build_instance
from edgepsl.segment import load_manifest
from edgepsl.wire import Envelope
from tests.runtime.conftest import SMALL, small_run

EMULATED_MBPS = (10.0, 40.0)
THREAD_JOIN_S = 60.0


def test_the_coordinator_plans_with_measured_links(tmp_path):
    run = small_run(tmp_path / "run", clients=2, helpers=2, rounds=2, aggregate_every=2, eval_every=2)
    run = dataclasses.replace(run, client_emulation=[Emulation(bandwidth_mbps=b) for b in EMULATED_MBPS])
    run_local(run)
    links = json.loads((tmp_path / "run" / "links.json").read_text())
    rows = {(row["client"], row["helper"]): row for row in links["links"]}
    assert len(rows) == 4 and all(row["source"] == MEASURED for row in rows.values())
    assert set(links["probes"]) == {"client0", "client1"}
    instance = Instance.load(tmp_path / "run" / "instance.json")
    manifest = load_manifest(run.config.artifact)
    cut2_kb = 32 * int(np.prod(manifest.segment("part2").output.shape[1:])) * 4 / 1000.0
    for j, client in enumerate(("client0", "client1")):
        for i, helper in enumerate(("helper0", "helper1")):
            row = rows[(client, helper)]
            # the emulated link paces probes too: the measured bandwidth is the emulated one, less the wire's own time
            assert 0.6 * EMULATED_MBPS[j] <= row["mbps"] <= 1.05 * EMULATED_MBPS[j]
            expected = transfer_ms(np.array(cut2_kb), np.array(row["mbps"])) + row["latency_ms"]
            assert instance.d[j, i] == pytest.approx(float(expected))
    assert instance.meta["links"] == [MEASURED]


def test_declared_links_name_their_source():
    clients, helpers = ["client0", "client1"], ["helper0", "helper1", "helper2"]
    config = SMALL.replace(links="declared", bandwidth_mbps=100.0)
    links = declared_links(config, clients, helpers, {"client0": 5.0, "client1": None})
    assert links.mbps.tolist() == [[5.0] * 3, [100.0] * 3]
    assert links.source == ((DECLARED_CLIENT,) * 3, (DECLARED_CONFIG,) * 3)
    times = {"part1_fwd": 1.0, "part1_bwd": 1.0, "part3_fwd": 1.0, "part3_bwd": 1.0}
    instance = build_instance(config, load_manifest(config.artifact), clients, helpers,
                              {c: {"times": times} for c in clients},
                              {h: {"times": {"part2_fwd": 2.0, "part2_bwd": 3.0}} for h in helpers}, links)
    assert instance.d[0, 0] == pytest.approx(20 * instance.d[1, 0])
    assert json.loads(json.dumps(links.to_dict()))["links"][0]["source"] == DECLARED_CLIENT


class SilentHelper(Helper):
    """A helper that never answers link probes."""

    def _early(self, env: Envelope) -> None:
        return None


class ForgetfulHelper(Helper):
    """A helper that declares no memory limit at registration but enforces its capacity_mb."""

    def __init__(self, options: HelperOptions) -> None:
        super().__init__(options)
        self.link.register = dataclasses.replace(self.link.register, capacity_mb=None)


def _threaded_run(tmp_path, helper_class: type[Helper], capacity_mb: float | None,
                  config) -> tuple[str, list[BaseException | None]]:
    """Run a coordinator here and one helper and one client in threads; (the coordinator's error, role errors)."""
    coordinator = Coordinator(config, tmp_path / "run")
    client = Client(ClientOptions("client0", coordinator.endpoint))
    helper = helper_class(HelperOptions("helper0", coordinator.endpoint, capacity_mb=capacity_mb))
    errors: list[BaseException | None] = [None, None]

    def serve(k: int, role) -> None:
        try:
            role.run()
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to inspect
            errors[k] = exc

    threads = [threading.Thread(target=serve, args=(k, role), daemon=True) for k, role in enumerate((helper, client))]
    for thread in threads:
        thread.start()
    with pytest.raises(RunAbortedError) as info:
        coordinator.run()
    for thread in threads:
        thread.join(THREAD_JOIN_S)
        assert not thread.is_alive()
    return str(info.value), errors


def test_links_are_assembled_from_blocks_and_a_missing_pair_is_named():
    """After a join: the links before it, the new client's to every helper, the other clients' to the new helper."""
    def block(clients, helpers, mbps):
        return Links(tuple(clients), tuple(helpers), np.full((len(clients), len(helpers)), 0.5),
                     np.full((len(clients), len(helpers)), mbps), tuple((MEASURED,) * len(helpers) for _ in clients),
                     {c: {h: {"mbps": mbps} for h in helpers} for c in clients})

    before = block(["client0", "client1"], ["helper0", "helper1"], 10.0)
    new_client = block(["client2"], ["helper0", "helper1", "helper2"], 20.0)
    new_helper = block(["client0", "client1"], ["helper2"], 30.0)
    clients, helpers = ["client0", "client1", "client2"], ["helper0", "helper2"]  # helper1 was lost meanwhile
    links = assembled([before, new_client, new_helper], clients, helpers)
    np.testing.assert_array_equal(links.mbps, [[10.0, 30.0], [10.0, 30.0], [20.0, 20.0]])
    assert links.clients == tuple(clients) and links.helpers == tuple(helpers)
    assert links.probes["client0"] == {"helper0": {"mbps": 10.0}, "helper2": {"mbps": 30.0}}
    override = assembled([before, block(["client1"], ["helper0"], 99.0)], ["client0", "client1"], ["helper0"])
    assert override.mbps[:, 0].tolist() == [10.0, 99.0]  # a later block replaces an earlier one's pair
    with pytest.raises(ValueError, match="client0 -> helper2, client1 -> helper2"):
        assembled([before, new_client], clients, helpers)


def test_a_helper_that_does_not_answer_probes_is_named(tmp_path):
    config = SMALL.replace(clients=1, helpers=1, probe_timeout_s=1.0, register_timeout_s=20.0)
    message, errors = _threaded_run(tmp_path, SilentHelper, None, config)
    assert "link probe client0 -> helper0" in message and "no probe echo" in message
    assert errors == [None, None]  # both roles heard the coordinator's bye
    assert not (tmp_path / "run" / "plan.json").exists()


def test_a_helper_refuses_a_plan_beyond_its_capacity(tmp_path):
    config = SMALL.replace(clients=1, helpers=1, round_timeout_s=5.0, register_timeout_s=20.0)
    message, errors = _threaded_run(tmp_path, ForgetfulHelper, 0.01, config)
    assert "helper0: ROLE_FAILED" in message and "helper helper0 has 0.01 MB but its clients' middle parts need" in message
    assert errors == [None, None]  # the helper reported its refusal and left on the coordinator's bye
