"""Benchmark a segment's train step (forward + backward + optimizer) on onnxruntime against PyTorch eager.

    python tools/bench_segment.py [--models resnet18,vgg11,lenet5] [--batches 32,64] [--threads 1,2]
                                  [--repeats 20] [--profile] [--out bench-results/segment.json]

Exports each model's middle segment (default cuts), then times, per thread count and batch size, the train step
of the onnxruntime segment (numpy SGD with momentum) and of the same nn.Module in PyTorch eager (torch.optim.SGD)
on the same inputs, side by side: every repeat runs both in turn, so load from other processes hits both alike.
Reports medians, the ratio of the medians and the median of the per-repeat ratios, and the bytes held for one
in-flight job's saved tensors by each. `--profile` adds onnxruntime's time per op type (forward and backward
graphs) and PyTorch's self time per aten op (train step) at batch 32. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from tools.bench_output import write_result  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402
from edgepsl.segment import SGD, Segment, names  # noqa: E402
from edgepsl.segment.session import open_session  # noqa: E402
from edgepsl.export.artifact import export_segments, exporter_versions, segment_bounds  # noqa: E402
from edgepsl.export.artifact import write_artifact  # noqa: E402
from edgepsl.export.decompositions import WINOGRAD_TILE  # noqa: E402
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES  # noqa: E402

LR, MOMENTUM = 0.01, 0.9
WARMUP = 3


def interleaved_ms(steps: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times in milliseconds of each step, the steps run in turn within every repeat (after a warm-up), so
    that load from other processes hits all of them alike."""
    for step in steps.values():
        for _ in range(WARMUP):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def export_middle(name: str, directory: Path,
                  winograd_tile: int = WINOGRAD_TILE) -> tuple[Path, torch.nn.Sequential, tuple[int, int]]:
    """Export the middle segment (part2) of a model at its default cuts."""
    spec = models.get_spec(name)
    model = models.build(name)
    segments = export_segments(model, spec.input_shape, spec.default_cuts, LOSSES[CROSS_ENTROPY],
                               segment_filter=["part2"], winograd_tile=winograd_tile)
    out = write_artifact(directory / name, name, spec.default_cuts, len(model), spec.num_classes, segments,
                         LOSSES[CROSS_ENTROPY])
    return out, model, segments[0].blocks


