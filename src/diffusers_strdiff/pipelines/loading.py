# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Loading a pipeline for inference: the one place that picks the checkpoint (a folder or a Hub id, default the bundled
one) and the sampler. The CLI, the app, the evaluation harness, the examples and the benchmarks all load through it.
"""

import os
from pathlib import Path

import torch

from ..schedulers import SAMPLER_PRESETS, MeanRevertingSDEScheduler
from .pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline

#: The pipeline folder installed with the package (trained on the offline photo set; see its README.md).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "strdiffusion-photos-64"


def use_sampler(pipeline: StrDiffusionInpaintPipeline, sampler: str = "released") -> StrDiffusionInpaintPipeline:
    """
    Gives `pipeline` a scheduler with the checkpoint's SDE and the reverse-step rule of `sampler` (a key of
    `SAMPLER_PRESETS`: `"released"`, `"posterior"`, `"posterior_ode"`); returns the pipeline.
    """
    if sampler not in SAMPLER_PRESETS:
        raise ValueError(f"`sampler` must be one of {sorted(SAMPLER_PRESETS)}, got {sampler!r}.")
    pipeline.scheduler = MeanRevertingSDEScheduler.from_config(pipeline.scheduler.config, **SAMPLER_PRESETS[sampler])
    return pipeline


def load_pipeline(
    checkpoint: str | os.PathLike | None = None,
    sampler: str = "released",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    progress_bar: bool = True,
) -> StrDiffusionInpaintPipeline:
    """
    Loads a pipeline folder or Hub id (`None`: the bundled checkpoint) with `from_pretrained`, selects the sampler
    (see [`use_sampler`]) and moves it to `device`. `dtype` loads the weights in that dtype; `progress_bar=False`
    disables the denoising progress bar. Raises `FileNotFoundError` for a file-like path that does not exist.
    """
    location = str(DEFAULT_CHECKPOINT if checkpoint is None else checkpoint)
    if checkpoint is not None and not Path(location).exists() and Path(location).suffix:
        raise FileNotFoundError(f"checkpoint not found: {location}")
    if sampler not in SAMPLER_PRESETS:
        raise ValueError(f"`sampler` must be one of {sorted(SAMPLER_PRESETS)}, got {sampler!r}.")
    options = {} if dtype is None else {"dtype": dtype}
    pipeline = use_sampler(StrDiffusionInpaintPipeline.from_pretrained(location, **options), sampler)
    pipeline.set_progress_bar_config(disable=not progress_bar)
    return pipeline.to(device)
