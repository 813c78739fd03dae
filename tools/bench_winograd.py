"""Micro-benchmark Winograd F(2x2,3x3) and F(4x4,3x3) written in standard ONNX ops against onnxruntime's Conv and
PyTorch's conv2d on the 3x3 stride-1 convolutions of the ResNet-18 and VGG-11 middle segments.

    python tools/bench_winograd.py [--batch 32] [--threads 1] [--repeats 15] [--out bench-results/winograd_micro.json]

The Winograd graph takes the weight as a graph input (as the exported segments do) and transforms it in-graph:
weight U = (G x G) g as one MatMul + Transpose; input tiles as alpha^2 strided Slices of the channel-major padded
input, Concat, and (B^T x B^T) d as one MatMul; the alpha^2 channel-mixing products as one batched MatMul
[alpha^2, Cout, Cin] x [alpha^2, Cin, tiles]; the output (A^T x A^T) m as one MatMul, then one Transpose back to
NCHW. All variants run in turn within every repeat (interleaved), medians. Accuracy is the float32 result's
relative L2 error against PyTorch float64. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from tools.bench_output import write_result  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgepsl.segment.session import open_session  # noqa: E402
from tools.bench_segment import interleaved_ms  # noqa: E402
from edgepsl.export.artifact import exporter_versions  # noqa: E402

# (Cin, Cout, H=W) of the 3x3 stride-1 padding-1 convolutions of the middle segments at their default cuts, with
# how many times each occurs (ResNet-18 part2: blocks 3-9; VGG-11 part2: blocks 2-8). 2x2 maps are excluded: the
# exporter runs them as one MatMul over the batch.
SHAPES = [
    {"cin": 128, "cout": 128, "hw": 16, "count": {"resnet18": 3}},
    {"cin": 256, "cout": 256, "hw": 8, "count": {"resnet18": 3, "vgg11": 1}},
    {"cin": 512, "cout": 512, "hw": 4, "count": {"resnet18": 3, "vgg11": 1}},
    {"cin": 128, "cout": 256, "hw": 8, "count": {"vgg11": 1}},
    {"cin": 256, "cout": 512, "hw": 4, "count": {"vgg11": 1}},
]

# Lavin & Gray's transforms: y = A^T [(G g G^T) * (B^T d B)] A is the 3x3 correlation of the tile d.
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)),
}


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    """An initializer."""
    return numpy_helper.from_array(value, name)


def winograd_model(n: int, cin: int, cout: int, hw: int, m: int) -> onnx.ModelProto:
    """Winograd F(m x m, 3x3) of x [n, cin, hw, hw] with weight w [cout, cin, 3, 3] (both inputs), padding 1.

    Channel-last inside (every Slice and Transpose moves runs of whole channel vectors): x to NHWC, padded; the
    alpha^2 tile taps as strided Slices, Concat, V = (B^T x B^T) d [alpha^2, tiles, cin]; U = (G x G) g as a Gemm
    with the weight transposed in the kernel [alpha^2, cout, cin]; M = V U^T (Transpose + MatMul, fused by
    onnxruntime); Y = (A^T x A^T) M, rearranged to NHWC with whole-channel runs, then to NCHW.
    """
    bt, g, at = TRANSFORMS[m]
    alpha, tiles = m + 2, hw // m
    ntiles = n * tiles * tiles
    inits = [_const("BB", np.kron(bt, bt).astype(np.float32)), _const("GG", np.kron(g, g).astype(np.float32)),
             _const("AA", np.kron(at, at).astype(np.float32)),
             _const("pads", np.array([0, 1, 1, 0, 0, 1, 1, 0], np.int64)),
             _const("axes", np.array([1, 2], np.int64)), _const("steps", np.array([m, m], np.int64)),
             _const("w_shape", np.array([cout * cin, 9], np.int64)),
             _const("u_shape", np.array([alpha * alpha, cout, cin], np.int64)),
             _const("tap_shape", np.array([1, ntiles * cin], np.int64)),
             _const("v_shape", np.array([alpha * alpha, ntiles, cin], np.int64)),
             _const("m_shape", np.array([alpha * alpha, ntiles * cout], np.int64)),
             _const("y6_shape", np.array([m, m, n, tiles, tiles, cout], np.int64)),
             _const("y_shape", np.array([n, hw, hw, cout], np.int64))]
    nodes = [helper.make_node("Reshape", ["w", "w_shape"], ["w2"]),
             helper.make_node("Gemm", ["GG", "w2"], ["u1"], transB=1),
             helper.make_node("Reshape", ["u1", "u_shape"], ["u"]),
             helper.make_node("Transpose", ["u"], ["ut"], perm=[0, 2, 1]),
             helper.make_node("Transpose", ["x"], ["xl"], perm=[0, 2, 3, 1]),
             helper.make_node("Pad", ["xl", "pads"], ["xp"])]
    taps = []
    for a in range(alpha):
        for b in range(alpha):
            starts, ends = f"s{a}_{b}", f"e{a}_{b}"
            inits += [_const(starts, np.array([a, b], np.int64)),
                      _const(ends, np.array([a + m * (tiles - 1) + 1, b + m * (tiles - 1) + 1], np.int64))]
            nodes += [helper.make_node("Slice", ["xp", starts, ends, "axes", "steps"], [f"t{a}_{b}"]),
                      helper.make_node("Reshape", [f"t{a}_{b}", "tap_shape"], [f"r{a}_{b}"])]
            taps.append(f"r{a}_{b}")
    nodes += [helper.make_node("Concat", taps, ["d"], axis=0),
              helper.make_node("MatMul", ["BB", "d"], ["v1"]),
              helper.make_node("Reshape", ["v1", "v_shape"], ["v"]),
              helper.make_node("MatMul", ["v", "ut"], ["mm"]),
              helper.make_node("Reshape", ["mm", "m_shape"], ["mm2"]),
              helper.make_node("MatMul", ["AA", "mm2"], ["y1"]),
              helper.make_node("Reshape", ["y1", "y6_shape"], ["y6"]),
              helper.make_node("Transpose", ["y6"], ["y7"], perm=[2, 3, 0, 4, 1, 5]),
              helper.make_node("Reshape", ["y7", "y_shape"], ["y8"]),
              helper.make_node("Transpose", ["y8"], ["y"], perm=[0, 3, 1, 2])]
    graph = helper.make_graph(nodes, f"winograd_f{m}", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, cin, hw, hw]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [cout, cin, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, cout, hw, hw])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def conv_model(n: int, cin: int, cout: int, hw: int) -> onnx.ModelProto:
    """onnxruntime's Conv with the weight a graph input, as in the exported segments."""
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, cin, hw, hw]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [cout, cin, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, cout, hw, hw])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def rel_l2(got: np.ndarray, ref: torch.Tensor) -> float:
    """Relative L2 error of got against the float64 reference."""
    return float(np.linalg.norm(got.astype(np.float64) - ref.numpy()) / np.linalg.norm(ref.numpy()))


