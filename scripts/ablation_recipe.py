#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Equal-budget ablation of the texture-net recipe on a CPU: prediction type x known-mask channel x coarse mean.

Every variant trains the unguided texture network (nf 16, depth 3, 64 px, batch 8, Adam 2e-4, EMA 0.999, multi-scale
crops, seed 0) for the same number of optimisation steps, `--jobs` runs side by side with one thread each; then each
is evaluated as a pipeline without structure network (the posterior sampler, `--num_inference_steps` steps, eta 1,
no resampling) next to the classical baselines on the held-out photos, one mask per hole-ratio bucket. Writes
`<output_dir>/report.md` (the table, the training minutes and the final losses), `metrics.json` and `metrics.png`.

Safe to rerun: every run resumes from its last checkpoint, finished runs and cached method outputs are reused.

    python scripts/ablation_recipe.py --train_data_dir data/photos_256/train --eval_data_dir data/photos/eval \
        --max_train_steps 1800 --output_dir docs/ablation --runs_dir runs/ablation
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diffusers_strdiff.evaluation import (
    build_eval_set,
    classical_methods,
    evaluate,
    format_markdown_tables,
    strdiffusion_method,
    write_report,
)

REPOSITORY = Path(__file__).resolve().parents[1]

#: name -> (what it tests, the training arguments that differ from the common ones).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "eps_zeros": ("released: noise prediction, black hole in mu", ["--prediction_type", "epsilon"]),
    "x0_zeros": ("x0 prediction, black hole in mu", ["--prediction_type", "sample"]),
    "x0_telea_mask": (
        "x0 prediction, Telea fill in mu, mask channel",
        ["--prediction_type", "sample", "--mean_fill", "telea", "--known_mask_channel"],
    ),
    "residual_telea_mask": (
        "x0 - mu prediction, Telea fill in mu, mask channel",
        ["--prediction_type", "residual", "--mean_fill", "telea", "--known_mask_channel"],
    ),
    "residual_biharmonic_mask": (
        "x0 - mu prediction, biharmonic fill in mu, mask channel",
        ["--prediction_type", "residual", "--mean_fill", "biharmonic", "--known_mask_channel"],
    ),
    "residual_pyramid_mask": (
        "x0 - mu prediction, push-pull fill in mu, mask channel",
        ["--prediction_type", "residual", "--mean_fill", "pyramid", "--known_mask_channel"],
    ),
    "residual_telea": (
        "x0 - mu prediction, Telea fill in mu, no mask channel",
        ["--prediction_type", "residual", "--mean_fill", "telea"],
    ),
}

COMMON_ARGUMENTS = [
    "--resolution", "64", "--random_flip", "--train_batch_size", "8", "--learning_rate", "2e-4",
    "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "100", "--use_ema", "--ema_decay", "0.999",
    "--num_train_timesteps", "100", "--base_channels", "16", "--depth", "3", "--no_structure_guidance",
    "--checkpointing_steps", "200", "--checkpoints_total_limit", "1", "--resume_from_checkpoint", "latest",
    "--report_to", "none", "--seed", "0",
]  # fmt: skip


def train_variant(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Trains (or resumes) one variant; returns its wall minutes of this invocation and its final loss."""
    run_dir = args.runs_dir / name
    pipeline_dir = run_dir / "pipeline"
    if not (pipeline_dir / "model_index.json").is_file():
        command = [
            sys.executable, str(REPOSITORY / "training/train_texture.py"), *COMMON_ARGUMENTS, *VARIANTS[name][1],
            "--train_data_dir", str(args.train_data_dir), "--max_train_steps", str(args.max_train_steps),
            "--output_dir", str(run_dir),
        ]  # fmt: skip
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        run_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(run_dir / "train.log", "a") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=environment)
        minutes = (time.perf_counter() - start) / 60
        (run_dir / "minutes.json").write_text(json.dumps({"minutes": minutes}) + "\n")
        subprocess.run(
            [sys.executable, str(REPOSITORY / "training/assemble_pipeline.py"), "--texture", str(run_dir),
             "--output_dir", str(pipeline_dir)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    card = (run_dir / "README.md").read_text()
    final_loss = next(
        (float(line.split("|")[2]) for line in card.splitlines() if line.startswith("| final training loss")), None
    )
    minutes = json.loads((run_dir / "minutes.json").read_text())["minutes"]
    return {"minutes": minutes, "final_loss": final_loss}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_data_dir", type=Path, required=True)
    parser.add_argument("--eval_data_dir", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--max_train_steps", type=int, default=1800, help="The equal budget, in optimisation steps.")
    parser.add_argument("--jobs", type=int, default=2, help="Runs trained side by side (one thread each).")
    parser.add_argument("--num_eval_images", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num_inference_steps", type=int, default=10)
    parser.add_argument("--runs_dir", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--output_dir", type=Path, default=Path("docs/ablation"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        training = dict(
            zip(args.variants, pool.map(lambda name: train_variant(name, args), args.variants), strict=True)
        )

    samples = build_eval_set(args.eval_data_dir, args.resolution, max_images=args.num_eval_images)
    methods = classical_methods() + [
        strdiffusion_method(
            name,
            args.runs_dir / name / "pipeline",
            resampling=False,
            num_inference_steps=args.num_inference_steps,
            sampler="posterior",
        )
        for name in args.variants
    ]
    results = evaluate(samples, methods, cache_dir=args.runs_dir / "eval_cache", compute_fid=False)
    write_report(results, args.output_dir)
    rows = "\n".join(
        f"| `{name}` | {VARIANTS[name][0]} | `{' '.join(VARIANTS[name][1])}` | {info['minutes']:.1f} | "
        f"{info['final_loss']:.4f} |"
        for name, info in training.items()
    )
    report = args.output_dir / "report.md"
    report.write_text(
        f"# Texture recipe ablation (equal budget: {args.max_train_steps} steps x batch 8 per variant)\n\n"
        "Unguided texture net, nf 16, depth 3, 64 px, Adam 2e-4, EMA 0.999, multi-scale crops, seed 0; "
        f"{args.jobs} runs side by side on the 2-core CPU, one thread each. Evaluation: posterior sampler, "
        f"{args.num_inference_steps} steps, eta 1, no resampling, {args.num_eval_images} held-out photos x one mask "
        "per bucket, 64 px.\n\n"
        "| variant | what it tests | training arguments | training minutes | final loss (EMA of the last 100 "
        f"steps) |\n|---|---|---|---:|---:|\n{rows}\n\n"
        "(The losses of `eps_zeros` and the x0 variants measure different things and are not comparable.)\n\n"
        f"{format_markdown_tables(results)}\n\n![metrics](metrics.png)\n"
    )
    print(report.read_text())


if __name__ == "__main__":
    main()
