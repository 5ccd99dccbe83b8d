# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""What the three StrDiffusion training scripts (`training/train_{structure,texture,discriminator}.py`) share.

* [`parse_args`]: the diffusers-examples command line (data, SDE, optimisation, checkpointing, validation, Hub),
  validated up front with one-line errors ([`ArgumentValueError`], [`ArgumentPathError`]).
* [`InpaintingDataset`] / [`EpochShuffleSampler`]: images from an image folder (`datasets` "imagefolder") or a Hub
  dataset, cropped and flipped as released, with their grayscale and Canny structure maps and a known-region mask.
  Every random choice of a sample (crop, flips, mask) comes from a numpy generator seeded with (seed, epoch, index),
  and the order of an epoch from (seed, epoch): the data of a run depend on nothing but the seed, whatever the
  number of dataloader workers, and a resumed run sees exactly the batches the interrupted one would have seen.
* [`train`]: the loop of `examples/unconditional_image_generation/train_unconditional.py` adapted to one network
  of StrDiffusion (a [`TrainingTask`]): `Accelerator`, AdamW (= Adam with the default weight decay 0), diffusers
  `get_scheduler`, optional `EMAModel`, checkpoints every N steps (written atomically, pruned to a limit, EMA
  included through accelerator hooks), resume from a path or `"latest"`, periodic validation (PNG grids under
  `output_dir/validation/`, tensorboard), final `save_pretrained` of the network and of the scheduler, a model card
  and an optional Hub upload.
* [`matching_loss`]: the released `MatchingLoss` of the structure and texture trainings.
"""

import argparse
import json
import logging
import math
import os
import random
import re
import shutil
import sys
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import diffusers
import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, broadcast_object_list, set_seed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.optimization import SchedulerType, get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import is_tensorboard_available
from huggingface_hub import ModelCard, ModelCardData, create_repo, upload_folder
from tqdm.auto import tqdm

from .coarse_fill import MEAN_FILLS
from .image_io import load_image
from .masks import HOLE_RATIO_BUCKETS, MASK_IMAGE_EXTENSIONS, generate_irregular_mask, load_mask, load_mask_files
from .schedulers import MeanRevertingSDEScheduler
from .schedulers.scheduling_mean_reverting_sde import PREDICTION_TYPES
from .structure import TRAINING_CANNY_SIGMA, edge_map, grayscale_map

logger = get_logger(__name__, log_level="INFO")

IMAGE_EXTENSIONS: tuple[str, ...] = MASK_IMAGE_EXTENSIONS
"""File extensions (lower case) read as training / validation images."""

MODEL_CARD_TAGS: list[str] = ["inpainting", "strdiffusion", "diffusers", "mean-reverting-sde"]

SCHEDULER_SUBFOLDER = "scheduler"
TRAINING_ARGS_FILE = "training_args.json"
"""The arguments of a finished run (without the Hub token), next to its networks: `assemble_pipeline.py` reads
`mean_fill` from it."""
CHECKPOINT_PREFIX = "checkpoint-"
VALIDATION_SUBFOLDER = "validation"

VALIDATION_SEED = 0
"""Seed of the validation masks and noise: validations of different runs and steps see the same draws."""

HOLE_WEIGHT = 10.0
"""Weight of the hole pixels in the released `MatchingLoss` (known pixels weigh 1)."""

SCALED_IMAGE_CACHE_SIZE = 1024
"""Decoded, downscaled images each [`InpaintingDataset`] keeps in memory for multi-scale crops (per worker)."""

# First spawn-key entry of the seed sequences, one per independent random stream of a run.
_SHUFFLE_STREAM, _SAMPLE_STREAM, _NOISE_STREAM, _VALIDATION_STREAM = range(4)

_IGNORED_FILES = {"metadata.csv", "metadata.jsonl", "metadata.parquet"}
"""Files of an image folder that `datasets`' imagefolder reads as metadata: skipped without a warning."""


class ArgumentValueError(ValueError):
    """A command-line value (or the data it points to) is unusable. The scripts report it as one line."""


class ArgumentPathError(FileNotFoundError):
    """A path given on the command line does not exist. The scripts report it as one line."""


class HubUploadError(RuntimeError):
    """Creating the Hub repository or uploading to it failed. The scripts report it as one line (exit code 1)."""


# ----------------------------------------------------------------------------------------------------------- arguments


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
        `argparse.Namespace`: the arguments; `report_to` is `None` when nothing is reported.

    Raises:
        ArgumentPathError: a data, validation, mask or checkpoint path does not exist (the message names the argument).
        ArgumentValueError: an inconsistent or out-of-range value, or a folder without any image.
    """
    parser = argparse.ArgumentParser(description=description)

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
        help="Texture and discriminator runs: what the texture SDE's mean holds in the hole ('zeros' released, or a "
        "coarse classical fill; see diffusers_strdiff.coarse_fill). `assemble_pipeline.py` copies it to the pipeline.",
    )

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

    parser.set_defaults(crop="multiscale")
    if extra_arguments is not None:
        extra_arguments(parser)
    args = parser.parse_args(argv)
    if args.report_to == "none":
        args.report_to = None
    _check_shared_arguments(args)
    if check_arguments is not None:
        check_arguments(args)
    return args


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
    if next(_iter_image_files(folder), None) is None:
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
    group.add_argument(
        "--init_weights",
        type=str,
        default=None,
        help="Warm start: a trained network of the same family (training output, pipeline or component folder) "
        "whose weights initialise every parameter of the new network with the same name and shape (e.g. an "
        "unguided texture net for a guided one: the SPADE blocks start fresh). A fresh start resets optimiser and "
        "step count; to continue a run use --resume_from_checkpoint.",
    )


def check_unet_arguments(args: argparse.Namespace) -> None:
    """Checks [`add_unet_arguments`]' values against the resolution."""
    if args.init_weights is not None and not Path(args.init_weights).is_dir():
        raise ArgumentPathError(f"--init_weights {args.init_weights!r} does not exist or is not a directory.")
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


