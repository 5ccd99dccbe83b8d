# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Inference cost of `StrDiffusionInpaintPipeline` per image size, with and without the resampling callback.

Each configuration runs in a fresh process (so that its peak memory is its own) on a held-out bundled photo resized
to the size, with its mask resized alike (nearest). Samplers: the released one (all T Euler-Maruyama steps) and, for
each N of `--few_steps` (default 2, the bundled checkpoint's default, and 10; none to skip), the few-step posterior
sampler (`algorithm_type="posterior"`, eta 1, N steps). Reported:

* `NFE`: network evaluations per image (structure + texture + discriminator);
* `s/image`: median wall-clock seconds over `--repeats` calls, after one warm-up call (on a 64 px crop of the input
  above `--max_repeats_pixels`, where a single timed call is made);
* `ratio`: s/image divided by that of the released sampler without resampling at the same size, same run;
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
    load_pipeline,
)

WARMUP_SIZE = 64


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
    parser.add_argument(
        "--few_steps",
        type=int,
        nargs="*",
        default=[2, 10],
        help="Steps N of the few-step posterior sampler rows, one row pair per N (none: no such rows).",
    )
    parser.add_argument("--example", default="sunset", help="Bundled example name (photo + mask).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--single", nargs=3, metavar=("SIZE", "STEPS", "RESAMPLING"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(steps < 1 for steps in args.few_steps):
        parser.error(f"--few_steps takes positive step counts, got {args.few_steps}.")
    return args


def measure(args: argparse.Namespace, size: int, num_steps: int | None, resampling: bool) -> dict[str, float]:
    """
    Times one configuration in this process; returns NFE, median seconds and peak memory. `num_steps` None is the
    released sampler, an int the posterior sampler with that many steps.
    """
    sampler = "released" if num_steps is None else "posterior"
    pipeline = load_pipeline(args.checkpoint, sampler, args.device, progress_bar=False)
    image = Image.open(BUNDLED_EXAMPLES / f"{args.example}.png").convert("RGB").resize((size, size), Image.BICUBIC)
    mask = Image.open(BUNDLED_EXAMPLES / f"{args.example}_mask.png").convert("L").resize((size, size), Image.NEAREST)

    def call(image: Image.Image, mask: Image.Image) -> dict[str, int]:
        callback = DiscriminatorGatedResampling() if resampling else None
        generator = torch.Generator(args.device).manual_seed(0)
        output = pipeline(
            image=image,
            mask_image=mask,
            num_inference_steps=num_steps,
            generator=generator,
            callback_on_step_end=callback,
        )
        return output.nfe

    repeats = args.repeats if size * size <= args.max_repeats_pixels else 1
    if repeats == 1:
        # A full-size warm-up would double the cost of the largest sizes; a small crop warms up the same code paths.
        call(image.resize((WARMUP_SIZE, WARMUP_SIZE)), mask.resize((WARMUP_SIZE, WARMUP_SIZE), Image.NEAREST))
    else:
        call(image, mask)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        nfe = call(image, mask)
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
        size, steps, resampling = (int(value) for value in args.single)
        print(json.dumps(measure(args, size, steps or None, resampling == 1)))
        return
    samplers = [0, *args.few_steps]
    rows = []
    for size in args.sizes:
        results = {}
        for steps in samplers:
            for resampling in (False, True):
                command = [sys.argv[0], *sys.argv[1:], "--single", str(size), str(steps), str(int(resampling))]
                process = subprocess.run([sys.executable, *command], capture_output=True, text=True, check=True)
                results[steps, resampling] = json.loads(process.stdout.strip().splitlines()[-1])
                print(f"{size} px, steps={steps or 'T'}, resampling={resampling}: {results[steps, resampling]}")
        for (steps, resampling), result in results.items():
            ratio = result["seconds"] / results[0, False]["seconds"]
            sampler = f"posterior, N = {steps}" if steps else "released (N = T)"
            rows.append((size, sampler, resampling, result, ratio))
    print(f"\n`{args.checkpoint}` on {args.device} ({torch.get_num_threads()} threads), one image per call\n")
    print("| size | sampler | resampling | NFE | s/image (median) | repeats | ratio vs released plain | peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for size, sampler, resampling, result, ratio in rows:
        print(
            f"| {size} | {sampler} | {'yes' if resampling else 'no'} | {result['nfe']} | {result['seconds']:.2f} | "
            f"{result['repeats']} | {ratio:.2f} | {result['peak_mib']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
