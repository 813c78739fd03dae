"""Split a joint ONNX graph into a forward graph (which also emits the saved tensors) and a backward graph."""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgepsl.export.errors import ExportError
from edgepsl.segment import names

# Cheap ops: when all their inputs are available to the backward graph (x, parameters, constants), the
# backward recomputes them instead of receiving them as saved tensors.
_CHEAP_OPS = {"Shape", "Size", "Constant", "ConstantOfShape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice",
              "Cast", "Reshape", "Transpose", "Identity", "Add", "Sub", "Mul", "Div", "Neg", "Range", "Equal", "Where"}


@dataclass
class SplitGraphs:
    """Forward and backward models and the names of the saved tensors (forward outputs read by backward)."""

    forward: onnx.ModelProto
    backward: onnx.ModelProto
    saved: list[str]


def _prune(nodes: list[onnx.NodeProto], wanted: set[str]) -> tuple[list[onnx.NodeProto], set[str]]:
    """The nodes needed for `wanted`, in order, and every tensor name they read or produce."""
    need, keep = set(wanted), []
    for node in reversed(nodes):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(i for i in node.input if i)
    return list(reversed(keep)), need


def _cheap(nodes: list[onnx.NodeProto], available: set[str]) -> set[str]:
    """Tensors that cheap ops compute from tensors the backward graph has anyway."""
    cheap = set(available)
    for node in nodes:
        if node.op_type in _CHEAP_OPS and all(i in cheap for i in node.input if i):
            cheap.update(node.output)
    return cheap


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    """A deep copy of a node."""
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _rename(nodes: list[onnx.NodeProto], mapping: dict[str, str]) -> None:
    """Rename tensors in node inputs and outputs, in place."""
    for node in nodes:
        node.input[:] = [mapping.get(i, i) for i in node.input]
        node.output[:] = [mapping.get(o, o) for o in node.output]


def _batch_from_x(nodes: list[onnx.NodeProto]) -> None:
    """Read the batch size from x instead of grad_out (same axis 0), so shape arithmetic stays in the forward."""
    for node in nodes:
        if node.op_type != "Shape" or list(node.input) != [names.GRAD_OUT]:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("start", 0) == 0 and attrs.get("end") == 1:
            node.input[0] = names.X


def _value_info(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Types and shapes of every tensor of the model, by name (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    return {v.name: v for v in list(g.value_info) + list(g.output) + list(g.input)}


def _renamed_info(info: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    """A copy of a value info under a new name."""
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(info)
    copy.name = name
    return copy


def split_joint(model: onnx.ModelProto, forward_outputs: list[str]) -> SplitGraphs:
    """Nodes depending on grad_out go to backward; forward keeps only what its outputs and the backward need."""
    g = model.graph
    nodes = [_copy(n) for n in g.node]
    _batch_from_x(nodes)
    infos = _value_info(model)
    inputs = {v.name: v for v in g.input}
    initializers = {t.name for t in g.initializer}
    tainted = {names.GRAD_OUT}
    fwd_nodes, bwd_nodes = [], []
    for node in nodes:
        if any(i in tainted for i in node.input if i):
            bwd_nodes.append(node)
            tainted.update(o for o in node.output if o)
        else:
            fwd_nodes.append(node)
    available = initializers | {n for n in inputs if n == names.X or n.startswith(names.PARAM)}
    cheap = _cheap(fwd_nodes, available)
    fwd_needed, _ = _prune(fwd_nodes, set(forward_outputs))
    needed_ids = {id(n) for n in fwd_needed}
    order = {id(n): i for i, n in enumerate(nodes)}
    recomputable = [n for n in fwd_nodes if id(n) not in needed_ids or all(o in cheap for o in n.output)]
    bwd_pool = [_copy(n) if id(n) in needed_ids else n
                for n in sorted(bwd_nodes + recomputable, key=lambda n: order[id(n)])]
    bwd_outputs = [o.name for o in g.output if o.name not in forward_outputs]
    bwd_keep, bwd_need = _prune(bwd_pool, set(bwd_outputs))
    produced_in_bwd = {o for n in bwd_keep for o in n.output}
    fwd_produced = {o for n in fwd_needed for o in n.output}
    saved = [t for t in dict.fromkeys(i for n in bwd_keep for i in n.input if i)
             if t in fwd_produced and t not in produced_in_bwd]
    stray = [t for t in bwd_need if t in inputs and t.startswith(names.BUFFER)]
    if stray:
        raise ExportError(f"the backward graph reads buffers {stray}; only x, parameters and saved tensors are allowed")
    mapping = {t: f"{names.SAVED}{i}" for i, t in enumerate(t for t in saved if t not in forward_outputs)}
    saved_names = [mapping.get(t, t) for t in saved]
    fwd_keep, fwd_need = _prune(fwd_nodes, set(forward_outputs) | set(saved))
    fwd_out_infos = [next(o for o in g.output if o.name == name) for name in forward_outputs]
    fwd_out_infos += [_renamed_info(infos[t], mapping[t]) for t in saved if t in mapping]
    _rename(fwd_keep, mapping)
    _rename(bwd_keep, mapping)
    fwd_graph = onnx.helper.make_graph(
        fwd_keep, "forward", [inputs[i] for i in inputs if i in fwd_need], fwd_out_infos,
        [t for t in g.initializer if t.name in fwd_need])
    bwd_inputs = [inputs[names.GRAD_OUT]] + [_renamed_info(infos[t], mapping.get(t, t)) for t in saved]
    bwd_inputs += [inputs[i] for i in inputs if i in bwd_need and i != names.GRAD_OUT]
    bwd_graph = onnx.helper.make_graph(
        bwd_keep, "backward", bwd_inputs, [next(o for o in g.output if o.name == n) for n in bwd_outputs],
        [t for t in g.initializer if t.name in bwd_need])
    made = []
    for graph in (fwd_graph, bwd_graph):
        m = onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        onnx.checker.check_model(m, full_check=True)
        made.append(m)
    return SplitGraphs(made[0], made[1], saved_names)
