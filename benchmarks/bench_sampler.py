# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Few-step samplers of StrDiffusion: quality (PSNR / SSIM per hole-ratio bucket) against network evaluations.

Every configuration inpaints the same held-out samples (images of `--photos_dir` with one irregular mask per
hole-ratio bucket 0-20 / 20-40 / 40-60 %, built by `build_eval_set`) with the same per-sample seeds, scored as the
evaluation harness does (`run_method`: the hole is blanked, the output rounded to 8 bits, the known region pasted
back, PSNR / SSIM on the whole image). Configurations:

* reference: the full released sampler, N = T Euler-Maruyama steps with `DiscriminatorGatedResampling`;
* N in {T, 50, 20, 10, 5} x the exact-jump sampler (`algorithm_type="posterior"`, x_0 estimate clipped to [0, 1])
  x eta in {0, 1} x with / without resampling. With N < T the resampling callback counts its period and re-noising
  depth in steps of the sub-sequence (`resample_every`, `renoise_steps`), and the structure stage is the steps with
  t >= floor(0.4 T), the same fraction of the trajectory as the released sampler.

Reported per configuration: PSNR / SSIM per bucket and their difference to the reference, seconds per image (median
over all calls of the configuration; one untimed warm-up call first), network evaluations per image from
`output.nfe` (structure / texture / discriminator / total) and the cost breakdown (main-loop structure steps, texture
steps, resampling). The issue's target is at most 20 evaluations per image with PSNR within 0.3 dB of the reference on
every bucket. Writes `bench_sampler_report.md` (the tables), `bench_sampler.json` (all numbers) and `psnr_vs_nfe.png`.

    python benchmarks/bench_sampler.py                           # default checkpoint, 10 images per bucket (~2 h)
    python benchmarks/bench_sampler.py --quick --checkpoint DIR  # smoke run: 1 image per bucket, N in {10, 5}
