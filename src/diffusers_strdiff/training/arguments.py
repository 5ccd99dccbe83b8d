# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The command line shared by the three training scripts, validated up front with one-line errors."""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from accelerate.logging import get_logger
from diffusers.optimization import SchedulerType
from diffusers.utils import is_tensorboard_available

from ..coarse_fill import MEAN_FILLS
from ..masks import HOLE_RATIO_BUCKETS, MASK_IMAGE_EXTENSIONS, load_mask_files
from ..schedulers import MeanRevertingSDEScheduler
from ..schedulers.scheduling_mean_reverting_sde import PREDICTION_TYPES
from ..structure import STRUCTURE_MEANS, TRAINING_CANNY_SIGMA
from ..utils import IMAGE_EXTENSIONS

logger = get_logger(__name__, log_level="INFO")


class ArgumentValueError(ValueError):
    """A command-line value (or the data it points to) is unusable. The scripts report it as one line."""


class ArgumentPathError(FileNotFoundError):
    """A path given on the command line does not exist. The scripts report it as one line."""


class HubUploadError(RuntimeError):
    """Creating the Hub repository or uploading to it failed. The scripts report it as one line (exit code 1)."""


def parse_args(
    description: str,
    extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
    check_arguments: Callable[[argparse.Namespace], None] | None = None,
) -> argparse.Namespace:
    """
    Parses and validates the command line shared by the three training scripts.

    Args:
        description (`str`): the script's description, shown by `--help`.
        extra_arguments (`Callable[[argparse.ArgumentParser], None]`, *optional*):
            Adds the script's own arguments (its network's architecture, ...) and may change shared defaults with
            `parser.set_defaults`.
        argv (`Sequence[str]`, *optional*): the arguments; `None` reads `sys.argv[1:]`.
        check_arguments (`Callable[[argparse.Namespace], None]`, *optional*):
            The script's own checks, run after the shared ones; raises [`ArgumentValueError`].

    Returns:
        `argparse.Namespace`: the arguments; `report_to` is `None` when nothing is reported, `structure_fill` is
        `mean_fill` when not given.

    Raises:
        ArgumentPathError: a data, validation, mask or checkpoint path does not exist (the message names the argument).
        ArgumentValueError: an inconsistent or out-of-range value, or a folder without any image.
    """
    parser = argparse.ArgumentParser(description=description)

    _add_augmentation_arguments(_add_data_arguments(parser))
    _add_sde_arguments(parser)
    _add_optimization_arguments(parser)
    _add_output_arguments(parser)
    parser.set_defaults(crop="multiscale")
    if extra_arguments is not None:
        extra_arguments(parser)
    args = parser.parse_args(argv)
    if args.report_to == "none":
        args.report_to = None
    if args.structure_fill is None:
        args.structure_fill = args.mean_fill
    _check_shared_arguments(args)
    if check_arguments is not None:
        check_arguments(args)
    return args


def _add_data_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The data sources, masks and resolution; returns the group (the augmentation arguments join it)."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_name",
        type=str,
        default=None,
        help="A dataset of the Hugging Face Hub (or a local dataset script / folder) with an image column.",
    )
    data.add_argument("--dataset_config_name", type=str, default=None, help="The config of `--dataset_name`.")
    data.add_argument(
        "--train_data_dir",
        type=str,
        default=None,
        help="A folder of training images (searched recursively, loaded with `datasets`' imagefolder). Files that "
        "are not images are skipped with a warning.",
    )
    data.add_argument(
        "--image_column",
        type=str,
        default=None,
        help="The image column of the dataset; default: 'image', else 'img', else the first Image feature.",
    )
    data.add_argument("--cache_dir", type=str, default=None, help="Where `datasets` caches what it loads.")
    data.add_argument(
        "--validation_data_dir",
        type=str,
        default=None,
        help="A folder of held-out images: the first `--num_validation_images` (sorted by path) are validated every "
        "`--validation_steps` with fixed masks. Without it, no validation is run.",
    )
    data.add_argument(
        "--mask_dir",
        type=str,
        default=None,
        help="A folder of mask images (white = hole), drawn at random per sample. Default: irregular masks generated "
        "on the fly (`diffusers_strdiff.generate_irregular_mask`).",
    )
    data.add_argument(
        "--mask_buckets",
        type=str,
        nargs="+",
        choices=sorted(HOLE_RATIO_BUCKETS),
        default=sorted(HOLE_RATIO_BUCKETS),
        help="Hole-ratio buckets of the generated masks; each sample draws one of them uniformly.",
    )
    data.add_argument(
        "--resolution",
        type=int,
        default=64,
        help="Side of the square training crops (the released training used 256).",
    )
    return data


