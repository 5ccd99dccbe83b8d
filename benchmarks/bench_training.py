# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Training throughput of the three StrDiffusion networks on this machine.

For each network (structure, texture, discriminator) and resolution, in a fresh process (so that the peak resident
memory is that configuration's):

* `train img/s`: median over repeats of N full training steps (dataloader of the training scripts on generated
  images + the script's `compute_loss` + backward + gradient clipping + AdamW step), in images per second;
* `ref img/s`: the same steps on one preloaded batch (no data loading), the reference;
* `ratio`: train / ref (1.0 = data loading costs nothing);
* `data img/s`: the dataloader alone (crop, flips, grayscale, Canny, mask generation);
* `peak RSS`: peak resident memory of the process, plus that of its largest dataloader worker if any (MiB).

    python benchmarks/bench_training.py                      # 64/128/256 px, nf 16, depth 3, batch 4
    python benchmarks/bench_training.py --resolutions 64 128 --steps 5 --repeats 5 --dataloader_num_workers 1
"""

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "structure": "train_structure",
    "texture": "train_texture",
    "discriminator": "train_discriminator",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--base_channels", type=int, default=16, help="nf of the U-Nets and of the discriminator.")
    parser.add_argument("--depth", type=int, default=3, help="U-Net depth.")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--num_train_timesteps", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3, help="Training steps per timed repeat.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed repeats (the median is reported).")
    parser.add_argument(
        "--max_pixels_for_repeats",
        type=int,
        default=128 * 128,
        help="Above this many pixels per image, a single repeat of a single step is timed (keeps 256 px short).",
    )
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads per process (1: the machine is shared)."
    )
    parser.add_argument("--worker", type=str, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--image_dir", type=str, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def write_images(folder: Path, count: int = 16, size: int = 320) -> None:
    """Smooth random images with a few sharp rectangles (edges for Canny), as PNG."""
    rng = np.random.default_rng(0)
    for index in range(count):
        low = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        pixels = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)).copy()
        for _ in range(4):
            top, left = rng.integers(0, size - 64, size=2)
            height, width = rng.integers(16, 64, size=2)
            pixels[top : top + height, left : left + width] = rng.integers(0, 256, size=3)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_throughput(step: Callable[[], object], steps: int, repeats: int, batch_size: int) -> float:
    step()  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def run_worker(args: argparse.Namespace) -> dict[str, float]:
    from diffusers_strdiff.training import (
        EpochShuffleSampler,
        InpaintingDataset,
        MaskSource,
        build_noise_scheduler,
        load_training_images,
    )
    from diffusers_strdiff.training import parse_args as parse_training_args

    torch.set_num_threads(args.threads)
    network, resolution = args.worker.split(":")
    resolution = int(resolution)
    module = load_script(SCRIPTS[network])
    argv = [
        "--train_data_dir", args.image_dir,
        "--cache_dir", str(Path(args.image_dir) / ".cache"),
        "--resolution", str(resolution),
        "--base_channels", str(args.base_channels),
        "--train_batch_size", str(args.batch_size),
        "--num_train_timesteps", str(args.num_train_timesteps),
        "--report_to", "none",
    ]  # fmt: skip
    if network != "discriminator":
        argv += ["--depth", str(args.depth)]
    training_args = parse_training_args("bench", module.add_arguments, argv)
    images, column = load_training_images(training_args)
    dataset = InpaintingDataset(
        images, column, MaskSource(resolution, training_args.mask_buckets), resolution, seed=0, random_flip=True
    )
    sampler = EpochShuffleSampler(len(dataset), seed=0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
        persistent_workers=args.dataloader_num_workers > 0,
    )

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()
    torch.manual_seed(0)
    model = module.build_model(training_args)
    scheduler = build_noise_scheduler(training_args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(training_args.adam_beta1, 0.99), weight_decay=0)
    generator = torch.Generator().manual_seed(0)

    def train_step(batch: dict[str, torch.Tensor]) -> None:
        loss = module.compute_loss(model, batch, scheduler, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    small = resolution * resolution <= args.max_pixels_for_repeats
    steps, repeats = (args.steps, args.repeats) if small else (1, 1)
    fixed_batch = next(stream)
    data_rate = median_throughput(lambda: next(stream), 4 * args.steps, repeats, args.batch_size)
    reference_rate = median_throughput(lambda: train_step(fixed_batch), steps, repeats, args.batch_size)
    train_rate = median_throughput(lambda: train_step(next(stream)), steps, repeats, args.batch_size)
    peak_kib = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    return {
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "train": train_rate,
        "reference": reference_rate,
        "data": data_rate,
        "peak_rss_mib": peak_kib / 1024,
        "timed": f"{repeats}x{steps}",
    }


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        print(json.dumps(run_worker(args)))
        return
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), nf {args.base_channels}, depth {args.depth}, "
        f"batch {args.batch_size}, timed: repeats x steps (median), dataloader workers "
        f"{args.dataloader_num_workers}"
    )
    header = (
        f"| {'network':<13} | {'res':>4} | {'params':>9} | {'train img/s':>11} | {'ref img/s':>9} | {'ratio':>5} "
        f"| {'data img/s':>10} | {'peak RSS MiB':>12} | {'timed':>5} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell) + 0) for cell in header.split("|")[1:-1]) + "|")
    with tempfile.TemporaryDirectory() as image_dir:
        write_images(Path(image_dir))
        for network in args.networks:
            for resolution in args.resolutions:
                command = [sys.executable, __file__, "--worker", f"{network}:{resolution}", "--image_dir", image_dir]
                for name in (
                    "base_channels",
                    "depth",
                    "batch_size",
                    "num_train_timesteps",
                    "steps",
                    "repeats",
                    "threads",
                ):
                    command += [f"--{name}", str(getattr(args, name))]
                command += ["--max_pixels_for_repeats", str(args.max_pixels_for_repeats)]
                command += ["--dataloader_num_workers", str(args.dataloader_num_workers)]
                completed = subprocess.run(command, capture_output=True, text=True, check=True)
                row = json.loads(completed.stdout.strip().splitlines()[-1])
                print(
                    f"| {network:<13} | {resolution:>4} | {row['parameters']:>9,} | {row['train']:>11.2f} "
                    f"| {row['reference']:>9.2f} | {row['train'] / row['reference']:>5.2f} | {row['data']:>10.1f} "
                    f"| {row['peak_rss_mib']:>12.0f} | {row['timed']:>5} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
