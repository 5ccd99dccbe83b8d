# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
An optional adversarial term for a network's x_0 estimates (`--adversarial_weight`): the critic, its losses and the
adaptive weight that balances it against the reconstruction loss.

A loss trained only with L1 regresses the hole to a smooth conditional median. The critic, a second network trained
alongside, scores whether a full image with a filled hole is real; the generator's extra loss rewards fills that the
critic takes for real (non-saturating GAN loss). Its weight is set per step, as in VQGAN (Esser et al., 2021), from
the gradients of both losses at the network's last layer: `weight = adversarial_weight * |grad L_rec| / |grad L_adv|`,
so that `--adversarial_weight` is the ratio of the two gradients there, whatever the scale of the losses.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.modeling_utils import ModelMixin

from .arguments import ArgumentValueError

MAX_ADAPTIVE_WEIGHT = 1e4
ADAPTIVE_WEIGHT_EPS = 1e-4


@dataclass
class CriticInputs:
    """
    What the critic step of one batch sees (all detached from the generator's graph).

    Args:
        real (`torch.Tensor` of shape `(B, C, H, W)`): ground-truth images.
        fake (`torch.Tensor` of shape `(B, C, H, W)`): the generator's images (known region pasted).
        timesteps (`torch.Tensor` of shape `(B,)`): the t each fake was estimated at.
        condition (`torch.Tensor` of shape `(B, 1, H, W)`): the map the critic is conditioned on (the hole mask).
    """

    real: torch.Tensor
    fake: torch.Tensor
    timesteps: torch.Tensor
    condition: torch.Tensor


@dataclass
class GeneratorLoss:
    """What a `compute_loss` with a critic returns: the loss to minimise, the critic's inputs and scalars to log."""

    loss: torch.Tensor
    critic_inputs: CriticInputs
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class CriticTask:
    """
    The critic of an adversarial training run.

    Args:
        component_name: its folder in checkpoints and in the output directory (`"texture_critic"`).
        build_model: builds the fresh critic from the arguments; called as `critic(sample, timesteps, condition)`
            and returning `(B, 1)` logits (real > 0).
        learning_rate: its Adam learning rate (betas 0.5, 0.99, as the StrDiffusion discriminator).
        warmup_steps: the critic alone is trained for this many first steps of the run (the network's loss has no
            adversarial term yet: a critic at chance only adds noise to the network's gradients).
    """

    component_name: str
    build_model: Callable[[argparse.Namespace], ModelMixin]
    learning_rate: float
    warmup_steps: int = 0


def critic_loss(critic: torch.nn.Module, inputs: CriticInputs) -> torch.Tensor:
    """Non-saturating GAN loss of the critic: `mean softplus(-D(real)) + mean softplus(D(fake))`."""
    real = critic(inputs.real, inputs.timesteps, inputs.condition)
    fake = critic(inputs.fake, inputs.timesteps, inputs.condition)
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_adversarial_loss(
    critic: torch.nn.Module, fake: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor
) -> torch.Tensor:
    """Non-saturating GAN loss of the generator: `mean softplus(-D(fake))`, differentiable through `fake`."""
    return F.softplus(-critic(fake, timesteps, condition)).mean()


def adaptive_weight(
    reconstruction_loss: torch.Tensor, adversarial_loss: torch.Tensor, last_layer_weight: torch.Tensor
) -> torch.Tensor:
    """
    `|d L_rec / d W| / (|d L_adv / d W| + 1e-4)` at the generator's last layer `W`, detached and clamped to
    [0, 1e4] (VQGAN's adaptive weight). Both graphs are kept for the backward pass that follows.
    """
    (reconstruction_gradient,) = torch.autograd.grad(reconstruction_loss, last_layer_weight, retain_graph=True)
    (adversarial_gradient,) = torch.autograd.grad(adversarial_loss, last_layer_weight, retain_graph=True)
    ratio = reconstruction_gradient.norm() / (adversarial_gradient.norm() + ADAPTIVE_WEIGHT_EPS)
    return ratio.clamp(0.0, MAX_ADAPTIVE_WEIGHT).detach()


def add_adversarial_arguments(parser: argparse.ArgumentParser) -> None:
    """`--adversarial_weight` (0: off), `--critic_base_channels`, `--critic_learning_rate`."""
    group = parser.add_argument_group("adversarial term (off by default)")
    group.add_argument(
        "--adversarial_weight",
        type=float,
        default=0.0,
        help="Weight of the critic's non-saturating GAN loss on the x_0 estimates, relative to the reconstruction "
        "loss at the last layer (adaptive weight, VQGAN-style): 0 trains without critic (released).",
    )
    group.add_argument(
        "--critic_base_channels", type=int, default=16, help="ngf of the critic (a StrDiffusionDiscriminator)."
    )
    group.add_argument("--critic_learning_rate", type=float, default=4e-4, help="Adam learning rate of the critic.")
    group.add_argument(
        "--critic_warmup_steps",
        type=int,
        default=100,
        help="Steps (of the run's global step count) during which only the critic learns from the network's "
        "estimates; the network's loss gains the adversarial term after them.",
    )


def check_adversarial_arguments(args: argparse.Namespace) -> None:
    """Raises `ArgumentValueError` for a negative weight, a bad critic width, or a batch the critic cannot group."""
    if args.adversarial_weight < 0:
        raise ArgumentValueError(f"`--adversarial_weight` must be >= 0, got {args.adversarial_weight}.")
    if args.adversarial_weight == 0:
        return
    if args.critic_base_channels < 1 or args.critic_learning_rate <= 0 or args.critic_warmup_steps < 0:
        raise ArgumentValueError(
            "`--critic_base_channels` must be >= 1, `--critic_learning_rate` > 0 and `--critic_warmup_steps` >= 0, "
            f"got {args.critic_base_channels}, {args.critic_learning_rate} and {args.critic_warmup_steps}."
        )
    check_discriminator_batch_size(args.train_batch_size, "critic")


def accepts_batch_size(batch_size: int) -> bool:
    """Whether a `StrDiffusionDiscriminator` accepts a batch: it groups min(B, 4) samples, so B % min(B, 4) == 0."""
    return batch_size % min(batch_size, 4) == 0


def check_discriminator_batch_size(batch_size: int, network: str) -> None:
    """Raises `ArgumentValueError` when `--train_batch_size` is one the `network`'s minibatch-stddev layer rejects."""
    if not accepts_batch_size(batch_size):
        raise ArgumentValueError(
            f"`--train_batch_size` {batch_size} is not divisible by min(batch, 4) = {min(batch_size, 4)}, as the "
            f"{network}'s minibatch-stddev layer needs (groups of 4): use 1, 2, 3 or a multiple of 4."
        )
