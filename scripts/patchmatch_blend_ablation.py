# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""PSNR / KID of the default pipeline's fill blended with PatchMatch's, per hole-ratio bucket.

Asks how far from PatchMatch's KID the PSNR-trained fills are, and what reaching it would cost: in the hole,

* `mix`: `(1 - w) * pipeline + w * patchmatch` (w = 0 is the pipeline, w = 1 PatchMatch itself);
* `detail`: `pipeline + w * (patchmatch - gaussian_blur(patchmatch, sigma=1 px))`, PatchMatch's high frequencies only.

Both on the evaluation harness's set (same photos, masks, seeds and cache as `strdiff evaluate`), outputs rounded to
8 bits with the known region pasted, as every method there. Prints a Markdown table and writes JSON.

    python scripts/patchmatch_blend_ablation.py --resolution 64 --output docs/ablation/patchmatch_blend_64.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from diffusers_strdiff import DEFAULT_CHECKPOINT
from diffusers_strdiff.evaluation.eval_set import build_eval_set
from diffusers_strdiff.evaluation.methods import _to_uint8_hwc, build_methods
from diffusers_strdiff.evaluation.metrics import InceptionFeatureExtractor, distribution_metrics, psnr
from diffusers_strdiff.evaluation.run import evaluate

VARIANTS: tuple[tuple[str, float], ...] = (
    ("mix", 0.0),
    ("mix", 0.25),
    ("mix", 0.5),
    ("mix", 0.75),
    ("mix", 1.0),
    ("detail", 0.5),
    ("detail", 1.0),
)
BUCKETS = ("0-20", "20-40", "40-60")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_dir", type=Path, default=Path("data/photos/eval"))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--max_images", type=int, default=20)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--num_inference_steps", type=int, default=2)
    parser.add_argument("--cache_dir", type=Path, default=Path("runs/eval_cache"))
    parser.add_argument("--output", type=Path, help="Also write the rows as JSON here.")
    return parser.parse_args()


def blend(kind: str, weight: float, fill: np.ndarray, patchmatch: np.ndarray) -> np.ndarray:
    """The blended fill (float, 0-255) of two `(H, W, 3)` uint8 outputs."""
    fill, patchmatch = fill.astype(np.float64), patchmatch.astype(np.float64)
    if kind == "mix":
        return (1 - weight) * fill + weight * patchmatch
    return fill + weight * (patchmatch - gaussian_filter(patchmatch, sigma=(1.0, 1.0, 0.0)))


def main() -> None:
    args = parse_args()
    samples = build_eval_set(args.image_dir, resolution=args.resolution, max_images=args.max_images)
    methods = build_methods(
        ["patchmatch", "strdiffusion_no_resampling"],
        checkpoint=args.checkpoint,
        num_inference_steps=args.num_inference_steps,
        sampler="posterior",
    )
    results = evaluate(samples, methods, cache_dir=args.cache_dir, compute_fid=False, show_progress=False)
    outputs = {(record.method, record.sample_id): record.output for record in results.records}
    extractor = InceptionFeatureExtractor(cache_dir=args.cache_dir / "_inception")

    rows = []
    for kind, weight in VARIANTS:
        row = {"kind": kind, "weight": weight}
        for bucket in BUCKETS:
            real, fake, scores = [], [], []
            for sample in (sample for sample in samples if sample.bucket == bucket):
                truth = _to_uint8_hwc(sample.image)
                blended = blend(
                    kind,
                    weight,
                    outputs[("strdiffusion_no_resampling", sample.sample_id)],
                    outputs[("patchmatch", sample.sample_id)],
                )
                hole = sample.mask[0].numpy()[..., None] > 0.5
                output = np.clip(np.where(hole, blended, truth).round(), 0, 255).astype(np.uint8)
                real.append(truth)
                fake.append(output)
                scores.append(psnr(output / 255.0, truth / 255.0))
            kid = distribution_metrics(real, fake, extractor)["kid_mean"]
            row[bucket] = {"psnr": float(np.mean(scores)), "kid": kid}
        rows.append(row)

    print(f"{args.resolution} px, {args.max_images} photos x {len(BUCKETS)} buckets\n")
    print("| variant | w | " + " | ".join(f"PSNR / KID {bucket} %" for bucket in BUCKETS) + " |")
    print("|---|---:|" + "---|" * len(BUCKETS))
    for row in rows:
        cells = " | ".join(f"{row[bucket]['psnr']:.2f} / {row[bucket]['kid']:.4f}" for bucket in BUCKETS)
        print(f"| {row['kind']} | {row['weight']} | {cells} |")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"resolution": args.resolution, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
