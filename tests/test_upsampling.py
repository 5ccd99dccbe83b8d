"""The U-Nets' nearest x2 upsampling followed by a 3x3 convolution, run as one sub-pixel convolution by prepared
networks: the same convolution up to float rounding, chosen where it is faster, and the released outputs kept."""

import copy

import pytest
import torch
import torch.nn.functional as F

from diffusers_strdiff import convert_official_checkpoint
from diffusers_strdiff.models import inference
from diffusers_strdiff.models.upsampling import subpixel_weight, upsample_conv3x3_subpixel, upsample_nearest_2x

from .conftest import load_fixture
from .test_inference import call, slowed_down
from .test_models import assert_matches_reference


def upsample_then_conv_float64(hidden_states, weight, bias) -> torch.Tensor:
    upsampled = F.interpolate(hidden_states.double(), scale_factor=2.0, mode="nearest")
    return F.conv2d(upsampled, weight.double(), None if bias is None else bias.double(), padding=1)


@pytest.mark.parametrize("size", [(5, 7), (8, 8), (1, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_subpixel_convolution_equals_upsampling_then_convolution(size, with_bias, channels_last) -> None:
    generator = torch.Generator().manual_seed(0)
    hidden_states = torch.randn(2, 6, *size, generator=generator)
    if channels_last:
        hidden_states = hidden_states.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(5, 6, 3, 3, generator=generator)
    bias = torch.randn(5, generator=generator) if with_bias else None
    expected = upsample_then_conv_float64(hidden_states, weight, bias)

    output = upsample_conv3x3_subpixel(hidden_states, subpixel_weight(weight), bias)

    assert output.shape == (2, 5, 2 * size[0], 2 * size[1]) and output.dtype == torch.float32
    assert output.is_contiguous()
    # float32 rounding only: within 2x the error of the plain float32 convolution of the upsampled map
    torch.testing.assert_close(output.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    plain = F.conv2d(upsample_nearest_2x(hidden_states), weight, bias, padding=1)
    assert (output.double() - expected).abs().max() <= 2 * (plain.double() - expected).abs().max() + 1e-6


def test_subpixel_weight_sums_the_taps_that_read_the_same_input_pixel() -> None:
    weight = torch.arange(9.0).view(1, 1, 3, 3)  # taps w[r, c] = 3r + c
    phases = subpixel_weight(weight)
    assert phases.shape == (4, 1, 2, 2)
    # phase (0, 0): rows (0, 1 + 2), columns (0, 1 + 2); phase (1, 1): rows (0 + 1, 2), columns (0 + 1, 2)
    assert phases[0, 0].tolist() == [[0.0, 1.0 + 2.0], [3.0 + 6.0, 4.0 + 5.0 + 7.0 + 8.0]]
    assert phases[3, 0].tolist() == [[0.0 + 1.0 + 3.0 + 4.0, 2.0 + 5.0], [6.0 + 7.0, 8.0]]
    assert phases.sum(dim=(2, 3)).flatten().tolist() == [36.0] * 4  # every phase reads every tap once


@pytest.fixture
def subpixel_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the input shape of every sub-pixel convolution run by prepared convolutions."""
    calls, function = [], inference.upsample_conv3x3_subpixel

    def recorded(hidden_states, *args):
        calls.append(tuple(hidden_states.shape))
        return function(hidden_states, *args)

    monkeypatch.setattr(inference, "upsample_conv3x3_subpixel", recorded)
    return calls


@torch.no_grad()
@pytest.mark.parametrize("name", ["texture_unet", "structure_unet"])
@pytest.mark.parametrize("subpixel_upsampling", [True, False])
def test_prepared_unet_upsamples_by_subpixel_convolution_and_keeps_released_outputs(
    name, subpixel_upsampling, subpixel_calls
) -> None:
    """With the fixed thresholds every decoder upsampling of the released fixtures' small maps is a sub-pixel
    convolution (none with `subpixel_upsampling=False`), and the outputs keep the fixtures' tolerance."""
    plain = convert_official_checkpoint(load_fixture(f"{name}_state_dict"))
    prepared = copy.deepcopy(plain).prepare_for_inference(autotune=False, subpixel_upsampling=subpixel_upsampling)
    io = load_fixture(f"{name}_io")

    output = call(prepared, name, io)

    upsamplings = sum(block.add_upsample for block in plain.up_blocks)
    assert upsamplings > 0
    assert len(subpixel_calls) == (upsamplings if subpixel_upsampling else 0)
    assert_matches_reference(output, io["output"])
    assert_matches_reference(output, call(plain, name, io))


@torch.no_grad()
@pytest.mark.parametrize("slow", ["subpixel", "upsample_then_conv"])
def test_autotune_keeps_the_faster_of_subpixel_and_upsampling(slow, subpixel_calls, monkeypatch) -> None:
    """The first call per input shape times both ways and keeps the faster (one slowed down by 20 ms a call is never
    kept); later calls are not timed, and the output is the same either way."""
    monkeypatch.setattr(inference, "_AUTOTUNED_PLANS", {})
    if slow == "subpixel":
        monkeypatch.setattr(inference, "upsample_conv3x3_subpixel", slowed_down(inference.upsample_conv3x3_subpixel))
    else:
        monkeypatch.setattr(inference, "upsample_nearest_2x", slowed_down(inference.upsample_nearest_2x))
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval())
    hidden_states = torch.randn(1, 6, 7, 9, generator=torch.Generator().manual_seed(0))
    expected = upsample_then_conv_float64(hidden_states, conv.weight, conv.bias)

    outputs = [inference.upsample_and_conv3x3(conv, hidden_states) for _ in range(3)]
    timed_calls = len(subpixel_calls)
    outputs.append(inference.upsample_and_conv3x3(conv, hidden_states))

    for output in outputs:
        torch.testing.assert_close(output.double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    chosen = [plan[0] for key, plan in inference._AUTOTUNED_PLANS.items() if key[0] == "subpixel"]
    assert chosen == ["upsample" if slow == "subpixel" else "subpixel"]
    # timing ran each way 1 + AUTOTUNE_TIMED_CALLS times; the 4th call runs the chosen way only
    assert len(subpixel_calls) - timed_calls == (1 if chosen == ["subpixel"] else 0)
    assert (conv._inference_cache[3] is None) == (chosen == ["upsample"])  # no kernels kept for the loser
