#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""How sure is a KID ranking on a small evaluation set? Jackknife standard errors of each method's per-bucket KID
and of its difference to a reference method.

    python scripts/kid_uncertainty.py --checkpoint src/diffusers_strdiff/checkpoints/strdiffusion-photos-64 \\
        --resolution 64 --max_images 20 --sampler posterior --num_inference_steps 2 --output docs/eval/kid_uncertainty.md

It builds the same evaluation set and methods as `strdiff evaluate` (same arguments, same result cache) and embeds
every output with the same Inception network. KID is the unbiased MMD^2 with the cubic polynomial kernel
`(x . y / d + 1)^3` over the whole bucket: what `strdiff evaluate` reports when a bucket has at most
`KID_MAX_SUBSET_SIZE` images, and the same expectation as its average over random subsets for larger buckets, without
the subsets' sampling noise. Each photo (with all its masks: `--masks_per_image` > 1 gives several samples of one
photo per bucket) is then left out in turn, from the real and from every generated set (the images are paired), and the
jackknife standard error is `sqrt((g - 1) / g * sum_i (KID_(-i) - mean)^2)` over the `g` photos; the same for the
difference of two methods' KID, which cancels most of what the photos have in common. `z` is the difference over its
standard error.
"""

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from diffusers_strdiff.evaluation import (
    InceptionFeatureExtractor,
    build_arg_parser,
    build_eval_set,
    build_methods,
    evaluate,
)
from diffusers_strdiff.evaluation.methods import _to_uint8_hwc


def kid_unbiased(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Unbiased MMD^2 between `(n, d)` and `(m, d)` float64 features with the kernel `(x . y / d + 1)^3`."""
    dimension = real.shape[1]

    def kernel(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return (first @ second.T / dimension + 1) ** 3

    def within(features: torch.Tensor) -> torch.Tensor:
        count = len(features)
        values = kernel(features, features)
        return (values.sum() - values.diagonal().sum()) / (count * (count - 1))

    return float(within(real) + within(fake) - 2 * kernel(real, fake).mean())


def jackknife(values: np.ndarray) -> float:
    """Jackknife standard error from the `n` leave-one-out estimates."""
    count = len(values)
    return float(np.sqrt((count - 1) / count * np.sum((values - values.mean()) ** 2)))


def leave_one_photo_out(photo_of_sample: Sequence[str]) -> list[list[int]]:
    """For each photo in first-seen order, the indices of the samples that remain when all of that photo's samples
    (one per mask) are left out."""
    return [
        [index for index, photo in enumerate(photo_of_sample) if photo != left_out]
        for left_out in dict.fromkeys(photo_of_sample)
    ]


def kid_against_reference(
    real: torch.Tensor, fake: dict[str, torch.Tensor], photo_of_sample: Sequence[str], reference: str
) -> dict[str, dict[str, float]]:
    """
    KID of each method's `(n, d)` features in `fake` against the paired `real` ones, with jackknife standard errors
    over photos (each photo left out with all its samples), and its difference to the `reference` method's KID.

    Returns:
        `method -> {"kid", "se", "difference", "difference_se"}`.
    """
    keep = leave_one_photo_out(photo_of_sample)
    kid = {method: kid_unbiased(real, features) for method, features in fake.items()}
    left_out = {
        method: np.array([kid_unbiased(real[index], features[index]) for index in keep])
        for method, features in fake.items()
    }
    return {
        method: {
            "kid": kid[method],
            "se": jackknife(left_out[method]),
            "difference": kid[method] - kid[reference],
            "difference_se": jackknife(left_out[method] - left_out[reference]),
        }
        for method in fake
    }


def features_of(images: Sequence[np.ndarray], extractor: InceptionFeatureExtractor) -> torch.Tensor:
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return extractor(batch).double()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_arg_parser(prog="kid_uncertainty.py")
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--reference", default="patchmatch", help="Method the differences are taken against.")
    parser.add_argument("--output", type=Path, help="Also write the markdown tables to this file.")
    args = parser.parse_args(argv)
    samples = build_eval_set(
        args.image_dir, args.resolution, args.buckets, args.masks_per_image, args.seed, args.max_images
    )
    methods = build_methods(
        args.methods, args.checkpoint, args.no_structure_checkpoint, args.num_inference_steps, "cpu", args.sampler
    )
    cache_dir = args.cache_dir or args.output_dir / "cache"
    results = evaluate(samples, methods, cache_dir=cache_dir, seed=args.seed, compute_fid=False)
    if args.reference not in results.methods:
        parser.error(f"--reference {args.reference!r} is not among the evaluated methods {results.methods}.")
    extractor = InceptionFeatureExtractor(cache_dir=cache_dir / "_inception")
    truths = {sample.sample_id: _to_uint8_hwc(sample.image) for sample in samples}
    outputs = {(record.method, record.sample_id): record.output for record in results.records}
    lines = [
        f"KID with jackknife standard errors ({len(samples)} samples, {args.resolution} px, seed {args.seed}; "
        f"differences against `{args.reference}`, negative: lower KID than it).",
        "",
    ]
    for bucket in dict.fromkeys(sample.bucket for sample in samples):
        bucket_samples = [sample for sample in samples if sample.bucket == bucket]
        ids = [sample.sample_id for sample in bucket_samples]
        real = features_of([truths[i] for i in ids], extractor)
        fake = {method: features_of([outputs[method, i] for i in ids], extractor) for method in results.methods}
        photos = [sample.image_id for sample in bucket_samples]
        rows = kid_against_reference(real, fake, photos, args.reference)
        lines += [
            f"**{bucket} % holes** ({len(ids)} samples of {len(set(photos))} photos)",
            "",
            "| method | KID | jackknife SE | KID - reference | SE of the difference | z |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for method, row in rows.items():
            z = f"{row['difference'] / row['difference_se']:+.1f}" if row["difference_se"] > 0 else "-"
            lines.append(
                f"| {method} | {row['kid']:+.4f} | {row['se']:.4f} | {row['difference']:+.4f} | "
                f"{row['difference_se']:.4f} | {z} |"
            )
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
