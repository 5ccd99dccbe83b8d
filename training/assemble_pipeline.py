# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Assembles the three trained StrDiffusion networks into a `StrDiffusionInpaintPipeline` folder.

Each of `--structure`, `--texture` and `--discriminator` is a training output folder (holding `structure_unet/`,
`texture_unet/` or `discriminator/`) or that component folder itself. The scheduler comes from `--scheduler`, else from
the `scheduler/` folder saved next to the texture (or structure) network; all the schedulers found must agree on T
and on the prediction type (one scheduler serves both processes). The texture mean's fill (`mean_fill`) comes from
`--mean_fill`, else from the `training_args.json` of the texture run; the structure mean (`structure_mean`) and its
fill (`structure_fill`) from that of the structure run, and the texture guidance (`texture_guidance`) from that of the
texture run. `--sampler` and `--default_num_inference_steps` make a recommended sampler the pipeline's default (what
`pipe(image=..., mask_image=...)` runs).

    python training/assemble_pipeline.py --structure OUT_S --texture OUT_T --discriminator OUT_D --output_dir PIPELINE
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from diffusers_strdiff.coarse_fill import MEAN_FILLS
from diffusers_strdiff.models import StrDiffusionDiscriminator, StrDiffusionUNet2DModel
from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline
from diffusers_strdiff.schedulers import SAMPLER_PRESETS, MeanRevertingSDEScheduler
from diffusers_strdiff.training import (
    TRAINING_ARGS_FILE,
    ArgumentPathError,
    ArgumentValueError,
    find_scheduler_folder,
    load_component,
    recorded_structure_fill,
    recorded_training_arg,
    run_script,
    write_model_card,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--structure",
        type=str,
        default=None,
        help="Output of train_structure.py (or its subfolder). Omit it for a texture net trained with "
        "`--no_structure_guidance` (the no-structure ablation pipeline).",
    )
    parser.add_argument("--texture", type=str, required=True, help="Output of train_texture.py (or its subfolder).")
    parser.add_argument(
        "--discriminator", type=str, default=None, help="Output of train_discriminator.py (or its subfolder)."
    )
    parser.add_argument(
        "--scheduler", type=str, default=None, help="A scheduler folder (default: the one saved with --texture)."
    )
    parser.add_argument(
        "--mean_fill",
        type=str,
        default=None,
        choices=MEAN_FILLS,
        help="The texture mean's hole fill the texture net was trained with (default: read from its run's "
        f"{TRAINING_ARGS_FILE}, else 'zeros').",
    )
    parser.add_argument(
        "--sampler",
        type=str,
        default=None,
        choices=sorted(SAMPLER_PRESETS),
        help="Save the scheduler with this sampler preset (default: the scheduler as trained, i.e. 'released').",
    )
    parser.add_argument(
        "--default_num_inference_steps",
        type=int,
        default=None,
        help="Steps a call uses by default with a posterior sampler (default: every step of T).",
    )
    parser.add_argument("--output_dir", type=str, required=True, help="Where the pipeline is saved.")
    args = parser.parse_args(argv)
    for name in ("structure", "texture", "discriminator", "scheduler"):
        path = getattr(args, name)
        if path is not None and not Path(path).is_dir():
            raise ArgumentPathError(f"--{name} {path!r} does not exist or is not a directory.")
    return args


def load_scheduler(args: argparse.Namespace) -> MeanRevertingSDEScheduler:
    """The pipeline's scheduler; raises when none is found or when the components were trained with different T."""
    folders = {
        name: find_scheduler_folder(getattr(args, name))
        for name in ("structure", "texture", "discriminator")
        if getattr(args, name) is not None
    }
    if args.scheduler is not None:
        folders = {"scheduler": find_scheduler_folder(args.scheduler), **folders}
        if folders["scheduler"] is None:
            raise ArgumentValueError(f"--scheduler {args.scheduler!r} holds no MeanRevertingSDEScheduler config.")
    found = {name: MeanRevertingSDEScheduler.from_pretrained(folder) for name, folder in folders.items() if folder}
    if not found:
        raise ArgumentValueError(
            "No scheduler found next to the components (`scheduler/` of a training output folder): pass --scheduler."
        )
    for setting in ("num_train_timesteps", "prediction_type"):
        values = {name: scheduler.config[setting] for name, scheduler in found.items()}
        if len(set(values.values())) > 1:
            raise ArgumentValueError(f"The components were trained with different `{setting}`: {values}.")
    scheduler = found.get("scheduler") or found.get("texture") or next(iter(found.values()))
    if args.sampler is not None:
        scheduler = MeanRevertingSDEScheduler.from_config(scheduler.config, **SAMPLER_PRESETS[args.sampler])
    return scheduler


