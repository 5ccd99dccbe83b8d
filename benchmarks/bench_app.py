# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Time to result of the Gradio app and of `strdiff inpaint` on a 512 x 512 photo, with their default settings.

* app: `diffusers_strdiff.app.inpaint` called as the page calls it (the app's default sampler, steps and resampling,
  seed 0), in this process, after one untimed warm-up call; the pipeline load is timed separately (first call of
  `get_pipeline`). Peak memory: the resident-set peak of this process (load included).
* CLI: `python -m diffusers_strdiff.cli inpaint IMAGE MASK OUTPUT` with no other option, as a subprocess: wall time of
  the whole command (interpreter start, imports, load and inpainting) and its peak resident memory. The CLI prints
  nothing about its phases, so the load is stated by the app row.

The photo is the bundled `sunset` example resized to 512 x 512 with its mask (white = fill). Prints a Markdown table
(median of `--repeats`) and writes JSON next to it with `--output`.

    python benchmarks/bench_app.py --repeats 3 --output docs/bench/bench_app.json
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from diffusers_strdiff import BUNDLED_EXAMPLES, inference_threads, reuse_freed_memory
from diffusers_strdiff.app import DEFAULT_RESAMPLING, DEFAULT_SAMPLER, default_few_steps, get_pipeline, inpaint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="Side of the square test photo (px).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls per entry point (median reported).")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args()
    if args.size < 8 or args.repeats < 1:
        parser.error("--size must be >= 8 and --repeats >= 1")
    return args


def test_inputs(size: int, folder: Path) -> tuple[Path, Path]:
    """The bundled `sunset` example and its mask resized to `size` x `size`, written as PNGs into `folder`."""
    photo = PIL.Image.open(BUNDLED_EXAMPLES / "sunset.png").convert("RGB").resize((size, size), PIL.Image.BICUBIC)
    mask = PIL.Image.open(BUNDLED_EXAMPLES / "sunset_mask.png").convert("L").resize((size, size), PIL.Image.NEAREST)
    image_path, mask_path = folder / "photo.png", folder / "mask.png"
    photo.save(image_path)
    mask.point(lambda value: 255 if value >= 128 else 0).save(mask_path)
    return image_path, mask_path


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_app(image_path: Path, mask_path: Path, repeats: int) -> dict[str, float]:
    """The app's time to result (median), its pipeline load time, peak memory and default steps."""
    photo = PIL.Image.open(image_path)
    layer = np.zeros((photo.height, photo.width, 4), dtype=np.uint8)
    layer[..., 3] = np.asarray(PIL.Image.open(mask_path))
    editor_value = {"background": photo, "layers": [PIL.Image.fromarray(layer)], "composite": None}
    started = time.perf_counter()
    steps = default_few_steps(get_pipeline(None, DEFAULT_SAMPLER, "cpu"))
    load_seconds = time.perf_counter() - started

    def call() -> float:
        started = time.perf_counter()
        inpaint(editor_value, steps, DEFAULT_SAMPLER, DEFAULT_RESAMPLING, 0, device="cpu")
        return time.perf_counter() - started

    call()  # warm-up
    seconds = [call() for _ in range(repeats)]
    return {"load_s": load_seconds, "median_s": statistics.median(seconds), "peak_mib": peak_rss_mib(), "steps": steps}


# `python -m diffusers_strdiff.cli ARGS` that prints its own peak resident memory (KiB, `VmHWM` of /proc/self/status)
# as its last stderr line (`ru_maxrss` of a child also counts the parent's memory at fork).
CLI_WITH_PEAK = (
    "import atexit, runpy, sys; "
    "atexit.register(lambda: print([line.split()[1] for line in open('/proc/self/status') "
    "if line.startswith('VmHWM')][0], file=sys.stderr)); "
    "sys.argv[0] = 'strdiff'; runpy.run_module('diffusers_strdiff.cli', run_name='__main__')"
)


def bench_cli(image_path: Path, mask_path: Path, repeats: int, folder: Path) -> dict[str, float]:
    command = [sys.executable, "-c", CLI_WITH_PEAK, "inpaint", str(image_path), str(mask_path)]
    seconds, peaks = [], []
    for index in range(repeats):
        started = time.perf_counter()
        process = subprocess.run(
            [*command, str(folder / f"out_{index}.png")], check=True, capture_output=True, text=True
        )
        seconds.append(time.perf_counter() - started)
        peaks.append(int(process.stderr.split()[-1]) / 1024)
    return {"median_s": statistics.median(seconds), "peak_mib": max(peaks)}


def main() -> None:
    args = parse_args()
    threads = inference_threads()
    torch.set_num_threads(threads)  # the app's and the CLI's settings (the CLI applies them itself)
    reuse_freed_memory()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        image_path, mask_path = test_inputs(args.size, folder)
        app = bench_app(image_path, mask_path, args.repeats)
        cli = bench_cli(image_path, mask_path, args.repeats, folder)
    setting = f"{DEFAULT_SAMPLER}, {app['steps']} steps, resampling {'on' if DEFAULT_RESAMPLING else 'off'}"
    print(
        f"{args.size} x {args.size} photo, bundled checkpoint, defaults ({setting}); {threads} thread(s), "
        f"load average {load:.2f} at start; median of {args.repeats}\n\n"
        "| entry point | time to result (s) | pipeline load (s) | peak resident memory (MiB) |\n|---|---:|---:|---:|\n"
        f"| app (`inpaint`, in process) | {app['median_s']:.2f} | {app['load_s']:.2f} | {app['peak_mib']:.0f} |\n"
        f"| CLI (`strdiff inpaint`, whole command) | {cli['median_s']:.2f} | included | {cli['peak_mib']:.0f} |"
    )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        record = {"size": args.size, "threads": threads, "load_average": load, "setting": setting}
        args.output.write_text(json.dumps({**record, "app": app, "cli": cli}, indent=2) + "\n")


if __name__ == "__main__":
    main()