def _add_augmentation_arguments(data: argparse._ArgumentGroup) -> None:
    """Crops, flips, the Canny sigma of the structure maps and the dataloader workers (in the data group)."""
    crop = data.add_mutually_exclusive_group()
    crop.add_argument(
        "--multiscale_crop",
        dest="crop",
        action="store_const",
        const="multiscale",
        help="Default: resize each image so that its short side is drawn uniformly from [resolution, "
        "max_crop_scale * resolution] (never above its own size), then crop `--resolution` px at a random position. "
        "The crops then show whole scenes at the scales users inpaint, not only close-up texture.",
    )
    crop.add_argument(
        "--random_crop",
        dest="crop",
        action="store_const",
        const="random",
        help="Crop `--resolution` px at a random position of the full-resolution image (released).",
    )
    crop.add_argument(
        "--center_crop", dest="crop", action="store_const", const="center", help="Crop at the image centre."
    )
    data.add_argument(
        "--max_crop_scale",
        type=float,
        default=4.0,
        help="Largest short side of `--multiscale_crop`, in units of `--resolution`.",
    )
    data.add_argument(
        "--resize",
        action="store_true",
        help="Resize every image so that its short side is `--resolution` before cropping. Default (released): only "
        "images smaller than `--resolution` are resized (up); larger ones are cropped at full resolution.",
    )
    data.add_argument(
        "--random_flip",
        action="store_true",
        help="Released augmentation: independent 50%% horizontal flip, vertical flip and transpose (and a 50%% "
        "horizontal flip of mask files).",
    )
    data.add_argument(
        "--canny_sigma",
        type=float,
        default=TRAINING_CANNY_SIGMA,
        help="Gaussian sigma of the Canny edges (released training: 3.0; released test: 2.0).",
    )
    data.add_argument(
        "--dataloader_num_workers",
        type=int,
        default=0,
        help="Dataloader worker processes (0 loads in the main process). The data do not depend on it.",
    )


def _add_sde_arguments(parser: argparse.ArgumentParser) -> None:
    """The mean-reverting SDE (saved as the scheduler config), the prediction type and the mean fill."""
    sde = parser.add_argument_group("mean-reverting SDE")
    sde.add_argument(
        "--num_train_timesteps", type=int, default=100, help="T (released: 400 for Places2, 100 for PSV)."
    )
    sde.add_argument(
        "--max_sigma",
        type=float,
        default=30.0,
        help="Stationary noise level lambda, in 8-bit units when >= 1 (released: 30, i.e. 30/255).",
    )
    sde.add_argument(
        "--sde_schedule", type=str, default="cosine", choices=["cosine", "linear", "constant"], help="Theta schedule."
    )
    sde.add_argument("--sde_eps", type=float, default=0.005, help="exp(-bar_theta_T) of the SDE.")
    sde.add_argument(
        "--prediction_type",
        type=str,
        default="epsilon",
        choices=PREDICTION_TYPES,
        help="What the network predicts. 'epsilon' (released): the noise, trained with the released MatchingLoss on "
        "the reverse-SDE step. 'sample' (x0) and 'residual' (x0 - mu): trained with the same L1 loss (hole x10) on "
        "the x0 estimate. Saved in the scheduler config.",
    )
    sde.add_argument(
        "--mean_fill",
        type=str,
        default="zeros",
        choices=MEAN_FILLS,
        help="What the texture SDE's mean holds in the hole ('zeros' released, or a coarse classical fill; see "
        "diffusers_strdiff.coarse_fill). `assemble_pipeline.py` copies it to the pipeline.",
    )
    sde.add_argument(
        "--structure_fill",
        type=str,
        default=None,
        choices=MEAN_FILLS,
        help="The fill of `--structure_mean filled_gray` (default: `--mean_fill`). A smooth fill suits the "
        "grayscale structure even when the texture mean uses PatchMatch's textured one.",
    )
    sde.add_argument(
        "--structure_mean",
        type=str,
        default="edges",
        choices=STRUCTURE_MEANS,
        help="What the structure SDE reverts to: 'edges' (released: Canny edges of the known region) or "
        "'filled_gray' (the known grayscale, hole filled by `--structure_fill`). `assemble_pipeline.py` copies it to the "
        "pipeline.",
    )


