# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""StrDiffusion inpainting pipeline: structure-guided texture denoising with the mean-reverting SDE."""

import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from ..coarse_fill import MEAN_FILLS, fill_hole
from ..models import StrDiffusionDiscriminator, StrDiffusionUNet2DModel
from ..schedulers import MeanRevertingSDEScheduler
from ..structure import (
    INFERENCE_CANNY_SIGMA,
    STRUCTURE_FRACTION,
    STRUCTURE_MEANS,
    TEXTURE_GUIDANCES,
    edge_map,
    grayscale_map,
    structure_mean,
)
from .hub_utils import CUSTOM_PIPELINE_MODULE, CUSTOM_PIPELINE_SOURCE, diffusers_dtype_argument, download_options
from .image_inputs import ImageInput, validate_image_items
from .pipeline_output import SamplerConditions, StrDiffusionInpaintPipelineOutput
from .sampler_steps import NoiseSampler, StrDiffusionSamplerMixin


class StrDiffusionInpaintPipeline(DiffusionPipeline, StrDiffusionSamplerMixin):
    r"""
    Image inpainting with StrDiffusion (Liu et al., CVPR 2024, "Structure Matters").

    Two mean-reverting SDEs run side by side: a 1-channel *structure* process that goes from the grayscale image to
    the masked Canny edge map (`structure_mean`), and an RGB *texture* process from the image to the masked image
    (`mean_fill`). For `t >= structure_fraction * T` (the early stage) the structure network denoises the structure
    state, whose known region is re-anchored at every step, and the texture network is guided by it through SPADE;
    afterwards (the late stage) the texture network is guided by the channel mean of its own state (released;
    `texture_guidance` selects what guides it). Without a callback this is the plain
    structure-guided sampler; with [`~diffusers_strdiff.DiscriminatorGatedResampling`] as `callback_on_step_end` it is
    the full StrDiffusion sampler with the discriminator-gated adaptive resampling of Eq.17.

    Both processes share one [`MeanRevertingSDEScheduler`]: the released code builds them from the same configuration
    (same theta schedule, lambda, T and eps; see docs/released_implementation.md, "Scheduler: one SDE shared by both
    processes"), only their mean `mu` differs, and `mu` is an argument of
    every scheduler call. Both networks must therefore have been trained with the scheduler's T.

    Args:
        structure_unet ([`StrDiffusionUNet2DModel`] or `None`): the unguided 1-channel structure network; `None`
            together with a texture network without guidance (`guidance_channels=0`) gives plain IR-SDE inpainting,
            the paper's no-structure ablation.
        texture_unet ([`StrDiffusionUNet2DModel`]): the SPADE-guided 3-channel texture network.
        scheduler ([`MeanRevertingSDEScheduler`]): the SDE shared by both processes.
        discriminator ([`StrDiffusionDiscriminator`], *optional*): needed only by the resampling callback.
        mean_fill (`str`, defaults to `"zeros"`): what the texture SDE's mean holds in the hole: `"zeros"` (released)
            or a coarse classical fill (`"telea"`, `"biharmonic"`, `"pyramid"`, `"patchmatch"`, `"patchmatch_blend"`;
            see [`~diffusers_strdiff.coarse_fill.fill_hole`]). It must be what the texture network was trained with; it
            is saved in `model_index.json`, so `from_pretrained` restores it.
        structure_mean (`str`, defaults to `"edges"`): what the structure SDE reverts to: `"edges"` (released: the
            Canny edges of the known region) or `"filled_gray"` (the known grayscale, hole filled by
            `structure_fill`); see [`~diffusers_strdiff.structure.STRUCTURE_MEANS`]. It must be what the structure
            network was trained with.
        texture_guidance (`str`, defaults to `"state"`): what guides the texture network: `"state"` (released: the
            structure state in the early stage, the texture state's channel mean in the late stage) or `"estimate"`
            (the structure network's x_0 estimate, known grayscale pasted, held through the late stage); see
            [`~diffusers_strdiff.structure.TEXTURE_GUIDANCES`]. It must be what the texture network was trained with.
        structure_fill (`str`, *optional*): the fill of the `"filled_gray"` structure mean, one of
            [`~diffusers_strdiff.coarse_fill.MEAN_FILLS`]; `None` (the default, and every pipeline saved before the
            option) uses `mean_fill`. It must be what the structure network was trained with.
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
        structure_mean: str = "edges",
        texture_guidance: str = "state",
        structure_fill: str | None = None,
    ) -> None:
        super().__init__()
        for name, value, choices in (
            ("mean_fill", mean_fill, MEAN_FILLS),
            ("structure_fill", structure_fill or mean_fill, MEAN_FILLS),
            ("structure_mean", structure_mean, STRUCTURE_MEANS),
            ("texture_guidance", texture_guidance, TEXTURE_GUIDANCES),
        ):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
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
        self.register_to_config(
            mean_fill=mean_fill,
            default_num_inference_steps=default_num_inference_steps,
            structure_mean=structure_mean,
            texture_guidance=texture_guidance,
            structure_fill=structure_fill,
        )
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=False, do_convert_rgb=True)
        self.mask_processor = VaeImageProcessor(
            do_resize=False, do_normalize=False, do_binarize=True, do_convert_grayscale=True
        )
        self._nfe: Counter[str] = Counter()
        self._noise_sampler: NoiseSampler | None = None
        self._generator: torch.Generator | list[torch.Generator] | None = None
        self._known_mask: torch.Tensor | None = None
        self._known_gray: torch.Tensor | None = None
        self._progress_postfix: dict[str, Any] = {}
        self._structure_fraction = STRUCTURE_FRACTION
        self._num_timesteps = 0
        self._interrupt = False

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """
        Saves the pipeline like [`~diffusers.DiffusionPipeline.save_pretrained`] (safetensors by default), plus a tiny
        `pipeline_strdiffusion.py` that imports this installed class, so that the generic
        `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` finds it (as does a pushed Hub repo).
        """
        super().save_pretrained(save_directory, **kwargs)
        with open(os.path.join(save_directory, f"{CUSTOM_PIPELINE_MODULE}.py"), "w", encoding="utf-8") as file:
            file.write(CUSTOM_PIPELINE_SOURCE)
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

        Works like [`~diffusers.DiffusionPipeline.from_pretrained`], for a local folder or a Hub id (`"org/name"`,
        through the Hugging Face cache, also offline with `HF_HUB_OFFLINE=1`). A folder saved by this class carries a
        `pipeline_strdiffusion.py` stub that only imports the installed class; when the stub is exactly that (for a
        Hub id, the stub in the repo), `trust_remote_code` is not needed here because no remote code runs. Raises
        `FileNotFoundError` for a local path that does not exist.

        The weights' dtype is `dtype=` (diffusers' current name, e.g. `dtype=torch.bfloat16`); the older
        `torch_dtype=` is accepted too. Either is passed on under the name the installed diffusers expects, so
        neither triggers its deprecation warning.
        """
        location = Path(pretrained_model_name_or_path)
        if location.is_dir():
            if not (location / "model_index.json").is_file():
                raise FileNotFoundError(
                    f"`pretrained_model_name_or_path` {str(location)!r} has no model_index.json: "
                    "expected a folder written by `StrDiffusionInpaintPipeline.save_pretrained`."
                )
            stub = location / f"{CUSTOM_PIPELINE_MODULE}.py"
        elif location.is_absolute() or str(pretrained_model_name_or_path).startswith((".", "~")) or location.exists():
            raise FileNotFoundError(f"`pretrained_model_name_or_path` {str(location)!r} does not exist.")
        else:
            # A Hub id: download (or find in the cache) the repo first; downloading runs no code, so it may be
            # trusted. Then the stub is judged like a local folder's.
            location = Path(
                cls.download(str(pretrained_model_name_or_path), trust_remote_code=True, **download_options(kwargs))
            )
            pretrained_model_name_or_path = location
            stub = location / f"{CUSTOM_PIPELINE_MODULE}.py"
        if stub.is_file() and stub.read_text(encoding="utf-8") == CUSTOM_PIPELINE_SOURCE:
            kwargs.setdefault("trust_remote_code", True)
        dtype, torch_dtype = kwargs.pop("dtype", None), kwargs.pop("torch_dtype", None)
        if dtype is not None and torch_dtype is not None:
            raise ValueError("Pass `dtype` or `torch_dtype` (its older name), not both.")
        if dtype is not None or torch_dtype is not None:
            kwargs[diffusers_dtype_argument()] = dtype if dtype is not None else torch_dtype
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ------------------------------------------------------------------ building blocks (used by callbacks too)

    @property
    def nfe(self) -> dict[str, int]:
        """Network evaluations of the current (or last) call, per network and in total."""
        counts = {name: self._nfe[name] for name in ("structure", "texture", "discriminator")}
        return {**counts, "total": sum(counts.values())}

    @property
    def num_timesteps(self) -> int:
        """Number of denoising steps of the current (or last) call (`len(scheduler.timesteps)`)."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """
        Whether the current call was interrupted: a callback that sets `pipeline._interrupt = True` makes the loop
        skip its remaining steps (as in diffusers pipelines); the output is then built from the current state.
        """
        return self._interrupt

    @property
    def generator(self) -> torch.Generator | list[torch.Generator] | None:
        """The generator(s) of the current call, for callbacks that draw noise."""
        return self._generator

    # ------------------------------------------------------------------ inputs

    def _to_tensor(self, images: ImageInput, name: str, channels: int) -> torch.Tensor:
        converted = validate_image_items(images, name, channels)
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

    # ------------------------------------------------------------------ call steps

    def check_inputs(
        self,
        output_type: str,
        structure_maps: str,
        structure_fraction: float,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> None:
        """Checks the call's arguments that do not depend on the images (step 1 of `__call__`)."""
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}.")
        if structure_maps not in ("known_pixels", "full_image"):
            raise ValueError(f"`structure_maps` must be 'known_pixels' or 'full_image', got {structure_maps!r}.")
        if not 0.0 <= structure_fraction <= 1.0:
            raise ValueError(f"`structure_fraction` must be in [0, 1], got {structure_fraction}.")
        unknown = [name for name in callback_on_step_end_tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` must be in {self._callback_tensor_inputs}, got {unknown}."
            )

    def prepare_conditions(
        self,
        image: torch.Tensor,
        known_mask: torch.Tensor,
        structure_maps: str,
        canny_sigma: float,
        structure_gray: torch.Tensor | None,
        structure_edges: torch.Tensor | None,
    ) -> SamplerConditions:
        """
        Computes the structure maps and both SDE means from the image and the known mask (step 3 of `__call__`): the
        texture mean is the known image with its hole filled by `mean_fill`, the structure mean the masked edge map
        (or, with `structure_mean="filled_gray"`, the known grayscale with its hole filled by `structure_fill`).
        """
        device, dtype = self._execution_device, self.texture_unet.dtype
        image, known_mask = image.to(device), known_mask.to(device)
        # Nothing under the hole may influence the result: blank it before any map is computed.
        known_image = torch.where(known_mask.bool(), image, 0)
        source = image if structure_maps == "full_image" else known_image
        maps = (structure_maps, canny_sigma, structure_gray, structure_edges)
        gray, edges = self._structure_maps(source, known_mask, *maps)
        known_image, known_mask = known_image.to(dtype), known_mask.to(dtype)
        known_gray = (gray * known_mask).to(dtype)
        config = self.config
        # The two classical fills are independent and release the GIL (biharmonic: 1.5-2.5 s each at 512 px).
        with ThreadPoolExecutor(max_workers=2) as pool:
            texture_mu = pool.submit(fill_hole, known_image, known_mask, config.mean_fill)
            structure_mu = structure_mean(
                known_gray, edges.to(dtype), known_mask, config.structure_mean, self.structure_fill
            )
            return SamplerConditions(
                image=image,
                known_mask=known_mask,
                gray=gray,
                known_gray=known_gray,
                structure_mu=structure_mu,
                texture_mu=texture_mu.result(),
            )

    @property
    def structure_fill(self) -> str:
        """The fill of the `"filled_gray"` structure mean: the `structure_fill` config entry, else `mean_fill`."""
        return self.config.get("structure_fill") or self.config.mean_fill

    def prepare_latents(
        self,
        texture_mu: torch.Tensor,
        structure_mu: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        The start states x_T = mu + lambda z of the texture and the structure process (step 5 of `__call__`), drawn in
        the released order (texture first). A caller-supplied texture start state `latents` replaces the texture draw
        (the structure start state is still drawn).
        """
        batch_size = texture_mu.shape[0]
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"`generator` is a list of {len(generator)} generators for a batch of {batch_size}.")
        if latents is None:
            latents = self.scheduler.initial_sample(
                texture_mu, self.randn(tuple(texture_mu.shape), generator, texture_mu)
            )
        elif not isinstance(latents, torch.Tensor) or tuple(latents.shape) != tuple(texture_mu.shape):
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(
                f"`latents` (the texture start state x_T) must be a tensor of shape {tuple(texture_mu.shape)} "
                f"(batch, 3, height, width of `image`), got {shape}."
            )
        else:
            latents = latents.to(device=texture_mu.device, dtype=texture_mu.dtype)
        structure_latents = None
        if self.structure_unet is not None:
            structure_latents = self.scheduler.initial_sample(
                structure_mu, self.randn(tuple(structure_mu.shape), generator, structure_mu)
            )
        return latents, structure_latents

    def _begin_call(
        self,
        generator: torch.Generator | list[torch.Generator] | None,
        noise_sampler: NoiseSampler | None,
        known_mask: torch.Tensor,
        known_gray: torch.Tensor,
        structure_fraction: float,
    ) -> None:
        """Resets the per-call state that the building blocks and callbacks read."""
        self._nfe = Counter()
        self._noise_sampler = noise_sampler
        self._generator = generator
        self._known_mask = known_mask
        self._known_gray = known_gray
        self._structure_fraction = structure_fraction
        self._progress_postfix = {}
        self._interrupt = False

    def _end_call(self) -> None:
        self._noise_sampler = None
        self._generator = None
        self._known_mask = None
        self._known_gray = None
        self.maybe_free_model_hooks()

    def _postprocess(
        self,
        conditions: SamplerConditions,
        latents: torch.Tensor,
        structure_prediction: torch.Tensor,
        output_type: str,
    ) -> tuple[Any, Any]:
        """
        Pastes the known pixels back (exact: the mask is binary) and converts to `output_type` (step 7): `"pt"` and
        `"latent"` tensors come in the pipeline's dtype, as diffusers' image processor returns them; `"np"` is
        float32 and `"pil"` uint8, both computed from the float32 composite.
        """
        # `torch.where`, not a blend: nothing from the hole (even a non-finite value) leaks into the known pixels.
        known = conditions.known_mask.bool()
        images = torch.where(known, conditions.image, latents.float())
        structures = None
        if self.structure_unet is not None:
            structures = torch.where(known, conditions.gray, structure_prediction.float())
        if output_type == "latent":
            return images.to(latents.dtype), None if structures is None else structures.to(latents.dtype)
        images = images.clamp(0, 1)
        if output_type == "pt":
            images = images.to(latents.dtype)
        images = self.image_processor.postprocess(images, output_type=output_type)
        if structures is not None:
            structures = structures.clamp(0, 1)
            if output_type == "pt":
                structures = structures.to(latents.dtype)
            structures = self.mask_processor.postprocess(structures, output_type=output_type)
        return images, structures

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        mask_image: ImageInput,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        structure_fraction: float = STRUCTURE_FRACTION,
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
            latents (`torch.Tensor` of shape `(B, 3, H, W)`, *optional*):
                The texture start state x_T, as diffusers pipelines accept it; by default it is drawn as
                `texture_mu + lambda * z`. When given, that first draw is skipped (the structure start state is still
                drawn). Its shape is checked (`ValueError`); it is cast to the pipeline's device and dtype.
            output_type (`str`, defaults to `"pil"`):
                `"pil"`, `"np"` or `"pt"` (clamped to [0, 1]), or `"latent"`: the raw `(B, 3, H, W)` tensor of the
                final state with the known pixels pasted back, unclamped. As in diffusers, `"pt"` and `"latent"`
                tensors have the pipeline's dtype (bfloat16 for a bfloat16 pipeline) and `"np"` arrays are float32.
            return_dict (`bool`, defaults to `True`): return a [`StrDiffusionInpaintPipelineOutput`] or a tuple.
            structure_fraction (`float`, defaults to 0.4):
                Steps with `t >= floor(structure_fraction * T)` are structure-guided (released: 0.4).
            structure_maps (`str`, defaults to `"known_pixels"`):
                How the grayscale / Canny structure maps are computed. `"known_pixels"`: only from known pixels (the
                Canny detector is masked: normalised smoothing over known pixels, no edges on the hole border).
                `"full_image"`: the released computation, Canny on the *whole* image before masking — it reads pixels
                under the hole near its border (docs/released_implementation.md, "Structure maps: Canny on the full
                image"); for parity experiments only.
            canny_sigma (`float`, defaults to 2.0): the Canny sigma (released test value 2.0, training 3.0).
            structure_gray, structure_edges (`torch.Tensor` of shape `(B, 1, H, W)`, *optional*):
                Precomputed grayscale / edge maps (reference configuration: e.g. the released maps of a parity
                fixture). They are multiplied by the known mask before use.
            noise_sampler (`Callable`, *optional*):
                `noise_sampler(shape, generator, device, dtype) -> Tensor` replaces every Gaussian draw. Draws happen
                in the released order: the texture start noise (unless `latents` is given), the structure start
                noise, then per early step the structure anchor, the structure step, the texture step (and the
                callback's re-noising / structure / texture steps), and per late step the texture step. With fewer
                steps than T each structure step first draws the noise that moves the anchor up to its time (see
                `structure_step`). Reverse steps consume a draw z as `x - drift - std * z`, forward steps as
                `x + drift + std * z`.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called after each step as `callback(pipeline, step_index, timestep, callback_kwargs)`, with `timestep`
                the element of `scheduler.timesteps` (a 0-d tensor), as diffusers passes it; may replace `latents`
                (the new texture state) and `structure_latents` (the new structure state) in what it returns.
                Setting `pipeline._interrupt = True` skips the remaining steps (see `interrupt`).
                [`~diffusers_strdiff.DiscriminatorGatedResampling`] gives the full StrDiffusion sampler.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*):
                Names from `_callback_tensor_inputs` passed in `callback_kwargs` (taken from the callback itself for a
                `PipelineCallback`).

        Returns:
            [`StrDiffusionInpaintPipelineOutput`] or `(images, structures)`.
        """
        # 1. Check the arguments
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        self.check_inputs(output_type, structure_maps, structure_fraction, callback_on_step_end_tensor_inputs)

        # 2. Preprocess the image and the mask
        image, known_mask = self.prepare_inputs(image, mask_image)

        # 3. Structure maps and the means of both SDEs
        conditions = self.prepare_conditions(
            image, known_mask, structure_maps, canny_sigma, structure_gray, structure_edges
        )
        known_mask, texture_mu, structure_mu = conditions.known_mask, conditions.texture_mu, conditions.structure_mu
        self._begin_call(generator, noise_sampler, known_mask, conditions.known_gray, structure_fraction)

        # 4. Timesteps
        if num_inference_steps is None and self.scheduler.config.algorithm_type == "posterior":
            num_inference_steps = self.config.default_num_inference_steps
        self.scheduler.set_timesteps(num_inference_steps, device=texture_mu.device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 5. Start states x_T
        latents, structure_latents = self.prepare_latents(texture_mu, structure_mu, generator, latents)
        structure_prediction = structure_anchor = conditions.known_gray

        # 6. Denoising loop
        with self.progress_bar(total=self._num_timesteps) as progress_bar:
            for step_index, timestep in enumerate(timesteps):
                if self.interrupt:
                    continue
                t = int(timestep)
                prev_latents = latents
                latents, structure_latents, step_structure = self._denoise_step(
                    latents, structure_latents, t, conditions, generator, structure_prediction
                )
                if step_structure is not None:
                    structure_anchor, structure_prediction = step_structure
                if callback_on_step_end is not None:
                    step_tensors = {
                        "latents": latents,
                        "prev_latents": prev_latents,
                        "structure_latents": structure_latents,
                        "structure_anchor": structure_anchor,
                        "texture_mu": texture_mu,
                        "structure_mu": structure_mu,
                        "known_mask": known_mask,
                    }
                    callback_kwargs = {name: step_tensors[name] for name in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, step_index, timestep, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                    structure_latents = callback_outputs.pop("structure_latents", structure_latents)
                if self.uses_structure(t):
                    structure_latents = structure_anchor * known_mask + structure_latents * (1 - known_mask)
                progress_bar.set_postfix(self._progress_postfix, refresh=False)
                progress_bar.update()

        # 7. Postprocess
        nfe = self.nfe
        self._end_call()
        images, structures = self._postprocess(conditions, latents, structure_prediction, output_type)
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
