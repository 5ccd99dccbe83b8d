"""`prepare_for_inference()` (cached conv weights, Winograd F(2x2, 3x3) and F(4x4, 3x3), NNPACK, the autotuned
choice among them, chunked attention, in-place blocks) keeps the released networks' outputs."""

import copy
import os
import subprocess
import sys
import time

import pytest
import torch

from diffusers_strdiff import convert_official_checkpoint, inference_threads, load_pipeline
from diffusers_strdiff.models import attention, inference
from diffusers_strdiff.models.attention import _LinearAttentionBlock
from diffusers_strdiff.models.inference import _InferenceConv2dMixin
from diffusers_strdiff.models.unet_strdiff import _ResnetBlock

from .conftest import load_fixture
from .test_models import assert_matches_reference, unet_inputs

NAMES = ["texture_unet", "structure_unet", "discriminator"]


def call(model: torch.nn.Module, name: str, io: dict[str, torch.Tensor]) -> torch.Tensor:
    if name == "discriminator":
        return model(io["sample"], io["timesteps"], io["structure"])
    return model(timestep=io["timesteps"], **unet_inputs(io)).sample


@pytest.fixture(
    params=[
        (0, inference.WINOGRAD_F4_MIN_TILES),
        (0, 0),
        (inference.WINOGRAD_MIN_CHANNELS, inference.WINOGRAD_F4_MIN_TILES),
    ],
    ids=["winograd_everywhere", "f4_winograd_everywhere", "default_threshold"],
)
def min_channels(request, monkeypatch):
    """`WINOGRAD_MIN_CHANNELS` of the test (and `WINOGRAD_F4_MIN_TILES`: 0 runs every Winograd call as F(4x4, 3x3))."""
    min_channels, f4_min_tiles = request.param
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", min_channels)
    monkeypatch.setattr(inference, "WINOGRAD_F4_MIN_TILES", f4_min_tiles)
    return min_channels


@torch.no_grad()
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("autotune", [False, True], ids=["fixed", "autotune"])
def test_prepared_model_matches_plain_model_and_released_outputs(name, min_channels, autotune):
    plain = convert_official_checkpoint(load_fixture(f"{name}_state_dict"))
    prepared = copy.deepcopy(plain).prepare_for_inference(winograd=True, autotune=autotune)
    io = load_fixture(f"{name}_io")
    reference = io["output"]
    output = call(prepared, name, io)
    assert_matches_reference(output, reference)
    assert_matches_reference(output, call(plain, name, io))
    assert_matches_reference(call(prepared, name, io), output)  # cached weights: same result on the second call
    converted = sum(isinstance(module, inference._InferenceConv2dMixin) for module in prepared.modules())
    assert converted > 0
    if min_channels == 0 and not autotune:
        assert all(
            module._inference_cache[2] is not None
            for module in prepared.modules()
            if hasattr(module, "_inference_cache")
        )


def test_prepared_model_keeps_state_dict_and_invalidates_caches(monkeypatch):
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    state_dict = load_fixture("texture_unet_state_dict")
    plain = convert_official_checkpoint(state_dict)
    prepared = copy.deepcopy(plain).prepare_for_inference(autotune=False)
    assert list(prepared.state_dict()) == list(plain.state_dict())
    io = load_fixture("texture_unet_io")
    with torch.no_grad():
        before = call(prepared, "texture_unet", io)
        changed = {key: value * 1.1 for key, value in plain.state_dict().items()}
        prepared.load_state_dict(changed)
        plain.load_state_dict(changed)
        after = call(prepared, "texture_unet", io)
        assert not torch.allclose(after, before)
        assert_matches_reference(after, call(plain, "texture_unet", io))


def test_prepared_model_trains_with_plain_convolutions():
    model = convert_official_checkpoint(load_fixture("structure_unet_state_dict")).prepare_for_inference()
    model.train()
    io = load_fixture("structure_unet_io")
    call(model, "structure_unet", io).square().mean().backward()
    assert model.conv_out.weight.grad is not None
    assert model.down_blocks[0].resnets[0].conv1.weight.grad is not None


# ----------------------------------------------------------------------------------------- loading and thread policy