"""

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import diffusers_strdiff
from diffusers_strdiff import (
    DEFAULT_CHECKPOINT,
    HOLE_RATIO_BUCKETS,
    RESAMPLING_PRESETS,
    DiscriminatorGatedResampling,
    MeanRevertingSDEScheduler,
    StrDiffusionInpaintPipeline,
)
from diffusers_strdiff.evaluation import (
    EvalSample,
    InpaintingMethod,
    MethodOutput,
    build_eval_set,
    psnr,
    run_method,
    ssim,
)

DEFAULT_STEPS = (50, 20, 10, 5)
"""Reverse-step counts benchmarked by default, besides N = T."""
QUICK_STEPS = (10, 5)
TARGET_NFE = 20
TARGET_PSNR_DROP = 0.3
NETWORKS = ("structure", "texture", "discriminator")
SAMPLER_NAMES = {"euler_maruyama": "Euler-Maruyama (released)", "posterior": "posterior jumps"}


@dataclass(frozen=True)
class SamplerConfig:
    """One sampler setting: scheduler `algorithm_type` and `eta`, reverse steps N, resampling callback or not."""

    algorithm_type: str
    eta: float
    num_inference_steps: int
    resampling: bool

    @property
    def name(self) -> str:
        resampling = "+resampling" if self.resampling else ""
        return f"{self.algorithm_type} eta={self.eta:g} N={self.num_inference_steps}{resampling}"


@dataclass
class ConfigResult:
    """Everything measured for one [`SamplerConfig`] (per-call lists; summaries are computed from them)."""

    config: SamplerConfig
    psnr: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ssim: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seconds: list[float] = field(default_factory=list)
    nfe: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    base_structure_steps: int = 0

    def mean_nfe(self, network: str) -> float:
        return float(np.mean(self.nfe[network]))

    def mean_psnr(self, bucket: str) -> float:
        return float(np.mean(self.psnr[bucket]))

    def mean_ssim(self, bucket: str) -> float:
        return float(np.mean(self.ssim[bucket]))

    def cost_shares(self) -> dict[str, float]:
        """Shares of the total NFE: main-loop structure steps, main-loop texture steps, resampling (the rest)."""
        total = self.mean_nfe("total")
        structure, texture = self.base_structure_steps, self.config.num_inference_steps
        return {
            "structure_steps": structure / total,
            "texture_steps": texture / total,
            "resampling": (total - structure - texture) / total,
            "resampling_discriminator": self.mean_nfe("discriminator") / total,
        }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="StrDiffusion pipeline folder.")
    parser.add_argument("--photos_dir", type=Path, default=Path("data/photos/eval"), help="Held-out photos.")
    parser.add_argument("--num_images", type=int, default=10, help="Images per hole-ratio bucket.")
    parser.add_argument("--resolution", type=int, default=64, help="Side of the square samples.")
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/bench_sampler"))
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        help=f"Reverse-step counts N to benchmark (default: T and {list(DEFAULT_STEPS)}; the reference always runs).",
    )
    parser.add_argument("--etas", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument(
        "--resampling", choices=["both", "with", "without"], default="both", help="Resampling variants to run."
    )
    parser.add_argument("--repeats", type=int, default=1, help="Seeds per sample (PSNR averages; time medians).")
    parser.add_argument(
        "--resampling_preset", default="released", choices=sorted(RESAMPLING_PRESETS), help="Resampling callback."
    )
    parser.add_argument(
        "--timestep_spacing", choices=["linspace", "leading", "trailing"], help="Default: the checkpoint's."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seeds the masks and the samplers.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--num_threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a busy machine more threads oversubscribe the cores and run slower).",
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: 1 image per bucket, N in {10, 5}.")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_images, args.steps = 1, args.steps or list(QUICK_STEPS)
    for name in ("num_images", "repeats", "resolution", "num_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1.")
    return args


def load_pipeline(checkpoint: Path, device: str) -> StrDiffusionInpaintPipeline:
    if not (checkpoint / "model_index.json").is_file():
        raise SystemExit(f"--checkpoint {str(checkpoint)!r} is not a pipeline folder (no model_index.json).")
    return diffusers_strdiff.load_pipeline(checkpoint, "released", device, progress_bar=False)


def sampler_configs(num_train_timesteps: int, args: argparse.Namespace) -> list[SamplerConfig]:
    """The reference first, then every combination (N descending)."""
    requested = args.steps or (num_train_timesteps, *DEFAULT_STEPS)
    steps = sorted({n for n in requested if 1 <= n <= num_train_timesteps})
    configs = [SamplerConfig("euler_maruyama", 1.0, num_train_timesteps, True)]
    for resampling in {"both": (True, False), "with": (True,), "without": (False,)}[args.resampling]:
        for eta in args.etas:
            for num_steps in reversed(steps):
                configs.append(SamplerConfig("posterior", eta, num_steps, resampling))
    return configs


class Sampler:
    """An `InpaintFn` for `run_method` that runs the pipeline with one [`SamplerConfig`] and keeps `output.nfe`."""

    def __init__(self, pipeline: StrDiffusionInpaintPipeline, config: SamplerConfig, preset: str) -> None:
        self.pipeline, self.config, self.preset = pipeline, config, preset
        self.scheduler = MeanRevertingSDEScheduler.from_config(
            pipeline.scheduler.config, algorithm_type=config.algorithm_type, eta=config.eta
        )
        self.last_nfe: dict[str, int] = {}

    def __call__(self, masked_image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodOutput:
        self.pipeline.scheduler = self.scheduler
        device = self.pipeline.device
        output = self.pipeline(
            image=masked_image[None].to(device),
            mask_image=mask[None].to(device),
            num_inference_steps=self.config.num_inference_steps,
            generator=torch.Generator(device=device).manual_seed(seed),
            output_type="pt",
            callback_on_step_end=DiscriminatorGatedResampling.from_preset(self.preset)
            if self.config.resampling
            else None,
        )
        self.last_nfe = dict(output.nfe)
        return MethodOutput(output.images[0].float().cpu(), int(output.nfe["total"]))

    def base_structure_steps(self) -> int:
        """Structure steps of the main loop (t >= floor(0.4 T)), without the callback's."""
        self.scheduler.set_timesteps(self.config.num_inference_steps)
        self.pipeline.scheduler = self.scheduler
        return sum(self.pipeline.uses_structure(t) for t in self.scheduler.timesteps.tolist())


def to_hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def run_config(
    pipeline: StrDiffusionInpaintPipeline,
    config: SamplerConfig,
    samples: list[EvalSample],
    args: argparse.Namespace,
) -> ConfigResult:
    sampler = Sampler(pipeline, config, args.resampling_preset)
    method = InpaintingMethod(config.name, sampler)
    result = ConfigResult(config, base_structure_steps=sampler.base_structure_steps())
    run_method(method, samples[0].image, samples[0].mask, args.seed)  # warm-up, not timed
    for index, sample in enumerate(samples):
        for repeat in range(args.repeats):
            seed = args.seed + 1000 * index + repeat  # the same seeds for every configuration
            run = run_method(method, sample.image, sample.mask, seed)
            target = to_hwc(sample.image)
            result.psnr[sample.bucket].append(psnr(to_hwc(run.output), target))
            result.ssim[sample.bucket].append(ssim(to_hwc(run.output), target))
            result.seconds.append(run.seconds)
            for network, count in sampler.last_nfe.items():
                result.nfe[network].append(count)
    return result


# --------------------------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------------------------


def meets_target(result: ConfigResult, reference: ConfigResult, buckets: Sequence[str]) -> bool:
    within = all(result.mean_psnr(b) >= reference.mean_psnr(b) - TARGET_PSNR_DROP for b in buckets)
    return within and result.mean_nfe("total") <= TARGET_NFE


