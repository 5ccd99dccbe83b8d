# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Seconds per image of `strdiff inpaint`: one CLI call per image vs one folder run, same images, same run.

`--num_images` copies of the bundled photos (resized to `--size` px, with their masks) are inpainted twice with the
same sampler: once by one `python -m diffusers_strdiff.cli inpaint IMAGE MASK OUTPUT` subprocess per image (each loads
the pipeline), once by a single `inpaint --image DIR --mask DIR --output DIR` subprocess (one load, batches of
`--batch_size`). Wall-clock seconds include the process start, as a user sees them. Printed: a markdown table (median
seconds per image of the single calls, seconds per image of the folder run, ratio to the single calls) and what else
the machine was doing (load average, busiest other processes), since timings on a shared machine depend on it.

    python benchmarks/bench_batch_inpaint.py                     # 32 images of 64 px, bundled checkpoint
    python benchmarks/bench_batch_inpaint.py --num_images 2      # a quick check that it runs
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from diffusers_strdiff import BUNDLED_EXAMPLES

EXAMPLE_NAMES = ("bridge", "sunset", "alphabets")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=32, help="Images inpainted by each mode.")
    parser.add_argument("--size", type=int, default=64, help="Square side of the images, px.")
    parser.add_argument("--checkpoint", help="Pipeline folder (default: the bundled checkpoint).")
    parser.add_argument("--sampler", default="posterior", help="`strdiff inpaint --sampler`.")
    parser.add_argument("--steps", type=int, default=10, help="`strdiff inpaint --steps`.")
    parser.add_argument("--batch_size", type=int, default=8, help="`--batch_size` of the folder run.")
    return parser.parse_args(argv)


def write_images(folder: Path, num_images: int, size: int) -> tuple[Path, Path]:
    """`folder/images/image_XXX.png` and `folder/masks/image_XXX.png`: the bundled pairs, cycled and resized."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    for index in range(num_images):
        name = EXAMPLE_NAMES[index % len(EXAMPLE_NAMES)]
        Image.open(BUNDLED_EXAMPLES / f"{name}.png").convert("RGB").resize((size, size)).save(
            images / f"image_{index:03d}.png"
        )
        mask = Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png").convert("L")
        mask.resize((size, size), Image.Resampling.NEAREST).save(masks / f"image_{index:03d}.png")
    return images, masks


def strdiff(*args: str | Path) -> float:
    """Runs `python -m diffusers_strdiff.cli ARGS`; returns its wall-clock seconds (raises if it fails)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "diffusers_strdiff.cli", *map(str, args)], check=True, capture_output=True)
    return time.perf_counter() - started


def machine_activity() -> str:
    """Load average, CPU count and the busiest other processes (from `ps`, when available)."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [f"load average (1, 5, 15 min): {load}; {os.cpu_count()} CPUs"]
    if shutil.which("ps") is not None:
        listing = subprocess.run(
            ["ps", "-eo", "pcpu,pid,comm", "--sort=-pcpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        rows = [line.split(None, 2) for line in listing[1:]]
        busy = [" ".join(row) for row in rows if len(row) == 3 and row[1] != str(os.getpid()) and row[2] != "ps"][:5]
        lines.append("busiest processes (%CPU PID COMMAND): " + "; ".join(busy))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = ["--sampler", args.sampler, "--steps", str(args.steps)]
    if args.checkpoint is not None:
        options += ["--checkpoint", args.checkpoint]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        images, masks = write_images(folder, args.num_images, args.size)
        activity_before = machine_activity()
        single = [
            strdiff("inpaint", image, masks / image.name, folder / "single" / image.name, *options)
            for image in sorted(images.iterdir())
        ]
        folder_seconds = strdiff(
            "inpaint", "--image", images, "--mask", masks, "--output", folder / "batch",
            "--batch_size", str(args.batch_size), *options,
        ) / args.num_images  # fmt: skip
        activity_after = machine_activity()
    single_median = statistics.median(single)
    print(f"{args.num_images} images of {args.size} px, sampler {args.sampler}, {args.steps} steps\n")
    print("| mode | s/image | ratio |")
    print("|---|---:|---:|")
    print(f"| one CLI call per image (median of {len(single)}) | {single_median:.2f} | 1.00 |")
    print(
        f"| one folder run (`--batch_size {args.batch_size}`) | {folder_seconds:.2f} | "
        f"{folder_seconds / single_median:.2f} |"
    )
    print(f"\nbefore: {activity_before}\nafter: {activity_after}")


if __name__ == "__main__":
    main()
