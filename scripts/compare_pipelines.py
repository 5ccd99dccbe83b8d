#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""PSNR / SSIM / KID per hole-ratio bucket of several pipeline folders next to the classical baselines.

Each `--pipeline NAME=DIR[,setting=value...]` is a pipeline folder (bundled, assembled or a training checkpoint
assembled with `training/assemble_pipeline.py`); `setting=value` pairs override entries of its `model_index.json`
(`mean_fill`, `structure_fill`, ...), for example to run trained networks on another coarse mean without training.
An overridden pipeline is saved under `<cache_dir>/pipelines/NAME`, so the result cache keys on what really ran.
Every pipeline runs the posterior sampler with `--num_inference_steps` steps and no resampling, on the evaluation
harness's photos, masks and seeds (`strdiff evaluate`). Prints a Markdown table and writes it with the numbers as
JSON to `--output` (`.md` and `.json`).

    python scripts/compare_pipelines.py --resolution 64 --output docs/ablation/textured_mean_64 \
        --pipeline bundled=src/diffusers_strdiff/checkpoints/strdiffusion-photos-64 \
        --pipeline "blend_zero_shot=src/diffusers_strdiff/checkpoints/strdiffusion-photos-64,mean_fill=patchmatch_blend"
"""

import argparse
import json
from pathlib import Path

from diffusers_strdiff.evaluation import build_eval_set, classical_methods, evaluate, strdiffusion_method
from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline

BUCKETS = ("0-20", "20-40", "40-60")


def parse_pipeline(value: str) -> tuple[str, Path, dict[str, str]]:
    """`NAME=DIR[,setting=value...]` -> (name, folder, overrides)."""
    name, separator, rest = value.partition("=")
    if not separator or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR[,setting=value...], got {value!r}")
    folder, *pairs = rest.split(",")
    overrides = dict(pair.split("=", 1) for pair in pairs)
    if not Path(folder).is_dir():
        raise argparse.ArgumentTypeError(f"pipeline folder {folder!r} does not exist")
    return name, Path(folder), overrides


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=parse_pipeline, action="append", required=True)
    parser.add_argument("--image_dir", type=Path, default=Path("data/photos/eval"))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--max_images", type=int, default=20)
    parser.add_argument("--num_inference_steps", type=int, default=2)
    parser.add_argument("--cache_dir", type=Path, default=Path("runs/eval_cache"))
    parser.add_argument("--output", type=Path, help="Write `<output>.md` and `<output>.json`.")
    return parser.parse_args()


def pipeline_folder(name: str, folder: Path, overrides: dict[str, str], cache_dir: Path) -> Path:
    """`folder` itself, or a copy with the `overrides` in its config."""
    if not overrides:
        return folder
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(folder)
    settings = {key: value for key, value in pipeline.config.items() if not key.startswith("_")}
    settings = {key: value for key, value in settings.items() if key not in pipeline.components}
    pipeline = StrDiffusionInpaintPipeline(**pipeline.components, **{**settings, **overrides})  # checks the values
    target = cache_dir / "pipelines" / name
    pipeline.save_pretrained(target)
    return target


def main() -> None:
    args = parse_args()
    samples = build_eval_set(args.image_dir, resolution=args.resolution, max_images=args.max_images)
    methods = classical_methods()
    for name, folder, overrides in args.pipeline:
        folder = pipeline_folder(name, folder, overrides, args.cache_dir)
        methods.append(strdiffusion_method(name, folder, False, args.num_inference_steps, sampler="posterior"))
    results = evaluate(samples, methods, cache_dir=args.cache_dir, compute_fid=True)
    rows = {
        method: {
            bucket: {key: results.metrics[bucket][method][f"{key}_mean"] for key in ("psnr", "ssim", "kid")}
            for bucket in BUCKETS
        }
        for method in results.methods
    }
    lines = [
        f"{args.resolution} px, {args.max_images} photos x {len(BUCKETS)} buckets, posterior sampler "
        f"{args.num_inference_steps} steps (pipelines)",
        "",
        "| method | " + " | ".join(f"PSNR / SSIM / KID {bucket} %" for bucket in BUCKETS) + " |",
        "|---|" + "---|" * len(BUCKETS),
    ]
    for method, buckets in rows.items():
        cells = [
            f"{buckets[bucket]['psnr']:.2f} / {buckets[bucket]['ssim']:.3f} / {buckets[bucket]['kid']:.4f}"
            for bucket in BUCKETS
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_suffix(".md").write_text(table + "\n")
        pipelines = {
            name: {"folder": str(folder), "overrides": overrides} for name, folder, overrides in args.pipeline
        }
        record = {"resolution": args.resolution, "pipelines": pipelines, "rows": rows}
        args.output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
