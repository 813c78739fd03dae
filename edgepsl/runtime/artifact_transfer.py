"""Ship the run's artifact over the authenticated wire at registration.

The coordinator names the artifact in every welcome (ArtifactInfo: its archive's sha256, size and chunk size). A
role uses a local copy whose archive has that hash (its --artifact directory, else its ArtifactStore cache); when it
has none, it asks the coordinator for the chunks one at a time (ArtifactRequest -> ArtifactChunk), so the coordinator
sends one bounded chunk per request, in between serving everyone else. The role reassembles them in order with
Assembler, verifies the hash, and caches the artifact by hash; a chunk that does not fit is a ChunkError, a tampered
archive an ArtifactHashMismatchError, and nothing is cached unless the hash matches.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edgepsl.runtime.artifact_store import (CHUNK_BYTES, ArchiveError, ArtifactStore, ArtifactTransferError, Assembler,
                                            ChunkError, artifact_sha256, chunks)
from edgepsl.runtime.coordinator_link import SLICE_S, CoordinatorLink
from edgepsl.runtime.errors import CommandArrived, PayloadError, RoleFailedError
from edgepsl.runtime.protocol import ArtifactChunk, ArtifactInfo, ArtifactRequest
from edgepsl.segment import load_manifest
from edgepsl.wire import MsgType

log = logging.getLogger("edgepsl.runtime.artifact")
RETRY_S = 2.0


class ArtifactSource:
    """The coordinator's side: the run's artifact packed once, one chunk per request."""

    def __init__(self, directory: str | Path, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.parts = list(chunks(directory, chunk_bytes))
        self.info = ArtifactInfo(self.parts[0].sha256, load_manifest(directory).model,
                                 sum(len(part.data) for part in self.parts), chunk_bytes)

    def answer(self, request: ArtifactRequest) -> ArtifactChunk:
        """The requested chunk; PayloadError when it names another artifact or a chunk past the last."""
        kind = ArtifactRequest.kind()
        if request.sha256 != self.info.sha256:
            raise PayloadError(kind, "sha256", f"is {request.sha256[:12]}..., not this run's artifact "
                                               f"{self.info.sha256[:12]}...")
        if request.index >= len(self.parts):
            raise PayloadError(kind, "index", f"is {request.index}, but the artifact has {len(self.parts)} chunks")
        part = self.parts[request.index]
        return ArtifactChunk(part.sha256, part.index, part.total, data=np.frombuffer(part.data, dtype=np.uint8))


def resolve(info: ArtifactInfo, local: Path | None, store: ArtifactStore, link: CoordinatorLink,
            timeout_s: float) -> Path:
    """The directory of the welcome's artifact: `local` if its archive has the hash, else the cached copy, else the
    coordinator's chunks, received, verified and cached (ArtifactTransferError subclasses name a refused transfer)."""
    if local is not None:
        try:
            if artifact_sha256(local) == info.sha256:
                return local
            log.warning("%s: the local artifact %s is not the run's (sha256 %s...); using the cache or the coordinator",
                        link.name, local, info.sha256[:12])
        except ArchiveError as exc:
            log.warning("%s: the local artifact is unusable (%s); using the cache or the coordinator", link.name, exc)
    cached = store.get(info.sha256)
    if cached is not None:
        return cached
    log.info("%s: receiving artifact %s (%s..., %d bytes in %d chunks) from the coordinator", link.name, info.name,
             info.sha256[:12], info.size, info.chunks)
    try:
        return store.put_archive(receive(info, link, timeout_s), info.sha256)
    except ArtifactTransferError as exc:
        raise type(exc)(f"refused the artifact {info.name} ({info.sha256[:12]}...) from the coordinator: "
                        f"{type(exc).__name__}: {exc}") from None


def receive(info: ArtifactInfo, link: CoordinatorLink, timeout_s: float) -> bytes:
    """Ask for every chunk in order and reassemble the verified archive; another command interrupts (CommandArrived),
    a chunk that does not fit is a ChunkError, an archive whose hash differs an ArtifactHashMismatchError."""
    assembler = Assembler(info.sha256, info.chunk_bytes, max_bytes=info.size)
    for index in range(info.chunks):
        assembler.add(_chunk(info, index, link, timeout_s).chunk())
    return assembler.archive()


def _chunk(info: ArtifactInfo, index: int, link: CoordinatorLink, timeout_s: float) -> ArtifactChunk:
    """Chunk `index`, asked for again every RETRY_S (a chunk the wire dropped); a late copy of an earlier chunk is
    skipped; RoleFailedError when none comes within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        link.send(ArtifactRequest(info.sha256, index), 0)
        retry = time.monotonic() + min(remaining, RETRY_S)
        while (wait := retry - time.monotonic()) > 0:
            env = link.wait(min(wait, SLICE_S))
            if env is None:
                continue
            if env.message.type is not MsgType.ARTIFACT_CHUNK:
                raise CommandArrived(env)
            try:
                chunk = ArtifactChunk.decode(env.message)
            except PayloadError as exc:
                raise ChunkError(f"chunk {index}: {exc}") from None
            if chunk.sha256 == info.sha256 and chunk.index < index:
                continue  # the answer to a repeated request for a chunk already received
            return chunk
    raise RoleFailedError(f"no chunk {index} of the artifact from the coordinator within {timeout_s:g} s")
