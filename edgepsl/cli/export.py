"""`edgepsl export`: cut a user's PyTorch model into segments, verify them against float64 and write an artifact."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Sequence

from edgepsl.export.errors import ExportError
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES

if TYPE_CHECKING:
    from edgepsl.export.model import ExportedArtifact

HELP = "export a PyTorch model (file.py:factory) cut into blocks to verified ONNX training segments (needs torch)"

WINOGRAD_TILES = (0, 2, 4)
AUX_HEAD_CHOICES = ("auto", "none")


def int_list(text: str, option: str) -> list[int]:
    """'A,B' -> [A, B]; ExportError on anything but comma-separated integers."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ExportError(f"{option} must be comma-separated integers such as 1,3, got {text!r}") from None
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model reference, cuts, input shape, loss and output options."""
    parser.add_argument("--model", required=True,
                        help="the factory returning an nn.Sequential or a list of blocks: path/to/file.py:NAME or "
                             "module.path:NAME (called with no arguments, torch seeded with --seed)")
    cut = parser.add_mutually_exclusive_group(required=True)
    cut.add_argument("--cuts", help="block indices to cut before, e.g. 1,3 (part1 = blocks [0,1), part2 = [1,3), ...)")
    cut.add_argument("--per-layer", action="store_true", help="one segment per block (for per-layer profiling)")
    parser.add_argument("--input-shape", required=True,
                        help="one sample's input shape without the batch axis, e.g. 1,28,28 or 13")
    parser.add_argument("--loss", choices=sorted(LOSSES), default=CROSS_ENTROPY,
                        help="the last segment's loss: " + "; ".join(f"{name}: {loss.description}"
                                                                     for name, loss in LOSSES.items()))
    parser.add_argument("--out", required=True, help="artifact directory to create")
    parser.add_argument("--name", help="model name recorded in the manifest (default: the factory's name)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the check data")
    parser.add_argument("--force", action="store_true", help="replace an existing, non-empty --out directory")
    parser.add_argument("--winograd-tile", type=int, choices=WINOGRAD_TILES,
                        help="output tile of Winograd 3x3 stride-1 convolutions: 2 = F(2x2,3x3) (default), "
                             "4 = F(4x4,3x3) (faster, less accurate), 0 = onnxruntime Conv (docs/segments.md)")
    add_aux_head_argument(parser)


def add_aux_head_argument(parser: argparse.ArgumentParser) -> None:
    """--aux-head auto|none: export the local-loss mode's auxiliary head after part-1 (docs/modes.md)."""
    parser.add_argument("--aux-head", choices=AUX_HEAD_CHOICES, default="none",
                        help="auto: add the auxiliary classifier after part-1 that local-loss training needs "
                             "(pooling + linear, docs/modes.md); none (default): no aux head")


def winograd_option(tile: int | None) -> dict[str, Any]:
    """export_model's winograd_tile keyword when the option was given (else the exporter's default applies)."""
    return {} if tile is None else {"winograd_tile": tile}


def print_summary(artifact: "ExportedArtifact") -> None:
    """One line per exported segment and aux head (role, blocks, saved tensors, worst error, seconds), then the
    directory."""
    print(f"{'segment':<8} {'role':<7} {'blocks':<8} {'saved':>5} {'max rel L2':>11}  {'seconds':>7}")
    for seg in artifact.segments + ([artifact.aux_head] if artifact.aux_head is not None else []):
        print(f"{seg.name:<8} {seg.role:<7} {seg.blocks[0]}:{seg.blocks[1]:<6} {len(seg.saved):>5} "
              f"{max(seg.errors.values()):>11.2e}  {seg.seconds:>7.1f}")
    print(f"wrote {artifact.directory}")


def run(args: argparse.Namespace) -> int:
    """Load the factory, export and verify every segment, write the artifact, print a summary."""
    from edgepsl.export import export_model, load_model

    model = load_model(args.model, args.seed)
    cuts: Sequence[int] = list(range(1, len(model))) if args.per_layer else int_list(args.cuts, "--cuts")
    artifact = export_model(model, cuts, int_list(args.input_shape, "--input-shape"), args.out, loss=args.loss,
                            name=args.name or args.model.rpartition(":")[2], seed=args.seed, force=args.force,
                            aux_head=args.aux_head, **winograd_option(args.winograd_tile))
    print_summary(artifact)
    return 0
