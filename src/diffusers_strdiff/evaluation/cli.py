# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The evaluation command line (`scripts/evaluate.py`, `strdiff evaluate`)."""

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..masks import HOLE_RATIO_BUCKETS
from ..schedulers.scheduling_mean_reverting_sde import SAMPLER_PRESETS
from ..utils import process_state
from .eval_set import build_eval_set
from .methods import METHOD_NAMES, build_methods
from .report import format_markdown_tables, write_report
from .run import evaluate


def build_arg_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The evaluation command's arguments (see [`main`])."""
    parser = argparse.ArgumentParser(prog=prog, description="Evaluate inpainting methods on a fixed masked photo set.")
    parser.add_argument("--image_dir", type=Path, default=Path("data/photos/eval"), help="Evaluation images.")
    parser.add_argument("--checkpoint", type=Path, help="StrDiffusion pipeline folder (strdiffusion* methods).")
    parser.add_argument("--no_structure_checkpoint", type=Path, help="Pipeline folder without structure network.")
    parser.add_argument("--resolution", type=int, default=128, help="Side of the square samples.")
    parser.add_argument("--buckets", nargs="+", default=list(HOLE_RATIO_BUCKETS), choices=list(HOLE_RATIO_BUCKETS))
    parser.add_argument("--masks_per_image", type=int, default=1, help="Masks per image and bucket.")
    parser.add_argument("--max_images", type=int, help="Use that many images, evenly spaced over the sorted files.")
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHOD_NAMES), help="Default: classical + those with a checkpoint."
    )
    parser.add_argument("--num_inference_steps", type=int, help="Pipeline reverse steps (default: the scheduler's T).")
    parser.add_argument(
        "--sampler",
        choices=list(SAMPLER_PRESETS),
        default="released",
        help="Pipeline sampler; `posterior` / `posterior_ode` take any --num_inference_steps.",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/eval"), help="Where the report goes.")
    parser.add_argument("--cache_dir", type=Path, help="Result cache (default: <output_dir>/cache).")
    parser.add_argument("--no_cache", action="store_true", help="Recompute everything and store nothing.")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the masks, the methods and KID.")
    parser.add_argument("--no_fid", action="store_true", help="Skip FID / KID.")
    parser.add_argument("--device", help="Pipeline device (default: accelerate's device for this process).")
    parser.add_argument("--grid_rows", type=int, default=6, help="Samples in the qualitative grid.")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point: build the set and methods, evaluate, write the report (main process)."""
    args = build_arg_parser(prog).parse_args(argv)
    state = process_state()
    samples = build_eval_set(
        args.image_dir, args.resolution, args.buckets, args.masks_per_image, args.seed, args.max_images
    )
    methods = build_methods(
        args.methods,
        args.checkpoint,
        args.no_structure_checkpoint,
        args.num_inference_steps,
        args.device or state.device,
        args.sampler,
    )
    cache_dir = None if args.no_cache else (args.cache_dir or args.output_dir / "cache")
    results = evaluate(samples, methods, cache_dir=cache_dir, seed=args.seed, compute_fid=not args.no_fid)
    if results is not None:
        paths = write_report(results, args.output_dir, grid_rows=args.grid_rows)
        print(format_markdown_tables(results))
        print(f"\nWrote {', '.join(str(path) for path in paths.values())} ({results.wall_seconds:.1f} s).")
    return 0
