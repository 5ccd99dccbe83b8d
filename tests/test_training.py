"""End-to-end tests of the training scripts (`training/*.py`) and of `diffusers_strdiff.training`.

Tiny networks (base_channels 8, depth 2), 32 px crops, T = 20, a handful of generated images. The scripts' `main`
runs in-process; subprocesses only where a process must die or be launched (crash/resume, accelerate, CLI errors).
"""

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffusers_strdiff.models import StrDiffusionUNet2DModel
from diffusers_strdiff.training import (
    ArgumentPathError,
    ArgumentValueError,
    EpochShuffleSampler,
    InpaintingDataset,
    MaskSource,
    build_noise_scheduler,
    load_training_images,
    matching_loss,
    parse_args,
    run_script,
)

REPO = Path(__file__).resolve().parents[1]
TRAINING = REPO / "training"
PYTHON = sys.executable
WEIGHTS = "diffusion_pytorch_model.safetensors"


pytestmark = pytest.mark.usefixtures("one_thread")


def _environment(**variables: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **variables}


def load_script(name: str) -> ModuleType:
    """Imports `training/<name>.py` as a module (the scripts are not a package)."""
    module_name = f"strdiff_training_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, TRAINING / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def tiny_args(data: dict[str, Path], output_dir: Path, script: str, *extra: str) -> list[str]:
    arguments = [
        "--train_data_dir", str(data["train"]),
        "--output_dir", str(output_dir),
        "--cache_dir", str(data["cache"]),
        "--resolution", "32",
        "--num_train_timesteps", "20",
        "--base_channels", "8",
        "--train_batch_size", "4",
        "--report_to", "none",
        "--seed", "0",
    ]  # fmt: skip
    if script != "train_discriminator":
        arguments += ["--depth", "2"]
    return arguments + list(extra)


