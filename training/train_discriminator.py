# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Trains the StrDiffusion discriminator D(t, y, x) that gates the adaptive resampling of the sampler.

Per batch (as released `train/discriminator`): t ~ U{2..T}, y_t ~ texture marginal (y0 = image, mu_y = image * known
mask, or with `--mean_fill` the coarse fill the texture net was trained with), structure guidance x*_{t-1} = Eq.4
structure optimum from the ground-truth grayscale at the same t (around the `--structure_mean` of the structure net,
filled with `--structure_fill`),
and the texture optimum y*_{t-1} = Eq.4(y_t, y0). Logits: real = D(t, y*_{t-1}, x*_{t-1}), fake = D(t, y_t, x*_{t-1}),
anchor = D(t, y*_{t-1} M + y_t (1 - M), x*_{t-1}). Loss = mean softplus(-real) + mean softplus(fake) +
TripletMarginLoss(margin 1, p 2)(anchor, real, fake). Adam lr 1e-4, betas (0.5, 0.99).

The minibatch-stddev layer of D groups min(B, 4) samples: `--train_batch_size` must be divisible by min(B, 4).

    python training/train_discriminator.py --train_data_dir IMAGES --validation_data_dir HELD_OUT --output_dir OUT
    accelerate launch training/train_discriminator.py ...
