"""A segment on onnxruntime: forward/backward per job, fused train step (last segment), evaluation, state."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from edgepsl.segment import names
from edgepsl.segment.errors import (ArtifactError, SegmentError, SegmentInputError, SegmentRoleError, StateError,
                                    UnknownJobError)
from edgepsl.segment.losses import BCE_LOGITS
from edgepsl.segment.manifest import Manifest, SegmentSpec, TensorSpec, load_manifest
from edgepsl.segment.session import DEFAULT_PROVIDERS, open_session


@dataclass
class BackwardResult:
    """Gradient w.r.t. the segment input (None for a first segment) and parameter gradients by name."""

    grad_in: np.ndarray | None
    grads: dict[str, np.ndarray]


@dataclass
class TrainResult:
    """Loss, gradient w.r.t. the segment input, and parameter gradients of a last segment's train step."""

    loss: float
    grad_in: np.ndarray
    grads: dict[str, np.ndarray]


def _load_state(manifest: Manifest, spec: SegmentSpec) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Initial parameters and buffers from the segment's .npz, checked against the manifest."""
    try:
        with np.load(manifest.path(spec.state), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{manifest.path(spec.state)} is not a readable .npz: {exc}") from exc
    params, buffers = {}, {}
    for prefix, specs, target in ((names.PARAM, spec.params, params), (names.BUFFER, spec.buffers, buffers)):
        for t in specs:
            key = prefix + t.name
            if key not in arrays:
                raise ArtifactError(f"{manifest.path(spec.state)} lacks {key!r}")
            array = np.array(arrays[key], dtype=t.dtype, order="C")
            if array.shape != t.shape:
                raise ArtifactError(f"{manifest.path(spec.state)}: {key!r} has shape {array.shape}, manifest says {t.shape}")
            target[t.name] = array
    return params, buffers


class Segment:
    """One segment of an artifact with its own parameters, buffers and per-job saved tensors."""

    def __init__(self, artifact: str | os.PathLike[str] | Manifest, name: str, threads: int | None = None,
                 providers: Sequence[str] = DEFAULT_PROVIDERS) -> None:
        self.manifest = artifact if isinstance(artifact, Manifest) else load_manifest(artifact)
        self.spec = self.manifest.segment(name)
        self.params, self.buffers = _load_state(self.manifest, self.spec)
        self._param_specs = {t.name: t for t in self.spec.params}
        self._buffer_specs = {t.name: t for t in self.spec.buffers}
        self._sessions: dict[str, ort.InferenceSession] = {}
        for graph, gspec in self.spec.graphs.items():
            session = open_session(str(self.manifest.path(gspec.file)), threads, providers)
            declared = [t.name for t in gspec.inputs], [t.name for t in gspec.outputs]
            actual = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
            if sorted(declared[0]) != sorted(actual[0]) or declared[1] != actual[1]:
                raise ArtifactError(f"{gspec.file}: graph inputs/outputs do not match the manifest")
            self._sessions[graph] = session
        self._input_names = {g: [i.name for i in s.get_inputs()] for g, s in self._sessions.items()}
        self._output_names = {g: [o.name for o in s.get_outputs()] for g, s in self._sessions.items()}
        self._jobs: dict[Hashable, dict[str, np.ndarray]] = {}
        self._labels = self.manifest.loss_labels(self.spec)

    @property
    def name(self) -> str:
        """The segment's name, e.g. part2."""
        return self.spec.name

    @property
    def role(self) -> str:
        """first, middle or last."""
        return self.spec.role

    @property
    def pending_jobs(self) -> list[Hashable]:
        """Job ids whose forward ran and whose backward has not."""
        return list(self._jobs)

    def saved_tensors(self, job_id: Hashable) -> dict[str, np.ndarray]:
        """The tensors held for one in-flight job, by backward-graph input name (read-only use)."""
        return dict(self._job(job_id))

    def saved_bytes(self, job_id: Hashable) -> int:
        """Bytes held for one in-flight job (its input and saved tensors)."""
        return sum(a.nbytes for a in self._job(job_id).values())

    def _job(self, job_id: Hashable) -> dict[str, np.ndarray]:
        """The saved tensors of a pending job; UnknownJobError otherwise."""
        try:
            return self._jobs[job_id]
        except (KeyError, TypeError):
            raise UnknownJobError(f"segment {self.name}: no pending forward for job {job_id!r} "
                                  f"({len(self._jobs)} pending)") from None

    def _require(self, *roles: str) -> None:
        """SegmentRoleError unless this segment has one of the roles."""
        if self.role not in roles:
            raise SegmentRoleError(f"segment {self.name} is a {self.role} segment; this call needs a "
                                   f"{' or '.join(roles)} segment")

    def _check_x(self, x: object, training: bool) -> np.ndarray:
        """The input if it matches the segment input spec (and a BatchNorm batch has two or more samples)."""
        array = self.spec.input.check(x, f"segment {self.name} input")
        if training and self.buffers and array.shape[0] < 2:
            raise SegmentInputError(f"segment {self.name} has BatchNorm: a training batch needs at least 2 samples")
        return array

    def _run(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph, feeding parameters and buffers by name; SegmentError if onnxruntime fails."""
        full = {}
        for name in self._input_names[graph]:
            if name.startswith(names.PARAM):
                full[name] = self.params[name[len(names.PARAM):]]
            elif name.startswith(names.BUFFER):
                full[name] = self.buffers[name[len(names.BUFFER):]]
            else:
                full[name] = feeds[name]
        try:
            outputs = self._sessions[graph].run(None, full)
        except Exception as exc:
            raise SegmentError(f"segment {self.name}: onnxruntime failed in the {graph} graph: {exc}") from exc
        return dict(zip(self._output_names[graph], outputs))

    def _update_buffers(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Take the new BatchNorm running statistics (0-d buffers come back as shape [1])."""
        for name, spec in self._buffer_specs.items():
            self.buffers[name] = outputs[names.NEW_BUFFER + name].reshape(spec.shape)

    @staticmethod
    def _grads(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Parameter gradients by parameter name."""
        return {k[len(names.GRAD):]: v for k, v in outputs.items() if k.startswith(names.GRAD)}

    def forward(self, job_id: Hashable, x: np.ndarray) -> np.ndarray:
        """Training-mode forward of a first or middle segment; keeps what the backward of `job_id` needs."""
        self._require(names.FIRST, names.MIDDLE)
        if job_id in self._jobs:
            raise SegmentInputError(f"segment {self.name}: job {job_id!r} already has a pending forward")
        x = self._check_x(x, training=True)
        outputs = self._run(names.FORWARD, {names.X: x})
        keep = {**outputs, names.X: x}
        self._jobs[job_id] = {k: keep[k] for k in self._input_names[names.BACKWARD] if k in keep}
        self._update_buffers(outputs)
        return outputs[names.OUT]

    def backward(self, job_id: Hashable, grad_out: np.ndarray, release: bool = True) -> BackwardResult:
        """Gradients for a pending job from the gradient of its output; releases the job's saved tensors unless
        `release` is False (a second gradient contribution will follow, e.g. the helper's in local-loss mode: the
        backward is linear in grad_out, so two calls give the gradients of the summed output gradients)."""
        self._require(names.FIRST, names.MIDDLE)
        saved = self._job(job_id)
        batch = saved[names.X].shape[0]
        want = TensorSpec(names.GRAD_OUT, (batch, *self.spec.output.shape[1:]), self.spec.output.dtype)
        grad_out = want.check(grad_out, f"segment {self.name} grad_out of job {job_id!r}")
        outputs = self._run(names.BACKWARD, {**saved, names.GRAD_OUT: grad_out})
        if release:
            del self._jobs[job_id]
        return BackwardResult(outputs.get(names.GRAD_IN), self._grads(outputs))

    def drop(self, job_id: Hashable) -> None:
        """Forget a pending job without a backward (e.g. a client that left)."""
        self._job(job_id)
        del self._jobs[job_id]

    def train_step(self, x: np.ndarray, labels: np.ndarray) -> TrainResult:
        """Last segment: forward, the manifest's loss (mean over the batch) and backward in one graph run."""
        self._require(names.LAST)
        x = self._check_x(x, training=True)
        labels = self.check_labels(labels, x.shape[0])
        outputs = self._run(names.TRAIN, {names.X: x, names.LABELS: labels})
        self._update_buffers(outputs)
        return TrainResult(float(outputs[names.LOSS]), outputs[names.GRAD_IN], self._grads(outputs))

    def check_labels(self, labels: object, batch: int) -> np.ndarray:
        """Last segment: the labels if they suit its train step for a batch of `batch` (dtype, shape, values);
        SegmentInputError otherwise (e.g. checked by a helper before it runs part-2 of a two-part step)."""
        self._require(names.LAST)
        checked = self._labels.check(labels, f"segment {self.name} labels")
        if checked.shape[0] != batch:
            raise SegmentInputError(f"segment {self.name}: {checked.shape[0]} labels for a batch of {batch}")
        self._check_label_values(checked)
        return checked

    def _check_label_values(self, labels: np.ndarray) -> None:
        """Class indices inside 0..classes-1, targets finite (and inside [0, 1] for binary cross-entropy)."""
        loss = self.manifest.loss
        if loss.class_labels:
            classes = self.spec.output.shape[-1]
            if labels.size and (labels.min() < 0 or labels.max() >= classes):
                raise SegmentInputError(f"segment {self.name}: labels must lie in 0..{classes - 1}")
        elif not np.isfinite(labels).all():
            raise SegmentInputError(f"segment {self.name}: {loss.name} targets must be finite")
        elif loss.name == BCE_LOGITS and labels.size and (labels.min() < 0 or labels.max() > 1):
            raise SegmentInputError(f"segment {self.name}: {loss.name} targets must lie in [0, 1]")

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Inference-mode forward (BatchNorm with running statistics); logits for a last segment."""
        x = self._check_x(x, training=False)
        return self._run(names.EVAL, {names.X: x})[names.OUT]

    def get_params(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by name."""
        return {k: v.copy() for k, v in self.params.items()}

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite every parameter in place (optimizers keep their references); all checked before any write."""
        self._assign(values, self.params, self._param_specs, "parameters")

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of parameters and buffers keyed p:NAME and b:NAME (the .npz layout)."""
        state = {names.PARAM + k: v.copy() for k, v in self.params.items()}
        state.update({names.BUFFER + k: v.copy() for k, v in self.buffers.items()})
        return state

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Overwrite parameters and buffers from a get_state() mapping; all checked before any write."""
        keys = set(state)
        expected = {names.PARAM + k for k in self.params} | {names.BUFFER + k for k in self.buffers}
        if keys != expected:
            raise StateError(f"segment {self.name}: state keys differ: missing {sorted(expected - keys)[:5]}, "
                             f"unexpected {sorted(keys - expected)[:5]}")
        params = {k[len(names.PARAM):]: v for k, v in state.items() if k.startswith(names.PARAM)}
        buffers = {k[len(names.BUFFER):]: v for k, v in state.items() if k.startswith(names.BUFFER)}
        self._check(params, self._param_specs, "parameters")
        self._check(buffers, self._buffer_specs, "buffers")
        self._assign(params, self.params, self._param_specs, "parameters")
        self._assign(buffers, self.buffers, self._buffer_specs, "buffers")

    def _check(self, values: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpec], what: str) -> None:
        """StateError unless `values` has exactly the named tensors with the right shapes and dtypes."""
        if set(values) != set(specs):
            raise StateError(f"segment {self.name}: {what} differ: missing {sorted(set(specs) - set(values))[:5]}, "
                             f"unexpected {sorted(set(values) - set(specs))[:5]}")
        for name, spec in specs.items():
            value = values[name]
            if not isinstance(value, np.ndarray) or value.shape != spec.shape or value.dtype != spec.dtype:
                got = f"{getattr(value, 'dtype', type(value).__name__)} {getattr(value, 'shape', '')}"
                raise StateError(f"segment {self.name}: {what[:-1]} {name!r} must be {spec.dtype.name} "
                                 f"{spec.shape}, got {got}")

    def _assign(self, values: Mapping[str, np.ndarray], target: dict[str, np.ndarray],
                specs: Mapping[str, TensorSpec], what: str) -> None:
        """Check, then copy values into the existing arrays."""
        self._check(values, specs, what)
        for name, value in values.items():
            np.copyto(target[name], value)
