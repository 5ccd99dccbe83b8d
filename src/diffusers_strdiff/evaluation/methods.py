# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The inpainting methods of the evaluation (classical baselines and StrDiffusion pipelines) and `run_method`."""

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import skimage
import torch
from skimage.restoration import inpaint_biharmonic

from ..callbacks import DiscriminatorGatedResampling
from ..coarse_fill import PATCHMATCH_PATCH_RADIUS, TELEA_RADIUS
from ..pipelines.loading import load_pipeline
from ..pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline
from ..schedulers.scheduling_mean_reverting_sde import SAMPLER_PRESETS

CLASSICAL_METHODS: tuple[str, ...] = ("telea", "navier_stokes", "biharmonic", "patchmatch")
STRDIFFUSION_METHODS: tuple[str, ...] = ("strdiffusion", "strdiffusion_no_resampling", "no_structure")
METHOD_NAMES: tuple[str, ...] = CLASSICAL_METHODS + STRDIFFUSION_METHODS
"""Every method [`build_methods`] knows, in report order."""
OPENCV_INPAINT_RADIUS = TELEA_RADIUS
"""Neighbourhood radius (px) of the OpenCV baselines: the Telea mean fill's."""
PATCHMATCH_PATCH_SIZE = PATCHMATCH_PATCH_RADIUS
"""PatchMatch patch radius: patches of 7 x 7 px (the `pypatchmatch` examples' setting), as the PatchMatch mean fill."""
_SAMPLER_SOURCES: tuple[str, ...] = (
    "pipelines",
    "models",
    "schedulers",
    "callbacks.py",
    "structure.py",
    "coarse_fill.py",
)
"""Package sources whose content is part of a pipeline method's cache key."""


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
    root = Path(__file__).resolve().parents[1]  # the package folder
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
            self._pipeline = load_pipeline(self.pipeline_dir, self.sampler, self.device, progress_bar=False)
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
