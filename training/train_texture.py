# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Trains the StrDiffusion texture network: an RGB U-Net guided (SPADE) by a 1-channel structure map.

Texture SDE: y0 = RGB image in [0, 1], mu_y = image * known mask (released; `--mean_fill` puts a coarse classical
fill in the hole instead). Per batch, t ~ U{2..T}, y_t ~ marginal(y0, t). With `--texture_guidance state` (released)
the guidance S is the Eq.4 optimum x*_{t-1} of the structure SDE from a structure state x_t sampled at the same t with
the ground-truth grayscale (the structure network is not used). With `--texture_guidance estimate` it is the x_0
estimate of the frozen structure network `--structure_model_name_or_path` from such a state, as the pipeline computes
it (`estimated_structure`): training sees the guidance that inference gives. With `--prediction_type epsilon` the reverse-SDE mean step of the texture net is
matched (L1, hole x10) to the Eq.4 optimum y*_{t-1}(y_t, y0) (released `train/texture`); with `sample` / `residual`
its x0 estimate is matched to y0 with the same loss.

`--adversarial_weight W` (> 0) adds a critic (a PatchGAN `StrDiffusionPatchCritic` conditioned on the hole mask,
saved as `texture_critic`) that scores the hole patches of the x0 estimate, known region pasted, against the real
image, for estimates made at t >= 0.4 T; after `--critic_warmup_steps` the net's loss gains the critic's
non-saturating GAN loss, weighted so that its gradient at the last layer is W times the reconstruction loss's
(VQGAN's adaptive weight): fills with texture instead of the smooth L1 median.

Validation inpaints the held-out images with the same oracle structure guidance, or, with
`--structure_model_name_or_path`, with the full `StrDiffusionInpaintPipeline` (trained structure + this texture net).

    python training/train_texture.py --train_data_dir IMAGES --validation_data_dir HELD_OUT --output_dir OUT
    accelerate launch training/train_texture.py ...
"""

import argparse
import functools
from collections.abc import Sequence

import torch

from diffusers_strdiff.coarse_fill import fill_hole
from diffusers_strdiff.models import StrDiffusionPatchCritic, StrDiffusionUNet2DModel
from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline
from diffusers_strdiff.schedulers import MeanRevertingSDEScheduler
from diffusers_strdiff.structure import TEXTURE_GUIDANCES, structure_mean
from diffusers_strdiff.training import (
    ArgumentValueError,
    CriticInputs,
    CriticTask,
    GeneratorLoss,
    TrainingResult,
    TrainingTask,
    ValidationResult,
    adaptive_weight,
    add_adversarial_arguments,
    add_unet_arguments,
    check_adversarial_arguments,
    check_unet_arguments,
    critic_sample_weight,
    denoising_loss,
    estimated_structure,
    find_scheduler_folder,
    generator_adversarial_loss,
    image_grid,
    load_component,
    mask_input,
    noisy_state,
    oracle_structure,
    parse_args,
    recorded_structure_fill,
    recorded_training_arg,
    run_script,
    train,
    unet_config,
    warm_start,
)
from diffusers_strdiff.utils import psnr

COMPONENT_NAME = "texture_unet"
STRUCTURE_COMPONENT_NAME = "structure_unet"
CRITIC_COMPONENT_NAME = "texture_critic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_unet_arguments(parser)
    parser.add_argument(
        "--structure_model_name_or_path",
        type=str,
        default=None,
        help="A trained structure network (output of train_structure.py, its `structure_unet` folder, a pipeline "
        "folder or a Hub repo): validation then runs the full StrDiffusionInpaintPipeline instead of the oracle "
        "structure guidance.",
    )
    parser.add_argument(
        "--no_structure_guidance",
        action="store_true",
        help="Train the texture net without SPADE guidance (guidance_channels=0): plain IR-SDE inpainting, the "
        "no-structure ablation of the paper's Table 2. Load it with `structure_unet=None`.",
    )
    parser.add_argument(
        "--texture_guidance",
        type=str,
        default="state",
        choices=TEXTURE_GUIDANCES,
        help="What guides the texture net: 'state' (released: the Eq.4 structure optimum from the ground truth) or "
        "'estimate' (the x_0 estimate of the frozen structure net given by --structure_model_name_or_path, as the "
        "pipeline's texture_guidance='estimate' computes it). `assemble_pipeline.py` copies it to the pipeline.",
    )
    add_adversarial_arguments(parser)
    parser.set_defaults(output_dir="strdiffusion-texture")


def check_arguments(args: argparse.Namespace) -> None:
    check_unet_arguments(args)
    check_adversarial_arguments(args)


def build_model(args: argparse.Namespace) -> StrDiffusionUNet2DModel:
    model = StrDiffusionUNet2DModel(
        in_channels=3,
        out_channels=3,
        base_channels=args.base_channels,
        depth=args.depth,
        guidance_channels=0 if args.no_structure_guidance else 1,
        known_mask_channel=args.known_mask_channel,
    )
    return model if args.init_weights is None else warm_start(model, args.init_weights, COMPONENT_NAME)


def build_critic(args: argparse.Namespace) -> StrDiffusionPatchCritic:
    """The critic of `--adversarial_weight`: D(image, hole mask) -> `(B, 1, H / 8, W / 8)` patch logits."""
    return StrDiffusionPatchCritic(in_channels=3, condition_channels=1, base_channels=args.critic_base_channels)


def texture_prediction(
    model: torch.nn.Module,
    noisy: torch.Tensor,
    timesteps: torch.Tensor | int,
    mu: torch.Tensor,
    known_mask: torch.Tensor,
    guidance: torch.Tensor | None,
) -> torch.Tensor:
    """The texture net's output, with the known mask as input when the net takes it."""
    return model(noisy, timesteps, mu, guidance=guidance, known_mask=mask_input(model, known_mask)).sample


def compute_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    mean_fill: str = "zeros",
    structure_mean_kind: str = "edges",
    structure_fill: str = "zeros",
    structure_unet: StrDiffusionUNet2DModel | None = None,
    critic: torch.nn.Module | None = None,
    adversarial: bool = True,
    adversarial_weight: float = 0.0,
) -> torch.Tensor | GeneratorLoss:
    """
    [`denoising_loss`] of the texture net (released MatchingLoss for the noise prediction). The guidance is the
    oracle structure (released), or the x_0 estimate of `structure_unet` when one is given (estimate guidance).
    With a `critic`, the [`GeneratorLoss`] of that loss plus (if `adversarial`) the adaptively weighted adversarial
    loss of the x_0 estimate (known region pasted; the critic scores its hole patches, for t >= 0.4 T).
    """
    image, known_mask = batch["image"], batch["known_mask"]
    mu = fill_hole(image, known_mask, mean_fill)
    timesteps, noisy = noisy_state(image, mu, scheduler, generator)
    guidance = None
    if unet_config(model).guidance_channels > 0:
        gray = batch["gray"]
        structure_mu = structure_mean(gray, batch["edges"], known_mask, structure_mean_kind, structure_fill)
        if structure_unet is None:
            guidance = oracle_structure(gray, structure_mu, timesteps, scheduler, generator)
        else:
            guidance = estimated_structure(
                structure_unet.to(image.device), gray, structure_mu, known_mask, timesteps, scheduler, generator
            )
    output = texture_prediction(model, noisy, timesteps, mu, known_mask, guidance)
    loss = denoising_loss(output, timesteps, noisy, image, mu, known_mask, scheduler)
    if critic is None:
        return loss
    estimate = scheduler.predict_original_sample(output, timesteps, noisy, mu)
    filled = image * known_mask + estimate * (1 - known_mask)
    hole_mask = 1 - known_mask
    sample_weight = critic_sample_weight(timesteps, scheduler.config.num_train_timesteps)
    critic_inputs = CriticInputs(real=image, fake=filled.detach(), hole_mask=hole_mask, sample_weight=sample_weight)
    if not adversarial:
        return GeneratorLoss(loss=loss, critic_inputs=critic_inputs, logs={"reconstruction_loss": loss.item()})
    adversarial_loss = generator_adversarial_loss(critic, filled, hole_mask, sample_weight)
    last_layer = getattr(model, "module", model).conv_out.weight
    weight = adversarial_weight * adaptive_weight(loss, adversarial_loss, last_layer)
    return GeneratorLoss(
        loss=loss + weight * adversarial_loss,
        critic_inputs=critic_inputs,
        logs={
            "reconstruction_loss": loss.item(),
            "adversarial_loss": adversarial_loss.item(),
            "adaptive_weight": weight.item(),
        },
    )