@pytest.fixture(scope="module")
def trained(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Each script trained for 4 steps with validation every 2 steps and one checkpoint kept."""
    root = tmp_path_factory.mktemp("trained")
    results = {}
    for script in ("train_structure", "train_texture", "train_discriminator"):
        argv = tiny_args(
            data,
            root / script,
            script,
            "--max_train_steps", "4",
            "--checkpointing_steps", "2",
            "--checkpoints_total_limit", "1",
            "--validation_data_dir", str(data["validation"]),
            "--validation_steps", "2",
            "--num_validation_images", "3",
            "--random_flip",
        )  # fmt: skip
        results[script] = load_script(script).main(argv)
    return results


# ----------------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    ("script", "component", "grid"),
    [
        ("train_structure", "structure_unet", True),
        ("train_texture", "texture_unet", True),
        ("train_discriminator", "discriminator", False),
    ],
)
def test_script_runs_end_to_end(trained: dict[str, object], script: str, component: str, grid: bool) -> None:
    result = trained[script]
    output_dir = result.output_dir
    assert result.global_step == 4 and result.first_step == 0
    assert np.isfinite(result.final_loss)
    assert (output_dir / component / WEIGHTS).is_file()
    assert (output_dir / component / "config.json").is_file()
    assert (output_dir / "scheduler" / "scheduler_config.json").is_file()
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-4"]  # total limit 1
    assert not list(output_dir.glob(".checkpoint-*"))  # no partial checkpoint left
    assert (output_dir / "validation" / "step_000002.json").is_file()
    assert (output_dir / "validation" / "step_000004.json").is_file()
    if grid:
        assert result.validation_image == output_dir / "validation" / "step_000004.png"
        with Image.open(result.validation_image) as image:
            assert image.size == (3 * 32, 3 * 32)  # 3 columns, 3 validation images
        assert "psnr" in result.validation_metrics
    else:
        assert {"real_accuracy", "fake_accuracy", "real_logit", "fake_logit"} <= set(result.validation_metrics)

    card = (output_dir / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: diffusers" in card
    for tag in ("inpainting", "strdiffusion", "diffusers", "mean-reverting-sde"):
        assert f"- {tag}" in card
    assert "`max_train_steps` | `4`" in card and "final training loss" in card
    assert "hub_token" not in card
    if grid:
        assert "(validation/step_000004.png)" in card


def test_non_image_files_are_skipped_with_a_warning(
    data: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = tiny_args(data, tmp_path / "out", "train_structure", "--max_train_steps", "1")
    with caplog.at_level(logging.WARNING):
        load_script("train_structure").main(argv)
    warnings = [record.getMessage() for record in caplog.records if "skipping" in record.getMessage()]
    assert len(warnings) == 1 and "2 file(s)" in warnings[0]
    assert "notes.txt" in warnings[0] and "broken.png" in warnings[0]


def test_assemble_pipeline(trained: dict[str, object], tmp_path: Path) -> None:
    from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline

    outputs = {script: str(result.output_dir) for script, result in trained.items()}
    pipeline_dir = tmp_path / "pipeline"
    load_script("assemble_pipeline").main(
        [
            "--structure", outputs["train_structure"],
            "--texture", str(Path(outputs["train_texture"]) / "texture_unet"),  # the component folder works too
            "--discriminator", outputs["train_discriminator"],
            "--output_dir", str(pipeline_dir),
        ]
    )  # fmt: skip
    assert (pipeline_dir / "model_index.json").is_file() and (pipeline_dir / "README.md").is_file()
    for component in ("structure_unet", "texture_unet", "discriminator"):
        assert (pipeline_dir / component / WEIGHTS).is_file()
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(pipeline_dir)
    assert pipeline.scheduler.config.num_train_timesteps == 20
    image = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    output = pipeline(image=image, mask_image=mask, generator=torch.manual_seed(0), output_type="pt").images
    assert output.shape == (1, 3, 32, 32)
    assert torch.equal(output * (1 - mask), image * (1 - mask))


def test_no_structure_ablation_trains_and_assembles_without_structure_net(
    data: dict[str, Path], tmp_path: Path
) -> None:
    from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline

    argv = tiny_args(data, tmp_path / "unguided", "train_texture", "--max_train_steps", "2", "--no_structure_guidance")
    result = load_script("train_texture").main(argv)
    pipeline_dir = tmp_path / "pipeline"
    load_script("assemble_pipeline").main(["--texture", str(result.output_dir), "--output_dir", str(pipeline_dir)])
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(pipeline_dir)
    assert pipeline.structure_unet is None and pipeline.texture_unet.config.guidance_channels == 0
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:20, 10:30] = 1
    output = pipeline(
        image=torch.rand(1, 3, 32, 32), mask_image=mask, generator=torch.manual_seed(0), output_type="pt"
    )
    assert output.structures is None and output.nfe["structure"] == 0 and output.nfe["texture"] == 20
    guided = load_script("train_texture").main(
        tiny_args(data, tmp_path / "guided", "train_texture", "--max_train_steps", "1")
    )
    with pytest.raises(load_script("assemble_pipeline").ArgumentValueError, match="structure_unet"):
        load_script("assemble_pipeline").main(
            ["--texture", str(guided.output_dir), "--output_dir", str(tmp_path / "bad")]
        )


def test_x0_recipe_trains_warm_starts_and_assembles(data: dict[str, Path], tmp_path: Path) -> None:
    """
    The CPU recipe end to end: an unguided residual texture net with a Telea mean and a mask channel; a guided one
    warm-started from it (every shared tensor copied, the SPADE blocks fresh); a structure net of the same prediction
    type; the assembled pipeline restores the prediction type, the mask channels and the mean fill.
    """
    from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline
    from diffusers_strdiff.training import load_component

    recipe = ["--prediction_type", "residual", "--known_mask_channel"]
    texture = load_script("train_texture")
    unguided = texture.main(
        tiny_args(data, tmp_path / "unguided", "train_texture", "--max_train_steps", "2", "--no_structure_guidance",
                  "--mean_fill", "telea", *recipe)
    )  # fmt: skip
    guided = texture.main(
        tiny_args(data, tmp_path / "guided", "train_texture", "--max_train_steps", "1", "--mean_fill", "telea",
                  "--init_weights", str(unguided.output_dir), "--learning_rate", "0", *recipe)
    )  # fmt: skip
    base = load_component(StrDiffusionUNet2DModel, str(unguided.output_dir), "texture_unet").state_dict()
    warm = load_component(StrDiffusionUNet2DModel, str(guided.output_dir), "texture_unet").state_dict()
    shared = [name for name in warm if name in base]
    assert shared and all(torch.equal(warm[name], base[name]) for name in shared)  # lr 0: the copied weights
    assert any("spade" in name for name in warm if name not in base)
    structure = load_script("train_structure").main(
        tiny_args(data, tmp_path / "structure", "train_structure", "--max_train_steps", "1", *recipe)
    )
    pipeline_dir = tmp_path / "pipeline"
    load_script("assemble_pipeline").main(
        ["--structure", str(structure.output_dir), "--texture", str(guided.output_dir), "--output_dir",
         str(pipeline_dir)]
    )  # fmt: skip
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(pipeline_dir)
    assert pipeline.config.mean_fill == "telea"
    assert pipeline.scheduler.config.prediction_type == "residual"
    assert pipeline.texture_unet.config.known_mask_channel and pipeline.structure_unet.config.known_mask_channel
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:20, 10:30] = 1
    image = torch.rand(1, 3, 32, 32)
    output = pipeline(image=image, mask_image=mask, generator=torch.manual_seed(0), output_type="pt").images
    assert torch.isfinite(output).all() and torch.equal(output[..., mask[0, 0] == 0], image[..., mask[0, 0] == 0])
    epsilon_structure = load_script("train_structure").main(
        tiny_args(data, tmp_path / "structure_eps", "train_structure", "--max_train_steps", "1")
    )
    with pytest.raises(load_script("assemble_pipeline").ArgumentValueError, match="prediction_type"):
        load_script("assemble_pipeline").main(
            ["--structure", str(epsilon_structure.output_dir), "--texture", str(guided.output_dir), "--output_dir",
             str(tmp_path / "bad")]
        )  # fmt: skip


def test_estimate_guidance_recipe_trains_and_assembles(data: dict[str, Path], tmp_path: Path) -> None:
    """
    A `filled_gray` structure net, a texture net trained on its x_0 estimates and a `filled_gray` discriminator: the
    texture loss really reads the structure net (another structure net changes it), the assembled pipeline restores
    `structure_mean` / `texture_guidance`, and inconsistent runs are refused with the setting named.
    """
    from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline

    recipe = ["--prediction_type", "residual", "--known_mask_channel", "--mean_fill", "biharmonic"]
    structure_script, texture_script = load_script("train_structure"), load_script("train_texture")
    structures = [
        structure_script.main(
            tiny_args(
                data,
                tmp_path / f"structure_{seed}",
                "train_structure",
                "--max_train_steps",
                "2",
                "--structure_mean",
                "filled_gray",
                "--seed",
                str(seed),
                *recipe,
            )
        )  # fmt: skip
        for seed in (0, 1)
    ]
    texture_argv = tiny_args(data, tmp_path / "texture", "train_texture", "--max_train_steps", "2",
                             "--structure_mean", "filled_gray", "--texture_guidance", "estimate", *recipe)  # fmt: skip
    losses = []
    for structure in structures:
        args = parse_args("test", texture_script.add_arguments, [*texture_argv, "--structure_model_name_or_path",
                                                                  str(structure.output_dir)])  # fmt: skip
        torch.manual_seed(0)
        model = texture_script.build_model(args)
        loss = texture_script.compute_loss(
            model, _fixed_batch(args), build_noise_scheduler(args), torch.Generator().manual_seed(0),
            mean_fill=args.mean_fill, structure_mean_kind=args.structure_mean, structure_fill=args.structure_fill,
            structure_unet=texture_script.load_structure_unet(args),
        )  # fmt: skip
        losses.append(loss.item())
    assert losses[0] != losses[1]
    texture = texture_script.main([*texture_argv, "--structure_model_name_or_path", str(structures[0].output_dir)])
    discriminator = load_script("train_discriminator").main(
        tiny_args(data, tmp_path / "discriminator", "train_discriminator", "--max_train_steps", "1",
                  "--structure_mean", "filled_gray", *recipe[:2], *recipe[3:])
    )  # fmt: skip
    assemble = load_script("assemble_pipeline")
    assemble.main(
        ["--structure", str(structures[0].output_dir), "--texture", str(texture.output_dir), "--discriminator",
         str(discriminator.output_dir), "--output_dir", str(tmp_path / "pipeline")]
    )  # fmt: skip
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(tmp_path / "pipeline")
    assert (pipeline.config.structure_mean, pipeline.config.texture_guidance) == ("filled_gray", "estimate")
    assert pipeline.config.mean_fill == pipeline.structure_fill == "biharmonic"
    # a pipeline folder is a structure source too: its model_index.json records the settings the nets were trained with;
    # the structure mean's fill must match it, the texture mean's may differ (`--structure_fill`)
    for extra, error in (
        ([], None),
        (["--mean_fill", "telea"], "--structure_fill biharmonic"),
        (["--mean_fill", "telea", "--structure_fill", "biharmonic"], None),
    ):
        args = parse_args("test", texture_script.add_arguments, [*texture_argv, *extra,
                          "--structure_model_name_or_path", str(tmp_path / "pipeline")])  # fmt: skip
        if error is None:
            assert texture_script.load_structure_unet(args).config.in_channels == 1
        else:
            with pytest.raises(ArgumentValueError, match=error):
                texture_script.load_structure_unet(args)
    split_fill = texture_script.main(
        tiny_args(data, tmp_path / "texture_split", "train_texture", "--max_train_steps", "1", "--structure_mean",
                  "filled_gray", "--texture_guidance", "estimate", *recipe[:4], "telea", "--structure_fill",
                  "biharmonic", "--structure_model_name_or_path", str(structures[0].output_dir))
    )  # fmt: skip
    assemble.main(["--structure", str(structures[0].output_dir), "--texture", str(split_fill.output_dir),
                   "--output_dir", str(tmp_path / "pipeline_split")])  # fmt: skip
    split_pipeline = StrDiffusionInpaintPipeline.from_pretrained(tmp_path / "pipeline_split")
    assert (split_pipeline.config.mean_fill, split_pipeline.structure_fill) == ("telea", "biharmonic")
    telea_structure = structure_script.main(
        tiny_args(data, tmp_path / "structure_telea", "train_structure", "--max_train_steps", "1", "--structure_mean",
                  "filled_gray", *recipe[:4], "telea")
    )  # fmt: skip
    with pytest.raises(ArgumentValueError, match="'telea'"):
        assemble.main(["--structure", str(telea_structure.output_dir), "--texture", str(split_fill.output_dir),
                       "--output_dir", str(tmp_path / "bad_fill")])  # fmt: skip
    edges_structure = structure_script.main(
        tiny_args(data, tmp_path / "structure_edges", "train_structure", "--max_train_steps", "1", *recipe)
    )
    with pytest.raises(ArgumentValueError, match="structure_mean"):
        assemble.main(
            ["--structure", str(edges_structure.output_dir), "--texture", str(texture.output_dir), "--output_dir",
             str(tmp_path / "bad")]
        )  # fmt: skip
    with pytest.raises(ArgumentValueError, match="--structure_mean filled_gray"):
        texture_script.main([*texture_argv, "--structure_model_name_or_path", str(edges_structure.output_dir)])
    with pytest.raises(ArgumentValueError, match="--structure_model_name_or_path"):
        texture_script.main(texture_argv)


def test_discriminator_warm_start_copies_every_tensor(trained: dict[str, object], tmp_path: Path, data) -> None:
    source = trained["train_discriminator"].output_dir
    warm = load_script("train_discriminator").main(
        tiny_args(data, tmp_path / "warm", "train_discriminator", "--max_train_steps", "1", "--learning_rate", "0",
                  "--init_weights", str(source))
    )  # fmt: skip
    expected = load_file(source / "discriminator" / WEIGHTS)
    actual = load_file(warm.output_dir / "discriminator" / WEIGHTS)
    assert expected.keys() == actual.keys() and all(torch.equal(actual[name], expected[name]) for name in expected)
    with pytest.raises(ArgumentPathError, match="--init_weights"):
        load_script("train_discriminator").main(
            tiny_args(data, tmp_path / "bad", "train_discriminator", "--init_weights", str(tmp_path / "missing"))
        )


def test_assemble_pipeline_rejects_mismatched_timesteps(trained: dict[str, object], tmp_path: Path) -> None:
    from diffusers_strdiff.schedulers import MeanRevertingSDEScheduler

    MeanRevertingSDEScheduler(num_train_timesteps=30).save_pretrained(tmp_path / "scheduler")
    with pytest.raises(ArgumentValueError, match="different `num_train_timesteps`"):
        load_script("assemble_pipeline").main(
            [
                "--structure", str(trained["train_structure"].output_dir),
                "--texture", str(trained["train_texture"].output_dir),
                "--scheduler", str(tmp_path / "scheduler"),
                "--output_dir", str(tmp_path / "pipeline"),
            ]
        )  # fmt: skip


def test_texture_validation_with_the_full_pipeline(trained: dict[str, object], data: dict[str, Path]) -> None:
    texture = load_script("train_texture")
    args = parse_args(
        "test",
        texture.add_arguments,
        tiny_args(
            data,
            data["root"] / "unused",
            "train_texture",
            "--structure_model_name_or_path",
            str(trained["train_structure"].output_dir),
        ),  # fmt: skip
    )
    structure_unet = texture.load_structure_unet(args)
    model = texture.build_model(args).eval()
    batch = _fixed_batch(args)
    scheduler = build_noise_scheduler(args)
    with torch.no_grad():
        result = texture.validate(model, batch, scheduler, torch.Generator().manual_seed(0), structure_unet, 3.0)
    assert result.grid.size == (3 * 32, 4 * 32)
    assert np.isfinite(result.metrics["psnr"])


# ----------------------------------------------------------------------------------------------- learning


def _fixed_batch(args: object, size: int = 4) -> dict[str, torch.Tensor]:
    images, column = load_training_images(args)
    dataset = InpaintingDataset(images, column, MaskSource(32, ["20-40"]), 32, seed=0, random_flip=True)
    return torch.utils.data.default_collate([dataset[index] for index in range(size)])


def _overfit(module: ModuleType, args: object, steps: int, lr: float, batch_size: int) -> list[float]:
    """Adam on one fixed batch with the same t and noise every step (a fixed objective); the losses."""
    torch.manual_seed(0)
    model = module.build_model(args)
    scheduler = build_noise_scheduler(args)
    batch = _fixed_batch(args, batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(args.adam_beta1, args.adam_beta2))
    generator = torch.Generator()
    losses = []
    for _ in range(steps):
        generator.manual_seed(0)
        loss = module.compute_loss(model, batch, scheduler, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("script", ["train_structure", "train_texture"])
def test_unet_overfits_a_fixed_batch(data: dict[str, Path], tmp_path: Path, script: str) -> None:
    """
    100 steps, not 30: the reducible part of the matching loss is the noise prediction (its value at eps_hat = 0 is
    ~0.97 of the initial loss), and 30 steps only bring it to ~0.8-0.9 of the initial value at this size.
    """
    module = load_script(script)
    args = parse_args("test", module.add_arguments, tiny_args(data, tmp_path, script))
    losses = _overfit(module, args, steps=100, lr=2e-3, batch_size=2)
    assert losses[-1] < 0.7 * losses[0], losses[::10]


def test_discriminator_loss_descends_and_reaches_every_parameter(data: dict[str, Path], tmp_path: Path) -> None:
    """
    The discriminator separates y*_{t-1} from y_t (one reverse step apart) only after hundreds of steps at this size,
    so the test checks that the loss descends from its initial value towards the uninformative 2 ln 2 + 1 (all logits
    equal) and that every parameter gets a finite gradient (no detached branch).
    """
    module = load_script("train_discriminator")
    args = parse_args("test", module.add_arguments, tiny_args(data, tmp_path, "train_discriminator"))
    torch.manual_seed(0)
    model = module.build_model(args)
    loss = module.compute_loss(
        model, _fixed_batch(args), build_noise_scheduler(args), torch.Generator().manual_seed(0)
    )
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    losses = _overfit(module, args, steps=10, lr=1e-3, batch_size=4)
    assert losses[-1] < losses[0]
    assert losses[-1] == pytest.approx(2 * np.log(2) + 1, abs=5e-3)


def test_matching_loss_weights_hole_pixels_ten_times() -> None:
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    known_mask = torch.ones(2, 1, 4, 4)
    known_mask[:, :, :2] = 0  # top half is hole
    target[0] = 1.0  # sample 0: error 1 everywhere
    # Sample 0: known term 0.5 (half the pixels), hole term 10 * 0.5; sample 1: 0. Mean over the batch.
    assert matching_loss(pred, target, known_mask).item() == pytest.approx((0.5 + 5.0) / 2)


# ----------------------------------------------------------------------------------------------- data


def test_dataset_samples_are_deterministic_per_seed_epoch_and_index(data: dict[str, Path], tmp_path: Path) -> None:
    args = parse_args(
        "test", load_script("train_structure").add_arguments, tiny_args(data, tmp_path, "train_structure")
    )
    images, column = load_training_images(args)
    assert len(images) == 8  # notes.txt and broken.png skipped
    dataset = InpaintingDataset(images, column, MaskSource(32, ["0-20", "40-60"]), 32, seed=5, random_flip=True)
    sample = dataset[2]  # the 24x30 image, resized up before cropping
    assert sample["image"].shape == (3, 32, 32) and sample["gray"].shape == (1, 32, 32)
    assert sample["edges"].shape == (1, 32, 32) and sample["known_mask"].shape == (1, 32, 32)
    assert all(tensor.dtype == torch.float32 for tensor in sample.values())
    assert 0 <= sample["image"].min() and sample["image"].max() <= 1
    assert set(sample["edges"].unique().tolist()) <= {0.0, 1.0}
    assert set(sample["known_mask"].unique().tolist()) == {0.0, 1.0}
    for name, tensor in dataset[2].items():
        assert torch.equal(tensor, sample[name])
    next_epoch = dataset[2 + len(dataset)]
    assert not torch.equal(next_epoch["known_mask"], sample["known_mask"])
    other_seed = InpaintingDataset(images, column, MaskSource(32, ["0-20"]), 32, seed=6, random_flip=True)[2]
    assert not torch.equal(other_seed["known_mask"], sample["known_mask"])


def test_mask_files_are_white_hole(data: dict[str, Path]) -> None:
    known = MaskSource(32, ["20-40"], str(data["masks"])).fixed(0)
    assert known.shape == (32, 32)
    assert known[8:24, 4:20].max() == 0 and known[0].min() == 1  # white square -> hole -> known 0


def test_sampler_orders_depend_on_seed_and_epoch_only() -> None:
    sampler = EpochShuffleSampler(10, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and first == list(EpochShuffleSampler(10, seed=1))
    sampler.set_epoch(3)
    third = list(sampler)
    assert sorted(third) == list(range(30, 40)) and [key - 30 for key in third] != first
    sampler.set_start(4)
    assert list(sampler) == third[4:]
    assert list(sampler) == third  # the start applies to one iteration only


# ----------------------------------------------------------------------------------------------- resume


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / WEIGHTS)


def test_resume_after_sigkill_is_bitwise_identical(data: dict[str, Path], tmp_path: Path) -> None:
    """
    A run killed with SIGKILL after its first checkpoint and resumed with `--resume_from_checkpoint latest` continues
    from the checkpoint's step and ends with exactly the weights (raw and EMA) of an uninterrupted run.
    """
    script = load_script("train_texture")
    common = [
        "--max_train_steps", "30",
        "--checkpointing_steps", "5",
        "--train_batch_size", "2",
        "--gradient_accumulation_steps", "2",  # 4 batches = 2 updates per epoch: resuming at step 5 is mid-epoch
        "--use_ema",
        "--random_flip",
    ]  # fmt: skip
    reference = script.main(tiny_args(data, tmp_path / "reference", "train_texture", *common))

    crashed_dir = tmp_path / "crashed"
    command = [PYTHON, str(TRAINING / "train_texture.py"), *tiny_args(data, crashed_dir, "train_texture", *common)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_environment())
    try:
        deadline = time.monotonic() + 120
        while not (crashed_dir / "checkpoint-5").is_dir():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (crashed_dir / "texture_unet").exists()  # killed before the end
    latest_step = max(int(path.name.split("-")[1]) for path in crashed_dir.glob("checkpoint-*"))
    assert 5 <= latest_step < 30

    resumed = script.main(tiny_args(data, crashed_dir, "train_texture", *common, "--resume_from_checkpoint", "latest"))
    assert resumed.first_step == latest_step and resumed.global_step == 30
    for folder in ("texture_unet", "checkpoint-30/texture_unet", "checkpoint-30/texture_unet_ema"):
        expected, actual = _weights(reference.output_dir / folder), _weights(crashed_dir / folder)
        assert expected.keys() == actual.keys()
        for name in expected:
            assert torch.equal(expected[name], actual[name]), f"{folder}: {name} differs"
    # the last checkpoint's EMA network is the final network, spectral-norm buffers included (a usable network)
    final, checkpoint_ema = (
        _weights(crashed_dir / "texture_unet"),
        _weights(crashed_dir / "checkpoint-30/texture_unet_ema"),
    )
    assert any(name.endswith("._u") for name in final)
    assert all(torch.equal(final[name], checkpoint_ema[name]) for name in final)


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("script", "change", "error", "message"),
    [
        ("train_structure", {"--train_data_dir": "missing"}, ArgumentPathError, "--train_data_dir"),
        ("train_structure", {"--train_data_dir": "empty"}, ArgumentValueError, "holds no image"),
        ("train_structure", {"--validation_data_dir": "missing"}, ArgumentPathError, "--validation_data_dir"),
        ("train_structure", {"--mask_dir": "missing"}, ArgumentPathError, "--mask_dir"),
        ("train_structure", {"--mask_dir": "empty"}, ArgumentValueError, "--mask_dir"),
        ("train_texture", {"--resolution": "34"}, ArgumentValueError, "divisible by 2\\*\\*depth = 4"),
        ("train_discriminator", {"--train_batch_size": "6"}, ArgumentValueError, "min\\(batch, 4\\)"),
        ("train_discriminator", {"--train_batch_size": "5"}, ArgumentValueError, "minibatch-stddev"),
        ("train_structure", {"--resume_from_checkpoint": "missing"}, ArgumentPathError, "--resume_from_checkpoint"),
        ("train_structure", {"--num_train_timesteps": "1"}, ArgumentValueError, "num_train_timesteps"),
    ],
)
def test_bad_arguments_raise_clear_errors(
    data: dict[str, Path], tmp_path: Path, script: str, change: dict[str, str], error: type, message: str
) -> None:
    argv = tiny_args(data, tmp_path / "out", script)
    for option, value in change.items():
        value = str(data["root"] / "does-not-exist") if value == "missing" else str(data.get(value, value))
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    with pytest.raises(error, match=message):
        load_script(script).main(argv)


def test_errors_exit_with_one_line_without_traceback(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["train_structure.py", "--train_data_dir", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exit_info:
        run_script(load_script("train_structure").main)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--train_data_dir" in lines[0] and "does not exist" in lines[0]


def test_push_to_hub_offline_fails_with_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    command = [
        PYTHON,
        str(TRAINING / "train_structure.py"),
        *tiny_args(data, tmp_path / "out", "train_structure", "--max_train_steps", "1", "--push_to_hub"),
    ]
    environment = _environment(HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "--push_to_hub" in errors[0], completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out" / "structure_unet").exists()  # failed before training


def test_accelerate_launch_two_cpu_processes(data: dict[str, Path], tmp_path: Path) -> None:
    """
    Two data-parallel CPU processes (gloo). `accelerate launch --cpu --num_processes 2` starts a single process
    unless an MPI hostfile is given, so the test uses the torchrun launcher with `ACCELERATE_USE_CPU=1`.
    """
    output_dir = tmp_path / "ddp"
    command = [
        str(Path(PYTHON).parent / "accelerate"), "launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no",
        str(TRAINING / "train_structure.py"),
        *tiny_args(data, output_dir, "train_structure", "--max_train_steps", "3", "--checkpointing_steps", "2"),
    ]  # fmt: skip
    environment = _environment(ACCELERATE_USE_CPU="1")
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stderr.count("Distributed environment: DistributedType.MULTI_CPU") == 2, completed.stderr[-3000:]
    assert "Total train batch size (w. parallel, distributed & accumulation) = 8" in completed.stderr
    assert (output_dir / "structure_unet" / WEIGHTS).is_file()
    assert (output_dir / "checkpoint-2").is_dir()
