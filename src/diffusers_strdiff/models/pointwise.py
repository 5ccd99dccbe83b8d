# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
1x1 convolutions as one matrix product (`model.prepare_for_inference()`).

oneDNN ran a 1x1 convolution of an NCHW map 1.05-2.1x slower than the matrix product it is (2 threads, AVX-512, the
released U-Nets' 0.3-3 GFLOP layers: 192 -> 128 channels on a 128 x 128 map 3.5 ms against 2.7 ms, on 4 of them 44 ms
against 21 ms). A
prepared 1x1 convolution multiplies its `(out, in)` weight into the map as it is laid out: `weight @ x` per image for
an NCHW map (NCHW result), `x @ weight^T` over all pixels for a channels-last one (channels-last result).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .autograd_mode import records_for_autograd


def is_pointwise_shape(conv: nn.Conv2d) -> bool:
    """Whether `conv` is a plain 1x1 convolution: stride 1, no padding, no dilation, one group."""
    return (
        conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def pointwise_conv2d(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """
    `F.conv2d(hidden_states, weight, bias)` for `(out, in, 1, 1)` kernels and a `(B, in, H, W)` map, as a matrix
    product; the result `(B, out, H, W)` has the input's memory format (NCHW or channels-last; any other layout runs
    `F.conv2d`).
    """
    batch_size, in_channels, height, width = hidden_states.shape
    matrix = weight.view(weight.shape[0], in_channels)
    if hidden_states.is_contiguous():
        pixels = hidden_states.view(batch_size, in_channels, height * width)
        output = torch.bmm(matrix.expand(batch_size, -1, -1), pixels)  # `matmul` would transpose its result
        if bias is not None:
            output.add_(bias[:, None])
        return output.view(batch_size, -1, height, width)
    if hidden_states.is_contiguous(memory_format=torch.channels_last):
        pixels = hidden_states.permute(0, 2, 3, 1).reshape(-1, in_channels)
        output = pixels @ matrix.t() if bias is None else torch.addmm(bias, pixels, matrix.t())
        return output.view(batch_size, height, width, -1).permute(0, 3, 1, 2)
    return F.conv2d(hidden_states, weight, bias)


class _InferencePointwiseConv2dMixin:
    """Forward of a prepared 1x1 `nn.Conv2d`: [`pointwise_conv2d`] where no gradient is recorded (unless switched off
    by `prepare_for_inference(pointwise_matmul=False)`)."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.__dict__.get("_matmul", True) or records_for_autograd(self, hidden_states):
            return super().forward(hidden_states)
        return pointwise_conv2d(hidden_states, self.weight, self.bias)