def inpaint_with_oracle_structure(
    model: StrDiffusionUNet2DModel,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    mean_fill: str = "zeros",
    structure_mean_kind: str = "edges",
    structure_fill: str = "zeros",
) -> torch.Tensor:
    """
    Texture reverse process T..1 guided at every step by the oracle structure of training (unguided for the
    no-structure ablation); known pixels pasted.
    """
    image, known_mask = batch["image"], batch["known_mask"]
    mu = fill_hole(image, known_mask, mean_fill)
    structure_mu = structure_mean(batch["gray"], batch["edges"], known_mask, structure_mean_kind, structure_fill)
    scheduler.set_timesteps()
    sample = scheduler.initial_sample(mu, torch.randn(mu.shape, generator=generator, device=mu.device))
    for timestep in scheduler.timesteps.tolist():
        guidance = None
        if model.config.guidance_channels > 0:
            guidance = oracle_structure(batch["gray"], structure_mu, timestep, scheduler, generator)
        output = texture_prediction(model, sample, timestep, mu, known_mask, guidance)
        sample = scheduler.step(output, timestep, sample, mu, generator=generator).prev_sample
    return image * known_mask + sample * (1 - known_mask)


def validate(
    model: StrDiffusionUNet2DModel,
    batch: dict[str, torch.Tensor],
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
    structure_unet: StrDiffusionUNet2DModel | None = None,
    canny_sigma: float | None = None,
    mean_fill: str = "zeros",
    structure_mean_kind: str = "edges",
    structure_fill: str = "zeros",
    texture_guidance: str = "state",
) -> ValidationResult:
    """Inpaints the held-out images: grid of masked input / output / ground truth, and the PSNR."""
    image, known_mask = batch["image"], batch["known_mask"]
    if structure_unet is None:
        output = inpaint_with_oracle_structure(
            model, batch, scheduler, generator, mean_fill, structure_mean_kind, structure_fill
        )
    else:
        pipeline = StrDiffusionInpaintPipeline(
            structure_unet=structure_unet.to(model.device),
            texture_unet=model,
            scheduler=scheduler,
            mean_fill=mean_fill,
            structure_mean=structure_mean_kind,
            structure_fill=structure_fill,
            texture_guidance=texture_guidance,
        )
        pipeline.set_progress_bar_config(disable=True)
        output = pipeline(
            image=image, mask_image=1 - known_mask, generator=generator, output_type="pt", canny_sigma=canny_sigma
        ).images
    return ValidationResult(
        grid=image_grid([image * known_mask, output, image]), metrics={"psnr": psnr(output, image).mean().item()}
    )


