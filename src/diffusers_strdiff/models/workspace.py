# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Scratch memory that the prepared convolutions reuse from call to call.

A Winograd convolution writes four intermediate tensors several times the size of its input (the padded input, the
gathered tiles, the transformed tiles, the kernel products). Allocated afresh on every call, each of these large
blocks goes back to the operating system when it is freed (glibc returns blocks above its mmap threshold), and the
next call faults and zeroes its pages again. `scratch_tensor` instead hands out views of a few buffers that grow to
the largest size asked for and are then kept, one set per thread, so that concurrent calls from several threads never
share one. A buffer is created outside inference mode, so it can be written in and out of `torch.inference_mode()`.
"""

import threading

import torch

_BUFFERS = threading.local()


def scratch_tensor(slot: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """
    A contiguous tensor of `shape`, with `like`'s dtype and device, that lives in this thread's scratch buffer `slot`;
    its values are undefined. The next request for the same slot (in this thread, dtype and device) reuses the memory,
    so a caller must be done with one tensor of a slot before it asks for the next.
    """
    numel = 1
    for size in shape:
        numel *= size
    buffers = getattr(_BUFFERS, "buffers", None)
    if buffers is None:
        buffers = _BUFFERS.buffers = {}
    key = (slot, like.dtype, like.device)
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffers.pop(key, None)  # free the smaller buffer before allocating its replacement
        with torch.inference_mode(False):
            buffer = buffers[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buffer[:numel].view(shape)


def release_scratch_memory() -> None:
    """Frees this thread's scratch buffers (the next prepared convolution allocates them again)."""
    _BUFFERS.buffers = {}
