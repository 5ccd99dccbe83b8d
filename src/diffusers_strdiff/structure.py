# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Structure maps of StrDiffusion: the grayscale image (structure x_0) and its Canny edges (structure mu).

The released data pipeline converts the float RGB tensor to uint8 by truncation (torchvision's `ToPILImage`), takes
scikit-image's `rgb2gray` of that (0.2125 R + 0.7154 G + 0.0721 B, float64) and runs `skimage.feature.canny` with
default thresholds on the float64 grayscale. These functions reproduce that bit for bit.
"""

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny

from .coarse_fill import fill_hole

INFERENCE_CANNY_SIGMA = 2.0
"""Gaussian sigma of the Canny detector in the released test pipeline."""

TRAINING_CANNY_SIGMA = 3.0
"""Gaussian sigma of the Canny detector in the released training pipelines (a train/test mismatch, kept as is)."""

STRUCTURE_FRACTION = 0.4
"""Released split of the sampler: steps with t >= floor(0.4 T) are structure-guided (the early stage)."""

TEXTURE_GUIDANCES: tuple[str, ...] = ("state", "estimate")
"""What guides the texture network in the early stage. `"state"` (released): the structure state after each structure
step. It was trained with the Eq.4 optimum x*_{t-1} of the ground truth, which at large t is almost all structure mean
(it holds exp(-bar_theta_{t-1}) of the structure), while a few-step sampler hands over the state at the jump's target
time. `"estimate"`: the structure network's x_0 estimate of the step (known grayscale pasted, clamped to [0, 1]), the
same kind of map at every t and every step count; the late stage keeps the last one. A texture network for it is
trained with the frozen structure network's estimate (`train_texture.py --texture_guidance estimate`)."""

STRUCTURE_MEANS: tuple[str, ...] = ("edges", "filled_gray")
"""What the structure SDE reverts to. `"edges"` (released): the Canny edges of the known region, 0 in the hole. The
known grayscale then reaches the structure network only through the re-anchored state, whose gray content is
exp(-bar_theta_t) of it: 0.6 % at t = T - 1 with the bundled schedule, so a few-step sampler that starts at T sees
almost none of it. `"filled_gray"`: the known grayscale with the hole filled by the pipeline's `structure_fill` (by
default the texture mean's `mean_fill`), so the network sees the known structure at every t (paired with the
`"residual"` prediction, an untrained network returns the fill itself)."""


def _check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(image).__name__}.")
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"`{name}` must have shape (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}.")
    if not image.is_floating_point():
        raise ValueError(f"`{name}` must be a float tensor with values in [0, 1], got dtype {image.dtype}.")
    if image.numel() and (image.min() < 0 or image.max() > 1):
        raise ValueError(
            f"`{name}` values must be in [0, 1], got [{image.min().item():.4g}, {image.max().item():.4g}]."
        )
    return image


