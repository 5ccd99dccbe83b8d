# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Inference cost of `StrDiffusionInpaintPipeline` per image size, with and without the resampling callback.

Each configuration runs in a fresh process (so that its peak memory is its own) on a held-out bundled photo resized
to the size, with its mask resized alike (nearest), and reports:

* `NFE`: network evaluations per image (structure + texture + discriminator);
* `s/image`: median wall-clock seconds over `--repeats` calls (after one warm-up call);
* `ratio`: s/image divided by that of the plain sampler (no resampling) at the same size, measured in the same run;
* `peak MiB`: peak resident memory of the process on CPU (`ru_maxrss`), or peak allocated GPU memory on CUDA.

    python benchmarks/bench_pipeline.py                         # the bundled checkpoint, 64/128/256/512 px
    python benchmarks/bench_pipeline.py --sizes 64 128 --repeats 5 --checkpoint my-pipeline
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from PIL import Image

from diffusers_strdiff import (
    BUNDLED_EXAMPLES,
    DEFAULT_CHECKPOINT,
    DiscriminatorGatedResampling,
    StrDiffusionInpaintPipeline,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="Pipeline folder.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512], help="Square image sides.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls per configuration (median reported).")
    parser.add_argument(
        "--max_repeats_pixels",
        type=int,
        default=256 * 256,
        help="Above this many pixels a single timed call is made (keeps 512 px short on a CPU).",
    )
    parser.add_argument("--example", default="sunset", help="Bundled example name (photo + mask).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--single", nargs=2, metavar=("SIZE", "RESAMPLING"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, size: int, resampling: bool) -> dict[str, float]:
    """Times one configuration in this process; returns NFE, median seconds and peak memory."""
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(args.checkpoint).to(args.device)
    pipeline.set_progress_bar_config(disable=True)
    image = Image.open(BUNDLED_EXAMPLES / f"{args.example}.png").convert("RGB").resize((size, size), Image.BICUBIC)
    mask = Image.open(BUNDLED_EXAMPLES / f"{args.example}_mask.png").convert("L").resize((size, size), Image.NEAREST)

    def call() -> dict[str, int]:
        callback = DiscriminatorGatedResampling() if resampling else None
        generator = torch.Generator(args.device).manual_seed(0)
        output = pipeline(image=image, mask_image=mask, generator=generator, callback_on_step_end=callback)
        return output.nfe

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    call()  # warm-up
    repeats = args.repeats if size * size <= args.max_repeats_pixels else 1
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        nfe = call()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    if args.device.startswith("cuda"):
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"nfe": nfe["total"], "seconds": statistics.median(seconds), "repeats": repeats, "peak_mib": peak_mib}


def main() -> None:
    args = parse_args()
    if args.single is not None:
        print(json.dumps(measure(args, int(args.single[0]), args.single[1] == "1")))
        return
    rows = []
    for size in args.sizes:
        results = {}
        for resampling in (False, True):
            command = [sys.argv[0], *sys.argv[1:], "--single", str(size), str(int(resampling))]
            process = subprocess.run([sys.executable, *command], capture_output=True, text=True, check=True)
            results[resampling] = json.loads(process.stdout.strip().splitlines()[-1])
        for resampling, result in results.items():
            ratio = result["seconds"] / results[False]["seconds"]
            rows.append((size, resampling, result, ratio))
            print(f"{size} px, resampling={resampling}: {result}", file=sys.stderr)
    print(f"\n`{args.checkpoint}` on {args.device} ({torch.get_num_threads()} threads), one image per call\n")
    print("| size | resampling | NFE | s/image (median) | repeats | ratio vs plain | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for size, resampling, result, ratio in rows:
        print(
            f"| {size} | {'yes' if resampling else 'no'} | {result['nfe']} | {result['seconds']:.2f} | "
            f"{result['repeats']} | {ratio:.2f} | {result['peak_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
