# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Inference-only speed-ups of the StrDiffusion networks (`model.prepare_for_inference()`).

The networks spend ~90 % of a CPU call in 3x3 convolutions, most of them at the low-resolution, wide levels, where
oneDNN's direct convolution is bound by reading the weights. `prepare_for_inference()` makes every 3x3, stride-1,
zero-padded convolution of a model

* cache its effective weight (the spectral-norm division `original / sigma` of the SPADE convolutions is then done
  once instead of on every call),
* run through NNPACK's Winograd F(6x6, 3x3) convolution where that pays: large layers (`NNPACK_MIN_*`: at least 64
  channels on maps of at least 64 x 64), one image at a time; its error against a float64 convolution is ~10x that
  of oneDNN's direct float32 convolution, well within the released fixtures' tolerance, and
* run as a Winograd convolution (Lavin & Gray, 2016) where that pays: wide layers (`WINOGRAD_MIN_CHANNELS`), a
  bounded number of tiles at a time (`WINOGRAD_MAX_TRANSFORM_BYTES`: whole images, or bands of one). The 3x3
  kernels are transformed once (in float64, on the first such call) and the convolution becomes a batch of matrix
  products: F(2x2, 3x3), 16 products with 16/36 of the multiplications, or, for calls with many output tiles
  (`WINOGRAD_F4_MIN_TILES`), F(4x4, 3x3), 36 products with 1/4 of them. The result is the same
  convolution up to float rounding (measured against a float64 convolution: F(2x2, 3x3) ~10x *smaller* error than
  oneDNN's direct float32 convolution, F(4x4, 3x3) 1-2x its error). Its intermediate tensors live in scratch
  buffers that are kept from call to call (`workspace.py`; [`release_scratch_memory`] frees them).

Which algorithm pays depends on the CPU: NNPACK and Winograd ran 1.1-2.6x faster than oneDNN's direct convolution
on an AVX2 CPU, while on an AVX-512 CPU the direct convolution is the fastest on 128 x 128 maps. By default
(`autotune=True`) each convolution therefore times the algorithms it may use on its first call per input shape and
keeps the fastest (one choice per layer shape, input shape and thread count, shared by the process); the thresholds
above then only bound what is tried. `autotune=False` lets the thresholds choose, the same in every process.

A convolution that follows a nearest x2 upsampling (the U-Nets' decoder, [`upsample_and_conv3x3`]) may run both as
one sub-pixel convolution of the small map (`upsampling.py`): 16 instead of 36 multiplications per 2x2 output pixels
and no upsampled map, kept where it measured faster than upsampling and then convolving (`subpixel_upsampling`).

It also switches the linear attention blocks to their chunked CPU path (`_LinearAttentionBlock.forward_chunked`),
which computes the same attention a few thousand pixels at a time instead of on whole-image projections, the U-Nets'
residual blocks to their in-place path (`inplace_inference`), and the 1x1 convolutions to matrix products
(`pointwise.py`). [`conv2d_with_image_bias`] lets a model add a per-image bias (the discriminator's time embedding)
inside a prepared convolution.

The caches are keyed on the parameters' storage and version counters, so `load_state_dict`, in-place updates and
`.to(...)` invalidate them. Training mode and calls that need gradients use the plain convolution.
"""

import functools
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention import _LinearAttentionBlock
from .autograd_mode import records_for_autograd
from .layout import copy_to_channels_last
from .pointwise import _InferencePointwiseConv2dMixin, is_pointwise_shape
from .upsampling import subpixel_weight, upsample_conv3x3_subpixel, upsample_nearest_2x
from .workspace import scratch_space

#: A 3x3 convolution may run as Winograd when the harmonic mean of its input and output channels is at least this
#: (narrower layers are bound by the transforms, which eager PyTorch does not fuse, and stay direct). 64 since the
#: intermediates stay in scratch buffers: the discriminator's 128-channel and the U-Nets' 64- and 128-channel layers
#: at 128 x 128 then measured faster as F(4x4, 3x3) than direct or NNPACK (2 threads, AVX-512; 256 before).
WINOGRAD_MIN_CHANNELS = 64
#: A Winograd call transforms at most this many bytes of input tiles at a time (16 values per 2x2 output tile, 36 per
#: 4x4 tile, and input channel): a larger call runs in chunks of whole images, or of bands of tile rows when one image
#: exceeds it. This bounds the scratch memory of the intermediates (`workspace.py`) and keeps them near the caches.
WINOGRAD_MAX_TRANSFORM_BYTES = 32 * 2**20
#: A Winograd call uses 4x4 output tiles, F(4x4, 3x3) (36 products of 4x4 outputs: 2.25 multiplications per output
#: and tap instead of F(2x2, 3x3)'s 4), when it has at least this many of them. With fewer rows the products are bound
#: by reading the kernels, 36/16 times more of them, and F(2x2, 3x3) is as fast or faster (measured, 2 threads,
#: 512-1024 channels: F(4x4) 1.2-1.6x faster with 64 tiles, level with 32, 0.7-0.9x with 16).
WINOGRAD_F4_MIN_TILES = 64

#: Winograd products with at most this many rows (output tiles of a call) read their kernels from an
#: output-channel-major copy: MKL's single-precision products with few rows ran 1.05-1.5x faster from that layout
#: (2 threads, 64-128 rows, 512-1536 channels) and up to 1.4x slower with 1,024 rows.
WINOGRAD_OUTPUT_MAJOR_MAX_ROWS = 128

#: Large 3x3 convolutions run through NNPACK (its Winograd F(6x6, 3x3) with fused transforms, part of PyTorch's CPU
#: builds; one image at a time, where it is fastest) when their input and output have at least this many channels,
#: ...
NNPACK_MIN_CHANNELS = 64
#: ... their maps at least this many pixels ...
NNPACK_MIN_PIXELS = 64 * 64
#: ... and one image's convolution at least this many multiply-adds per kernel tap (in x out channels x pixels).
#: Below these, oneDNN's direct convolution or the Winograd paths above are faster (measured per layer shape,
#: 2 threads: NNPACK 1.1-2.6x direct above them, 0.3-0.9x below).
NNPACK_MIN_WORK = 64 * 2**20

#: `prepare_for_inference(autotune=True)` (the default) times every algorithm a convolution may use (direct, NNPACK,
#: Winograd F(2x2) and F(4x4)) the first time the process meets a layer shape, input shape, layout and thread count,
#: and keeps the fastest: which one wins depends on the CPU (measured, 2 threads: NNPACK and Winograd 1.1-2.6x faster
#: than oneDNN's direct convolution on an AVX2 CPU; on an AVX-512 CPU the direct convolution is fastest on 128 x 128
#: maps and NNPACK 0.5-0.9x of it, Winograd 1.3-2.4x on 16-64 px maps). The choices, by key:
_AUTOTUNED_PLANS: dict[tuple, tuple[str, int, int]] = {}
#: Timed runs per candidate (after a warm-up run); the fastest counts.
AUTOTUNE_TIMED_CALLS = 2
#: ... and another algorithm replaces the direct convolution only when it is faster by more than this fraction: near
#: ties are noise, and NNPACK's own thread pool, still spinning after its call, slows the next layer down, which a
#: timing of the layer alone does not see (with it, the prepared discriminator went from 1.09-1.16x to 1.22-1.28x of
#: plain at 128 px on the AVX-512 CPU, the U-Nets unchanged within noise).
AUTOTUNE_MARGIN = 0.1

#: Transforms of Winograd F(tile x tile, 3x3) by output tile size (Lavin & Gray, 2016; F(4x4) with the interpolation
#: points 0, +-1, +-2): the kernel transform G ((tile + 2) x 3), the input transform B^T ((tile + 2) x (tile + 2)) and
#: the output transform A^T (tile x (tile + 2)).
_WINOGRAD_G = {
    2: ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)),
    4: (
        (1 / 4, 0.0, 0.0),
        (-1 / 6, -1 / 6, -1 / 6),
        (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6),
        (0.0, 0.0, 1.0),
    ),
}
_WINOGRAD_BT = {
    2: ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
    4: (
        (4, 0, -5, 0, 1, 0),
        (0, -4, -4, 1, 1, 0),
        (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0),
        (0, 4, 0, -5, 0, 1),
    ),
}
_WINOGRAD_AT = {
    2: ((1, 1, 1, 0), (0, 1, -1, -1)),
    4: ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
}


#: Output channels transformed at a time by [`winograd_weight`]: bounds its float64 scratch memory (a 1536 -> 1024
#: layer would otherwise need ~300 MB of it at once).
_WINOGRAD_WEIGHT_BLOCK = 64


def winograd_weight(weight: torch.Tensor, output_tile: int = 2) -> torch.Tensor:
    """
    `(out, in, 3, 3)` kernels -> the `((output_tile + 2)**2, in, out)` Winograd F(output_tile x output_tile, 3x3)
    kernels `G w G^T`, computed in float64; `output_tile` is 2 or 4.
    """
    if output_tile not in _WINOGRAD_G:
        raise ValueError(f"`output_tile` must be one of {sorted(_WINOGRAD_G)}, got {output_tile}.")
    transform = torch.tensor(_WINOGRAD_G[output_tile], dtype=torch.float64, device=weight.device)
    out_channels, in_channels = weight.shape[:2]
    transformed = weight.new_empty(len(transform) ** 2, in_channels, out_channels)
    for start in range(0, out_channels, _WINOGRAD_WEIGHT_BLOCK):
        block = weight[start : start + _WINOGRAD_WEIGHT_BLOCK].detach().double()
        block = torch.einsum("ik,ockl,jl->ijco", transform, block, transform)
        transformed[:, :, start : start + _WINOGRAD_WEIGHT_BLOCK] = block.reshape(len(transform) ** 2, in_channels, -1)
    return transformed


@functools.lru_cache(maxsize=16)
def _winograd_tile_transforms(
    output_tile: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The 2-D input and output transforms of one tile as matrices, `B^T (x) B^T` (`(tile + 2)**2` square) and
    `A^T (x) A^T` (`tile**2 x (tile + 2)**2`): `B^T d B` of a tile `d` flattened row-major is `(B^T (x) B^T) vec(d)`.
    """
    input_transform = torch.tensor(_WINOGRAD_BT[output_tile], dtype=torch.float64)
    output_transform = torch.tensor(_WINOGRAD_AT[output_tile], dtype=torch.float64)
    return tuple(
        torch.kron(transform, transform).to(device, dtype) for transform in (input_transform, output_transform)
    )


def winograd_conv3x3(
    hidden_states: torch.Tensor,
    transformed_weight: torch.Tensor,
    bias: torch.Tensor | None,
    max_tiles: int | None = None,
) -> torch.Tensor:
    """
    `F.conv2d(hidden_states, weight, bias, padding=1)` as Winograd F(2x2, 3x3) or F(4x4, 3x3), with `transformed_weight
    = winograd_weight(weight, output_tile)` (16 or 36 kernels). `bias` is `(out_channels,)` or one per image,
    `(batch_size, out_channels)`. The result is a channels-last tensor.

    Each step is one operator: the overlapping input tiles are gathered from the zero-padded channels-last input, both
    passes of the input transform are one batch of products with `B^T (x) B^T`, the `(tile + 2)**2` kernel products one
    `bmm`, both passes of the output transform one product with `A^T (x) A^T`, and the tiles are written into the
    output together with the bias. With `max_tiles`, the steps after the padding run on at most that many output tiles
    at a time (as many whole images as fit, else bands of tile rows of one image, at least one row), which bounds the
    scratch memory of the intermediates.
    """
    batch_size, in_channels, height, width = hidden_states.shape
    out_channels = transformed_weight.shape[-1]
    window = 4 if len(transformed_weight) == 16 else 6  # input tile: output tile + 2
    tile = window - 2
    tiles_h, tiles_w = -(-height // tile), -(-width // tile)
    input_transform, output_transform = _winograd_tile_transforms(tile, hidden_states.dtype, hidden_states.device)
    output = hidden_states.new_empty(batch_size, tiles_h, tile, tiles_w, tile, out_channels)
    if bias is not None:
        bias = bias if bias.dim() == 1 else bias[:, None, None, None, None, :]
    max_tiles = batch_size * tiles_h * tiles_w if max_tiles is None else max_tiles
    images_per_chunk = max(1, max_tiles // (tiles_h * tiles_w))
    rows_per_chunk = tiles_h if images_per_chunk > 1 else max(1, min(tiles_h, max_tiles // tiles_w))
    # the intermediates live in scratch buffers (`workspace.py`): the padded input in its own, the others alternating
    # between two
    with scratch_space() as scratch:
        # NHWC, zero-padded by 1 (plus up to tile - 1 rows/columns to complete the last tiles)
        padded = scratch(2, (batch_size, tile * tiles_h + 2, tile * tiles_w + 2, in_channels), hidden_states)
        for border in (padded[:, :1], padded[:, height + 1 :], padded[:, :, :1], padded[:, :, width + 1 :]):
            border.zero_()
        copy_to_channels_last(padded[:, 1 : height + 1, 1 : width + 1], hidden_states)
        tile_strides = (padded.stride(0), tile * padded.stride(1), tile * padded.stride(2), *padded.stride()[1:])
        for first_image in range(0, batch_size, images_per_chunk):
            images = slice(first_image, first_image + images_per_chunk)
            for first_row in range(0, tiles_h, rows_per_chunk):
                rows = slice(first_row, first_row + rows_per_chunk)
                num_images = min(images_per_chunk, batch_size - first_image)
                num_rows = min(rows_per_chunk, tiles_h - first_row)
                num_tiles = num_images * num_rows * tiles_w
                tiles = scratch(0, (num_images, num_rows, tiles_w, window, window, in_channels), hidden_states)
                tiles.copy_(padded[images, tile * first_row :].as_strided(tiles.shape, tile_strides))
                # B^T d B of every tile and channel, one small product per tile (a single product over all tiles
                # with the 36 x 36 transform ran 2-6x slower in MKL); the kernel products read it transposed
                transformed = scratch(1, (num_tiles, window**2, in_channels), hidden_states)
                torch.matmul(input_transform, tiles.view(num_tiles, window**2, in_channels), out=transformed)
                products = scratch(0, (window**2, num_tiles, out_channels), hidden_states)
                torch.bmm(transformed.transpose(0, 1), transformed_weight, out=products)
                output_tiles = scratch(1, (tile**2, num_tiles * out_channels), hidden_states)
                torch.mm(output_transform, products.view(window**2, -1), out=output_tiles)  # A^T m A
                output_tiles = output_tiles.view(tile, tile, num_images, num_rows, tiles_w, out_channels)
                output_tiles = output_tiles.permute(2, 3, 0, 4, 1, 5)
                if bias is None:
                    output[images, rows].copy_(output_tiles)
                else:
                    torch.add(output_tiles, bias if bias.dim() == 1 else bias[images], out=output[images, rows])
    output = output.view(batch_size, tile * tiles_h, tile * tiles_w, out_channels)[:, :height, :width]
    return output.permute(0, 3, 1, 2)


_NNPACK_AVAILABLE: bool | None = None


def nnpack_available() -> bool:
    """Whether this PyTorch build can run NNPACK convolutions (the first call initialises NNPACK)."""
    global _NNPACK_AVAILABLE
    if _NNPACK_AVAILABLE is None:
        _NNPACK_AVAILABLE = bool(torch._nnpack_available())
    return _NNPACK_AVAILABLE


def nnpack_conv3x3(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """
    `F.conv2d(hidden_states, weight, bias, padding=1)` with NNPACK, one image at a time (its single-image path is
    1.5-3x faster than its batched one on this kind of CPU). `bias` is `(out_channels,)` or one per image,
    `(batch_size, out_channels)`. Float32 CPU tensors; needs [`nnpack_available`].
    """
    image_biases = [bias] * len(hidden_states) if bias is None or bias.dim() == 1 else bias
    images = [
        torch._nnpack_spatial_convolution(image[None].contiguous(), weight, image_bias, [1, 1], [1, 1])
        for image, image_bias in zip(hidden_states, image_biases, strict=True)
    ]
    return images[0] if len(images) == 1 else torch.cat(images)


def _winograd_tiles(hidden_states: torch.Tensor, output_tile: int) -> int:
    """Output tiles of one image of `hidden_states` `(B, C, H, W)` for Winograd F(output_tile x output_tile, 3x3)."""
    return -(-hidden_states.shape[-2] // output_tile) * -(-hidden_states.shape[-1] // output_tile)


def _is_winograd_shape(conv: nn.Conv2d) -> bool:
    return (
        conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


class _InferenceConv2dMixin:
    """
    Forward of a prepared `nn.Conv2d` (possibly spectral-normalised): cached weight, Winograd when it pays. The cache
    `_inference_cache` is `[key, weight, winograd_kernels, subpixel_kernels]`; the Winograd and sub-pixel kernels are
    computed on the first call that uses them (`None` until then, or for layers that never run that way).
    """

    def _inference_cache_entry(self) -> list:
        tensors = [*self.parameters(), *self.buffers()]
        key = tuple((tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device) for tensor in tensors)
        cache = self.__dict__.get("_inference_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                weight = self.weight.detach()  # runs the spectral-norm parametrization once
            cache = [key, weight, None, None]
            self.__dict__["_inference_cache"] = cache
        return cache

    def _winograd_calls(self, hidden_states: torch.Tensor) -> list[tuple[int, int]]:
        """
        `(output_tile, tiles_per_call)` of every Winograd convolution this layer may run on `hidden_states`: none for
        a narrow layer (`WINOGRAD_MIN_CHANNELS`) or with `winograd=False`, else F(2x2, 3x3) and (unless
        `winograd_4x4=False`) F(4x4, 3x3), each transforming as many output tiles at a time as
        `WINOGRAD_MAX_TRANSFORM_BYTES` takes (all of the call's if they fit).
        """
        in_channels, out_channels = self.in_channels, self.out_channels
        if not (
            self.__dict__.get("_winograd", True)
            and 2 * in_channels * out_channels >= WINOGRAD_MIN_CHANNELS * (in_channels + out_channels)
        ):
            return []
        calls = []
        for output_tile in (2, 4) if self.__dict__.get("_winograd_4x4", True) else (2,):
            tile_bytes = (output_tile + 2) ** 2 * in_channels * hidden_states.element_size()
            all_tiles = len(hidden_states) * _winograd_tiles(hidden_states, output_tile)
            calls.append((output_tile, max(1, min(all_tiles, WINOGRAD_MAX_TRANSFORM_BYTES // tile_bytes))))
        return calls

    def _winograd_plan(self, hidden_states: torch.Tensor) -> tuple[int, int]:
        """
        `(output_tile, tiles_per_call)` of a Winograd convolution of `hidden_states`: F(4x4, 3x3) where a call has at
        least `WINOGRAD_F4_MIN_TILES` tiles (unless switched off by `prepare_for_inference(winograd_4x4=False)`), else
        F(2x2, 3x3). `(0, 0)`: run direct.
        """
        calls = dict(self._winograd_calls(hidden_states))
        if 4 in calls and calls[4] >= WINOGRAD_F4_MIN_TILES:
            return 4, calls[4]
        return (2, calls[2]) if 2 in calls else (0, 0)

    @staticmethod
    def _winograd_kernels(cache: list, output_tile: int, output_major: bool) -> torch.Tensor:
        """The cached `((output_tile + 2)**2, in, out)` Winograd kernels, stored output-channel-major (`output_major`)
        or not; only the tile size and layout last asked for are kept."""
        kernels = cache[2]
        if kernels is None or len(kernels) != (output_tile + 2) ** 2:
            kernels = winograd_weight(cache[1], output_tile)
        if (kernels.stride(1) == 1) != output_major:
            kernels = kernels.transpose(1, 2).contiguous().transpose(1, 2) if output_major else kernels.contiguous()
        cache[2] = kernels
        return kernels

    def _allows_nnpack(self, hidden_states: torch.Tensor) -> bool:
        """Whether NNPACK may run this call: switched on, float32 on the CPU, at least `NNPACK_MIN_CHANNELS` channels
        in and out and `NNPACK_MIN_PIXELS` pixels."""
        return (
            self.__dict__.get("_nnpack", False)
            and hidden_states.dtype == torch.float32
            and hidden_states.device.type == "cpu"
            and min(self.in_channels, self.out_channels) >= NNPACK_MIN_CHANNELS
            and hidden_states.shape[-2] * hidden_states.shape[-1] >= NNPACK_MIN_PIXELS
            and nnpack_available()
        )

    def _fixed_plan(self, hidden_states: torch.Tensor) -> tuple[str, int, int]:
        """The algorithm the thresholds above choose for `hidden_states`, as `(name, output_tile, tiles_per_call)`:
        `("nnpack", 0, 0)`, `("winograd", tile, tiles)` or `("direct", 0, 0)`."""
        pixels = hidden_states.shape[-2] * hidden_states.shape[-1]
        if self._allows_nnpack(hidden_states) and self.in_channels * self.out_channels * pixels >= NNPACK_MIN_WORK:
            return ("nnpack", 0, 0)
        output_tile, tiles_per_call = self._winograd_plan(hidden_states)
        return ("winograd", output_tile, tiles_per_call) if tiles_per_call else ("direct", 0, 0)

    def _candidate_plans(self, hidden_states: torch.Tensor) -> list[tuple[str, int, int]]:
        """Every algorithm that `prepare_for_inference(autotune=True)` times for `hidden_states`: direct, NNPACK where
        allowed, and for a wide layer Winograd F(2x2, 3x3) and F(4x4, 3x3), but only F(4x4, 3x3) where a call has at
        least `WINOGRAD_F4_MIN_TILES` tiles (it was the faster there in every measured shape, and timing fewer
        candidates shortens the first call of a new size, which a one-shot CLI run pays in full)."""
        plans = [("direct", 0, 0)]
        if self._allows_nnpack(hidden_states):
            plans.append(("nnpack", 0, 0))
        calls = self._winograd_calls(hidden_states)
        if any(output_tile == 4 and tiles >= WINOGRAD_F4_MIN_TILES for output_tile, tiles in calls):
            calls = [(output_tile, tiles) for output_tile, tiles in calls if output_tile == 4]
        return plans + [("winograd", output_tile, tiles) for output_tile, tiles in calls]

    def _plan(self, hidden_states: torch.Tensor, cache: list, bias: torch.Tensor | None) -> tuple[str, int, int]:
        """The algorithm of this call: the fixed thresholds' choice, or with `autotune` the candidate measured fastest
        the first time this process saw the same layer, input shape, layout, dtype and thread count (timing it on this
        call)."""
        if not self.__dict__.get("_autotune", False):
            return self._fixed_plan(hidden_states)
        candidates = self._candidate_plans(hidden_states)
        if len(candidates) == 1:
            return candidates[0]
        key = (
            self.in_channels,
            self.out_channels,
            tuple(hidden_states.shape),
            hidden_states.is_contiguous(),  # a channels-last input runs another direct kernel
            hidden_states.dtype,
            torch.get_num_threads(),
            tuple(candidates),
        )
        if key not in _AUTOTUNED_PLANS:
            seconds = [
                self._time_plan(plan, hidden_states, cache, bias)
                * (1.0 if plan[0] == "direct" else 1 + AUTOTUNE_MARGIN)
                for plan in candidates
            ]
            _AUTOTUNED_PLANS[key] = candidates[seconds.index(min(seconds))]
            if _AUTOTUNED_PLANS[key][0] != "winograd":
                cache[2] = None  # kernels of a candidate that lost
        return _AUTOTUNED_PLANS[key]

    def _time_plan(
        self, plan: tuple[str, int, int], hidden_states: torch.Tensor, cache: list, bias: torch.Tensor | None
    ) -> float:
        """Seconds of the fastest of `AUTOTUNE_TIMED_CALLS` runs of `plan`, after a warm-up run."""
        return _fastest_seconds(lambda: self._run_plan(plan, hidden_states, cache, bias))

    def _run_plan(
        self, plan: tuple[str, int, int], hidden_states: torch.Tensor, cache: list, bias: torch.Tensor | None
    ) -> torch.Tensor:
        name, output_tile, tiles_per_call = plan
        if name == "nnpack":
            return nnpack_conv3x3(hidden_states, cache[1], bias)
        if name == "winograd":
            kernels = self._winograd_kernels(cache, output_tile, tiles_per_call <= WINOGRAD_OUTPUT_MAJOR_MAX_ROWS)
            return winograd_conv3x3(hidden_states, kernels, bias, max_tiles=tiles_per_call)
        if bias is None or bias.dim() == 1:
            return F.conv2d(hidden_states, cache[1], bias, self.stride, self.padding, self.dilation, self.groups)
        output = F.conv2d(hidden_states, cache[1], None, self.stride, self.padding, self.dilation, self.groups)
        return output.add_(bias[:, :, None, None])

    def forward(self, hidden_states: torch.Tensor, image_bias: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution, plus `image_bias` `(batch_size, out_channels)` if given (see [`conv2d_with_image_bias`])."""
        if records_for_autograd(self, hidden_states, *([] if image_bias is None else [image_bias])):
            output = super().forward(hidden_states)
            return output if image_bias is None else output + image_bias[:, :, None, None]
        cache = self._inference_cache_entry()
        if image_bias is None or self.bias is None:
            bias = self.bias if image_bias is None else image_bias
        else:
            bias = image_bias + self.bias
        return self._run_plan(self._plan(hidden_states, cache, bias), hidden_states, cache, bias)

    def forward_upsampled(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """
        `self(upsample_nearest_2x(hidden_states))`, as one sub-pixel convolution of `hidden_states` (see
        `upsampling.py`) where that is faster: with `autotune`, when it measured faster than upsampling and then
        running this convolution's own fastest algorithm; without it, unless the thresholds choose Winograd for the
        upsampled map.
        """
        if records_for_autograd(self, hidden_states) or not self.__dict__.get("_subpixel", False):
            return self(upsample_nearest_2x(hidden_states))
        cache = self._inference_cache_entry()

        def subpixel() -> torch.Tensor:
            if cache[3] is None:
                cache[3] = subpixel_weight(cache[1])
            return upsample_conv3x3_subpixel(hidden_states, cache[3], self.bias)

        if not self.__dict__.get("_autotune", False):
            # the thresholds read only the upsampled map's shape, dtype and device: a stand-in that allocates nothing
            batch_size, channels, height, width = hidden_states.shape
            upsampled_shape = hidden_states.new_zeros(()).expand(batch_size, channels, 2 * height, 2 * width)
            if self._fixed_plan(upsampled_shape)[0] == "winograd":
                return self(upsample_nearest_2x(hidden_states))
            return subpixel()
        key = ("subpixel", self.in_channels, self.out_channels, tuple(hidden_states.shape))
        key += (hidden_states.is_contiguous(), hidden_states.dtype, torch.get_num_threads())
        if key not in _AUTOTUNED_PLANS:
            # the first call of the upsampled convolution (its own autotuning) is the warm-up run
            upsampled_seconds = _fastest_seconds(lambda: self(upsample_nearest_2x(hidden_states)))
            faster = _fastest_seconds(subpixel) < upsampled_seconds
            _AUTOTUNED_PLANS[key] = ("subpixel" if faster else "upsample", 0, 0)
            if not faster:
                cache[3] = None
        if _AUTOTUNED_PLANS[key][0] == "subpixel":
            return subpixel()
        return self(upsample_nearest_2x(hidden_states))


def _fastest_seconds(run: Callable[[], torch.Tensor]) -> float:
    """Seconds of the fastest of `AUTOTUNE_TIMED_CALLS` calls of `run`, after a warm-up call."""
    run()
    seconds = []
    for _ in range(AUTOTUNE_TIMED_CALLS):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def upsample_and_conv3x3(conv: nn.Conv2d, hidden_states: torch.Tensor) -> torch.Tensor:
    """`conv(upsample_nearest_2x(hidden_states))`; a prepared convolution may run it as one sub-pixel convolution
    (`_InferenceConv2dMixin.forward_upsampled`)."""
    if isinstance(conv, _InferenceConv2dMixin):
        return conv.forward_upsampled(hidden_states)
    return conv(upsample_nearest_2x(hidden_states))


def conv2d_with_image_bias(conv: nn.Conv2d, hidden_states: torch.Tensor, image_bias: torch.Tensor) -> torch.Tensor:
    """
    `conv(hidden_states) + image_bias[:, :, None, None]`, with one bias per image, `image_bias` of shape `(batch_size,
    conv.out_channels)` (e.g. a projected time embedding). A convolution prepared for inference adds it as part of its
    own bias, which saves a pass over the output.
    """
    if isinstance(conv, _InferenceConv2dMixin):
        return conv(hidden_states, image_bias=image_bias)
    return conv(hidden_states) + image_bias[:, :, None, None]


_PREPARED_CLASSES: dict[tuple[type, type], type] = {}


def _make_prepared(module: nn.Module, mixin: type) -> None:
    """Gives `module` the class `mixin` + its own class (in place), unless it has it already."""
    if not isinstance(module, mixin):
        cls = type(module)
        if (mixin, cls) not in _PREPARED_CLASSES:
            _PREPARED_CLASSES[mixin, cls] = type(f"Inference{cls.__name__}", (mixin, cls), {})
        module.__class__ = _PREPARED_CLASSES[mixin, cls]


def prepare_for_inference(
    model: nn.Module,
    winograd: bool = True,
    nnpack: bool = True,
    chunked_attention: bool = True,
    inplace_activations: bool = True,
    winograd_4x4: bool = True,
    autotune: bool = True,
    subpixel_upsampling: bool = True,
    pointwise_matmul: bool = True,
) -> nn.Module:
    """
    Makes every 3x3 stride-1 zero-padded `nn.Conv2d` of `model` an inference convolution (in place); returns it. With
    `winograd=False` and `nnpack=False` the convolutions only cache their weights; `winograd_4x4=False` keeps the
    Winograd calls at F(2x2, 3x3). With `autotune` each convolution runs the fastest of the algorithms these switches
    allow, measured on this CPU on its first call per input shape (see `_AUTOTUNED_PLANS`); without it, the one the
    thresholds of this module choose (the same in every process). `chunked_attention` switches the
    chunked inference path of the linear attention blocks on or off, `inplace_activations` the in-place inference
    path of the modules that have one (an `inplace_inference` attribute: the U-Nets' residual blocks).
    `subpixel_upsampling` lets the convolutions that follow a nearest x2 upsampling (the U-Nets' decoder) run both as
    one sub-pixel convolution where that is faster ([`upsample_and_conv3x3`]). `pointwise_matmul` runs the 1x1
    convolutions as matrix products (`pointwise.py`).
    """
    for module in model.modules():
        if isinstance(module, _LinearAttentionBlock):
            module.chunked_inference = chunked_attention
        if hasattr(module, "inplace_inference"):
            module.inplace_inference = inplace_activations
        if isinstance(module, nn.Conv2d) and is_pointwise_shape(module):
            _make_prepared(module, _InferencePointwiseConv2dMixin)
            module.__dict__["_matmul"] = pointwise_matmul
        if isinstance(module, nn.Conv2d) and _is_winograd_shape(module):
            _make_prepared(module, _InferenceConv2dMixin)
            module.__dict__["_winograd"] = winograd
            module.__dict__["_winograd_4x4"] = winograd_4x4
            module.__dict__["_nnpack"] = nnpack
            module.__dict__["_autotune"] = autotune
            module.__dict__["_subpixel"] = subpixel_upsampling
            module.__dict__.pop("_inference_cache", None)
    return model


class InferenceMixin:
    """Adds [`prepare_for_inference`] to a model."""

    def prepare_for_inference(
        self,
        winograd: bool = True,
        nnpack: bool = True,
        chunked_attention: bool = True,
        inplace_activations: bool = True,
        winograd_4x4: bool = True,
        autotune: bool = True,
        subpixel_upsampling: bool = True,
        pointwise_matmul: bool = True,
    ) -> "InferenceMixin":
        r"""
        Makes this model faster for inference on the CPU, in place, and returns it (in eval mode).

        Every 3x3 convolution caches its effective weight (so spectral normalisation is computed once) and may run
        as NNPACK's Winograd F(6x6, 3x3) (`nnpack`, large layers, when this PyTorch build has it) or as a Winograd
        F(2x2, 3x3) or F(4x4, 3x3) convolution (`winograd`, wide layers; `winograd_4x4=False` keeps F(2x2, 3x3), whose
        transformed kernels take 16/9 of the weights' memory instead of 36/9). With `autotune` (the default) each
        convolution times the algorithms allowed on its first call per input shape and keeps the fastest on this CPU
        (the first call at a new size is then a few times slower); without it, fixed thresholds tuned on an AVX2 CPU
        choose. All compute the same convolution up to float rounding, within the released fixtures' tolerance
        (F(2x2, 3x3): ~10x below oneDNN's rounding error, F(4x4, 3x3) 1-2x it; NNPACK: ~10x above it, using 18-28 %
        of the tolerance when forced on every layer). With `chunked_attention` the linear attention blocks compute
        their no-grad CPU calls a few thousand pixels at a time (1.2-4.4x faster per block, and ~0.8 GB less peak
        memory at 512 px), and with `inplace_activations` the U-Nets' residual blocks update their activations in
        place. With `subpixel_upsampling` the U-Nets' decoder runs each nearest x2 upsampling and the 3x3 convolution
        after it as one sub-pixel convolution where that is faster (16 instead of 36 multiplications per 2x2 output
        pixels, and no upsampled map). With `pointwise_matmul` the 1x1 convolutions run as one matrix product each
        (1.05-2.1x faster than oneDNN's 1x1 convolution of an NCHW map). The state dict, the config and training are
        unchanged: in training mode, or when gradients are needed, the convolutions and blocks are the plain ones.
        """
        prepare_for_inference(
            self,
            winograd,
            nnpack,
            chunked_attention,
            inplace_activations,
            winograd_4x4,
            autotune,
            subpixel_upsampling,
            pointwise_matmul,
        )
        return self.eval()
