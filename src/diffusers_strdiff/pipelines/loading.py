# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Loading a pipeline for inference: the one place that picks the checkpoint (a folder or a Hub id, default the bundled
one) and the sampler. The CLI, the app, the evaluation harness, the examples and the benchmarks all load through it.
"""

import ctypes
import os
import sys
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


def inference_threads(requested: int | None = None) -> int:
    """
    The number of CPU threads for inference: `requested`, else the `STRDIFF_THREADS` environment variable, else the
    cores that other processes leave free: `os.cpu_count()` minus the 1-minute load average (rounded), at least 1.

    On a shared machine this matters more than any kernel: OpenMP threads wait for each other at every operator, so
    one thread more than the free cores makes each call several times slower (measured 10x with 2 threads and one
    other busy process on a 2-core CPU), while one thread fewer costs at most the parallel speed-up.

    Raises:
        ValueError: when `requested` or `STRDIFF_THREADS` is not a positive integer.
    """
    if requested is None and os.environ.get("STRDIFF_THREADS"):
        value = os.environ["STRDIFF_THREADS"]
        if not value.isdigit():
            raise ValueError(f"STRDIFF_THREADS must be a positive integer, got {value!r}.")
        requested = int(value)
    if requested is not None:
        if requested < 1:
            raise ValueError(f"the number of threads must be a positive integer, got {requested}.")
        return requested
    cores = os.cpu_count() or 1
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(cores, cores - busy))


def reuse_freed_memory() -> bool:
    """
    Makes glibc's allocator keep the memory that torch frees and hand it out again, instead of returning every large
    block (above 32 MiB at most) to the operating system at once: otherwise each call of a network on a large image
    maps fresh pages for every big activation (a 32-channel 512 x 512 float32 tensor is 32 MiB) and the kernel
    faults and zeroes them one 4 KiB page at a time. Measured with the bundled texture net at 512 px on a 2-core CPU:
    3.1 s per call instead of 5.4-6.1 s, for 0.3-0.5 GB more peak memory (`docs/speed.md`). It changes no result.

    Process-wide and not undone; the CLI and the app call it. Returns whether it applied (Linux with glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    # Serve every block from the heap (no per-allocation mmap), and never trim the heap's free top back to the OS.
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def load_pipeline(
    checkpoint: str | os.PathLike | None = None,
    sampler: str = "released",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    progress_bar: bool = True,
    prepare_for_inference: bool = True,
) -> StrDiffusionInpaintPipeline:
    """
    Loads a pipeline folder or Hub id (`None`: the bundled checkpoint) with `from_pretrained`, selects the sampler
    (see [`use_sampler`]) and moves it to `device`. `dtype` loads the weights in that dtype; `progress_bar=False`
    disables the denoising progress bar. With `prepare_for_inference` (default), every network gets the
    inference-only speed-ups of `model.prepare_for_inference()` (same weights and config; training mode and calls
    with gradients fall back to the plain layers). Raises `FileNotFoundError` for a file-like path that does not exist.
    """
    location = str(DEFAULT_CHECKPOINT if checkpoint is None else checkpoint)
    if checkpoint is not None and not Path(location).exists() and Path(location).suffix:
        raise FileNotFoundError(f"checkpoint not found: {location}")
    if sampler not in SAMPLER_PRESETS:
        raise ValueError(f"`sampler` must be one of {sorted(SAMPLER_PRESETS)}, got {sampler!r}.")
    options = {} if dtype is None else {"dtype": dtype}
    pipeline = use_sampler(StrDiffusionInpaintPipeline.from_pretrained(location, **options), sampler)
    pipeline.set_progress_bar_config(disable=not progress_bar)
    pipeline = pipeline.to(device)
    if prepare_for_inference:
        for network in (pipeline.structure_unet, pipeline.texture_unet, pipeline.discriminator):
            if network is not None:
                network.prepare_for_inference()
    return pipeline
