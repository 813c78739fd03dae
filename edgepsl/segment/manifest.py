"""Read and check a segment artifact's manifest.json: format, fields, and the sha256 of every file."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepsl.segment import names
from edgepsl.segment.errors import ArtifactError, SegmentInputError
from edgepsl.segment.losses import CROSS_ENTROPY, Loss, UnknownLossError, get_loss


# The buffers torch's BatchNorm layers carry (exported as the segment's buffers, named by their module path)
BATCH_NORM_BUFFERS = ("running_mean", "running_var")


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's name, shape (None marks the dynamic batch axis) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def check(self, array: object, what: str) -> np.ndarray:
        """The array if it matches this spec; SegmentInputError naming the mismatch otherwise."""
        if not isinstance(array, np.ndarray):
            raise SegmentInputError(f"{what} must be a numpy array of {self.dtype.name}, got {type(array).__name__}")
        if array.dtype != self.dtype:
            raise SegmentInputError(f"{what} must have dtype {self.dtype.name}, got {array.dtype.name}")
        if array.ndim != len(self.shape) or any(s is not None and s != d for s, d in zip(self.shape, array.shape)):
            want = "x".join("B" if s is None else str(s) for s in self.shape)
            raise SegmentInputError(f"{what} must have shape {want} (B = batch), got {'x'.join(map(str, array.shape))}")
        if any(s is None and d < 1 for s, d in zip(self.shape, array.shape)):
            raise SegmentInputError(f"{what} has an empty batch")
        return array


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph file and its declared inputs and outputs."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the artifact: role, blocks, interface tensors, parameters, buffers and graphs."""

    name: str
    role: str
    blocks: tuple[int, int]
    input: TensorSpec
    output: TensorSpec
    params: tuple[TensorSpec, ...]
    buffers: tuple[TensorSpec, ...]
    saved: tuple[str, ...]
    graphs: dict[str, GraphSpec]
    state: str


@dataclass(frozen=True)
class AuxHeadSpec:
    """The auxiliary head of local-loss training: a last-role segment (train and eval graphs, its own state) fed by
    the output of segment `after`, trained with the manifest's loss."""

    segment: SegmentSpec
    after: str
    loss: str


@dataclass(frozen=True)
class Manifest:
    """A checked artifact manifest; paths resolve against `directory`."""

    directory: Path
    model: str
    cuts: tuple[int, ...]
    num_blocks: int
    num_classes: int
    opset: int
    exporter: dict[str, str]
    segments: tuple[SegmentSpec, ...]
    files: dict[str, str]
    loss: Loss
    aux_head: AuxHeadSpec | None = None

    @property
    def input(self) -> TensorSpec:
        """The model's input: the first segment's input tensor (None marks the batch axis)."""
        return self.segments[0].input

    @property
    def labels(self) -> TensorSpec:
        """A batch of labels as the last segment's train graph takes them (dtype and shape set by the loss)."""
        return self.loss_labels(self.segments[-1])

    @property
    def batch_statistics(self) -> bool:
        """Whether a segment of the model normalises with batch statistics in training: a BatchNorm, which the
        exporter gives running_mean and running_var buffers."""
        return any(b.name.rsplit(".", 1)[-1] in BATCH_NORM_BUFFERS for seg in self.segments for b in seg.buffers)

    @property
    def metric(self) -> str:
        """Name of the evaluation metric that fits the loss: accuracy, mse or label_accuracy."""
        return self.loss.metric

    def loss_labels(self, segment: SegmentSpec) -> TensorSpec:
        """The labels input of a last segment's train graph."""
        return TensorSpec(names.LABELS, self.loss.label_shape(segment.output.shape), self.loss.label_dtype)

    @property
    def all_segments(self) -> tuple[SegmentSpec, ...]:
        """The model's segments, then the aux head's when there is one."""
        return self.segments + ((self.aux_head.segment,) if self.aux_head is not None else ())

    def segment(self, name: str) -> SegmentSpec:
        """The named segment (or the aux head, named `aux`); ArtifactError listing the segments otherwise."""
        for seg in self.all_segments:
            if seg.name == name:
                return seg
        hint = "; re-export with --aux-head auto for local-loss training" if name == names.AUX else ""
        raise ArtifactError(f"artifact {self.directory} has no segment {name!r}; "
                            f"it has {', '.join(s.name for s in self.all_segments)}{hint}")

    def path(self, file: str) -> Path:
        """Absolute path of a file of the artifact."""
        return self.directory / file


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    """obj[key], or ArtifactError naming the missing field."""
    if not isinstance(obj, dict) or key not in obj:
        raise ArtifactError(f"manifest: {where} lacks the field {key!r}")
    return obj[key]


