#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Writes a copy of an image folder with every image's short side at most `--short_side` px (PNG, same layout).

Multi-scale training crops (`--multiscale_crop`, the default) never use more than `max_crop_scale * resolution` px
of short side (256 for the bundled recipe), so a downscaled copy of the photo set trains identically (up to one extra
resampling) and spares every run the decoding of multi-megapixel PNGs. Idempotent: existing outputs are kept.

    python scripts/downscale_images.py data/photos/train data/photos_256/train --short_side 256
"""

import argparse
from pathlib import Path

from PIL import Image
from tqdm import tqdm

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def downscale_folder(source: Path, destination: Path, short_side: int) -> int:
    """Downscales every image of `source` (recursively) into `destination`; returns how many files were written."""
    files = sorted(path for path in source.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)
    written = 0
    for path in tqdm(files, desc=f"downscale {source}"):
        target = (destination / path.relative_to(source)).with_suffix(".png")
        if target.exists():
            continue
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = short_side / min(image.size)
            if scale < 1:
                size = (max(short_side, round(image.width * scale)), max(short_side, round(image.height * scale)))
                image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial.png")
            image.save(partial)
            partial.replace(target)
        written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="An image folder.")
    parser.add_argument("destination", type=Path, help="Where the downscaled copy goes.")
    parser.add_argument("--short_side", type=int, default=256, help="Largest short side of the copies (px).")
    args = parser.parse_args()
    if not args.source.is_dir():
        parser.error(f"source {str(args.source)!r} is not a directory")
    print(f"wrote {downscale_folder(args.source, args.destination, args.short_side)} image(s) to {args.destination}")


if __name__ == "__main__":
    main()
