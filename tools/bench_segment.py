"""Benchmark a segment's train step (forward + backward + optimizer) on onnxruntime against PyTorch eager.

    python tools/bench_segment.py [--models resnet18,vgg11,lenet5] [--batches 32,64] [--threads 1,2]
                                  [--repeats 20] [--profile] [--out bench-results/segment.json]

Exports each model's middle segment (default cuts), then times, per thread count and batch size, the median
train step of the onnxruntime segment (numpy SGD with momentum) and of the same nn.Module in PyTorch eager
(torch.optim.SGD) on the same inputs, and the bytes held for one in-flight job's saved tensors by each.
Prints a table and writes JSON.
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
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402
from edgepsl.segment import SGD, Segment, names  # noqa: E402
from edgepsl.segment.session import open_session  # noqa: E402
from tools.onnx_export.artifact import exporter_versions, export_model, segment_examples, segment_bounds  # noqa: E402
from tools.onnx_export.artifact import write_artifact  # noqa: E402

LR, MOMENTUM = 0.01, 0.9
WARMUP = 3


def median_ms(step: Callable[[], object], repeats: int) -> float:
    """Median wall time of `step` in milliseconds after a warm-up."""
    for _ in range(WARMUP):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def export_middle(name: str, directory: Path) -> tuple[Path, torch.nn.Sequential, tuple[int, int]]:
    """Export the middle segment (part2) of a model at its default cuts."""
    spec = models.get_spec(name)
    model = models.build(name)
    segments = export_model(model, spec.input_shape, spec.num_classes, spec.default_cuts, segment_filter=["part2"])
    out = write_artifact(directory / name, name, spec.default_cuts, len(model), spec.num_classes, segments)
    return out, model, segments[0].blocks


def middle_input(name: str, model: torch.nn.Sequential, batch: int) -> np.ndarray:
    """A realistic input of the middle segment: random images through part-1 (train mode)."""
    spec = models.get_spec(name)
    bounds = segment_bounds(len(model), spec.default_cuts)
    x = torch.randn(batch, *spec.input_shape, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        return copy.deepcopy(model[bounds[0][0]:bounds[0][1]]).train()(x).numpy()


def bench_ort(artifact: Path, x: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    """Median forward, optimizer and whole train-step times of the onnxruntime segment, and its saved bytes."""
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

    return {"train_step_ms": median_ms(step, repeats), "forward_ms": median_ms(forward, repeats),
            "optimizer_ms": median_ms(lambda: optimizer.step(grads), repeats), "saved_bytes_per_job": saved}


def bench_torch(segment: torch.nn.Module, x: np.ndarray, threads: int, repeats: int) -> dict[str, float]:
    """Median forward and whole train-step times of the same segment in PyTorch eager, and its saved bytes."""
    torch.set_num_threads(threads)
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
    return {"train_step_ms": median_ms(step, repeats), "forward_ms": median_ms(forward, repeats),
            "saved_bytes_per_job": sum(storages.values()) + x.nbytes}


def profile_ort(artifact: Path, x: np.ndarray, threads: int, repeats: int) -> dict[str, dict[str, float]]:
    """Milliseconds per op type in the forward and backward graphs (onnxruntime profiler, mean over runs)."""
    seg = Segment(artifact, "part2", threads=threads)
    out = seg.forward("probe", x)
    feeds = {**{names.PARAM + k: v for k, v in seg.params.items()}, **{names.BUFFER + k: v for k, v in seg.buffers.items()},
             **seg.saved_tensors("probe"), names.X: x,
             names.GRAD_OUT: np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)}
    result = {}
    for graph in (names.FORWARD, names.BACKWARD):
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"edgepsl-profile-{graph}")
        session = ort.InferenceSession(str(seg.manifest.path(seg.spec.graphs[graph].file)), options,
                                       providers=["CPUExecutionProvider"])
        run_feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
        for _ in range(repeats):
            session.run(None, run_feeds)
        trace_file = session.end_profiling()
        totals: collections.Counter[str] = collections.Counter()
        for event in json.loads(Path(trace_file).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                totals[event["args"]["op_name"]] += event["dur"] / 1e3 / repeats
        os.unlink(trace_file)
        result[graph] = {op: round(ms, 3) for op, ms in totals.most_common(8)}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark grid, print a table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg11,lenet5")
    parser.add_argument("--batches", default="32,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="add onnxruntime per-op times (batch 32)")
    parser.add_argument("--out", default="bench-results/segment.json")
    args = parser.parse_args(argv)
    rows = []
    header = (f"{'model':<9} {'thr':>3} {'batch':>5} {'ort ms':>8} {'torch ms':>9} {'ratio':>6} "
              f"{'ort fwd':>8} {'torch fwd':>9} {'ort MB/job':>10} {'torch MB/job':>12}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            artifact, model, blocks = export_middle(name, Path(tmp))
            segment = model[blocks[0]:blocks[1]]
            for threads in (int(t) for t in args.threads.split(",")):
                for batch in (int(b) for b in args.batches.split(",")):
                    x = middle_input(name, model, batch)
                    ours = bench_ort(artifact, x, threads, args.repeats)
                    theirs = bench_torch(segment, x, threads, args.repeats)
                    row = {"model": name, "segment": "part2", "blocks": list(blocks), "threads": threads,
                           "batch": batch, "onnxruntime": ours, "pytorch": theirs,
                           "ratio_train_step": ours["train_step_ms"] / theirs["train_step_ms"]}
                    if args.profile and batch == 32:
                        row["onnxruntime_profile_ms_by_op"] = profile_ort(artifact, x, threads, 5)
                    rows.append(row)
                    print(f"{name:<9} {threads:>3} {batch:>5} {ours['train_step_ms']:>8.2f} "
                          f"{theirs['train_step_ms']:>9.2f} {row['ratio_train_step']:>6.2f} "
                          f"{ours['forward_ms']:>8.2f} {theirs['forward_ms']:>9.2f} "
                          f"{ours['saved_bytes_per_job'] / 2**20:>10.2f} {theirs['saved_bytes_per_job'] / 2**20:>12.2f}",
                          flush=True)
    result = {"benchmark": "segment train step (forward + backward + SGD momentum), median of repeats",
              "repeats": args.repeats, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                   "load_average": os.getloadavg()},
              "versions": exporter_versions(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