# ----------------------------------------------------------------------------------------------------------- data


def _iter_image_files(folder: Path) -> Iterator[Path]:
    for root, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(root, name)


def list_image_files(folder: str | Path, argument: str) -> list[Path]:
    """
    The readable images of a folder (recursive, sorted by path). Hidden files and `datasets` metadata files are
    ignored; other files (non-image extensions, or files that cannot be decoded whole: unidentified, truncated,
    larger than `image_io.MAX_IMAGE_PIXELS`) are skipped with one warning naming them.

    Raises:
        ArgumentValueError: when no readable image is left (the message names `argument`).
    """
    images, skipped = [], []
    for root, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            path = Path(root, name)
            if name.startswith(".") or name in _IGNORED_FILES:
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(path)
                continue
            try:
                load_image(path)  # decodes the whole file: a truncated image is caught here, not mid-run
            except (OSError, ValueError):
                skipped.append(path)
                continue
            images.append(path)
    if skipped:
        names = ", ".join(str(path.relative_to(folder)) for path in skipped[:5])
        # The standard logger: this helper also runs without an accelerate state (every process warns).
        logging.getLogger(__name__).warning(
            f"{argument}: skipping {len(skipped)} file(s) that are not readable images "
            f"({names}{', ...' if len(skipped) > 5 else ''})."
        )
    if not images:
        raise ArgumentValueError(
            f"{argument} {str(folder)!r} holds no readable image ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return images


def _image_column(features: datasets.Features, requested: str | None, source: str) -> str:
    image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if requested is not None:
        if requested not in features:
            raise ArgumentValueError(f"--image_column {requested!r} is not a column of {source} ({list(features)}).")
        return requested
    for name in ("image", "img"):
        if name in image_columns:
            return name
    if not image_columns:
        raise ArgumentValueError(f"{source} has no Image column ({list(features)}); pass --image_column.")
    return image_columns[0]


def load_training_images(args: argparse.Namespace) -> tuple[datasets.Dataset, str]:
    """
    The training split as a `datasets.Dataset` with a single image column (not decoded yet), and that column's name.
    """
    if args.train_data_dir is not None:
        files = list_image_files(args.train_data_dir, "--train_data_dir")
        dataset = datasets.load_dataset(
            "imagefolder", data_files={"train": [str(path) for path in files]}, cache_dir=args.cache_dir, split="train"
        )
        source = f"--train_data_dir {args.train_data_dir!r}"
    else:
        try:
            dataset = datasets.load_dataset(
                args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir, split="train"
            )
        except Exception as error:  # any loading failure of a user-named dataset is a bad argument
            raise ArgumentValueError(
                f"--dataset_name {args.dataset_name!r} could not be loaded: {type(error).__name__}: {error}"
            ) from error
        source = f"--dataset_name {args.dataset_name!r}"
    column = _image_column(dataset.features, args.image_column, source)
    return dataset.select_columns([column]), column


def _resize_short_side(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new_size, PIL.Image.Resampling.BILINEAR)


def _structure_sample(pixels: np.ndarray, known_mask: np.ndarray, canny_sigma: float) -> dict[str, torch.Tensor]:
    """One training sample from `(R, R, 3)` uint8 pixels and an `(R, R)` known mask (1 = known)."""
    image = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).float() / 255
    return {
        "image": image,
        "gray": grayscale_map(image),
        "edges": edge_map(image, sigma=canny_sigma),
        "known_mask": torch.from_numpy(np.ascontiguousarray(known_mask, dtype=np.float32))[None],
    }


class MaskSource:
    """
    Known-region masks (1 = known, 0 = hole) of size `resolution`: generated irregular masks in the given hole-ratio
    buckets, or files of a mask folder (white = hole), chosen with a numpy generator.
    """

    def __init__(self, resolution: int, buckets: Sequence[str], mask_dir: str | None = None) -> None:
        self.resolution = resolution
        self.buckets = list(buckets)
        self.files = load_mask_files(mask_dir) if mask_dir is not None else None

    def random(self, rng: np.random.Generator, flip: bool) -> np.ndarray:
        """A random mask; `flip` adds the released 50% horizontal flip of mask files."""
        if self.files is None:
            bucket = self.buckets[int(rng.integers(len(self.buckets)))]
            hole = generate_irregular_mask(self.resolution, self.resolution, generator=rng, bucket=bucket)
        else:
            hole = load_mask(self.files[int(rng.integers(len(self.files)))], self.resolution)
            if flip and rng.random() < 0.5:
                hole = hole[:, ::-1]
        return 1.0 - hole

    def fixed(self, index: int) -> np.ndarray:
        """
        The `index`-th validation mask, the same in every run: file `index` (cyclic), or a generated mask of the
        `index`-th bucket (cyclic) seeded with `VALIDATION_SEED` and `index`.
        """
        if self.files is not None:
            return 1.0 - load_mask(self.files[index % len(self.files)], self.resolution)
        rng = np.random.default_rng(np.random.SeedSequence(VALIDATION_SEED, spawn_key=(_VALIDATION_STREAM, index)))
        bucket = self.buckets[index % len(self.buckets)]
        return 1.0 - generate_irregular_mask(self.resolution, self.resolution, generator=rng, bucket=bucket)


