# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
The one-step building blocks of the StrDiffusion sampler, shared by the pipeline's denoising loop and by callbacks
such as [`~diffusers_strdiff.DiscriminatorGatedResampling`] (which re-noise and re-denoise through them).
"""

from collections.abc import Callable
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..models import StrDiffusionUNet2DModel
from ..schedulers import MeanRevertingSDESchedulerOutput
from ..structure import estimate_guidance
from .pipeline_output import SamplerConditions

NoiseSampler = Callable[
    [tuple[int, ...], torch.Generator | list[torch.Generator] | None, torch.device, torch.dtype], torch.Tensor
]


class StrDiffusionSamplerMixin:
    """
    Mixed into [`~diffusers_strdiff.StrDiffusionInpaintPipeline`]: every Gaussian draw (`randn`), the structure and
    texture steps, the re-noising and discriminator scores of the resampling, and the early / late stage test. They
    read the pipeline's components, its config and the state of its current call (`_noise_sampler`, `_known_mask`,
    `_known_gray`, `_structure_fraction`, `_nfe`, `_progress_postfix`).
    """

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

    def structure_guidance(self, structure_output: MeanRevertingSDESchedulerOutput) -> torch.Tensor:
        """
        The texture network's guidance after a structure step (an output of [`structure_step`]): the new structure
        state (`texture_guidance="state"`, released) or the step's x_0 estimate with the call's known grayscale
        pasted, clamped to [0, 1] (`"estimate"`). Shape `(B, 1, H, W)`.
        """
        if self.config.texture_guidance == "state":
            return structure_output.prev_sample
        return estimate_guidance(structure_output.pred_original_sample, self._known_gray, self._known_mask)

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

    def _denoise_step(
        self,
        latents: torch.Tensor,
        structure_latents: torch.Tensor | None,
        timestep: int,
        conditions: SamplerConditions,
        generator: torch.Generator | list[torch.Generator] | None,
        structure_prediction: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """
        One step of the loop before the callback. Early stage: re-anchor and step the structure, then step the
        texture guided by the new structure state (or its x_0 estimate, see `texture_guidance`); late stage: step the
        texture guided by its own channel mean (released; docs/released_implementation.md, "Late stage: the texture
        guides itself"), or with `texture_guidance="estimate"` by the last x_0 estimate `structure_prediction`.
        Returns the new texture and structure states and, in the early stage, the structure anchor and x_0 estimate
        of the step.
        """
        if not self.uses_structure(timestep):
            guidance = None
            if self.structure_unet is not None and self.config.texture_guidance == "estimate":
                guidance = estimate_guidance(structure_prediction, conditions.known_gray, conditions.known_mask)
            elif self.structure_unet is not None:
                guidance = latents.mean(dim=1, keepdim=True)
            latents = self.texture_step(latents, timestep, conditions.texture_mu, guidance, generator).prev_sample
            return latents, structure_latents, None
        structure_mu = conditions.structure_mu
        structure_anchor = self.structure_anchor(conditions.known_gray, structure_mu, timestep, generator)
        structure_output = self.structure_step(
            structure_latents, timestep, structure_mu, structure_anchor, conditions.known_mask, generator
        )
        structure_latents = structure_output.prev_sample
        guidance = self.structure_guidance(structure_output)
        latents = self.texture_step(latents, timestep, conditions.texture_mu, guidance, generator).prev_sample
        return latents, structure_latents, (structure_anchor, structure_output.pred_original_sample)

    def uses_structure(self, timestep: int | torch.Tensor, structure_fraction: float | None = None) -> bool:
        """
        Whether `timestep` (an int or a 0-d tensor such as an element of `scheduler.timesteps`) belongs to the early,
        structure-guided stage (t >= floor(fraction * T)).
        """
        if self.structure_unet is None:
            return False
        fraction = self._structure_fraction if structure_fraction is None else structure_fraction
        return int(timestep) >= int(fraction * self.scheduler.config.num_train_timesteps)

    def set_progress_postfix(self, **postfix: Any) -> None:
        """Lets callbacks show information (e.g. resampling decisions) in the denoising progress bar's postfix."""
        self._progress_postfix.update(postfix)
