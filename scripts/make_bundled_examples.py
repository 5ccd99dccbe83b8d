#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Writes the example photo + mask pairs installed with the package (`diffusers_strdiff.BUNDLED_EXAMPLES`).

Three held-out photos (the `eval` split of `scripts/prepare_photos.py`, never trained on) under CC-BY / CC-BY-SA,
resized to 128 px high and centre-cropped to 160 x 128, each with a seeded irregular mask from one hole-ratio bucket
(white = fill). Writes `<name>.png`, `<name>_mask.png` and `LICENSES.md`.

    python scripts/make_bundled_examples.py --photos_dir data/photos
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from diffusers_strdiff import BUNDLED_EXAMPLES, generate_irregular_mask, hole_ratio

# name -> (file stem in the eval split, hole-ratio bucket of its mask, mask seed)
EXAMPLES = {
    "bridge": ("Bridge_by_Sander_Klootwijk.jpg", "0-20", 1),
    "alphabets": ("alphabets.webp", "20-40", 2),
    "sunset": ("sunset_by_Aitzol_Berasategi.jpg", "40-60", 3),
}
WIDTH, HEIGHT = 160, 128


def fit(image: Image.Image) -> Image.Image:
    """Resizes to HEIGHT px high (width at least WIDTH) and centre-crops to WIDTH x HEIGHT."""
    scale = max(HEIGHT / image.height, WIDTH / image.width)
    size = (max(WIDTH, round(image.width * scale)), max(HEIGHT, round(image.height * scale)))
    image = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    left, top = (image.width - WIDTH) // 2, (image.height - HEIGHT) // 2
    return image.crop((left, top, left + WIDTH, top + HEIGHT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos_dir", type=Path, default=Path("data/photos"))
    parser.add_argument("--output_dir", type=Path, default=BUNDLED_EXAMPLES)
    args = parser.parse_args()
    manifest = json.loads((args.photos_dir / "manifest.json").read_text())
    args.output_dir.mkdir(parents=True, exist_ok=True)
    notes = ["# Bundled examples\n", "Held-out photos (never trained on), resized and cropped; masks: white = fill.\n"]
    for name, (stem, bucket, seed) in EXAMPLES.items():
        (entry,) = [item for item in manifest if item["split"] == "eval" and item["file"].endswith(f"__{stem}.png")]
        fit(Image.open(args.photos_dir / entry["file"])).save(args.output_dir / f"{name}.png")
        mask = generate_irregular_mask(HEIGHT, WIDTH, generator=seed, bucket=bucket)
        Image.fromarray((mask * 255).astype(np.uint8)).save(args.output_dir / f"{name}_mask.png")
        notes.append(
            f"- `{name}.png`: `{entry['path']}` from the Debian package `{entry['package']}`, licence "
            f"{entry['licence']}, (c) {entry['copyright']}. Mask bucket {bucket} % "
            f"(hole ratio {hole_ratio(mask):.1%}).\n"
        )
    (args.output_dir / "LICENSES.md").write_text("\n".join(notes), encoding="utf-8")
    print(f"wrote {len(EXAMPLES)} examples to {args.output_dir}")


if __name__ == "__main__":
    main()