class InpaintingDataset(torch.utils.data.Dataset):
    """
    Training samples of StrDiffusion: per image, a dict of float32 tensors

    * `image` (3, R, R): RGB in [0, 1] (texture x0),
    * `gray` (1, R, R): its grayscale (structure x0),
    * `edges` (1, R, R): Canny edges of the whole image in {0, 1} (structure mu before masking),
    * `known_mask` (1, R, R): 1 = known, 0 = hole.

    Keys are `epoch * len(dataset) + index` (see [`EpochShuffleSampler`]); the crop, flips and mask of a key come from
    a numpy generator seeded with `(seed, epoch, index)`.

    Crops (`crop`): `"multiscale"` resizes the image so that its short side is drawn uniformly from [resolution,
    max_crop_scale * resolution] (at most its own short side; smaller images are resized up to `resolution`), then
    crops at a random position. The decoded image is kept in memory downscaled to that largest short side (at most
    `SCALED_IMAGE_CACHE_SIZE` images), so large photos are decoded once. `"random"` (released) and `"center"` crop the
    full-resolution image (`resize` first sets its short side to `resolution`).
    """

    def __init__(
        self,
        images: datasets.Dataset,
        image_column: str,
        masks: MaskSource,
        resolution: int,
        seed: int,
        crop: str = "random",
        resize: bool = False,
        random_flip: bool = False,
        canny_sigma: float = TRAINING_CANNY_SIGMA,
        max_crop_scale: float = 4.0,
    ) -> None:
        if crop not in ("multiscale", "random", "center"):
            raise ValueError(f"`crop` must be 'multiscale', 'random' or 'center', got {crop!r}.")
        self.images = images
        self.image_column = image_column
        self.masks = masks
        self.resolution = resolution
        self.seed = seed
        self.crop = crop
        self.resize = resize
        self.random_flip = random_flip
        self.canny_sigma = canny_sigma
        self.max_short_side = max(resolution, round(max_crop_scale * resolution))
        self._scaled_images: OrderedDict[int, PIL.Image.Image] = OrderedDict()

    def __len__(self) -> int:
        return len(self.images)

    def _scaled_image(self, index: int) -> PIL.Image.Image:
        """Image `index` as RGB with its short side at most `max_short_side` (LRU-cached)."""
        if index in self._scaled_images:
            self._scaled_images.move_to_end(index)
            return self._scaled_images[index]
        image = self.images[index][self.image_column].convert("RGB")
        if min(image.size) > self.max_short_side:
            image = _resize_short_side(image, self.max_short_side)
        self._scaled_images[index] = image
        if len(self._scaled_images) > SCALED_IMAGE_CACHE_SIZE:
            self._scaled_images.popitem(last=False)
        return image

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(int(key), len(self.images))
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_SAMPLE_STREAM, epoch, index)))
        if self.crop == "multiscale":
            image = self._scaled_image(index)
            largest = max(self.resolution, min(image.size))
            image = _resize_short_side(image, int(rng.integers(self.resolution, largest + 1)))
        else:
            image = self.images[index][self.image_column].convert("RGB")
            if self.resize or min(image.size) < self.resolution:
                image = _resize_short_side(image, self.resolution)
        pixels = np.asarray(image)
        height, width = pixels.shape[:2]
        if self.crop != "center":
            top = int(rng.integers(height - self.resolution + 1))
            left = int(rng.integers(width - self.resolution + 1))
        else:
            top, left = (height - self.resolution) // 2, (width - self.resolution) // 2
        pixels = pixels[top : top + self.resolution, left : left + self.resolution]
        if self.random_flip:
            hflip, vflip, transpose = rng.random(3) < 0.5
            if hflip:
                pixels = pixels[:, ::-1]
            if vflip:
                pixels = pixels[::-1]
            if transpose:
                pixels = pixels.transpose(1, 0, 2)
        known_mask = self.masks.random(rng, flip=self.random_flip)
        return _structure_sample(pixels, known_mask, self.canny_sigma)


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """
    Yields the keys `epoch * num_samples + index` of an epoch in an order fixed by `(seed, epoch)`, so that the data
    of a run depend only on the seed. [`set_start`] skips the first samples of the next epoch (resuming mid-epoch).
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch the next iteration yields (also called by accelerate's dataloader)."""
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Makes the next iteration (only) begin at position `start` of the epoch's order."""
        self.start = start

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_SHUFFLE_STREAM, self.epoch)))
        order = rng.permutation(self.num_samples)[self.start :]
        self.start = 0
        return iter((order + self.epoch * self.num_samples).tolist())

    def __len__(self) -> int:
        return self.num_samples


