# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Reading and writing images: the one path by which the CLI, the pipeline's PIL inputs, the app, training and evaluation
turn files into 8-bit pixels, and by which outputs reach the disk.

* [`load_image`] / [`convert_image`]: EXIF orientation applied, every PIL mode converted to 8-bit `"RGB"` or `"L"`
  (16- and 32-bit modes scaled by their range, transparency composited), decompression bombs and oversized inputs
  refused with a one-line `ValueError`.
* [`check_output_path`] / [`save_image`]: output paths validated before any work, written atomically (a temporary file
  in the same folder, then `os.replace`): an existing file is either the old one or the new one, never half.
* [`downscale_for_inpainting`] / [`paste_fill`]: the `max_side` policy of the CLI and the app: inpaint a downscaled
  copy, paste the upscaled fill into the original, whose known pixels stay exact.
"""

import os
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import PIL.Image
import PIL.ImageOps

ImageMode = Literal["RGB", "L"]

MAX_IMAGE_PIXELS = 50_000_000
"""Inputs with more pixels (width x height) are refused: about 8660 x 5770, or 150 MB of 8-bit RGB."""

DEFAULT_MAX_SIDE = 512
"""Inputs with a longer side are inpainted downscaled to this side (see [`downscale_for_inpainting`])."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # rotations by 90 / 270 degrees: width and height swap


