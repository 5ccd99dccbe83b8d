# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Coarse, learning-free fills of the hole, used as the texture SDE's mean mu.

The released StrDiffusion sets the texture mean to the masked image, `mu = image * known_mask`: the hole is 0 (black).
The process reverts towards that mean, so at large t the network sees a black hole plus noise and has to regress every
hole pixel from the context alone. A coarse classical fill of the hole in mu gives it a starting point that already
continues the colours around the hole; the network then only has to correct it (paired with the `"residual"`
prediction type of [`MeanRevertingSDEScheduler`], an untrained network starts from the fill itself).

The same function runs in training (`training/train_texture.py`) and in the pipeline (its `mean_fill` config entry),
so the mean a network sees at inference is the one it was trained with.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from skimage.restoration import inpaint_biharmonic

MEAN_FILLS: tuple[str, ...] = ("zeros", "telea", "biharmonic", "pyramid", "patchmatch", "patchmatch_blend")
"""`"zeros"`: the released mean (hole = 0). `"telea"`: OpenCV's fast-marching inpainting (Telea 2004, radius
`TELEA_RADIUS`), computed on the 8-bit image. `"biharmonic"`: scikit-image's biharmonic inpainting (the smooth
solution of the biharmonic equation with the known pixels as boundary), in float64 on the CPU; about 20 ms at 64 px and
1.5 s at 512 px per image. `"pyramid"`: push-pull interpolation over a pyramid of masked averages (float, batched,
runs on any device). `"patchmatch"`: PatchMatch patch copying (Barnes et al. 2009, `pypatchmatch`, patches of
`2 * PATCHMATCH_PATCH_RADIUS + 1` px, fixed seed), the only fill with texture: the hole gets real patches of the known
region; single-threaded C++ on the 8-bit image, about 5 ms at 64 px and 0.3 s at 128 px. `"patchmatch_blend"`: the
average of the biharmonic and the PatchMatch fills, `PATCHMATCH_BLEND_WEIGHT` of PatchMatch: half the copied texture
on a smooth base, the ensemble of the two that the fill-blending ablation (docs/ablation/patchmatch_blend.md) found
best for PSNR and KID together."""

PATCHMATCH_BLEND_WEIGHT = 0.5
"""Share of the PatchMatch fill in `"patchmatch_blend"` (the rest is the biharmonic fill)."""

PATCHMATCH_PATCH_RADIUS = 3
"""PatchMatch patch radius: 7 x 7 px patches (the `pypatchmatch` examples' setting); the evaluation harness's PatchMatch
baseline uses the same."""
PATCHMATCH_SEED = 0
"""PatchMatch draws its initial matches at random; a fixed seed makes the mean, and so the pipeline, deterministic."""

TELEA_RADIUS = 3
"""Neighbourhood radius (px) of the Telea fill; the evaluation harness's OpenCV baselines use the same."""


def fill_hole(image: torch.Tensor, known_mask: torch.Tensor, method: str) -> torch.Tensor:
    """
    The texture SDE's mean: the known pixels of `image`, and a coarse fill of `method` in the hole.

    Pixels of `image` under the hole are never read (they may hold anything, NaN included).

    Args:
        image (`torch.Tensor` of shape `(B, C, H, W)`): images in [0, 1].
        known_mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 on known pixels, 0 in the hole (binary).
        method (`str`): one of [`MEAN_FILLS`].

    Returns:
        `torch.Tensor` of shape `(B, C, H, W)` in [0, 1], `image`'s dtype and device; equal to `image` on known pixels.
    """
    if method not in MEAN_FILLS:
        raise ValueError(f"`mean_fill` must be one of {MEAN_FILLS}, got {method!r}.")
    known = known_mask.bool().expand_as(image)
    known_image = torch.where(known, image, torch.zeros_like(image))
    if method == "zeros":
        return known_image
    if method == "telea":
        filled = _telea_fill(known_image, known_mask)
    elif method == "biharmonic":
        filled = _biharmonic_fill(known_image, known_mask)
    elif method == "patchmatch":
        filled = _patchmatch_fill(known_image, known_mask)
    elif method == "patchmatch_blend":
        # Both fills release the GIL: the biharmonic one runs beside PatchMatch (4.4 s and 1.1 s at 512 px).
        with ThreadPoolExecutor(max_workers=1) as pool:
            smooth = pool.submit(_biharmonic_fill, known_image, known_mask)
            textured = _patchmatch_fill(known_image, known_mask)
            filled = torch.lerp(smooth.result(), textured, PATCHMATCH_BLEND_WEIGHT)
    else:
        filled = _pyramid_fill(known_image, known_mask)
    return torch.where(known, known_image, filled.to(image.dtype))


