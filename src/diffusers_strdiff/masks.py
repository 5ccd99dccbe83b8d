# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Irregular inpainting masks: a procedural free-form stroke / box generator and loaders for mask files.

Convention (the diffusers one): a mask is a float32 array of shape `(H, W)` with **1 = hole** (the region to fill)
and **0 = keep**. The released StrDiffusion masks use the opposite convention (1 = keep); pass `invert=True` to
[`load_mask`] for those.

The generator follows the spirit of LaMa's: a mask is either a set of free-form strokes (chains of up to five line
segments in random directions, drawn with round joints) or a set of axis-aligned boxes. Three stroke presets are
defined at 256 x 256 px and scaled with the image size (LaMa's `max_width` / `max_len` settings 100 / 200, 50 / 100
and 10 / 40 plus its 5 px width and 10 px length offsets; each segment draws its own width):

- thick: 1-5 strokes, width 5-104 px, segment length 10-209 px; or, with probability 0.3 / 1.3, 1-3 boxes of
  30-150 px. Mean hole ratio 0.39.
- medium: 4-5 strokes, width 5-54 px, segment length 10-109 px; or, with probability 0.3 / 1.3, 1-5 boxes of
  10-50 px. Mean hole ratio 0.23.
- thin: 4-50 strokes, width 5-14 px, segment length 10-49 px. Mean hole ratio 0.30.

Without a bucket, each mask uses one of the three presets, chosen uniformly.

