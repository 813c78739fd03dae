"""Learning modes in real runs (docs/modes.md): local loss, the two-part split with labels on the helper, SmashMix.

The roles run in threads of this process with real sockets and segments, so every frame a client writes to a socket
is captured (PeerChannel's transmit path, below the codec) and inspected: in the U-shaped modes no label, one-hot
vector or raw input leaves a client; with labels = "helper" the labels leave it, in forward jobs only."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from edgepsl.runtime.checkpoint import load as ckpt_load
from edgepsl.runtime.client import Client, ClientOptions
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import Coordinator
from edgepsl.runtime.dataset import client_data
from edgepsl.runtime.errors import PayloadError, RunConfigError
from edgepsl.runtime.helper import Helper, HelperOptions
from edgepsl.runtime.protocol import CutShapes, ForwardJob
from edgepsl.segment import load_manifest
from edgepsl.wire import JobId, MsgType, PeerChannel
from edgepsl.wire.codec import ENCODE_LIMITS, decode
from tests.runtime.conftest import run_threaded, small_run

ROUNDS = 2
CLASSES = 10


class Capture:
    """Every frame list any client's PeerChannel hands to its socket, by client name (heartbeats included)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames: dict[str, list[list[bytes]]] = {}
        self.lock = threading.Lock()
        transmit, send_now = PeerChannel._transmit, PeerChannel._send_now

        def record(channel: PeerChannel, frames: list) -> None:
            if channel.name.startswith("client"):
                with self.lock:
                    self.frames.setdefault(channel.name, []).append([bytes(memoryview(f)) for f in frames])

        def _transmit(channel, target, frames, copy):
            record(channel, frames)
            return transmit(channel, target, frames, copy)

        def _send_now(channel, frames, what=""):
            record(channel, frames)
            return send_now(channel, frames, what)

        monkeypatch.setattr(PeerChannel, "_transmit", _transmit)
        monkeypatch.setattr(PeerChannel, "_send_now", _send_now)


def _run(run_dir: Path, config: RunConfig) -> list[dict]:
    """A coordinator here, helpers and clients in threads (insecure); the run's per-round records."""
    coordinator = Coordinator(config, run_dir)
    roles = [*(Helper(HelperOptions(f"helper{i}", coordinator.endpoint)) for i in range(config.helpers)),
             *(Client(ClientOptions(f"client{j}", coordinator.endpoint)) for j in range(config.clients))]
    summary = run_threaded(coordinator, roles)
    return summary.records


def _config(tmp_path: Path, **modes) -> RunConfig:
    return small_run(tmp_path, clients=2, helpers=1, rounds=ROUNDS, aggregate_every=ROUNDS, eval_every=ROUNDS,
                     **modes).config


def _batches(config: RunConfig) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Every client share's batches of the run, by data index then round (a name's index is the coordinator's)."""
    return [{r: client_data(config, index).batch(r) for r in range(config.rounds)} for index in range(config.clients)]


def _forbidden(batches: list[dict[int, tuple[np.ndarray, np.ndarray]]]) -> dict[str, list[bytes]]:
    """Byte patterns of every batch's raw inputs and of its labels as integers of any width and as one-hot rows."""
    inputs, labels = [], []
    for rounds in batches:
        for x, y in rounds.values():
            inputs += [x.tobytes(), x.astype(np.float16).tobytes()]
            labels += [y.astype(dtype).tobytes() for dtype in (np.int64, np.int32, np.int16, np.uint8)]
            labels += [np.eye(CLASSES, dtype=dtype)[y].tobytes() for dtype in (np.float32, np.float16, np.float64)]
    return {"input": inputs, "label": labels}


def _one_hot(array: np.ndarray) -> bool:
    """Whether a tensor is a batch of one-hot rows over the classes."""
    rows = array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, -1)
    return array.shape[-1:] == (CLASSES,) and bool(np.isin(rows, (0, 1)).all() and (rows.sum(axis=1) == 1).all())


def _inspect(capture: Capture, config: RunConfig, labels_allowed: bool) -> int:
    """Check every frame the clients sent; the number of forward jobs that carried labels."""
    batches = _batches(config)
    forbidden = _forbidden(batches)
    input_shape = batches[0][0][0].shape
    with_labels = frames_seen = 0
    for client, sent in capture.frames.items():
        for frames in sent:
            frames_seen += 1
            blob = b"".join(frames)
            try:
                message = decode(frames, ENCODE_LIMITS)
            except Exception:  # noqa: BLE001 - a heartbeat: its raw bytes are still searched below
                message = None
            forward = message is not None and message.type is MsgType.FORWARD
            assert not any(p in blob for p in forbidden["input"]), f"{client} sent a raw input"
            if message is not None:
                for name, tensor in message.tensors.items():
                    assert tuple(tensor.shape) != input_shape, f"{client} sent an input-shaped tensor {name!r}"
                    assert not _one_hot(np.asarray(tensor)), f"{client} sent one-hot rows in {name!r}"
                    if name == "labels":
                        assert labels_allowed and forward, f"{client} sent labels in a {message.type.value}"
                        assert any(np.array_equal(tensor, rounds[message.job.round][1]) for rounds in batches)
                        with_labels += 1
                    else:
                        # integer arrays: only a link probe's zero filler (a scalar is an optimizer's step count)
                        probe = message.type is MsgType.PROBE and not np.asarray(tensor).any()
                        assert not np.issubdtype(tensor.dtype, np.integer) or tensor.ndim == 0 or probe, \
                            f"{client} sent an integer array {name!r} in a {message.type.value}"
            if not (labels_allowed and forward):
                assert not any(p in blob for p in forbidden["label"]), f"{client} sent labels outside a forward job"
    assert frames_seen > 4 * config.clients * config.rounds  # jobs, reports, states, heartbeats: all were seen
    return with_labels