def open_image(image: str | os.PathLike, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> PIL.Image.Image:
    """
    Opens an image file lazily (its header only): the pixel data are not decoded yet.

    Raises:
        FileNotFoundError: `image` is not a file.
        ValueError: the file is not an image PIL can identify, or has more than `max_pixels` pixels (also PIL's
            decompression-bomb limit); the message is one line naming `name`, the path and the limit.
    """
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            opened = PIL.Image.open(path)
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise ValueError(f"{name} {path} is refused: {_one_line(error)}") from error
    except (OSError, SyntaxError, ValueError) as error:  # UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read {name} {path}: {_one_line(error)}") from error
    width, height = opened.size
    if width * height > max_pixels:
        opened.close()
        raise ValueError(
            f"{name} {path} is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,} "
            "pixels: downscale it first."
        )
    return opened


def displayed_size(
    path: str | os.PathLike, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[int, int]:
    """The (width, height) of an image file as viewers show it (after its EXIF orientation), read from its header."""
    with open_image(path, name, max_pixels) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        except (OSError, SyntaxError, ValueError) as error:  # the metadata of a truncated or corrupt file
            raise ValueError(f"cannot read {name} {path}: {_one_line(error)}") from error
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def load_image(
    image: str | os.PathLike | PIL.Image.Image,
    mode: ImageMode = "RGB",
    name: str = "image",
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> PIL.Image.Image:
    """
    Loads an image file (or converts a PIL image) to 8-bit `mode`, as viewers show it: see [`convert_image`].

    Args:
        image: a file path or a PIL image.
        mode: `"RGB"` (photos) or `"L"` (masks).
        name: what the image is, for error messages (e.g. `"image"`, `"mask"`).
        max_pixels: files with more pixels are refused before decoding.

    Raises:
        FileNotFoundError: a path that is not a file.
        ValueError: an unreadable, truncated or oversized file, or a mode that cannot be converted (one line).
    """
    if isinstance(image, PIL.Image.Image):
        return convert_image(image, mode, name)
    with open_image(image, name, max_pixels) as opened:
        try:
            opened.load()
        except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt pixel data
            raise ValueError(f"cannot read {name} {image}: {_one_line(error)}") from error
        return convert_image(opened, mode, f"{name} {image}")


def convert_image(image: PIL.Image.Image, mode: ImageMode = "RGB", name: str = "image") -> PIL.Image.Image:
    """
    Converts a PIL image of any mode to an 8-bit `"RGB"` or `"L"` image, oriented as viewers show it.

    * EXIF orientation is applied (`PIL.ImageOps.exif_transpose`): a mask drawn on the photo as displayed matches it.
    * 16-bit modes (`"I;16*"`) are scaled from [0, 65535] to [0, 255]; `"I"` (32-bit integers, also what older PIL
      versions make of 16-bit PNGs) likewise when its values fit in [0, 65535], else from its [min, max]; `"F"`
      (32-bit float) from [0, 1] when its values fit there, else from its [min, max]. Nothing is clipped.
    * Transparency (`"RGBA"`, `"LA"`, `"PA"`, `"P"` with a transparent colour, ...) is composited: photos onto white
      (as the app shows them), masks onto black (a transparent mask pixel is not painted: it is kept).
    * `"CMYK"`, `"YCbCr"`, palettes and 1-bit images use PIL's conversion.

    Raises:
        ValueError: non-finite values in a float image, or a mode PIL cannot convert (one line naming `name`).
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"`mode` must be 'RGB' or 'L', got {mode!r}.")
    image = PIL.ImageOps.exif_transpose(image)
    if image.mode in (*_SIXTEEN_BIT_MODES, "I", "F"):
        image = PIL.Image.fromarray(_to_uint8(np.asarray(image), image.mode, name), mode="L")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, "white" if mode == "RGB" else "black")
        image = PIL.Image.alpha_composite(background, rgba)
    if image.mode == mode:
        return image
    try:
        return image.convert(mode)
    except (ValueError, OSError) as error:
        raise ValueError(f"{name} has mode {image.mode!r}, which cannot be converted to {mode!r}: {error}") from error


def _to_uint8(pixels: np.ndarray, pil_mode: str, name: str) -> np.ndarray:
    """8-bit pixels of a 16-bit, 32-bit integer or float single-channel array, scaled as [`convert_image`] states."""
    pixels = pixels.astype(np.float64)
    if not np.isfinite(pixels).all():
        raise ValueError(f"{name} (mode {pil_mode!r}) holds non-finite values.")
    low, high = float(pixels.min()), float(pixels.max())
    if pil_mode in _SIXTEEN_BIT_MODES or (pil_mode == "I" and low >= 0 and high <= 65535):
        low, high = 0.0, 65535.0
    elif pil_mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint((pixels - low) * scale).astype(np.uint8)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ----------------------------------------------------------------------------------------------------------- writing


def check_output_path(path: str | os.PathLike, name: str = "output") -> Path:
    """
    Validates an output image path before any work is done and returns it as a `Path`.

    Raises:
        ValueError: the extension is not one PIL can write, the path is a folder, or the nearest existing folder
            above it is not a writable folder (one line naming `name`).
    """
    path = Path(path)
    PIL.Image.init()
    image_format = PIL.Image.registered_extensions().get(path.suffix.lower())
    if image_format is None or image_format not in PIL.Image.SAVE:
        raise ValueError(f"{name} {path} has no image extension PIL can write (use .png, .jpg, .webp, .bmp or .tif).")
    if path.is_dir():
        raise ValueError(f"{name} {path} is a folder, not a file path.")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{name} {path}: {folder} is not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path.parent, os.W_OK)):
        raise ValueError(f"{name} {path}: folder {folder} is not writable.")
    return path


def save_image(image: PIL.Image.Image, path: str | os.PathLike, name: str = "output") -> Path:
    """
    Writes `image` to `path` atomically: into a temporary file of the same folder (created if needed), then
    `os.replace`. If anything fails (full disk, file-size limit, Ctrl-C) the temporary file is removed and an existing
    file at `path` is left untouched. The format follows the extension (checked by [`check_output_path`]).
    """
    path = check_output_path(path, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_format = PIL.Image.registered_extensions()[path.suffix.lower()]
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            image.save(file, format=image_format)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the mode a plain `open` would
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------------------- size


def fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The (width, height) `size` scaled down to a longer side of `max_side`, aspect ratio kept."""
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def binarize_mask(mask: PIL.Image.Image) -> PIL.Image.Image:
    """An 8-bit `"L"` mask binarized as the pipeline does (>= 128 -> 255 = fill, else 0 = keep)."""
    return mask.point(lambda value: 255 if value >= 128 else 0)


def downscale_for_inpainting(
    image: PIL.Image.Image, mask: PIL.Image.Image, max_side: int
) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """
    The `(image, mask)` pair to inpaint when the image's longer side exceeds `max_side`: both downscaled to fit (image
    with LANCZOS; the binarized mask with BOX then `> 0`, so that a low-resolution pixel is filled when any of its
    pixels is and the upscaled fill covers the whole hole). Pairs that fit are returned as they are.

    Args:
        image: `"RGB"` image.
        mask: `"L"` mask of the same size, white (>= 128) = fill.
        max_side: longest side inpainted; must be positive.
    """
    if max_side < 1:
        raise ValueError(f"`max_side` must be positive, got {max_side}.")
    if max(image.size) <= max_side:
        return image, mask
    work_size = fit_within(image.size, max_side)
    work_mask = binarize_mask(mask).resize(work_size, PIL.Image.Resampling.BOX)
    return image.resize(work_size, PIL.Image.Resampling.LANCZOS), work_mask.point(lambda v: 255 if v > 0 else 0)


def paste_fill(image: PIL.Image.Image, mask: PIL.Image.Image, result: PIL.Image.Image) -> PIL.Image.Image:
    """
    The full-resolution output of an inpainting made at a smaller size: `result` upscaled (LANCZOS) to the size of
    `image` and pasted into a copy of it where the binarized `mask` is white; every other pixel is exactly `image`'s.
    A `result` of `image`'s size is returned as is.
    """
    if result.size == image.size:
        return result
    output = image.copy()
    output.paste(result.resize(image.size, PIL.Image.Resampling.LANCZOS), mask=binarize_mask(mask))
    return output
