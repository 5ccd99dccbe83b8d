# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The noise-predicting U-Net of StrDiffusion (IR-SDE's conditional U-Net, optionally with SPADE structure guidance)."""

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from .attention import _LinearAttentionBlock
from .autograd_mode import records_for_autograd
from .inference import InferenceMixin, upsample_and_conv3x3
from .spade import SPADEResidualBlock


def timestep_tensor(timestep: int | float | torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """
    Turns a timestep argument into a 1-D tensor with 1 or `batch_size` entries on `device`.

    Args:
        timestep (`int`, `float` or `torch.Tensor`): A Python number, a 0-d tensor, or a tensor of shape `(1,)` or
            `(batch_size,)`. A Python number becomes a tensor of shape `(1,)` (the released behaviour) that
            broadcasts over the batch.
        batch_size (`int`): Batch size of the network input.
        device (`torch.device`): Device of the network input.

    Returns:
        `torch.Tensor` of shape `(1,)` or `(batch_size,)`.
    """
    if not torch.is_tensor(timestep):
        timestep = torch.tensor([timestep])
    if timestep.ndim == 0:
        timestep = timestep.reshape(1)
    if timestep.ndim != 1 or timestep.shape[0] not in (1, batch_size):
        raise ValueError(
            f"`timestep` must be a number, a 0-d tensor or a 1-D tensor with 1 or batch_size ({batch_size}) "
            f"entries, got a tensor of shape {tuple(timestep.shape)}."
        )
    return timestep.to(device)


def sinusoidal_timestep_embedding(timesteps: torch.Tensor, embedding_dim: int) -> torch.Tensor:
    """
    The sinusoidal time embedding of the released networks: `[sin(t f_j), cos(t f_j)]`, `f_j = 10000^(-j / (half - 1))`.

    The frequencies are computed in float32 as `exp(j * -(ln(10000) / (half - 1)))`, exactly like the released code
    (diffusers' `get_timestep_embedding(t, dim, flip_sin_to_cos=False, downscale_freq_shift=1)` is the same function
    but rounds differently, by up to 3e-5 at t = 400). An odd `embedding_dim` is zero-padded by one column.

    Args:
        timesteps (`torch.Tensor` of shape `(batch_size,)`): Raw times t (integers 1..T, any numeric dtype).
        embedding_dim (`int`): Width of the embedding, at least 4.

    Returns:
        `torch.Tensor` of shape `(batch_size, embedding_dim)`, float32, values in [-1, 1].
    """
    half_dim = embedding_dim // 2
    exponent = -(math.log(10000) / (half_dim - 1))
    frequencies = torch.exp(torch.arange(half_dim, dtype=torch.float32, device=timesteps.device) * exponent)
    arguments = timesteps.float()[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.sin(arguments), torch.cos(arguments)], dim=1)
    return F.pad(embedding, (0, embedding_dim % 2))


def check_image_argument(name: str, tensor: torch.Tensor, num_channels: int) -> None:
    """Raises a `ValueError` naming `name` unless `tensor` is a 4-D `(batch_size, num_channels, height, width)` tensor."""
    if not torch.is_tensor(tensor) or tensor.ndim != 4:
        shape = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
        raise ValueError(f"`{name}` must be a 4-D tensor (batch_size, {num_channels}, height, width), got {shape}.")
    if tensor.shape[1] != num_channels:
        raise ValueError(f"`{name}` must have {num_channels} channel(s), got shape {tuple(tensor.shape)}.")


def check_same_size(name: str, tensor: torch.Tensor, reference_name: str, reference: torch.Tensor) -> None:
    """Raises a `ValueError` unless `tensor` has the batch size, height and width of `reference`."""
    expected = (reference.shape[0], *reference.shape[2:])
    if (tensor.shape[0], *tensor.shape[2:]) != expected:
        raise ValueError(
            f"`{name}` must have the batch size, height and width of `{reference_name}` {expected}, got shape "
            f"{tuple(tensor.shape)}."
        )


