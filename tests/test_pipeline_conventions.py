"""
The conventions diffusers' `PipelineTesterMixin` checks for every pipeline, adapted to the inpainting pipeline (tiny
random networks): the call-time properties (`num_timesteps`, `interrupt`), the `latents` argument, the callback
protocol, `output_type` variants and dtypes, `return_dict=False`, the `components` round trip, optional components set
to `None`, save / load, batch-of-generators equals single calls, and loading with `dtype=`.
"""

import warnings

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_strdiff import (
    DiscriminatorGatedResampling,
    MeanRevertingSDEScheduler,
    StrDiffusionInpaintPipeline,
    StrDiffusionUNet2DModel,
)

from .test_pipeline import HEIGHT, WIDTH, make_inputs, tiny_pipeline

T = 10  # the tiny pipeline's num_train_timesteps


@pytest.fixture(scope="module")
def pipeline() -> StrDiffusionInpaintPipeline:
    return tiny_pipeline()


def call(pipeline, image=None, mask=None, seed=0, **kwargs):
    if image is None:
        image, mask = make_inputs()
    kwargs.setdefault("output_type", "pt")
    return pipeline(image=image, mask_image=mask, generator=torch.Generator().manual_seed(seed), **kwargs)


class Recorder:
    """A plain-function callback that records what it receives and can interrupt the call at a step."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.interrupt_at = interrupt_at
        self.calls: list[tuple[int, torch.Tensor, dict]] = []

    def __call__(self, pipeline, step_index, timestep, callback_kwargs):
        self.calls.append((step_index, timestep, dict(callback_kwargs), pipeline.num_timesteps))
        if step_index == self.interrupt_at:
            pipeline._interrupt = True
        return callback_kwargs


# ---------------------------------------------------------------------------------------------------- call properties


def test_num_timesteps_is_set_during_the_call(pipeline):
    recorder = Recorder()
    call(pipeline, callback_on_step_end=recorder)
    assert pipeline.num_timesteps == T
    assert all(num_timesteps == T for *_, num_timesteps in recorder.calls)


def test_callback_can_interrupt_the_loop(pipeline):
    recorder = Recorder(interrupt_at=2)
    output = call(pipeline, callback_on_step_end=recorder)
    assert [step_index for step_index, *_ in recorder.calls] == [0, 1, 2]
    assert pipeline.interrupt
    assert output.nfe["texture"] == 3 and output.images.shape == (1, 3, HEIGHT, WIDTH)
    # The next call starts uninterrupted.
    assert call(pipeline).nfe["texture"] == T and not pipeline.interrupt


def test_callback_receives_the_timestep_as_diffusers_passes_it(pipeline):
    recorder = Recorder()
    call(pipeline, callback_on_step_end=recorder)
    for step_index, timestep, *_ in recorder.calls:
        assert isinstance(timestep, torch.Tensor) and timestep.ndim == 0
        assert timestep == pipeline.scheduler.timesteps[step_index]
    assert pipeline.uses_structure(torch.tensor(T)) and not pipeline.uses_structure(torch.tensor(1))
    assert pipeline.uses_structure(T) and not pipeline.uses_structure(1)


def test_resampling_callback_works_with_tensor_timesteps(pipeline):
    callback = DiscriminatorGatedResampling.from_preset("released")
    output = call(pipeline, callback_on_step_end=callback)
    assert {entry["timestep"] for entry in callback.history} == {10, 5}
    assert all(type(entry["timestep"]) is int for entry in callback.history)
    assert output.nfe["discriminator"] == 2 + len(callback.history)


def test_resampling_callback_reuses_the_pipeline_tensor_inputs():
    assert DiscriminatorGatedResampling.tensor_inputs == StrDiffusionInpaintPipeline._callback_tensor_inputs


def test_callback_gets_only_the_requested_tensors(pipeline):
    recorder = Recorder()
    call(pipeline, callback_on_step_end=recorder, callback_on_step_end_tensor_inputs=["texture_mu", "known_mask"])
    assert all(set(kwargs) == {"texture_mu", "known_mask"} for _, _, kwargs, _ in recorder.calls)
    recorder = Recorder()
    call(pipeline, callback_on_step_end=recorder, callback_on_step_end_tensor_inputs=None)
    assert all(set(kwargs) == {"latents"} for _, _, kwargs, _ in recorder.calls)


def test_callback_changing_the_last_state_changes_the_output(pipeline):
    def brighten_last_step(pipe, step_index, timestep, callback_kwargs):
        if step_index == pipe.num_timesteps - 1:
            callback_kwargs["latents"] = callback_kwargs["latents"] + 10
        return callback_kwargs

    image, mask = make_inputs()
    output = call(pipeline, image, mask, callback_on_step_end=brighten_last_step, output_type="latent").images
    plain = call(pipeline, image, mask, output_type="latent").images
    hole = mask.expand_as(image).bool()
    torch.testing.assert_close(output[hole], plain[hole] + 10)
    torch.testing.assert_close(output[~hole], plain[~hole])


# ---------------------------------------------------------------------------------------------------- latents


def test_latents_replace_the_texture_start_draw(pipeline):
    image, mask = make_inputs()
    draws = []

    def recording(shape, generator, device, dtype):
        draws.append(torch.randn(shape, generator=generator, dtype=dtype))
        return draws[-1]

    means = Recorder()
    expected = call(pipeline, image, mask, noise_sampler=recording, callback_on_step_end=means,
                    callback_on_step_end_tensor_inputs=["texture_mu"]).images  # fmt: skip
    start = pipeline.scheduler.initial_sample(means.calls[0][2]["texture_mu"], draws[0])
    replay = iter(draws[1:])
    again = call(pipeline, image, mask, latents=start, noise_sampler=lambda *args: next(replay)).images
    assert torch.equal(again, expected)
    assert next(replay, None) is None  # every later draw was consumed, the texture start draw was not


@pytest.mark.parametrize(
    "latents",
    [torch.zeros(1, 3, HEIGHT, WIDTH + 1), torch.zeros(2, 3, HEIGHT, WIDTH), torch.zeros(1, 1, HEIGHT, WIDTH), 3.0],
)
def test_latents_of_the_wrong_shape_raise(pipeline, latents):
    with pytest.raises(ValueError, match=r"`latents` .*\(1, 3, 19, 27\)"):
        call(pipeline, latents=latents)


# ---------------------------------------------------------------------------------------------------- outputs


def test_output_type_variants_agree(pipeline):
    outputs = {kind: call(pipeline, output_type=kind) for kind in ("pt", "np", "pil", "latent")}
    pt = outputs["pt"].images
    assert pt.dtype == torch.float32 and pt.shape == (1, 3, HEIGHT, WIDTH)
    assert 0 <= pt.min() and pt.max() <= 1
    np_images = outputs["np"].images
    assert isinstance(np_images, np.ndarray) and np_images.dtype == np.float32
    np.testing.assert_allclose(np_images, pt.permute(0, 2, 3, 1).numpy(), atol=0, rtol=0)
    pil = outputs["pil"].images
    assert isinstance(pil[0], PIL.Image.Image) and pil[0].size == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(np.asarray(pil[0]), (np_images[0] * 255).round().astype(np.uint8))
    torch.testing.assert_close(outputs["latent"].images.clamp(0, 1), pt)
    assert outputs["np"].structures.shape == (1, HEIGHT, WIDTH, 1)
    assert outputs["pil"].structures[0].mode == "L"


def test_return_dict_false_gives_the_same_tuple(pipeline):
    as_dict = call(pipeline)
    as_tuple = call(pipeline, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    assert torch.equal(as_tuple[0], as_dict.images) and torch.equal(as_tuple[1], as_dict.structures)


def test_bfloat16_pipeline_outputs_the_diffusers_dtypes():
    pipeline = tiny_pipeline().to(torch.bfloat16)
    image, mask = make_inputs()
    pt = call(pipeline, image, mask, output_type="pt")
    assert pt.images.dtype == torch.bfloat16 and pt.structures.dtype == torch.bfloat16
    assert torch.isfinite(pt.images.float()).all()
    known = (mask == 0).expand_as(image)
    torch.testing.assert_close(pt.images[known], image[known].to(torch.bfloat16))
    np_output = call(pipeline, image, mask, output_type="np")
    assert np_output.images.dtype == np.float32
    np.testing.assert_array_equal(np_output.images[0][known[0].permute(1, 2, 0).numpy()],
                                  image[0].permute(1, 2, 0)[known[0].permute(1, 2, 0)].numpy())  # fmt: skip
    assert call(pipeline, image, mask, output_type="latent").images.dtype == torch.bfloat16
    assert isinstance(call(pipeline, image, mask, output_type="pil").images[0], PIL.Image.Image)


# ---------------------------------------------------------------------------------------------------- components


def test_components_round_trip(pipeline):
    components = pipeline.components
    assert set(components) == {"structure_unet", "texture_unet", "scheduler", "discriminator"}
    rebuilt = StrDiffusionInpaintPipeline(**components, mean_fill=pipeline.config.mean_fill)
    rebuilt.set_progress_bar_config(disable=True)
    assert torch.equal(call(rebuilt).images, call(pipeline).images)


def test_optional_components_set_to_none(tmp_path):
    torch.manual_seed(0)
    plain = StrDiffusionInpaintPipeline(
        structure_unet=None,
        texture_unet=StrDiffusionUNet2DModel(in_channels=3, out_channels=3, base_channels=8, depth=2).eval(),
        scheduler=MeanRevertingSDEScheduler(num_train_timesteps=T),
        discriminator=None,
    )
    plain.set_progress_bar_config(disable=True)
    expected = call(plain)
    assert expected.structures is None and expected.nfe == {
        "structure": 0,
        "texture": T,
        "discriminator": 0,
        "total": T,
    }
    plain.save_pretrained(tmp_path)
    loaded = StrDiffusionInpaintPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.structure_unet is None and loaded.discriminator is None
    torch.testing.assert_close(call(loaded).images, expected.images, atol=1e-5, rtol=0)


def test_save_load_keeps_the_output(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path)
    loaded = StrDiffusionInpaintPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    # Reloaded weights give the same images up to float rounding (as in test_pipeline.py's fresh-process test).
    torch.testing.assert_close(call(loaded).images, call(pipeline).images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["dtype", "torch_dtype"])
def test_from_pretrained_takes_dtype_without_warning(pipeline, tmp_path, name):
    pipeline.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        loaded = StrDiffusionInpaintPipeline.from_pretrained(tmp_path, **{name: torch.bfloat16})
    assert loaded.texture_unet.dtype == torch.bfloat16 and loaded.structure_unet.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        StrDiffusionInpaintPipeline.from_pretrained(tmp_path, dtype=torch.float32, torch_dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------- batches


def test_batch_of_generators_equals_single_calls(pipeline):
    images, masks = zip(*(make_inputs(seed) for seed in range(3)), strict=True)
    batched = pipeline(
        image=torch.cat(images),
        mask_image=masks[0],  # one mask for the whole batch
        generator=[torch.Generator().manual_seed(seed) for seed in (7, 8, 9)],
        output_type="pt",
    )
    singles = [call(pipeline, image, masks[0], seed) for image, seed in zip(images, (7, 8, 9), strict=True)]
    torch.testing.assert_close(batched.images, torch.cat([single.images for single in singles]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        batched.structures, torch.cat([single.structures for single in singles]), atol=1e-5, rtol=0
    )


def test_seeded_calls_are_deterministic(pipeline):
    assert torch.equal(call(pipeline, seed=4).images, call(pipeline, seed=4).images)
    assert not torch.equal(call(pipeline, seed=4).images, call(pipeline, seed=5).images)