def load_validation_batch(args: argparse.Namespace, masks: MaskSource) -> dict[str, torch.Tensor]:
    """
    The first `--num_validation_images` of `--validation_data_dir` (sorted by path), resized (short side =
    resolution) and centre-cropped, with fixed masks: a dict of stacked tensors like [`InpaintingDataset`]'s.
    """
    files = list_image_files(args.validation_data_dir, "--validation_data_dir")[: args.num_validation_images]
    samples = []
    for index, path in enumerate(files):
        image = _resize_short_side(load_image(path), args.resolution)
        pixels = np.asarray(image)
        top = (pixels.shape[0] - args.resolution) // 2
        left = (pixels.shape[1] - args.resolution) // 2
        pixels = pixels[top : top + args.resolution, left : left + args.resolution]
        samples.append(_structure_sample(pixels, masks.fixed(index), args.canny_sigma))
    return torch.utils.data.default_collate(samples)


def _derived_seed(seed: int, *spawn_key: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=spawn_key).generate_state(1, dtype=np.uint64)[0])


# ----------------------------------------------------------------------------------------------------------- losses


def matching_loss(
    pred: torch.Tensor, target: torch.Tensor, known_mask: torch.Tensor, hole_weight: float = HOLE_WEIGHT
) -> torch.Tensor:
    """
    The released `MatchingLoss` (L1): `mean_b( mean_chw |(p - q) M| + hole_weight * mean_chw |(p - q)(1 - M)| )`.

    The means run over all pixels and channels (not over the masked area only), so the known and hole terms weigh
    their pixels 1 and `hole_weight` (10) respectively.

    Args:
        pred (`torch.Tensor` of shape `(B, C, H, W)`): the reverse-SDE mean step of the network.
        target (`torch.Tensor` of shape `(B, C, H, W)`): the Eq.4 optimum x*_{t-1}.
        known_mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = known, 0 = hole.
    """
    error = (pred - target).abs()
    known = (error * known_mask).mean(dim=(1, 2, 3))
    hole = (error * (1 - known_mask)).mean(dim=(1, 2, 3))
    return (known + hole_weight * hole).mean()