def test_load_pipeline_prepares_every_network_and_keeps_outputs() -> None:
    prepared = load_pipeline(None, "posterior", progress_bar=False)
    plain = load_pipeline(None, "posterior", progress_bar=False, prepare_for_inference=False)
    for name in ("structure_unet", "texture_unet", "discriminator"):
        convolutions = [m for m in getattr(prepared, name).modules() if isinstance(m, torch.nn.Conv2d)]
        assert any(isinstance(m, _InferenceConv2dMixin) for m in convolutions), name
        assert not any(isinstance(m, _InferenceConv2dMixin) for m in getattr(plain, name).modules()), name
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:26] = 1
    outputs = [
        pipeline(image, mask, generator=torch.Generator().manual_seed(1), output_type="pt").images
        for pipeline in (prepared, plain)
    ]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-5)


def test_inference_threads_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRDIFF_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert inference_threads() == 5  # 8 cores, ~3 kept busy by other processes
    monkeypatch.setattr(os, "getloadavg", lambda: (11.0, 0.0, 0.0))
    assert inference_threads() == 1  # never below one thread
    assert inference_threads(3) == 3
    monkeypatch.setenv("STRDIFF_THREADS", "6")
    assert inference_threads() == 6 and inference_threads(2) == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("STRDIFF_THREADS", bad)
        with pytest.raises(ValueError, match="STRDIFF_THREADS|positive"):
            inference_threads()
    with pytest.raises(ValueError, match="positive"):
        inference_threads(0)


@pytest.mark.parametrize("output_tile", [2, 4])
def test_winograd_weight_is_transformed_in_blocks_of_output_channels(output_tile: int) -> None:
    """More output channels than one block: the blocked float64 transform equals the whole one, and the Winograd
    convolution (sizes that leave partial tiles) equals a float64 direct convolution to 2e-5 of the output's range
    (F(4x4, 3x3)'s float32 rounding is 1-2x oneDNN's direct convolution's, F(2x2, 3x3)'s ~0.1x)."""
    generator = torch.Generator().manual_seed(0)
    out_channels = 2 * inference._WINOGRAD_WEIGHT_BLOCK + 22
    weight = torch.randn(out_channels, 5, 3, 3, generator=generator)
    bias = torch.randn(out_channels, generator=generator)
    kernel_transform = torch.tensor(inference._WINOGRAD_G[output_tile], dtype=torch.float64)
    kernels = (output_tile + 2) ** 2
    whole = torch.einsum("ik,ockl,jl->ijco", kernel_transform, weight.double(), kernel_transform)
    transformed = inference.winograd_weight(weight, output_tile)
    assert transformed.shape == (kernels, 5, out_channels) and transformed.dtype == torch.float32
    torch.testing.assert_close(transformed, whole.reshape(kernels, 5, out_channels).float(), rtol=1e-6, atol=1e-6)
    for height, width in ((9, 12), (1, 1), (4, 7)):
        hidden_states = torch.randn(2, 5, height, width, generator=generator)
        expected = torch.nn.functional.conv2d(hidden_states.double(), weight.double(), bias.double(), padding=1)
        output = inference.winograd_conv3x3(hidden_states, transformed, bias)
        assert output.shape == expected.shape
        assert (output.double() - expected).abs().max() <= 2e-5 * expected.abs().max()


@pytest.mark.parametrize("output_tile", [2, 4])
def test_winograd_conv3x3_of_either_memory_layout_with_any_bias(output_tile: int) -> None:
    """Contiguous and channels-last inputs (the tiles are gathered from the padded input's strides), no bias, one bias
    and one bias per image: each equals a float64 direct convolution to 2e-5 of the output's range."""
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(7, 6, 3, 3, generator=generator)
    transformed = inference.winograd_weight(weight, output_tile)
    hidden_states = torch.randn(3, 6, 10, 13, generator=generator)
    image_bias = torch.randn(3, 7, generator=generator)
    for bias in (None, image_bias[0], image_bias):
        expected_bias = None if bias is None else bias.double().reshape(-1, 7)[..., None, None]
        expected = torch.nn.functional.conv2d(hidden_states.double(), weight.double(), padding=1)
        if expected_bias is not None:
            expected = expected + expected_bias
        for layout in (torch.contiguous_format, torch.channels_last):
            output = inference.winograd_conv3x3(hidden_states.contiguous(memory_format=layout), transformed, bias)
            assert output.shape == expected.shape
            assert (output.double() - expected).abs().max() <= 2e-5 * expected.abs().max()


