"""onnxruntime sessions for segment graphs: thread spinning off, chosen thread count and provider list."""
from __future__ import annotations

from typing import Sequence

import onnxruntime as ort

from edgepsl.segment.errors import ArtifactError

DEFAULT_PROVIDERS: tuple[str, ...] = ("CPUExecutionProvider",)


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def check_providers(providers: Sequence[str]) -> list[str]:
    """The providers, or ArtifactError naming those this onnxruntime build lacks."""
    wanted = list(providers)
    missing = [p for p in wanted if p not in available_providers()]
    if not wanted or missing:
        raise ArtifactError(f"execution providers {missing or wanted} are not available in this onnxruntime build "
                            f"(available: {', '.join(available_providers())})")
    return wanted


def open_session(model: str | bytes, threads: int | None = None,
                 providers: Sequence[str] = DEFAULT_PROVIDERS) -> ort.InferenceSession:
    """An InferenceSession with intra-op spinning disabled (sessions share cores with each other and with I/O)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=check_providers(providers))
    except ArtifactError:
        raise
    except Exception as exc:
        where = model if isinstance(model, str) else "in-memory model"
        raise ArtifactError(f"onnxruntime cannot load {where}: {exc}") from exc
