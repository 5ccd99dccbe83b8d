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
* run as a Winograd F(2x2, 3x3) convolution (Lavin & Gray, 2016) where that pays: wide layers
  (`WINOGRAD_MIN_CHANNELS`) on inputs whose transform stays cache-sized (`WINOGRAD_MAX_TRANSFORM_BYTES`; a batch
  that exceeds it runs in chunks of images that do not). The 3x3
  kernels are transformed once (in float64, on the first such call) into 4x4 ones and the convolution becomes 16
  matrix products with 16/36 of the multiplications. The result is the same convolution up to float rounding
  (measured: ~10x *smaller* error against a float64 convolution than oneDNN's direct float32 convolution).

It also switches the linear attention blocks to their chunked CPU path (`_LinearAttentionBlock.forward_chunked`),
which computes the same attention a few thousand pixels at a time instead of on whole-image projections, and the
U-Nets' residual blocks to their in-place path (`inplace_inference`). [`conv2d_with_image_bias`] lets a model add a
per-image bias (the discriminator's time embedding) inside a prepared convolution.

The caches are keyed on the parameters' storage and version counters, so `load_state_dict`, in-place updates and
`.to(...)` invalidate them. Training mode and calls that need gradients use the plain convolution.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .attention import _LinearAttentionBlock
from .autograd_mode import records_for_autograd

#: A 3x3 convolution runs as Winograd F(2x2, 3x3) when the harmonic mean of its input and output channels is at least
#: this (narrower layers are bound by the transforms, which eager PyTorch does not fuse, and stay direct).
WINOGRAD_MIN_CHANNELS = 256
#: ... and when the transformed input of one image (16 values per 2x2 output tile and input channel) takes at most this
#: many bytes: larger ones no longer stay in the CPU caches, and the transforms, bound by memory, then cost more than
#: the saved multiplications (measured: 0.94-0.98x of the plain networks at 512 px, released config). Batches run in
#: chunks of as many images as fit.
WINOGRAD_MAX_TRANSFORM_BYTES = 32 * 2**20

#: Winograd products with at most this many rows (2x2 output tiles of a call) read their kernels from an
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
#: Below these, oneDNN's direct convolution or the F(2x2, 3x3) path above is faster (measured per layer shape, 2 threads:
#: NNPACK 1.1-2.6x direct above them, 0.3-0.9x below).
NNPACK_MIN_WORK = 64 * 2**20

# F(2x2, 3x3) kernel transform G (4x3); the input (B^T) and output (A^T) transforms are written out below.
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


#: Output channels transformed at a time by [`winograd_weight`]: bounds its float64 scratch memory (a 1536 -> 1024
#: layer would otherwise need ~300 MB of it at once).
_WINOGRAD_WEIGHT_BLOCK = 64


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """`(out, in, 3, 3)` kernels -> the `(16, in, out)` Winograd F(2x2, 3x3) kernels `G w G^T`, computed in float64."""
    transform = torch.tensor(_WINOGRAD_G, dtype=torch.float64, device=weight.device)
    out_channels, in_channels = weight.shape[:2]
    transformed = weight.new_empty(16, in_channels, out_channels)
    for start in range(0, out_channels, _WINOGRAD_WEIGHT_BLOCK):
        block = weight[start : start + _WINOGRAD_WEIGHT_BLOCK].detach().double()
        block = torch.einsum("ik,ockl,jl->ijco", transform, block, transform)
        transformed[:, :, start : start + _WINOGRAD_WEIGHT_BLOCK] = block.reshape(16, in_channels, -1)
    return transformed


def winograd_conv3x3(
    hidden_states: torch.Tensor, transformed_weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """
    `F.conv2d(hidden_states, weight, bias, padding=1)` as Winograd F(2x2, 3x3) with `transformed_weight =
    winograd_weight(weight)`. `bias` is `(out_channels,)` or one per image, `(batch_size, out_channels)`. The result
    is a channels-last tensor.
    """
    batch_size, in_channels, height, width = hidden_states.shape
    out_channels = transformed_weight.shape[-1]
    tiles_h, tiles_w = (height + 1) // 2, (width + 1) // 2
    # NHWC, zero-padded by 1 (plus one more row/column for odd sizes)
    padded = F.pad(hidden_states.permute(0, 2, 3, 1), (0, 0, 1, 1 + 2 * tiles_w - width, 1, 1 + 2 * tiles_h - height))
    # input transform B^T d B, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]: rows, then columns
    d0, d1, d2, d3 = (padded[:, k : k + 2 * tiles_h : 2] for k in range(4))
    rows = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
    transformed = hidden_states.new_empty(4, 4, batch_size, tiles_h, tiles_w, in_channels)
    for index, row in enumerate(rows):
        e0, e1, e2, e3 = (row[:, :, k : k + 2 * tiles_w : 2] for k in range(4))
        torch.sub(e0, e2, out=transformed[index, 0])
        torch.add(e1, e2, out=transformed[index, 1])
        torch.sub(e2, e1, out=transformed[index, 2])
        torch.sub(e1, e3, out=transformed[index, 3])
    products = torch.bmm(transformed.view(16, -1, in_channels), transformed_weight)
    products = products.view(4, 4, batch_size, tiles_h, tiles_w, out_channels)
    # output transform A^T m A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
    output = hidden_states.new_empty(batch_size, tiles_h, 2, tiles_w, 2, out_channels)
    for index, row in enumerate((products[0] + products[1] + products[2], products[1] - products[2] - products[3])):
        torch.add(row[0] + row[1], row[2], out=output[:, :, index, :, 0])
        torch.sub(row[1] - row[2], row[3], out=output[:, :, index, :, 1])
    output = output.view(batch_size, 2 * tiles_h, 2 * tiles_w, out_channels)[:, :height, :width]
    if bias is not None:
        output = output + (bias if bias.dim() == 1 else bias[:, None, None, :])
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


def _winograd_transform_bytes(hidden_states: torch.Tensor) -> int:
    """Size of the Winograd-transformed input of `hidden_states` `(B, C, H, W)`: 16 values per tile and channel."""
    batch_size, channels, height, width = hidden_states.shape
    tiles = batch_size * ((height + 1) // 2) * ((width + 1) // 2)
    return 16 * tiles * channels * hidden_states.element_size()


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
    `_inference_cache` is `[key, weight, winograd_kernels]`; the Winograd kernels are computed on the first call that
    uses them (`None` until then, or for layers that never run as Winograd).
    """

    def _inference_cache_entry(self) -> list:
        tensors = [*self.parameters(), *self.buffers()]
        key = tuple((tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device) for tensor in tensors)
        cache = self.__dict__.get("_inference_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                weight = self.weight.detach()  # runs the spectral-norm parametrization once
            cache = [key, weight, None]
            self.__dict__["_inference_cache"] = cache
        return cache

    def _winograd_images_per_call(self, hidden_states: torch.Tensor) -> int:
        """How many images of `hidden_states` one Winograd call takes (the transform budget); 0: run direct."""
        in_channels, out_channels = self.in_channels, self.out_channels
        if not (
            self.__dict__.get("_winograd", True)
            and 2 * in_channels * out_channels >= WINOGRAD_MIN_CHANNELS * (in_channels + out_channels)
        ):
            return 0
        return WINOGRAD_MAX_TRANSFORM_BYTES // _winograd_transform_bytes(hidden_states[:1])

    @staticmethod
    def _winograd_kernels(cache: list, output_major: bool) -> torch.Tensor:
        """The cached `(16, in, out)` Winograd kernels, stored output-channel-major (`output_major`) or not; only the
        layout last asked for is kept."""
        kernels = winograd_weight(cache[1]) if cache[2] is None else cache[2]
        if (kernels.stride(1) == 1) != output_major:
            kernels = kernels.transpose(1, 2).contiguous().transpose(1, 2) if output_major else kernels.contiguous()
        cache[2] = kernels
        return kernels

    def _runs_with_nnpack(self, hidden_states: torch.Tensor) -> bool:
        pixels = hidden_states.shape[-2] * hidden_states.shape[-1]
        return (
            self.__dict__.get("_nnpack", False)
            and hidden_states.dtype == torch.float32
            and hidden_states.device.type == "cpu"
            and min(self.in_channels, self.out_channels) >= NNPACK_MIN_CHANNELS
            and pixels >= NNPACK_MIN_PIXELS
            and self.in_channels * self.out_channels * pixels >= NNPACK_MIN_WORK
            and nnpack_available()
        )

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
        if self._runs_with_nnpack(hidden_states):
            return nnpack_conv3x3(hidden_states, cache[1], bias)
        images_per_call = self._winograd_images_per_call(hidden_states)
        if images_per_call > 0:
            images_per_call = min(images_per_call, hidden_states.shape[0])
            tiles = ((hidden_states.shape[-2] + 1) // 2) * ((hidden_states.shape[-1] + 1) // 2)
            kernels = self._winograd_kernels(cache, images_per_call * tiles <= WINOGRAD_OUTPUT_MAJOR_MAX_ROWS)
            if images_per_call == hidden_states.shape[0]:
                return winograd_conv3x3(hidden_states, kernels, bias)
            parts = hidden_states.split(images_per_call)
            bias_parts = [bias] * len(parts) if bias is None or bias.dim() == 1 else bias.split(images_per_call)
            return torch.cat(
                [winograd_conv3x3(part, kernels, part_bias) for part, part_bias in zip(parts, bias_parts, strict=True)]
            )
        if bias is None or bias.dim() == 1:
            return F.conv2d(hidden_states, cache[1], bias, self.stride, self.padding, self.dilation, self.groups)
        output = F.conv2d(hidden_states, cache[1], None, self.stride, self.padding, self.dilation, self.groups)
        return output.add_(bias[:, :, None, None])


def conv2d_with_image_bias(conv: nn.Conv2d, hidden_states: torch.Tensor, image_bias: torch.Tensor) -> torch.Tensor:
    """
    `conv(hidden_states) + image_bias[:, :, None, None]`, with one bias per image, `image_bias` of shape `(batch_size,
    conv.out_channels)` (e.g. a projected time embedding). A convolution prepared for inference adds it as part of its
    own bias, which saves a pass over the output.
    """
    if isinstance(conv, _InferenceConv2dMixin):
        return conv(hidden_states, image_bias=image_bias)
    return conv(hidden_states) + image_bias[:, :, None, None]


_PREPARED_CLASSES: dict[type, type] = {}


def prepare_for_inference(
    model: nn.Module,
    winograd: bool = True,
    nnpack: bool = True,
    chunked_attention: bool = True,
    inplace_activations: bool = True,
) -> nn.Module:
    """
    Makes every 3x3 stride-1 zero-padded `nn.Conv2d` of `model` an inference convolution (in place); returns it. With
    `winograd=False` and `nnpack=False` the convolutions only cache their weights. `chunked_attention` switches the
    chunked inference path of the linear attention blocks on or off, `inplace_activations` the in-place inference
    path of the modules that have one (an `inplace_inference` attribute: the U-Nets' residual blocks).
    """
    for module in model.modules():
        if isinstance(module, _LinearAttentionBlock):
            module.chunked_inference = chunked_attention
        if hasattr(module, "inplace_inference"):
            module.inplace_inference = inplace_activations
        if isinstance(module, nn.Conv2d) and _is_winograd_shape(module):
            if not isinstance(module, _InferenceConv2dMixin):
                cls = type(module)
                if cls not in _PREPARED_CLASSES:
                    _PREPARED_CLASSES[cls] = type(f"Inference{cls.__name__}", (_InferenceConv2dMixin, cls), {})
                module.__class__ = _PREPARED_CLASSES[cls]
            module.__dict__["_winograd"] = winograd
            module.__dict__["_nnpack"] = nnpack
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
    ) -> "InferenceMixin":
        r"""
        Makes this model faster for inference on the CPU, in place, and returns it (in eval mode).

        Every 3x3 convolution caches its effective weight (so spectral normalisation is computed once). With `nnpack`
        the large ones (`NNPACK_MIN_*`) run through NNPACK's Winograd F(6x6, 3x3), when this PyTorch build has it;
        with `winograd` the wide ones on small maps run as Winograd
        F(2x2, 3x3) convolutions, at the cost of keeping their transformed kernels (16/9 of those weights) in memory.
        Both compute the same convolution up to float rounding, within the released fixtures' tolerance (F(2x2, 3x3):
        ~10x below oneDNN's rounding error; NNPACK: ~10x above it, using 18-28 % of the tolerance when forced on
        every layer). With `chunked_attention` the linear attention blocks compute their no-grad CPU calls a few
        thousand pixels at a time (1.2-4.4x faster per block, and ~0.8 GB less peak memory at 512 px), and with
        `inplace_activations` the U-Nets' residual blocks update their activations in place. The state dict, the
        config and training are unchanged: in training mode, or when gradients are needed, the convolutions and
        blocks are the plain ones.
        """
        prepare_for_inference(self, winograd, nnpack, chunked_attention, inplace_activations)
        return self.eval()
