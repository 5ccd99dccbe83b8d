# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Scratch memory that the prepared convolutions reuse from call to call.

A Winograd convolution writes intermediate tensors several times the size of its input (the padded input, the
gathered tiles, the transformed tiles, the kernel products). Allocated afresh on every call, each of these large
blocks goes back to the operating system when it is freed (glibc returns blocks above its mmap threshold), and the
next call faults and zeroes its pages again. [`scratch_space`] instead hands out views of a few buffers that grow to
the largest size asked for and are then kept: one set per process, used by one call at a time. A call that finds
them in use by another thread gets freshly allocated tensors instead, so concurrent calls never share memory and
never wait. The buffers are created outside inference mode, so they can be written in and out of
`torch.inference_mode()`.
"""

import contextlib
import math
import threading
from collections.abc import Callable, Iterator

import torch

#: `scratch(slot, shape, like)`: a contiguous tensor of `shape` with `like`'s dtype and device, values undefined.
ScratchAllocator = Callable[[int, tuple[int, ...], torch.Tensor], torch.Tensor]

_BUFFERS: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}
_IN_USE = threading.Lock()


def _shared_tensor(slot: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    numel = math.prod(shape)
    key = (slot, like.dtype, like.device)
    buffer = _BUFFERS.get(key)
    if buffer is None or buffer.numel() < numel:
        _BUFFERS.pop(key, None)  # free the smaller buffer before allocating its replacement
        with torch.inference_mode(False):
            buffer = _BUFFERS[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buffer[:numel].view(shape)


def _fresh_tensor(slot: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(shape)


@contextlib.contextmanager
def scratch_space() -> Iterator[ScratchAllocator]:
    """
    Yields `scratch(slot, shape, like)`. Inside the block, a tensor from a slot stays valid until the next request
    for the same slot (and dtype and device), which reuses its memory: a caller must be done with one tensor of a
    slot before it asks for the next. The process's buffers if no other thread is using them, else fresh tensors.
    """
    if not _IN_USE.acquire(blocking=False):
        yield _fresh_tensor
        return
    try:
        yield _shared_tensor
    finally:
        _IN_USE.release()


def release_scratch_memory() -> None:
    """Frees the prepared convolutions' scratch buffers (the next Winograd convolution allocates them again)."""
    with _IN_USE:
        _BUFFERS.clear()