class _ResnetBlock(nn.Module):
    r"""
    Residual block without normalization, modulated by the time embedding (scale/shift after the first conv).

    `h = silu(conv1(x) * (1 + scale) + shift)`, `out = silu(conv2(h)) + shortcut(x)`, where `(scale, shift)` is a
    linear projection of `silu(temb)` and `shortcut` is a 1x1 convolution when the channel count changes. The
    convolutions have no bias.

    After `prepare_for_inference()` (which sets `inplace_inference`), no-grad calls in eval mode compute the same
    operations in place on the convolutions' outputs (three fewer full-size tensors per call).
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int):
        super().__init__()
        self.time_emb_proj = nn.Linear(temb_channels, 2 * out_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False) if in_channels != out_channels else None
        )
        self.inplace_inference = False

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.time_emb_proj(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        shortcut = hidden_states if self.conv_shortcut is None else self.conv_shortcut(hidden_states)
        if self.inplace_inference and not records_for_autograd(self, hidden_states, temb):
            residual = F.silu(self.conv1(hidden_states).mul_(scale + 1).add_(shift), inplace=True)
            return F.silu(self.conv2(residual), inplace=True).add_(shortcut)
        residual = F.silu(self.conv1(hidden_states) * (scale + 1) + shift)
        return F.silu(self.conv2(residual)) + shortcut


class _DownBlock(nn.Module):
    r"""
    One encoder level: two [`_ResnetBlock`]s, linear attention, a channel-doubling conv (4x4 stride 2, or 3x3 without
    stride and bias at the innermost level) and, for a guided network, a [`SPADEResidualBlock`].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        attention_heads: int,
        attention_head_dim: int,
        add_downsample: bool,
        guidance_channels: int,
        spade_hidden_channels: int,
    ):
        super().__init__()
        self.resnets = nn.ModuleList([_ResnetBlock(in_channels, in_channels, temb_channels) for _ in range(2)])
        self.attention = _LinearAttentionBlock(in_channels, attention_heads, attention_head_dim)
        if add_downsample:
            self.downsample = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        else:
            self.downsample = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.spade = (
            SPADEResidualBlock(out_channels, guidance_channels, spade_hidden_channels) if guidance_channels else None
        )

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor, guidance: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        first_skip = self.resnets[0](hidden_states, temb)
        second_skip = self.attention(self.resnets[1](first_skip, temb))
        hidden_states = self.downsample(second_skip)
        if self.spade is not None:
            hidden_states = self.spade(hidden_states, guidance)
        return hidden_states, (first_skip, second_skip)


class _MidBlock(nn.Module):
    r"""The bottleneck: [`_ResnetBlock`], linear attention, [`_ResnetBlock`]."""

    def __init__(self, num_channels: int, temb_channels: int, attention_heads: int, attention_head_dim: int):
        super().__init__()
        self.resnets = nn.ModuleList([_ResnetBlock(num_channels, num_channels, temb_channels) for _ in range(2)])
        self.attention = _LinearAttentionBlock(num_channels, attention_heads, attention_head_dim)

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, temb)
        hidden_states = self.attention(hidden_states)
        return self.resnets[1](hidden_states, temb)


