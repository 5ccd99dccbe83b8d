"""The structure process options of the pipeline: `structure_mean` (what the structure SDE reverts to) and
`texture_guidance` (what guides the texture network), in the pipeline, the resampling callback and training."""

import pytest
import torch

from diffusers_strdiff import (
    DiscriminatorGatedResampling,
    MeanRevertingSDEScheduler,
    StrDiffusionDiscriminator,
    StrDiffusionInpaintPipeline,
    StrDiffusionUNet2DModel,
)
from diffusers_strdiff.coarse_fill import fill_hole
from diffusers_strdiff.structure import estimate_guidance, grayscale_map, structure_mean
from diffusers_strdiff.training import estimated_structure

HEIGHT, WIDTH = 24, 28
T = 10


def tiny_pipeline(**config: str) -> StrDiffusionInpaintPipeline:
    torch.manual_seed(0)
    pipeline = StrDiffusionInpaintPipeline(
        structure_unet=StrDiffusionUNet2DModel(
            in_channels=1, out_channels=1, base_channels=8, depth=2, known_mask_channel=True
        ),
        texture_unet=StrDiffusionUNet2DModel(
            in_channels=3, out_channels=3, base_channels=8, depth=2, guidance_channels=1, known_mask_channel=True
        ),
        discriminator=StrDiffusionDiscriminator(base_channels=4, time_embedding_dim=32),
        scheduler=MeanRevertingSDEScheduler(
            num_train_timesteps=T, prediction_type="residual", algorithm_type="posterior"
        ),
        mean_fill="biharmonic",
        **config,
    )
    for module in pipeline.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def make_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, HEIGHT, WIDTH, generator=generator)
    mask = torch.zeros(1, 1, HEIGHT, WIDTH)
    mask[..., 5:15, 6:20] = 1
    return image, mask


