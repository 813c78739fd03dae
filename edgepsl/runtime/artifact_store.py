"""Ship a segment artifact to a role that lacks it: a deterministic archive named by its sha256, bounded chunks
and their verified reassembly, and a per-user cache of artifacts by hash.

    sha = artifact_sha256(directory)                       # the coordinator names the run's artifact
    for chunk in chunks(directory, CHUNK_BYTES): send(chunk)   # Chunk(index, total, sha256, data)
    assembler = Assembler(sha, CHUNK_BYTES)                 # the receiving role
    for chunk in received: assembler.add(chunk)             # ChunkError on a bad index, size, total or hash name
    path = ArtifactStore().put_archive(assembler.archive(), sha)   # ArtifactHashMismatchError if tampered
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple

from edgepsl.errors import EdgePSLError
from edgepsl.segment import names
from edgepsl.segment.errors import ArtifactError
from edgepsl.segment.manifest import load_manifest

CHUNK_BYTES = 1 << 20
MAX_ARCHIVE_BYTES = 4 << 30
CACHE_ENV = "EDGEPSL_ARTIFACT_CACHE"
PLACE_TRIES = 3


class ArtifactTransferError(EdgePSLError):
    """An artifact transfer or cache entry is refused; the message says which chunk, hash or file."""


class ChunkError(ArtifactTransferError):
    """A chunk does not belong where it claims: wrong archive hash, index out of order, wrong total or size."""


class ArtifactHashMismatchError(ArtifactTransferError):
    """The reassembled (or cached) archive's sha256 is not the one announced: corrupted or tampered with."""


class ArchiveError(ArtifactTransferError):
    """An archive is not a flat artifact: unsafe member names, links, directories, or it fails its manifest."""


class Chunk(NamedTuple):
    """One piece of an archive: its index, the number of pieces, the whole archive's sha256, and the bytes."""

    index: int
    total: int
    sha256: str
    data: bytes


def _artifact_files(directory: Path) -> list[str]:
    """The files an artifact consists of (manifest.json and every file it lists), its hashes checked."""
    try:
        manifest = load_manifest(directory)
    except ArtifactError as exc:
        raise ArchiveError(f"cannot pack {directory}: {exc}") from exc
    return sorted({names.MANIFEST_FILE, *manifest.files})


