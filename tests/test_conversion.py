import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diffusers_strdiff import (
    StrDiffusionDiscriminator,
    StrDiffusionInpaintPipeline,
    StrDiffusionUNet2DModel,
    convert_official_checkpoint,
    convert_official_pipeline,
)

from .conftest import FIXTURES, load_fixture

SCRIPT = Path(__file__).parents[1] / "scripts" / "convert_official_checkpoint.py"


def released_unet_shapes(
    in_nc: int, out_nc: int, nf: int, depth: int, label_nc: int = 0, head_dim: int = 32
) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of a released `ConditionalUNet` (label_nc > 0, SPADE) / `ConditionalUNets` (0)."""
    shapes = {}
    time_dim, hidden = 4 * nf, 4 * head_dim

    def resblock(prefix: str, dim_in: int, dim_out: int) -> None:
        shapes[f"{prefix}.mlp.1.weight"], shapes[f"{prefix}.mlp.1.bias"] = (2 * dim_out, time_dim), (2 * dim_out,)
        shapes[f"{prefix}.block1.proj.weight"] = (dim_out, dim_in, 3, 3)
        shapes[f"{prefix}.block2.proj.weight"] = (dim_out, dim_out, 3, 3)
        if dim_in != dim_out:
            shapes[f"{prefix}.res_conv.weight"] = (dim_out, dim_in, 1, 1)

    def attention(prefix: str, dim: int) -> None:
        shapes[f"{prefix}.fn.norm.g"] = shapes[f"{prefix}.fn.fn.to_out.1.g"] = (1, dim, 1, 1)
        shapes[f"{prefix}.fn.fn.to_qkv.weight"] = (3 * hidden, dim, 1, 1)
        shapes[f"{prefix}.fn.fn.to_out.0.weight"] = (dim, hidden, 1, 1)
        shapes[f"{prefix}.fn.fn.to_out.0.bias"] = (dim,)

    def spade(prefix: str, dim: int) -> None:
        for index in (0, 1):
            conv = f"{prefix}.conv_{index}"
            shapes[f"{conv}.bias"], shapes[f"{conv}.weight_orig"] = (dim,), (dim, dim, 3, 3)
            shapes[f"{conv}.weight_u"], shapes[f"{conv}.weight_v"] = (dim,), (9 * dim,)
            norm = f"{prefix}.norm_{index}"
            shapes[f"{norm}.mlp_shared.0.weight"], shapes[f"{norm}.mlp_shared.0.bias"] = (16, label_nc, 3, 3), (16,)
            for name in ("mlp_gamma", "mlp_beta"):
                shapes[f"{norm}.{name}.weight"], shapes[f"{norm}.{name}.bias"] = (dim, 16, 3, 3), (dim,)

    shapes["init_conv.weight"] = (nf, 2 * in_nc, 7, 7)
    shapes["time_mlp.1.weight"], shapes["time_mlp.1.bias"] = (time_dim, nf), (time_dim,)
    shapes["time_mlp.3.weight"], shapes["time_mlp.3.bias"] = (time_dim, time_dim), (time_dim,)
    for level in range(depth):
        dim_in, dim_out, up = nf * 2**level, nf * 2 ** (level + 1), depth - 1 - level
        resblock(f"downs.{level}.0", dim_in, dim_in)
        resblock(f"downs.{level}.1", dim_in, dim_in)
        attention(f"downs.{level}.2", dim_in)
        if level < depth - 1:
            shapes[f"downs.{level}.3.weight"], shapes[f"downs.{level}.3.bias"] = (dim_out, dim_in, 4, 4), (dim_out,)
        else:
            shapes[f"downs.{level}.3.weight"] = (dim_out, dim_in, 3, 3)
        if label_nc:
            spade(f"downs.{level}.4", dim_out)
        resblock(f"ups.{up}.0", dim_out + dim_in, dim_out)
        resblock(f"ups.{up}.1", dim_out + dim_in, dim_out)
        attention(f"ups.{up}.2", dim_out)
        if level > 0:
            shapes[f"ups.{up}.3.1.weight"], shapes[f"ups.{up}.3.1.bias"] = (dim_in, dim_out, 3, 3), (dim_in,)
        else:
            shapes[f"ups.{up}.3.weight"] = (dim_in, dim_out, 3, 3)
    mid = nf * 2**depth
    resblock("mid_block1", mid, mid)
    attention("mid_attn", mid)
    resblock("mid_block2", mid, mid)
    resblock("final_res_block", 2 * nf, nf)
    shapes["final_conv.weight"], shapes["final_conv.bias"] = (out_nc, nf, 3, 3), (out_nc,)
    return shapes


def released_discriminator_shapes(nc: int, ngf: int, t_emb_dim: int) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of a released `Discriminator(nc, ngf, t_emb_dim)`."""
    shapes = {}
    for index in (0, 2):
        shapes[f"t_embed.main.{index}.weight"] = (t_emb_dim, t_emb_dim)
        shapes[f"t_embed.main.{index}.bias"] = (t_emb_dim,)
    shapes["start_conv.weight"], shapes["start_conv.bias"] = (2 * ngf, nc, 1, 1), (2 * ngf,)
    for block, (cin, cout) in enumerate([(2, 2), (2, 4), (4, 8), (8, 8)], start=1):
        cin, cout = cin * ngf, cout * ngf
        shapes[f"conv{block}.conv1.0.weight"], shapes[f"conv{block}.conv1.0.bias"] = (cout, cin, 3, 3), (cout,)
        shapes[f"conv{block}.conv2.0.weight"], shapes[f"conv{block}.conv2.0.bias"] = (cout, cout, 3, 3), (cout,)
        shapes[f"conv{block}.dense_t1.weight"], shapes[f"conv{block}.dense_t1.bias"] = (cout, t_emb_dim), (cout,)
        shapes[f"conv{block}.skip.0.weight"] = (cout, cin, 1, 1)
    shapes["final_conv.weight"], shapes["final_conv.bias"] = (8 * ngf, 8 * ngf + 1, 3, 3), (8 * ngf,)
    shapes["end_linear.weight"], shapes["end_linear.bias"] = (1, 8 * ngf), (1,)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=generator) * 0.1 for key, shape in shapes.items()}


