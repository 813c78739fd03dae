"""Artifact shipping over real sockets: the coordinator's Messenger answers ARTIFACT_REQUESTs with chunks, a role's
resolve() receives, verifies and caches them; a chunk corrupted in flight or naming another archive is refused by
name, nothing is cached, and another role's transfer from the same coordinator completes meanwhile."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from edgepsl.runtime.artifact_store import (ArtifactHashMismatchError, ArtifactStore, ChunkError, artifact_sha256)
from edgepsl.runtime.artifact_transfer import ArtifactSource, resolve
from edgepsl.runtime.channels import SERVER_INBOX, channel_config
from edgepsl.runtime.config import DEFAULT_ARTIFACT
from edgepsl.runtime.coordinator.messenger import Messenger
from edgepsl.runtime.coordinator_link import CoordinatorLink
from edgepsl.runtime.errors import RunAbortedError
from edgepsl.runtime.protocol import ArtifactRequest, ErrorReply, Register
from edgepsl.runtime.trace import Trace
from edgepsl.wire import Envelope, JobId, Message, MsgType, PeerChannel, ServerChannel

CHUNK = 64 << 10
CONNECT_S = 10.0
TIMEOUT_S = 10.0


class Coordinator:
    """A Messenger serving the default artifact in 64 KiB chunks to members client0 and client1, in a thread; chunks
    to a peer can be changed in flight by `tamper[peer](message)` (None: dropped)."""

    def __init__(self) -> None:
        self.server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=channel_config(False, SERVER_INBOX))
        self.source = ArtifactSource(DEFAULT_ARTIFACT, CHUNK)
        self.messenger = Messenger(self.server, "run", Trace(None, "coordinator"), self._watch, self.source)
        self.tamper: dict[str, Callable[[Message], Message | None]] = {}
        self.sent: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        real = self.server.send

        def send(peer: str, message: Message, **kwargs) -> None:
            if message.type is MsgType.ARTIFACT_CHUNK:
                self.sent[peer] = self.sent.get(peer, 0) + 1
                if peer in self.tamper:
                    message = self.tamper[peer](message)
            if message is not None:
                real(peer, message, **kwargs)

        self.server.send = send

    def _watch(self) -> None:
        if self.stop.is_set():
            raise RunAbortedError("test over")

    def link(self, name: str) -> CoordinatorLink:
        """A role's link, connected: its REGISTER reached the server (before the messenger serves)."""
        channel = PeerChannel(self.server.endpoint, name, insecure=True, config=channel_config())
        seq = iter(range(1, 10 ** 6))
        link = CoordinatorLink(channel, name, Register("client"), TIMEOUT_S, lambda: next(seq))
        deadline = time.monotonic() + CONNECT_S
        while time.monotonic() < deadline:
            link._register_once()
            item = self.server.recv(timeout=0.2)
            if isinstance(item, Envelope) and item.peer == name:
                self.messenger.members[name] = "client"
                return link
        raise AssertionError(f"{name} did not connect")

    def serve(self) -> None:
        """Answer requests in a thread until close()."""
        def loop() -> None:
            try:
                self.messenger.collect(lambda env: None, 1, "nothing", 60.0)
            except RunAbortedError:
                pass

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def coordinator():
    coord = Coordinator()
    yield coord
    coord.close()


def _flip_chunk(index: int):
    def tamper(message: Message) -> Message:
        if message.meta["index"] != index:
            return message
        data = message.tensors["data"].copy()
        data[100] ^= 0xFF
        return Message(message.type, message.job, {"data": data}, message.meta)
    return tamper