class CallRecorder:
    """Records the positional arguments and outputs of every forward call of a network."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.calls: list[tuple[tuple[torch.Tensor, ...], dict, torch.Tensor]] = []
        self.handle = network.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, output) -> None:
        self.calls.append((tuple(args), dict(kwargs), output.sample))

    def remove(self) -> None:
        self.handle.remove()


def record_call(pipeline: StrDiffusionInpaintPipeline, **kwargs) -> tuple[list, list, torch.Tensor]:
    structure, texture = CallRecorder(pipeline.structure_unet), CallRecorder(pipeline.texture_unet)
    image, mask = make_inputs()
    try:
        output = pipeline(image=image, mask_image=mask, generator=torch.manual_seed(0), output_type="pt", **kwargs)
    finally:
        structure.remove()
        texture.remove()
    return structure.calls, texture.calls, output


def test_structure_mean_options() -> None:
    image, mask = make_inputs()
    known_mask = 1 - mask
    gray = grayscale_map(image) * known_mask
    edges = (torch.rand_like(gray) > 0.8).float()
    assert torch.equal(structure_mean(gray, edges, known_mask, "edges", "biharmonic"), edges * known_mask)
    filled = structure_mean(gray, edges, known_mask, "filled_gray", "biharmonic")
    assert torch.equal(filled, fill_hole(gray, known_mask, "biharmonic"))
    assert torch.equal(filled[known_mask.bool()], gray[known_mask.bool()])
    hole = ~known_mask.bool()
    assert filled[hole].min() > 0.05  # the fill continues the surrounding gray (a random image's mean is ~0.5)
    with pytest.raises(ValueError, match="`structure_mean` must be one of"):
        structure_mean(gray, edges, known_mask, "gray", "biharmonic")


def test_estimate_guidance_pastes_the_known_gray_and_clamps() -> None:
    known_mask = torch.ones(1, 1, 4, 4)
    known_mask[..., 1:3, 1:3] = 0
    known_gray = torch.full((1, 1, 4, 4), 0.25) * known_mask
    estimate = torch.tensor([-1.0, 0.5, 2.0, 0.75]).reshape(1, 1, 2, 2).repeat_interleave(2, -1).repeat(1, 1, 2, 1)
    guidance = estimate_guidance(estimate, known_gray, known_mask)
    assert torch.equal(guidance[known_mask.bool()], torch.full((12,), 0.25))
    assert torch.equal(guidance[..., 1:3, 1:3], estimate.clamp(0, 1)[..., 1:3, 1:3])


@pytest.mark.parametrize("bad", [{"structure_mean": "sketch"}, {"texture_guidance": "oracle"}])
def test_unknown_options_raise(bad: dict[str, str]) -> None:
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"`{name}` must be one of"):
        tiny_pipeline(**bad)


def test_filled_gray_structure_mean_reaches_the_structure_net() -> None:
    pipeline = tiny_pipeline(structure_mean="filled_gray")
    structure_calls, _, _ = record_call(pipeline, num_inference_steps=3)
    image, mask = make_inputs()
    known_mask = 1 - mask
    expected = fill_hole(grayscale_map(image * known_mask) * known_mask, known_mask, "biharmonic")
    assert len(structure_calls) == 2  # timesteps [10, 5, 1]: t >= 4 is the early stage
    for args, _, _ in structure_calls:
        torch.testing.assert_close(args[2], expected)  # (sample, timestep, mu)


@pytest.mark.parametrize("steps", [3, T])
def test_estimate_guidance_is_the_structure_x0_estimate_then_held(steps: int) -> None:
    pipeline = tiny_pipeline(structure_mean="filled_gray", texture_guidance="estimate")
    structure_calls, texture_calls, output = record_call(pipeline, num_inference_steps=steps)
    image, mask = make_inputs()
    known_mask = 1 - mask
    known_gray = grayscale_map(image * known_mask) * known_mask
    timesteps = pipeline.scheduler.timesteps.tolist()
    early = [t for t in timesteps if pipeline.uses_structure(t)]
    assert len(structure_calls) == len(early) < len(texture_calls) == len(timesteps)
    guidance = None
    for index, (args, _, _) in enumerate(texture_calls):
        if index < len(structure_calls):
            sample, timestep, mu = structure_calls[index][0][:3]
            estimate = pipeline.scheduler.predict_original_sample(structure_calls[index][2], timestep, sample, mu)
            guidance = estimate_guidance(estimate, known_gray, known_mask)
        torch.testing.assert_close(args[3], guidance)  # (sample, timestep, mu, guidance); late steps hold the last
    assert output.nfe == {
        "structure": len(early),
        "texture": len(timesteps),
        "discriminator": 0,
        "total": steps + len(early),
    }
    # The structure output is that last estimate, with the known grayscale pasted.
    torch.testing.assert_close(output.structures, guidance, atol=1e-6, rtol=0)


def test_state_guidance_is_the_structure_state() -> None:
    """The released guidance: the texture net sees the structure state after the step, not its x_0 estimate."""
    pipeline = tiny_pipeline(structure_mean="filled_gray")
    structure_calls, texture_calls, _ = record_call(pipeline, num_inference_steps=3)
    first_guidance = texture_calls[0][0][3]
    sample, timestep, mu = structure_calls[0][0][:3]
    estimate = pipeline.scheduler.predict_original_sample(structure_calls[0][2], timestep, sample, mu)
    assert not torch.allclose(first_guidance, estimate.clamp(0, 1), atol=1e-3)
    late_sample = texture_calls[-1][0][0]
    torch.testing.assert_close(texture_calls[-1][0][3], late_sample.mean(dim=1, keepdim=True))


def test_resampling_with_estimate_guidance_guides_each_proposal_by_its_estimate() -> None:
    pipeline = tiny_pipeline(structure_mean="filled_gray", texture_guidance="estimate")
    callback = DiscriminatorGatedResampling(resample_limit=2, min_attempts=1, resample_every=1, renoise_steps=1)
    structure_calls, texture_calls, output = record_call(pipeline, callback_on_step_end=callback)
    assert output.nfe["discriminator"] > 0 and callback.history
    image, mask = make_inputs()
    known_mask = 1 - mask
    known_gray = grayscale_map(image * known_mask) * known_mask
    # The first step: its texture call, then the callback's re-denoised structure step and its proposal.
    sample, timestep, mu = structure_calls[1][0][:3]
    estimate = pipeline.scheduler.predict_original_sample(structure_calls[1][2], timestep, sample, mu)
    torch.testing.assert_close(texture_calls[1][0][3], estimate_guidance(estimate, known_gray, known_mask))


def test_options_survive_save_and_load(tmp_path) -> None:
    pipeline = tiny_pipeline(structure_mean="filled_gray", texture_guidance="estimate")
    pipeline.save_pretrained(tmp_path)
    loaded = StrDiffusionInpaintPipeline.from_pretrained(tmp_path)
    assert (loaded.config.structure_mean, loaded.config.texture_guidance) == ("filled_gray", "estimate")
    loaded.set_progress_bar_config(disable=True)
    image, mask = make_inputs()
    expected = record_call(pipeline, num_inference_steps=3)[2].images
    actual = loaded(
        image=image, mask_image=mask, generator=torch.manual_seed(0), output_type="pt", num_inference_steps=3
    )
    torch.testing.assert_close(actual.images, expected, atol=1e-6, rtol=0)


def test_training_estimate_matches_the_pipeline_computation() -> None:
    """`estimated_structure` is the network's clamped x_0 estimate at max(t, floor(0.4 T)), known gray pasted."""
    pipeline = tiny_pipeline(structure_mean="filled_gray")
    image, mask = make_inputs()
    known_mask = 1 - mask
    gray = grayscale_map(image)
    mu = structure_mean(gray, gray, known_mask, "filled_gray", "biharmonic")
    scheduler = pipeline.scheduler
    timesteps = torch.tensor([2])  # a late-stage t: the estimate is taken at floor(0.4 T) = 4
    guidance = estimated_structure(
        pipeline.structure_unet, gray, mu, known_mask, timesteps, scheduler, torch.Generator().manual_seed(3)
    )
    noise = torch.randn(gray.shape, generator=torch.Generator().manual_seed(3))
    state = scheduler.add_noise(gray, noise, torch.tensor([4]), mu)
    output = pipeline.structure_unet(state, torch.tensor([4]), mu, known_mask=known_mask).sample
    estimate = scheduler.predict_original_sample(output, torch.tensor([4]), state, mu)
    torch.testing.assert_close(guidance, estimate_guidance(estimate, gray * known_mask, known_mask))
    assert guidance.min() >= 0 and guidance.max() <= 1
