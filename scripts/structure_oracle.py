# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""How much can the structure guidance add? An upper bound for a structure-guided pipeline.

Inpaints the evaluation set (the harness's photos, masks and metrics: 8-bit outputs, known region pasted, PSNR / SSIM
on the whole image) with

* `guided`: the structure-guided pipeline as it is (its structure net samples the structure);
* `oracle structure`: the same pipeline whose structure net is replaced by an oracle that returns the *exact*
  ground-truth grayscale as its x_0 estimate at every step (the structure process then follows the true structure,
  and the texture net is guided by it exactly as the sampler guides it);
* `reference`: another structure-guided pipeline (optional, e.g. the previous release);
* `no structure`: the unguided pipeline of the no-structure ablation (optional),

with the same seeds, and prints a Markdown table of PSNR / SSIM per hole-ratio bucket. If the oracle row is not
above the guided row, a better structure net cannot help this texture net under this sampler: the texture net does
not use more structure than it gets. A second table scores the structure itself: the hole PSNR of the pipelines'
structure output (the structure net's x_0 estimate of the last early step, known region pasted) against the
ground-truth grayscale, next to the biharmonic fill of the known grayscale.

    python scripts/structure_oracle.py --checkpoint runs/default/pipeline \\
        --no_structure_checkpoint runs/default/pipeline_no_structure --resolution 64 --steps 2 5
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers.models.unets.unet_2d import UNet2DOutput
from tqdm.auto import tqdm

from diffusers_strdiff import StrDiffusionInpaintPipeline, load_pipeline
from diffusers_strdiff.coarse_fill import fill_hole
from diffusers_strdiff.evaluation import build_eval_set, psnr, ssim
from diffusers_strdiff.evaluation.run import sample_seed
from diffusers_strdiff.structure import grayscale_map


class OracleStructureNet(torch.nn.Module):
    """
    Stands in for a structure U-Net: returns the output that makes the scheduler's x_0 estimate equal to
    `target_gray` (`(B, 1, H, W)`, set before each pipeline call) for the `"sample"` and `"residual"` prediction types.
    """

    def __init__(self, network: torch.nn.Module, prediction_type: str) -> None:
        super().__init__()
        if prediction_type not in ("sample", "residual"):
            raise ValueError(f"The oracle supports `sample` and `residual` predictions, got {prediction_type!r}.")
        self.network = network  # kept for `config`, `dtype` and `device`
        self.config = network.config
        self.prediction_type = prediction_type
        self.target_gray: torch.Tensor | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.network.dtype

    @property
    def device(self) -> torch.device:
        return self.network.device

    def forward(self, sample: torch.Tensor, timestep: int, structure_mu: torch.Tensor, **kwargs) -> UNet2DOutput:
        target = self.target_gray.to(sample)
        return UNet2DOutput(sample=target if self.prediction_type == "sample" else target - structure_mu)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="Structure-guided pipeline folder.")
    parser.add_argument("--no_structure_checkpoint", help="Pipeline folder of the no-structure ablation.")
    parser.add_argument("--reference_checkpoint", help="Another structure-guided pipeline folder to compare.")
    parser.add_argument("--eval_dir", default="data/photos/eval", help="Held-out photos.")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--max_images", type=int, default=20)
    parser.add_argument("--steps", type=int, nargs="+", default=[2], help="Posterior sampler steps to compare.")
    parser.add_argument("--seed", type=int, default=0, help="Mask and sampling seed (the harness's).")
    parser.add_argument("--output", type=Path, help="Also write the table (Markdown) here.")
    return parser.parse_args()


