# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Seconds per call and peak memory of each StrDiffusion network, plain eager float32 against the optimised variants.

Networks: the structure U-Net, the texture U-Net and the discriminator, in two configurations:

* `bundled`: the components of `diffusers_strdiff.DEFAULT_CHECKPOINT` (nf 16, depth 3; discriminator ngf 16);
* `released`: the released architecture (U-Nets nf 64, depth 4; discriminator ngf 64, time embedding 256), from a
  randomly initialised state dict with the released key names converted with `convert_official_checkpoint`.

Variants (`--variants`):

* `plain`: the model as loaded, eager float32: the reference of every ratio;
* `prepared`: `model.prepare_for_inference()` (cached conv weights, Winograd F(2x2, 3x3) or F(4x4, 3x3) for the wide 3x3 convs);
* `compile` (opt-in): `torch.compile(prepared model)`; the first call (compilation) is reported separately;
* `bf16` (opt-in): the prepared model under `torch.autocast("cpu", torch.bfloat16)`.

Each (configuration, network, size, batch) runs in a fresh process that times all variants **interleaved**
(`--repeats` rounds of one call per variant, after one warm-up call each; fewer rounds, at least one, once the timed
rounds took `--max_seconds`, so that the 512 px rows finish) and reports medians, so that a variant and its reference
see the same machine load. `max rel diff` is `max |out - plain| / max |plain|`. Peak memory is measured in one more
fresh process per variant (one call): `ru_maxrss` after the call minus the resident size after loading the model and
inputs. `--reuse_freed_memory` runs every worker with the allocator setting of the CLI and the app (process-wide,
so its effect is the difference between two runs, with and without it).

    python benchmarks/bench_network.py --quick                     # 128 px, batch 1, 2 repeats (a few minutes)
    python benchmarks/bench_network.py --output docs/bench/bench_network.json   # 128/256/512 px, batch 1 and 4
    python benchmarks/bench_network.py --configs released --networks texture --sizes 128 256 --threads 1
    python benchmarks/bench_network.py --configs released --networks structure --sizes 128 --batches 1 \
        --worker_env GOMP_SPINCOUNT=10000   # OpenMP workers that stop spinning sooner (bench_thread_clash.py)
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
NETWORKS = ("structure", "texture", "discriminator")
CONFIGS = ("bundled", "released")
VARIANTS = ("plain", "prepared", "compile", "bf16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="Square input sides.")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="Batch sizes.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls per variant (median reported).")
    parser.add_argument(
        "--max_seconds",
        type=float,
        default=60.0,
        help="Stop repeating once the timed rounds of a worker took this long (at least one round).",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=["plain", "prepared"], help="`plain` is always included."
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads in every worker (0: torch's default)."
    )
    parser.add_argument("--no_memory", action="store_true", help="Skip the peak-memory processes.")
    parser.add_argument(
        "--reuse_freed_memory",
        action="store_true",
        help="Every worker first calls diffusers_strdiff.reuse_freed_memory() (what the CLI and the app do).",
    )
    parser.add_argument(
        "--worker_env",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Environment variables of every worker process, set before it imports torch (e.g. GOMP_SPINCOUNT=10000:"
        " OpenMP reads it when torch loads).",
    )
    parser.add_argument("--quick", action="store_true", help="128 px, batch 1, 2 repeats.")
    parser.add_argument("--output", help="Write the rows as JSON to this file.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.repeats = [128], [1], 2
    if "plain" not in args.variants:
        args.variants.insert(0, "plain")
    malformed = [item for item in args.worker_env if "=" not in item or item.startswith("=")]
    if malformed:
        parser.error(f"--worker_env takes KEY=VALUE items, got {malformed}")
    args.worker_env = dict(item.split("=", 1) for item in args.worker_env)
    return args


def build_network(config: str, network: str) -> torch.nn.Module:
    """The bundled checkpoint's component, or a randomly initialised released-layout network, converted."""
    from diffusers_strdiff import DEFAULT_CHECKPOINT, StrDiffusionDiscriminator, StrDiffusionUNet2DModel

    if config == "bundled":
        model_class = StrDiffusionDiscriminator if network == "discriminator" else StrDiffusionUNet2DModel
        subfolder = "discriminator" if network == "discriminator" else f"{network}_unet"
        return model_class.from_pretrained(DEFAULT_CHECKPOINT, subfolder=subfolder).eval()

    from diffusers_strdiff import convert_official_checkpoint

    sys.path.insert(0, str(REPO))
    from tests.test_conversion import random_state_dict, released_discriminator_shapes, released_unet_shapes

    if network == "discriminator":
        shapes = released_discriminator_shapes(4, 64, 256)
    elif network == "texture":
        shapes = released_unet_shapes(3, 3, 64, 4, label_nc=1)
    else:
        shapes = released_unet_shapes(1, 1, 64, 4)
    return convert_official_checkpoint(random_state_dict(shapes))


def network_inputs(model: torch.nn.Module, network: str, size: int, batch: int) -> tuple:
    generator = torch.Generator().manual_seed(0)
    timesteps = torch.randint(1, 100, (batch,), generator=generator)
    channels = model.config.in_channels
    sample = torch.rand(batch, channels, size, size, generator=generator)
    if network == "discriminator":
        return sample, timesteps, torch.rand(batch, 1, size, size, generator=generator)
    condition = torch.rand(batch, channels, size, size, generator=generator)
    guidance = torch.rand(batch, 1, size, size, generator=generator) if network == "texture" else None
    known_mask = None
    if model.config.known_mask_channel:  # the bundled networks take the known mask as an input channel
        known_mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.3).float()
    return sample, timesteps, condition, guidance, known_mask


def make_variant(model: torch.nn.Module, variant: str):
    """A callable `inputs -> output tensor` for the variant (the model is copied unless plain)."""
    import copy

    def output(result):
        return result if torch.is_tensor(result) else result.sample

    if variant == "plain":
        return lambda inputs: output(model(*inputs))
    prepared = copy.deepcopy(model).prepare_for_inference()
    if variant == "prepared":
        return lambda inputs: output(prepared(*inputs))
    if variant == "compile":
        compiled = torch.compile(prepared)
        return lambda inputs: output(compiled(*inputs))

    def bf16(inputs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return output(prepared(*inputs)).float()

    return bf16


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(task: dict) -> dict:
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    if task["reuse_freed_memory"]:
        from diffusers_strdiff import reuse_freed_memory

        reuse_freed_memory()
    torch.set_grad_enabled(False)
    model = build_network(task["config"], task["network"])
    inputs = network_inputs(model, task["network"], task["size"], task["batch"])
    if task["mode"] == "memory":
        call = make_variant(model, task["variant"])
        baseline = rss_mib()
        call(inputs)
        return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline}

    calls, times, first_call, outputs = {}, {}, {}, {}
    for variant in task["variants"]:
        calls[variant] = make_variant(model, variant)
        start = time.perf_counter()
        outputs[variant] = calls[variant](inputs)
        first_call[variant] = time.perf_counter() - start
        times[variant] = []
    started = time.perf_counter()
    for _ in range(task["repeats"]):
        for variant, call in calls.items():
            start = time.perf_counter()
            call(inputs)
            times[variant].append(time.perf_counter() - start)
        if time.perf_counter() - started > task["max_seconds"]:
            break
    reference = outputs["plain"].float()
    scale = reference.abs().max().item() or 1.0
    return {
        variant: {
            "seconds": statistics.median(times[variant]),
            "times": times[variant],
            "first_call_seconds": first_call[variant],
            "max_rel_diff": (outputs[variant].float() - reference).abs().max().item() / scale,
        }
        for variant in calls
    }


def run_worker(task: dict, worker_env: dict[str, str]) -> dict:
    python_path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **worker_env, "PYTHONPATH": python_path}
    result = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True, text=True, env=env
    )
    if result.returncode:
        raise RuntimeError(f"worker {task} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    environment = {
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads or torch.get_num_threads(),
        "reuse_freed_memory": args.reuse_freed_memory,
        "loadavg_at_start": os.getloadavg(),
        "repeats": args.repeats,
        "worker_env": args.worker_env,
    }
    rows = []
    header = (
        "| config | network | px | batch | variant | s/call | timed calls | ratio vs plain | max rel diff | peak MiB |"
    )
    print(
        f"threads {environment['threads']}, reuse_freed_memory {args.reuse_freed_memory}, "
        f"load average at start {environment['loadavg_at_start']}, worker environment {args.worker_env}\n"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for config in args.configs:
        for network in args.networks:
            for size in args.sizes:
                for batch in args.batches:
                    if network == "discriminator" and batch not in (1, 2, 3) and batch % 4:
                        continue
                    base = dict(
                        config=config,
                        network=network,
                        size=size,
                        batch=batch,
                        threads=args.threads,
                        reuse_freed_memory=args.reuse_freed_memory,
                    )
                    timing = run_worker(
                        {
                            **base,
                            "mode": "time",
                            "variants": args.variants,
                            "repeats": args.repeats,
                            "max_seconds": args.max_seconds,
                        },
                        args.worker_env,
                    )
                    plain_seconds = timing["plain"]["seconds"]
                    for variant, measured in timing.items():
                        peak = None
                        if not args.no_memory:
                            memory_task = {**base, "mode": "memory", "variant": variant}
                            peak = run_worker(memory_task, args.worker_env)["peak_mib"]
                        row = {**base, "variant": variant, **measured, "ratio": plain_seconds / measured["seconds"]}
                        row["peak_mib"] = peak
                        rows.append(row)
                        peak_text = "-" if peak is None else f"{peak:.0f}"
                        print(
                            f"| {config} | {network} | {size} | {batch} | {variant} | {measured['seconds']:.3f} | "
                            f"{len(measured['times'])} | "
                            f"{row['ratio']:.2f}x | {measured['max_rel_diff']:.1e} | {peak_text} |",
                            flush=True,
                        )
    environment["loadavg_at_end"] = os.getloadavg()
    print(f"\nload average at end {environment['loadavg_at_end']}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