def _grayscale_float64(image: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) float [0, 1] -> (N, H, W) float64 grayscale of the truncated uint8 image."""
    image_uint8 = image.detach().cpu().float().mul(255).to(torch.uint8)  # truncation, as ToPILImage
    pixels = image_uint8.reshape(-1, 3, *image.shape[-2:]).permute(0, 2, 3, 1).numpy()
    return np.stack([rgb2gray(pixel_block) for pixel_block in pixels])


def _as_map(values: np.ndarray, image: torch.Tensor) -> torch.Tensor:
    maps = torch.from_numpy(np.ascontiguousarray(values)).to(torch.float32)
    return maps.reshape(*image.shape[:-3], 1, *image.shape[-2:]).to(image.device)


def grayscale_map(image: torch.Tensor) -> torch.Tensor:
    """
    The grayscale structure map x_0 of an RGB image, as the released data pipeline computes it.

    Args:
        image (`torch.Tensor` of shape `(3, H, W)` or `(B, 3, H, W)`): float RGB in [0, 1].

    Returns:
        `torch.Tensor` of shape `(1, H, W)` or `(B, 1, H, W)`: float32 grayscale in [0, 1].
    """
    image = _check_image(image)
    return _as_map(_grayscale_float64(image), image)


def edge_map(
    image: torch.Tensor, sigma: float = INFERENCE_CANNY_SIGMA, known_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """
    The Canny edge map of an RGB image (the structure SDE's mean before masking), as the released pipeline computes it.

    Args:
        image (`torch.Tensor` of shape `(3, H, W)` or `(B, 3, H, W)`):
            Float RGB in [0, 1].
        sigma (`float`, defaults to `INFERENCE_CANNY_SIGMA` = 2.0):
            Gaussian smoothing of the Canny detector; the released training used `TRAINING_CANNY_SIGMA` = 3.0.
        known_mask (`torch.Tensor` of shape `(1, H, W)` or `(B, 1, H, W)`, *optional*):
            1 = known pixel, 0 = hole. When given, the detector only sees known pixels (scikit-image's masked
            Canny: mask-normalised smoothing, no edges at the hole border), so nothing under the hole can influence
            the map. `None` reproduces the released computation on the full image.

    Returns:
        `torch.Tensor` of shape `(1, H, W)` or `(B, 1, H, W)`: float32 in {0, 1}.
    """
    image = _check_image(image)
    if sigma <= 0:
        raise ValueError(f"`sigma` must be > 0, got {sigma}.")
    grays = _grayscale_float64(image)
    if known_mask is None:
        masks = [None] * len(grays)
    else:
        if known_mask.shape != (*image.shape[:-3], 1, *image.shape[-2:]):
            raise ValueError(
                f"`known_mask` must have shape {(*image.shape[:-3], 1, *image.shape[-2:])}, got {tuple(known_mask.shape)}."
            )
        masks = list(known_mask.detach().cpu().reshape(-1, *image.shape[-2:]).numpy() > 0.5)
    edges = np.stack([canny(gray, sigma=sigma, mask=mask) for gray, mask in zip(grays, masks, strict=True)])
    return _as_map(edges, image)


def structure_mean(
    known_gray: torch.Tensor, edges: torch.Tensor, known_mask: torch.Tensor, kind: str, fill: str
) -> torch.Tensor:
    """
    The structure SDE's mean mu_x.

    Args:
        known_gray (`torch.Tensor` of shape `(B, 1, H, W)`): the grayscale map in [0, 1]; pixels in the hole are not read.
        edges (`torch.Tensor` of shape `(B, 1, H, W)`): the edge map in {0, 1}; pixels in the hole are not read.
        known_mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 on known pixels, 0 in the hole.
        kind (`str`): one of [`STRUCTURE_MEANS`].
        fill (`str`): the fill of `"filled_gray"`, one of [`~diffusers_strdiff.coarse_fill.MEAN_FILLS`].

    Returns:
        `torch.Tensor` of shape `(B, 1, H, W)` in [0, 1], in `known_gray`'s dtype.
    """
    if kind == "edges":
        return (edges * known_mask).to(known_gray.dtype)
    if kind == "filled_gray":
        return fill_hole(known_gray, known_mask, fill)
    raise ValueError(f"`structure_mean` must be one of {STRUCTURE_MEANS}, got {kind!r}.")


def estimate_guidance(
    structure_estimate: torch.Tensor, known_gray: torch.Tensor, known_mask: torch.Tensor
) -> torch.Tensor:
    """
    The texture guidance of `texture_guidance="estimate"`: the structure network's x_0 estimate in the hole, clamped
    to [0, 1], and the known grayscale elsewhere. Shapes `(B, 1, H, W)`; `known_mask` is 1 on known pixels.
    """
    return torch.where(known_mask.bool(), known_gray, structure_estimate.clamp(0, 1)).to(structure_estimate.dtype)
