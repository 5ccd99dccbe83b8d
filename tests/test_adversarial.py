"""The optional adversarial term of the texture training (`--adversarial_weight`): weight, critic, checkpoints."""

import math
from pathlib import Path

import pytest
import torch

from diffusers_strdiff.models import StrDiffusionPatchCritic
from diffusers_strdiff.training import (
    ArgumentValueError,
    CriticInputs,
    adaptive_weight,
    build_noise_scheduler,
    critic_loss,
)

from .test_training import _weights, load_script, tiny_args

pytestmark = pytest.mark.usefixtures("one_thread")


def test_adaptive_weight_is_the_ratio_of_the_last_layer_gradient_norms() -> None:
    weight = torch.randn(4, 3, requires_grad=True)
    inputs = torch.randn(5, 3)
    reconstruction = (inputs @ weight.T).abs().sum()
    adversarial = 0.25 * (inputs @ weight.T).pow(2).sum()
    expected_reconstruction = torch.autograd.grad(reconstruction, weight, retain_graph=True)[0].norm()
    expected_adversarial = torch.autograd.grad(adversarial, weight, retain_graph=True)[0].norm()
    ratio = adaptive_weight(reconstruction, adversarial, weight)
    assert not ratio.requires_grad
    assert ratio.item() == pytest.approx((expected_reconstruction / (expected_adversarial + 1e-4)).item(), rel=1e-6)
    # Both graphs survive for the backward pass of the total loss.
    (reconstruction + ratio * adversarial).backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all()


def test_adaptive_weight_is_clamped_when_the_adversarial_gradient_vanishes() -> None:
    weight = torch.randn(2, 2, requires_grad=True)
    reconstruction = weight.sum() * 1e6
    adversarial = weight.sum() * 0.0
    assert adaptive_weight(reconstruction, adversarial, weight).item() == 1e4


def test_critic_loss_is_the_hole_masked_non_saturating_gan_loss() -> None:
    """Only hole patches of the weighted samples count, each by its hole fraction."""
    torch.manual_seed(0)
    critic = StrDiffusionPatchCritic(base_channels=8)
    hole_mask = torch.zeros(3, 1, 16, 16)
    hole_mask[0, :, :8, :8] = 1  # the top-left patch of the 2 x 2 logits only
    hole_mask[1, :, 4:12, :] = 1
    hole_mask[2] = 1  # weight 0: does not count
    inputs = CriticInputs(
        real=torch.rand(3, 3, 16, 16),
        fake=torch.rand(3, 3, 16, 16),
        hole_mask=hole_mask,
        sample_weight=torch.tensor([1.0, 1.0, 0.0]),
    )
    real, fake = critic(inputs.real, hole_mask), critic(inputs.fake, hole_mask)
    assert real.shape == (3, 1, 2, 2)
    weights = torch.nn.functional.avg_pool2d(hole_mask, 8) * inputs.sample_weight[:, None, None, None]
    expected = ((torch.log1p(torch.exp(-real)) + torch.log1p(torch.exp(fake))) * weights).sum() / weights.sum()
    torch.testing.assert_close(critic_loss(critic, inputs), expected)


def test_patch_critic_round_trip_and_bad_inputs(tmp_path: Path) -> None:
    critic = StrDiffusionPatchCritic(base_channels=8, num_layers=2).eval()
    sample, condition = torch.rand(2, 3, 12, 20), torch.ones(2, 1, 12, 20)
    critic.save_pretrained(tmp_path)
    loaded = StrDiffusionPatchCritic.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(sample, condition), critic(sample, condition), rtol=0, atol=0)
        assert critic(sample, condition).shape == (2, 1, 3, 5)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*num_layers = 4"):
        critic(torch.rand(1, 3, 10, 12), torch.ones(1, 1, 10, 12))
    with pytest.raises(ValueError, match="`condition` must have the batch size"):
        critic(sample, torch.ones(1, 1, 12, 20))
    with pytest.raises(ValueError, match="`sample` must have 3 channel"):
        critic(torch.rand(2, 1, 12, 20), condition)
    with pytest.raises(ValueError, match="norm_num_groups"):
        StrDiffusionPatchCritic(base_channels=12)