def sample_timesteps(batch_size: int, num_train_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ UniformInt{2, ..., T} per sample, as released (t = 1 is never trained)."""
    return torch.randint(2, num_train_timesteps + 1, (batch_size,), generator=generator, device=generator.device)


def noisy_state(
    original_sample: torch.Tensor, mu: torch.Tensor, scheduler: MeanRevertingSDEScheduler, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The opening of every training loss: t ~ U{2..T} per sample (`sample_timesteps`) and x_t ~ the forward marginal
    (Eq.3) of `original_sample` around `mu`, in that order of draws from `generator`.

    Returns:
        `(timesteps, noisy)`: `(B,)` int64 times and the `(B, C, H, W)` states x_t.
    """
    timesteps = sample_timesteps(original_sample.shape[0], scheduler.config.num_train_timesteps, generator)
    noise = torch.randn(original_sample.shape, generator=generator, device=original_sample.device)
    return timesteps, scheduler.add_noise(original_sample, noise, timesteps, mu)


def denoising_loss(
    model_output: torch.Tensor,
    timesteps: torch.Tensor,
    noisy: torch.Tensor,
    original_sample: torch.Tensor,
    mu: torch.Tensor,
    known_mask: torch.Tensor,
    scheduler: MeanRevertingSDEScheduler,
) -> torch.Tensor:
    """
    The training loss of a structure or texture network, for the scheduler's `prediction_type`:

    * `"epsilon"` (released): [`matching_loss`] between the reverse-SDE mean step of the output and the Eq.4
      optimum x*_{t-1}(x_t, x_0). Its gradient on the noise is scaled by the small step coefficients.
    * `"sample"` / `"residual"`: [`matching_loss`] (L1, hole x10) between the x_0 estimate (unclipped) and x_0.

    Shapes `(B, C, H, W)`; `timesteps` `(B,)`; `known_mask` `(B, 1, H, W)` with 1 = known.
    """
    if scheduler.config.prediction_type == "epsilon":
        prediction = scheduler.reverse_sde_mean(model_output, timesteps, noisy, mu)
        target = scheduler.optimal_reverse_state(noisy, original_sample, timesteps, mu)
    else:
        prediction = scheduler.predict_original_sample(model_output, timesteps, noisy, mu)
        target = original_sample
    return matching_loss(prediction, target, known_mask)


def oracle_structure(
    gray: torch.Tensor,
    structure_mu: torch.Tensor,
    timesteps: torch.Tensor | int,
    scheduler: MeanRevertingSDEScheduler,
    generator: torch.Generator,
) -> torch.Tensor:
    """
    The structure guidance of the released texture and discriminator trainings: the Eq.4 optimum x*_{t-1} of a
    structure state x_t ~ marginal(gray, t) sampled at the same t with the ground-truth grayscale.

    Args:
        gray (`torch.Tensor` of shape `(B, 1, H, W)`): the ground-truth grayscale (structure x0).
        structure_mu (`torch.Tensor` of shape `(B, 1, H, W)`): the masked edges (structure mu).
        timesteps (`torch.Tensor` of shape `(B,)` or `int`): t in 2..T (1..T).
    """
    noise = torch.randn(gray.shape, generator=generator, device=gray.device)
    structure_state = scheduler.add_noise(gray, noise, timesteps, structure_mu)
    return scheduler.optimal_reverse_state(structure_state, gray, timesteps, structure_mu)


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1], shape `(B, C, H, W)` -> `(B,)`."""
    mse = (prediction.clamp(0, 1) - target).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse.clamp(min=1e-10))


# ----------------------------------------------------------------------------------------------------------- images


def to_pil(images: torch.Tensor) -> list[PIL.Image.Image]:
    """`(B, 1 or 3, H, W)` float tensors in [0, 1] -> RGB PIL images."""
    images = images.detach().float().clamp(0, 1).cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [PIL.Image.fromarray(pixel_block) for pixel_block in pixels]


def image_grid(columns: Sequence[torch.Tensor]) -> PIL.Image.Image:
    """A grid with one row per sample and one column per `(B, 1 or 3, H, W)` tensor of `columns`."""
    rows = list(zip(*(to_pil(column) for column in columns), strict=True))
    width, height = rows[0][0].size
    grid = PIL.Image.new("RGB", (width * len(columns), height * len(rows)))
    for row_index, row in enumerate(rows):
        for column_index, image in enumerate(row):
            grid.paste(image, (column_index * width, row_index * height))
    return grid


# ----------------------------------------------------------------------------------------------------------- loop


@dataclass
class ValidationResult:
    """What a validation returns: an optional image grid and scalar metrics."""

    grid: PIL.Image.Image | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingTask:
    """
    The network-specific part of a training script.

    Args:
        component_name: the network's folder in the output directory and in a pipeline (`"structure_unet"`, ...).
        build_model: builds the (fresh) network from the arguments.
        compute_loss: `(model, batch, scheduler, generator) -> loss` of one batch; every random draw must use
            `generator` (seeded per batch), so that a resumed run is identical to an uninterrupted one.
        validate: `(model, batch, scheduler, generator) -> ValidationResult` on the fixed validation batch, or
            `None` for no validation.
        description: one paragraph for the model card.
    """

    component_name: str
    build_model: Callable[[argparse.Namespace], ModelMixin]
    compute_loss: Callable[
        [torch.nn.Module, dict[str, torch.Tensor], MeanRevertingSDEScheduler, torch.Generator], torch.Tensor
    ]
    validate: (
        Callable[[ModelMixin, dict[str, torch.Tensor], MeanRevertingSDEScheduler, torch.Generator], ValidationResult]
        | None
    ) = None
    description: str = ""


@dataclass
class TrainingResult:
    """Summary of a finished [`train`] run (on the main process)."""

    output_dir: Path
    model_dir: Path
    first_step: int
    global_step: int
    final_loss: float | None
    validation_image: Path | None
    validation_metrics: dict[str, float]


class TrainingState:
    """The run's seed and global step, saved in every checkpoint (`accelerator.register_for_checkpointing`)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.global_step = 0

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "global_step": self.global_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.global_step = int(state["global_step"])


def _checkpoint_step(path: Path) -> int | None:
    match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoints `checkpoint-<step>` of `output_dir`, oldest first."""
    if not Path(output_dir).is_dir():
        return []
    found = [(step, path) for path in Path(output_dir).iterdir() if (step := _checkpoint_step(path)) is not None]
    return [path for _, path in sorted(found)]


def save_checkpoint(accelerator: Accelerator, output_dir: Path, global_step: int, total_limit: int | None) -> Path:
    """
    `accelerator.save_state` into `output_dir/checkpoint-<step>`, written to a temporary folder first and renamed,
    so that an interrupted save never leaves a checkpoint that "latest" would pick. Prunes the oldest checkpoints
    beyond `total_limit`.
    """
    if total_limit is not None:
        checkpoints = list_checkpoints(output_dir)
        for path in checkpoints[: max(0, len(checkpoints) - total_limit + 1)]:
            logger.info(f"Removing checkpoint {path} (--checkpoints_total_limit {total_limit}).")
            shutil.rmtree(path)
    final_path = output_dir / f"{CHECKPOINT_PREFIX}{global_step}"
    temporary_path = output_dir / f".{final_path.name}.partial"
    shutil.rmtree(temporary_path, ignore_errors=True)
    accelerator.save_state(str(temporary_path))
    shutil.rmtree(final_path, ignore_errors=True)
    os.replace(temporary_path, final_path)
    logger.info(f"Saved state to {final_path}")
    return final_path


def _tracker_config(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments as scalars (tensorboard's hparams), without the Hub token."""
    config = {}
    for name, value in vars(args).items():
        if name == "hub_token":
            continue
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        config[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return config


def _resolve_seed(accelerator: Accelerator, seed: int | None) -> int:
    """`seed`, or a random one drawn on the main process and shared with the others."""
    if seed is not None:
        return seed
    seeds = [random.SystemRandom().randrange(2**31)]
    broadcast_object_list(seeds)
    return int(seeds[0])


def create_hub_repo(args: argparse.Namespace) -> str:
    """Creates (or reuses) the Hub repository of `--push_to_hub`; returns its id. Raises [`HubUploadError`]."""
    repo_name = args.hub_model_id or Path(args.output_dir).resolve().name
    try:
        return create_repo(repo_name, exist_ok=True, token=args.hub_token).repo_id
    except Exception as error:  # network, auth and offline errors all end the run the same way
        raise HubUploadError(
            f"--push_to_hub: cannot create the Hub repository {repo_name!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'}). Check the network / HF_ENDPOINT / "
            "HF_HUB_OFFLINE and your token, or run without --push_to_hub."
        ) from error


def push_folder_to_hub(args: argparse.Namespace, repo_id: str, folder: Path) -> None:
    """Uploads the output folder (without checkpoints) to `repo_id`. Raises [`HubUploadError`]."""
    try:
        upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message="End of training",
            ignore_patterns=[f"{CHECKPOINT_PREFIX}*", ".*"],
            token=args.hub_token,
        )
    except Exception as error:  # network, auth and offline errors all end the run the same way
        raise HubUploadError(
            f"--push_to_hub: uploading {str(folder)!r} to {repo_id!r} failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'}). The trained files are saved locally; "
            f"upload them later with `hf upload {repo_id} {folder}`."
        ) from error