"""

import argparse
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from diffusers_strdiff.coarse_fill import fill_hole
from diffusers_strdiff.models import StrDiffusionDiscriminator
from diffusers_strdiff.schedulers import MeanRevertingSDEScheduler
from diffusers_strdiff.structure import structure_mean
from diffusers_strdiff.training import (
    ArgumentValueError,
    TrainingResult,
    TrainingTask,
    ValidationResult,
    add_init_weights_argument,
    check_init_weights,
    noisy_state,
    oracle_structure,
    parse_args,
    run_script,
    train,
    warm_start,
)

COMPONENT_NAME = "discriminator"
TRIPLET_MARGIN = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("discriminator")
    group.add_argument(
        "--base_channels", type=int, default=32, help="ngf of the discriminator (released training: 32)."
    )
    group.add_argument("--time_embedding_dim", type=int, default=256, help="Size of the timestep embedding.")
    add_init_weights_argument(group)
    parser.set_defaults(output_dir="strdiffusion-discriminator", adam_beta1=0.5)


def is_valid_batch_size(batch_size: int) -> bool:
    """Whether the minibatch-stddev layer accepts a batch: it groups min(B, 4) samples, so B % min(B, 4) == 0."""
    return batch_size % min(batch_size, 4) == 0


def check_arguments(args: argparse.Namespace) -> None:
    check_init_weights(args)
    if args.base_channels < 1 or args.time_embedding_dim < 4:
        raise ArgumentValueError(
            "`--base_channels` must be >= 1 and `--time_embedding_dim` >= 4, got "
            f"{args.base_channels} and {args.time_embedding_dim}."
        )
    if not is_valid_batch_size(args.train_batch_size):
        raise ArgumentValueError(
            f"`--train_batch_size` {args.train_batch_size} is not divisible by min(batch, 4) = "
            f"{min(args.train_batch_size, 4)}, as the discriminator's minibatch-stddev layer needs (groups of 4): "
            "use 1, 2, 3 or a multiple of 4."
        )


def build_model(args: argparse.Namespace) -> StrDiffusionDiscriminator:
    model = StrDiffusionDiscriminator(
        in_channels=3,
        structure_channels=1,
        base_channels=args.base_channels,
        time_embedding_dim=args.time_embedding_dim,
    )
    return model if args.init_weights is None else warm_start(model, args.init_weights, COMPONENT_NAME)


def discriminator_logits(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    mean_fill: str = "zeros",
    structure_mean_kind: str = "edges",
    structure_fill: str = "zeros",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (real, fake, anchor) logits of a batch, each of shape (B,), with the released sampling of states."""
    image, known_mask = batch["image"], batch["known_mask"]
    mu = fill_hole(image, known_mask, mean_fill)
    timesteps, noisy = noisy_state(image, mu, scheduler, generator)
    structure_mu = structure_mean(batch["gray"], batch["edges"], known_mask, structure_mean_kind, structure_fill)
    structure = oracle_structure(batch["gray"], structure_mu, timesteps, scheduler, generator)
    optimum = scheduler.optimal_reverse_state(noisy, image, timesteps, mu)
    real = model(optimum, timesteps, structure)
    fake = model(noisy, timesteps, structure)
    anchor = model(optimum * known_mask + noisy * (1 - known_mask), timesteps, structure)
    return real, fake, anchor


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss (Eq.14) + triplet loss (Eq.15, margin 1, p 2) on the (B, 1)-shaped logits."""
    adversarial = F.softplus(-real).mean() + F.softplus(fake).mean()
    triplet = F.triplet_margin_loss(anchor[:, None], real[:, None], fake[:, None], margin=TRIPLET_MARGIN, p=2)
    return adversarial + triplet


def compute_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    mean_fill: str = "zeros",
    structure_mean_kind: str = "edges",
    structure_fill: str = "zeros",
) -> torch.Tensor:
    return discriminator_loss(
        *discriminator_logits(model, batch, scheduler, generator, mean_fill, structure_mean_kind, structure_fill)
    )


def validate(
    model: StrDiffusionDiscriminator,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    batch_size: int,
    mean_fill: str = "zeros",
    structure_mean_kind: str = "edges",
    structure_fill: str = "zeros",
) -> ValidationResult:
    """
    Real / fake accuracy (logit > 0 / < 0), ranking accuracy (real > fake), mean logits and loss on the held-out
    images, in batches of the training batch size (the minibatch-stddev feature depends on the batch); a last batch
    that the layer does not accept (5, 6, 7, 9, ... images) is cut to a multiple of 4.
    """
    logits, losses = [], []
    for start in range(0, batch["image"].shape[0], batch_size):
        chunk = {name: tensor[start : start + batch_size] for name, tensor in batch.items()}
        size = chunk["image"].shape[0]
        if not is_valid_batch_size(size):
            chunk = {name: tensor[: size - size % 4] for name, tensor in chunk.items()}
        real, fake, anchor = discriminator_logits(
            model, chunk, scheduler, generator, mean_fill, structure_mean_kind, structure_fill
        )
        logits.append((real, fake))
        losses.append(discriminator_loss(real, fake, anchor) * real.shape[0])
    real = torch.cat([pair[0] for pair in logits])
    fake = torch.cat([pair[1] for pair in logits])
    metrics = {
        "real_accuracy": (real > 0).float().mean().item(),
        "fake_accuracy": (fake < 0).float().mean().item(),
        "ranking_accuracy": (real > fake).float().mean().item(),
        "real_logit": real.mean().item(),
        "fake_logit": fake.mean().item(),
        "loss": (torch.stack(losses).sum() / real.shape[0]).item(),
    }
    return ValidationResult(metrics=metrics)


def main(argv: Sequence[str] | None = None) -> TrainingResult | None:
    args = parse_args(__doc__, add_arguments, argv, check_arguments)
    task = TrainingTask(
        component_name=COMPONENT_NAME,
        build_model=build_model,
        compute_loss=functools.partial(
            compute_loss,
            mean_fill=args.mean_fill,
            structure_mean_kind=args.structure_mean,
            structure_fill=args.structure_fill,
        ),
        validate=functools.partial(
            validate,
            batch_size=args.train_batch_size,
            mean_fill=args.mean_fill,
            structure_mean_kind=args.structure_mean,
            structure_fill=args.structure_fill,
        ),
        description=(
            "The discriminator of StrDiffusion (Liu et al., CVPR 2024): a time-dependent DDGAN-style discriminator "
            "D(t, y, x) scoring whether a texture state y is one reverse step further than y_t and consistent with "
            "the structure x; trained with the non-saturating GAN loss plus the triplet loss of the paper. The "
            "sampler's resampling callback uses it. Combine it with the structure and texture networks with "
            "`training/assemble_pipeline.py`."
        ),
    )
    return train(args, task)


if __name__ == "__main__":
    run_script(main)