With a hole-ratio `bucket` (the paper's Table 1 buckets), masks are redrawn until their hole ratio falls inside it,
using only the presets that often land in that bucket, so a bucketed draw needs two to four tries on average.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .image_io import load_image

HOLE_RATIO_BUCKETS: dict[str, tuple[float, float]] = {"0-20": (0.0, 0.2), "20-40": (0.2, 0.4), "40-60": (0.4, 0.6)}
"""Hole-ratio buckets `name -> (lower, upper)`; a mask is in a bucket when `lower < hole_ratio <= upper`."""

MASK_IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
"""File extensions (lower case) that [`load_mask_files`] treats as mask images."""

_REFERENCE_SIZE = 256
"""Image side (px) at which the preset pixel sizes are defined."""

_MAX_SEGMENTS_PER_STROKE = 5


@dataclass(frozen=True)
class _MaskPreset:
    """Stroke and box settings at 256 x 256 px (pixel sizes are scaled with the image size)."""

    min_strokes: int
    max_strokes: int
    min_width: int
    max_width: int
    min_length: int
    max_length: int
    box_probability: float = 0.0
    min_boxes: int = 1
    max_boxes: int = 1
    min_box_size: int = 0
    max_box_size: int = 0
    box_margin: int = 10


_PRESETS: dict[str, _MaskPreset] = {
    "thick": _MaskPreset(
        min_strokes=1,
        max_strokes=5,
        min_width=5,
        max_width=104,
        min_length=10,
        max_length=209,
        box_probability=0.3 / 1.3,
        max_boxes=3,
        min_box_size=30,
        max_box_size=150,
    ),
    "medium": _MaskPreset(
        min_strokes=4,
        max_strokes=5,
        min_width=5,
        max_width=54,
        min_length=10,
        max_length=109,
        box_probability=0.3 / 1.3,
        max_boxes=5,
        min_box_size=10,
        max_box_size=50,
    ),
    "thin": _MaskPreset(min_strokes=4, max_strokes=50, min_width=5, max_width=14, min_length=10, max_length=49),
}

_BUCKET_PRESETS: dict[str | None, tuple[str, ...]] = {
    None: ("thick", "medium", "thin"),
    "0-20": ("thick", "medium", "thin"),
    "20-40": ("thick", "medium", "thin"),
    "40-60": ("thick", "thin"),
}
"""Presets drawn (uniformly) per try, for no bucket and for each bucket: those that land in the bucket in >= 20 % of
draws at 256 px (thick / medium / thin: 0-20: 21 / 34 / 27 %, 20-40: 32 / 59 / 46 %, 40-60: 27 / 7 / 27 %)."""


def _draw_strokes(canvas: np.ndarray, preset: _MaskPreset, scale: float, rng: np.random.Generator) -> None:
    """Draws free-form strokes (value 1) in place on a `(H, W)` uint8 canvas."""
    height, width = canvas.shape
    num_strokes = int(rng.integers(preset.min_strokes, preset.max_strokes + 1))
    segments_per_stroke = rng.integers(1, _MAX_SEGMENTS_PER_STROKE + 1, size=num_strokes).tolist()
    num_segments = sum(segments_per_stroke)
    # All random numbers are drawn up front (vectorized); only the drawing loops in Python.
    start_xs = rng.integers(width, size=num_strokes).tolist()
    start_ys = rng.integers(height, size=num_strokes).tolist()
    angles = rng.uniform(0.0, 2.0 * math.pi, size=num_segments)
    lengths = rng.uniform(preset.min_length, preset.max_length, size=num_segments) * scale
    steps_x = (lengths * np.cos(angles)).tolist()
    steps_y = (lengths * np.sin(angles)).tolist()
    min_brush = max(1, round(preset.min_width * scale))
    max_brush = max(min_brush, round(preset.max_width * scale))
    brushes = rng.integers(min_brush, max_brush + 1, size=num_segments).tolist()
    segment = 0
    for x, y, stroke_segments in zip(start_xs, start_ys, segments_per_stroke, strict=True):
        for _ in range(stroke_segments):
            end_x = min(max(round(x + steps_x[segment]), 0), width - 1)
            end_y = min(max(round(y + steps_y[segment]), 0), height - 1)
            cv2.line(canvas, (x, y), (end_x, end_y), 1, brushes[segment])
            cv2.circle(canvas, (end_x, end_y), brushes[segment] // 2, 1, -1)
            x, y = end_x, end_y
            segment += 1


def _draw_boxes(canvas: np.ndarray, preset: _MaskPreset, scale: float, rng: np.random.Generator) -> None:
    """Draws filled axis-aligned boxes (value 1) in place on a `(H, W)` uint8 canvas."""
    height, width = canvas.shape
    margin = round(preset.box_margin * scale)
    for _ in range(int(rng.integers(preset.min_boxes, preset.max_boxes + 1))):
        box_sizes = []
        for side in (width, height):
            low = max(1, min(round(preset.min_box_size * scale), side - 2 * margin))
            high = max(low, min(round(preset.max_box_size * scale), side - 2 * margin))
            box_sizes.append(int(rng.integers(low, high + 1)))
        box_width, box_height = box_sizes
        left = int(rng.integers(margin, max(margin, width - margin - box_width) + 1))
        top = int(rng.integers(margin, max(margin, height - margin - box_height) + 1))
        cv2.rectangle(canvas, (left, top), (left + box_width - 1, top + box_height - 1), 1, -1)


def _draw_mask(height: int, width: int, preset: _MaskPreset, rng: np.random.Generator) -> np.ndarray:
    """One unconstrained draw: a `(H, W)` uint8 mask with 1 = hole."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    scale = math.sqrt(height * width) / _REFERENCE_SIZE
    if preset.box_probability > 0 and rng.random() < preset.box_probability:
        _draw_boxes(canvas, preset, scale, rng)
    else:
        _draw_strokes(canvas, preset, scale, rng)
    return canvas


def hole_ratio(mask: np.ndarray) -> float:
    """
    Fraction of the mask that is hole.

    Args:
        mask (`np.ndarray` of any shape): 1 = hole, 0 = keep (float in [0, 1], bool, or uint8 in {0, 255}); entries
            above 0.5 count as hole.

    Returns:
        `float` in [0, 1].
    """
    mask = np.asarray(mask)
    if mask.size == 0:
        raise ValueError("`mask` must not be empty.")
    return float(np.count_nonzero(mask > 0.5) / mask.size)


def generate_irregular_mask(
    height: int,
    width: int,
    generator: np.random.Generator | int | None = None,
    bucket: str | None = None,
    max_tries: int = 100,
) -> np.ndarray:
    """
    Draws a random irregular inpainting mask (free-form strokes or boxes).

    Args:
        height (`int`), width (`int`): mask size in pixels, >= 1. Stroke widths, lengths and box sizes are scaled
            by `sqrt(height * width) / 256`, so the hole-ratio distribution barely depends on the size.
        generator (`np.random.Generator`, `int` or `None`): the random generator, or a seed for a new one; the same
            seed gives the same mask. `None` draws fresh entropy.
        bucket (`str`, *optional*): a key of [`HOLE_RATIO_BUCKETS`] (`"0-20"`, `"20-40"`, `"40-60"`). Masks are
            redrawn until `lower < hole_ratio <= upper`. Without a bucket, any non-empty mask is returned.
        max_tries (`int`): the most draws before giving up, >= 1.

    Returns:
        `np.ndarray` of shape `(height, width)`, float32 with values in {0, 1}: **1 = hole** (region to fill),
        0 = keep. Never empty (the hole ratio is > 0).

    Raises:
        ValueError: on a bad `height`, `width`, `bucket` or `max_tries`.
        RuntimeError: when no draw within `max_tries` lands in the bucket (possible only for tiny sizes).
    """
    for name, value in (("height", height), ("width", width), ("max_tries", max_tries)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if bucket is not None and bucket not in HOLE_RATIO_BUCKETS:
        raise ValueError(f"`bucket` must be None or one of {sorted(HOLE_RATIO_BUCKETS)}, got {bucket!r}.")
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    lower, upper = HOLE_RATIO_BUCKETS[bucket] if bucket is not None else (0.0, 1.0)
    preset_names = _BUCKET_PRESETS[bucket]
    for _ in range(max_tries):
        preset = _PRESETS[preset_names[int(rng.integers(len(preset_names)))]]
        mask = _draw_mask(int(height), int(width), preset, rng)
        if lower < hole_ratio(mask) <= upper:
            return mask.astype(np.float32)
    raise RuntimeError(
        f"No mask of size {height}x{width} with hole ratio in ({lower}, {upper}] within {max_tries} tries; "
        "increase `max_tries` or the mask size."
    )


def load_mask_files(mask_dir: str | Path) -> list[Path]:
    """
    Lists the mask images of a directory (not recursive), sorted by name.

    Args:
        mask_dir (`str` or `Path`): a directory of mask images (extensions in [`MASK_IMAGE_EXTENSIONS`]).

    Returns:
        `list[Path]`: the image files, sorted.

    Raises:
        FileNotFoundError: when `mask_dir` does not exist or is not a directory.
        ValueError: when it holds no image file.
    """
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"`mask_dir` {str(mask_dir)!r} does not exist or is not a directory.")
    files = sorted(
        path for path in mask_dir.iterdir() if path.is_file() and path.suffix.lower() in MASK_IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(f"`mask_dir` {str(mask_dir)!r} holds no mask image ({', '.join(MASK_IMAGE_EXTENSIONS)}).")
    return files


def load_mask(path: str | Path, size: int | tuple[int, int], invert: bool = False) -> np.ndarray:
    """
    Loads a mask image as a binary hole mask.

    The image is converted to grayscale, resized with nearest-neighbour sampling and binarized at 0.5 * 255:
    white (> 127.5) is hole.

    Args:
        path (`str` or `Path`): the mask image.
        size (`int` or `(height, width)`): output size in pixels; an `int` gives a square mask.
        invert (`bool`): set for masks whose white is the kept region (the released StrDiffusion masks), so that
            black becomes the hole.

    Returns:
        `np.ndarray` of shape `(height, width)`, float32 with values in {0, 1}: 1 = hole, 0 = keep.
    """
    height, width = (size, size) if isinstance(size, int | np.integer) else size
    if min(height, width) < 1:
        raise ValueError(f"`size` must be positive, got {size!r}.")
    gray = np.asarray(load_image(path, "L", "mask").resize((int(width), int(height)), Image.Resampling.NEAREST))
    hole = gray > 0.5 * 255
    if invert:
        hole = ~hole
    return hole.astype(np.float32)
