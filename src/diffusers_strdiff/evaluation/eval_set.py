# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The fixed evaluation set: images centre-cropped and resized, paired with seeded hole masks per bucket."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..image_io import load_image
from ..masks import HOLE_RATIO_BUCKETS, generate_irregular_mask
from ..utils import center_crop_resize, derived_seed, list_image_files


@dataclass(frozen=True)
class EvalSample:
    """
    One evaluation sample: an image and a hole mask.

    Args:
        sample_id (`str`): unique and file-name safe: `<image_id>__<bucket>__m<mask_index>`.
        image_id (`str`): the image file's stem.
        bucket (`str`): the hole-ratio bucket of the mask, a key of [`HOLE_RATIO_BUCKETS`].
        mask_index (`int`): index of the mask among the image's masks of this bucket.
        image (`torch.Tensor` of shape `(3, R, R)`): float32 RGB in [0, 1] (multiples of 1/255).
        mask (`torch.Tensor` of shape `(1, R, R)`): float32 in {0, 1}, 1 = hole.
    """

    sample_id: str
    image_id: str
    bucket: str
    mask_index: int
    image: torch.Tensor
    mask: torch.Tensor


def load_eval_image(path: str | Path, resolution: int) -> torch.Tensor:
    """
    Loads an image as RGB, centre-cropped to a square and resized to `resolution` (see
    [`~diffusers_strdiff.utils.center_crop_resize`]: PIL's antialiased bicubic filter).

    Returns:
        `torch.Tensor` of shape `(3, resolution, resolution)`, float32 in [0, 1] (multiples of 1/255).
    """
    square = center_crop_resize(load_image(path, "RGB", "image"), resolution)
    return torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def list_images(image_dir: str | Path, max_images: int | None = None) -> list[Path]:
    """
    The readable images of a directory (recursive, sorted by path; see
    [`~diffusers_strdiff.utils.list_image_files`]); with `max_images`, that many evenly spaced over the sorted list
    (so a subset mixes the sources of a directory whose names group by source).
    """
    files = list_image_files(image_dir, "`image_dir`")
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"`max_images` must be >= 1, got {max_images}.")
        if max_images < len(files):
            indices = np.linspace(0, len(files) - 1, max_images).round().astype(int)
            files = [files[index] for index in indices]
    return files


def build_eval_set(
    image_dir: str | Path,
    resolution: int = 128,
    buckets: Sequence[str] = ("0-20", "20-40", "40-60"),
    masks_per_image: int = 1,
    seed: int = 0,
    max_images: int | None = None,
) -> list[EvalSample]:
    """
    Builds the fixed evaluation set: every image of `image_dir` (see [`list_images`]) with `masks_per_image` masks
    per hole-ratio bucket.

    Each mask is drawn by [`generate_irregular_mask`] (redrawn until its hole ratio is in the bucket) from a generator
    seeded with a hash of `(seed, image file stem, bucket, mask index)`, so it depends on nothing else: not on the
    other images, the order, `max_images` or the run.

    Args:
        image_dir (`str` or `Path`): directory of images (e.g. `data/photos/eval`).
        resolution (`int`): side R of the square samples, >= 8.
        buckets (`Sequence[str]`): keys of [`HOLE_RATIO_BUCKETS`].
        masks_per_image (`int`): masks per image and bucket, >= 1.
        seed (`int`): the mask seed.
        max_images (`int`, *optional*): use that many images, evenly spaced over the sorted file list.

    Returns:
        `list[EvalSample]`, ordered by image, then bucket (in the given order), then mask index.
    """
    if resolution < 8:
        raise ValueError(f"`resolution` must be >= 8, got {resolution}.")
    if masks_per_image < 1:
        raise ValueError(f"`masks_per_image` must be >= 1, got {masks_per_image}.")
    unknown = [bucket for bucket in buckets if bucket not in HOLE_RATIO_BUCKETS]
    if unknown or not buckets:
        raise ValueError(f"`buckets` must be a non-empty subset of {list(HOLE_RATIO_BUCKETS)}, got {list(buckets)}.")
    samples = []
    for path in list_images(image_dir, max_images):
        image = load_eval_image(path, resolution)
        for bucket in buckets:
            for mask_index in range(masks_per_image):
                rng = np.random.default_rng(derived_seed("mask", seed, path.stem, bucket, mask_index))
                mask = generate_irregular_mask(resolution, resolution, rng, bucket)
                samples.append(
                    EvalSample(
                        sample_id=f"{path.stem}__{bucket}__m{mask_index}",
                        image_id=path.stem,
                        bucket=bucket,
                        mask_index=mask_index,
                        image=image,
                        mask=torch.from_numpy(mask)[None],
                    )
                )
    return samples
