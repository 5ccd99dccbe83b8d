import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from diffusers_strdiff import (
    DiscriminatorGatedResampling,
    MeanRevertingSDEScheduler,
    StrDiffusionDiscriminator,
    StrDiffusionInpaintPipeline,
    StrDiffusionUNet2DModel,
)

HEIGHT, WIDTH = 19, 27


def tiny_pipeline(with_discriminator: bool = True) -> StrDiffusionInpaintPipeline:
    torch.manual_seed(0)
    pipeline = StrDiffusionInpaintPipeline(
        structure_unet=StrDiffusionUNet2DModel(in_channels=1, out_channels=1, base_channels=8, depth=2),
        texture_unet=StrDiffusionUNet2DModel(
            in_channels=3, out_channels=3, base_channels=8, depth=2, guidance_channels=1
        ),
        discriminator=StrDiffusionDiscriminator(base_channels=4, time_embedding_dim=32)
        if with_discriminator
        else None,
        scheduler=MeanRevertingSDEScheduler(num_train_timesteps=10),
    )
    for module in pipeline.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()  # spectral norm would run a power iteration per call in training mode
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def pipeline() -> StrDiffusionInpaintPipeline:
    return tiny_pipeline()


def make_inputs(seed: int = 0, height: int = HEIGHT, width: int = WIDTH) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, height, width, generator=generator)
    mask = torch.zeros(1, 1, height, width)
    mask[..., 4:11, 6:15] = 1  # one hole
    mask[..., 13:17, 20:25] = 1  # and another
    return image, mask