def load_structure_unet(args: argparse.Namespace) -> StrDiffusionUNet2DModel:
    """The `--structure_model_name_or_path` network, checked against this run's SDE and resolution."""
    structure_unet = load_component(
        StrDiffusionUNet2DModel, args.structure_model_name_or_path, STRUCTURE_COMPONENT_NAME
    )
    if structure_unet.config.guidance_channels != 0 or structure_unet.config.in_channels != 1:
        raise ArgumentValueError(
            f"--structure_model_name_or_path {args.structure_model_name_or_path!r} is not a structure network "
            "(expected in_channels=1, guidance_channels=0)."
        )
    if args.resolution % 2**structure_unet.config.depth:
        raise ArgumentValueError(
            f"`--resolution` {args.resolution} must be divisible by 2**depth = {2**structure_unet.config.depth} of "
            "the structure network."
        )
    scheduler_folder = find_scheduler_folder(args.structure_model_name_or_path)
    if scheduler_folder is not None:
        trained_with = MeanRevertingSDEScheduler.from_pretrained(scheduler_folder).config
        for setting, ours in (
            ("num_train_timesteps", args.num_train_timesteps),
            ("prediction_type", args.prediction_type),
        ):
            if trained_with[setting] != ours:
                raise ArgumentValueError(
                    f"The structure network was trained with {setting} = {trained_with[setting]!r} "
                    f"(`{scheduler_folder}`), this run uses {ours!r}: both networks of a pipeline share one SDE."
                )
    for setting, trained_with in (
        ("structure_mean", recorded_training_arg(args.structure_model_name_or_path, "structure_mean", "edges")),
        ("structure_fill", recorded_structure_fill(args.structure_model_name_or_path)),
    ):
        if trained_with != getattr(args, setting):
            raise ArgumentValueError(
                f"The structure network was trained with --{setting} {trained_with}, this run uses "
                f"--{setting} {getattr(args, setting)}: pass the same value."
            )
    return structure_unet