def _add_optimization_arguments(parser: argparse.ArgumentParser) -> None:
    """Batch, optimiser, LR schedule, steps, clipping, precision and EMA."""
    optimization = parser.add_argument_group("optimisation")
    optimization.add_argument("--train_batch_size", type=int, default=16, help="Batch size per device (released: 16).")
    optimization.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optimization.add_argument("--learning_rate", type=float, default=1e-4)
    optimization.add_argument("--adam_beta1", type=float, default=0.9)
    optimization.add_argument("--adam_beta2", type=float, default=0.99)
    optimization.add_argument(
        "--adam_weight_decay",
        type=float,
        default=0.0,
        help="Decoupled weight decay (AdamW); the default 0 is the released plain Adam.",
    )
    optimization.add_argument("--adam_epsilon", type=float, default=1e-8)
    optimization.add_argument(
        "--lr_scheduler",
        type=str,
        default="constant",
        choices=[scheduler_type.value for scheduler_type in SchedulerType],
        help="A diffusers `get_scheduler` schedule.",
    )
    optimization.add_argument("--lr_warmup_steps", type=int, default=0)
    optimization.add_argument(
        "--max_train_steps", type=int, default=None, help="Optimisation steps; overrides `--num_epochs`."
    )
    optimization.add_argument("--num_epochs", type=int, default=100)
    optimization.add_argument(
        "--max_grad_norm", type=float, default=1.0, help="Gradient clipping norm; 0 disables clipping."
    )
    optimization.add_argument("--mixed_precision", type=str, default="no", choices=["no", "fp16", "bf16"])
    optimization.add_argument(
        "--use_ema", action="store_true", help="Keep an EMA of the weights and save it as the final model."
    )
    optimization.add_argument("--ema_decay", type=float, default=0.9999)


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Checkpoints, validation, seed, output folder, trackers and the Hub."""
    checkpointing = parser.add_argument_group("checkpoints and validation")
    checkpointing.add_argument(
        "--checkpointing_steps",
        type=int,
        default=500,
        help="Save a resumable state (`output_dir/checkpoint-<step>`) every N optimisation steps.",
    )
    checkpointing.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep at most this many checkpoints."
    )
    checkpointing.add_argument(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help="A checkpoint folder, or 'latest' for the newest one of `--output_dir` (a fresh start when none).",
    )
    checkpointing.add_argument("--validation_steps", type=int, default=500, help="Validate every N steps.")
    checkpointing.add_argument("--num_validation_images", type=int, default=4)

    misc = parser.add_argument_group("output")
    misc.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Seed of the initialisation, the data and the noise; default: a random one (kept in the checkpoints).",
    )
    misc.add_argument("--output_dir", type=str, default="strdiffusion-model")
    misc.add_argument(
        "--logging_dir", type=str, default="logs", help="Tracker logs, relative to `--output_dir` unless absolute."
    )
    misc.add_argument(
        "--report_to",
        type=str,
        default="tensorboard" if is_tensorboard_available() else "none",
        help="Accelerate tracker: 'tensorboard', 'wandb', 'all' or 'none' (default: tensorboard when installed).",
    )
    misc.add_argument("--push_to_hub", action="store_true", help="Upload `--output_dir` to the Hub at the end.")
    misc.add_argument(
        "--hub_model_id", type=str, default=None, help="Hub repository; default: the name of `--output_dir`."
    )
    misc.add_argument("--hub_token", type=str, default=None, help="Hub token; default: the cached login.")


def _check_shared_arguments(args: argparse.Namespace) -> None:
    if (args.dataset_name is None) == (args.train_data_dir is None):
        raise ArgumentValueError("Pass exactly one of `--train_data_dir` (an image folder) or `--dataset_name`.")
    if args.train_data_dir is not None:
        _check_image_folder(args.train_data_dir, "--train_data_dir")
    if args.validation_data_dir is not None:
        _check_image_folder(args.validation_data_dir, "--validation_data_dir")
    if args.mask_dir is not None:
        try:
            load_mask_files(args.mask_dir)
        except FileNotFoundError as error:
            raise ArgumentPathError(f"--mask_dir {args.mask_dir!r} does not exist or is not a directory.") from error
        except ValueError as error:
            raise ArgumentValueError(
                f"--mask_dir {args.mask_dir!r} holds no mask image ({', '.join(MASK_IMAGE_EXTENSIONS)})."
            ) from error
    for name in (
        "resolution",
        "train_batch_size",
        "gradient_accumulation_steps",
        "num_epochs",
        "checkpointing_steps",
        "validation_steps",
        "num_validation_images",
    ):
        if getattr(args, name) < 1:
            raise ArgumentValueError(f"`--{name}` must be >= 1, got {getattr(args, name)}.")
    for name in ("max_train_steps", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ArgumentValueError(f"`--{name}` must be >= 1, got {getattr(args, name)}.")
    for name in ("dataloader_num_workers", "lr_warmup_steps", "max_grad_norm", "adam_weight_decay"):
        if getattr(args, name) < 0:
            raise ArgumentValueError(f"`--{name}` must be >= 0, got {getattr(args, name)}.")
    if args.num_train_timesteps < 2:
        raise ArgumentValueError(
            f"`--num_train_timesteps` must be >= 2 (t is drawn from 2..T), got {args.num_train_timesteps}."
        )
    if args.max_crop_scale < 1:
        raise ArgumentValueError(f"`--max_crop_scale` must be >= 1, got {args.max_crop_scale}.")
    if args.canny_sigma <= 0:
        raise ArgumentValueError(f"`--canny_sigma` must be > 0, got {args.canny_sigma}.")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise ArgumentValueError(f"`--ema_decay` must be in [0, 1], got {args.ema_decay}.")
    if args.resume_from_checkpoint not in (None, "latest") and not Path(args.resume_from_checkpoint).is_dir():
        raise ArgumentPathError(
            f"--resume_from_checkpoint {args.resume_from_checkpoint!r} does not exist or is not a directory "
            "(pass a checkpoint folder or 'latest')."
        )
    try:
        build_noise_scheduler(args)
    except ValueError as error:
        raise ArgumentValueError(f"Invalid SDE arguments: {error}") from error


def _check_image_folder(path: str, argument: str) -> None:
    folder = Path(path)
    if not folder.is_dir():
        raise ArgumentPathError(f"{argument} {path!r} does not exist or is not a directory.")
    if not any(Path(name).suffix.lower() in IMAGE_EXTENSIONS for _, _, files in os.walk(folder) for name in files):
        raise ArgumentValueError(f"{argument} {path!r} holds no image file ({', '.join(IMAGE_EXTENSIONS)}).")


def add_unet_arguments(parser: argparse.ArgumentParser) -> None:
    """The architecture arguments of a [`StrDiffusionUNet2DModel`] (structure and texture scripts)."""
    group = parser.add_argument_group("U-Net")
    group.add_argument("--base_channels", type=int, default=64, help="nf of the U-Net (released: 64).")
    group.add_argument(
        "--depth",
        type=int,
        default=4,
        help="Number of U-Net levels (released: 4); `--resolution` must be divisible by 2**depth.",
    )
    group.add_argument(
        "--known_mask_channel",
        action="store_true",
        help="Give the network the known mask as an extra input channel (not in the released networks).",
    )
    add_init_weights_argument(group)


def add_init_weights_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--init_weights` (warm start), for every network; check it with [`check_init_weights`]."""
    parser.add_argument(
        "--init_weights",
        type=str,
        default=None,
        help="Warm start: a trained network of the same family (training output, pipeline or component folder) "
        "whose weights initialise every parameter of the new network with the same name and shape (e.g. an "
        "unguided texture net for a guided one: the SPADE blocks start fresh). A fresh start resets optimiser and "
        "step count; to continue a run use --resume_from_checkpoint.",
    )


