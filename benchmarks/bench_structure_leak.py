#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""How much the hole's content leaks into the structure map, for the three ways of computing the Canny map.

The released sampler runs Canny on the full ground-truth image and masks it afterwards (see
docs/released_implementation.md, "Structure maps: Canny on the full image"): with
sigma = 2 the smoothing reaches ~4 sigma into the hole, so known pixels near the border carry edges caused by the
hole content. For every held-out photo x seeded mask this script computes, on the *known* pixels:

- `leak`: fraction of known pixels whose edge value changes when the hole is filled with other content (uniform
  noise) instead of the ground truth: what the hole content decides. 0 means nothing under the hole is read.
- `border_edges`: edge pixels within 3 px of the hole border, per 1000 border pixels (spurious edges drawn along
  the hole outline inflate it).
- `agreement`: F1 of the known-region edges against the released full-image map (how close to the released maps).

Methods: `full_image` (released), `masked_image` (naive: Canny on the image with the hole zeroed) and
`known_pixels` (the pipeline's default: scikit-image's masked Canny, smoothing normalised over known pixels).

    python benchmarks/bench_structure_leak.py --image_dir data/photos/eval --resolution 128
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from diffusers_strdiff.evaluation import build_eval_set
from diffusers_strdiff.structure import INFERENCE_CANNY_SIGMA, edge_map

METHODS = ("full_image", "masked_image", "known_pixels")


def edges(method: str, image: torch.Tensor, known: torch.Tensor, sigma: float) -> np.ndarray:
    """`(H, W)` bool Canny map of `image` `(3, H, W)` with known mask `known` `(1, H, W)` by `method`."""
    if method == "full_image":
        result = edge_map(image, sigma=sigma)
    elif method == "masked_image":
        result = edge_map(image * known, sigma=sigma)
    else:
        result = edge_map(image * known, sigma=sigma, known_mask=known)
    return result[0].numpy() > 0.5


def f1(prediction: np.ndarray, reference: np.ndarray) -> float:
    true_positive = np.logical_and(prediction, reference).sum()
    denominator = prediction.sum() + reference.sum()
    return 1.0 if denominator == 0 else float(2 * true_positive / denominator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_dir", type=Path, default=Path("data/photos/eval"))
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--max_images", type=int, default=None)
    parser.add_argument("--sigma", type=float, default=INFERENCE_CANNY_SIGMA)
    args = parser.parse_args()
    samples = build_eval_set(args.image_dir, args.resolution, max_images=args.max_images)
    generator = torch.Generator().manual_seed(0)
    stats: dict[str, dict[str, list[float]]] = {method: {"leak": [], "border": [], "f1": []} for method in METHODS}
    for sample in samples:
        known = 1 - sample.mask
        other = sample.image * known + torch.rand(sample.image.shape, generator=generator) * sample.mask
        known_pixels = known[0].numpy() > 0.5
        hole = ~known_pixels
        border = binary_dilation(hole, iterations=3) & known_pixels
        reference = edges("full_image", sample.image, known, args.sigma) & known_pixels
        for method in METHODS:
            original = edges(method, sample.image, known, args.sigma) & known_pixels
            changed = edges(method, other, known, args.sigma) & known_pixels
            stats[method]["leak"].append(float((original != changed).sum() / known_pixels.sum()))
            stats[method]["border"].append(float(1000 * original[border].sum() / max(border.sum(), 1)))
            stats[method]["f1"].append(f1(original, reference))
    print(f"{len(samples)} samples ({args.resolution} px, Canny sigma {args.sigma}); mean over samples\n")
    print("| edge map | leak (% known px decided by the hole) | edges / 1000 border px | F1 vs released |")
    print("|---|---|---|---|")
    for method in METHODS:
        values = {name: float(np.mean(series)) for name, series in stats[method].items()}
        print(f"| {method} | {100 * values['leak']:.3f} | {values['border']:.1f} | {values['f1']:.3f} |")


if __name__ == "__main__":
    main()
