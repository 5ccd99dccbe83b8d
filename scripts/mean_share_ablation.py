#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""PSNR and KID of the default pipeline with another PatchMatch share in its texture mean, without training.

The bundled checkpoint's texture mean `mean_fill="patchmatch_blend"` holds `(1 - w) * biharmonic + w * PatchMatch` in
the hole, `w = coarse_fill.PATCHMATCH_BLEND_WEIGHT` (0.5). Its small networks follow their mean closely, so `w` is the
knob between PSNR (the smooth fill) and KID (PatchMatch's copied texture). For each `--weights` value this script sets
`w`, runs the classical baselines and the pipeline (posterior sampler, `--num_inference_steps` steps, no resampling)
through the evaluation harness, and reports PSNR and KID per hole-ratio bucket, with the KID difference to PatchMatch
and its jackknife standard error over photos (`kid_uncertainty.py`).

Meant for photos the choice is not judged on: by default the *train* split. The classical fills learn nothing, so
their numbers there are unbiased; the networks were trained on these photos, which shifts both weights' pipeline
rows alike.

    python scripts/mean_share_ablation.py --resolution 128 --max_images 120 --masks_per_image 2 \\
        --weights 0.5 0.75 --output docs/ablation/mean_share_128.md

The classical fills do not depend on `w` and run once (result cache `<cache_dir>/<image folder>_<resolution>`). The
pipeline runs once per weight, each with its own result cache (`..._w<weight>`): the harness keys a pipeline's results
on its folder, which does not record `w`. One Inception feature cache (`<cache_dir>/_inception`) serves every run.
"""

import argparse
import sys
from pathlib import Path

import diffusers_strdiff.coarse_fill as coarse_fill
from diffusers_strdiff import DEFAULT_CHECKPOINT
from diffusers_strdiff.evaluation import InceptionFeatureExtractor, build_eval_set, build_methods, evaluate
from diffusers_strdiff.evaluation.methods import _to_uint8_hwc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kid_uncertainty import features_of, kid_against_reference  # noqa: E402

PIPELINE = "strdiffusion_no_resampling"
CLASSICAL = ("telea", "navier_stokes", "biharmonic", "patchmatch")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 0.75], help="PatchMatch shares w.")
    parser.add_argument("--image_dir", type=Path, default=Path("data/photos/train"))
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--max_images", type=int, default=120)
    parser.add_argument("--masks_per_image", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--num_inference_steps", type=int, default=2)
    parser.add_argument("--cache_dir", type=Path, default=Path("runs/mean_share"))
    parser.add_argument("--output", type=Path, help="Also write the Markdown table here.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    samples = build_eval_set(
        args.image_dir, args.resolution, masks_per_image=args.masks_per_image, max_images=args.max_images
    )
    buckets = list(dict.fromkeys(sample.bucket for sample in samples))
    bucket_samples = {bucket: [sample for sample in samples if sample.bucket == bucket] for bucket in buckets}
    run_name = f"{args.image_dir.name}_{args.resolution}"
    extractor = InceptionFeatureExtractor(cache_dir=args.cache_dir / "_inception")

    def evaluate_methods(names: tuple[str, ...], cache_dir: Path) -> tuple[dict, dict]:
        """Runs `names` through the harness; returns `bucket -> method -> (n, d)` features and the harness metrics."""
        methods = build_methods(
            names, args.checkpoint, num_inference_steps=args.num_inference_steps, sampler="posterior"
        )
        results = evaluate(samples, methods, cache_dir=cache_dir, compute_fid=False, show_progress=False)
        outputs = {(record.method, record.sample_id): record.output for record in results.records}
        features = {
            bucket: {
                method: features_of(
                    [outputs[method, sample.sample_id] for sample in bucket_samples[bucket]], extractor
                )
                for method in results.methods
            }
            for bucket in buckets
        }
        return features, results.metrics

    real = {
        bucket: features_of([_to_uint8_hwc(sample.image) for sample in bucket_samples[bucket]], extractor)
        for bucket in buckets
    }
    photos = {bucket: [sample.image_id for sample in bucket_samples[bucket]] for bucket in buckets}
    classical_features, classical_metrics = evaluate_methods(CLASSICAL, args.cache_dir / run_name)
    lines = [
        f"{len(samples) // len(buckets)} samples per bucket ({args.image_dir}, {args.resolution} px, "
        f"{args.masks_per_image} masks per photo). PSNR in dB; KID - PatchMatch with its jackknife standard error "
        "(negative: lower KID than PatchMatch).",
        "",
        "| w | method | " + " | ".join(f"PSNR / KID - PatchMatch, {bucket} %" for bucket in buckets) + " |",
        "|---:|---|" + "---|" * len(buckets),
    ]
    for index, weight in enumerate(args.weights):
        coarse_fill.PATCHMATCH_BLEND_WEIGHT = weight
        pipeline_features, pipeline_metrics = evaluate_methods((PIPELINE,), args.cache_dir / f"{run_name}_w{weight}")
        cells = {method: [] for method in (*CLASSICAL, PIPELINE)}
        for bucket in buckets:
            fake = {**classical_features[bucket], **pipeline_features[bucket]}
            rows = kid_against_reference(real[bucket], fake, photos[bucket], "patchmatch")
            metrics = {**classical_metrics[bucket], **pipeline_metrics[bucket]}
            for method, row in rows.items():
                psnr = metrics[method]["psnr_mean"]
                cells[method].append(
                    f"{psnr:.2f} / {row['difference']:+.4f} +- {row['difference_se']:.4f}"
                    if method != "patchmatch"
                    else f"{psnr:.2f} / KID {row['kid']:+.4f}"
                )
        if index == 0:
            lines += [f"| - | {method} | " + " | ".join(cells[method]) + " |" for method in CLASSICAL]
        lines.append(f"| {weight} | default pipeline | " + " | ".join(cells[PIPELINE]) + " |")
    text = "\n".join(lines)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