def middle_input(name: str, model: torch.nn.Sequential, batch: int) -> np.ndarray:
    """A realistic input of the middle segment: random images through part-1 (train mode)."""
    spec = models.get_spec(name)
    bounds = segment_bounds(len(model), spec.default_cuts)
    x = torch.randn(batch, *spec.input_shape, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        return copy.deepcopy(model[bounds[0][0]:bounds[0][1]]).train()(x).numpy()


def ort_steps(artifact: Path, x: np.ndarray, threads: int) -> tuple[dict[str, Callable[[], object]], int]:
    """Train-step, forward and optimizer callables of the onnxruntime segment, and its saved bytes per job."""
    seg = Segment(artifact, "part2", threads=threads)
    optimizer = SGD(seg.params, lr=LR, momentum=MOMENTUM)
    grad_out = np.random.default_rng(0).standard_normal(seg.forward("probe", x).shape).astype(np.float32)
    saved = seg.saved_bytes("probe")
    grads = seg.backward("probe", grad_out).grads
    counter = iter(range(1 << 30))

    def step() -> None:
        job = next(counter)
        seg.forward(job, x)
        optimizer.step(seg.backward(job, grad_out).grads)

    def forward() -> None:
        job = next(counter)
        seg.forward(job, x)
        seg.drop(job)

    return {"train_step": step, "forward": forward, "optimizer": lambda: optimizer.step(grads)}, saved


def torch_steps(segment: torch.nn.Module, x: np.ndarray) -> tuple[dict[str, Callable[[], object]], int]:
    """Train-step and forward callables of the same segment in PyTorch eager, and its saved bytes per job."""
    seg = copy.deepcopy(segment).train()
    optimizer = torch.optim.SGD(seg.parameters(), lr=LR, momentum=MOMENTUM)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        grad_out = torch.from_numpy(np.random.default_rng(0).standard_normal(seg(xt).shape).astype(np.float32))

    def step() -> None:
        xx = xt.detach().requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        seg(xx).backward(grad_out)
        optimizer.step()

    def forward() -> None:
        seg(xt.detach().requires_grad_(True))

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        seg(xt.detach().requires_grad_(True))
    storages.pop(xt.untyped_storage().data_ptr(), None)
    return {"train_step": step, "forward": forward}, sum(storages.values()) + x.nbytes


def bench_pair(artifact: Path, segment: torch.nn.Module, x: np.ndarray, threads: int,
               repeats: int) -> dict[str, object]:
    """onnxruntime and PyTorch timed side by side (interleaved repeats): medians, and the median of the
    per-repeat train-step ratios."""
    torch.set_num_threads(threads)
    ours, ours_saved = ort_steps(artifact, x, threads)
    theirs, theirs_saved = torch_steps(segment, x)
    times = interleaved_ms({**{"ort_" + k: f for k, f in ours.items()}, **{"torch_" + k: f for k, f in theirs.items()}},
                           repeats)
    med = {k: float(np.median(v)) for k, v in times.items()}
    pairs = np.array(times["ort_train_step"]) / np.array(times["torch_train_step"])
    return {"onnxruntime": {"train_step_ms": med["ort_train_step"], "forward_ms": med["ort_forward"],
                            "optimizer_ms": med["ort_optimizer"], "saved_bytes_per_job": ours_saved},
            "pytorch": {"train_step_ms": med["torch_train_step"], "forward_ms": med["torch_forward"],
                        "saved_bytes_per_job": theirs_saved},
            "ratio_train_step": med["ort_train_step"] / med["torch_train_step"],
            "ratio_train_step_median_of_pairs": float(np.median(pairs))}


def train_step_gflop(segment: torch.nn.Module, x: np.ndarray) -> float:
    """Multiply-add work of a train step's convolutions and linear layers in GFLOP: forward, input gradient and
    weight gradient each cost the forward's 2 * MACs."""
    macs = []

    def count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv2d):
            macs.append(out.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1])
        elif isinstance(module, torch.nn.Linear):
            macs.append(out.numel() * module.in_features)

    probe = copy.deepcopy(segment).eval()
    for module in probe.modules():
        module.register_forward_hook(count)
    with torch.no_grad():
        probe(torch.from_numpy(x))
    return 3 * 2 * sum(macs) / 1e9


def gemm_gflops(threads: int, repeats: int, shape: tuple[int, int, int] = (512, 4608, 512)) -> dict[str, float]:
    """GFLOP/s of one float32 MatMul (M, K, N) on onnxruntime (MLAS) and in PyTorch, interleaved: the ceiling of
    convolutions that onnxruntime runs as im2col + GEMM."""
    m, k, n = shape
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [onnx.helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, dims) for v, dims in (("a", [m, k]), ("b", [k, n]))],
        [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [m, n])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=9)
    session = open_session(model.SerializeToString(), threads)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.set_num_threads(threads)
    times = interleaved_ms({"onnxruntime": lambda: session.run(None, {"a": a, "b": b}), "pytorch": lambda: ta @ tb},
                           repeats)
    return {side: round(2 * m * k * n / 1e6 / float(np.median(t)), 1) for side, t in times.items()}