@pytest.fixture(scope="module")
def adversarial_runs(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The texture net with a critic: 6 steps straight, and 3 steps then resumed to 6."""
    root = tmp_path_factory.mktemp("adversarial")
    script = load_script("train_texture")
    common = [
        "--checkpointing_steps", "3",
        "--use_ema",
        "--adversarial_weight", "0.5",
        "--critic_base_channels", "8",
        "--critic_warmup_steps", "2",  # steps 1-2 train the critic alone, steps 3-6 both
    ]  # fmt: skip
    reference = script.main(tiny_args(data, root / "reference", "train_texture", "--max_train_steps", "6", *common))
    script.main(tiny_args(data, root / "resumed", "train_texture", "--max_train_steps", "3", *common))
    resumed = script.main(
        tiny_args(
            data, root / "resumed", "train_texture", "--max_train_steps", "6", "--resume_from_checkpoint", "latest",
            *common,
        )
    )  # fmt: skip
    return {"reference": reference, "resumed": resumed}


def test_adversarial_run_saves_a_trained_critic(adversarial_runs: dict[str, object]) -> None:
    output_dir = adversarial_runs["reference"].output_dir
    for folder in ("texture_unet", "texture_critic", "checkpoint-3/texture_critic", "checkpoint-6/texture_critic"):
        assert (output_dir / folder / "diffusion_pytorch_model.safetensors").is_file(), folder
    critic = StrDiffusionPatchCritic.from_pretrained(output_dir / "texture_critic")
    assert critic.config.base_channels == 8 and critic.config.condition_channels == 1
    first, last = _weights(output_dir / "checkpoint-3/texture_critic"), _weights(output_dir / "texture_critic")
    assert any(not torch.equal(first[name], last[name]) for name in first)  # the critic is trained
    card = (output_dir / "README.md").read_text()
    assert "adversarial term" in card


def test_adversarial_run_resumes_bitwise(adversarial_runs: dict[str, object]) -> None:
    """A run stopped at step 3 and resumed ends with the network and critic of the uninterrupted run."""
    reference, resumed = adversarial_runs["reference"], adversarial_runs["resumed"]
    assert resumed.first_step == 3 and resumed.global_step == 6
    for folder in ("texture_unet", "texture_critic"):
        expected, actual = _weights(reference.output_dir / folder), _weights(resumed.output_dir / folder)
        assert expected.keys() == actual.keys()
        for name in expected:
            assert torch.equal(expected[name], actual[name]), f"{folder}: {name} differs"


def test_adversarial_term_changes_the_gradient(data: dict[str, Path]) -> None:
    """The generator loss with a critic differs from the plain one by the weighted adversarial term."""
    script = load_script("train_texture")
    args = script.parse_args(None, script.add_arguments, tiny_args(data, data["root"] / "unused", "train_texture"))
    torch.manual_seed(0)
    model = script.build_model(args)
    critic = StrDiffusionPatchCritic(base_channels=8)
    scheduler = build_noise_scheduler(args)
    image = torch.rand(4, 3, 32, 32)
    known_mask = torch.ones(4, 1, 32, 32)
    known_mask[:, :, 8:24, 8:24] = 0
    gray = image.mean(dim=1, keepdim=True)
    batch = {"image": image, "known_mask": known_mask, "gray": gray, "edges": torch.zeros_like(gray)}
    plain = script.compute_loss(model, batch, scheduler, torch.Generator().manual_seed(1))
    result = script.compute_loss(
        model, batch, scheduler, torch.Generator().manual_seed(1), critic=critic, adversarial_weight=0.5
    )
    assert result.critic_inputs.sample_weight.sum() > 0  # some t >= 0.4 T in this seeded batch
    torch.testing.assert_close(result.logs["reconstruction_loss"], plain.item())
    expected = plain.item() + result.logs["adaptive_weight"] * result.logs["adversarial_loss"]
    assert result.loss.item() == pytest.approx(expected, rel=1e-6)
    assert result.logs["adaptive_weight"] > 0 and math.isfinite(result.logs["adaptive_weight"])
    # The critic sees the real images and the estimate with the known region pasted, not the raw output.
    torch.testing.assert_close(result.critic_inputs.real, image)
    torch.testing.assert_close(result.critic_inputs.fake * known_mask, image * known_mask)
    assert not result.critic_inputs.fake.requires_grad
    warmup = script.compute_loss(
        model, batch, scheduler, torch.Generator().manual_seed(1), critic=critic, adversarial=False
    )
    assert warmup.loss.item() == pytest.approx(plain.item(), rel=1e-6) and "adaptive_weight" not in warmup.logs


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--adversarial_weight", "-1"], "--adversarial_weight` must be >= 0"),
        (["--adversarial_weight", "0.5", "--critic_base_channels", "12"], "--critic_base_channels"),
        (["--adversarial_weight", "0.5", "--critic_warmup_steps", "-1"], "--critic_warmup_steps"),
    ],
)
def test_bad_adversarial_arguments_raise_clear_errors(
    data: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    argv = tiny_args(data, tmp_path / "out", "train_texture")
    with pytest.raises(ArgumentValueError, match=message):
        load_script("train_texture").main(argv + extra)