def main(argv: Sequence[str] | None = None) -> TrainingResult | None:
    args = parse_args(__doc__, add_arguments, argv, check_arguments)
    structure_unet = None
    if args.structure_model_name_or_path is not None:
        if args.no_structure_guidance:
            raise ArgumentValueError("`--structure_model_name_or_path` has no use with `--no_structure_guidance`.")
        structure_unet = load_structure_unet(args)
    elif args.texture_guidance == "estimate" and not args.no_structure_guidance:
        raise ArgumentValueError(
            "`--texture_guidance estimate` needs the structure network whose estimates guide the texture net: "
            "pass --structure_model_name_or_path."
        )
    task = TrainingTask(
        component_name=COMPONENT_NAME,
        build_model=build_model,
        compute_loss=functools.partial(
            compute_loss,
            mean_fill=args.mean_fill,
            structure_mean_kind=args.structure_mean,
            structure_fill=args.structure_fill,
            structure_unet=structure_unet if args.texture_guidance == "estimate" else None,
            adversarial_weight=args.adversarial_weight,
        ),
        validate=functools.partial(
            validate,
            structure_unet=structure_unet,
            canny_sigma=args.canny_sigma,
            mean_fill=args.mean_fill,
            structure_mean_kind=args.structure_mean,
            structure_fill=args.structure_fill,
            texture_guidance=args.texture_guidance,
        ),
        description=(
            "The texture network of StrDiffusion (Liu et al., CVPR 2024): an RGB U-Net denoising the texture "
            f"mean-reverting SDE (x0 = image, mu = known region of the image, hole filled with `{args.mean_fill}`), "
            f"predicting `{args.prediction_type}`, guided through SPADE blocks by a 1-channel structure map "
            f"(`texture_guidance={args.texture_guidance}`: the Eq.4 structure optimum from the ground-truth grayscale, "
            "or the frozen structure network's x_0 estimate). Combine it with a structure network and "
            "a discriminator with `training/assemble_pipeline.py`."
            + (
                f" Trained with an adversarial term (critic `{CRITIC_COMPONENT_NAME}`, adaptive weight x "
                f"{args.adversarial_weight})."
                if args.adversarial_weight > 0
                else ""
            )
        ),
        critic=(
            CriticTask(CRITIC_COMPONENT_NAME, build_critic, args.critic_learning_rate, args.critic_warmup_steps)
            if args.adversarial_weight > 0
            else None
        ),
    )
    return train(args, task)


if __name__ == "__main__":
    run_script(main)
