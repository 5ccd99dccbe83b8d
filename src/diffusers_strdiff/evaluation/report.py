# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""`write_report`: report.md, metrics.json, the PSNR / SSIM bar plot and the qualitative grid."""

import json
from pathlib import Path

import numpy as np

from ..schedulers.scheduling_mean_reverting_sde import SAMPLER_PRESETS
from .eval_set import EvalSample
from .methods import _to_uint8_hwc
from .metrics import KID_MAX_SUBSET_SIZE, KID_SUBSETS, LPIPS_STATUS
from .run import EvaluationResults


def _mean_std(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def format_markdown_tables(results: EvaluationResults) -> str:
    """One markdown table per bucket: methods × PSNR, SSIM, FID, KID (mean ± std), seconds / image and NFE."""
    blocks = []
    for bucket, per_method in results.metrics.items():
        lines = [
            f"### Hole ratio {bucket} %",
            "",
            "| Method | n | PSNR ↑ (dB) | SSIM ↑ | FID ↓ | KID ↓ | s / image | NFE |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method, row in per_method.items():
            fid = "n/a" if row["fid"] is None else f"{row['fid']:.1f}"
            nfe = "–" if row["nfe_mean"] is None else f"{row['nfe_mean']:.1f}"
            lines.append(
                f"| {method} | {row['n']} | {_mean_std(row['psnr_mean'], row['psnr_std'], 2)} "
                f"| {_mean_std(row['ssim_mean'], row['ssim_std'], 4)} | {fid} "
                f"| {_mean_std(row['kid_mean'], row['kid_std'], 4)} | {row['seconds_per_image']:.3f} | {nfe} |"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _report_markdown(results: EvaluationResults) -> str:
    config = results.config
    notes = [
        "# Inpainting evaluation",
        "",
        f"- {config['num_images']} images, {config['num_samples']} samples, {config['resolution']} x "
        f"{config['resolution']} px ({config['resize_filter']}), seed {config['seed']}, "
        f"{config['num_processes']} process(es), wall time {results.wall_seconds:.1f} s.",
        "- Every method gets the image with the hole blanked to 0; its output is rounded to 8 bits and the known "
        "region is pasted back from the ground truth. PSNR and SSIM are computed on the whole image (mean ± std over "
        f"images); SSIM: {config['ssim']}.",
        f"- FID / KID: {results.fid_status}; per bucket, generated vs ground-truth images, Inception: "
        f"{config['inception']}. KID: mean ± std over {KID_SUBSETS} subsets of min({KID_MAX_SUBSET_SIZE}, n) images "
        "(with n <= 50 every subset holds all images, so the std is 0). Both sets hold the same images (outputs "
        "keep the known region), which pulls the unbiased KID estimate below 0 when they are nearly equal: a "
        "negative KID means indistinguishable at this n. With few images FID is strongly biased and "
        "noisy: compare methods on the same set only, and prefer KID.",
        f"- LPIPS: {LPIPS_STATUS}.",
        "- s / image: compute time of the method call (the original time for cached results); NFE: network "
        "evaluations per image (pipelines only).",
    ]
    for name, method_config in config["methods"].items():
        if method_config.get("kind") == "strdiffusion_pipeline":
            sampler = method_config.get("sampler", SAMPLER_PRESETS["released"])
            steps = method_config["num_inference_steps"] or "T"
            resampling = "with" if method_config["resampling"] else "without"
            notes.append(f"- `{name}`: scheduler {sampler}, {steps} reverse steps, {resampling} resampling.")
    notes += [f"- Skipped `{name}`: {reason}." for name, reason in results.unavailable.items()]
    return "\n".join(notes) + "\n\n" + format_markdown_tables(results) + "\n"


def _plot_bars(results: EvaluationResults, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets, methods = list(results.metrics), results.methods
    width = 0.8 / len(methods)
    positions = np.arange(len(buckets))
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.0 + 1.2 * len(buckets) * len(methods) * 0.5), 4.0))
    for axis, metric, label in ((axes[0], "psnr", "PSNR (dB) ↑"), (axes[1], "ssim", "SSIM ↑")):
        for index, method in enumerate(methods):
            means = [results.metrics[bucket][method][f"{metric}_mean"] for bucket in buckets]
            stds = [results.metrics[bucket][method][f"{metric}_std"] for bucket in buckets]
            axis.bar(positions + (index - (len(methods) - 1) / 2) * width, means, width, yerr=stds, label=method)
        axis.set_xticks(positions, [f"{bucket} %" for bucket in buckets])
        axis.set_xlabel("hole ratio")
        axis.set_ylabel(label)
        axis.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(methods), 7), fontsize="small")
    figure.tight_layout(rect=(0.0, 0.1, 1.0, 1.0))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _grid_samples(results: EvaluationResults, rows: int) -> list[EvalSample]:
    """Up to `rows` samples: row i takes bucket i modulo the buckets, at position i / rows of that bucket's samples."""
    by_bucket: dict[str, list[EvalSample]] = {}
    for sample in results.samples:
        by_bucket.setdefault(sample.bucket, []).append(sample)
    groups = list(by_bucket.values())
    chosen = []
    for index in range(rows):
        group = groups[index % len(groups)]
        chosen.append(group[index * len(group) // rows])
    return list({sample.sample_id: sample for sample in chosen}.values())


def _plot_grid(results: EvaluationResults, path: Path, rows: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = _grid_samples(results, rows)
    outputs = {(record.sample_id, record.method): record.output for record in results.records}
    titles = ["masked input", *results.methods, "ground truth"]
    figure, axes = plt.subplots(
        len(samples), len(titles), figsize=(1.9 * len(titles), 1.9 * len(samples) + 0.3), squeeze=False
    )
    for row, sample in enumerate(samples):
        ground_truth = _to_uint8_hwc(sample.image)
        masked = _to_uint8_hwc(sample.image * (1 - sample.mask) + sample.mask)  # hole shown in white
        images = [masked, *(outputs[(sample.sample_id, method)] for method in results.methods), ground_truth]
        for column, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[column], fontsize=9)
            if column == 0:
                axis.set_ylabel(f"{sample.bucket} %", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(results: EvaluationResults, output_dir: str | Path, grid_rows: int = 6) -> dict[str, Path]:
    """
    Writes `report.md` (one table per bucket), `metrics.json` (summaries, per-sample metrics, settings),
    `metrics.png` (PSNR / SSIM bars per method and bucket) and `qualitative.png` (rows: up to `grid_rows` samples;
    columns: masked input, each method, ground truth).

    Returns:
        `dict[str, Path]`: `"report"`, `"metrics"`, `"plot"`, `"grid"` -> written files.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": output_dir / "report.md",
        "metrics": output_dir / "metrics.json",
        "plot": output_dir / "metrics.png",
        "grid": output_dir / "qualitative.png",
    }
    paths["report"].write_text(_report_markdown(results), encoding="utf-8")
    per_sample = [
        {
            "method": record.method,
            "sample_id": record.sample_id,
            "bucket": record.bucket,
            "psnr": record.psnr,
            "ssim": record.ssim,
            "seconds": record.seconds,
            "nfe": record.nfe,
            "cached": record.cached,
        }
        for record in results.records
    ]
    payload = {
        "config": results.config,
        "fid_status": results.fid_status,
        "lpips": LPIPS_STATUS,
        "unavailable": results.unavailable,
        "wall_seconds": results.wall_seconds,
        "metrics": results.metrics,
        "per_sample": per_sample,
    }
    paths["metrics"].write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    _plot_bars(results, paths["plot"])
    _plot_grid(results, paths["grid"], grid_rows)
    return paths