def _tensor(obj: dict[str, Any], where: str) -> TensorSpec:
    """A TensorSpec from its manifest entry."""
    try:
        dtype = np.dtype(_field(obj, "dtype", where))
    except TypeError as exc:
        raise ArtifactError(f"manifest: {where} has an unknown dtype") from exc
    shape = tuple(None if d is None else int(d) for d in _field(obj, "shape", where))
    return TensorSpec(str(_field(obj, "name", where)), shape, dtype)


def _segment(obj: dict[str, Any], index: int) -> SegmentSpec:
    """A SegmentSpec from its manifest entry, checking role and graph set."""
    where = f"segment {index}"
    name = str(_field(obj, "name", where))
    where = f"segment {name!r}"
    role = _field(obj, "role", where)
    if role not in names.ROLES:
        raise ArtifactError(f"manifest: {where} has role {role!r}; expected one of {', '.join(names.ROLES)}")
    graphs_obj = _field(obj, "graphs", where)
    graphs = {}
    for graph in names.GRAPHS_BY_ROLE[role]:
        g = _field(graphs_obj, graph, f"{where} graphs")
        gwhere = f"{where} {graph} graph"
        graphs[graph] = GraphSpec(str(_field(g, "file", gwhere)),
                                  tuple(_tensor(t, gwhere) for t in _field(g, "inputs", gwhere)),
                                  tuple(_tensor(t, gwhere) for t in _field(g, "outputs", gwhere)))
    return SegmentSpec(
        name=name, role=role, blocks=tuple(int(b) for b in _field(obj, "blocks", where)),  # type: ignore[arg-type]
        input=_tensor(_field(obj, "input", where), where), output=_tensor(_field(obj, "output", where), where),
        params=tuple(_tensor(t, f"{where} params") for t in _field(obj, "params", where)),
        buffers=tuple(_tensor(t, f"{where} buffers") for t in _field(obj, "buffers", where)),
        saved=tuple(str(s) for s in _field(obj, "saved", where)), graphs=graphs,
        state=str(_field(obj, "state", where)))


def _aux_head(obj: dict[str, Any], segments: tuple[SegmentSpec, ...]) -> AuxHeadSpec | None:
    """The aux head entry (None when absent): a last-role segment named `aux` after the first segment, whose input is
    that segment's output (its loss is checked with the labels)."""
    entry = obj.get("aux_head")
    if entry is None:
        return None
    role, name = _field(entry, "role", "the aux head"), _field(entry, "name", "the aux head")
    if name != names.AUX or role != names.LAST:
        raise ArtifactError(f"manifest: the aux head must be a {names.LAST!r} segment named {names.AUX!r}, got "
                            f"{role!r} {name!r}")
    spec = _segment(entry, len(segments))
    after = str(_field(entry, "after", "the aux head"))
    first = segments[0]
    if after != first.name or spec.input.shape != first.output.shape or spec.input.dtype != first.output.dtype:
        raise ArtifactError(f"manifest: the aux head must follow the first segment {first.name!r} and take its "
                            f"output {first.output.shape}; it follows {after!r} with input {spec.input.shape}")
    return AuxHeadSpec(spec, after, str(_field(entry, "loss", "the aux head")))


