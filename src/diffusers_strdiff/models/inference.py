# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Inference-only speed-ups of the StrDiffusion networks (`model.prepare_for_inference()`).

The networks spend ~90 % of a CPU call in 3x3 convolutions, most of them at the low-resolution, wide levels, where
oneDNN's direct convolution is bound by reading the weights. `prepare_for_inference()` makes every 3x3, stride-1,
zero-padded convolution of a model

* cache its effective weight (the spectral-norm division `original / sigma` of the SPADE convolutions is then done
  once instead of on every call), and
* run as a Winograd F(2x2, 3x3) convolution (Lavin & Gray, 2016) where the layer is wide enough for that to pay:
  the 3x3 kernels are transformed once (in float64) into 4x4 ones and the convolution becomes 16 matrix products
  with 16/36 of the multiplications. The result is the same convolution up to float rounding (measured: ~10x
  *smaller* error against a float64 convolution than oneDNN's direct float32 convolution).

The caches are keyed on the parameters' storage and version counters, so `load_state_dict`, in-place updates and
`.to(...)` invalidate them. Training mode and calls that need gradients use the plain convolution.
"""

import torch
import torch.nn.functional as F
from torch import nn

#: A 3x3 convolution runs as Winograd F(2x2, 3x3) when the harmonic mean of its input and output channels is at least
#: this (narrower layers are bound by the transforms, which eager PyTorch does not fuse, and stay direct).
WINOGRAD_MIN_CHANNELS = 256

# F(2x2, 3x3) kernel transform G (4x3); the input (B^T) and output (A^T) transforms are written out below.
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """`(out, in, 3, 3)` kernels -> the `(16, in, out)` Winograd F(2x2, 3x3) kernels `G w G^T`, computed in float64."""
    transform = torch.tensor(_WINOGRAD_G, dtype=torch.float64, device=weight.device)
    transformed = torch.einsum("ik,ockl,jl->ijco", transform, weight.detach().double(), transform)
    return transformed.reshape(16, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def winograd_conv3x3(
    hidden_states: torch.Tensor, transformed_weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """
    `F.conv2d(hidden_states, weight, bias, padding=1)` as Winograd F(2x2, 3x3) with `transformed_weight =
    winograd_weight(weight)`. The result is a channels-last tensor.
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
        output = output + bias
    return output.permute(0, 3, 1, 2)


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
    """Forward of a prepared `nn.Conv2d` (possibly spectral-normalised): cached weight, Winograd when it pays."""

    def _inference_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        tensors = [*self.parameters(), *self.buffers()]
        key = tuple((tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device) for tensor in tensors)
        cache = self.__dict__.get("_inference_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                weight = self.weight.detach()  # runs the spectral-norm parametrization once
                in_channels, out_channels = weight.shape[1], weight.shape[0]
                use_winograd = 2 * in_channels * out_channels >= WINOGRAD_MIN_CHANNELS * (in_channels + out_channels)
                cache = (key, weight, winograd_weight(weight) if use_winograd else None)
            self.__dict__["_inference_cache"] = cache
        return cache[1], cache[2]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.training or (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())):
            return super().forward(hidden_states)
        weight, transformed = self._inference_weights()
        if transformed is not None:
            return winograd_conv3x3(hidden_states, transformed, self.bias)
        return F.conv2d(hidden_states, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


_PREPARED_CLASSES: dict[type, type] = {}


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Makes every 3x3 stride-1 zero-padded `nn.Conv2d` of `model` an inference convolution (in place); returns it."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not isinstance(module, _InferenceConv2dMixin):
            if _is_winograd_shape(module):
                cls = type(module)
                if cls not in _PREPARED_CLASSES:
                    _PREPARED_CLASSES[cls] = type(f"Inference{cls.__name__}", (_InferenceConv2dMixin, cls), {})
                module.__class__ = _PREPARED_CLASSES[cls]
    return model


class InferenceMixin:
    """Adds [`prepare_for_inference`] to a model."""

    def prepare_for_inference(self) -> "InferenceMixin":
        r"""
        Makes this model faster for inference on the CPU, in place, and returns it (in eval mode).

        Every 3x3 convolution caches its effective weight (so spectral normalisation is computed once) and the wide
        ones run as Winograd F(2x2, 3x3) convolutions: the same function up to float rounding (within the released
        fixtures' tolerance). The state dict, the config and training are unchanged: in training mode, or when
        gradients are needed, the convolutions are the plain ones.
        """
        prepare_for_inference(self)
        return self.eval()
