# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The time-dependent discriminator of StrDiffusion's adaptive resampling (Denoising-Diffusion-GAN style)."""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .inference import InferenceMixin, conv2d_with_image_bias
from .unet_strdiff import check_image_argument, check_same_size, sinusoidal_timestep_embedding, timestep_tensor

MINIBATCH_STD_GROUP_SIZE = 4
MINIBATCH_STD_EPS = 1e-8
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
#: `blur_downsample` convolves at most this many bytes of input maps at a time: oneDNN's depthwise convolution slowed
#: down 2-6x on larger inputs (measured on 2 cores: e.g. 4 x 256 x 128 x 128 maps in 95 ms whole, 16 ms in chunks).
BLUR_CHUNK_BYTES = 8 * 2**20


def blur_downsample(hidden_states: torch.Tensor) -> torch.Tensor:
    """
    Anti-aliased x2 downsampling (StyleGAN2's FIR `upfirdn2d(x, k, down=2, pad=(1, 1))` with k = [1, 3, 3, 1]).

    Zero-pads one pixel on every side, then applies the normalized depthwise 4x4 kernel `outer(k, k) / 64` with
    stride 2: `(batch, channels, height, width)` -> `(batch, channels, height // 2, width // 2)`. Inputs larger than
    `BLUR_CHUNK_BYTES` run as several depthwise convolutions over groups of (image, channel) maps; the result is the
    same to the bit.
    """
    taps = torch.tensor(BLUR_TAPS, dtype=hidden_states.dtype, device=hidden_states.device)
    kernel = (torch.outer(taps, taps) / taps.sum() ** 2)[None, None]
    batch_size, num_channels, height, width = hidden_states.shape
    if not hidden_states.is_contiguous() and hidden_states.is_contiguous(memory_format=torch.channels_last):
        # a channels-last input (a prepared Winograd convolution's output): one depthwise convolution in that layout,
        # the same result without the transposing copy of the reshape below (2 cores: 0.3 ms instead of 12 ms for
        # 512 x 64 x 64 maps)
        return F.conv2d(
            hidden_states, kernel.expand(num_channels, -1, -1, -1), stride=2, padding=1, groups=num_channels
        )
    maps = hidden_states.reshape(1, batch_size * num_channels, height, width)
    maps_per_chunk = max(1, BLUR_CHUNK_BYTES // (height * width * hidden_states.element_size()))
    chunks = [
        F.conv2d(chunk, kernel.expand(chunk.shape[1], -1, -1, -1), stride=2, padding=1, groups=chunk.shape[1])
        for chunk in maps.split(maps_per_chunk, dim=1)
    ]
    output = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)
    return output.reshape(batch_size, num_channels, *output.shape[-2:])


