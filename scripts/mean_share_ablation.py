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

Each weight keeps its own result cache (`<cache_dir>/w<weight>`): the harness keys a pipeline's results on its folder,
which does not record `w`.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

import diffusers_strdiff.coarse_fill as coarse_fill
from diffusers_strdiff import DEFAULT_CHECKPOINT
from diffusers_strdiff.evaluation import InceptionFeatureExtractor, build_eval_set, build_methods, evaluate
from diffusers_strdiff.evaluation.methods import _to_uint8_hwc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kid_uncertainty import features_of, jackknife, kid_unbiased, leave_one_photo_out  # noqa: E402

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
        psnr = {(record.method, record.bucket): [] for record in results.records}
        for record in results.records:
            psnr[record.method, record.bucket].append(record.psnr)
        cells = {method: [] for method in results.methods}
        for bucket in buckets:
            bucket_samples = [sample for sample in samples if sample.bucket == bucket]
            ids = [sample.sample_id for sample in bucket_samples]
            real = features_of([truths[i] for i in ids], extractor)
            keep = leave_one_photo_out([sample.image_id for sample in bucket_samples])
            fake = {method: features_of([outputs[method, i] for i in ids], extractor) for method in results.methods}
            kid = {method: kid_unbiased(real, fake[method]) for method in results.methods}
            left_out = {
                method: np.array([kid_unbiased(real[index], fake[method][index]) for index in keep])
                for method in results.methods
            }
            for method in results.methods:
                difference = kid[method] - kid["patchmatch"]
                error = jackknife(left_out[method] - left_out["patchmatch"])
                cells[method].append(
                    f"{np.mean(psnr[method, bucket]):.2f} / {difference:+.4f} +- {error:.4f}"
                    if method != "patchmatch"
                    else f"{np.mean(psnr[method, bucket]):.2f} / KID {kid[method]:+.4f}"
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
