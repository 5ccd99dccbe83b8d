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

Each weight keeps its own result cache (`<cache_dir>/<image folder>_<resolution>_w<weight>`): the harness keys a pipeline's results on its folder,
which does not record `w`.
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
METHODS = ("telea", "navier_stokes", "biharmonic", "patchmatch", PIPELINE)


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
    truths = {sample.sample_id: _to_uint8_hwc(sample.image) for sample in samples}
    lines = [
        f"{len(samples) // len(buckets)} samples per bucket ({args.image_dir}, {args.resolution} px, "
        f"{args.masks_per_image} masks per photo). PSNR in dB; KID - PatchMatch with its jackknife standard error "
        "(negative: lower KID than PatchMatch).",
        "",
        "| w | method | " + " | ".join(f"PSNR / KID - PatchMatch, {bucket} %" for bucket in buckets) + " |",
        "|---:|---|" + "---|" * len(buckets),
    ]
    for weight in args.weights:
        coarse_fill.PATCHMATCH_BLEND_WEIGHT = weight
        cache_dir = args.cache_dir / f"{args.image_dir.name}_{args.resolution}_w{weight}"
        methods = build_methods(
            METHODS, args.checkpoint, num_inference_steps=args.num_inference_steps, sampler="posterior"
        )
        results = evaluate(samples, methods, cache_dir=cache_dir, compute_fid=False, show_progress=False)
        extractor = InceptionFeatureExtractor(cache_dir=cache_dir / "_inception")
        outputs = {(record.method, record.sample_id): record.output for record in results.records}
        cells = {method: [] for method in results.methods}
        for bucket in buckets:
            bucket_samples = [sample for sample in samples if sample.bucket == bucket]
            ids = [sample.sample_id for sample in bucket_samples]
            real = features_of([truths[i] for i in ids], extractor)
            fake = {method: features_of([outputs[method, i] for i in ids], extractor) for method in results.methods}
            rows = kid_against_reference(real, fake, [sample.image_id for sample in bucket_samples], "patchmatch")
            for method, row in rows.items():
                psnr = results.metrics[bucket][method]["psnr_mean"]
                cells[method].append(
                    f"{psnr:.2f} / {row['difference']:+.4f} +- {row['difference_se']:.4f}"
                    if method != "patchmatch"
                    else f"{psnr:.2f} / KID {row['kid']:+.4f}"
                )
        for method in results.methods:
            if method == PIPELINE:
                lines.append(f"| {weight} | default pipeline | " + " | ".join(cells[method]) + " |")
            elif weight == args.weights[0]:  # the classical fills do not depend on w
                lines.append(f"| - | {method} | " + " | ".join(cells[method]) + " |")
    text = "\n".join(lines)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
