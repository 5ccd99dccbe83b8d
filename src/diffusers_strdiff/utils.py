# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Small helpers shared by the training, evaluation and folder-inpainting code, each written once: image listing, the
centre crop and resize of fixed-size samples, PSNR, seeds derived from a run seed and accelerate's process state.
"""

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import PartialState

from .image_io import load_image
from .masks import MASK_IMAGE_EXTENSIONS

#: Image file extensions the training and evaluation folders are read with (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = MASK_IMAGE_EXTENSIONS
#: Files of an image folder that are not samples (the metadata files of a `datasets` imagefolder).
IGNORED_FILES = frozenset({"metadata.csv", "metadata.jsonl", "metadata.parquet"})
#: Filter of the fixed-size resize (PIL's bicubic, antialiased when downscaling).
RESIZE_FILTER = PIL.Image.Resampling.BICUBIC

_SEED_MASK = (1 << 63) - 1


def list_image_files(folder: str | os.PathLike, argument: str = "folder") -> list[Path]:
    """
    The readable images of a folder, recursively, sorted by path. Hidden files and `datasets` metadata files are
    ignored; other files (non-image extensions, or files that cannot be decoded whole: unidentified, truncated, larger
    than `image_io.MAX_IMAGE_PIXELS`) are skipped with one warning naming them.

    Raises:
        FileNotFoundError: when `folder` is not a directory; ValueError: when it holds no readable image (both
        messages name `argument`).
    """
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{argument} {str(folder)!r} does not exist or is not a directory.")
    images, skipped = [], []
    for root, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            path = Path(root, name)
            if name.startswith(".") or name in IGNORED_FILES:
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not _readable(path):
                skipped.append(path)
                continue
            images.append(path)
    if skipped:
        names = ", ".join(str(path.relative_to(folder)) for path in skipped[:5])
        logging.getLogger(__name__).warning(
            f"{argument}: skipping {len(skipped)} file(s) that are not readable images "
            f"({names}{', ...' if len(skipped) > 5 else ''})."
        )
    if not images:
        raise ValueError(f"{argument} {str(folder)!r} holds no readable image ({', '.join(IMAGE_EXTENSIONS)}).")
    return images


def _readable(path: Path) -> bool:
    try:
        load_image(path)  # decodes the whole file: a truncated image is caught here, not mid-run
    except (OSError, ValueError):
        return False
    return True


def center_crop_resize(image: PIL.Image.Image, resolution: int) -> PIL.Image.Image:
    """
    The RGB image centre-cropped to a square (side = its short side; an odd margin leaves the extra pixel on the right
    / bottom) and resized to `resolution` x `resolution` with [`RESIZE_FILTER`].
    """
    rgb = image.convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    return rgb.crop((left, top, left + side, top + side)).resize((resolution, resolution), RESIZE_FILTER)


def psnr(prediction: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> torch.Tensor:
    """
    PSNR in dB per item of images in [0, 1]: `10 log10(1 / MSE)` over all but the first (batch) dimension, in float64,
    with the prediction clamped to [0, 1]; `inf` for an exact match. Tensors or arrays of equal shapes `(B, ...)`.
    """
    prediction, target = torch.as_tensor(prediction).double(), torch.as_tensor(target).double()
    mse = (prediction.clamp(0, 1) - target).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse)


def derived_seed(*parts: object) -> int:
    """
    A 63-bit seed that depends only on `parts` (e.g. `(run seed, stream, epoch, index)` or `("mask", seed, file stem,
    bucket, index)`): SHA-256 of their text, so it is stable across runs, machines and Python hash seeds.
    """
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_MASK


def process_state() -> PartialState:
    """
    accelerate's process state. On machines without CUDA, a multi-process launch (`torchrun`, or
    `accelerate launch --cpu` with MPI) is distributed only when the state is created with `cpu=True`, which is done
    then (and when `ACCELERATE_USE_CPU` is set).
    """
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=use_cpu or ("LOCAL_RANK" in os.environ and not torch.cuda.is_available()))
