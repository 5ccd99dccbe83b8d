# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The training losses (the released `MatchingLoss` and its x0 variant), their noisy states and PSNR."""

from typing import Any

import torch
from accelerate.logging import get_logger

from ..schedulers import MeanRevertingSDEScheduler
from ..structure import STRUCTURE_FRACTION, estimate_guidance

logger = get_logger(__name__, log_level="INFO")


HOLE_WEIGHT = 10.0
"""Weight of the hole pixels in the released `MatchingLoss` (known pixels weigh 1)."""


def matching_loss(
    pred: torch.Tensor, target: torch.Tensor, known_mask: torch.Tensor, hole_weight: float = HOLE_WEIGHT
) -> torch.Tensor:
    """
    The released `MatchingLoss` (L1): `mean_b( mean_chw |(p - q) M| + hole_weight * mean_chw |(p - q)(1 - M)| )`.

    The means run over all pixels and channels (not over the masked area only), so the known and hole terms weigh
    their pixels 1 and `hole_weight` (10) respectively.

    Args:
        pred (`torch.Tensor` of shape `(B, C, H, W)`): the reverse-SDE mean step of the network.
        target (`torch.Tensor` of shape `(B, C, H, W)`): the Eq.4 optimum x*_{t-1}.
        known_mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = known, 0 = hole.
    """
    error = (pred - target).abs()
    known = (error * known_mask).mean(dim=(1, 2, 3))
    hole = (error * (1 - known_mask)).mean(dim=(1, 2, 3))
    return (known + hole_weight * hole).mean()


def unet_config(model: torch.nn.Module) -> Any:
    """The config of a U-Net, possibly wrapped by accelerate for distributed training."""
    return getattr(model, "module", model).config


def mask_input(model: torch.nn.Module, known_mask: torch.Tensor) -> torch.Tensor | None:
    """`known_mask` for a U-Net built with `known_mask_channel=True`, `None` for one without mask input."""
    return known_mask if unet_config(model).known_mask_channel else None


def sample_timesteps(batch_size: int, num_train_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ UniformInt{2, ..., T} per sample, as released (t = 1 is never trained)."""
    return torch.randint(2, num_train_timesteps + 1, (batch_size,), generator=generator, device=generator.device)


def noisy_state(
    original_sample: torch.Tensor, mu: torch.Tensor, scheduler: MeanRevertingSDEScheduler, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The opening of every training loss: t ~ U{2..T} per sample (`sample_timesteps`) and x_t ~ the forward marginal
    (Eq.3) of `original_sample` around `mu`, in that order of draws from `generator`.

    Returns:
        `(timesteps, noisy)`: `(B,)` int64 times and the `(B, C, H, W)` states x_t.
    """
    timesteps = sample_timesteps(original_sample.shape[0], scheduler.config.num_train_timesteps, generator)
    noise = torch.randn(original_sample.shape, generator=generator, device=original_sample.device)
    return timesteps, scheduler.add_noise(original_sample, noise, timesteps, mu)


def denoising_loss(
    model_output: torch.Tensor,
    timesteps: torch.Tensor,
    noisy: torch.Tensor,
    original_sample: torch.Tensor,
    mu: torch.Tensor,
    known_mask: torch.Tensor,
    scheduler: MeanRevertingSDEScheduler,
) -> torch.Tensor:
    """
    The training loss of a structure or texture network, for the scheduler's `prediction_type`:

    * `"epsilon"` (released): [`matching_loss`] between the reverse-SDE mean step of the output and the Eq.4
      optimum x*_{t-1}(x_t, x_0). Its gradient on the noise is scaled by the small step coefficients.
    * `"sample"` / `"residual"`: [`matching_loss`] (L1, hole x10) between the x_0 estimate (unclipped) and x_0.

    Shapes `(B, C, H, W)`; `timesteps` `(B,)`; `known_mask` `(B, 1, H, W)` with 1 = known.
    """
    if scheduler.config.prediction_type == "epsilon":
        prediction = scheduler.reverse_sde_mean(model_output, timesteps, noisy, mu)
        target = scheduler.optimal_reverse_state(noisy, original_sample, timesteps, mu)
    else:
        prediction = scheduler.predict_original_sample(model_output, timesteps, noisy, mu)
        target = original_sample
    return matching_loss(prediction, target, known_mask)


def oracle_structure(
    gray: torch.Tensor,
    structure_mu: torch.Tensor,
    timesteps: torch.Tensor | int,
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
) -> torch.Tensor:
    """
    The structure guidance of the released texture and discriminator trainings: the Eq.4 optimum x*_{t-1} of a
    structure state x_t ~ marginal(gray, t) sampled at the same t with the ground-truth grayscale.

    Args:
        gray (`torch.Tensor` of shape `(B, 1, H, W)`): the ground-truth grayscale (structure x0).
        structure_mu (`torch.Tensor` of shape `(B, 1, H, W)`): the masked edges (structure mu).
        timesteps (`torch.Tensor` of shape `(B,)` or `int`): t in 2..T (1..T).
    """
    noise = torch.randn(gray.shape, generator=generator, device=gray.device)
    structure_state = scheduler.add_noise(gray, noise, timesteps, structure_mu)
    return scheduler.optimal_reverse_state(structure_state, gray, timesteps, structure_mu)


@torch.no_grad()
def estimated_structure(
    structure_unet: torch.nn.Module,
    gray: torch.Tensor,
    structure_mu: torch.Tensor,
    known_mask: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    structure_fraction: float = STRUCTURE_FRACTION,
) -> torch.Tensor:
    """
    The structure guidance of `texture_guidance="estimate"`, as the pipeline computes it: the frozen structure
    network's x_0 estimate from a structure state x_s ~ marginal(gray, s), clamped to [0, 1], with the known
    grayscale pasted. s = max(t, floor(structure_fraction * T)): in the late stage (t below that) the pipeline keeps
    the estimate of the last early step.

    Args:
        structure_unet: the trained structure network (not updated; evaluated in eval mode).
        gray (`torch.Tensor` of shape `(B, 1, H, W)`): the ground-truth grayscale (structure x0).
        structure_mu (`torch.Tensor` of shape `(B, 1, H, W)`): the structure mean.
        known_mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = known, 0 = hole.
        timesteps (`torch.Tensor` of shape `(B,)`): the texture state's t in 2..T.

    Returns:
        `torch.Tensor` of shape `(B, 1, H, W)` in [0, 1].
    """
    first_late = int(structure_fraction * scheduler.config.num_train_timesteps)
    structure_timesteps = timesteps.clamp(min=max(first_late, 1))
    noise = torch.randn(gray.shape, generator=generator, device=gray.device)
    state = scheduler.add_noise(gray, noise, structure_timesteps, structure_mu)
    structure_unet.eval()
    output = structure_unet(
        state, structure_timesteps, structure_mu, known_mask=mask_input(structure_unet, known_mask)
    ).sample
    estimate = scheduler.predict_original_sample(output, structure_timesteps, state, structure_mu)
    return estimate_guidance(estimate, gray * known_mask, known_mask)