def _cut1_bytes(config: RunConfig) -> int:
    act = CutShapes.of(load_manifest(config.artifact), config.batch_size).act
    return int(np.prod(act.shape)) * act.dtype.itemsize


def test_u_shaped_modes_send_no_label_one_hot_or_input_and_local_loss_saves_exactly_the_cut1_gradients(
        tmp_path, monkeypatch):
    """SplitFed and LocSplitFed (local loss, helper weight 0) in real runs: every client frame is free of labels,
    one-hot rows and raw inputs; local loss sends the same bytes less one cut-1 gradient per client and round, and
    its checkpoint averages the aux head with part-1."""
    records = {}
    for mode in ("splitfed", "local-loss"):
        capture = Capture(monkeypatch)
        config = _config(tmp_path / mode, mode=mode)
        records[mode] = _run(tmp_path / mode, config)
        assert _inspect(capture, config, labels_allowed=False) == 0
    saved = [a["bytes"] - b["bytes"] for a, b in zip(records["splitfed"], records["local-loss"])]
    assert saved == [2 * _cut1_bytes(config)] * ROUNDS
    jobs = [job for job in records["local-loss"][-1]["jobs"] if job["kind"] == "bwd"]
    assert [job["bytes_down"] for job in jobs] == [0, 0]
    model = ckpt_load(tmp_path / "local-loss" / "checkpoint").model
    assert any(k.startswith("aux/m/") for k in model) and records["local-loss"][-1]["accuracy"] is not None


def test_the_two_part_split_sends_labels_only_in_forward_jobs_and_equals_the_u_shape(tmp_path, monkeypatch, caplog):
    """labels = "helper": each forward job carries its batch's labels (nothing else does), and the coordinator and
    every client warn of it at start; with part-3 per client on the helper the run trains exactly as the U-shape
    (same losses, same averaged model)."""
    capture = Capture(monkeypatch)
    config = _config(tmp_path / "two-part", labels="helper")
    with caplog.at_level(logging.WARNING):
        two_part = _run(tmp_path / "two-part", config)
    assert _inspect(capture, config, labels_allowed=True) == config.clients * ROUNDS
    warned = {r.getMessage().split(":")[0] for r in caplog.records if "weaker privacy" in r.getMessage()}
    assert warned == {"coordinator", "client0", "client1"}
    u_shape = _run(tmp_path / "u-shape", _config(tmp_path / "u-shape"))
    assert [m["loss"] for m in two_part] == [m["loss"] for m in u_shape]
    a, b = (ckpt_load(tmp_path / name / "checkpoint").model for name in ("two-part", "u-shape"))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_locfedmix_sl_trains_a_shared_model_with_smashmix_and_returns_nothing_to_its_clients(tmp_path, monkeypatch):
    """LocFedMix-SL (local loss + two-part + shared helper model + SmashMix): a client's bytes are its activations
    and labels only, the helper returns nothing, and its round ends after the SmashMix steps."""
    capture = Capture(monkeypatch)
    config = _config(tmp_path, mode="local-loss", labels="helper", helper_model="shared", smashmix_pairs=2)
    records = _run(tmp_path / "run", config)
    assert _inspect(capture, config, labels_allowed=True) == config.clients * ROUNDS
    labels = config.batch_size * 8  # int64 class indices
    assert [m["bytes"] for m in records] == [config.clients * (_cut1_bytes(config) + labels)] * ROUNDS
    assert all(job["bytes_down"] == 0 for m in records for job in m["jobs"])
    model = ckpt_load(tmp_path / "run" / "checkpoint").model
    assert any(k.startswith("aux/m/") for k in model) and any(k.startswith("part3/m/") for k in model)
    assert np.isfinite(records[-1]["accuracy"])