def hole_psnr(prediction: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> float:
    """PSNR (dB, peak 1) over the hole pixels of `(H, W, C)` arrays; `hole` is `(H, W, 1)` boolean."""
    hole = np.broadcast_to(hole, prediction.shape)
    return float(10 * np.log10(1 / np.mean((prediction[hole] - truth[hole]) ** 2)))


def evaluate(
    pipeline: StrDiffusionInpaintPipeline, samples: list, steps: int, seed: int, label: str
) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """
    Mean PSNR and SSIM per bucket of the pipeline on the samples, with the harness's per-sample seeds, and the mean
    hole PSNR of its structure output per bucket (empty without structure network).
    """
    scores: dict[str, list[tuple[float, float]]] = {}
    structure_scores: dict[str, list[float]] = {}
    oracle = pipeline.structure_unet if isinstance(pipeline.structure_unet, OracleStructureNet) else None
    for sample in tqdm(samples, desc=f"{label}, {steps} steps", leave=False):
        if oracle is not None:
            oracle.target_gray = grayscale_map(sample.image)[None]
        known = sample.image * (1 - sample.mask)
        result = pipeline(
            image=known[None],
            mask_image=sample.mask[None],
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(sample_seed(seed, sample.sample_id)),
            output_type="np",
        )
        output = np.round(result.images[0] * 255) / 255
        truth = sample.image.permute(1, 2, 0).numpy()
        hole = sample.mask.permute(1, 2, 0).numpy() > 0.5
        output = np.where(hole, output, truth)
        scores.setdefault(sample.bucket, []).append((psnr(output, truth), ssim(output, truth)))
        if result.structures is not None and oracle is None:
            gray = grayscale_map(sample.image).permute(1, 2, 0).numpy()
            structure_scores.setdefault(sample.bucket, []).append(hole_psnr(result.structures[0], gray, hole))
    means = {bucket: tuple(np.mean(values, axis=0)) for bucket, values in scores.items()}
    return means, {bucket: float(np.mean(values)) for bucket, values in structure_scores.items()}


def biharmonic_structure(samples: list) -> dict[str, float]:
    """Mean hole PSNR per bucket of the biharmonic fill of the known grayscale (the `filled_gray` structure mean)."""
    scores: dict[str, list[float]] = {}
    for sample in samples:
        known_mask = 1 - sample.mask[None]
        gray = grayscale_map(sample.image)[None]
        filled = fill_hole(gray * known_mask, known_mask, "biharmonic")
        hole = sample.mask.permute(1, 2, 0).numpy() > 0.5
        scores.setdefault(sample.bucket, []).append(
            hole_psnr(filled[0].permute(1, 2, 0).numpy(), gray[0].permute(1, 2, 0).numpy(), hole)
        )
    return {bucket: float(np.mean(values)) for bucket, values in scores.items()}


def main() -> None:
    args = parse_args()
    samples = build_eval_set(args.eval_dir, resolution=args.resolution, seed=args.seed, max_images=args.max_images)
    guided = load_pipeline(args.checkpoint, sampler="posterior", progress_bar=False)
    if guided.structure_unet is None:
        raise ValueError("`--checkpoint` must be a structure-guided pipeline (it has no structure network).")
    oracle = load_pipeline(args.checkpoint, sampler="posterior", progress_bar=False)
    oracle.structure_unet = OracleStructureNet(oracle.structure_unet, oracle.scheduler.config.prediction_type)
    pipelines = {"guided": guided, "oracle structure": oracle}
    if args.reference_checkpoint:
        pipelines["reference"] = load_pipeline(args.reference_checkpoint, sampler="posterior", progress_bar=False)
    if args.no_structure_checkpoint:
        pipelines["no structure"] = load_pipeline(
            args.no_structure_checkpoint, sampler="posterior", progress_bar=False
        )
    buckets = list(dict.fromkeys(sample.bucket for sample in samples))
    lines = [
        "# How much can the structure guidance add?\n",
        "`oracle structure`: the guided pipeline with its structure net replaced by an oracle whose x_0 estimate is the "
        "exact ground-truth grayscale (`scripts/structure_oracle.py`).\n",
        f"{len(samples) // len(buckets)} photos x {len(buckets)} buckets at {args.resolution} px, posterior sampler, "
        "no resampling; PSNR (dB) / SSIM per hole-ratio bucket.\n",
        "| pipeline | steps | " + " | ".join(f"{bucket} %" for bucket in buckets) + " |",
        "|---|---:|" + "---|" * len(buckets),
    ]
    structure_lines = [
        "",
        "Structure output (the structure net's x_0 estimate of the last early step, known region pasted: what "
        '`texture_guidance="estimate"` guides with): PSNR (dB) over the hole pixels against the ground-truth '
        "grayscale.\n",
        "| structure | steps | " + " | ".join(f"{bucket} %" for bucket in buckets) + " |",
        "|---|---:|" + "---|" * len(buckets),
    ]
    filled = biharmonic_structure(samples)
    structure_lines.append("| biharmonic fill of the known grayscale | - | " + " | ".join(
        f"{filled[bucket]:.2f}" for bucket in buckets) + " |")  # fmt: skip
    for steps in args.steps:
        for label, pipeline in pipelines.items():
            scores, structure_scores = evaluate(pipeline, samples, steps, args.seed, label)
            cells = " | ".join(f"{scores[bucket][0]:.2f} / {scores[bucket][1]:.3f}" for bucket in buckets)
            lines.append(f"| {label} | {steps} | {cells} |")
            print(lines[-1], flush=True)
            if structure_scores:
                cells = " | ".join(f"{structure_scores[bucket]:.2f}" for bucket in buckets)
                structure_lines.append(f"| {label} (`{pipeline.config.structure_mean}` mean) | {steps} | {cells} |")
    table = "\n".join(lines + structure_lines)
    print("\n" + table)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
