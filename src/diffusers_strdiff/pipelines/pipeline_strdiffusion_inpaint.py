# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""StrDiffusion inpainting pipeline: structure-guided texture denoising with the mean-reverting SDE."""

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor

from ..coarse_fill import MEAN_FILLS, fill_hole
from ..image_io import convert_image
from ..models import StrDiffusionDiscriminator, StrDiffusionUNet2DModel
from ..schedulers import MeanRevertingSDEScheduler, MeanRevertingSDESchedulerOutput
from ..structure import INFERENCE_CANNY_SIGMA, edge_map, grayscale_map

logger = logging.get_logger(__name__)

ImageInput = (
    PIL.Image.Image | np.ndarray | torch.Tensor | list[PIL.Image.Image] | list[np.ndarray] | list[torch.Tensor]
)
NoiseSampler = Callable[
    [tuple[int, ...], torch.Generator | list[torch.Generator] | None, torch.device, torch.dtype], torch.Tensor
]


def _height_width(item: PIL.Image.Image | np.ndarray | torch.Tensor) -> tuple[int, int]:
    """The (height, width) of one input item: PIL, numpy `(…, H, W, C)` / `(H, W)` or torch `(…, C, H, W)` / `(H, W)`."""
    if isinstance(item, PIL.Image.Image):
        return item.height, item.width
    if isinstance(item, np.ndarray) and item.ndim >= 3:
        return tuple(item.shape[-3:-1])
    return tuple(item.shape[-2:])


CUSTOM_PIPELINE_MODULE = "pipeline_strdiffusion"
_CUSTOM_PIPELINE_SOURCE = '''"""Lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` find the installed class."""

from diffusers_strdiff import StrDiffusionInpaintPipeline

__all__ = ["StrDiffusionInpaintPipeline"]
'''


