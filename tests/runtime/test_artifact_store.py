"""Artifact shipping on real files: a deterministic archive, chunked transfer and verified reassembly into a
content-addressed cache; a tampered, reordered or foreign chunk and a corrupted cache entry are refused by name."""
from __future__ import annotations

import io
import multiprocessing
import shutil
import tarfile
from concurrent.futures import ProcessPoolExecutor

import pytest

from edgepsl.runtime.artifact_store import (ArchiveError, ArtifactHashMismatchError, ArtifactStore, Assembler,
                                            ChunkError, artifact_sha256, chunks, default_cache_dir, pack,
                                            sha256_hex)
from edgepsl.runtime.config import DEFAULT_ARTIFACT
from edgepsl.segment import Segment, load_manifest

CHUNK = 64 * 1024


@pytest.fixture
def artifact(tmp_path):
    """A private copy of the default artifact with a stray file (not part of the artifact) beside it."""
    target = tmp_path / "lenet"
    shutil.copytree(DEFAULT_ARTIFACT, target)
    (target / "notes.txt").write_text("not part of the artifact")
    return target


def test_archive_is_deterministic_and_names_the_artifact(artifact, tmp_path):
    data = pack(artifact)
    assert pack(DEFAULT_ARTIFACT) == data and sha256_hex(data) == artifact_sha256(artifact)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert "notes.txt" not in tar.getnames() and "manifest.json" in tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_chunks_reassemble_into_the_cache_and_train(artifact, tmp_path):
    sha = artifact_sha256(artifact)
    pieces = list(chunks(artifact, CHUNK))
    assert len(pieces) > 2 and all(len(c.data) == CHUNK for c in pieces[:-1]) and 0 < len(pieces[-1].data) <= CHUNK
    assert {(c.total, c.sha256) for c in pieces} == {(len(pieces), sha)}
    store = ArtifactStore(tmp_path / "cache")
    assert store.get(sha) is None
    assembler = Assembler(sha, CHUNK)
    assert [assembler.add(c) for c in pieces] == [False] * (len(pieces) - 1) + [True]
    path = store.put_archive(assembler.archive(), sha)
    assert path == tmp_path / "cache" / sha and store.get(sha) == path
    manifest = load_manifest(path)
    assert manifest.files == load_manifest(artifact).files
    Segment(manifest, "part3", threads=1)
    assert store.put_dir(artifact) == (sha, path)


def test_a_tampered_chunk_is_refused_and_nothing_is_cached(artifact, tmp_path):
    sha = artifact_sha256(artifact)
    pieces = list(chunks(artifact, CHUNK))
    flipped = bytearray(pieces[1].data)
    flipped[100] ^= 0xFF
    pieces[1] = pieces[1]._replace(data=bytes(flipped))
    assembler = Assembler(sha, CHUNK)
    for chunk in pieces:
        assembler.add(chunk)
    with pytest.raises(ArtifactHashMismatchError, match="corrupted or tampered"):
        assembler.archive()
    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(ArtifactHashMismatchError):
        store.put_archive(b"".join(c.data for c in pieces), sha)
    assert store.get(sha) is None and list((tmp_path / "cache").glob("*")) == []


def test_chunks_that_do_not_fit_are_refused_and_leave_the_assembler_unchanged(artifact):
    sha = artifact_sha256(artifact)
    pieces = list(chunks(artifact, CHUNK))
    assembler = Assembler(sha, CHUNK)
    bad = [
        (pieces[1], "expected chunk 0 next"),
        (pieces[0]._replace(sha256="0" * 64), "names archive 000000000000"),
        (pieces[0]._replace(data=pieces[0].data[:-1]), "every chunk but the last holds exactly"),
        (pieces[0]._replace(total=10 ** 9), "exceeds the limit"),
    ]
    for chunk, message in bad:
        with pytest.raises(ChunkError, match=message):
            assembler.add(chunk)
    assembler.add(pieces[0])
    with pytest.raises(ChunkError, match="differs from the first chunk's"):
        assembler.add(pieces[1]._replace(total=len(pieces) + 1))
    with pytest.raises(ChunkError, match="expected chunk 1 next"):
        assembler.add(pieces[0])
    with pytest.raises(ChunkError, match="incomplete: 1 of"):
        assembler.archive()
    for chunk in pieces[1:]:
        assembler.add(chunk)
    assert sha256_hex(assembler.archive()) == sha


def test_unsafe_archives_and_corrupted_cache_entries(artifact, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data = buffer.getvalue()
    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(ArchiveError, match="not a plain file name"):
        store.put_archive(data, sha256_hex(data))
    assert not (tmp_path / "evil").exists()
    sha, path = store.put_dir(artifact)
    (path / "part2.npz").write_bytes(b"replaced")
    assert store.get(sha) is None
    assert store.put_dir(artifact) == (sha, path) and store.get(sha) == path
    with pytest.raises(ArchiveError, match="cannot pack"):
        pack(tmp_path / "cache")


def test_cache_directory_defaults_per_user_and_is_overridable(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEPSL_ARTIFACT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "edgepsl" / "artifacts"
    monkeypatch.setenv("EDGEPSL_ARTIFACT_CACHE", str(tmp_path / "mine"))
    assert ArtifactStore().root == tmp_path / "mine"


def _put(root: str, data: bytes, sha: str) -> str:
    """One process caching an archive (for the concurrency test)."""
    return str(ArtifactStore(root).put_archive(data, sha))


def test_processes_caching_the_same_artifact_at_once_share_one_valid_entry(artifact, tmp_path):
    """The roles of one machine share its cache: none removes an entry another placed (or is loading)."""
    data = pack(artifact)
    sha = sha256_hex(data)
    root = tmp_path / "cache"
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("fork")) as pool:
        paths = set(pool.map(_put, [str(root)] * 8, [data] * 8, [sha] * 8))
    assert paths == {str(root / sha)}
    assert [p.name for p in root.iterdir()] == [sha]  # no staging directory left behind
    assert ArtifactStore(root).get(sha) == root / sha
    Segment(load_manifest(root / sha), "part2", threads=1)