def _loss(obj: dict[str, Any], path: Path) -> Loss:
    """The manifest's loss (cross-entropy when absent: artifacts exported before losses were recorded)."""
    try:
        return get_loss(str(obj.get("loss", CROSS_ENTROPY)))
    except UnknownLossError as exc:
        raise ArtifactError(f"{path}: {exc}; this edgepsl may be older than the exporter") from None


def _check_labels(manifest: Manifest) -> None:
    """Every last segment's train graph (the aux head's too, which must have the manifest's loss) takes labels of the
    dtype the manifest's loss needs."""
    for seg in manifest.all_segments:
        if seg.role != names.LAST:
            continue
        declared = next((t for t in seg.graphs[names.TRAIN].inputs if t.name == names.LABELS), None)
        want = manifest.loss_labels(seg)
        if declared is None or declared.dtype != want.dtype or len(declared.shape) != len(want.shape):
            raise ArtifactError(f"artifact {manifest.directory}: segment {seg.name!r}'s train graph does not take "
                                f"{want.dtype.name} labels of rank {len(want.shape)} as loss {manifest.loss.name!r} "
                                f"needs; re-export it")
    aux = manifest.aux_head
    if aux is not None and aux.loss != manifest.loss.name:
        raise ArtifactError(f"artifact {manifest.directory}: the aux head's loss {aux.loss!r} differs from the model's "
                            f"{manifest.loss.name!r}; re-export it")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_files(manifest: Manifest) -> None:
    """Every referenced file is listed, present and has the listed sha256."""
    segments = manifest.all_segments
    referenced = {g.file for s in segments for g in s.graphs.values()} | {s.state for s in segments}
    unlisted = sorted(referenced - set(manifest.files))
    if unlisted:
        raise ArtifactError(f"manifest: files {unlisted} are used but have no sha256 entry")
    for file, expected in manifest.files.items():
        path = manifest.path(file)
        if os.sep in file or file.startswith(".") or not path.is_file():
            raise ArtifactError(f"artifact {manifest.directory}: file {file!r} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(f"artifact {manifest.directory}: file {file!r} is corrupt or was replaced "
                                f"(sha256 {actual[:12]}..., manifest says {str(expected)[:12]}...); re-export it")


def load_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read manifest.json of an artifact directory and check its format, fields and file hashes."""
    root = Path(directory)
    path = root / names.MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(f"{root} is not a segment artifact: {names.MANIFEST_FILE} is missing "
                            f"(export one with `edgepsl export`)")
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != names.FORMAT_NAME:
        raise ArtifactError(f"{path} is not an edgepsl segment manifest (format must be {names.FORMAT_NAME!r})")
    version = obj.get("format_version")
    if version != names.FORMAT_VERSION:
        raise ArtifactError(f"{path} has format_version {version!r}; this edgepsl reads version "
                            f"{names.FORMAT_VERSION}; re-export the artifact")
    segments = _field(obj, "segments", "the manifest")
    if not isinstance(segments, list) or not segments:
        raise ArtifactError(f"{path} lists no segments")
    files = _field(obj, "files", "the manifest")
    if not isinstance(files, dict):
        raise ArtifactError(f"{path}: 'files' must map file names to sha256 digests")
    specs = tuple(_segment(s, i) for i, s in enumerate(segments))
    manifest = Manifest(
        directory=root, model=str(_field(obj, "model", "the manifest")),
        cuts=tuple(int(c) for c in _field(obj, "cuts", "the manifest")),
        num_blocks=int(_field(obj, "num_blocks", "the manifest")),
        num_classes=int(_field(obj, "num_classes", "the manifest")),
        opset=int(_field(obj, "opset", "the manifest")),
        exporter={str(k): str(v) for k, v in _field(obj, "exporter", "the manifest").items()},
        segments=specs, files={str(k): str(v) for k, v in files.items()}, loss=_loss(obj, path),
        aux_head=_aux_head(obj, specs),
    )
    _check_labels(manifest)
    _check_files(manifest)
    return manifest
