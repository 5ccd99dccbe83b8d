# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""A PatchGAN critic for the optional adversarial term of the texture training."""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .unet_strdiff import check_image_argument, check_same_size


class StrDiffusionPatchCritic(ModelMixin, ConfigMixin):
    r"""
    A PatchGAN critic (pix2pix, Isola et al. 2017): one real/fake logit per overlapping image patch, conditioned on a
    map (the hole mask). Used by `training/train_texture.py --adversarial_weight`; not part of the sampler.

    `num_layers` 4x4 stride-2 convolutions (the first from `in_channels + condition_channels` to `base_channels`, each
    next one doubling the width, GroupNorm after all but the first, LeakyReLU 0.2 after each), then a 3x3 convolution
    to one channel. Images are mapped from [0, 1] to [-1, 1] on the way in.

    Parameters:
        in_channels (`int`, *optional*, defaults to 3): Channels of the scored `sample`.
        condition_channels (`int`, *optional*, defaults to 1): Channels of the `condition` map.
        base_channels (`int`, *optional*, defaults to 32): Width of the first convolution.
        num_layers (`int`, *optional*, defaults to 3): Stride-2 convolutions; the logits are 2**num_layers times
            smaller than the input, each seeing a patch of 2**(num_layers + 1) + 2**num_layers * 2 - 2 pixels.
        norm_num_groups (`int`, *optional*, defaults to 8): GroupNorm groups.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        condition_channels: int = 1,
        base_channels: int = 32,
        num_layers: int = 3,
        norm_num_groups: int = 8,
    ):
        super().__init__()
        if num_layers < 1 or base_channels % norm_num_groups:
            raise ValueError(
                f"`num_layers` must be >= 1 and `base_channels` ({base_channels}) divisible by `norm_num_groups` "
                f"({norm_num_groups})."
            )
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels + condition_channels, base_channels, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = base_channels
        for _ in range(num_layers - 1):
            layers += [
                nn.Conv2d(channels, 2 * channels, kernel_size=4, stride=2, padding=1),
                nn.GroupNorm(norm_num_groups, 2 * channels),
                nn.LeakyReLU(0.2),
            ]
            channels *= 2
        layers.append(nn.Conv2d(channels, 1, kernel_size=3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, sample: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        r"""
        Args:
            sample (`torch.Tensor` of shape `(B, in_channels, H, W)`): images in [0, 1]; H and W divisible by
                2**num_layers.
            condition (`torch.Tensor` of shape `(B, condition_channels, H, W)`): the map the scores depend on.

        Returns:
            `torch.Tensor` of shape `(B, 1, H / 2**num_layers, W / 2**num_layers)`: logits, > 0 for "real".
        """
        check_image_argument("sample", sample, self.config.in_channels)
        check_image_argument("condition", condition, self.config.condition_channels)
        check_same_size("condition", condition, "sample", sample)
        factor = 2**self.config.num_layers
        if sample.shape[-2] % factor or sample.shape[-1] % factor:
            raise ValueError(
                f"`sample`'s height and width must be divisible by 2**num_layers = {factor}, got "
                f"{tuple(sample.shape[-2:])}."
            )
        return self.layers(torch.cat([2 * sample - 1, condition], dim=1))
