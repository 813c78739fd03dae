"""`edgepsl profile`: measure every segment of an artifact on this device and write a planning profile."""
from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

from edgepsl.plan.jsonfile import read_json
from edgepsl.profiling.device import device_info
from edgepsl.profiling.errors import ProfilingError
from edgepsl.profiling.measure import profile_artifact
from edgepsl.profiling.profile_file import merge_device, profile_dict
from edgepsl.segment import load_manifest

HELP = "time forward, backward and update of every segment of an artifact here; write a profile for planning"

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Artifact, device name, measurement and output options."""
    parser.add_argument("--model", required=True, type=Path,
                        help="segment artifact directory (tools/export.py --per-layer gives one segment per block)")
    parser.add_argument("--device", default=socket.gethostname(), help="device name in the profile (default: hostname)")
    parser.add_argument("--dataset", default="synthetic", help="dataset label recorded in the profile")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs; the profile keeps the median (default 10)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's)")
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="cpu", help="execution provider")
    parser.add_argument("--out", type=Path, required=True, help="profile JSON to write")
    parser.add_argument("--merge", action="store_true", help="add this device to the profile already in --out")


def run(args: argparse.Namespace) -> int:
    """Measure, print a per-layer table and write (or extend) the profile."""
    manifest = load_manifest(args.model)
    providers = [PROVIDERS[args.provider]]
    total = len(manifest.segments)
    done = iter(range(1, total + 1))

    def step(name: str) -> None:
        print(f"profiled {name} ({next(done)}/{total})", file=sys.stderr, flush=True)

    costs = profile_artifact(args.model, batch=args.batch, warmup=args.warmup, repeats=args.repeats,
                             threads=args.threads, providers=providers, progress=step)
    data = profile_dict(costs, manifest.model, args.dataset, args.device,
                        device_info(providers, args.threads, args.batch))
    if args.merge:
        if not args.out.is_file():
            raise ProfilingError(f"--merge needs an existing profile at {args.out}")
        data = merge_device(read_json(args.out, "profile", ProfilingError), data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{'layer':<10} {'fwd ms':>9} {'bwd ms':>9} {'update ms':>10} {'act KB':>9} {'weights KB':>11}")
    for k, name in enumerate(costs.names):
        print(f"{name:<10} {costs.median['fwd_ms'][k]:>9.3f} {costs.median['bwd_ms'][k]:>9.3f} "
              f"{costs.median['update_ms'][k]:>10.3f} {costs.activation_kb[k]:>9.1f} {costs.weights_kb[k]:>11.1f}")
    print(f"wrote {args.out} (device {args.device!r}, batch {args.batch}, median of {args.repeats})")
    return 0
