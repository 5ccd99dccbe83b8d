"""Prediction types of the scheduler, the known-mask input channel, the coarse mean fills and their pipeline config."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from diffusers_strdiff import MeanRevertingSDEScheduler, StrDiffusionInpaintPipeline, StrDiffusionUNet2DModel
from diffusers_strdiff.coarse_fill import MEAN_FILLS, fill_hole
from diffusers_strdiff.masks import generate_irregular_mask
from diffusers_strdiff.training import denoising_loss

PREDICTION_TYPES = ("epsilon", "sample", "residual")


def _state(batch: int = 2, channels: int = 3, size: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    original = torch.rand(batch, channels, size, size, generator=generator)
    mu = torch.rand(batch, channels, size, size, generator=generator)
    noise = torch.randn(batch, channels, size, size, generator=generator)
    return {"original": original, "mu": mu, "noise": noise}


def _exact_output(prediction_type: str, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """What a perfect network of `prediction_type` outputs for the state."""
    return {
        "epsilon": state["noise"],
        "sample": state["original"],
        "residual": state["original"] - state["mu"],
    }[prediction_type]


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("timestep", [2, 10, 50, 100])
def test_conversions_recover_the_original_and_the_noise(prediction_type: str, timestep: int) -> None:
    scheduler = MeanRevertingSDEScheduler(prediction_type=prediction_type, clip_sample=False)
    state = _state()
    noisy = scheduler.add_noise(state["original"], state["noise"], timestep, state["mu"])
    output = _exact_output(prediction_type, state)
    # x0 from eps divides by e^{-bar_theta_t} (>= 0.005): float32 rounding grows with t.
    original_tolerance = 1e-5 if prediction_type != "epsilon" else 2e-3
    assert_close(
        scheduler.predict_original_sample(output, timestep, noisy, state["mu"]),
        state["original"],
        atol=original_tolerance,
        rtol=0,
    )
    # eps from x0 divides by sigma_bar_t (small at small t).
    noise_tolerance = 1e-5 if prediction_type == "epsilon" else 1e-3
    assert_close(
        scheduler.predict_noise(output, timestep, noisy, state["mu"]), state["noise"], atol=noise_tolerance, rtol=0
    )


@pytest.mark.parametrize("algorithm_type", ["euler_maruyama", "posterior"])
@pytest.mark.parametrize("prediction_type", ["sample", "residual"])
def test_step_with_exact_outputs_matches_the_noise_parametrisation(algorithm_type: str, prediction_type: str) -> None:
    """A perfect x_0 (or x_0 - mu) network takes the same step as a perfect noise network."""
    state = _state()
    reference = MeanRevertingSDEScheduler(algorithm_type=algorithm_type, clip_sample=False)
    scheduler = MeanRevertingSDEScheduler(
        algorithm_type=algorithm_type, prediction_type=prediction_type, clip_sample=False
    )
    if algorithm_type == "posterior":
        reference.set_timesteps(10)
        scheduler.set_timesteps(10)
    variance_noise = torch.randn_like(state["original"], generator=torch.Generator().manual_seed(1))
    for timestep in reference.timesteps.tolist()[:-1]:
        noisy = reference.add_noise(state["original"], state["noise"], timestep, state["mu"])
        expected = reference.step(
            state["noise"], timestep, noisy, state["mu"], variance_noise=variance_noise
        ).prev_sample
        actual = scheduler.step(
            _exact_output(prediction_type, state), timestep, noisy, state["mu"], variance_noise=variance_noise
        ).prev_sample
        assert_close(actual, expected, atol=2e-4, rtol=0, msg=f"t={timestep}")


def test_prediction_type_round_trips_through_the_config(tmp_path: Path) -> None:
    scheduler = MeanRevertingSDEScheduler(prediction_type="residual")
    scheduler.save_pretrained(tmp_path)
    assert MeanRevertingSDEScheduler.from_pretrained(tmp_path).config.prediction_type == "residual"
    assert MeanRevertingSDEScheduler.from_config(
        scheduler.config, algorithm_type="posterior"
    ).config.prediction_type == ("residual")
    with pytest.raises(ValueError, match="prediction_type"):
        MeanRevertingSDEScheduler(prediction_type="v_prediction")


@pytest.mark.parametrize("algorithm_type", ["euler_maruyama", "posterior"])
def test_step_outside_the_schedule_raises(algorithm_type: str) -> None:
    scheduler = MeanRevertingSDEScheduler(algorithm_type=algorithm_type)
    scheduler.set_timesteps(10 if algorithm_type == "posterior" else None)
    state = _state()
    for timestep in (0, 101):
        with pytest.raises(ValueError, match="timestep"):
            scheduler.step(state["noise"], timestep, state["original"], state["mu"])
    if algorithm_type == "posterior":
        missing = next(t for t in range(1, 101) if t not in scheduler.timesteps.tolist())
        with pytest.raises(ValueError, match=f"\\[{missing}\\]"):
            scheduler.step(state["noise"], missing, state["original"], state["mu"])


def test_scale_model_input_returns_the_sample() -> None:
    sample = torch.rand(1, 3, 4, 4)
    assert MeanRevertingSDEScheduler().scale_model_input(sample, 5) is sample


@pytest.mark.parametrize("prediction_type", ["sample", "residual"])
def test_x0_loss_is_zero_for_the_exact_output_only(prediction_type: str) -> None:
    scheduler = MeanRevertingSDEScheduler(prediction_type=prediction_type)
    state = _state()
    timesteps = torch.tensor([3, 80])
    noisy = scheduler.add_noise(state["original"], state["noise"], timesteps, state["mu"])
    known_mask = torch.ones(2, 1, 12, 12)
    known_mask[..., 3:9, 3:9] = 0
    exact = _exact_output(prediction_type, state)
    loss = denoising_loss(exact, timesteps, noisy, state["original"], state["mu"], known_mask, scheduler)
    assert loss.item() < 1e-7
    off = denoising_loss(exact + 0.1, timesteps, noisy, state["original"], state["mu"], known_mask, scheduler)
    # L1 of 0.1 everywhere: 0.1 on known pixels + 10 x 0.1 on the hole, each averaged over all pixels.
    hole_fraction = 1 - known_mask.mean().item()
    assert off.item() == pytest.approx(0.1 * (1 - hole_fraction) + 1.0 * hole_fraction, rel=1e-4)


# ------------------------------------------------------------------------------------------------- coarse fills


def _hole_mask(height: int, width: int, bucket: str = "20-40", seed: int = 0) -> torch.Tensor:
    hole = generate_irregular_mask(height, width, generator=np.random.default_rng(seed), bucket=bucket)
    return torch.from_numpy(1 - hole).float()[None, None]


@pytest.mark.parametrize("method", MEAN_FILLS)
def test_fill_keeps_known_pixels_and_never_reads_the_hole(method: str) -> None:
    image = torch.rand(2, 3, 23, 37, generator=torch.Generator().manual_seed(0))
    known_mask = torch.cat([_hole_mask(23, 37, seed=0), _hole_mask(23, 37, "40-60", seed=1)])
    poisoned = torch.where(known_mask.bool().expand_as(image), image, torch.full_like(image, float("nan")))
    filled = fill_hole(poisoned, known_mask, method)
    assert filled.shape == image.shape and torch.isfinite(filled).all()
    known = known_mask.bool().expand_as(image)
    assert torch.equal(filled[known], image[known])
    assert torch.equal(filled, fill_hole(torch.where(known, image, torch.rand_like(image)), known_mask, method))
    if method == "zeros":
        assert torch.equal(filled[~known], torch.zeros_like(filled[~known]))


@pytest.mark.parametrize("method", ["telea", "biharmonic", "pyramid", "patchmatch", "patchmatch_blend"])
def test_fill_continues_the_colour_around_the_hole(method: str) -> None:
    """
    A flat image is filled with its colour (exactly by the push-pull and biharmonic fills up to float error, by
    PatchMatch up to its 8-bit rounding; Telea's fast-marching weights drift by a few 8-bit levels); a left/right split
    keeps each side's colour far from the border.
    """
    colour = torch.tensor([0.2, 0.6, 0.8]).view(1, 3, 1, 1)
    known_mask = torch.ones(1, 1, 32, 32)
    known_mask[..., 8:24, 8:24] = 0
    flat = fill_hole(colour.expand(1, 3, 32, 32), known_mask, method)
    tolerance = {"telea": 4 / 255, "patchmatch": 0.5 / 255, "patchmatch_blend": 0.5 / 255}.get(method, 1e-6)
    assert (flat - colour).abs().max().item() <= tolerance
    split = torch.zeros(1, 3, 32, 32)
    split[..., 16:] = 1.0
    filled = fill_hole(split, known_mask, method)
    assert filled[..., 10:22, 9].max().item() < 0.35 and filled[..., 10:22, 22].min().item() > 0.65


def test_patchmatch_fill_copies_known_texture_deterministically() -> None:
    """
    The hole of a fine checkerboard is filled with its texture (copied patches: every filled pixel within 0.15 of
    black or white, the board's contrast kept, where the smooth fills blur it to a standard deviation below 0.15),
    the same on every call; a 1-channel image is filled like its gray RGB version.
    """
    rows, columns = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    board = ((rows // 2 + columns // 2) % 2).float().expand(1, 3, 32, 32)
    known_mask = torch.ones(1, 1, 32, 32)
    known_mask[..., 10:22, 6:26] = 0
    filled = fill_hole(board, known_mask, "patchmatch")
    hole = filled[:, :, 10:22, 6:26]
    assert ((hole - hole.round()).abs() < 0.15).all() and hole.std().item() > 0.45
    assert fill_hole(board, known_mask, "biharmonic")[:, :, 10:22, 6:26].std().item() < 0.15
    assert torch.equal(filled, fill_hole(board, known_mask, "patchmatch"))
    gray = fill_hole(board[:, :1], known_mask, "patchmatch")
    assert gray.shape == (1, 1, 32, 32) and torch.equal(gray, filled[:, :1])
    blend = fill_hole(board, known_mask, "patchmatch_blend")
    assert_close(blend, torch.lerp(fill_hole(board, known_mask, "biharmonic"), filled, 0.5), atol=1e-6, rtol=0)


def test_fill_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="mean_fill"):
        fill_hole(torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 8, 8), "lama")


# ------------------------------------------------------------------------------------------------- U-Net mask input


def test_known_mask_channel_is_an_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = StrDiffusionUNet2DModel(3, 3, base_channels=8, depth=2, known_mask_channel=True).eval()
    assert model.conv_in.weight.shape[1] == 7
    sample, condition = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    full, holed = torch.ones(1, 1, 16, 16), _hole_mask(16, 16)
    with torch.no_grad():
        output_full = model(sample, 5, condition, known_mask=full).sample
        output_holed = model(sample, 5, condition, known_mask=holed).sample
    assert not torch.allclose(output_full, output_holed)
    with pytest.raises(ValueError, match="known_mask"):
        model(sample, 5, condition)
    with pytest.raises(ValueError, match="known_mask"):
        StrDiffusionUNet2DModel(3, 3, base_channels=8, depth=2)(sample, 5, condition, known_mask=full)
    model.save_pretrained(tmp_path)
    reloaded = StrDiffusionUNet2DModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.known_mask_channel
    with torch.no_grad():
        assert_close(reloaded(sample, 5, condition, known_mask=holed).sample, output_holed, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------- pipeline


def _residual_pipeline(mean_fill: str, guided: bool) -> StrDiffusionInpaintPipeline:
    """A pipeline whose texture net outputs exactly 0: with `"residual"` its x_0 estimate is the coarse mean itself."""
    torch.manual_seed(0)
    texture = StrDiffusionUNet2DModel(
        3, 3, base_channels=8, depth=2, guidance_channels=int(guided), known_mask_channel=True
    )
    torch.nn.init.zeros_(texture.conv_out.weight)
    torch.nn.init.zeros_(texture.conv_out.bias)
    structure = StrDiffusionUNet2DModel(1, 1, base_channels=8, depth=2, known_mask_channel=True) if guided else None
    scheduler = MeanRevertingSDEScheduler(
        num_train_timesteps=20, algorithm_type="posterior", eta=0.0, prediction_type="residual"
    )
    pipeline = StrDiffusionInpaintPipeline(structure, texture.eval(), scheduler, mean_fill=mean_fill)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("mean_fill", ["telea", "pyramid"])
def test_untrained_residual_network_returns_the_coarse_fill(mean_fill: str, guided: bool) -> None:
    """x0_hat = mu at every step, and the last jump lands on x0_hat: the output is the coarse fill, exactly."""
    pipeline = _residual_pipeline(mean_fill, guided)
    image = torch.rand(1, 3, 24, 28, generator=torch.Generator().manual_seed(3))
    known_mask = _hole_mask(24, 28)
    output = pipeline(image=image, mask_image=1 - known_mask, num_inference_steps=5, output_type="pt").images
    expected = fill_hole(image, known_mask, mean_fill)
    assert_close(output, expected, atol=1e-5, rtol=0)


def test_mean_fill_is_saved_and_restored(tmp_path: Path) -> None:
    pipeline = _residual_pipeline("telea", guided=True)
    pipeline.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["mean_fill"] == "telea"
    reloaded = StrDiffusionInpaintPipeline.from_pretrained(tmp_path)
    assert reloaded.config.mean_fill == "telea"
    assert reloaded.scheduler.config.prediction_type == "residual"
    assert reloaded.texture_unet.config.known_mask_channel and reloaded.structure_unet.config.known_mask_channel
    with pytest.raises(ValueError, match="mean_fill"):
        StrDiffusionInpaintPipeline(None, pipeline.texture_unet, pipeline.scheduler, mean_fill="blur")


def test_structure_fill_fills_the_structure_mean_independently(tmp_path: Path) -> None:
    """
    `structure_fill` fills the `filled_gray` structure mean while `mean_fill` fills the texture mean; `None` (the
    default, and pipelines saved before the option) falls back to `mean_fill`; it is saved and restored.
    """
    pipeline = _residual_pipeline("telea", guided=True)
    image = torch.rand(1, 3, 24, 28, generator=torch.Generator().manual_seed(4))
    known_mask = _hole_mask(24, 28)

    def means(pipeline: StrDiffusionInpaintPipeline) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        conditions = pipeline.prepare_conditions(image, known_mask, "known_pixels", 3.0, None, None)
        return conditions.texture_mu, conditions.structure_mu, conditions.known_gray

    pipeline.register_to_config(structure_mean="filled_gray")
    texture_mu, structure_mu, gray = means(pipeline)
    assert pipeline.structure_fill == "telea"
    assert_close(texture_mu, fill_hole(image, known_mask, "telea"), atol=1e-6, rtol=0)
    assert_close(structure_mu, fill_hole(gray, known_mask, "telea"), atol=1e-6, rtol=0)
    pipeline.register_to_config(structure_fill="biharmonic")
    pipeline.save_pretrained(tmp_path)
    reloaded = StrDiffusionInpaintPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert (reloaded.config.mean_fill, reloaded.structure_fill) == ("telea", "biharmonic")
    texture_mu_split, structure_mu_split, _ = means(reloaded)
    assert torch.equal(texture_mu_split, texture_mu)
    assert_close(structure_mu_split, fill_hole(gray, known_mask, "biharmonic"), atol=1e-6, rtol=0)
    assert not torch.allclose(structure_mu_split, structure_mu)
    with pytest.raises(ValueError, match="structure_fill"):
        StrDiffusionInpaintPipeline(None, pipeline.texture_unet, pipeline.scheduler, structure_fill="blur")


def test_default_num_inference_steps_applies_to_posterior_samplers(tmp_path: Path) -> None:
    pipeline = _residual_pipeline("pyramid", guided=False)
    pipeline.register_to_config(default_num_inference_steps=4)
    pipeline.save_pretrained(tmp_path)
    reloaded = StrDiffusionInpaintPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert reloaded.config.default_num_inference_steps == 4
    image, mask = torch.rand(1, 3, 16, 16), 1 - _hole_mask(16, 16)
    assert reloaded(image=image, mask_image=mask, output_type="pt").nfe["texture"] == 4
    assert reloaded(image=image, mask_image=mask, num_inference_steps=7, output_type="pt").nfe["texture"] == 7
    reloaded.scheduler = MeanRevertingSDEScheduler.from_config(
        reloaded.scheduler.config, algorithm_type="euler_maruyama"
    )
    assert reloaded(image=image, mask_image=mask, output_type="pt").nfe["texture"] == 20  # every step of T
