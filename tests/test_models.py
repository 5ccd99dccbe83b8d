import pytest
import torch

from diffusers_strdiff import (
    SPADEResidualBlock,
    StrDiffusionDiscriminator,
    StrDiffusionUNet2DModel,
    convert_official_checkpoint,
)
from diffusers_strdiff.models.discriminator import BLUR_TAPS, blur_downsample
from diffusers_strdiff.models.upsampling import upsample_nearest_2x

from .conftest import load_fixture

UNET_FIXTURES = ["texture_unet", "structure_unet"]


def assert_matches_reference(output: torch.Tensor, reference: torch.Tensor) -> None:
    """The fixture README's network tolerance: rtol=1e-4, atol=1e-5 * max(1, max |reference|)."""
    atol = 1e-5 * max(1.0, reference.abs().max().item())
    torch.testing.assert_close(output, reference, rtol=1e-4, atol=atol)


def public_config(model: torch.nn.Module) -> dict:
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


@pytest.fixture(scope="module")
def released_models() -> dict[str, torch.nn.Module]:
    names = [*UNET_FIXTURES, "discriminator"]
    return {name: convert_official_checkpoint(load_fixture(f"{name}_state_dict")) for name in names}


def unet_inputs(io: dict[str, torch.Tensor], items: slice = slice(None)) -> dict[str, torch.Tensor | None]:
    guidance = io.get("guidance")
    return {
        "sample": io["sample"][items],
        "condition": io["condition"][items],
        "guidance": None if guidance is None else guidance[items],
    }


@torch.no_grad()
@pytest.mark.parametrize("name", UNET_FIXTURES)
def test_unet_matches_released_outputs(released_models, name):
    model, io = released_models[name], load_fixture(f"{name}_io")
    output = model(timestep=io["timesteps"], **unet_inputs(io)).sample
    assert_matches_reference(output, io["output"])

    first_timestep = int(io["timesteps"][0])
    output = model(timestep=first_timestep, **unet_inputs(io, slice(0, 1))).sample
    assert_matches_reference(output, io["output_first_item_int_timestep"])


@torch.no_grad()
def test_discriminator_matches_released_outputs(released_models):
    model, io = released_models["discriminator"], load_fixture("discriminator_io")
    assert_matches_reference(model(io["sample"], io["timesteps"], io["structure"]), io["output"])
    output = model(io["sample"][:1], io["timesteps"][:1], io["structure"][:1])
    assert output.shape == (1,)
    assert_matches_reference(output, io["output_first_item_alone"])
    assert_matches_reference(model(io["sample"][:1], int(io["timesteps"][0]), io["structure"][:1]), output)