def test_winograd_weight_rejects_other_tile_sizes() -> None:
    with pytest.raises(ValueError, match="output_tile"):
        inference.winograd_weight(torch.zeros(2, 2, 3, 3), output_tile=6)


@torch.no_grad()
def test_winograd_tile_size_follows_the_tiles_of_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls with at least `WINOGRAD_F4_MIN_TILES` 4x4 output tiles run as F(4x4, 3x3), smaller ones as F(2x2, 3x3);
    only the last kernels are kept, and every call gives the direct convolution."""
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(inference, "NNPACK_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(inference, "WINOGRAD_F4_MIN_TILES", 12)
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval(), autotune=False)
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(1, 6, 9, 11, generator=generator)  # 3 x 3 = 9 tiles of 4x4
    large = torch.randn(2, 6, 9, 11, generator=generator)  # 18 tiles
    for hidden_states, output_tile in ((small, 2), (large, 4), (small, 2)):
        all_tiles = len(hidden_states) * inference._winograd_tiles(hidden_states, output_tile)
        assert conv._winograd_plan(hidden_states) == (output_tile, all_tiles)
        expected = torch.nn.functional.conv2d(
            hidden_states.double(), conv.weight.double(), conv.bias.double(), padding=1
        )
        torch.testing.assert_close(conv(hidden_states).double(), expected, rtol=1e-5, atol=1e-5)
        assert conv._inference_cache[2].shape == ((output_tile + 2) ** 2, 6, 5)


@torch.no_grad()
def test_winograd_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """`winograd=False` only caches the weights (the Winograd kernels are never computed); outputs are unchanged."""
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    state_dict = load_fixture("discriminator_state_dict")
    io = load_fixture("discriminator_io")
    for winograd in (False, True):
        discriminator = convert_official_checkpoint(state_dict).prepare_for_inference(
            winograd=winograd, autotune=False
        )
        assert_matches_reference(call(discriminator, "discriminator", io), io["output"])
        caches = [m._inference_cache for m in discriminator.modules() if isinstance(m, _InferenceConv2dMixin)]
        assert caches and all((cache[2] is None) == (winograd is False) for cache in caches)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_reuse_freed_memory_stops_page_faults_on_reallocation() -> None:
    """Repeated calls on 32 MiB activations (a 32-channel 512 x 512 map) reuse the freed memory instead of faulting in
    fresh pages at every call (~150k page faults in 3 calls without the setting, 0-16k with it)."""
    script = """
import resource, sys, torch
from diffusers_strdiff import reuse_freed_memory
if sys.argv[1] == "on":
    assert reuse_freed_memory()
conv = torch.nn.Conv2d(32, 32, 3, padding=1)
hidden = torch.randn(1, 32, 512, 512)
with torch.no_grad():
    for _ in range(2):  # the heap grows to its working size
        conv(conv(hidden))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        conv(conv(hidden))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {}
    for mode in ("off", "on"):
        process = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        faults[mode] = int(process.stdout.split()[-1])
    assert faults["off"] > 20_000 and faults["on"] < faults["off"] / 4, faults


# ----------------------------------------------------------------------------------------------------- NNPACK

requires_nnpack = pytest.mark.skipif(not inference.nnpack_available(), reason="this PyTorch build has no NNPACK")