def _resolve_in_thread(info, link, store, out: dict) -> threading.Thread:
    def run() -> None:
        try:
            out["path"] = resolve(info, None, store, link, TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_chunk_corrupted_in_flight_is_refused_and_another_roles_transfer_completes(coordinator, tmp_path):
    links = {name: coordinator.link(name) for name in ("client0", "client1")}
    coordinator.tamper["client0"] = _flip_chunk(2)
    coordinator.serve()
    info = coordinator.source.info
    assert info.chunks >= 4
    results = {name: {} for name in links}
    threads = [_resolve_in_thread(info, links[name], ArtifactStore(tmp_path / name), results[name]) for name in links]
    for thread in threads:
        thread.join(timeout=4 * TIMEOUT_S)
    error = results["client0"].get("error")
    assert isinstance(error, ArtifactHashMismatchError), results["client0"]
    assert str(error).startswith(f"refused the artifact lenet5 ({info.sha256[:12]}...) from the coordinator: "
                                 f"ArtifactHashMismatchError: ")
    assert "corrupted or tampered with in transfer" in str(error)
    assert not (tmp_path / "client0").exists() or not any((tmp_path / "client0").iterdir())  # nothing cached
    path = results["client1"].get("path")
    assert path == tmp_path / "client1" / info.sha256 and artifact_sha256(path) == info.sha256, results["client1"]
    assert coordinator.sent == {"client0": info.chunks, "client1": info.chunks}
    for link in links.values():
        link.channel.close()


def test_a_chunk_of_another_archive_is_a_chunk_error(coordinator, tmp_path):
    link = coordinator.link("client0")
    other = "f" * 64

    def foreign(message: Message) -> Message:
        return Message(message.type, message.job, message.tensors, {**message.meta, "sha256": other})

    coordinator.tamper["client0"] = foreign
    coordinator.serve()
    with pytest.raises(ChunkError, match=r"ChunkError: chunk 0 of artifact .* names archive ffffffffffff\.\.\., not "
                                         r"the one being received"):
        resolve(coordinator.source.info, None, ArtifactStore(tmp_path / "cache"), link, TIMEOUT_S)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    link.channel.close()


def test_a_chunk_lost_in_flight_is_asked_for_again(coordinator, tmp_path):
    link = coordinator.link("client0")
    dropped: list[int] = []

    def drop_once(message: Message) -> Message | None:
        if message.meta["index"] == 1 and not dropped:
            dropped.append(1)
            return None
        return message

    coordinator.tamper["client0"] = drop_once
    coordinator.serve()
    info = coordinator.source.info
    path = resolve(info, None, ArtifactStore(tmp_path / "cache"), link, TIMEOUT_S)
    assert artifact_sha256(path) == info.sha256 and dropped == [1]
    assert coordinator.sent == {"client0": info.chunks + 1}
    link.channel.close()


def test_a_local_copy_or_a_cached_artifact_is_used_without_a_transfer(coordinator, tmp_path):
    link = coordinator.link("client0")
    coordinator.serve()
    info, store = coordinator.source.info, ArtifactStore(tmp_path / "cache")
    assert resolve(info, Path(DEFAULT_ARTIFACT), store, link, TIMEOUT_S) == Path(DEFAULT_ARTIFACT)
    assert coordinator.sent == {}
    first = resolve(info, None, store, link, TIMEOUT_S)
    assert coordinator.sent == {"client0": info.chunks}
    assert resolve(info, None, store, link, TIMEOUT_S) == first
    assert coordinator.sent == {"client0": info.chunks}
    link.channel.close()


def test_the_coordinator_refuses_a_request_for_another_artifact_or_chunk_by_name(coordinator):
    link = coordinator.link("client0")
    coordinator.serve()
    info = coordinator.source.info
    for request, text in ((ArtifactRequest("e" * 64, 0), "sha256 is eeeeeeeeeeee..., not this run's artifact"),
                          (ArtifactRequest(info.sha256, info.chunks), f"index is {info.chunks}, but the artifact has")):
        link.channel.send(request.encode(JobId("run", 0, "client0", int(time.time_ns()))))
        deadline = time.monotonic() + TIMEOUT_S
        reply = None
        while reply is None and time.monotonic() < deadline:
            item = link.channel.recv(timeout=0.2)
            if isinstance(item, Envelope):
                reply = item
        assert reply is not None and reply.message.type is MsgType.ERROR
        assert text in ErrorReply.decode(reply.message).reason
    assert coordinator.sent == {}
    link.channel.close()


def test_the_source_chunks_reassemble_to_the_artifact():
    source = ArtifactSource(DEFAULT_ARTIFACT, CHUNK)
    data = b"".join(source.answer(ArtifactRequest(source.info.sha256, k)).data.tobytes()
                    for k in range(source.info.chunks))
    assert len(data) == source.info.size and source.info.sha256 == artifact_sha256(DEFAULT_ARTIFACT)
    assert np.frombuffer(data, np.uint8).size == source.info.size
