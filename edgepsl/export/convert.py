"""Convert a traced FX graph to a standard-op ONNX model (opset 18) with a dynamic batch axis."""
from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings

import onnx
import torch
from torch import nn

from edgepsl.export.errors import ExportError
from edgepsl.export.trace import TracedGraph

OPSET = 18
BATCH_DIM = "batch"
_MISSING_OP = re.compile(r"No ONNX function found for <OpOverload\(op='([^']+)'")


class _Wrapped(nn.Module):
    """nn.Module face of a GraphModule taking flat positional tensors."""

    def __init__(self, module: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph_module = module

    def forward(self, *args: torch.Tensor) -> object:
        """Run the traced graph."""
        return self.graph_module(*args)


def _strip(model: onnx.ModelProto) -> None:
    """Drop per-node stack traces and doc strings (most of a graph's bytes), in place."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.metadata_props[:]
    model.graph.doc_string = ""
    model.doc_string = ""


def _check_standard(model: onnx.ModelProto, what: str) -> None:
    """Refuse any op outside the default ONNX domain and any local function."""
    foreign = sorted({f"{n.domain}:{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign or model.functions:
        funcs = sorted(f.name for f in model.functions)
        raise ExportError(f"{what}: non-standard ONNX ops {foreign} or functions {funcs}; add a decomposition")


def _rename_batch(model: onnx.ModelProto) -> None:
    """Give every symbolic first axis of the graph's inputs and outputs the same name."""
    symbols = set()
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            symbols.add(dims[0].dim_param)
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = BATCH_DIM


def _export_failure(what: str, exc: BaseException) -> str:
    """The message of a failed torch.onnx.export: the op without a standard-ONNX translation when there is one."""
    text = "\n".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    match = _MISSING_OP.search(text)
    if match:
        return (f"{what}: the op {match.group(1)} has no translation to standard ONNX ops; replace it in the model "
                f"or add a decomposition to edgepsl/export/decompositions.py")
    return f"{what}: torch.onnx.export failed: {type(exc).__name__}: {exc}"


def to_onnx(traced: TracedGraph, what: str) -> onnx.ModelProto:
    """Export with torch.onnx (dynamo) at opset 18, the batch axis of the data inputs dynamic."""
    batch = torch.export.Dim(BATCH_DIM, min=2, max=1 << 16)
    spec = tuple({0: batch} if i in traced.batch_inputs else None for i in range(len(traced.example_args)))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            program = torch.onnx.export(_Wrapped(traced.module), traced.example_args, dynamo=True,
                                        opset_version=OPSET, input_names=traced.input_names,
                                        output_names=traced.output_names, dynamic_shapes=(spec,), optimize=True,
                                        verbose=False)
        except Exception as exc:
            raise ExportError(_export_failure(what, exc)) from exc
        finally:
            logging.disable(logging.NOTSET)
    model = program.model_proto
    _strip(model)
    _check_standard(model, what)
    _rename_batch(model)
    return model