def results_table(results: list[ConfigResult], buckets: Sequence[str]) -> str:
    reference = results[0]
    header = (
        "| sampler | η | N | resampling | NFE str / tex / disc | NFE total | s / image "
        + "".join(f"| PSNR {b} (Δ) " for b in buckets)
        + "".join(f"| SSIM {b} " for b in buckets)
        + f"| ≤ {TARGET_NFE} NFE & ≥ −{TARGET_PSNR_DROP} dB |"
    )
    lines = [header, "|" + "---|" * (7 + 2 * len(buckets) + 1)]
    for index, result in enumerate(results):
        config = result.config
        name = SAMPLER_NAMES.get(config.algorithm_type, config.algorithm_type) + (
            " **reference**" if index == 0 else ""
        )
        nfe = " / ".join(f"{result.mean_nfe(network):.1f}" for network in NETWORKS)
        psnrs = "".join(
            f"| {result.mean_psnr(b):.2f} ({result.mean_psnr(b) - reference.mean_psnr(b):+.2f}) " for b in buckets
        )
        ssims = "".join(f"| {result.mean_ssim(b):.4f} " for b in buckets)
        target = "–" if index == 0 else ("yes" if meets_target(result, reference, buckets) else "no")
        lines.append(
            f"| {name} | {config.eta:g} | {config.num_inference_steps} | {'yes' if config.resampling else 'no'} "
            f"| {nfe} | {result.mean_nfe('total'):.1f} | {statistics.median(result.seconds):.3f} "
            f"{psnrs}{ssims}| {target} |"
        )
    return "\n".join(lines)