class _UpBlock(nn.Module):
    r"""
    One decoder level: two [`_ResnetBlock`]s fed with the concatenated skip features of the matching encoder level
    (last one first), linear attention, and a channel-halving 3x3 conv, preceded by a nearest x2 upsampling (conv with
    bias) except at the outermost level (conv without bias).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        temb_channels: int,
        attention_heads: int,
        attention_head_dim: int,
        add_upsample: bool,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [_ResnetBlock(in_channels + skip_channels, in_channels, temb_channels) for _ in range(2)]
        )
        self.attention = _LinearAttentionBlock(in_channels, attention_heads, attention_head_dim)
        self.add_upsample = add_upsample
        self.upsample = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=add_upsample)

    def forward(
        self, hidden_states: torch.Tensor, skip_states: tuple[torch.Tensor, torch.Tensor], temb: torch.Tensor
    ) -> torch.Tensor:
        for resnet, skip in zip(self.resnets, reversed(skip_states), strict=True):
            hidden_states = resnet(torch.cat([hidden_states, skip], dim=1), temb)
        hidden_states = self.attention(hidden_states)
        if self.add_upsample:
            return upsample_and_conv3x3(self.upsample, hidden_states)
        return self.upsample(hidden_states)


class StrDiffusionUNet2DModel(ModelMixin, ConfigMixin, InferenceMixin):
    r"""
    The noise-predicting U-Net of StrDiffusion (Liu et al., CVPR 2024), i.e. IR-SDE's conditional U-Net.

    It predicts the noise `eps_hat` of the mean-reverting SDE state `x_t` given its mean `mu` (the masked image or
    masked edge map) and the integer time t (or, for networks trained with another `prediction_type` of
    [`MeanRevertingSDEScheduler`], x_0 or x_0 - mu: the architecture is the same). With `guidance_channels > 0` it is the structure-guided *texture*
    network eps_phi(y_t, mu_y, t, S): every encoder level ends with a [`SPADEResidualBlock`] conditioned on the
    structure map S. With `guidance_channels = 0` it is the *structure* network eps_varphi(x_t, mu_x, t).

    The input `cat(x_t - mu, mu)` is reflect-padded at the bottom/right to a multiple of `2 ** depth` and the output
    cropped back, so any height and width work. The network has no normalization other than channel layer norms in
    its linear attention layers, no dropout and no self-attention.

    This model inherits from [`ModelMixin`]. Check the superclass documentation for its generic methods (such as
    downloading or saving).

    Parameters:
        in_channels (`int`, *optional*, defaults to 3): Channels of `sample` and `condition` (released texture net 3,
            structure net 1).
        out_channels (`int`, *optional*, defaults to 3): Channels of the predicted noise.
        base_channels (`int`, *optional*, defaults to 64): Channels of the first level (nf); level i has
            `base_channels * 2**i` channels and the time embedding `4 * base_channels`.
        depth (`int`, *optional*, defaults to 4): Number of encoder/decoder levels (`depth - 1` downsamplings).
        guidance_channels (`int`, *optional*, defaults to 0): Channels of the SPADE guidance map; 0 builds an unguided
            network (released texture net 1, structure net 0).
        attention_heads (`int`, *optional*, defaults to 4): Heads of the linear attention layers.
        attention_head_dim (`int`, *optional*, defaults to 32): Channels per head of the linear attention layers.
        spade_hidden_channels (`int`, *optional*, defaults to 16): Hidden channels of the SPADE normalizations.
        known_mask_channel (`bool`, *optional*, defaults to `False`): Adds the known mask (1 = known) as one more
            input channel, so that the network sees where the hole is even when `mu` has no zeros left (a classically
            filled mean). Off for the released networks.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        depth: int = 4,
        guidance_channels: int = 0,
        attention_heads: int = 4,
        attention_head_dim: int = 32,
        spade_hidden_channels: int = 16,
        known_mask_channel: bool = False,
    ):
        super().__init__()
        if depth < 1 or base_channels < 4:
            raise ValueError(f"`depth` must be >= 1 and `base_channels` >= 4, got {depth} and {base_channels}.")
        temb_channels = 4 * base_channels
        level_channels = [base_channels * 2**level for level in range(depth + 1)]

        # Input: cat(x_t - mu, mu) (released), plus the known mask when `known_mask_channel`.
        input_channels = 2 * in_channels + int(known_mask_channel)
        self.conv_in = nn.Conv2d(input_channels, base_channels, kernel_size=7, padding=3, bias=False)
        self.time_embedding = TimestepEmbedding(base_channels, temb_channels, act_fn="gelu")

        self.down_blocks = nn.ModuleList(
            [
                _DownBlock(
                    level_channels[level],
                    level_channels[level + 1],
                    temb_channels,
                    attention_heads,
                    attention_head_dim,
                    add_downsample=level < depth - 1,
                    guidance_channels=guidance_channels,
                    spade_hidden_channels=spade_hidden_channels,
                )
                for level in range(depth)
            ]
        )
        self.mid_block = _MidBlock(level_channels[depth], temb_channels, attention_heads, attention_head_dim)
        self.up_blocks = nn.ModuleList(
            [
                _UpBlock(
                    level_channels[level + 1],
                    level_channels[level],
                    level_channels[level],
                    temb_channels,
                    attention_heads,
                    attention_head_dim,
                    add_upsample=level > 0,
                )
                for level in reversed(range(depth))
            ]
        )
        self.final_resnet = _ResnetBlock(2 * base_channels, base_channels, temb_channels)
        self.conv_out = nn.Conv2d(base_channels, out_channels, kernel_size=3, padding=1)

    def _check_inputs(
        self,
        sample: torch.Tensor,
        condition: torch.Tensor,
        guidance: torch.Tensor | None,
        known_mask: torch.Tensor | None,
    ) -> tuple[int, int]:
        """Validates the inputs and returns the bottom/right reflect padding that makes them multiples of 2**depth."""
        check_image_argument("sample", sample, self.config.in_channels)
        check_image_argument("condition", condition, self.config.in_channels)
        check_same_size("condition", condition, "sample", sample)
        if self.config.known_mask_channel:
            if known_mask is None:
                raise ValueError(
                    "`known_mask` is required: this network takes it as an input (known_mask_channel=True)."
                )
            check_image_argument("known_mask", known_mask, 1)
            check_same_size("known_mask", known_mask, "sample", sample)
        elif known_mask is not None:
            raise ValueError("`known_mask` must be None: this network has no mask input (known_mask_channel=False).")
        if self.config.guidance_channels:
            if guidance is None:
                raise ValueError(
                    f"`guidance` is required: this network is structure-guided (guidance_channels="
                    f"{self.config.guidance_channels})."
                )
            check_image_argument("guidance", guidance, self.config.guidance_channels)
            check_same_size("guidance", guidance, "sample", sample)
        elif guidance is not None:
            raise ValueError("`guidance` must be None: this network is not guided (guidance_channels=0).")

        multiple = 2**self.config.depth
        height, width = sample.shape[-2:]
        pad_height, pad_width = -height % multiple, -width % multiple
        if pad_height >= height or pad_width >= width:
            raise ValueError(
                f"`sample` of size {height}x{width} is too small: reflect padding it to a multiple of 2**depth = "
                f"{multiple} needs height > {pad_height} and width > {pad_width}."
            )
        return pad_height, pad_width

    def forward(
        self,
        sample: torch.Tensor,
        timestep: int | float | torch.Tensor,
        condition: torch.Tensor,
        guidance: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        r"""
        The [`StrDiffusionUNet2DModel`] forward method.

        Args:
            sample (`torch.Tensor` of shape `(batch_size, in_channels, height, width)`):
                The SDE state x_t (image-like values, ~[0, 1] plus noise).
            timestep (`int`, `float` or `torch.Tensor`):
                The integer time t in 1..T: a Python number or a 0-d / `(1,)` tensor (shared by the batch), or a
                `(batch_size,)` tensor (one per item).
            condition (`torch.Tensor` of shape `(batch_size, in_channels, height, width)`):
                The SDE mean mu (masked image or masked edge map, [0, 1], holes at 0).
            guidance (`torch.Tensor` of shape `(batch_size, guidance_channels, height, width)`, *optional*):
                The structure map S (~[0, 1]) of a guided network; must be `None` for an unguided one.
            known_mask (`torch.Tensor` of shape `(batch_size, 1, height, width)`, *optional*):
                1 on known pixels, 0 in the hole; required by (and only accepted by) a network built with
                `known_mask_channel=True`, which reads it as an extra input channel.
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether to return a [`~models.unets.unet_2d.UNet2DOutput`] instead of a plain tuple.

        Returns:
            [`~models.unets.unet_2d.UNet2DOutput`] or `tuple`: the prediction of shape
            `(batch_size, out_channels, height, width)`: the noise eps_hat (unbounded, ~unit variance) for the
            released networks, x_0 or x_0 - mu for networks trained with those prediction types; in `sample` or the
            first element.
        """
        pad_height, pad_width = self._check_inputs(sample, condition, guidance, known_mask)
        timestep = timestep_tensor(timestep, sample.shape[0], sample.device)
        height, width = sample.shape[-2:]

        inputs = [sample - condition, condition] + ([known_mask.to(sample.dtype)] if known_mask is not None else [])
        hidden_states = torch.cat(inputs, dim=1)
        hidden_states = F.pad(hidden_states, (0, pad_width, 0, pad_height), mode="reflect")
        hidden_states = self.conv_in(hidden_states)
        input_features = hidden_states
        time_features = sinusoidal_timestep_embedding(timestep, self.config.base_channels)
        temb = self.time_embedding(time_features.to(dtype=hidden_states.dtype))

        skip_states = []
        for down_block in self.down_blocks:
            hidden_states, level_skip_states = down_block(hidden_states, temb, guidance)
            skip_states.append(level_skip_states)
        hidden_states = self.mid_block(hidden_states, temb)
        for up_block, level_skip_states in zip(self.up_blocks, reversed(skip_states), strict=True):
            hidden_states = up_block(hidden_states, level_skip_states, temb)

        hidden_states = self.final_resnet(torch.cat([hidden_states, input_features], dim=1), temb)
        noise_prediction = self.conv_out(hidden_states)[..., :height, :width]

        if not return_dict:
            return (noise_prediction,)
        return UNet2DOutput(sample=noise_prediction)
