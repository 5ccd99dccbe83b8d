# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Copies between memory layouts that PyTorch's generic copy runs slowly."""

import torch

#: [`copy_to_channels_last`] copies this many channels at a time ...
CHANNEL_BLOCK = 64
#: ... from maps with at least this many and at most `BLOCKED_COPY_MAX_PIXELS` pixels, which is where it measured
#: faster (2 threads, AVX-512): PyTorch's copy reads one value from every channel plane per output pixel, and with
#: planes 4 KiB apart (32 x 32 maps and multiples) those reads evict each other from the caches. 1024 x 32 x 32
#: took 3.6 ms against 0.6 ms in blocks, 4 x 768 x 32 x 32 9.5 ms against 1.6, 384 x 64 x 64 1.0 against 0.7,
#: 192 x 128 x 128 1.65 against 1.55; 16 x 16 maps were slower in blocks, 256 x 256 maps 10 % slower.
BLOCKED_COPY_MIN_PIXELS = 32 * 32
BLOCKED_COPY_MAX_PIXELS = 128 * 128


def copy_to_channels_last(destination: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """
    `destination.copy_(source.permute(0, 2, 3, 1))`: `source` is a `(B, C, H, W)` map and `destination` a `(B, H, W,
    C)` tensor (or view) whose channels are adjacent in memory. Copies a contiguous (NCHW) `source` in blocks of
    channels where that is faster. Returns `destination`.
    """
    channels, pixels = source.shape[1], source.shape[2] * source.shape[3]
    if (
        channels <= CHANNEL_BLOCK
        or not source.is_contiguous()
        or not BLOCKED_COPY_MIN_PIXELS <= pixels <= BLOCKED_COPY_MAX_PIXELS
    ):
        return destination.copy_(source.permute(0, 2, 3, 1))
    for start in range(0, channels, CHANNEL_BLOCK):
        block = slice(start, start + CHANNEL_BLOCK)
        destination[..., block].copy_(source[:, block].permute(0, 2, 3, 1))
    return destination