def cost_table(results: list[ConfigResult]) -> str:
    lines = [
        "| sampler | η | N | resampling | NFE total | structure steps | texture steps | resampling (of which D) |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for result in results:
        config, shares = result.config, result.cost_shares()
        lines.append(
            f"| {SAMPLER_NAMES.get(config.algorithm_type, config.algorithm_type)} | {config.eta:g} "
            f"| {config.num_inference_steps} | {'yes' if config.resampling else 'no'} "
            f"| {result.mean_nfe('total'):.1f} "
            f"| {shares['structure_steps']:.0%} | {shares['texture_steps']:.0%} "
            f"| {shares['resampling']:.0%} ({shares['resampling_discriminator']:.0%}) |"
        )
    return "\n".join(lines)


def frontier_summary(results: list[ConfigResult], buckets: Sequence[str]) -> str:
    reference = results[0]

    def worst_drop(result: ConfigResult) -> float:
        return min(result.mean_psnr(b) - reference.mean_psnr(b) for b in buckets)

    lines = [f"Reference ({reference.config.name}): {reference.mean_nfe('total'):.1f} NFE per image."]
    passing = [r for r in results[1:] if meets_target(r, reference, buckets)]
    if passing:
        cheapest = min(passing, key=lambda r: (r.mean_nfe("total"), -worst_drop(r)))
        lines.append(
            f"Target met by {len(passing)} configuration(s); cheapest: {cheapest.config.name} with "
            f"{cheapest.mean_nfe('total'):.1f} NFE, worst-bucket ΔPSNR {worst_drop(cheapest):+.2f} dB."
        )
    else:
        lines.append(f"Target (≤ {TARGET_NFE} NFE, ΔPSNR ≥ −{TARGET_PSNR_DROP} dB on every bucket) not met.")
    affordable = [r for r in results[1:] if r.mean_nfe("total") <= TARGET_NFE]
    if affordable:
        best = max(affordable, key=worst_drop)
        lines.append(
            f"Best within {TARGET_NFE} NFE: {best.config.name} ({best.mean_nfe('total'):.1f} NFE), worst-bucket "
            f"ΔPSNR {worst_drop(best):+.2f} dB."
        )
    for resampling in (True, False):
        within = [r for r in results[1:] if r.config.resampling == resampling and worst_drop(r) >= -TARGET_PSNR_DROP]
        if within:
            cheapest = min(within, key=lambda r: r.mean_nfe("total"))
            lines.append(
                f"Cheapest {'with' if resampling else 'without'} resampling within {TARGET_PSNR_DROP} dB: "
                f"{cheapest.config.name} ({cheapest.mean_nfe('total'):.1f} NFE)."
            )
    return "\n".join(f"- {line}" for line in lines)


def plot_psnr_vs_nfe(results: list[ConfigResult], buckets: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = results[0]
    series: dict[tuple[float, bool], list[ConfigResult]] = defaultdict(list)
    for result in results[1:]:
        series[(result.config.eta, result.config.resampling)].append(result)
    figure, axes = plt.subplots(1, len(buckets), figsize=(5.0 * len(buckets), 4.2), squeeze=False)
    for axis, bucket in zip(axes[0], buckets, strict=True):
        for (eta, resampling), members in series.items():
            members = sorted(members, key=lambda r: r.mean_nfe("total"))
            axis.plot(
                [r.mean_nfe("total") for r in members],
                [r.mean_psnr(bucket) for r in members],
                marker="o" if eta == 0 else "s",
                linestyle="-" if resampling else "--",
                label=f"{SAMPLER_NAMES['posterior']}, η={eta:g}{', resampling' if resampling else ''}",
            )
            for r in members:
                axis.annotate(
                    str(r.config.num_inference_steps), (r.mean_nfe("total"), r.mean_psnr(bucket)), fontsize=6
                )
        reference_psnr = reference.mean_psnr(bucket)
        axis.scatter([reference.mean_nfe("total")], [reference_psnr], marker="*", s=160, color="k", label="reference")
        axis.axhspan(reference_psnr - TARGET_PSNR_DROP, reference_psnr, color="k", alpha=0.08)
        axis.axvline(TARGET_NFE, color="r", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("network evaluations per image")
        axis.set_ylabel("PSNR (dB)")
        axis.set_title(f"hole ratio {bucket} %")
        axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize="small")
    figure.tight_layout(rect=(0.0, 0.12, 1.0, 1.0))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(
    results: list[ConfigResult],
    buckets: Sequence[str],
    args: argparse.Namespace,
    num_train_timesteps: int,
    timestep_spacing: str,
) -> str:
    args.output_dir.mkdir(parents=True, exist_ok=True)
    settings = (
        f"checkpoint `{args.checkpoint}` (T = {num_train_timesteps}), {args.num_images} image(s) per bucket from "
        f"`{args.photos_dir}` at {args.resolution} px, {args.repeats} seed(s) per sample, device {args.device}, "
        f"{args.num_threads} CPU thread(s), resampling preset `{args.resampling_preset}`, timestep spacing "
        f"`{timestep_spacing}`."
    )
    report = "\n\n".join(
        [
            "# Few-step sampler benchmark",
            settings,
            "## Quality and cost\n\nΔ: PSNR difference to the reference (first row). NFE: network evaluations per "
            "image (mean). s / image: median over calls.",
            results_table(results, buckets),
            "## Frontier",
            frontier_summary(results, buckets),
            "## Cost breakdown (share of the NFE)\n\nstructure / texture steps: the main loop's; resampling: every "
            "evaluation the callback adds (re-denoising structure steps, candidate texture steps, discriminator).",
            cost_table(results),
        ]
    )
    (args.output_dir / "bench_sampler_report.md").write_text(report + "\n", encoding="utf-8")
    payload: dict[str, Any] = {
        "settings": {key: str(value) for key, value in vars(args).items()},
        "num_train_timesteps": num_train_timesteps,
        "results": [
            {
                "config": asdict(result.config),
                "psnr": {b: result.mean_psnr(b) for b in buckets},
                "ssim": {b: result.mean_ssim(b) for b in buckets},
                "seconds_per_image_median": statistics.median(result.seconds),
                "nfe_mean": {network: result.mean_nfe(network) for network in (*NETWORKS, "total")},
                "cost_shares": result.cost_shares(),
                "per_call": {"psnr": dict(result.psnr), "ssim": dict(result.ssim), "seconds": result.seconds},
            }
            for result in results
        ],
    }
    (args.output_dir / "bench_sampler.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    plot_psnr_vs_nfe(results, buckets, args.output_dir / "psnr_vs_nfe.png")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    pipeline = load_pipeline(args.checkpoint, args.device)
    if args.timestep_spacing is not None:
        pipeline.scheduler = MeanRevertingSDEScheduler.from_config(
            pipeline.scheduler.config, timestep_spacing=args.timestep_spacing
        )
    num_train_timesteps = pipeline.scheduler.config.num_train_timesteps
    buckets = list(HOLE_RATIO_BUCKETS)
    samples = build_eval_set(args.photos_dir, args.resolution, buckets, seed=args.seed, max_images=args.num_images)
    configs = sampler_configs(num_train_timesteps, args)
    results = []
    for index, config in enumerate(configs, start=1):
        result = run_config(pipeline, config, samples, args)
        print(
            f"[{index}/{len(configs)}] {config.name}: NFE {result.mean_nfe('total'):.1f}, "
            f"{statistics.median(result.seconds):.3f} s / image, PSNR "
            + " / ".join(f"{result.mean_psnr(b):.2f}" for b in buckets),
            flush=True,
        )
        results.append(result)
    report = write_outputs(results, buckets, args, num_train_timesteps, pipeline.scheduler.config.timestep_spacing)
    print("\n" + report)
    print(f"\nWrote {args.output_dir / 'bench_sampler_report.md'}, bench_sampler.json and psnr_vs_nfe.png.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
