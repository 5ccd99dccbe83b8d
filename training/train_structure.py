# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Trains the StrDiffusion structure network: a 1-channel U-Net denoising grayscale -> masked Canny edges.

Structure SDE: x0 = grayscale image, mu_x = Canny edges (sigma 3.0) * known mask. Per batch, t ~ U{2..T},
x_t ~ marginal(x0, t); the network's noise prediction gives the reverse-SDE mean step, matched (L1, hole x10) to the
Eq.4 optimum x*_{t-1}(x_t, x0) (released `train/structure`).

    python training/train_structure.py --train_data_dir IMAGES --validation_data_dir HELD_OUT --output_dir OUT
    accelerate launch training/train_structure.py ...
"""

import argparse
from collections.abc import Sequence

import torch

from diffusers_strdiff.models import StrDiffusionUNet2DModel
from diffusers_strdiff.schedulers import MeanRevertingSDEScheduler
from diffusers_strdiff.training_utils import (
    TrainingResult,
    TrainingTask,
    ValidationResult,
    add_unet_arguments,
    check_unet_arguments,
    image_grid,
    matching_loss,
    parse_args,
    psnr,
    run_script,
    sample_timesteps,
    train,
)

COMPONENT_NAME = "structure_unet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_unet_arguments(parser)
    parser.set_defaults(output_dir="strdiffusion-structure")


def build_model(args: argparse.Namespace) -> StrDiffusionUNet2DModel:
    return StrDiffusionUNet2DModel(
        in_channels=1, out_channels=1, base_channels=args.base_channels, depth=args.depth, guidance_channels=0
    )


def compute_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
) -> torch.Tensor:
    """MatchingLoss between the reverse-SDE mean step of the structure net and the Eq.4 optimum."""
    gray, known_mask = batch["gray"], batch["known_mask"]
    mu = batch["edges"] * known_mask
    timesteps = sample_timesteps(gray.shape[0], scheduler.config.num_train_timesteps, generator)
    noise = torch.randn(gray.shape, generator=generator, device=gray.device)
    noisy = scheduler.add_noise(gray, noise, timesteps, mu)
    noise_pred = model(noisy, timesteps, mu).sample
    pred = scheduler.reverse_sde_mean(noise_pred, timesteps, noisy, mu)
    target = scheduler.optimal_reverse_state(noisy, gray, timesteps, mu)
    return matching_loss(pred, target, known_mask)


def sample_structure(
    model: StrDiffusionUNet2DModel,
    known_gray: torch.Tensor,
    mu: torch.Tensor,
    known_mask: torch.Tensor,
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
) -> torch.Tensor:
    """
    The structure reverse process alone, every step T..1 as the released sampler's early stage: before each step the
    known region of the state is replaced by a fresh sample of the structure marginal at t-1 with x0 = the known
    grayscale (sampler.md §1 steps 1-3). Returns x_0 composited with the known grayscale.
    """
    scheduler.set_timesteps()
    sample = scheduler.initial_sample(mu, torch.randn(mu.shape, generator=generator, device=mu.device))
    for timestep in scheduler.timesteps.tolist():
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        anchor = scheduler.add_noise(known_gray, noise, timestep - 1, mu)
        sample = anchor * known_mask + sample * (1 - known_mask)
        noise_pred = model(sample, timestep, mu).sample
        sample = scheduler.step(noise_pred, timestep, sample, mu, generator=generator).prev_sample
    return known_gray + sample * (1 - known_mask)


def validate(
    model: StrDiffusionUNet2DModel,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
) -> ValidationResult:
    """Structure sampling on the held-out images: grid of masked edges / predicted gray / GT gray, and its PSNR."""
    gray, known_mask = batch["gray"], batch["known_mask"]
    mu = batch["edges"] * known_mask
    predicted = sample_structure(model, gray * known_mask, mu, known_mask, scheduler, generator)
    return ValidationResult(
        grid=image_grid([mu, predicted.clamp(0, 1), gray]), metrics={"psnr": psnr(predicted, gray).mean().item()}
    )


def main(argv: Sequence[str] | None = None) -> TrainingResult | None:
    args = parse_args(__doc__, add_arguments, argv, check_unet_arguments)
    task = TrainingTask(
        component_name=COMPONENT_NAME,
        build_model=build_model,
        compute_loss=compute_loss,
        validate=validate,
        description=(
            "The structure network of StrDiffusion (Liu et al., CVPR 2024): a 1-channel U-Net predicting the noise of "
            "the structure mean-reverting SDE (x0 = grayscale image, mu = Canny edges of the known region), trained "
            "with the released MatchingLoss against the Eq.4 optimum. Combine it with a texture network and a "
            "discriminator with `training/assemble_pipeline.py`."
        ),
    )
    return train(args, task)


if __name__ == "__main__":
    run_script(main)