@torch.no_grad()
@pytest.mark.parametrize("name", UNET_FIXTURES)
def test_unet_per_item_timesteps_equal_single_calls(released_models, name):
    model, io = released_models[name], load_fixture(f"{name}_io")
    batched = model(timestep=io["timesteps"], **unet_inputs(io)).sample
    for index, timestep in enumerate(io["timesteps"].tolist()):
        single = model(timestep=timestep, **unet_inputs(io, slice(index, index + 1))).sample
        torch.testing.assert_close(batched[index : index + 1], single, rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("name", UNET_FIXTURES)
def test_unet_timestep_forms_agree(released_models, name):
    model, io = released_models[name], load_fixture(f"{name}_io")
    inputs = unet_inputs(io)
    reference = model(timestep=torch.tensor([42, 42]), **inputs).sample
    for timestep in (42, 42.0, torch.tensor(42), torch.tensor([42]), torch.tensor([42.0])):
        torch.testing.assert_close(model(timestep=timestep, **inputs).sample, reference, rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("name", UNET_FIXTURES)
@pytest.mark.parametrize("size", [(17, 23), (5, 7), (8, 8), (30, 9)])
def test_unet_any_size(released_models, name, size):
    model = released_models[name]
    channels, guidance_channels = model.config.in_channels, model.config.guidance_channels
    sample, condition = torch.randn(2, channels, *size), torch.rand(2, channels, *size)
    guidance = torch.rand(2, guidance_channels, *size) if guidance_channels else None
    output = model(sample, 7, condition, guidance).sample
    assert output.shape == (2, model.config.out_channels, *size)
    assert torch.isfinite(output).all()


@torch.no_grad()
def test_unet_return_tuple(released_models):
    model, io = released_models["structure_unet"], load_fixture("structure_unet_io")
    output = model(timestep=io["timesteps"], return_dict=False, **unet_inputs(io))
    assert isinstance(output, tuple) and len(output) == 1
    assert_matches_reference(output[0], io["output"])


@torch.no_grad()
@pytest.mark.parametrize("name", ["texture_unet", "discriminator"])
def test_save_pretrained_round_trip(released_models, name, tmp_path):
    model = released_models[name]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    for low_cpu_mem_usage in (True, False):
        reloaded = type(model).from_pretrained(tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
        assert public_config(reloaded) == public_config(model)
        reloaded_state = reloaded.state_dict()
        assert all(torch.equal(reloaded_state[key], value) for key, value in model.state_dict().items())
        # identical weights; outputs agree to the fixtures tolerance (oneDNN may pick other kernels)
        if name == "discriminator":
            io = load_fixture("discriminator_io")
            args = (io["sample"], io["timesteps"], io["structure"])
            torch.testing.assert_close(reloaded(*args), model(*args), rtol=1e-4, atol=1e-5)
        else:
            io = load_fixture(f"{name}_io")
            inputs = dict(timestep=io["timesteps"], **unet_inputs(io))
            torch.testing.assert_close(reloaded(**inputs).sample, model(**inputs).sample, rtol=1e-4, atol=1e-5)


def guided_unet_arguments() -> dict[str, torch.Tensor]:
    return {
        "sample": torch.rand(2, 3, 12, 16),
        "timestep": torch.tensor([3, 5]),
        "condition": torch.rand(2, 3, 12, 16),
        "guidance": torch.rand(2, 1, 12, 16),
    }


UNET_ERROR_CASES = {
    "sample_not_4d": (dict(sample=torch.rand(3, 12, 16)), "`sample` must be a 4-D tensor"),
    "sample_channels": (dict(sample=torch.rand(2, 1, 12, 16)), "`sample` must have 3 channel"),
    "condition_channels": (dict(condition=torch.rand(2, 4, 12, 16)), "`condition` must have 3 channel"),
    "condition_size": (dict(condition=torch.rand(2, 3, 12, 15)), "`condition` must have the batch size, height"),
    "condition_batch": (dict(condition=torch.rand(1, 3, 12, 16)), "`condition` must have the batch size, height"),
    "guidance_missing": (dict(guidance=None), "`guidance` is required"),
    "guidance_channels": (dict(guidance=torch.rand(2, 3, 12, 16)), "`guidance` must have 1 channel"),
    "guidance_size": (dict(guidance=torch.rand(2, 1, 6, 8)), "`guidance` must have the batch size, height"),
    "timestep_batch": (dict(timestep=torch.tensor([1, 2, 3])), "`timestep` must be"),
    "timestep_2d": (dict(timestep=torch.ones(2, 1)), "`timestep` must be"),
    "sample_too_small": (
        dict(sample=torch.rand(2, 3, 2, 16), condition=torch.rand(2, 3, 2, 16), guidance=torch.rand(2, 1, 2, 16)),
        "`sample` of size 2x16 is too small",
    ),
}


@pytest.mark.parametrize("case", list(UNET_ERROR_CASES))
def test_unet_rejects_bad_inputs(released_models, case):
    overrides, message = UNET_ERROR_CASES[case]
    with pytest.raises(ValueError, match=message):
        released_models["texture_unet"](**{**guided_unet_arguments(), **overrides})


def test_unguided_unet_rejects_guidance(released_models):
    arguments = guided_unet_arguments()
    arguments.update(sample=arguments["sample"][:, :1], condition=arguments["condition"][:, :1])
    with pytest.raises(ValueError, match="`guidance` must be None"):
        released_models["structure_unet"](**arguments)


def discriminator_arguments() -> dict[str, torch.Tensor]:
    return {
        "sample": torch.rand(2, 3, 16, 16),
        "timestep": torch.tensor([3, 5]),
        "structure": torch.rand(2, 1, 16, 16),
    }


DISCRIMINATOR_ERROR_CASES = {
    "sample_not_4d": (dict(sample=torch.rand(3, 16, 16)), "`sample` must be a 4-D tensor"),
    "sample_channels": (dict(sample=torch.rand(2, 4, 16, 16)), "`sample` must have 3 channel"),
    "structure_channels": (dict(structure=torch.rand(2, 3, 16, 16)), "`structure` must have 1 channel"),
    "structure_size": (dict(structure=torch.rand(2, 1, 16, 8)), "`structure` must have the batch size, height"),
    "too_small": (dict(sample=torch.rand(2, 3, 7, 16), structure=torch.rand(2, 1, 7, 16)), "at least 8x8"),
    "timestep_batch": (dict(timestep=torch.tensor([1, 2, 3])), "`timestep` must be"),
    "batch_not_divisible": (
        dict(sample=torch.rand(6, 3, 16, 16), structure=torch.rand(6, 1, 16, 16), timestep=7),
        "must be divisible by min",
    ),
}


@pytest.mark.parametrize("case", list(DISCRIMINATOR_ERROR_CASES))
def test_discriminator_rejects_bad_inputs(released_models, case):
    overrides, message = DISCRIMINATOR_ERROR_CASES[case]
    with pytest.raises(ValueError, match=message):
        released_models["discriminator"](**{**discriminator_arguments(), **overrides})


@torch.no_grad()
def test_discriminator_minibatch_std_groups(released_models):
    """Items b and b' share a minibatch-stddev group iff b = b' mod (batch / 4): batches of 8 split into 2 groups."""
    model = released_models["discriminator"]
    sample, structure = torch.rand(8, 3, 16, 16), torch.rand(8, 1, 16, 16)
    reference = model(sample, 9, structure)
    changed = sample.clone()
    changed[1] += 1.0  # item 1 is in the group of the odd items
    output = model(changed, 9, structure)
    assert torch.equal(output[0::2], reference[0::2])
    assert not torch.equal(output[3::2], reference[3::2])


def test_spade_block_uses_stored_spectral_norm_vectors():
    block = SPADEResidualBlock(num_channels=6, guidance_channels=2, hidden_channels=5).eval()
    parametrization = block.conv_0.parametrizations.weight
    original, u, v = parametrization.original, parametrization[0]._u, parametrization[0]._v
    sigma = torch.dot(u, original.flatten(1) @ v)
    torch.testing.assert_close(block.conv_0.weight, original / sigma)
    with torch.no_grad():
        output = block(torch.randn(2, 6, 9, 11), torch.rand(2, 2, 4, 5))
    assert output.shape == (2, 6, 9, 11)


def test_spade_block_gives_the_same_output_in_either_memory_layout():
    """Its normalisations compute gamma and beta in the layout of the features; the result does not depend on it."""
    block = SPADEResidualBlock(num_channels=6, guidance_channels=1, hidden_channels=5).eval()
    hidden_states, guidance = torch.randn(2, 6, 9, 11), torch.rand(2, 1, 4, 5)
    with torch.no_grad():
        expected = block(hidden_states, guidance)
        channels_last = block(hidden_states.contiguous(memory_format=torch.channels_last), guidance)
    torch.testing.assert_close(channels_last, expected, rtol=1e-6, atol=1e-6)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    "model_class, config, expected",
    [
        (StrDiffusionUNet2DModel, dict(in_channels=3, out_channels=3, guidance_channels=1), 163_333_763),
        (StrDiffusionUNet2DModel, dict(in_channels=1, out_channels=1, guidance_channels=0), 137_133_825),
        (StrDiffusionDiscriminator, dict(base_channels=64, time_embedding_dim=256), 12_741_377),
        (StrDiffusionDiscriminator, dict(base_channels=32, time_embedding_dim=256), 3_376_769),
        (StrDiffusionUNet2DModel, dict(base_channels=8, depth=2, guidance_channels=1), 247_475),
        (StrDiffusionUNet2DModel, dict(in_channels=1, out_channels=1, base_channels=8, depth=2), 194_145),
        (StrDiffusionDiscriminator, dict(base_channels=4, time_embedding_dim=32), 53_393),
    ],
)
def test_released_parameter_counts(model_class, config, expected):
    with torch.device("meta"):
        model = model_class(**config)
    assert sum(parameter.numel() for parameter in model.parameters()) == expected


@pytest.mark.parametrize("size", [(3, 5), (32, 32), (33, 32), (64, 64)])
def test_upsample_nearest_2x_equals_interpolate(size: tuple[int, int]) -> None:
    """Both sides of `UPSAMPLE_BY_EXPAND_MAX_PIXELS` give `F.interpolate(..., scale_factor=2, mode="nearest")`,
    values and gradients."""
    hidden_states = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.randn(2, 3, 2 * size[0], 2 * size[1], generator=torch.Generator().manual_seed(1))
    expected = torch.nn.functional.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), hidden_states)
    output = upsample_nearest_2x(hidden_states)
    (grad,) = torch.autograd.grad((output * weights).sum(), hidden_states)
    assert torch.equal(output, expected)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("size", [(8, 8), (9, 6)])
def test_blur_downsample_of_either_memory_layout(size: tuple[int, int]) -> None:
    """The discriminator's anti-aliased x2 downsampling, against a float64 FIR filter written out, on a contiguous and
    on a channels-last input (a prepared Winograd convolution's output), which give the same values."""
    hidden_states = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    taps = torch.tensor(BLUR_TAPS, dtype=torch.float64)
    padded = torch.nn.functional.pad(hidden_states.double(), (1, 1, 1, 1))
    kernel = torch.outer(taps, taps) / taps.sum() ** 2
    height, width = size[0] // 2, size[1] // 2
    expected = torch.zeros(2, 3, height, width, dtype=torch.float64)
    for row in range(4):
        for column in range(4):
            expected += kernel[row, column] * padded[:, :, row : row + 2 * height : 2, column : column + 2 * width : 2]
    contiguous = blur_downsample(hidden_states)
    channels_last = blur_downsample(hidden_states.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(contiguous.double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(channels_last, contiguous, rtol=1e-6, atol=1e-7)
