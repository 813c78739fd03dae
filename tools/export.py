"""Export a registered model of models/ (`python tools/export.py --model lenet5 --cut 1,3 --out DIR`).

A thin wrapper over `edgepsl.export.export_model` for the models this repository defines; any other model is
exported with `edgepsl export --model path/to/file.py:factory ...` (docs/byo.md). `--per-layer` cuts after every
block (one segment per block, for profiling).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402
from edgepsl.cli.export import (WINOGRAD_TILES, add_aux_head_argument, int_list, print_summary,  # noqa: E402
                                winograd_option)
from edgepsl.errors import EdgePSLError  # noqa: E402
from edgepsl.export import ExportError, export_model  # noqa: E402


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
    parser.add_argument("--winograd-tile", type=int, choices=WINOGRAD_TILES,
                        help="output tile of Winograd 3x3 stride-1 convolutions: 2 = F(2x2,3x3) (default), "
                             "4 = F(4x4,3x3) (faster, less accurate), 0 = onnxruntime Conv (docs/segments.md)")
    add_aux_head_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Export, verify and write one artifact of a registered model; print one line per segment."""
    args = build_parser().parse_args(argv)
    try:
        spec = models.get_spec(args.model)
        if args.num_classes is not None and args.num_classes < 2:
            raise ExportError(f"--num-classes must be at least 2, got {args.num_classes}")
        model = models.build(args.model, args.num_classes, args.seed)
        if args.per_layer:
            cuts = list(range(1, len(model)))
        else:
            cuts = int_list(args.cut, "--cut") if args.cut else list(spec.default_cuts)
        artifact = export_model(model, cuts, spec.input_shape, args.out, name=args.model, seed=args.seed,
                                force=args.force, aux_head=args.aux_head, **winograd_option(args.winograd_tile))
    except EdgePSLError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 1
    print_summary(artifact)
    return 0


if __name__ == "__main__":
    sys.exit(main())