def profile_pair(artifact: Path, segment: torch.nn.Module, x: np.ndarray, threads: int,
                 repeats: int) -> dict[str, dict[str, float]]:
    """Milliseconds per op, mean per run: onnxruntime per op type in the forward and backward graphs (its
    profiler) and PyTorch per aten op in the train step (self CPU time), the three run in turn in every repeat."""
    seg = Segment(artifact, "part2", threads=threads)
    out = seg.forward("probe", x)
    feeds = {**{names.PARAM + k: v for k, v in seg.params.items()}, **{names.BUFFER + k: v for k, v in seg.buffers.items()},
             **seg.saved_tensors("probe"), names.X: x,
             names.GRAD_OUT: np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)}
    sessions = {}
    for graph in (names.FORWARD, names.BACKWARD):
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"edgepsl-profile-{graph}")
        session = ort.InferenceSession(str(seg.manifest.path(seg.spec.graphs[graph].file)), options,
                                       providers=["CPUExecutionProvider"])
        sessions[graph] = session, {i.name: feeds[i.name] for i in session.get_inputs()}
    torch.set_num_threads(threads)
    torch_step = torch_steps(segment, x)[0]["train_step"]
    torch_step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            for session, run_feeds in sessions.values():
                session.run(None, run_feeds)
            torch_step()
    result = {}
    for graph, (session, _) in sessions.items():
        trace_file = session.end_profiling()
        totals: collections.Counter[str] = collections.Counter()
        for event in json.loads(Path(trace_file).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                totals[event["args"]["op_name"]] += event["dur"] / 1e3 / repeats
        os.unlink(trace_file)
        result["onnxruntime_" + graph] = {op: round(ms, 3) for op, ms in totals.most_common(12)}
    aten_ops = collections.Counter({e.key: e.self_cpu_time_total / 1e3 / repeats for e in prof.key_averages()
                                    if e.key.startswith("aten::")})
    result["pytorch_train_step"] = {op: round(ms, 3) for op, ms in aten_ops.most_common(12)}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark grid, print a table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg11,lenet5")
    parser.add_argument("--batches", default="32,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", action="store_true",
                        help="add onnxruntime and PyTorch per-op times (batch 32)")
    parser.add_argument("--winograd-tile", type=int, default=WINOGRAD_TILE,
                        help="Winograd output tile of the exported 3x3 stride-1 convolutions (2 or 4; 0: Conv)")
    parser.add_argument("--out", default="bench-results/segment.json")
    args = parser.parse_args(argv)
    rows = []
    header = (f"{'model':<9} {'thr':>3} {'batch':>5} {'ort ms':>8} {'torch ms':>9} {'ratio':>6} {'pairs':>6} "
              f"{'ort fwd':>8} {'torch fwd':>9} {'ort MB/job':>10} {'torch MB/job':>12}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            artifact, model, blocks = export_middle(name, Path(tmp), args.winograd_tile)
            segment = model[blocks[0]:blocks[1]]
            for threads in (int(t) for t in args.threads.split(",")):
                for batch in (int(b) for b in args.batches.split(",")):
                    x = middle_input(name, model, batch)
                    row = {"model": name, "segment": "part2", "blocks": list(blocks), "threads": threads,
                           "batch": batch, **bench_pair(artifact, segment, x, threads, args.repeats)}
                    ours, theirs = row["onnxruntime"], row["pytorch"]
                    row["conv_linear_gflop_per_train_step"] = gflop = train_step_gflop(segment, x)
                    for side in (ours, theirs):
                        side["effective_gflops"] = round(gflop / side["train_step_ms"] * 1e3, 1)
                    if args.profile and batch == 32:
                        row["profile_ms_by_op"] = profile_pair(artifact, segment, x, threads, 5)
                    rows.append(row)
                    print(f"{name:<9} {threads:>3} {batch:>5} {ours['train_step_ms']:>8.2f} "
                          f"{theirs['train_step_ms']:>9.2f} {row['ratio_train_step']:>6.2f} "
                          f"{row['ratio_train_step_median_of_pairs']:>6.2f} "
                          f"{ours['forward_ms']:>8.2f} {theirs['forward_ms']:>9.2f} "
                          f"{ours['saved_bytes_per_job'] / 2**20:>10.2f} {theirs['saved_bytes_per_job'] / 2**20:>12.2f}",
                          flush=True)
    gemm = {str(t): gemm_gflops(t, args.repeats) for t in (int(t) for t in args.threads.split(","))}
    print("MatMul 512x4608x512 GFLOP/s by threads:", gemm)
    result = {"benchmark": "segment train step (forward + backward + SGD momentum), median of interleaved repeats",
              "repeats": args.repeats, "winograd_tile": args.winograd_tile, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                   "load_average": os.getloadavg()},
              "versions": exporter_versions(), "gemm_gflops_512x4608x512": gemm, "rows": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
