"""1x1 convolutions as matrix products (`models/pointwise.py`) and the blocked NCHW -> channels-last copy
(`models/layout.py`) that the prepared networks use."""

import pytest
import torch
import torch.nn.functional as F

from diffusers_strdiff import StrDiffusionUNet2DModel
from diffusers_strdiff.models import layout, pointwise
from diffusers_strdiff.models.layout import copy_to_channels_last
from diffusers_strdiff.models.pointwise import _InferencePointwiseConv2dMixin, is_pointwise_shape, pointwise_conv2d


def _layouts(hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "nchw": hidden_states,
        "channels_last": hidden_states.contiguous(memory_format=torch.channels_last),
        "strided": hidden_states[..., ::2],
    }


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("with_bias", [False, True])
def test_pointwise_conv2d_matches_a_float64_convolution_in_every_layout(batch_size: int, with_bias: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    hidden_states = torch.randn(batch_size, 24, 10, 14, generator=generator)
    weight = torch.randn(40, 24, 1, 1, generator=generator)
    bias = torch.randn(40, generator=generator) if with_bias else None
    for name, layout_input in _layouts(hidden_states).items():
        reference = F.conv2d(layout_input.double(), weight.double(), None if bias is None else bias.double())
        output = pointwise_conv2d(layout_input, weight, bias)
        assert output.shape == reference.shape, name
        torch.testing.assert_close(output.double(), reference, rtol=0, atol=1e-5, msg=name)
    # the result keeps the input's memory format
    assert pointwise_conv2d(hidden_states, weight, bias).is_contiguous()
    channels_last = hidden_states.contiguous(memory_format=torch.channels_last)
    assert pointwise_conv2d(channels_last, weight, bias).is_contiguous(memory_format=torch.channels_last)


def test_is_pointwise_shape_accepts_only_plain_1x1_convolutions() -> None:
    assert is_pointwise_shape(torch.nn.Conv2d(4, 8, 1))
    assert is_pointwise_shape(torch.nn.Conv2d(4, 8, 1, bias=False))
    for conv in (
        torch.nn.Conv2d(4, 8, 3, padding=1),
        torch.nn.Conv2d(4, 8, 1, stride=2),
        torch.nn.Conv2d(4, 8, 1, padding=1),
        torch.nn.Conv2d(4, 8, 1, groups=2),
        torch.nn.Conv2d(4, 8, 1, dilation=2),
    ):
        assert not is_pointwise_shape(conv), conv


def _small_unet() -> StrDiffusionUNet2DModel:
    torch.manual_seed(0)
    return StrDiffusionUNet2DModel(base_channels=8, depth=2, attention_heads=2, attention_head_dim=4).eval()


@pytest.mark.parametrize("pointwise_matmul", [True, False])
def test_prepared_model_runs_its_1x1_convolutions_as_products(pointwise_matmul: bool, monkeypatch) -> None:
    products = []
    monkeypatch.setattr(  # records each call and runs the real product
        pointwise, "pointwise_conv2d", lambda *args: products.append(args[0].shape) or pointwise_conv2d(*args)
    )
    model = _small_unet().prepare_for_inference(pointwise_matmul=pointwise_matmul)
    prepared = [m for m in model.modules() if isinstance(m, _InferencePointwiseConv2dMixin)]
    assert len(prepared) == sum(
        isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in _small_unet().modules()
    )
    assert prepared
    sample = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        model(sample, 10, condition=torch.zeros_like(sample))
    assert bool(products) == pointwise_matmul


def test_prepared_1x1_convolution_trains_and_matches_the_plain_one() -> None:
    plain = _small_unet()
    prepared = _small_unet().prepare_for_inference()
    shortcut = next(m for m in prepared.modules() if isinstance(m, _InferencePointwiseConv2dMixin))
    plain_shortcut = dict(plain.named_modules())[next(n for n, m in prepared.named_modules() if m is shortcut)]
    hidden_states = torch.randn(2, shortcut.in_channels, 6, 6, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(shortcut(hidden_states), plain_shortcut(hidden_states), rtol=0, atol=1e-6)
    shortcut(hidden_states).sum().backward()  # gradients: the plain convolution
    assert shortcut.weight.grad is not None and hidden_states.grad is not None


@pytest.mark.parametrize("channels, size", [(200, 32), (64, 32), (200, 8), (130, 48)])
def test_copy_to_channels_last_equals_the_plain_copy(channels: int, size: int) -> None:
    """Blocked (more than `CHANNEL_BLOCK` channels on maps within the pixel bounds, including a last partial block)
    and plain copies, into a padded destination view, from NCHW and channels-last sources."""
    source = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    blocked = channels > layout.CHANNEL_BLOCK and size * size >= layout.BLOCKED_COPY_MIN_PIXELS
    assert blocked == ((channels, size) in ((200, 32), (130, 48)))
    for layout_source in (source, source.contiguous(memory_format=torch.channels_last)):
        padded = torch.zeros(2, size + 2, size + 2, channels)
        returned = copy_to_channels_last(padded[:, 1:-1, 1:-1], layout_source)
        assert torch.equal(returned, source.permute(0, 2, 3, 1))
        assert torch.equal(padded[:, 1:-1, 1:-1], source.permute(0, 2, 3, 1))
        assert not padded[:, 0].any() and not padded[:, :, -1].any()