def check_init_weights(args: argparse.Namespace) -> None:
    """Raises `ArgumentPathError` when `--init_weights` is given but is not a directory."""
    if args.init_weights is not None and not Path(args.init_weights).is_dir():
        raise ArgumentPathError(f"--init_weights {args.init_weights!r} does not exist or is not a directory.")


def check_unet_arguments(args: argparse.Namespace) -> None:
    """Checks [`add_unet_arguments`]' values against the resolution."""
    check_init_weights(args)
    if args.base_channels < 1 or args.depth < 1:
        raise ArgumentValueError(
            f"`--base_channels` and `--depth` must be >= 1, got {args.base_channels} and {args.depth}."
        )
    if args.resolution % 2**args.depth:
        raise ArgumentValueError(
            f"`--resolution` {args.resolution} must be divisible by 2**depth = {2**args.depth} (`--depth` "
            f"{args.depth}); e.g. {max(1, round(args.resolution / 2**args.depth)) * 2**args.depth}."
        )


def build_noise_scheduler(args: argparse.Namespace) -> MeanRevertingSDEScheduler:
    """The [`MeanRevertingSDEScheduler`] of the `--num_train_timesteps`, `--max_sigma`, ... arguments."""
    return MeanRevertingSDEScheduler(
        num_train_timesteps=args.num_train_timesteps,
        max_sigma=args.max_sigma,
        schedule=args.sde_schedule,
        eps=args.sde_eps,
        prediction_type=args.prediction_type,
    )


def run_script(main: Callable[[Sequence[str] | None], Any]) -> None:
    """
    Runs a training script's `main` from the command line: argument / data errors are reported as one line (exit
    code 2, like argparse's), a failed Hub upload as one line (exit code 1), without a stack trace.
    """
    try:
        main(None)
    except (ArgumentValueError, ArgumentPathError) as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except HubUploadError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(1)
