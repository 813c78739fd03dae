"""Export a model cut into trainable ONNX segments: `python tools/export.py --model lenet5 --cut 1,3 --out DIR`.

Every graph is verified against PyTorch float64 before anything is written; a failing export writes nothing
and names the failing tensor. `--per-layer` cuts after every block (one segment per block, for profiling).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402
from edgepsl.errors import EdgePSLError  # noqa: E402
from tools.onnx_export.artifact import export_model, write_artifact  # noqa: E402
from tools.onnx_export.decompositions import WINOGRAD_TILE  # noqa: E402
from tools.onnx_export.errors import ExportError  # noqa: E402


def parse_cuts(text: str) -> list[int]:
    """'A,B' -> [A, B]; ExportError on anything but comma-separated integers."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ExportError(f"--cut must be comma-separated block indices such as 1,3, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(models.MODELS)}")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument("--cut", help="block indices to cut before, e.g. 1,3 (default: the model's default cuts)")
    cut.add_argument("--per-layer", action="store_true", help="one segment per block (for per-layer profiling)")
    parser.add_argument("--out", required=True, help="artifact directory to create")
    parser.add_argument("--num-classes", type=int, help="classifier outputs (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the check data")
    parser.add_argument("--force", action="store_true", help="replace an existing, non-empty --out directory")
    parser.add_argument("--winograd-tile", type=int, choices=(0, 2, 4), default=WINOGRAD_TILE,
                        help="output tile of Winograd 3x3 stride-1 convolutions: 2 = F(2x2,3x3) (default), "
                             "4 = F(4x4,3x3) (faster, less accurate), 0 = onnxruntime Conv (docs/segments.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Export, verify and write one artifact; print one line per segment."""
    args = build_parser().parse_args(argv)
    try:
        spec = models.get_spec(args.model)
        if args.num_classes is not None and args.num_classes < 2:
            raise ExportError(f"--num-classes must be at least 2, got {args.num_classes}")
        model = models.build(args.model, args.num_classes, args.seed)
        if args.per_layer:
            cuts = list(range(1, len(model)))
        else:
            cuts = parse_cuts(args.cut) if args.cut else list(spec.default_cuts)
        num_classes = args.num_classes or spec.num_classes
        segments = export_model(model, spec.input_shape, num_classes, cuts, args.seed,
                                winograd_tile=args.winograd_tile)
        out = write_artifact(args.out, args.model, cuts, len(model), num_classes, segments, args.force)
    except EdgePSLError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 1
    print(f"{'segment':<8} {'role':<7} {'blocks':<8} {'saved':>5} {'max rel L2':>11}  {'seconds':>7}")
    for seg in segments:
        print(f"{seg.name:<8} {seg.role:<7} {seg.blocks[0]}:{seg.blocks[1]:<6} {len(seg.saved):>5} "
              f"{max(seg.errors.values()):>11.2e}  {seg.seconds:>7.1f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
