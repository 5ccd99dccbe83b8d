"""Exact parity of the pipeline + resampling callback with one complete run of the released sampler."""

import json

import pytest
import torch

from diffusers_strdiff import (
    DiscriminatorGatedResampling,
    MeanRevertingSDEScheduler,
    StrDiffusionInpaintPipeline,
    convert_official_checkpoint,
)

from .conftest import FIXTURES, load_fixture


def reference_pipeline(num_train_timesteps: int) -> StrDiffusionInpaintPipeline:
    pipeline = StrDiffusionInpaintPipeline(
        structure_unet=convert_official_checkpoint(load_fixture("structure_unet_state_dict")),
        texture_unet=convert_official_checkpoint(load_fixture("texture_unet_state_dict")),
        discriminator=convert_official_checkpoint(load_fixture("discriminator_state_dict")),
        scheduler=MeanRevertingSDEScheduler(num_train_timesteps=num_train_timesteps),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def record_calls(pipeline: StrDiffusionInpaintPipeline) -> list[tuple[str, torch.Tensor]]:
    calls: list[tuple[str, torch.Tensor]] = []
    for name, module in (
        ("str", pipeline.structure_unet),
        ("tex", pipeline.texture_unet),
        ("dis", pipeline.discriminator),
    ):
        module.register_forward_hook(
            lambda _module, _args, output, name=name: calls.append(
                (name, output.sample if hasattr(output, "sample") else output)
            )
        )
    return calls


@pytest.fixture(scope="module")
def trace():
    tensors = load_fixture("sampler_trace")
    meta = json.loads((FIXTURES / "sampler_trace.json").read_text())
    return tensors, meta


def test_reference_configuration_reproduces_released_trace(trace):
    tensors, meta = trace
    pipeline = reference_pipeline(meta["T"])
    calls = record_calls(pipeline)
    draws = iter([tensors[f"noise_{index:04d}"] for index in range(meta["n_noise_draws"])])
    consumed = []

    def replay(shape, generator, device, dtype):
        noise = next(draws)
        consumed.append(noise)
        assert tuple(noise.shape) == tuple(shape)
        return noise

    callback = DiscriminatorGatedResampling.from_preset("released")
    output = pipeline(
        image=tensors["GT"],
        mask_image=1 - tensors["mask"],  # the released mask is 1 = known
        structure_gray=tensors["gray"],
        structure_edges=tensors["edge"],
        noise_sampler=replay,
        callback_on_step_end=callback,
        output_type="latent",
    )

    assert len(consumed) == meta["n_noise_draws"]
    # The released sampler also scores D_n at early steps that do not resample and never uses it; the callback
    # skips those evaluations (the only difference in the call sequence; no effect on any value).
    jump = meta["resampling_constants"]["jump"]
    used = [
        call
        for call in meta["calls"]
        if not (call["net"] == "dis" and call["t"] % jump != 0 and call["t"] in meta["early_stage_t"])
    ]
    assert len(meta["calls"]) - len(used) == sum(t % jump != 0 for t in meta["early_stage_t"])
    assert [name for name, _ in calls] == [call["net"] for call in used]
    for (name, value), call in zip(calls, used, strict=True):
        reference = tensors[f"call_{call['call']:04d}_{name}_out"]
        index = call["call"]
        tolerance = 1e-4 * max(1.0, reference.abs().max().item())
        torch.testing.assert_close(value, reference, rtol=1e-4, atol=tolerance, msg=f"call {index} ({name})")

    # Every accept / average / stop decision of the released loop (t=10: 5 accepts; t=5: 2 averages, then stop).
    decisions = [(entry["timestep"], entry["decision"]) for entry in callback.history]
    assert decisions == [(10, "accept")] * 5 + [(5, "average"), (5, "average"), (5, "stop")]
    reference_scores = [call["D"] for call in used if call["net"] == "dis"]
    recorded_scores = [value.item() for name, value in calls if name == "dis"]
    torch.testing.assert_close(torch.tensor(recorded_scores), torch.tensor(reference_scores), rtol=1e-4, atol=1e-5)

    final = tensors["output"]
    torch.testing.assert_close(output.images, final, rtol=0, atol=1e-4 * final.abs().max().item())
    assert output.nfe == {
        "structure": sum(name == "str" for name, _ in calls),
        "texture": sum(name == "tex" for name, _ in calls),
        "discriminator": sum(name == "dis" for name, _ in calls),
        "total": len(used),
    }