@pytest.mark.parametrize("keys, named", [
    ({"mode": "local"}, "mode"),
    ({"labels": "server"}, "labels"),
    ({"smashmix_pairs": 2}, "smashmix_pairs"),
    ({"helper_model": "shared"}, "helper_model"),
    ({"labels": "helper", "smashmix_pairs": 2}, "smashmix_pairs"),
    ({"labels": "helper", "helper_model": "shared", "smashmix_pairs": 1, "smashmix_alpha": 0.0}, "smashmix_alpha"),
    ({"local_loss_helper_weight": 0.5}, "local_loss_helper_weight"),
    ({"mode": "local-loss", "local_loss_helper_weight": -1.0}, "local_loss_helper_weight"),
    ({"labels": "helper", "smashmix_pairs": -1}, "smashmix_pairs"),
    ({"mode": "local-loss", "method": "hybrid"}, "method"),
    ({"local_loss_clients": ("client1",), "method": "hybrid"}, "method"),
    ({"mode": "local-loss", "local_loss_clients": ("client1",)}, "local_loss_clients"),
    ({"local_loss_clients": ("client1", "client1")}, "local_loss_clients"),
])
def test_invalid_mode_combinations_are_config_errors_naming_the_key(keys, named):
    with pytest.raises(RunConfigError, match=repr(named)):
        RunConfig(**keys)


def test_valid_mode_combinations_round_trip_through_toml(tmp_path):
    for config in (RunConfig(mode="local-loss", labels="helper", helper_model="shared", smashmix_pairs=3,
                             smashmix_alpha=0.5, local_loss_helper_weight=0.25),
                   RunConfig(local_loss_clients=("client0", "client3"), local_loss_helper_weight=0.5)):
        config.save(tmp_path / "run.toml")
        assert RunConfig.load(tmp_path / "run.toml") == config
    with pytest.raises(RunConfigError, match="'local_loss_clients' must be a tuple"):
        RunConfig.from_dict({"local_loss_clients": [1, 2]})


def test_local_loss_clients_train_with_local_loss_beside_splitfed_clients(tmp_path):
    """local_loss_clients = ["client1"] in a SplitFed run: only client1 gets no cut-1 gradient, and its aux head is
    averaged (over the local-loss clients alone) while part-1 is averaged over both."""
    config = _config(tmp_path, local_loss_clients=("client1",))
    records = _run(tmp_path / "run", config)
    cuts = CutShapes.of(load_manifest(config.artifact), config.batch_size)
    act, out = (int(np.prod(c.shape)) * c.dtype.itemsize for c in (cuts.act, cuts.out))
    assert [m["bytes"] for m in records] == [2 * 2 * (act + out) - act] * ROUNDS
    down = {job["client"]: job["bytes_down"] for m in records for job in m["jobs"] if job["kind"] == "bwd"}
    assert down == {"client0": act, "client1": 0}
    model = ckpt_load(tmp_path / "run" / "checkpoint").model
    assert any(k.startswith("aux/m/") for k in model) and np.isfinite(records[-1]["accuracy"])


def test_forward_job_labels_are_validated_against_the_mode():
    """Labels only when the run has them on the helper; then exactly (batch,) int64 class indices in range."""
    manifest, batch = load_manifest(RunConfig().artifact), 4
    u_shape, two_part = CutShapes.of(manifest, batch), CutShapes.of(manifest, batch, labels_on_helper=True)
    x = np.zeros(two_part.act.shape, np.float32)
    job = JobId("run", 0, "client0", 1)
    good = ForwardJob(7, tensor=x, labels=np.arange(batch, dtype=np.int64)).encode(job)
    assert np.array_equal(ForwardJob.decode(good, cuts=two_part).labels, np.arange(batch))
    with pytest.raises(PayloadError, match="labels = \"client\""):
        ForwardJob.decode(good, cuts=u_shape)
    with pytest.raises(PayloadError, match="exactly 'x' and 'labels'"):
        ForwardJob.decode(ForwardJob(7, tensor=x).encode(job), cuts=two_part)
    for labels, problem in ((np.arange(batch + 1, dtype=np.int64), "shape"), (np.arange(batch, dtype=np.float32), "dtype"),
                            (np.full(batch, CLASSES, np.int64), "0..9"), (np.full(batch, -1, np.int64), "0..9")):
        with pytest.raises(PayloadError, match=problem):
            ForwardJob.decode(ForwardJob(7, tensor=x, labels=labels).encode(job), cuts=two_part)


@pytest.mark.parametrize("labels", ["client", "helper"])
def test_local_loss_with_a_helper_weight_gets_the_cut1_gradient(tmp_path, labels):
    """local_loss_helper_weight > 0: the helper returns the cut-1 gradient (U-shape: as in SplitFed; two-part: the
    reply to the forward job), and the client's part-1 takes it as well as its local step."""
    config = _config(tmp_path, mode="local-loss", labels=labels, local_loss_helper_weight=0.5)
    records = _run(tmp_path / "run", config)
    cuts = CutShapes.of(load_manifest(config.artifact), config.batch_size)
    act, out = (int(np.prod(c.shape)) * c.dtype.itemsize for c in (cuts.act, cuts.out))
    per_client = 2 * act + config.batch_size * 8 if labels == "helper" else 2 * (act + out)
    assert [m["bytes"] for m in records] == [config.clients * per_client] * ROUNDS
    assert all(job["bytes_down"] > 0 for m in records for job in m["jobs"] if job["kind"] == "bwd")