def pack(artifact_dir: str | os.PathLike[str]) -> bytes:
    """A deterministic, uncompressed tar of the artifact (sorted names, zero times and owners, mode 0644): the same
    files always give the same bytes, so its sha256 names the artifact."""
    directory = Path(artifact_dir)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in _artifact_files(directory):
            data = (directory / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def artifact_sha256(artifact_dir: str | os.PathLike[str]) -> str:
    """The artifact's identity: the sha256 of its deterministic archive."""
    return sha256_hex(pack(artifact_dir))


def chunks(artifact_dir: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """The artifact's archive in pieces of chunk_bytes (the last may be shorter), each naming the archive's sha256."""
    if chunk_bytes < 1:
        raise ChunkError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    data = pack(artifact_dir)
    digest, total = sha256_hex(data), -(-len(data) // chunk_bytes)
    for index in range(total):
        yield Chunk(index, total, digest, data[index * chunk_bytes:(index + 1) * chunk_bytes])


class Assembler:
    """Reassembles one archive from its chunks in order, checking each chunk's hash name, index, total and size."""

    def __init__(self, sha256: str, chunk_bytes: int = CHUNK_BYTES, max_bytes: int = MAX_ARCHIVE_BYTES) -> None:
        if chunk_bytes < 1 or max_bytes < 1:
            raise ChunkError(f"chunk_bytes and max_bytes must be >= 1, got {chunk_bytes}, {max_bytes}")
        self.sha256, self.chunk_bytes, self.max_bytes = sha256, chunk_bytes, max_bytes
        self.total: int | None = None
        self._parts: list[bytes] = []

    @property
    def done(self) -> bool:
        """Whether every chunk has arrived."""
        return self.total is not None and len(self._parts) == self.total

    def add(self, chunk: Chunk) -> bool:
        """Accept the next chunk; True once the last has arrived. ChunkError (state unchanged) if it does not fit."""
        index, total, sha256, data = chunk
        where = f"chunk {index} of artifact {self.sha256[:12]}..."
        if sha256 != self.sha256:
            raise ChunkError(f"{where} names archive {str(sha256)[:12]}..., not the one being received")
        if self.total is None and not (isinstance(total, int) and 1 <= total and
                                       (total - 1) * self.chunk_bytes < self.max_bytes):
            raise ChunkError(f"{where}: a total of {total!r} chunks of {self.chunk_bytes} bytes exceeds the limit "
                             f"of {self.max_bytes} bytes")
        if self.total is not None and total != self.total:
            raise ChunkError(f"{where}: total {total!r} differs from the first chunk's {self.total}")
        if index != len(self._parts):
            raise ChunkError(f"{where}: expected chunk {len(self._parts)} next (chunks arrive in order, once)")
        last = index == total - 1
        if not isinstance(data, (bytes, bytearray, memoryview)) or \
                not (0 < len(data) <= self.chunk_bytes if last else len(data) == self.chunk_bytes):
            size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else type(data).__name__
            raise ChunkError(f"{where}: {size} bytes; every chunk but the last holds exactly {self.chunk_bytes} "
                             f"bytes, the last 1..{self.chunk_bytes}")
        self.total = total
        self._parts.append(bytes(data))
        return self.done

    def archive(self) -> bytes:
        """The whole archive, once complete and its sha256 is the announced one."""
        if not self.done:
            raise ChunkError(f"artifact {self.sha256[:12]}... is incomplete: {len(self._parts)} of "
                             f"{self.total if self.total is not None else '?'} chunks received")
        data = b"".join(self._parts)
        verify_archive(data, self.sha256)
        return data


def verify_archive(data: bytes, sha256: str) -> None:
    """ArtifactHashMismatchError unless sha256(data) is `sha256`."""
    actual = sha256_hex(data)
    if actual != sha256:
        raise ArtifactHashMismatchError(f"artifact archive has sha256 {actual[:12]}..., expected {sha256[:12]}...: "
                                        f"it was corrupted or tampered with in transfer; refused")


def unpack(data: bytes, target: Path) -> None:
    """Extract a flat artifact archive into an empty directory: regular files with plain names only."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            seen: set[str] = set()
            for member in members:
                if not member.isfile() or "/" in member.name or member.name.startswith(".") or member.name in seen:
                    raise ArchiveError(f"artifact archive member {member.name!r} is not a plain file name")
                seen.add(member.name)
            for member in members:
                source = tar.extractfile(member)
                (target / member.name).write_bytes(source.read() if source is not None else b"")
    except tarfile.TarError as exc:
        raise ArchiveError(f"artifact archive is not a readable tar: {exc}") from exc


def default_cache_dir() -> Path:
    """$EDGEPSL_ARTIFACT_CACHE, else $XDG_CACHE_HOME/edgepsl/artifacts, else ~/.cache/edgepsl/artifacts."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgepsl" / "artifacts"


class ArtifactStore:
    """A content-addressed cache of artifacts: ROOT/<sha256>/ holds the artifact whose archive has that sha256."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, sha256: str) -> Path:
        """Where the artifact of this hash lives (present or not)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ArtifactTransferError(f"{sha256!r} is not a hex sha256")
        return self.root / sha256

    def get(self, sha256: str) -> Path | None:
        """The cached artifact's directory if present and its archive still has this hash, else None."""
        directory = self.path(sha256)
        if not directory.is_dir():
            return None
        try:
            return directory if artifact_sha256(directory) == sha256 else None
        except ArchiveError:
            return None

    def put_archive(self, data: bytes, sha256: str) -> Path:
        """Verify an archive's hash, unpack it, check its manifest and file hashes, and move it into the cache.

        Several processes (the roles of one machine) may cache the same artifact at once: the entry appears by one
        rename of a complete directory, a valid entry is never removed (a process that finds one keeps it and drops
        its own copy), and only an entry that fails its hash is moved aside and replaced."""
        verify_archive(data, sha256)
        target = self.path(sha256)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}.", dir=self.root))
        try:
            unpack(data, staging)
            if artifact_sha256(staging) != sha256:
                raise ArchiveError(f"artifact {sha256[:12]}... unpacks to files whose archive differs "
                                   f"(extra or missing files)")
            staging.chmod(0o755)
            if not self._place(staging, target, sha256):
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def _place(self, staging: Path, target: Path, sha256: str) -> bool:
        """Rename a verified staging directory to the entry; False when a valid entry is there already."""
        for _ in range(PLACE_TRIES):
            try:
                staging.rename(target)
                return True
            except OSError:
                if self.get(sha256) is not None:
                    return False  # another process cached the same artifact meanwhile: keep its entry
                if target.exists():  # a damaged entry: out of the way in one rename, then removed
                    aside = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}.damaged.", dir=self.root))
                    try:
                        target.rename(aside / "entry")
                    except OSError:
                        pass  # another process moved it first
                    shutil.rmtree(aside, ignore_errors=True)
        raise ArtifactTransferError(f"cannot place artifact {sha256[:12]}... in the cache {self.root}")

    def put_dir(self, artifact_dir: str | os.PathLike[str]) -> tuple[str, Path]:
        """Cache a local artifact directory; (its sha256, its cached directory)."""
        data = pack(artifact_dir)
        digest = sha256_hex(data)
        return digest, self.get(digest) or self.put_archive(data, digest)
