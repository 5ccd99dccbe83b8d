# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The checks and conversions of the pipeline's `image` and `mask_image` arguments, before diffusers' image processor."""

import numpy as np
import PIL.Image
import torch

from ..image_io import convert_image

ImageInput = (
    PIL.Image.Image | np.ndarray | torch.Tensor | list[PIL.Image.Image] | list[np.ndarray] | list[torch.Tensor]
)
"""What `image` and `mask_image` accept: one PIL image, array or tensor, or a list of one kind and one size."""


def _height_width(item: PIL.Image.Image | np.ndarray | torch.Tensor) -> tuple[int, int]:
    """The (height, width) of one input item: PIL, numpy `(…, H, W, C)` / `(H, W)` or torch `(…, C, H, W)` / `(H, W)`."""
    if isinstance(item, PIL.Image.Image):
        return item.height, item.width
    if isinstance(item, np.ndarray) and item.ndim >= 3:
        return tuple(item.shape[-3:-1])
    return tuple(item.shape[-2:])


def validate_image_items(
    images: ImageInput, name: str, channels: int
) -> list[PIL.Image.Image | np.ndarray | torch.Tensor]:
    """
    Checks one pipeline input (`image` with `channels=3`, `mask_image` with 1) and returns its items ready for
    `VaeImageProcessor.preprocess`: PIL images converted like the CLI's (EXIF orientation, 16-bit scaling,
    transparency composited), uint8 arrays and tensors scaled to float in [0, 1].

    Raises:
        ValueError: naming `name`, for an empty list, another type, an integer dtype other than uint8, a wrong number
        of dimensions or channels (arrays `(..., H, W, C)`, tensors `(..., C, H, W)`), finite values outside [0, 1], or
        a list that mixes kinds or sizes. Non-finite values pass: the pipeline checks them where they matter.
    """
    items = images if isinstance(images, list) else [images]
    if not items:
        raise ValueError(f"`{name}` is an empty list.")
    converted = []
    for item in items:
        if isinstance(item, PIL.Image.Image):
            # The conversion of the CLI and the app: EXIF orientation, 16-bit scaling, transparency composited.
            converted.append(convert_image(item, "RGB" if channels == 3 else "L", f"`{name}`"))
            continue
        if not isinstance(item, np.ndarray | torch.Tensor):
            raise ValueError(
                f"`{name}` must be a PIL image, a numpy array, a torch tensor or a list of them, got {type(item).__name__}."
            )
        if item.dtype in (np.uint8, torch.uint8):
            item = item / 255.0 if isinstance(item, torch.Tensor) else item.astype(np.float32) / 255.0
        elif isinstance(item, np.ndarray) and not np.issubdtype(item.dtype, np.floating):
            raise ValueError(f"`{name}` must be float in [0, 1] or uint8, got dtype {item.dtype}.")
        elif isinstance(item, torch.Tensor) and not item.is_floating_point():
            raise ValueError(f"`{name}` must be float in [0, 1] or uint8, got dtype {item.dtype}.")
        if not 2 <= item.ndim <= 4:
            raise ValueError(f"`{name}` must be 2-, 3- or 4-dimensional, got shape {tuple(item.shape)}.")
        if isinstance(item, torch.Tensor) and item.ndim >= 3 and item.shape[-3] != channels:
            raise ValueError(
                f"`{name}` must have {channels} channel(s) in (…, C, H, W) layout, got shape {tuple(item.shape)}."
            )
        if isinstance(item, np.ndarray) and item.ndim >= 3 and item.shape[-1] != channels:
            raise ValueError(
                f"`{name}` must have {channels} channel(s) in (…, H, W, C) layout, got shape {tuple(item.shape)}."
            )
        if item.ndim == 2 and channels != 1:
            raise ValueError(f"`{name}` must have {channels} channels, got a 2-D array of shape {tuple(item.shape)}.")
        # Non-finite values are checked where they matter: in the mask and the known region (`prepare_inputs`).
        finite = item[torch.isfinite(item)] if isinstance(item, torch.Tensor) else item[np.isfinite(item)]
        value_min, value_max = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
        if value_min < 0 or value_max > 1:
            raise ValueError(
                f"`{name}` values must be in [0, 1] (float) or [0, 255] (uint8), got [{value_min:.4g}, {value_max:.4g}]."
            )
        converted.append(item.float() if isinstance(item, torch.Tensor) else item.astype(np.float32))
    if isinstance(images, list):
        kinds = {
            next(kind for kind in (PIL.Image.Image, np.ndarray, torch.Tensor) if isinstance(item, kind))
            for item in converted
        }
        if len(kinds) > 1:
            raise ValueError(f"`{name}` mixes input types in one list; pass all PIL images, arrays or tensors.")
        sizes = [_height_width(item) for item in converted]
        if len(set(sizes)) > 1:
            listed = ", ".join(f"{width}x{height}" for height, width in sizes)
            raise ValueError(
                f"`{name}` is a list of images of different sizes (width x height: {listed}); a batch needs one size."
            )
    return converted