def public_config(model: torch.nn.Module) -> dict:
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


def assert_same_tensors(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Every released tensor ends up, unchanged, in exactly one tensor of the converted model."""
    converted = model.state_dict()
    assert len(converted) == len(state_dict)
    signature = sorted((tuple(tensor.shape), tensor.sum().item()) for tensor in converted.values())
    assert signature == sorted((tuple(tensor.shape), tensor.sum().item()) for tensor in state_dict.values())


@pytest.mark.parametrize(
    "name, shapes",
    [
        ("texture_unet", released_unet_shapes(3, 3, 8, 2, label_nc=1)),
        ("structure_unet", released_unet_shapes(1, 1, 8, 2)),
        ("discriminator", released_discriminator_shapes(4, 4, 32)),
    ],
)
def test_fixture_layouts_match_spec(name, shapes):
    """The synthetic released layouts used below are those of the released fixtures."""
    state_dict = load_fixture(f"{name}_state_dict")
    assert {key: tuple(tensor.shape) for key, tensor in state_dict.items()} == shapes


@pytest.mark.parametrize(
    "name, expected_class, expected_config",
    [
        (
            "texture_unet",
            StrDiffusionUNet2DModel,
            dict(in_channels=3, out_channels=3, base_channels=8, depth=2, guidance_channels=1),
        ),
        (
            "structure_unet",
            StrDiffusionUNet2DModel,
            dict(in_channels=1, out_channels=1, base_channels=8, depth=2, guidance_channels=0),
        ),
        (
            "discriminator",
            StrDiffusionDiscriminator,
            dict(in_channels=3, structure_channels=1, base_channels=4, time_embedding_dim=32),
        ),
    ],
)
def test_infers_fixture_configs(name, expected_class, expected_config):
    state_dict = load_fixture(f"{name}_state_dict")
    model = convert_official_checkpoint(FIXTURES / f"{name}_state_dict.safetensors")
    assert type(model) is expected_class
    assert not model.training
    assert expected_config.items() <= public_config(model).items()
    assert_same_tensors(model, state_dict)


@pytest.mark.parametrize(
    "shapes, expected_config",
    [
        (
            released_unet_shapes(2, 1, 4, 3, label_nc=2, head_dim=8),
            dict(in_channels=2, out_channels=1, base_channels=4, depth=3, guidance_channels=2, attention_head_dim=8),
        ),
        (
            released_unet_shapes(3, 3, 6, 1),
            dict(in_channels=3, out_channels=3, base_channels=6, depth=1, guidance_channels=0, attention_head_dim=32),
        ),
        (
            released_discriminator_shapes(4, 32, 256),
            dict(in_channels=3, structure_channels=1, base_channels=32, time_embedding_dim=256),
        ),
        (
            released_discriminator_shapes(2, 3, 17),
            dict(in_channels=1, structure_channels=1, base_channels=3, time_embedding_dim=17),
        ),
    ],
)
@torch.no_grad()
def test_infers_other_configs(shapes, expected_config):
    state_dict = random_state_dict(shapes)
    model = convert_official_checkpoint(state_dict)
    assert expected_config.items() <= public_config(model).items()
    assert_same_tensors(model, state_dict)
    channels = model.config.in_channels
    sample = torch.rand(2, channels, 11, 13)
    if isinstance(model, StrDiffusionDiscriminator):
        output = model(sample, torch.tensor([3, 9]), torch.rand(2, 1, 11, 13))
        assert output.shape == (2,)
    else:
        guidance_channels = model.config.guidance_channels
        guidance = torch.rand(2, guidance_channels, 11, 13) if guidance_channels else None
        output = model(sample, torch.tensor([3, 9]), torch.rand(2, channels, 11, 13), guidance).sample
        assert output.shape == (2, model.config.out_channels, 11, 13)
    assert torch.isfinite(output).all()


@torch.no_grad()
def test_pth_file_with_module_prefix_round_trip(tmp_path):
    state_dict = load_fixture("texture_unet_state_dict")
    path = tmp_path / "texture.pth"
    torch.save({f"module.{key}": value for key, value in state_dict.items()}, path)
    model = convert_official_checkpoint(path)
    io = load_fixture("texture_unet_io")
    output = model(io["sample"], io["timesteps"], io["condition"], io["guidance"]).sample
    torch.testing.assert_close(output, io["output"], rtol=1e-4, atol=1e-5 * io["output"].abs().max().item())


@pytest.mark.parametrize("wrapper_key", ["state_dict", "params"])
def test_wrapped_state_dict(wrapper_key):
    state_dict = load_fixture("discriminator_state_dict")
    model = convert_official_checkpoint({wrapper_key: state_dict, "epoch": 3})
    assert_same_tensors(model, state_dict)


def test_in_memory_state_dict_is_not_aliased():
    state_dict = load_fixture("discriminator_state_dict")
    model = convert_official_checkpoint(state_dict)
    with torch.no_grad():
        model.proj_out.bias.add_(1.0)
    assert torch.equal(state_dict["end_linear.bias"], load_fixture("discriminator_state_dict")["end_linear.bias"])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        convert_official_checkpoint(tmp_path / "missing.pth")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_corrupt_file(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"\x00garbage, not a checkpoint\xff" * 20)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        convert_official_checkpoint(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="is not a state dict"):
        convert_official_checkpoint(path)


def test_unrelated_checkpoint(tmp_path):
    path = tmp_path / "linear.safetensors"
    save_file(torch.nn.Linear(2, 3).state_dict(), path)
    with pytest.raises(ValueError, match="not a released StrDiffusion network"):
        convert_official_checkpoint(path)


def test_missing_key_is_reported():
    state_dict = load_fixture("texture_unet_state_dict")
    del state_dict["downs.1.0.block1.proj.weight"], state_dict["downs.0.4.conv_1.weight_u"]
    with pytest.raises(ValueError, match="missing") as error:
        convert_official_checkpoint(state_dict)
    assert "down_blocks.1.resnets.0.conv1.weight" in str(error.value)
    assert "down_blocks.0.spade.conv_1.parametrizations.weight.0._u" in str(error.value)


def test_unexpected_key_is_reported():
    state_dict = load_fixture("structure_unet_state_dict")
    state_dict["downs.0.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected \(released names\): \['downs\.0\.0\.extra\.weight'\]"):
        convert_official_checkpoint(state_dict)


def test_shape_mismatch_is_reported():
    state_dict = load_fixture("discriminator_state_dict")
    state_dict["end_linear.bias"] = torch.zeros(2)
    with pytest.raises(ValueError, match="end_linear.bias"):
        convert_official_checkpoint(state_dict)


def test_partial_unet_is_rejected():
    state_dict = {"init_conv.weight": torch.zeros(8, 6, 7, 7)}
    with pytest.raises(ValueError, match="downs.0.2.fn.fn.to_qkv.weight"):
        convert_official_checkpoint(state_dict)


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True)


def test_cli_converts_one_network(tmp_path):
    output_dir = tmp_path / "discriminator"
    checkpoint = FIXTURES / "discriminator_state_dict.safetensors"
    result = run_script("--checkpoint", str(checkpoint), "--output_dir", str(output_dir))
    assert result.returncode == 0, result.stderr
    assert "StrDiffusionDiscriminator" in result.stdout and "base_channels=4" in result.stdout
    assert (output_dir / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = StrDiffusionDiscriminator.from_pretrained(output_dir)
    assert_same_tensors(reloaded, load_fixture("discriminator_state_dict"))

    missing = run_script("--checkpoint", str(tmp_path / "missing.pth"), "--output_dir", str(output_dir))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"strdiff convert: error: checkpoint not found: {tmp_path / 'missing.pth'}"
    ]


def test_cli_converts_a_whole_pipeline(tmp_path):
    output_dir = tmp_path / "pipeline"
    result = run_script(
        "--structure",
        str(FIXTURES / "structure_unet_state_dict.safetensors"),
        "--texture",
        str(FIXTURES / "texture_unet_state_dict.safetensors"),
        "--discriminator",
        str(FIXTURES / "discriminator_state_dict.safetensors"),
        "--num_train_timesteps",
        "10",
        "--output_dir",
        str(output_dir),
    )
    assert result.returncode == 0, result.stderr
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(output_dir)
    assert pipeline.scheduler.config.num_train_timesteps == 10
    assert_same_tensors(pipeline.texture_unet, load_fixture("texture_unet_state_dict"))
    assert_same_tensors(pipeline.structure_unet, load_fixture("structure_unet_state_dict"))
    assert_same_tensors(pipeline.discriminator, load_fixture("discriminator_state_dict"))


def test_pipeline_conversion_rejects_swapped_files():
    with pytest.raises(ValueError, match="`structure` must be the released structure net"):
        convert_official_pipeline(load_fixture("texture_unet_state_dict"), load_fixture("texture_unet_state_dict"))
    with pytest.raises(ValueError, match="`discriminator` must be the released discriminator"):
        convert_official_pipeline(
            load_fixture("structure_unet_state_dict"),
            load_fixture("texture_unet_state_dict"),
            load_fixture("structure_unet_state_dict"),
        )
