# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Nearest x2 upsampling, and the U-Net's "upsample, then 3x3 convolution" as one sub-pixel convolution.

A 3x3 convolution of a nearest-upsampled map reads each input pixel through several taps at once: output pixel
`(2i + a, 2j + b)` sees input rows `i - 1, i` (`a = 0`) or `i, i + 1` (`a = 1`), and likewise for columns. Each of the
four output phases `(a, b)` is therefore a 2x2 convolution of the *input* map, with the 3x3 taps that land on the same
input pixel summed (`subpixel_weight`). All four run as one 2x2 convolution with `4 * out` channels on the zero-padded
input; their outputs are interleaved into the `2H x 2W` result. That is 16 multiplications per 2x2 block of output
pixels instead of 36, and the upsampled map is never written.
"""

import torch
import torch.nn.functional as F

#: Nearest x2 upsampling of maps with at most this many pixels repeats each pixel with `expand` instead of
#: `F.interpolate`, whose NCHW CPU kernel took 3-4x longer on them (2 threads: 1,024 x 16 x 16 maps 7.5 ms against 2.4,
#: 512 x 32 x 32 13.8 ms against 4.1, 4 x 512 x 32 x 32 130 ms against 34) but was faster on 64 x 64 maps. Same values.
UPSAMPLE_BY_EXPAND_MAX_PIXELS = 32 * 32


def upsample_nearest_2x(hidden_states: torch.Tensor) -> torch.Tensor:
    """`F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")` for `(B, C, H, W)` maps; `(B, C, 2H, 2W)`."""
    batch_size, channels, height, width = hidden_states.shape
    if height * width > UPSAMPLE_BY_EXPAND_MAX_PIXELS:
        return F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
    repeated = hidden_states[:, :, :, None, :, None].expand(batch_size, channels, height, 2, width, 2)
    return repeated.reshape(batch_size, channels, 2 * height, 2 * width)


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """
    `(out, in, 3, 3)` kernels of a convolution applied after nearest x2 upsampling -> the `(4 * out, in, 2, 2)` kernels
    of its four output phases `(a, b)` (phase-major: channel `(2a + b) * out + o`), summed in float64.
    """
    kernels = weight.detach().double()
    # phase 0 reads input offsets (-1, 0) with taps (0, 1 + 2); phase 1 reads (0, +1) with taps (0 + 1, 2)
    rows = (
        torch.stack([kernels[:, :, 0], kernels[:, :, 1] + kernels[:, :, 2]], dim=2),
        torch.stack([kernels[:, :, 0] + kernels[:, :, 1], kernels[:, :, 2]], dim=2),
    )
    phases = [
        torch.stack(columns, dim=3)
        for row in rows
        for columns in ((row[..., 0], row[..., 1] + row[..., 2]), (row[..., 0] + row[..., 1], row[..., 2]))
    ]
    return torch.cat(phases).to(weight.dtype)


def upsample_conv3x3_subpixel(
    hidden_states: torch.Tensor, phase_weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """
    `F.conv2d(upsample_nearest_2x(hidden_states), weight, bias, padding=1)` as a sub-pixel convolution, with
    `phase_weight = subpixel_weight(weight)`. `hidden_states` is `(B, in, H, W)`; returns `(B, out, 2H, 2W)`, NCHW.
    """
    height, width = hidden_states.shape[-2:]
    out_channels = phase_weight.shape[0] // 4
    phase_bias = None if bias is None else bias.repeat(4)
    # phase (a, b) of output pixel (i, j) is at row i + a, column j + b of this (H + 1) x (W + 1) output (the 2x2
    # convolution pads inside the kernel: no padded copy of the input)
    phases = F.conv2d(hidden_states, phase_weight, phase_bias, padding=1)
    batch_stride, channel_stride, row_stride, column_stride = phases.stride()
    interleaved = phases.as_strided(
        (len(phases), out_channels, height, 2, width, 2),
        (
            batch_stride,
            channel_stride,
            row_stride,
            2 * out_channels * channel_stride + row_stride,
            column_stride,
            out_channels * channel_stride + column_stride,
        ),
        phases.storage_offset(),
    )
    return interleaved.contiguous().view(len(phases), out_channels, 2 * height, 2 * width)