def _fill_8bit_items(
    known_image: torch.Tensor, known_mask: torch.Tensor, inpaint: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> torch.Tensor:
    """
    Runs `inpaint(pixels, hole)` on each item's 8-bit version: `pixels` of shape `(H, W, C)` uint8, `hole` of shape
    `(H, W)` uint8 with 255 to fill. Items without any known pixel stay 0. Returns floats in [0, 1], `(B, C, H, W)`.
    """
    pixels = (known_image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
    holes = (known_mask[:, 0] < 0.5).to(torch.uint8).mul(255).cpu().numpy()
    filled = np.zeros_like(pixels)
    for index, (item, hole) in enumerate(zip(pixels, holes, strict=True)):
        if not hole.all():
            filled[index] = inpaint(np.ascontiguousarray(item), hole).reshape(item.shape)
    return torch.from_numpy(filled).to(known_image.device).permute(0, 3, 1, 2).float() / 255


def _telea_fill(known_image: torch.Tensor, known_mask: torch.Tensor) -> torch.Tensor:
    """Telea fill of each item on its 8-bit version; images without any known pixel stay 0."""
    return _fill_8bit_items(
        known_image, known_mask, lambda pixels, hole: cv2.inpaint(pixels, hole, TELEA_RADIUS, cv2.INPAINT_TELEA)
    )


def _patchmatch_fill(known_image: torch.Tensor, known_mask: torch.Tensor) -> torch.Tensor:
    """PatchMatch fill of each item on its 8-bit RGB version (1-channel images are filled as gray RGB)."""
    try:
        import patchmatch
    except ImportError as error:
        raise ImportError("`mean_fill='patchmatch'` needs `pip install pypatchmatch`.") from error

    def inpaint(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
        patchmatch.set_random_seed(PATCHMATCH_SEED)
        return patchmatch.inpaint(pixels, hole, patch_size=PATCHMATCH_PATCH_RADIUS)

    channels = known_image.shape[1]
    return _fill_8bit_items(known_image.expand(-1, 3, -1, -1), known_mask, inpaint)[:, :channels]


def _biharmonic_fill(known_image: torch.Tensor, known_mask: torch.Tensor) -> torch.Tensor:
    """Biharmonic fill of each item (float64 on the CPU); images without any known pixel stay 0."""
    pixels = known_image.detach().double().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    holes = (known_mask[:, 0] < 0.5).cpu().numpy()
    filled = np.zeros_like(pixels)
    for index, (item, hole) in enumerate(zip(pixels, holes, strict=True)):
        if not hole.all():
            filled[index] = inpaint_biharmonic(item, hole, channel_axis=-1)
    return torch.from_numpy(filled).to(known_image.device).permute(0, 3, 1, 2).float().clamp(0, 1)


def _pyramid_fill(known_image: torch.Tensor, known_mask: torch.Tensor) -> torch.Tensor:
    """
    Push-pull fill: average the known pixels over a pyramid of 2x2 blocks (weighted by how much of each block is
    known) down to a single pixel, then, from the coarsest level up, give every pixel without known data the bilinear
    upsampling of the level below. Smooth, a few milliseconds at 512 px.
    """
    values, weights = known_image.float(), known_mask.float()
    pyramid = [(values, weights)]
    while min(values.shape[-2:]) > 1:
        weights_sum = F.avg_pool2d(weights, 2, ceil_mode=True)
        values = F.avg_pool2d(values * weights, 2, ceil_mode=True) / weights_sum.clamp(min=1e-8)
        weights = weights_sum
        pyramid.append((values, weights))
    filled = pyramid[-1][0]
    for values, weights in reversed(pyramid[:-1]):
        upsampled = F.interpolate(filled, size=values.shape[-2:], mode="bilinear", align_corners=False)
        coverage = weights.clamp(max=1)
        filled = coverage * values + (1 - coverage) * upsampled
    return filled.clamp(0, 1)
