# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
An optional adversarial term for a network's x_0 estimates (`--adversarial_weight`): the critic's task, the hole-masked
PatchGAN losses and the adaptive weight that balances them against the reconstruction loss.

A network trained only with L1 fills the hole with a smooth conditional median. A critic trained alongside
([`~diffusers_strdiff.models.StrDiffusionPatchCritic`]) scores every patch of the filled image; only the patches over
the hole count (weighted by their hole fraction), and only for estimates made at t >= `CRITIC_MIN_TIMESTEP_FRACTION`
* T: near t = 0 the estimate is the nearly clean input, which no critic can tell from the real image. The network's
extra loss rewards fills that the critic takes for real (non-saturating GAN loss). Its weight is set per step, as in
VQGAN (Esser et al., 2021), from the gradients of both losses at the network's last layer:
`weight = adversarial_weight * |grad L_rec| / |grad L_adv|`, so that `--adversarial_weight` is the ratio of the two
gradients there, whatever the scale of the losses.
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
CRITIC_MIN_TIMESTEP_FRACTION = 0.4
"""Estimates made at t >= this fraction of T are scored (the few-step sampler's steps are all above it)."""


@dataclass
class CriticInputs:
    """
    What the critic step of one batch sees (all detached from the network's graph).

    Args:
        real (`torch.Tensor` of shape `(B, C, H, W)`): ground-truth images in [0, 1].
        fake (`torch.Tensor` of shape `(B, C, H, W)`): the network's images (known region pasted).
        hole_mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = hole; the critic's condition and the patch weights.
        sample_weight (`torch.Tensor` of shape `(B,)`): 1 for the samples that count, 0 for the others.
    """

    real: torch.Tensor
    fake: torch.Tensor
    hole_mask: torch.Tensor
    sample_weight: torch.Tensor


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
        build_model: builds the fresh critic from the arguments; called as `critic(sample, hole_mask)` and returning
            `(B, 1, h, w)` patch logits (real > 0).
        learning_rate: its Adam learning rate (betas 0.5, 0.99).
        warmup_steps: the critic alone is trained for this many first steps of the run (the network's loss has no
            adversarial term yet: a critic at chance only adds noise to the network's gradients).
    """

    component_name: str
    build_model: Callable[[argparse.Namespace], ModelMixin]
    learning_rate: float
    warmup_steps: int = 0


def critic_sample_weight(timesteps: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """`(B,)` float weights: 1 where t >= `CRITIC_MIN_TIMESTEP_FRACTION` * T, else 0."""
    return (timesteps >= CRITIC_MIN_TIMESTEP_FRACTION * num_train_timesteps).float()


def _patch_weights(hole_mask: torch.Tensor, sample_weight: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """`(B, 1, h, w)` weights of `logits`' patches: each patch's hole fraction times its sample's weight."""
    return F.adaptive_avg_pool2d(hole_mask, logits.shape[-2:]) * sample_weight[:, None, None, None]


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp(min=1e-6)


def critic_loss(critic: torch.nn.Module, inputs: CriticInputs) -> torch.Tensor:
    """Hole-masked non-saturating GAN loss of the critic: `softplus(-D(real)) + softplus(D(fake))` over hole patches."""
    real = critic(inputs.real, inputs.hole_mask)
    fake = critic(inputs.fake, inputs.hole_mask)
    weights = _patch_weights(inputs.hole_mask, inputs.sample_weight, real)
    return _weighted_mean(F.softplus(-real), weights) + _weighted_mean(F.softplus(fake), weights)


def generator_adversarial_loss(
    critic: torch.nn.Module, fake: torch.Tensor, hole_mask: torch.Tensor, sample_weight: torch.Tensor
) -> torch.Tensor:
    """Hole-masked non-saturating GAN loss of the network: `softplus(-D(fake))`, differentiable through `fake`."""
    logits = critic(fake, hole_mask)
    return _weighted_mean(F.softplus(-logits), _patch_weights(hole_mask, sample_weight, logits))


def adaptive_weight(
    reconstruction_loss: torch.Tensor, adversarial_loss: torch.Tensor, last_layer_weight: torch.Tensor
) -> torch.Tensor:
    """
    `|d L_rec / d W| / (|d L_adv / d W| + 1e-4)` at the network's last layer `W`, detached and clamped to
    [0, 1e4] (VQGAN's adaptive weight). Both graphs are kept for the backward pass that follows.
    """
    (reconstruction_gradient,) = torch.autograd.grad(reconstruction_loss, last_layer_weight, retain_graph=True)
    (adversarial_gradient,) = torch.autograd.grad(
        adversarial_loss, last_layer_weight, retain_graph=True, allow_unused=True
    )
    if adversarial_gradient is None:
        return torch.zeros((), device=reconstruction_loss.device)
    ratio = reconstruction_gradient.norm() / (adversarial_gradient.norm() + ADAPTIVE_WEIGHT_EPS)
    return ratio.clamp(0.0, MAX_ADAPTIVE_WEIGHT).detach()


def add_adversarial_arguments(parser: argparse.ArgumentParser) -> None:
    """`--adversarial_weight` (0: off) and the critic's width, learning rate and warm-up."""
    group = parser.add_argument_group("adversarial term (off by default)")
    group.add_argument(
        "--adversarial_weight",
        type=float,
        default=0.0,
        help="Weight of the critic's non-saturating GAN loss on the x_0 estimates, relative to the reconstruction "
        "loss at the last layer (adaptive weight, VQGAN-style): 0 trains without critic (released).",
    )
    group.add_argument(
        "--critic_base_channels", type=int, default=32, help="Width of the critic's first layer (PatchGAN)."
    )
    group.add_argument("--critic_learning_rate", type=float, default=2e-4, help="Adam learning rate of the critic.")
    group.add_argument(
        "--critic_warmup_steps",
        type=int,
        default=100,
        help="Steps (of the run's global step count) during which only the critic learns from the network's "
        "estimates; the network's loss gains the adversarial term after them.",
    )


def check_adversarial_arguments(args: argparse.Namespace) -> None:
    """Raises `ArgumentValueError` for a negative weight or a bad critic setting."""
    if args.adversarial_weight < 0:
        raise ArgumentValueError(f"`--adversarial_weight` must be >= 0, got {args.adversarial_weight}.")
    if args.adversarial_weight == 0:
        return
    if args.critic_base_channels < 8 or args.critic_base_channels % 8:
        raise ArgumentValueError(
            f"`--critic_base_channels` must be a positive multiple of 8 (GroupNorm groups), got "
            f"{args.critic_base_channels}."
        )
    if args.critic_learning_rate <= 0 or args.critic_warmup_steps < 0:
        raise ArgumentValueError(
            "`--critic_learning_rate` must be > 0 and `--critic_warmup_steps` >= 0, got "
            f"{args.critic_learning_rate} and {args.critic_warmup_steps}."
        )
    if args.resolution % 8:
        raise ArgumentValueError(
            f"`--resolution` {args.resolution} must be divisible by 8 for the critic (three stride-2 layers)."
        )
