# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Spatially-adaptive (SPADE) residual block that injects the structure map into the texture U-Net (paper Eq.12)."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

POSITION_NORM_EPS = 1e-5
LEAKY_RELU_SLOPE = 0.2


class _SpatiallyAdaptiveNorm(nn.Module):
    r"""
    Position normalization modulated by a guidance map: `norm(x) * (1 + gamma(S)) + beta(S)`.

    `norm(x)` standardises every pixel over the channel dimension with the **unbiased** channel variance
    (`(x - mean_c) / sqrt(var_c + 1e-5)`, as the released code), and `gamma`, `beta` are 3x3 convolutions of a shared
    3x3 convolution + ReLU of the guidance map, nearest-resized to the feature size.

    Parameters:
        num_channels (`int`): Number of channels C of the normalized features.
        guidance_channels (`int`): Number of channels of the guidance map.
        hidden_channels (`int`, *optional*, defaults to 16): Channels of the shared convolution.
    """

    def __init__(self, num_channels: int, guidance_channels: int, hidden_channels: int = 16):
        super().__init__()
        self.shared_conv = nn.Conv2d(guidance_channels, hidden_channels, kernel_size=3, padding=1)
        self.gamma_conv = nn.Conv2d(hidden_channels, num_channels, kernel_size=3, padding=1)
        self.beta_conv = nn.Conv2d(hidden_channels, num_channels, kernel_size=3, padding=1)

    def forward(self, hidden_states: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """
        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, num_channels, height, width)`): Features to normalize.
            guidance (`torch.Tensor` of shape `(batch_size, guidance_channels, guidance_height, guidance_width)`):
                Guidance map of any spatial size; it is resized to `(height, width)` with nearest interpolation.

        Returns:
            `torch.Tensor` of the shape of `hidden_states`.
        """
        mean = hidden_states.mean(dim=1, keepdim=True)
        variance = hidden_states.var(dim=1, keepdim=True, correction=1)
        normalized = (hidden_states - mean) / torch.sqrt(variance + POSITION_NORM_EPS)

        guidance = F.interpolate(guidance, size=hidden_states.shape[-2:], mode="nearest")
        # gamma and beta in the memory format of the features (NCHW or channels-last): the products below then read
        # all three alike
        channels_last = hidden_states.is_contiguous(memory_format=torch.channels_last)
        shared = F.relu(self.shared_conv(guidance))
        shared = shared.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return normalized * (1 + self.gamma_conv(shared)) + self.beta_conv(shared)


class SPADEResidualBlock(nn.Module):
    r"""
    The SPADE residual block of StrDiffusion's texture network (Park et al., 2019; spectral-norm, position-norm variant).

    `out = x + conv_1(leaky_relu(norm_1(conv_0(leaky_relu(norm_0(x, S))), S)))`, where `conv_0` and `conv_1` are
    spectrally normalised 3x3 convolutions, `norm_*` are spatially-adaptive normalizations driven by the guidance map S
    and the LeakyReLU slope is 0.2. The shortcut is the identity (input and output channels are equal).

    The spectral normalisation is PyTorch's `torch.nn.utils.parametrizations.spectral_norm`: in eval mode the
    effective weight is `original / dot(u, original.flatten(1) @ v)` with the stored vectors `u`, `v`; in train mode
    one power iteration updates them first.

    Parameters:
        num_channels (`int`): Number of input and output channels.
        guidance_channels (`int`, *optional*, defaults to 1): Number of channels of the guidance map.
        hidden_channels (`int`, *optional*, defaults to 16): Hidden channels of the normalization's shared conv.
    """

    def __init__(self, num_channels: int, guidance_channels: int = 1, hidden_channels: int = 16):
        super().__init__()
        self.norm_0 = _SpatiallyAdaptiveNorm(num_channels, guidance_channels, hidden_channels)
        self.conv_0 = spectral_norm(nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1))
        self.norm_1 = _SpatiallyAdaptiveNorm(num_channels, guidance_channels, hidden_channels)
        self.conv_1 = spectral_norm(nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1))

    def forward(self, hidden_states: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """
        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, num_channels, height, width)`): Input features.
            guidance (`torch.Tensor` of shape `(batch_size, guidance_channels, guidance_height, guidance_width)`):
                Guidance map (StrDiffusion: the structure map, values ~[0, 1]) of any spatial size.

        Returns:
            `torch.Tensor` of the shape of `hidden_states`.
        """
        residual = self.conv_0(F.leaky_relu(self.norm_0(hidden_states, guidance), LEAKY_RELU_SLOPE))
        residual = self.conv_1(F.leaky_relu(self.norm_1(residual, guidance), LEAKY_RELU_SLOPE))
        return hidden_states + residual