def run(pipeline, image, mask, seed=0, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    return pipeline(image=image, mask_image=mask, generator=generator, output_type="pt", **kwargs)


def test_output_shapes_and_known_region(pipeline):
    image, mask = make_inputs()
    output = run(pipeline, image, mask)
    assert output.images.shape == (1, 3, HEIGHT, WIDTH)
    assert output.structures.shape == (1, 1, HEIGHT, WIDTH)
    known = mask == 0
    assert torch.equal(output.images.expand_as(image)[known.expand_as(image)], image[known.expand_as(image)])
    assert not torch.equal(output.images, image)
    assert output.nfe == {"structure": 7, "texture": 10, "discriminator": 0, "total": 17}


def test_pil_round_trip_keeps_known_pixels_exactly(pipeline):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[5:12, 3:20] = 255
    result = pipeline(
        image=PIL.Image.fromarray(pixels),
        mask_image=PIL.Image.fromarray(mask),
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert isinstance(result, PIL.Image.Image) and result.size == (WIDTH, HEIGHT)
    result_pixels = np.asarray(result)
    assert np.array_equal(result_pixels[mask == 0], pixels[mask == 0])


@pytest.mark.parametrize("kind", ["pil", "numpy_uint8", "numpy_float", "torch_3d", "list_of_pil"])
def test_input_kinds_agree(pipeline, kind):
    image, mask = make_inputs()
    pixels = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    mask_pixels = (mask[0, 0].numpy() * 255).astype(np.uint8)
    as_float = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    expected = run(pipeline, as_float, mask).images
    inputs = {
        "pil": (PIL.Image.fromarray(pixels), PIL.Image.fromarray(mask_pixels)),
        "numpy_uint8": (pixels, mask_pixels),
        "numpy_float": (pixels.astype(np.float32) / 255, mask_pixels.astype(np.float32) / 255),
        "torch_3d": (as_float[0], mask[0]),
        "list_of_pil": ([PIL.Image.fromarray(pixels)], [PIL.Image.fromarray(mask_pixels)]),
    }[kind]
    torch.testing.assert_close(run(pipeline, *inputs).images, expected, atol=1e-5, rtol=0)


def test_seeded_generator_is_deterministic(pipeline):
    image, mask = make_inputs()
    first, again, other = run(pipeline, image, mask, 1), run(pipeline, image, mask, 1), run(pipeline, image, mask, 2)
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize("resample", [False, True], ids=["plain", "resampling"])
def test_batch_equals_single_calls(pipeline, resample):
    (image_a, mask_a), (image_b, _) = make_inputs(0), make_inputs(1)
    mask_b = torch.zeros_like(mask_a)
    mask_b[..., 2:9, 10:26] = 1

    def callback():
        return DiscriminatorGatedResampling.from_preset("released") if resample else None

    batched = pipeline(
        image=torch.cat([image_a, image_b]),
        mask_image=torch.cat([mask_a, mask_b]),
        generator=[torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)],
        output_type="pt",
        callback_on_step_end=callback(),
    ).images
    single_a = run(pipeline, image_a, mask_a, 3, callback_on_step_end=callback()).images
    single_b = run(pipeline, image_b, mask_b, 4, callback_on_step_end=callback()).images
    torch.testing.assert_close(batched, torch.cat([single_a, single_b]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("structure_maps", ["known_pixels"])
def test_hole_content_never_influences_the_result(pipeline, structure_maps):
    image, mask = make_inputs()
    scribbled = image * (1 - mask) + torch.rand_like(image) * mask
    kwargs = {"structure_maps": structure_maps, "callback_on_step_end": DiscriminatorGatedResampling()}
    assert torch.equal(run(pipeline, image, mask, **kwargs).images, run(pipeline, scribbled, mask, **kwargs).images)


def test_mask_is_binarized_at_half(pipeline):
    image, mask = make_inputs()
    soft = mask * 0.8 + 0.2 * torch.rand_like(mask) * (1 - mask)  # hole in [0.8, 1], rest in [0, 0.2)
    torch.testing.assert_close(run(pipeline, image, soft).images, run(pipeline, image, mask).images)


def test_resampling_adds_evaluations_and_records_decisions(pipeline):
    image, mask = make_inputs()
    callback = DiscriminatorGatedResampling.from_preset("released")
    output = run(pipeline, image, mask, callback_on_step_end=callback)
    # t = 10 (re-noise 1 step) and t = 5 (5 steps) are the resampling times of T = 10 with jump 5.
    assert {entry["timestep"] for entry in callback.history} == {10, 5}
    attempts = len(callback.history)
    assert output.nfe["discriminator"] == 2 + attempts
    assert output.nfe["texture"] == 10 + attempts
    assert output.nfe["total"] > 17


def test_callback_composes_with_user_callback(pipeline):
    image, mask = make_inputs()

    class StepRecorder(PipelineCallback):
        tensor_inputs = ["latents"]

        def __init__(self):
            super().__init__()
            self.steps = []

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            self.steps.append((step_index, timestep, callback_kwargs["latents"].shape))
            return callback_kwargs

    recorder = StepRecorder()
    resampling = DiscriminatorGatedResampling()
    alone = run(pipeline, image, mask, callback_on_step_end=DiscriminatorGatedResampling()).images
    combined = run(pipeline, image, mask, callback_on_step_end=MultiPipelineCallbacks([resampling, recorder])).images
    assert [step[:2] for step in recorder.steps] == list(enumerate(range(10, 0, -1)))
    assert all(shape == (1, 3, HEIGHT, WIDTH) for *_, shape in recorder.steps)
    assert resampling.history
    assert torch.equal(alone, combined)


def test_plain_function_callback_can_replace_latents(pipeline):
    image, mask = make_inputs()

    def zero_texture(pipeline, step_index, timestep, callback_kwargs):
        return {"latents": torch.zeros_like(callback_kwargs["latents"])}

    output = run(pipeline, image, mask, callback_on_step_end=zero_texture)
    hole = mask.expand_as(image).bool()
    assert torch.all(output.images[hole] == 0)


def test_save_and_load_in_fresh_process(pipeline, tmp_path):
    image, mask = make_inputs()
    expected = run(pipeline, image, mask, 5, callback_on_step_end=DiscriminatorGatedResampling()).images
    pipeline.save_pretrained(tmp_path / "pipe")
    files = {path.relative_to(tmp_path / "pipe").as_posix() for path in (tmp_path / "pipe").rglob("*.*")}
    assert "texture_unet/diffusion_pytorch_model.safetensors" in files
    assert "discriminator/diffusion_pytorch_model.safetensors" in files
    assert not any(name.endswith(".bin") for name in files)
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["structure_unet"] == ["diffusers_strdiff.models.unet_strdiff", "StrDiffusionUNet2DModel"]
    assert index["_class_name"] == ["pipeline_strdiffusion", "StrDiffusionInpaintPipeline"]
    torch.save({"image": image, "mask": mask}, tmp_path / "inputs.pt")
    script = f"""
import torch
from diffusers import DiffusionPipeline
from diffusers_strdiff import DiscriminatorGatedResampling, StrDiffusionInpaintPipeline
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
results = []
for loader in (
    lambda: StrDiffusionInpaintPipeline.from_pretrained({str(tmp_path / "pipe")!r}),
    lambda: DiffusionPipeline.from_pretrained({str(tmp_path / "pipe")!r}, trust_remote_code=True),
):
    pipe = loader()
    assert type(pipe).__name__ == "StrDiffusionInpaintPipeline", type(pipe)
    pipe.set_progress_bar_config(disable=True)
    results.append(pipe(image=inputs["image"], mask_image=inputs["mask"], generator=torch.Generator().manual_seed(5),
                        output_type="pt", callback_on_step_end=DiscriminatorGatedResampling()).images)
torch.save(results, {str(tmp_path / "results.pt")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    for result in torch.load(tmp_path / "results.pt"):
        torch.testing.assert_close(result, expected, atol=1e-5, rtol=0)


def test_without_discriminator_the_callback_explains(pipeline):
    image, mask = make_inputs()
    plain = tiny_pipeline(with_discriminator=False)
    assert run(plain, image, mask).images.shape == image.shape
    with pytest.raises(ValueError, match="discriminator"):
        run(plain, image, mask, callback_on_step_end=DiscriminatorGatedResampling())


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 17), "same size"),
        (torch.rand(3, 3, 16, 16), torch.ones(2, 1, 16, 16), "batch size"),
        (torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16), "nothing|no pixel to fill"),
        (torch.rand(1, 4, 16, 16), torch.ones(1, 1, 16, 16), "`image` must have 3 channel"),
        (np.random.rand(16, 16, 2).astype(np.float32), np.ones((16, 16), np.float32), "`image` must have 3 channel"),
        (torch.rand(1, 3, 16, 16) * 2, torch.ones(1, 1, 16, 16), r"`image` values must be in \[0, 1\]"),
        (torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16) * 3, r"`mask_image` values must be in \[0, 1\]"),
        (torch.rand(1, 3, 16, 16), torch.ones(1, 2, 16, 16), "`mask_image` must have 1 channel"),
        ("photo.png", torch.ones(1, 1, 16, 16), "`image` must be a PIL image"),
        (torch.randint(0, 5, (1, 3, 16, 16)), torch.ones(1, 1, 16, 16), "`image` must be float"),
    ],
)
def test_bad_inputs_raise_clear_errors(pipeline, image, mask, message):
    with pytest.raises(ValueError, match=message):
        pipeline(image=image, mask_image=mask)


def test_bad_call_arguments(pipeline):
    image, mask = make_inputs()
    with pytest.raises(ValueError, match="output_type"):
        pipeline(image=image, mask_image=mask, output_type="jpeg")
    with pytest.raises(ValueError, match="generator"):
        pipeline(image=image, mask_image=mask, generator=[torch.Generator(), torch.Generator()])
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipeline(image=image, mask_image=mask, num_inference_steps=3)
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        pipeline(
            image=image, mask_image=mask, callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["x"]
        )
