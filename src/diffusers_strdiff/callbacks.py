# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Discriminator-gated adaptive resampling (StrDiffusion, paper Sec.3.5 / Eq.17) as a diffusers pipeline callback."""

from typing import Any

import torch
from diffusers.callbacks import PipelineCallback
from diffusers.configuration_utils import register_to_config

from .pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline

RESAMPLING_PRESETS: dict[str, dict[str, int]] = {
    # The constants hard-coded in the released sampler ("Places2, T=400"): (u_max, u_min, jump, re) = (6, 3, 5, 5).
    "released": {"resample_limit": 6, "min_attempts": 3, "resample_every": 5, "renoise_steps": 5},
    # The alternative commented out next to them ("Places2, T=100"): (25, 4, 2, 2).
    "released_t100": {"resample_limit": 25, "min_attempts": 4, "resample_every": 2, "renoise_steps": 2},
}


class DiscriminatorGatedResampling(PipelineCallback):
    r"""
    The adaptive resampling of StrDiffusion, exactly as the released sampler does it, for
    [`~diffusers_strdiff.StrDiffusionInpaintPipeline`].

    At every structure-guided step whose position `n` (counted from the end of the schedule, `n = t` for the full
    schedule) is a multiple of `resample_every`, the structure state x_{t-1} is re-noised for `renoise_steps` steps
    (clipped near the start of the schedule) and denoised back with the structure network, a new texture candidate is
    computed from the same y_t, and the discriminator compares it with the first candidate on the known region
    (`D(t, y * M, x)`):

    - a candidate that scores better (lower, the released rule) is accepted;
    - otherwise, during the first `min_attempts - 1` attempts (u_min) the two candidates are averaged, and from
      attempt `min_attempts` on the loop stops;
    - at most `resample_limit - 1` attempts are made (u_max is an exclusive bound in the released code).

    The reference score of the first candidate is never updated (released behaviour) unless
    `update_reference_score=True`; `prefer_lower_score=False` flips the comparison to the paper's semantics (higher =
    more consistent). See docs/released_implementation.md, "Resampling: the reference score is never updated" and
    "Resampling: lower discriminator scores win". Batches are processed item by item, each as the released
    batch-of-one sampler, with its own generator when a list is given, so a batch equals the single-image calls.

    The callback re-noises and re-denoises through the pipeline's public one-step methods (`renoise_structure`,
    `structure_step`, `texture_step`, `discriminator_score`) and hands the accepted states back as `latents` and
    `structure_latents`. It composes with other callbacks through `MultiPipelineCallbacks`. After a call,
    `history` lists every decision and `pipeline.nfe` counts the network evaluations.

    Args:
        resample_limit (`int`, defaults to 6): u_max; attempts run for i = 1 .. u_max - 1.
        min_attempts (`int`, defaults to 3): u_min; attempts before it never stop the loop.
        resample_every (`int`, defaults to 5): jump; resample when the step position is a multiple of it.
        renoise_steps (`int`, defaults to 5): re; how many steps the structure is re-noised and re-denoised.
        prefer_lower_score (`bool`, defaults to `True`): accept candidates with a lower discriminator score.
        update_reference_score (`bool`, defaults to `False`): re-score the kept candidate after each change.
        cutoff_step_ratio, cutoff_step_index: as in `PipelineCallback`; steps at or after the cutoff are not resampled.
    """

    # Every tensor the pipeline offers: the resampling needs the step's inputs, states and means.
    tensor_inputs = list(StrDiffusionInpaintPipeline._callback_tensor_inputs)

    @register_to_config
    def __init__(
        self,
        resample_limit: int = 6,
        min_attempts: int = 3,
        resample_every: int = 5,
        renoise_steps: int = 5,
        prefer_lower_score: bool = True,
        update_reference_score: bool = False,
        cutoff_step_ratio: float | None = 1.0,
        cutoff_step_index: int | None = None,
    ) -> None:
        super().__init__(cutoff_step_ratio=cutoff_step_ratio, cutoff_step_index=cutoff_step_index)
        for name, value in (
            ("resample_limit", resample_limit),
            ("min_attempts", min_attempts),
            ("resample_every", resample_every),
        ):
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        if renoise_steps < 0:
            raise ValueError(f"`renoise_steps` must be >= 0, got {renoise_steps}.")
        self.history: list[dict[str, Any]] = []

    @classmethod
    def from_preset(cls, preset: str = "released", **overrides: Any) -> "DiscriminatorGatedResampling":
        """Builds the callback from a named preset of `RESAMPLING_PRESETS` (`"released"`, `"released_t100"`)."""
        if preset not in RESAMPLING_PRESETS:
            raise ValueError(f"`preset` must be one of {sorted(RESAMPLING_PRESETS)}, got {preset!r}.")
        return cls(**{**RESAMPLING_PRESETS[preset], **overrides})

    def _is_before_cutoff(self, step_index: int, num_steps: int) -> bool:
        if self.config.cutoff_step_index is not None:
            return step_index < self.config.cutoff_step_index
        return step_index < int(num_steps * self.config.cutoff_step_ratio)

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: int | torch.Tensor, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        timestep = int(timestep)  # the pipeline passes the element of `scheduler.timesteps`, a 0-d tensor
        if step_index == 0:
            self.history = []
        timesteps = pipeline.scheduler.timesteps.tolist()
        position = len(timesteps) - step_index  # == t for the full schedule
        renoise_steps = min(self.config.renoise_steps, step_index + 1)  # released: re, clipped to T - t + 1
        if (
            not pipeline.uses_structure(timestep)
            or position % self.config.resample_every != 0
            or renoise_steps == 0
            or not self._is_before_cutoff(step_index, len(timesteps))
        ):
            return callback_kwargs
        if pipeline.discriminator is None:
            raise ValueError("`DiscriminatorGatedResampling` needs a pipeline with a `discriminator`.")

        # Times the re-noising walks up (from the structure's time t_prev to t, ...) and the re-denoising walks down.
        up_times = [pipeline.scheduler.previous_timestep(timestep)] + timesteps[
            max(step_index - renoise_steps + 1, 0) : step_index + 1
        ][::-1]
        generators = pipeline.generator
        latents, structure_latents = callback_kwargs["latents"].clone(), callback_kwargs["structure_latents"].clone()
        for item in range(latents.shape[0]):
            generator = generators[item] if isinstance(generators, list) else generators
            item_slice = slice(item, item + 1)
            item_inputs = {name: callback_kwargs[name][item_slice] for name in self.tensor_inputs}
            latents[item_slice], structure_latents[item_slice] = self._resample_item(
                pipeline, item, timestep, up_times, renoise_steps, generator, **item_inputs
            )
        accepted = sum(entry["decision"] == "accept" for entry in self.history)
        pipeline.set_progress_postfix(resampled_at=timestep, accepted=accepted, attempts=len(self.history))
        callback_kwargs["latents"], callback_kwargs["structure_latents"] = latents, structure_latents
        return callback_kwargs

    def _resample_item(
        self,
        pipeline: Any,
        item: int,
        timestep: int,
        up_times: list[int],
        renoise_steps: int,
        generator: torch.Generator | None,
        latents: torch.Tensor,
        prev_latents: torch.Tensor,
        structure_latents: torch.Tensor,
        structure_anchor: torch.Tensor,
        texture_mu: torch.Tensor,
        structure_mu: torch.Tensor,
        known_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config
        candidate, candidate_structure = latents, structure_latents
        reference_score = pipeline.discriminator_score(candidate * known_mask, timestep, candidate_structure)
        for attempt in range(1, config.resample_limit):
            # Eq.17: re-noise x_{t-1} forward for `renoise_steps` steps, then denoise it back to t - 1.
            structure = candidate_structure
            for step in range(renoise_steps):
                structure = pipeline.renoise_structure(
                    structure, up_times[step], up_times[step + 1], structure_mu, generator
                )
            for step in reversed(range(renoise_steps)):
                structure_output = pipeline.structure_step(
                    structure,
                    up_times[step + 1],
                    structure_mu,
                    structure_anchor,
                    known_mask,
                    generator,
                    anchor_timestep=up_times[0],
                )
                structure = structure_output.prev_sample
            guidance = pipeline.structure_guidance(structure_output)
            proposal = pipeline.texture_step(prev_latents, timestep, texture_mu, guidance, generator).prev_sample
            score = pipeline.discriminator_score(proposal * known_mask, timestep, structure)
            improves = bool(score < reference_score) if config.prefer_lower_score else bool(score > reference_score)
            if improves:
                decision = "accept"
                candidate, candidate_structure = proposal, structure
                if config.update_reference_score:
                    reference_score = score
            elif attempt >= config.min_attempts:
                decision = "stop"
            else:
                decision = "average"
                candidate, candidate_structure = (candidate + proposal) / 2, (candidate_structure + structure) / 2
                if config.update_reference_score:
                    reference_score = pipeline.discriminator_score(
                        candidate * known_mask, timestep, candidate_structure
                    )
            self.history.append(
                {
                    "timestep": timestep,
                    "batch_index": item,
                    "attempt": attempt,
                    "score": float(score),
                    "reference_score": float(reference_score),
                    "decision": decision,
                }
            )
            if decision == "stop":
                break
        return candidate, candidate_structure