def bench_shape(shape: dict[str, object], batch: int, threads: int, repeats: int) -> dict[str, object]:
    """Median ms and float32 accuracy of each variant on one convolution shape, interleaved."""
    cin, cout, hw = shape["cin"], shape["cout"], shape["hw"]
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((batch, cin, hw, hw)), 0).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), padding=1)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    sessions = {"ort_conv": open_session(conv_model(batch, cin, cout, hw).SerializeToString(), threads)}
    for m in TRANSFORMS:
        if hw % m == 0:
            sessions[f"winograd_f{m}"] = open_session(winograd_model(batch, cin, cout, hw, m).SerializeToString(),
                                                      threads)
    steps = {name: (lambda s=s: s.run(None, {"x": x, "w": w})) for name, s in sessions.items()}
    steps["torch_conv2d"] = lambda: torch.nn.functional.conv2d(tx, tw, padding=1)
    torch.set_num_threads(threads)
    times = interleaved_ms(steps, repeats)
    med = {name: float(np.median(t)) for name, t in times.items()}
    accuracy = {name: rel_l2(s.run(None, {"x": x, "w": w})[0], ref) for name, s in sessions.items()}
    accuracy["torch_conv2d"] = rel_l2(torch.nn.functional.conv2d(tx, tw, padding=1).numpy(), ref)
    gflop = 2 * batch * cout * hw * hw * cin * 9 / 1e9
    return {**shape, "batch": batch, "threads": threads, "direct_gflop": gflop, "median_ms": med,
            "speedup_vs_ort_conv": {name: med["ort_conv"] / t for name, t in med.items()},
            "rel_l2_vs_float64": accuracy}


def main(argv: Sequence[str] | None = None) -> int:
    """Run every shape, print a table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="bench-results/winograd_micro.json")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'cin':>4} {'cout':>4} {'hw':>3} {'ort Conv':>9} {'wino F2':>8} {'wino F4':>8} {'torch':>8} "
          f"{'F2 x':>6} {'F4 x':>6} {'F2 relL2':>9} {'F4 relL2':>9}  (ms; x = ort Conv / Winograd)")
    for shape in SHAPES:
        row = bench_shape(shape, args.batch, args.threads, args.repeats)
        rows.append(row)
        med, speed, acc = row["median_ms"], row["speedup_vs_ort_conv"], row["rel_l2_vs_float64"]
        print(f"{shape['cin']:>4} {shape['cout']:>4} {shape['hw']:>3} {med['ort_conv']:>9.2f} "
              f"{med.get('winograd_f2', float('nan')):>8.2f} {med.get('winograd_f4', float('nan')):>8.2f} "
              f"{med['torch_conv2d']:>8.2f} {speed.get('winograd_f2', float('nan')):>6.2f} "
              f"{speed.get('winograd_f4', float('nan')):>6.2f} {acc.get('winograd_f2', float('nan')):>9.1e} "
              f"{acc.get('winograd_f4', float('nan')):>9.1e}", flush=True)
    result = {"benchmark": "3x3 stride-1 convolution forward: Winograd in standard ONNX ops vs onnxruntime Conv vs "
                           "PyTorch conv2d, median of interleaved repeats",
              "repeats": args.repeats, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                   "load_average": os.getloadavg()},
              "versions": exporter_versions(), "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