class _DownBlock(nn.Module):
    r"""
    Residual block of the discriminator, conditioned on the time embedding by addition.

    `h = act(conv1(act(x)) + time_emb_proj(temb))`, optionally blur-downsampling `h` and `x`, then
    `out = (conv2(h) + conv_shortcut(x)) / sqrt(2)`.
    """

    def __init__(
        self, in_channels: int, out_channels: int, temb_channels: int, add_downsample: bool, negative_slope: float
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.add_downsample = add_downsample
        self.negative_slope = negative_slope

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        residual = conv2d_with_image_bias(
            self.conv1, F.leaky_relu(hidden_states, self.negative_slope), self.time_emb_proj(temb)
        )
        residual = F.leaky_relu(residual, self.negative_slope, inplace=True)
        if self.add_downsample:
            residual = blur_downsample(residual)
            hidden_states = blur_downsample(hidden_states)
        return self.conv2(residual).add_(self.conv_shortcut(hidden_states)).div_(math.sqrt(2))


class StrDiffusionDiscriminator(ModelMixin, ConfigMixin, InferenceMixin):
    r"""
    The time-dependent discriminator D(y_t, x_t, t) of StrDiffusion (Liu et al., CVPR 2024).

    It scores how well a texture state matches a structure state at time t; the sampler uses it to accept or reject
    resampled structure candidates. It is Denoising-Diffusion-GAN's small discriminator fed with the concatenated
    texture and structure maps: sinusoidal time embedding + MLP, 1x1 input conv to `2 * base_channels`, four residual
    blocks (`2, 4, 8, 8` times `base_channels`, the last three blur-downsampling x2), a minibatch standard-deviation
    channel (groups of `min(batch_size, 4)` items), a 3x3 conv, LeakyReLU, a spatial **sum** and a linear layer.

    This model inherits from [`ModelMixin`]. Check the superclass documentation for its generic methods (such as
    downloading or saving).

    Parameters:
        in_channels (`int`, *optional*, defaults to 3): Channels of the texture `sample`.
        structure_channels (`int`, *optional*, defaults to 1): Channels of the `structure` map.
        base_channels (`int`, *optional*, defaults to 64): ngf (released test script 64, training scripts 32).
        time_embedding_dim (`int`, *optional*, defaults to 256): Width of the sinusoidal time embedding and its MLP.
        negative_slope (`float`, *optional*, defaults to 0.2): Slope of every LeakyReLU.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        structure_channels: int = 1,
        base_channels: int = 64,
        time_embedding_dim: int = 256,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        if time_embedding_dim < 4:
            raise ValueError(f"`time_embedding_dim` must be >= 4, got {time_embedding_dim}.")
        self.time_embedding = nn.Sequential(
            OrderedDict(
                linear_1=nn.Linear(time_embedding_dim, time_embedding_dim),
                act=nn.LeakyReLU(negative_slope),
                linear_2=nn.Linear(time_embedding_dim, time_embedding_dim),
            )
        )
        self.conv_in = nn.Conv2d(in_channels + structure_channels, 2 * base_channels, kernel_size=1)
        block_channels = [multiplier * base_channels for multiplier in (2, 2, 4, 8, 8)]
        self.down_blocks = nn.ModuleList(
            [
                _DownBlock(
                    block_channels[index],
                    block_channels[index + 1],
                    time_embedding_dim,
                    add_downsample=index > 0,
                    negative_slope=negative_slope,
                )
                for index in range(4)
            ]
        )
        self.conv_out = nn.Conv2d(8 * base_channels + 1, 8 * base_channels, kernel_size=3, padding=1)
        self.proj_out = nn.Linear(8 * base_channels, 1)

    def _check_inputs(self, sample: torch.Tensor, structure: torch.Tensor) -> None:
        check_image_argument("sample", sample, self.config.in_channels)
        check_image_argument("structure", structure, self.config.structure_channels)
        check_same_size("structure", structure, "sample", sample)
        batch_size, _, height, width = sample.shape
        if height < 8 or width < 8:
            raise ValueError(f"`sample` must be at least 8x8 (three x2 downsamplings), got {height}x{width}.")
        group_size = min(batch_size, MINIBATCH_STD_GROUP_SIZE)
        if batch_size % group_size:
            raise ValueError(
                f"The batch size of `sample` ({batch_size}) must be divisible by min(batch_size, "
                f"{MINIBATCH_STD_GROUP_SIZE}) = {group_size} (minibatch standard-deviation groups): use 1, 2, 3 or a "
                f"multiple of {MINIBATCH_STD_GROUP_SIZE}."
            )

    @staticmethod
    def _append_minibatch_std(hidden_states: torch.Tensor) -> torch.Tensor:
        """Appends the mean standard deviation over groups of `min(batch_size, 4)` items as one more channel."""
        batch_size, _, height, width = hidden_states.shape
        group_size = min(batch_size, MINIBATCH_STD_GROUP_SIZE)
        # item b belongs to group b % (batch_size // group_size)
        grouped = hidden_states.reshape(group_size, batch_size // group_size, -1)
        # the biased variance over the group, written out: `grouped.var(dim=0, correction=0)` took 30-40 ms here on
        # 2 cores (a reduction over the outermost dimension) against 0.5 ms
        variance = (grouped - grouped.mean(dim=0)).square().mean(dim=0)
        std = torch.sqrt(variance + MINIBATCH_STD_EPS).mean(dim=-1)
        std_map = std.repeat(group_size)[:, None, None, None].expand(batch_size, 1, height, width)
        return torch.cat([hidden_states, std_map], dim=1)

    def forward(
        self, sample: torch.Tensor, timestep: int | float | torch.Tensor, structure: torch.Tensor
    ) -> torch.Tensor:
        r"""
        The [`StrDiffusionDiscriminator`] forward method.

        Args:
            sample (`torch.Tensor` of shape `(batch_size, in_channels, height, width)`):
                The texture state (the sampler passes y_{t-1} * mask, i.e. holes zeroed), height and width >= 8.
            timestep (`int`, `float` or `torch.Tensor`):
                The integer time t: a Python number or a 0-d / `(1,)` tensor (shared by the batch), or a
                `(batch_size,)` tensor.
            structure (`torch.Tensor` of shape `(batch_size, structure_channels, height, width)`):
                The structure state x_{t-1}.

        Returns:
            `torch.Tensor` of shape `(batch_size,)`: unbounded logits. The batch size must be 1, 2, 3 or a multiple of
            4; items in the same minibatch-stddev group influence each other's logits.
        """
        self._check_inputs(sample, structure)
        timestep = timestep_tensor(timestep, sample.shape[0], sample.device)
        time_features = sinusoidal_timestep_embedding(timestep, self.config.time_embedding_dim)
        temb = self.time_embedding(time_features.to(dtype=sample.dtype))
        temb = F.leaky_relu(temb, self.config.negative_slope)

        hidden_states = self.conv_in(torch.cat([sample, structure], dim=1))
        for down_block in self.down_blocks:
            hidden_states = down_block(hidden_states, temb)
        hidden_states = self.conv_out(self._append_minibatch_std(hidden_states))
        hidden_states = F.leaky_relu(hidden_states, self.config.negative_slope).sum(dim=(2, 3))
        return self.proj_out(hidden_states).reshape(-1)