def write_model_card(
    output_dir: Path,
    title: str,
    description: str,
    usage: str,
    args: argparse.Namespace | None = None,
    results: dict[str, Any] | None = None,
    validation_image: Path | None = None,
) -> Path:
    """
    Writes `output_dir/README.md`: YAML front matter (`library_name: diffusers`, the StrDiffusion tags), a
    description, a usage snippet, the results, the validation grid and the training arguments.
    """
    card_data = ModelCardData(library_name="diffusers", license="apache-2.0", tags=MODEL_CARD_TAGS)
    sections = [f"---\n{card_data.to_yaml()}\n---\n", f"# {title}\n", description.strip() + "\n"]
    sections.append(f"## Usage\n\n```python\n{usage.strip()}\n```\n")
    if results:
        lines = "\n".join(
            f"| {name} | {value:.6g} |" if isinstance(value, float) else f"| {name} | {value} |"
            for name, value in results.items()
        )
        sections.append(f"## Results\n\n| metric | value |\n|---|---|\n{lines}\n")
    if validation_image is not None:
        relative = validation_image.relative_to(output_dir).as_posix()
        sections.append(f"## Validation\n\n![validation]({relative})\n")
    if args is not None:
        lines = "\n".join(f"| `{name}` | `{value}` |" for name, value in _tracker_config(args).items())
        sections.append(f"## Training arguments\n\n| argument | value |\n|---|---|\n{lines}\n")
    card_path = output_dir / "README.md"
    ModelCard("\n".join(sections)).save(card_path)
    return card_path


