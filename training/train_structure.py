# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Trains the StrDiffusion structure network: a 1-channel U-Net denoising grayscale -> masked Canny edges.

Structure SDE: x0 = grayscale image, mu_x = Canny edges (sigma 3.0) * known mask (released; `--structure_mean
filled_gray` uses the known grayscale with the hole filled by `--structure_fill` instead). Per batch, t ~ U{2..T},
x_t ~ marginal(x0, t). With `--prediction_type epsilon` the network's noise prediction gives the reverse-SDE mean
step, matched (L1, hole x10) to the Eq.4 optimum x*_{t-1}(x_t, x0) (released `train/structure`); with `sample` /
`residual` its x0 estimate is matched to x0 with the same loss.

    python training/train_structure.py --train_data_dir IMAGES --validation_data_dir HELD_OUT --output_dir OUT
    accelerate launch training/train_structure.py ...
"""

import argparse
import functools
from collections.abc import Sequence

import torch

from diffusers_strdiff.models import StrDiffusionUNet2DModel
from diffusers_strdiff.schedulers import MeanRevertingSDEScheduler
from diffusers_strdiff.structure import structure_mean
from diffusers_strdiff.training import (
    TrainingResult,
    TrainingTask,
    ValidationResult,
    add_unet_arguments,
    check_unet_arguments,
    denoising_loss,
    image_grid,
    mask_input,
    noisy_state,
    parse_args,
    run_script,
    train,
    warm_start,
)
from diffusers_strdiff.utils import psnr

COMPONENT_NAME = "structure_unet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_unet_arguments(parser)
    parser.set_defaults(output_dir="strdiffusion-structure")


def build_model(args: argparse.Namespace) -> StrDiffusionUNet2DModel:
    model = StrDiffusionUNet2DModel(
        in_channels=1,
        out_channels=1,
        base_channels=args.base_channels,
        depth=args.depth,
        guidance_channels=0,
        known_mask_channel=args.known_mask_channel,
    )
    return model if args.init_weights is None else warm_start(model, args.init_weights, COMPONENT_NAME)


def structure_prediction(
    model: torch.nn.Module,
    noisy: torch.Tensor,
    timesteps: torch.Tensor | int,
    mu: torch.Tensor,
    known_mask: torch.Tensor,
) -> torch.Tensor:
    """The structure net's output, with the known mask as input when the net takes it."""
    return model(noisy, timesteps, mu, known_mask=mask_input(model, known_mask)).sample


def compute_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    mean: str = "edges",
    structure_fill: str = "zeros",
) -> torch.Tensor:
    """[`denoising_loss`] of the structure net (released MatchingLoss for the noise prediction)."""
    gray, known_mask = batch["gray"], batch["known_mask"]
    mu = structure_mean(gray, batch["edges"], known_mask, mean, structure_fill)
    timesteps, noisy = noisy_state(gray, mu, scheduler, generator)
    output = structure_prediction(model, noisy, timesteps, mu, known_mask)
    return denoising_loss(output, timesteps, noisy, gray, mu, known_mask, scheduler)


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
    grayscale (as the released sampler re-anchors the known region). Returns x_0 composited with the known grayscale.
    """
    scheduler.set_timesteps()
    sample = scheduler.initial_sample(mu, torch.randn(mu.shape, generator=generator, device=mu.device))
    for timestep in scheduler.timesteps.tolist():
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        anchor = scheduler.add_noise(known_gray, noise, timestep - 1, mu)
        sample = anchor * known_mask + sample * (1 - known_mask)
        output = structure_prediction(model, sample, timestep, mu, known_mask)
        sample = scheduler.step(output, timestep, sample, mu, generator=generator).prev_sample
    return known_gray + sample * (1 - known_mask)


def validate(
    model: StrDiffusionUNet2DModel,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    mean: str = "edges",
    structure_fill: str = "zeros",
) -> ValidationResult:
    """Structure sampling on the held-out images: grid of structure mean / predicted gray / GT gray, and its PSNR."""
    gray, known_mask = batch["gray"], batch["known_mask"]
    mu = structure_mean(gray, batch["edges"], known_mask, mean, structure_fill)
    predicted = sample_structure(model, gray * known_mask, mu, known_mask, scheduler, generator)
    return ValidationResult(
        grid=image_grid([mu, predicted.clamp(0, 1), gray]), metrics={"psnr": psnr(predicted, gray).mean().item()}
    )


def main(argv: Sequence[str] | None = None) -> TrainingResult | None:
    args = parse_args(__doc__, add_arguments, argv, check_unet_arguments)
    task = TrainingTask(
        component_name=COMPONENT_NAME,
        build_model=build_model,
        compute_loss=functools.partial(compute_loss, mean=args.structure_mean, structure_fill=args.structure_fill),
        validate=functools.partial(validate, mean=args.structure_mean, structure_fill=args.structure_fill),
        description=(
            "The structure network of StrDiffusion (Liu et al., CVPR 2024): a 1-channel U-Net denoising the structure "
            f"mean-reverting SDE (x0 = grayscale image, mu = `{args.structure_mean}` of the known region, hole fill "
            f"`{args.structure_fill}`), predicting `{args.prediction_type}`. Combine it with a texture network and a "
            "discriminator with `training/assemble_pipeline.py`."
        ),
    )
    return train(args, task)


if __name__ == "__main__":
    run_script(main)