@pytest.fixture
def nnpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the input shape of every NNPACK convolution (the real one runs)."""
    calls, original = [], inference.nnpack_conv3x3

    def recorded(hidden_states, weight, bias):
        calls.append(tuple(hidden_states.shape))
        return original(hidden_states, weight, bias)

    monkeypatch.setattr(inference, "nnpack_conv3x3", recorded)
    return calls


@requires_nnpack
@torch.no_grad()
@pytest.mark.parametrize("name", NAMES)
def test_nnpack_on_every_convolution_keeps_released_outputs(name, nnpack_calls, monkeypatch):
    """NNPACK forced on every 3x3 convolution (thresholds 0) stays within the fixtures' tolerance (it uses ~20-30 % of
    it, against ~5-7 % for the direct convolution); `nnpack=False` never calls it."""
    for threshold in ("NNPACK_MIN_CHANNELS", "NNPACK_MIN_PIXELS", "NNPACK_MIN_WORK"):
        monkeypatch.setattr(inference, threshold, 0)
    plain = convert_official_checkpoint(load_fixture(f"{name}_state_dict"))
    io = load_fixture(f"{name}_io")
    output = call(copy.deepcopy(plain).prepare_for_inference(nnpack=True, autotune=False), name, io)
    assert len(nnpack_calls) > 0
    assert_matches_reference(output, io["output"])
    assert_matches_reference(output, call(plain, name, io))
    nnpack_calls.clear()
    call(copy.deepcopy(plain).prepare_for_inference(nnpack=False), name, io)
    assert nnpack_calls == []


@requires_nnpack
@pytest.mark.parametrize("with_bias", [True, False])
def test_nnpack_convolution_matches_a_float64_convolution(with_bias: bool) -> None:
    """Several images (run one at a time), odd sizes, in != out channels."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(7, 5, 3, 3, generator=generator)
    bias = torch.randn(7, generator=generator) if with_bias else None
    hidden_states = torch.randn(3, 5, 9, 12, generator=generator)
    expected = torch.nn.functional.conv2d(
        hidden_states.double(), weight.double(), None if bias is None else bias.double(), padding=1
    )
    output = inference.nnpack_conv3x3(hidden_states, weight, bias)
    assert output.shape == (3, 7, 9, 12) and output.dtype == torch.float32
    torch.testing.assert_close(output.double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@requires_nnpack
@torch.no_grad()
def test_nnpack_runs_only_on_large_convolutions(nnpack_calls) -> None:
    """The fixed thresholds: >= 64 channels, >= 64 x 64 pixels, >= 64 Mi multiply-adds per tap and image."""
    wide = inference.prepare_for_inference(torch.nn.Conv2d(64, 64, 3, padding=1).eval(), autotune=False)
    narrow = inference.prepare_for_inference(torch.nn.Conv2d(32, 64, 3, padding=1).eval(), autotune=False)
    for conv, size in ((wide, 128), (wide, 64), (narrow, 256)):
        hidden_states = torch.randn(2, conv.in_channels, size, size)
        torch.testing.assert_close(
            conv(hidden_states),
            torch.nn.functional.conv2d(hidden_states, conv.weight, conv.bias, padding=1),
            rtol=1e-4,
            atol=1e-4,
        )
    assert nnpack_calls == [(2, 64, 128, 128)]


@torch.no_grad()
@pytest.mark.parametrize("output_tile", [2, 4])
def test_winograd_runs_a_call_too_large_for_its_budget_in_chunks(output_tile, monkeypatch) -> None:
    """A call whose transformed input exceeds `WINOGRAD_MAX_TRANSFORM_BYTES` transforms as many tiles at a time as
    the budget takes: whole images while one fits, else bands of tile rows of one image (at least one row, even with
    no budget). Every chunking gives the direct convolution."""
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(inference, "NNPACK_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(inference, "WINOGRAD_F4_MIN_TILES", 1 if output_tile == 4 else 10**9)
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval(), autotune=False)
    hidden_states = torch.randn(5, 6, 10, 14, generator=torch.Generator().manual_seed(0))
    image_tiles = inference._winograd_tiles(hidden_states, output_tile)  # 5 x 7 (2x2 tiles) or 3 x 4 (4x4)
    tile_bytes = (output_tile + 2) ** 2 * 6 * 4
    expected = torch.nn.functional.conv2d(hidden_states.double(), conv.weight.double(), conv.bias.double(), padding=1)
    for budget_tiles, tiles_per_call in (
        (10**6, 5 * image_tiles),  # the whole batch
        (2 * image_tiles + 1, 2 * image_tiles + 1),  # two images at a time
        (image_tiles - 1, image_tiles - 1),  # bands of all rows but one
        (3, 3),  # bands of one row
        (0, 1),  # no budget: still one row at a time
    ):
        monkeypatch.setattr(inference, "WINOGRAD_MAX_TRANSFORM_BYTES", budget_tiles * tile_bytes)
        assert conv._winograd_plan(hidden_states) == (output_tile, tiles_per_call)
        torch.testing.assert_close(conv(hidden_states).double(), expected, rtol=1e-5, atol=1e-5)
        assert conv._inference_cache[2].shape[0] == (output_tile + 2) ** 2


@torch.no_grad()
def test_winograd_kernel_layout_follows_the_rows_of_the_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small products (<= `WINOGRAD_OUTPUT_MAJOR_MAX_ROWS` tiles) read output-channel-major kernels, large ones the
    input-major ones; only the last layout is kept, and both give the direct convolution."""
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(inference, "NNPACK_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(inference, "WINOGRAD_OUTPUT_MAJOR_MAX_ROWS", 30)
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval(), autotune=False)
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(1, 6, 9, 11, generator=generator)  # 5 x 6 = 30 tiles
    large = torch.randn(2, 6, 9, 11, generator=generator)  # 60 tiles
    for hidden_states, output_major in ((small, True), (large, False), (small, True)):
        expected = torch.nn.functional.conv2d(
            hidden_states.double(), conv.weight.double(), conv.bias.double(), padding=1
        )
        torch.testing.assert_close(conv(hidden_states).double(), expected, rtol=1e-5, atol=1e-5)
        kernels = conv._inference_cache[2]
        assert kernels.shape == (16, 6, 5)
        assert kernels.stride(1) == (1 if output_major else 5)


@pytest.mark.parametrize(
    "path", ["direct", "winograd", "winograd_in_chunks", "winograd_in_bands", "nnpack", "training", "plain"]
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_with_image_bias_adds_one_bias_per_image(path: str, with_bias: bool, monkeypatch) -> None:
    """Every path of a prepared convolution (and a plain one) gives `conv(x) + image_bias[:, :, None, None]`, each
    image with its own bias, and the plain path keeps gradients."""
    if path == "nnpack" and not inference.nnpack_available():
        pytest.skip("this PyTorch build has no NNPACK")
    nnpack_thresholds = 0 if path == "nnpack" else 10**9
    for threshold in ("NNPACK_MIN_CHANNELS", "NNPACK_MIN_PIXELS", "NNPACK_MIN_WORK"):
        monkeypatch.setattr(inference, threshold, nnpack_thresholds)
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 10**9 if path == "direct" else 0)
    generator = torch.Generator().manual_seed(0)
    hidden_states = torch.randn(3, 6, 9, 11, generator=generator)
    if path.startswith("winograd_in_"):  # chunks of two of the 3 images (30 tiles each), bands of one tile row (6)
        tiles_per_call = 60 if path == "winograd_in_chunks" else 7
        monkeypatch.setattr(inference, "WINOGRAD_MAX_TRANSFORM_BYTES", tiles_per_call * 16 * 6 * 4)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1, bias=with_bias)
    if path != "plain":
        inference.prepare_for_inference(conv, autotune=False)
    conv.train(path == "training")
    image_bias = torch.randn(3, 5, generator=generator)
    expected = torch.nn.functional.conv2d(
        hidden_states.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(), padding=1
    )
    expected = expected + image_bias.double()[:, :, None, None]
    with torch.set_grad_enabled(path in ("training", "plain")):
        output = inference.conv2d_with_image_bias(conv, hidden_states, image_bias)
    torch.testing.assert_close(output.double(), expected, rtol=1e-5, atol=1e-5)
    if path in ("training", "plain"):
        output.sum().backward()
        assert conv.weight.grad is not None
    else:  # Winograd kernels exist only where that path ran
        assert (conv._inference_cache[2] is None) == (path in ("direct", "nnpack"))


# ------------------------------------------------------------------------------------------ chunked linear attention


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_chunked_attention_equals_the_plain_block(memory_format, monkeypatch: pytest.MonkeyPatch) -> None:
    """Float64, two images, 9 x 13 pixels in chunks of 10 (the last one partial); the keys grow along the image, so
    the running maximum of the online softmax is replaced in later chunks. The output keeps the input's layout."""
    monkeypatch.setattr(attention, "ATTENTION_CHUNK_POSITIONS", 10)
    generator = torch.Generator().manual_seed(0)
    block = _LinearAttentionBlock(5, heads=2, head_dim=3).double().eval()
    for parameter in block.parameters():
        parameter.data = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
    ramp = torch.linspace(0, 30, 9 * 13, dtype=torch.float64).reshape(1, 1, 9, 13)
    hidden_states = torch.randn(2, 5, 9, 13, generator=generator, dtype=torch.float64) * (1 + ramp)
    hidden_states = hidden_states.contiguous(memory_format=memory_format)
    with torch.no_grad():
        expected = block(hidden_states)
        block.chunked_inference = True
        chunked = block(hidden_states)
    torch.testing.assert_close(chunked, expected, rtol=1e-12, atol=1e-12)
    assert chunked.is_contiguous(memory_format=memory_format)
    assert chunked.abs().max() > 1  # the comparison is not between two near-zero tensors


@pytest.fixture
def chunked_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    calls = []
    original = _LinearAttentionBlock.forward_chunked

    def recorded(self, hidden_states):
        calls.append(tuple(hidden_states.shape))
        return original(self, hidden_states)

    monkeypatch.setattr(_LinearAttentionBlock, "forward_chunked", recorded)
    return calls


@torch.no_grad()
@pytest.mark.parametrize("name", ["texture_unet", "structure_unet"])  # the discriminator has no attention
def test_chunked_attention_keeps_released_outputs(name, chunked_calls, monkeypatch) -> None:
    """Chunks of 97 pixels (the fixtures' maps hold 1,536 at the first level) stay within the fixtures' tolerance;
    `chunked_attention=False` never takes the chunked path."""
    monkeypatch.setattr(attention, "ATTENTION_CHUNK_POSITIONS", 97)
    plain = convert_official_checkpoint(load_fixture(f"{name}_state_dict"))
    io = load_fixture(f"{name}_io")
    output = call(copy.deepcopy(plain).prepare_for_inference(), name, io)
    assert len(chunked_calls) == sum(isinstance(m, _LinearAttentionBlock) for m in plain.modules()) > 0
    assert max(height * width for _, _, height, width in chunked_calls) > 97
    assert_matches_reference(output, io["output"])
    assert_matches_reference(output, call(plain, name, io))
    chunked_calls.clear()
    call(copy.deepcopy(plain).prepare_for_inference(chunked_attention=False), name, io)
    assert chunked_calls == []


def test_chunked_attention_is_not_used_for_training(chunked_calls) -> None:
    model = convert_official_checkpoint(load_fixture("structure_unet_state_dict")).prepare_for_inference()
    io = load_fixture("structure_unet_io")
    model.train()
    call(model, "structure_unet", io).square().mean().backward()
    model.eval()
    call(model, "structure_unet", io)  # eval mode, but gradients needed
    assert chunked_calls == []
    assert model.down_blocks[0].attention.to_qkv.weight.grad is not None


# ----------------------------------------------------------------------------------------- in-place residual blocks


@pytest.mark.parametrize("in_channels", [6, 4])  # with and without the 1x1 shortcut
def test_inplace_residual_block_equals_the_plain_block(in_channels: int) -> None:
    """The in-place path of a prepared `_ResnetBlock` computes the same operations in the same order (bit-equal
    output), runs only for no-grad eval calls, and leaves the block's input untouched."""
    generator = torch.Generator().manual_seed(0)
    block = _ResnetBlock(in_channels, 6, temb_channels=8).eval()
    hidden_states = torch.randn(2, in_channels, 7, 9, generator=generator)
    temb = torch.randn(2, 8, generator=generator)
    with torch.no_grad():
        expected = block(hidden_states, temb)
        inference.prepare_for_inference(block)
        assert block.inplace_inference
        before = hidden_states.clone()
        output = block(hidden_states, temb)
    assert torch.equal(output, expected) and torch.equal(hidden_states, before)
    output = block(hidden_states, temb)  # gradients enabled: the plain path, which autograd can differentiate
    output.sum().backward()
    assert block.conv1.weight.grad is not None
    inference.prepare_for_inference(block, inplace_activations=False)
    assert not block.inplace_inference


@pytest.mark.parametrize("name", NAMES)
def test_prepared_frozen_model_gives_gradients_for_its_input(name: str, monkeypatch) -> None:
    """Eval mode, frozen parameters, an input that requires grad (e.g. guidance by input gradients): the modules it
    flows through take their plain, differentiable path (the structure map's SPADE branch, which needs no gradient,
    may still take the fast one), and the input gradient matches the plain model's to the networks' tolerance."""
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    plain = convert_official_checkpoint(load_fixture(f"{name}_state_dict")).eval().requires_grad_(False)
    prepared = copy.deepcopy(plain).prepare_for_inference()
    io = load_fixture(f"{name}_io")
    gradients = []
    for model in (plain, prepared):
        sample = io["sample"].clone().requires_grad_(True)
        call(model, name, {**io, "sample": sample}).square().sum().backward()
        gradients.append(sample.grad)
    assert_matches_reference(gradients[1], gradients[0])
    assert gradients[0].abs().max() > 0


@torch.no_grad()
def test_winograd_4x4_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """`prepare_for_inference(winograd_4x4=False)` runs a call that would take F(4x4, 3x3) as F(2x2, 3x3), with its
    smaller kernels, and the same output."""
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(inference, "NNPACK_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(inference, "WINOGRAD_F4_MIN_TILES", 1)
    hidden_states = torch.randn(2, 6, 9, 11, generator=torch.Generator().manual_seed(0))
    for winograd_4x4, output_tile in ((True, 4), (False, 2)):
        conv = torch.nn.Conv2d(6, 5, 3, padding=1).eval()
        torch.nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(1))
        inference.prepare_for_inference(conv, winograd_4x4=winograd_4x4, autotune=False)
        assert conv._winograd_plan(hidden_states) == (
            output_tile,
            2 * inference._winograd_tiles(hidden_states, output_tile),
        )
        expected = torch.nn.functional.conv2d(
            hidden_states.double(), conv.weight.double(), conv.bias.double(), padding=1
        )
        assert (conv(hidden_states).double() - expected).abs().max() <= 2e-5 * expected.abs().max()
        assert conv._inference_cache[2].shape[0] == (output_tile + 2) ** 2


@pytest.fixture
def every_algorithm_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds that let a small convolution use every algorithm, and an empty table of autotuned choices."""
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(inference, "NNPACK_MIN_CHANNELS", 0)
    monkeypatch.setattr(inference, "NNPACK_MIN_PIXELS", 0)
    monkeypatch.setattr(inference, "_AUTOTUNED_PLANS", {})


def slowed_down(function):
    """`function`, 20 ms slower per call."""

    def run(*args, **kwargs):
        time.sleep(0.02)
        return function(*args, **kwargs)

    return run


@torch.no_grad()
@pytest.mark.parametrize("slow", ["direct", "fast_paths"])
def test_autotune_keeps_the_fastest_algorithm_per_input_shape(slow, every_algorithm_allowed, monkeypatch) -> None:
    """With `autotune` (the default) a convolution times every algorithm it may use on its first call per input shape
    and keeps the fastest: one slowed down by 20 ms a call is never kept. Later calls of that shape are not timed,
    and the output is the convolution's either way."""
    if slow == "direct":
        monkeypatch.setattr(inference.F, "conv2d", slowed_down(torch.nn.functional.conv2d))
    else:
        monkeypatch.setattr(inference, "winograd_conv3x3", slowed_down(inference.winograd_conv3x3))
        monkeypatch.setattr(inference, "nnpack_conv3x3", slowed_down(inference.nnpack_conv3x3))
    timed, time_plan = [], _InferenceConv2dMixin._time_plan

    def recorded(self, plan, *args):
        timed.append(plan)
        return time_plan(self, plan, *args)

    monkeypatch.setattr(_InferenceConv2dMixin, "_time_plan", recorded)
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval())
    generator = torch.Generator().manual_seed(0)
    for shape in ((2, 6, 9, 11), (1, 6, 8, 8)):
        hidden_states = torch.randn(shape, generator=generator)
        expected = torch.nn.functional.conv2d(
            hidden_states.double(), conv.weight.double(), conv.bias.double(), padding=1
        )
        timed.clear()
        for _ in range(3):
            torch.testing.assert_close(
                conv(hidden_states).double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item()
            )
        candidates = conv._candidate_plans(hidden_states)
        assert {plan[0] for plan in candidates} == {"direct", "winograd"} | (
            {"nnpack"} if inference.nnpack_available() else set()
        )
        assert {plan[1] for plan in candidates if plan[0] == "winograd"} == {2, 4}
        assert sorted(timed) == sorted(candidates)  # each once, on the first call of the shape
        chosen = conv._plan(hidden_states, conv._inference_cache, conv.bias)
        assert (chosen[0] == "direct") == (slow == "fast_paths")
        assert (conv._inference_cache[2] is None) == (chosen[0] != "winograd")  # no kernels kept for a loser