@dataclass
class StrDiffusionInpaintPipelineOutput(BaseOutput):
    """
    Output of [`StrDiffusionInpaintPipeline`].

    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`):
            The inpainted images in [0, 1] (uint8 for PIL), with the input's size; the known region equals the input.
        structures (`list[PIL.Image.Image]`, `np.ndarray`, `torch.Tensor` or `None`):
            The grayscale structure the structure network predicted for the hole (its x_0 estimate at the last
            structure step), composited with the grayscale of the known region; 1 channel, [0, 1]. `None` for a
            pipeline without structure network.
        nfe (`dict[str, int]`):
            Network evaluations of the call per network (`"structure"`, `"texture"`, `"discriminator"`) and `"total"`.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    structures: list[PIL.Image.Image] | np.ndarray | torch.Tensor | None
    nfe: dict[str, int] = field(default_factory=dict)


class StrDiffusionInpaintPipeline(DiffusionPipeline):
    r"""
    Image inpainting with StrDiffusion (Liu et al., CVPR 2024, "Structure Matters").

    Two mean-reverting SDEs run side by side: a 1-channel *structure* process that goes from the grayscale image to
    the masked Canny edge map, and an RGB *texture* process from the image to the masked image. For
    `t >= structure_fraction * T` (the early stage) the structure network denoises the structure state, whose known
    region is re-anchored at every step, and the texture network is guided by it through SPADE; afterwards (the late
    stage) the texture network is guided by the channel mean of its own state. Without a callback this is the plain
    structure-guided sampler; with [`~diffusers_strdiff.DiscriminatorGatedResampling`] as `callback_on_step_end` it is
    the full StrDiffusion sampler with the discriminator-gated adaptive resampling of Eq.17.

    Both processes share one [`MeanRevertingSDEScheduler`]: the released code builds them from the same configuration
    (same theta schedule, lambda, T and eps, divergences #34), only their mean `mu` differs, and `mu` is an argument of
    every scheduler call. Both networks must therefore have been trained with the scheduler's T.

    Args:
        structure_unet ([`StrDiffusionUNet2DModel`] or `None`): the unguided 1-channel structure network; `None`
            together with a texture network without guidance (`guidance_channels=0`) gives plain IR-SDE inpainting,
            the paper's no-structure ablation.
        texture_unet ([`StrDiffusionUNet2DModel`]): the SPADE-guided 3-channel texture network.
        scheduler ([`MeanRevertingSDEScheduler`]): the SDE shared by both processes.
        discriminator ([`StrDiffusionDiscriminator`], *optional*): needed only by the resampling callback.
        mean_fill (`str`, defaults to `"zeros"`): what the texture SDE's mean holds in the hole: `"zeros"` (released)
            or a coarse classical fill (`"telea"`, `"biharmonic"`, `"pyramid"`; see
            [`~diffusers_strdiff.coarse_fill.fill_hole`]). It must be what the texture network was trained with; it is
            saved in `model_index.json`, so `from_pretrained` restores it.
        default_num_inference_steps (`int`, *optional*): the number of reverse steps a call uses when it passes no
            `num_inference_steps` and the scheduler is a posterior (few-step) sampler; saved in `model_index.json`
            (the bundled checkpoint stores its recommended setting there). `None`, or the Euler-Maruyama sampler:
            every step of the scheduler's T.
    """

    model_cpu_offload_seq = "structure_unet->texture_unet->discriminator"
    _optional_components = ["structure_unet", "discriminator"]
    _callback_tensor_inputs = [
        "latents",
        "prev_latents",
        "structure_latents",
        "structure_anchor",
        "texture_mu",
        "structure_mu",
        "known_mask",
    ]

    def __init__(
        self,
        structure_unet: StrDiffusionUNet2DModel | None,
        texture_unet: StrDiffusionUNet2DModel,
        scheduler: MeanRevertingSDEScheduler,
        discriminator: StrDiffusionDiscriminator | None = None,
        mean_fill: str = "zeros",
        default_num_inference_steps: int | None = None,
    ) -> None:
        super().__init__()
        if mean_fill not in MEAN_FILLS:
            raise ValueError(f"`mean_fill` must be one of {MEAN_FILLS}, got {mean_fill!r}.")
        guided = texture_unet.config.guidance_channels > 0
        if guided and structure_unet is None:
            raise ValueError(
                "`structure_unet` is required by a structure-guided `texture_unet` (guidance_channels > 0)."
            )
        if not guided and structure_unet is not None:
            raise ValueError("`texture_unet` takes no guidance (guidance_channels=0): pass `structure_unet=None`.")
        self.register_modules(
            structure_unet=structure_unet, texture_unet=texture_unet, scheduler=scheduler, discriminator=discriminator
        )
        self.register_to_config(mean_fill=mean_fill, default_num_inference_steps=default_num_inference_steps)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=False, do_convert_rgb=True)
        self.mask_processor = VaeImageProcessor(
            do_resize=False, do_normalize=False, do_binarize=True, do_convert_grayscale=True
        )
        self._nfe: Counter[str] = Counter()
        self._noise_sampler: NoiseSampler | None = None
        self._generator: torch.Generator | list[torch.Generator] | None = None
        self._known_mask: torch.Tensor | None = None
        self._progress_postfix: dict[str, Any] = {}
        self._structure_fraction = 0.4

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """
        Saves the pipeline like [`~diffusers.DiffusionPipeline.save_pretrained`] (safetensors by default), plus a tiny
        `pipeline_strdiffusion.py` that imports this installed class, so that the generic
        `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` finds it (as does a pushed Hub repo).
        """
        super().save_pretrained(save_directory, **kwargs)
        with open(os.path.join(save_directory, f"{CUSTOM_PIPELINE_MODULE}.py"), "w", encoding="utf-8") as file:
            file.write(_CUSTOM_PIPELINE_SOURCE)
        index_path = os.path.join(save_directory, "model_index.json")
        with open(index_path, encoding="utf-8") as file:
            index = json.load(file)
        index["_class_name"] = [CUSTOM_PIPELINE_MODULE, self.__class__.__name__]
        with open(index_path, "w", encoding="utf-8") as file:
            json.dump(index, file, indent=2, sort_keys=True)
            file.write("\n")

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> "StrDiffusionInpaintPipeline":
        """
        Loads a pipeline folder or Hub repo written by [`save_pretrained`] (safetensors weights).

        Works like [`~diffusers.DiffusionPipeline.from_pretrained`]. A folder saved by this class carries a
        `pipeline_strdiffusion.py` stub that only imports the installed class; when the stub is exactly that,
        `trust_remote_code` is not needed here because no remote code runs. Raises `FileNotFoundError` for a local
        path that does not exist.
        """
        location = Path(pretrained_model_name_or_path)
        if location.is_dir():
            if not (location / "model_index.json").is_file():
                raise FileNotFoundError(
                    f"`pretrained_model_name_or_path` {str(location)!r} has no model_index.json: "
                    "expected a folder written by `StrDiffusionInpaintPipeline.save_pretrained`."
                )
            stub = location / f"{CUSTOM_PIPELINE_MODULE}.py"
            if stub.is_file() and stub.read_text(encoding="utf-8") == _CUSTOM_PIPELINE_SOURCE:
                kwargs.setdefault("trust_remote_code", True)
        elif location.is_absolute() or str(pretrained_model_name_or_path).startswith((".", "~")) or location.exists():
            raise FileNotFoundError(f"`pretrained_model_name_or_path` {str(location)!r} does not exist.")
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ------------------------------------------------------------------ building blocks (used by callbacks too)

    @property
    def nfe(self) -> dict[str, int]:
        """Network evaluations of the current (or last) call, per network and in total."""
        counts = {name: self._nfe[name] for name in ("structure", "texture", "discriminator")}
        return {**counts, "total": sum(counts.values())}

    @property
    def generator(self) -> torch.Generator | list[torch.Generator] | None:
        """The generator(s) of the current call, for callbacks that draw noise."""
        return self._generator

    def randn(
        self, shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator] | None, like: torch.Tensor
    ) -> torch.Tensor:
        """
        Every Gaussian draw of the sampler goes through this method, in the released order. It uses the call's
        `noise_sampler` when one was given (e.g. to replay recorded noise), otherwise `randn_tensor`.
        """
        if self._noise_sampler is not None:
            noise = self._noise_sampler(shape, generator, like.device, like.dtype)
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f"`noise_sampler` returned shape {tuple(noise.shape)}, expected {tuple(shape)}.")
            return noise.to(device=like.device, dtype=like.dtype)
        return randn_tensor(shape, generator=generator, device=like.device, dtype=like.dtype)

    def structure_anchor(
        self,
        known_gray: torch.Tensor,
        structure_mu: torch.Tensor,
        timestep: int,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """
        A sample of the structure marginal one step below `timestep`, with x_0 = the known grayscale: what the
        structure state's known region is replaced with before each structure step (released re-anchoring).
        """
        noise = self.randn(tuple(structure_mu.shape), generator, structure_mu)
        return self.scheduler.add_noise(known_gray, noise, self.scheduler.previous_timestep(timestep), structure_mu)

    def structure_step(
        self,
        sample: torch.Tensor,
        timestep: int,
        structure_mu: torch.Tensor,
        structure_anchor: torch.Tensor,
        known_mask: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
        anchor_timestep: int | None = None,
    ) -> MeanRevertingSDESchedulerOutput:
        """
        One structure denoising step: re-anchor the known region, evaluate the structure network, take one reverse
        step of the scheduler. Shapes `(B, 1, H, W)`; `known_mask` is 1 on known pixels. Returns the scheduler output
        (`prev_sample`, and the network's x_0 estimate `pred_original_sample`).

        `structure_anchor` is a sample of the known structure at `anchor_timestep` (default: the time this step lands
        on, as [`structure_anchor`] draws it). With the full schedule it is pasted as is, one step below the state's
        time, as the released sampler does. With a sub-sampled schedule (fewer steps than T) that gap is a whole jump,
        so the anchor is first moved up to `timestep` along the exact forward transition (one extra Gaussian draw):
        the network then sees its known region at the noise level of `timestep`.
        """
        scheduler = self.scheduler
        if scheduler.num_inference_steps < scheduler.config.num_train_timesteps:
            if anchor_timestep is None:
                anchor_timestep = scheduler.previous_timestep(timestep)
            noise = self.randn(tuple(structure_anchor.shape), generator, structure_anchor)
            structure_anchor = scheduler.forward_step(
                structure_anchor, anchor_timestep, structure_mu, noise, next_timestep=timestep
            )
        sample = structure_anchor * known_mask + sample * (1 - known_mask)
        noise_prediction = self.structure_unet(
            sample, timestep, structure_mu, known_mask=self._mask_input(self.structure_unet, known_mask)
        ).sample
        self._nfe["structure"] += 1
        return self._reverse_step(noise_prediction, timestep, sample, structure_mu, generator)

    def texture_step(
        self,
        sample: torch.Tensor,
        timestep: int,
        texture_mu: torch.Tensor,
        guidance: torch.Tensor | None,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> MeanRevertingSDESchedulerOutput:
        """
        One texture denoising step guided by a structure map. Shapes `(B, 3, H, W)`, guidance `(B, 1, H, W)`. A texture
        network with a mask input channel gets the known mask of the current call. Returns the scheduler output
        (`prev_sample`, `pred_original_sample`).
        """
        known_mask = self._mask_input(self.texture_unet, self._known_mask)
        noise_prediction = self.texture_unet(sample, timestep, texture_mu, guidance, known_mask=known_mask).sample
        self._nfe["texture"] += 1
        return self._reverse_step(noise_prediction, timestep, sample, texture_mu, generator)

    @staticmethod
    def _mask_input(network: StrDiffusionUNet2DModel, known_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The known mask for networks that take it as an input channel, `None` for the others."""
        return known_mask if network.config.known_mask_channel else None

    def _reverse_step(
        self,
        noise_prediction: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        mu: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> MeanRevertingSDESchedulerOutput:
        # The released step subtracts its draw (x - drift - std z); passing -z keeps a replayed stream exact.
        noise = self.randn(tuple(sample.shape), generator, sample)
        return self.scheduler.step(noise_prediction, timestep, sample, mu, variance_noise=-noise)

    def renoise_structure(
        self,
        sample: torch.Tensor,
        timestep: int,
        next_timestep: int,
        structure_mu: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """Moves the structure state from `timestep` up to `next_timestep` along the forward SDE (Eq.17's re-noising)."""
        noise = self.randn(tuple(sample.shape), generator, sample)
        return self.scheduler.forward_step(sample, timestep, structure_mu, noise, next_timestep=next_timestep)

    def discriminator_score(self, texture: torch.Tensor, timestep: int, structure: torch.Tensor) -> torch.Tensor:
        """
        Discriminator logits `D(t, texture, structure)` of shape `(B,)`, each item scored as a batch of one (as the
        released sampler does; the minibatch-stddev feature would otherwise mix the items). Pass the texture already
        multiplied by the known mask, as the released sampler does.
        """
        if self.discriminator is None:
            raise ValueError("This pipeline has no `discriminator`; load or pass one to use discriminator scores.")
        timesteps = torch.full((1,), timestep, dtype=torch.long, device=texture.device)
        scores = [
            self.discriminator(texture[i : i + 1], timesteps, structure[i : i + 1]) for i in range(texture.shape[0])
        ]
        self._nfe["discriminator"] += len(scores)
        return torch.cat(scores)

    def uses_structure(self, timestep: int, structure_fraction: float | None = None) -> bool:
        """Whether `timestep` belongs to the early, structure-guided stage (t >= floor(fraction * T))."""
        if self.structure_unet is None:
            return False
        fraction = self._structure_fraction if structure_fraction is None else structure_fraction
        return timestep >= int(fraction * self.scheduler.config.num_train_timesteps)

    def set_progress_postfix(self, **postfix: Any) -> None:
        """Lets callbacks show information (e.g. resampling decisions) in the denoising progress bar's postfix."""
        self._progress_postfix.update(postfix)

    # ------------------------------------------------------------------ inputs

    def _to_tensor(self, images: ImageInput, name: str, channels: int) -> torch.Tensor:
        items = images if isinstance(images, list) else [images]
        if not items:
            raise ValueError(f"`{name}` is an empty list.")
        converted = []
        for item in items:
            if isinstance(item, PIL.Image.Image):
                # The conversion of the CLI and the app: EXIF orientation, 16-bit scaling, transparency composited.
                converted.append(convert_image(item, "RGB" if channels == 3 else "L", f"`{name}`"))
                continue
            if not isinstance(item, np.ndarray | torch.Tensor):
                raise ValueError(
                    f"`{name}` must be a PIL image, a numpy array, a torch tensor or a list of them, got {type(item).__name__}."
                )
            if item.dtype in (np.uint8, torch.uint8):
                item = item / 255.0 if isinstance(item, torch.Tensor) else item.astype(np.float32) / 255.0
            elif isinstance(item, np.ndarray) and not np.issubdtype(item.dtype, np.floating):
                raise ValueError(f"`{name}` must be float in [0, 1] or uint8, got dtype {item.dtype}.")
            elif isinstance(item, torch.Tensor) and not item.is_floating_point():
                raise ValueError(f"`{name}` must be float in [0, 1] or uint8, got dtype {item.dtype}.")
            if not 2 <= item.ndim <= 4:
                raise ValueError(f"`{name}` must be 2-, 3- or 4-dimensional, got shape {tuple(item.shape)}.")
            if isinstance(item, torch.Tensor) and item.ndim >= 3 and item.shape[-3] != channels:
                raise ValueError(
                    f"`{name}` must have {channels} channel(s) in (…, C, H, W) layout, got shape {tuple(item.shape)}."
                )
            if isinstance(item, np.ndarray) and item.ndim >= 3 and item.shape[-1] != channels:
                raise ValueError(
                    f"`{name}` must have {channels} channel(s) in (…, H, W, C) layout, got shape {tuple(item.shape)}."
                )
            if item.ndim == 2 and channels != 1:
                raise ValueError(
                    f"`{name}` must have {channels} channels, got a 2-D array of shape {tuple(item.shape)}."
                )
            # Non-finite values are checked where they matter: in the mask and the known region (`prepare_inputs`).
            finite = item[torch.isfinite(item)] if isinstance(item, torch.Tensor) else item[np.isfinite(item)]
            value_min, value_max = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
            if value_min < 0 or value_max > 1:
                raise ValueError(
                    f"`{name}` values must be in [0, 1] (float) or [0, 255] (uint8), got [{value_min:.4g}, {value_max:.4g}]."
                )
            converted.append(item.float() if isinstance(item, torch.Tensor) else item.astype(np.float32))
        if isinstance(images, list):
            kinds = {
                next(kind for kind in (PIL.Image.Image, np.ndarray, torch.Tensor) if isinstance(item, kind))
                for item in converted
            }
            if len(kinds) > 1:
                raise ValueError(f"`{name}` mixes input types in one list; pass all PIL images, arrays or tensors.")
            sizes = [_height_width(item) for item in converted]
            if len(set(sizes)) > 1:
                listed = ", ".join(f"{width}x{height}" for height, width in sizes)
                raise ValueError(
                    f"`{name}` is a list of images of different sizes (width x height: {listed}); a batch needs one size."
                )
        processor = self.image_processor if channels == 3 else self.mask_processor
        tensor = processor.preprocess(converted if isinstance(images, list) else converted[0])
        if tensor.shape[1] != channels:
            raise ValueError(f"`{name}` must have {channels} channel(s), got {tensor.shape[1]}.")
        return tensor.float()

    def prepare_inputs(self, image: ImageInput, mask_image: ImageInput) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Converts user inputs to tensors: the image `(B, 3, H, W)` in [0, 1] and the *known* mask `(B, 1, H, W)`
        (1 = known pixel, the released convention), from a diffusers-style `mask_image` (white/1 = fill, binarized at
        0.5). Non-finite values raise a `ValueError` in the mask or in the known region; under the hole they become 0.
        A list must hold one input type (PIL images, arrays or tensors) of one size.
        """
        image_tensor = self._to_tensor(image, "image", 3)
        fill_mask = self._to_tensor(mask_image, "mask_image", 1)
        if image_tensor.shape[-2:] != fill_mask.shape[-2:]:
            raise ValueError(
                f"`image` is {tuple(image_tensor.shape[-2:])} (H, W) but `mask_image` is {tuple(fill_mask.shape[-2:])}; "
                "they must have the same size."
            )
        if fill_mask.shape[0] != image_tensor.shape[0]:
            if fill_mask.shape[0] != 1:
                raise ValueError(
                    f"`image` has batch size {image_tensor.shape[0]} but `mask_image` has {fill_mask.shape[0]}; "
                    "pass one mask per image or a single mask for all."
                )
            fill_mask = fill_mask.expand(image_tensor.shape[0], -1, -1, -1)
        if not torch.isfinite(fill_mask).all():
            raise ValueError("`mask_image` holds non-finite values (NaN or infinity).")
        if not torch.isfinite(image_tensor).masked_fill(fill_mask.bool(), True).all():
            raise ValueError(
                "`image` holds non-finite values (NaN or infinity) outside the region to fill; only pixels under the "
                "mask may be non-finite (they are never read)."
            )
        image_tensor = torch.where(torch.isfinite(image_tensor), image_tensor, 0)  # only hole pixels change
        empty = (fill_mask.flatten(1).amax(dim=1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"`mask_image` has no pixel to fill (after binarization at 0.5) for batch item(s) {empty}: "
                "white (1) marks the region to inpaint."
            )
        return image_tensor, 1 - fill_mask

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        mask_image: ImageInput,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        structure_fraction: float = 0.4,
        structure_maps: str = "known_pixels",
        canny_sigma: float = INFERENCE_CANNY_SIGMA,
        structure_gray: torch.Tensor | None = None,
        structure_edges: torch.Tensor | None = None,
        noise_sampler: NoiseSampler | None = None,
        callback_on_step_end: Callable[..., dict[str, Any]] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> StrDiffusionInpaintPipelineOutput | tuple:
        r"""
        Inpaints the white region of `mask_image`.

        Args:
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them):
                RGB image(s): PIL, numpy `(H, W, 3)`/`(B, H, W, 3)` or torch `(3, H, W)`/`(B, 3, H, W)`, float in
                [0, 1] or uint8. Any H x W; the output has the same size.
            mask_image (same types, 1 channel):
                1 / white = region to fill, 0 / black = keep (the diffusers convention). Binarized at 0.5; one mask
                per image or one for the whole batch. A mask with nothing to fill raises a `ValueError`. Pixels of
                `image` under the mask are never read.
            num_inference_steps (`int`, *optional*):
                Reverse steps; `None` uses the pipeline's `default_num_inference_steps` with a posterior scheduler,
                else every step of the scheduler's T (the released sampler). Fewer steps than T need a scheduler with
                `algorithm_type="posterior"`.
            generator (`torch.Generator` or a list with one per image, *optional*):
                Makes the call reproducible; with one generator per image, a batch equals the single-image calls.
            output_type (`str`, defaults to `"pil"`):
                `"pil"`, `"np"` or `"pt"` (clamped to [0, 1]), or `"latent"`: the raw `(B, 3, H, W)` float tensor of
                the final state with the known pixels pasted back, unclamped.
            return_dict (`bool`, defaults to `True`): return a [`StrDiffusionInpaintPipelineOutput`] or a tuple.
            structure_fraction (`float`, defaults to 0.4):
                Steps with `t >= floor(structure_fraction * T)` are structure-guided (released: 0.4).
            structure_maps (`str`, defaults to `"known_pixels"`):
                How the grayscale / Canny structure maps are computed. `"known_pixels"`: only from known pixels (the
                Canny detector is masked: normalised smoothing over known pixels, no edges on the hole border).
                `"full_image"`: the released computation, Canny on the *whole* image before masking — it reads pixels
                under the hole near its border (divergences #13); for parity experiments only.
            canny_sigma (`float`, defaults to 2.0): the Canny sigma (released test value 2.0, training 3.0).
            structure_gray, structure_edges (`torch.Tensor` of shape `(B, 1, H, W)`, *optional*):
                Precomputed grayscale / edge maps (reference configuration: e.g. the released maps of a parity
                fixture). They are multiplied by the known mask before use.
            noise_sampler (`Callable`, *optional*):
                `noise_sampler(shape, generator, device, dtype) -> Tensor` replaces every Gaussian draw. Draws happen
                in the released order: the texture start noise, the structure start noise, then per early step the
                structure anchor, the structure step, the texture step (and the callback's re-noising / structure
                / texture steps), and per late step the texture step. With fewer steps than T each structure step
                first draws the noise that moves the anchor up to its time (see `structure_step`). Reverse steps
                consume a draw z as `x - drift - std * z`, forward steps as `x + drift + std * z`.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called after each step as `callback(pipeline, step_index, timestep, callback_kwargs)`; may replace
                `latents` (the new texture state) and `structure_latents` (the new structure state) in what it
                returns. [`~diffusers_strdiff.DiscriminatorGatedResampling`] gives the full StrDiffusion sampler.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*):
                Names from `_callback_tensor_inputs` passed in `callback_kwargs` (taken from the callback itself for a
                `PipelineCallback`).

        Returns:
            [`StrDiffusionInpaintPipelineOutput`] or `(images, structures)`.
        """
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}.")
        if structure_maps not in ("known_pixels", "full_image"):
            raise ValueError(f"`structure_maps` must be 'known_pixels' or 'full_image', got {structure_maps!r}.")
        if not 0.0 <= structure_fraction <= 1.0:
            raise ValueError(f"`structure_fraction` must be in [0, 1], got {structure_fraction}.")
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        unknown = [name for name in callback_on_step_end_tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` must be in {self._callback_tensor_inputs}, got {unknown}."
            )

        image, known_mask = self.prepare_inputs(image, mask_image)
        batch_size, _, height, width = image.shape
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"`generator` is a list of {len(generator)} generators for a batch of {batch_size}.")
        device, dtype = self._execution_device, self.texture_unet.dtype
        image, known_mask = image.to(device), known_mask.to(device)
        # Nothing under the hole may influence the result: blank it before any map is computed.
        known_image = torch.where(known_mask.bool(), image, 0)
        gray, edges = self._structure_maps(
            image if structure_maps == "full_image" else known_image,
            known_mask,
            structure_maps,
            canny_sigma,
            structure_gray,
            structure_edges,
        )
        known_image, known_mask = known_image.to(dtype), known_mask.to(dtype)
        known_gray, structure_mu = (gray * known_mask).to(dtype), (edges * known_mask).to(dtype)
        texture_mu = fill_hole(known_image, known_mask, self.config.mean_fill)

        self._nfe = Counter()
        self._noise_sampler = noise_sampler
        self._generator = generator
        self._known_mask = known_mask
        self._structure_fraction = structure_fraction
        self._progress_postfix = {}
        if num_inference_steps is None and self.scheduler.config.algorithm_type == "posterior":
            num_inference_steps = self.config.default_num_inference_steps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps.tolist()

        # x_T = mu + lambda z for both processes (the released start state).
        latents = self.scheduler.initial_sample(texture_mu, self.randn(tuple(texture_mu.shape), generator, texture_mu))
        structure_latents = None
        if self.structure_unet is not None:
            structure_latents = self.scheduler.initial_sample(
                structure_mu, self.randn(tuple(structure_mu.shape), generator, structure_mu)
            )
        structure_prediction = known_gray
        structure_anchor = known_gray

        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for step_index, timestep in enumerate(timesteps):
                prev_latents = latents
                if self.uses_structure(timestep):
                    structure_anchor = self.structure_anchor(known_gray, structure_mu, timestep, generator)
                    structure_output = self.structure_step(
                        structure_latents, timestep, structure_mu, structure_anchor, known_mask, generator
                    )
                    structure_latents = structure_output.prev_sample
                    structure_prediction = structure_output.pred_original_sample
                    latents = self.texture_step(
                        latents, timestep, texture_mu, structure_latents, generator
                    ).prev_sample
                else:
                    # Late stage: the texture is guided by its own channel mean (released, divergences #14).
                    guidance = latents.mean(dim=1, keepdim=True) if self.structure_unet is not None else None
                    latents = self.texture_step(latents, timestep, texture_mu, guidance, generator).prev_sample

                if callback_on_step_end is not None:
                    local_values = locals()
                    callback_kwargs = {name: local_values[name] for name in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, step_index, timestep, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                    structure_latents = callback_outputs.pop("structure_latents", structure_latents)
                if self.uses_structure(timestep):
                    structure_latents = structure_anchor * known_mask + structure_latents * (1 - known_mask)
                progress_bar.set_postfix(self._progress_postfix, refresh=False)
                progress_bar.update()

        # Paste back the known pixels (exact: the mask is binary).
        images = image * known_mask.float() + latents.float() * (1 - known_mask.float())
        structures = None
        if self.structure_unet is not None:
            structures = gray * known_mask.float() + structure_prediction.float() * (1 - known_mask.float())
        nfe = self.nfe
        self._noise_sampler = None
        self._generator = None
        self._known_mask = None
        self.maybe_free_model_hooks()

        if output_type != "latent":
            images = self.image_processor.postprocess(images.clamp(0, 1), output_type=output_type)
            if structures is not None:
                structures = self.mask_processor.postprocess(structures.clamp(0, 1), output_type=output_type)
        if not return_dict:
            return images, structures
        return StrDiffusionInpaintPipelineOutput(images=images, structures=structures, nfe=nfe)

    def _structure_maps(
        self,
        image: torch.Tensor,
        known_mask: torch.Tensor,
        structure_maps: str,
        canny_sigma: float,
        structure_gray: torch.Tensor | None,
        structure_edges: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        expected = (image.shape[0], 1, *image.shape[-2:])
        for name, value in (("structure_gray", structure_gray), ("structure_edges", structure_edges)):
            if value is not None and tuple(value.shape) != expected:
                raise ValueError(f"`{name}` must have shape {expected}, got {tuple(value.shape)}.")
        gray = grayscale_map(image) if structure_gray is None else structure_gray
        if structure_edges is None:
            edge_mask = known_mask if structure_maps == "known_pixels" else None
            edges = edge_map(image, sigma=canny_sigma, known_mask=edge_mask)
        else:
            edges = structure_edges
        return gray.to(image.device, torch.float32), edges.to(image.device, torch.float32)