def configure_logging(accelerator: Accelerator) -> None:
    """diffusers-examples logging: INFO on the local main process, errors only elsewhere."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        diffusers.utils.logging.set_verbosity_info()
    else:
        datasets.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()


def train(args: argparse.Namespace, task: TrainingTask) -> TrainingResult | None:
    """
    Trains `task`'s network with the parsed `args`; see the module docstring. Returns the [`TrainingResult`] on the
    main process, `None` on the others.
    """
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
    )
    configure_logging(accelerator)
    repo_id = None
    if accelerator.is_main_process:
        if args.push_to_hub:
            repo_id = create_hub_repo(args)  # fails fast, before any training
        output_dir.mkdir(parents=True, exist_ok=True)

    state = TrainingState(_resolve_seed(accelerator, args.seed))
    set_seed(state.seed)
    noise_scheduler = build_noise_scheduler(args)
    model = task.build_model(args)
    model_cls = type(model)
    ema_model = (
        EMAModel(model.parameters(), decay=args.ema_decay, model_cls=model_cls, model_config=model.config)
        if args.use_ema
        else None
    )
    ema_subfolder = f"{task.component_name}_ema"

    def save_model_hook(models: list[torch.nn.Module], weights: list[dict[str, Any]], checkpoint_dir: str) -> None:
        if accelerator.is_main_process:
            if ema_model is not None:
                ema_model.save_pretrained(os.path.join(checkpoint_dir, ema_subfolder))
            for saved_model in models:
                accelerator.unwrap_model(saved_model).save_pretrained(
                    os.path.join(checkpoint_dir, task.component_name)
                )
                weights.pop()  # saved above, in the diffusers format

    def load_model_hook(models: list[torch.nn.Module], checkpoint_dir: str) -> None:
        if ema_model is not None:
            loaded_ema = EMAModel.from_pretrained(os.path.join(checkpoint_dir, ema_subfolder), model_cls)
            ema_model.load_state_dict(loaded_ema.state_dict())
            ema_model.to(accelerator.device)
            del loaded_ema
        for _ in range(len(models)):
            loaded_model = accelerator.unwrap_model(models.pop())
            saved = model_cls.from_pretrained(checkpoint_dir, subfolder=task.component_name)
            loaded_model.register_to_config(**saved.config)
            loaded_model.load_state_dict(saved.state_dict())
            del saved

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
    accelerator.register_for_checkpointing(state)

    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )

    with accelerator.main_process_first():
        images, image_column = load_training_images(args)
    masks = MaskSource(args.resolution, args.mask_buckets, args.mask_dir)
    train_dataset = InpaintingDataset(
        images,
        image_column,
        masks,
        args.resolution,
        seed=state.seed,
        crop=args.crop,
        resize=args.resize,
        random_flip=args.random_flip,
        canny_sigma=args.canny_sigma,
        max_crop_scale=args.max_crop_scale,
    )
    samples_per_step = args.train_batch_size * accelerator.num_processes
    if len(train_dataset) < samples_per_step:
        raise ArgumentValueError(
            f"The training set has {len(train_dataset)} image(s), fewer than one batch "
            f"(--train_batch_size {args.train_batch_size} x {accelerator.num_processes} process(es))."
        )
    sampler = EpochShuffleSampler(len(train_dataset), seed=state.seed)
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
    )

    num_update_steps_per_epoch = math.ceil(len(train_dataset) // samples_per_step / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_epochs * num_update_steps_per_epoch
    num_epochs = math.ceil(max_train_steps / num_update_steps_per_epoch)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler
    )
    if ema_model is not None:
        ema_model.to(accelerator.device)

    validation_batch = None
    if accelerator.is_main_process:
        if task.validate is not None and args.validation_data_dir is None:
            logger.info("No --validation_data_dir: validation is skipped.")
        elif task.validate is not None:
            validation_batch = load_validation_batch(args, masks)
            validation_batch = {name: tensor.to(accelerator.device) for name, tensor in validation_batch.items()}
        accelerator.init_trackers(f"strdiffusion-{task.component_name}", config=_tracker_config(args))

    global_step = first_step = 0
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            checkpoints = list_checkpoints(output_dir)
            checkpoint = checkpoints[-1] if checkpoints else None
        else:
            checkpoint = Path(args.resume_from_checkpoint)
        if checkpoint is None:
            logger.info(f"No checkpoint in {output_dir}: starting a new training run.")
        else:
            accelerator.load_state(str(checkpoint))
            global_step = first_step = state.global_step
            train_dataset.seed = sampler.seed = state.seed
            logger.info(f"Resumed from {checkpoint} at global step {global_step} (seed {state.seed}).")

    total_batch_size = samples_per_step * args.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Component = {task.component_name} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    logger.info(f"  Num examples = {len(train_dataset)}")
    logger.info(f"  Num epochs = {num_epochs}")
    logger.info(f"  Instantaneous batch size per device = {args.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
    logger.info(f"  Gradient accumulation steps = {args.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {max_train_steps}")

    noise_generator = torch.Generator(device=accelerator.device)
    validation_generator = torch.Generator(device=accelerator.device)
    recent_losses: deque[float] = deque(maxlen=100)
    validation_image, validation_metrics, validated_step = None, {}, None

    def run_validation() -> None:
        nonlocal validation_image, validation_metrics, validated_step
        unwrapped = accelerator.unwrap_model(model)
        if ema_model is not None:
            ema_model.store(unwrapped.parameters())
            ema_model.copy_to(unwrapped.parameters())
        unwrapped.eval()
        validation_generator.manual_seed(_derived_seed(VALIDATION_SEED, _VALIDATION_STREAM))
        with torch.no_grad():
            result = task.validate(unwrapped, validation_batch, noise_scheduler, validation_generator)
        unwrapped.train()
        if ema_model is not None:
            ema_model.restore(unwrapped.parameters())
        validation_metrics, validated_step = result.metrics, global_step
        report = output_dir / VALIDATION_SUBFOLDER / f"step_{global_step:06d}"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.with_suffix(".json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        if result.grid is not None:
            validation_image = report.with_suffix(".png")
            result.grid.save(validation_image)
            for tracker in accelerator.trackers:
                if tracker.name == "tensorboard":
                    tracker.writer.add_image("validation", np.asarray(result.grid), global_step, dataformats="HWC")
        accelerator.log({f"validation/{name}": value for name, value in result.metrics.items()}, step=global_step)
        summary = ", ".join(f"{name} {value:.4g}" for name, value in result.metrics.items())
        logger.info(f"Validation at step {global_step}: {summary}")

    progress_bar = tqdm(
        total=max_train_steps, initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    first_epoch = global_step // num_update_steps_per_epoch
    skipped_batches = global_step % num_update_steps_per_epoch * args.gradient_accumulation_steps
    train_loss = 0.0
    for epoch in range(first_epoch, num_epochs):
        if global_step >= max_train_steps:
            break
        model.train()
        train_dataloader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        first_batch = skipped_batches if epoch == first_epoch else 0
        sampler.set_start(first_batch * samples_per_step)
        for batch_index, batch in enumerate(train_dataloader, start=first_batch):
            with accelerator.accumulate(model):
                noise_generator.manual_seed(
                    _derived_seed(state.seed, _NOISE_STREAM, accelerator.process_index, epoch, batch_index)
                )
                loss = task.compute_loss(model, batch, noise_scheduler, noise_generator)
                gathered = accelerator.gather(loss.detach().repeat(args.train_batch_size)).mean()
                train_loss += gathered.item() / args.gradient_accumulation_steps
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)

            if accelerator.sync_gradients:
                if ema_model is not None:
                    ema_model.step(model.parameters())
                progress_bar.update(1)
                global_step += 1
                state.global_step = global_step
                recent_losses.append(train_loss)
                logs = {"train_loss": train_loss, "lr": lr_scheduler.get_last_lr()[0]}
                if ema_model is not None:
                    logs["ema_decay"] = ema_model.cur_decay_value
                accelerator.log(logs, step=global_step)
                progress_bar.set_postfix(loss=f"{train_loss:.4f}", lr=f"{logs['lr']:.2e}")
                train_loss = 0.0

                if accelerator.is_main_process:
                    if global_step % args.checkpointing_steps == 0:
                        save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
                    if validation_batch is not None and global_step % args.validation_steps == 0:
                        run_validation()
            if global_step >= max_train_steps:
                break
    progress_bar.close()

    accelerator.wait_for_everyone()
    result = None
    if accelerator.is_main_process:
        final_model = accelerator.unwrap_model(model)
        if ema_model is not None:
            ema_model.copy_to(final_model.parameters())
        model_dir = output_dir / task.component_name
        final_model.save_pretrained(model_dir, safe_serialization=True)
        noise_scheduler.save_pretrained(output_dir / SCHEDULER_SUBFOLDER)
        if validation_batch is not None and validated_step != global_step:
            run_validation()
        final_loss = float(np.mean(recent_losses)) if recent_losses else None
        results: dict[str, Any] = {"optimization steps": global_step}
        if final_loss is not None:
            results[f"final training loss (mean of the last {len(recent_losses)} steps)"] = final_loss
        results.update({f"validation {name}": value for name, value in validation_metrics.items()})
        write_model_card(
            output_dir,
            title=f"StrDiffusion {task.component_name}",
            description=task.description,
            usage=(
                f"from {'.'.join(model_cls.__module__.split('.')[:2])} import {model_cls.__name__}\n\n"
                f'model = {model_cls.__name__}.from_pretrained("{repo_id or output_dir}", '
                f'subfolder="{task.component_name}")'
            ),
            args=args,
            results=results,
            validation_image=validation_image,
        )
        (output_dir / TRAINING_ARGS_FILE).write_text(json.dumps(_tracker_config(args), indent=2) + "\n")
        logger.info(f"Saved {task.component_name} to {model_dir}")
        if repo_id is not None:
            push_folder_to_hub(args, repo_id, output_dir)
        result = TrainingResult(
            output_dir=output_dir,
            model_dir=model_dir,
            first_step=first_step,
            global_step=global_step,
            final_loss=final_loss,
            validation_image=validation_image,
            validation_metrics=validation_metrics,
        )
    accelerator.end_training()
    return result


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


def load_component(model_cls: type[ModelMixin], path: str, subfolder: str) -> ModelMixin:
    """
    Loads a trained network from a training output folder or a pipeline folder (`path/subfolder`), from the
    component folder itself (`path` holding `config.json`), or from a Hub repository (`subfolder` of it).
    """
    folder = Path(path)
    if (folder / subfolder / "config.json").is_file():
        return model_cls.from_pretrained(folder, subfolder=subfolder)
    if (folder / "config.json").is_file():
        return model_cls.from_pretrained(folder)
    if folder.exists():
        raise ArgumentValueError(f"{path!r} holds neither {subfolder}/config.json nor config.json.")
    return model_cls.from_pretrained(path, subfolder=subfolder)


def unet_config(model: torch.nn.Module) -> Any:
    """The config of a U-Net, possibly wrapped by accelerate for distributed training."""
    return getattr(model, "module", model).config


def mask_input(model: torch.nn.Module, known_mask: torch.Tensor) -> torch.Tensor | None:
    """`known_mask` for a U-Net built with `known_mask_channel=True`, `None` for one without mask input."""
    return known_mask if unet_config(model).known_mask_channel else None


def warm_start(model: ModelMixin, path: str, subfolder: str) -> ModelMixin:
    """
    Copies into `model` every parameter of the trained network at `path` (see [`load_component`]) that has the same
    name and shape; logs how many were copied and which of `model`'s were left as initialised.

    Raises:
        ArgumentValueError: when no parameter matches (a network of another family).
    """
    source = load_component(type(model), path, subfolder).state_dict()
    target = model.state_dict()
    matching = {name: value for name, value in source.items() if name in target and value.shape == target[name].shape}
    if not matching:
        raise ArgumentValueError(f"--init_weights {path!r}: no parameter matches the new {type(model).__name__}.")
    model.load_state_dict(matching, strict=False)
    fresh = sorted({".".join(name.split(".")[:3]) for name in target if name not in matching})
    logger.info(
        f"Warm start from {path}: {len(matching)} of {len(target)} tensors copied; fresh: {', '.join(fresh) or 'none'}."
    )
    return model


def find_scheduler_folder(path: str) -> Path | None:
    """
    The [`MeanRevertingSDEScheduler`] folder of a training output or pipeline folder (`path/scheduler`), of a
    component folder (`path/../scheduler`), or `path` itself; `None` when there is none.
    """
    folder = Path(path)
    for candidate in (folder / SCHEDULER_SUBFOLDER, folder.parent / SCHEDULER_SUBFOLDER, folder):
        config_file = candidate / MeanRevertingSDEScheduler.config_name
        if config_file.is_file() and json.loads(config_file.read_text()).get("_class_name") == (
            MeanRevertingSDEScheduler.__name__
        ):
            return candidate
    return None
