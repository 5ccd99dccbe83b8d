# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""How much an NNPACK convolution loses when it follows an OpenMP operator, under OpenMP wait policies.

NNPACK (used by `prepare_for_inference()` for the large 3x3 convolutions) runs on its own thread pool; PyTorch's other
CPU operators run on OpenMP, whose workers keep spinning for a while after each parallel region. When an NNPACK call
starts right after one, both thread sets compete for the cores. For each setting of `--settings` (environment
variables, read by OpenMP when torch loads, so each setting runs in a fresh process) this times, median of
`--repeats`:

* `nnpack`: the NNPACK convolution alone (1 x C x S x S -> C, 3x3), back to back;
* `openmp op`: a small OpenMP operator alone (`exp` of a 256 x 32 x 32 tensor);
* `alternating`: one of each, in turn (per pair); `clash` = alternating / (nnpack + openmp op).

    python benchmarks/bench_thread_clash.py
    python benchmarks/bench_thread_clash.py --settings "" GOMP_SPINCOUNT=1000 --channels 64 --size 256
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["", "GOMP_SPINCOUNT=10000", "OMP_WAIT_POLICY=PASSIVE"],
        help='Environment settings, one per process: "" (the defaults) or KEY=VALUE[,KEY=VALUE...].',
    )
    parser.add_argument("--channels", type=int, default=128, help="Input and output channels of the convolution.")
    parser.add_argument("--size", type=int, default=128, help="Side of the square input map (px).")
    parser.add_argument("--repeats", type=int, default=21, help="Timed calls per measurement (median reported).")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def median_ms(function: Callable[[], object], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def worker(channels: int, size: int, repeats: int) -> dict[str, float]:
    import torch

    from diffusers_strdiff.models import inference

    if not inference.nnpack_available():
        raise SystemExit("this PyTorch build has no NNPACK")
    generator = torch.Generator().manual_seed(0)
    hidden_states = torch.randn(1, channels, size, size, generator=generator)
    weight = 0.01 * torch.randn(channels, channels, 3, 3, generator=generator)
    small = torch.randn(256, 32, 32, generator=generator)

    def convolution() -> None:
        inference.nnpack_conv3x3(hidden_states, weight, None)

    def openmp_op() -> None:
        small.exp()

    def alternating() -> None:
        openmp_op()
        convolution()

    with torch.no_grad():
        return {
            "nnpack": median_ms(convolution, repeats),
            "openmp op": median_ms(openmp_op, repeats),
            "alternating": median_ms(alternating, repeats),
            "threads": torch.get_num_threads(),
        }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.channels, args.size, args.repeats)))
        return
    print(
        f"1 x {args.channels} x {args.size} x {args.size} -> {args.channels}, 3x3, median of {args.repeats}; "
        f"load average at start {os.getloadavg()[0]:.2f}\n"
    )
    print("| setting | threads | nnpack (ms) | openmp op (ms) | alternating (ms) | clash |")
    print("|---|---:|---:|---:|---:|---:|")
    for setting in args.settings:
        pairs = [item.split("=", 1) for item in setting.split(",") if item]
        if any(len(pair) != 2 or not pair[0] for pair in pairs):
            raise SystemExit(f'--settings items are "" or KEY=VALUE[,KEY=VALUE...], got {setting!r}')
        python_path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, **dict(pairs), "PYTHONPATH": python_path}
        command = [sys.executable, __file__, "--worker", "1", "--channels", str(args.channels)]
        command += ["--size", str(args.size), "--repeats", str(args.repeats)]
        process = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        result = json.loads(process.stdout.strip().splitlines()[-1])
        clash = result["alternating"] / (result["nnpack"] + result["openmp op"])
        print(
            f"| {setting or 'defaults'} | {result['threads']} | {result['nnpack']:.2f} | {result['openmp op']:.2f} | "
            f"{result['alternating']:.2f} | {clash:.2f}x |"
        )


if __name__ == "__main__":
    main()