def texture_mean_fill(args: argparse.Namespace) -> str:
    """`--mean_fill`, else the `mean_fill` recorded by the texture run (runs older than the option: 'zeros')."""
    if args.mean_fill is not None:
        return args.mean_fill
    return recorded_training_arg(args.texture, "mean_fill", "zeros")


def structure_settings(args: argparse.Namespace) -> dict[str, str]:
    """
    `structure_mean` and `structure_fill` (recorded by the structure run) and `texture_guidance` (recorded by the
    texture run); released values for runs older than the options. Raises when a texture net trained with estimate
    guidance meets a structure net of another structure mean, or a texture net meets a `filled_gray` structure net of
    another fill than it was trained with.
    """
    texture_guidance = recorded_training_arg(args.texture, "texture_guidance", "state")
    if args.structure is None:
        return {"structure_mean": "edges", "texture_guidance": texture_guidance}
    structure_mean = recorded_training_arg(args.structure, "structure_mean", "edges")
    trained_with = recorded_training_arg(args.texture, "structure_mean", "edges")
    if texture_guidance == "estimate" and trained_with != structure_mean:
        raise ArgumentValueError(
            f"The texture net was trained with the estimates of a structure net with structure_mean={trained_with!r}, "
            f"--structure {args.structure!r} has structure_mean={structure_mean!r}."
        )
    structure_fill = recorded_structure_fill(args.structure)
    texture_trained_with = recorded_structure_fill(args.texture)
    if structure_mean == "filled_gray" and structure_fill != texture_trained_with:
        raise ArgumentValueError(
            f"The structure net fills its mean's hole with {structure_fill!r}, the texture net was trained with the "
            f"guidance of a structure mean filled with {texture_trained_with!r}."
        )
    return {"structure_mean": structure_mean, "texture_guidance": texture_guidance, "structure_fill": structure_fill}


def build_pipeline(args: argparse.Namespace) -> StrDiffusionInpaintPipeline:
    """The pipeline of the trained components named by the arguments."""
    mean_fill = texture_mean_fill(args)
    return StrDiffusionInpaintPipeline(
        structure_unet=(
            load_component(StrDiffusionUNet2DModel, args.structure, "structure_unet")
            if args.structure is not None
            else None
        ),
        texture_unet=load_component(StrDiffusionUNet2DModel, args.texture, "texture_unet"),
        scheduler=load_scheduler(args),
        discriminator=(
            load_component(StrDiffusionDiscriminator, args.discriminator, "discriminator")
            if args.discriminator is not None
            else None
        ),
        mean_fill=mean_fill,
        default_num_inference_steps=args.default_num_inference_steps,
        **structure_settings(args),
    )


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    try:
        pipeline = build_pipeline(args)
    except ValueError as error:  # e.g. a guided texture net without --structure
        raise ArgumentValueError(str(error)) from error
    output_dir = Path(args.output_dir)
    pipeline.save_pretrained(output_dir)
    sources = "\n".join(
        f"- `{name}`: `{getattr(args, name)}`"
        for name in ("structure", "texture", "discriminator", "scheduler")
        if getattr(args, name) is not None
    )
    write_model_card(
        output_dir,
        title="StrDiffusion inpainting pipeline",
        description=(
            "Structure-guided diffusion inpainting (StrDiffusion, Liu et al., CVPR 2024) assembled from separately "
            f"trained networks:\n\n{sources}\n\nT = {pipeline.scheduler.config.num_train_timesteps}."
        ),
        usage=(
            "import torch\nfrom diffusers_strdiff import StrDiffusionInpaintPipeline\n\n"
            f'pipe = StrDiffusionInpaintPipeline.from_pretrained("{output_dir}")\n'
            "# image: (B, 3, H, W) in [0, 1]; mask_image: (B, 1, H, W), 1 = hole\n"
            'result = pipe(image=image, mask_image=mask, generator=torch.manual_seed(0), output_type="pt").images'
        ),
    )
    print(f"Saved the pipeline to {output_dir}")
    return output_dir


if __name__ == "__main__":
    run_script(main)