@pytest.mark.parametrize(
    "switches, expected",
    [
        ({}, {("direct", 0), ("nnpack", 0), ("winograd", 2), ("winograd", 4)}),
        ({"nnpack": False}, {("direct", 0), ("winograd", 2), ("winograd", 4)}),
        ({"winograd": False}, {("direct", 0), ("nnpack", 0)}),
        ({"winograd_4x4": False}, {("direct", 0), ("nnpack", 0), ("winograd", 2)}),
    ],
)
def test_autotune_times_only_the_algorithms_switched_on(switches, expected, every_algorithm_allowed) -> None:
    if not inference.nnpack_available():
        expected = {plan for plan in expected if plan[0] != "nnpack"}
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval(), **switches)
    assert {plan[:2] for plan in conv._candidate_plans(torch.randn(1, 6, 8, 8))} == expected


@pytest.mark.parametrize("winograd_4x4", [True, False])
def test_autotune_skips_f2_where_f4_has_enough_tiles(winograd_4x4, every_algorithm_allowed, monkeypatch) -> None:
    """With at least `WINOGRAD_F4_MIN_TILES` 4x4 tiles only F(4x4, 3x3) is timed; below, both tile sizes are (and
    F(2x2, 3x3) alone with `winograd_4x4=False`)."""
    monkeypatch.setattr(inference, "WINOGRAD_F4_MIN_TILES", 9)
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval(), winograd_4x4=winograd_4x4)
    for size, tile_sizes in ((12, {4} if winograd_4x4 else {2}), (8, {2, 4} if winograd_4x4 else {2})):  # 9, 4 tiles
        candidates = conv._candidate_plans(torch.randn(1, 6, size, size))
        assert {plan[1] for plan in candidates if plan[0] == "winograd"} == tile_sizes


@torch.no_grad()
@pytest.mark.parametrize(("fast_path_seconds", "keeps_direct"), [(0.95, True), (0.85, False)])
def test_autotune_replaces_direct_only_beyond_its_margin(
    fast_path_seconds, keeps_direct, every_algorithm_allowed, monkeypatch
):
    """Another algorithm replaces the direct convolution only when it is faster by more than `AUTOTUNE_MARGIN` (10 %):
    measured times (injected here) of 1.0 s direct and 0.95 s for every other algorithm keep direct; 0.85 s does not
    (the first of those algorithms is kept)."""
    monkeypatch.setattr(
        _InferenceConv2dMixin,
        "_time_plan",
        lambda self, plan, *args: 1.0 if plan[0] == "direct" else fast_path_seconds,
    )
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 5, 3, padding=1).eval())
    hidden_states = torch.randn(1, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.conv2d(hidden_states.double(), conv.weight.double(), conv.bias.double(), padding=1)
    torch.testing.assert_close(
        conv(hidden_states).double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item()
    )
    candidates = conv._candidate_plans(hidden_states)
    assert len(candidates) >= 3
    kept = conv._plan(hidden_states, conv._inference_cache, conv.bias)
    assert kept == (candidates[0] if keeps_direct else candidates[1])
