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
* An optional adversarial term ([`CriticTask`], `adversarial`): a critic trained alongside the network, whose GAN
  loss on the network's x_0 estimates is weighted against the reconstruction loss by [`adaptive_weight`].

Modules: `arguments` (the command line and its errors), `data` (images, crops, masks, the seeded sampler), `losses`,
`adversarial`, `checkpointing` (resumable states, loading trained networks), `hub` (repository, upload, model card) and `loop`
([`train`]: [`setup_run`], [`resume`], [`train_epoch`], [`finalize`]). Seeds of the random streams come from
[`~diffusers_strdiff.utils.derived_seed`]. This package needs the `train` extra (`datasets`, `tensorboard`).
"""

from .adversarial import (
    CRITIC_MIN_TIMESTEP_FRACTION,
    CriticInputs,
    CriticTask,
    GeneratorLoss,
    adaptive_weight,
    add_adversarial_arguments,
    check_adversarial_arguments,
    critic_loss,
    critic_sample_weight,
    generator_adversarial_loss,
)
from .arguments import (
    ArgumentPathError,
    ArgumentValueError,
    HubUploadError,
    add_init_weights_argument,
    add_unet_arguments,
    build_noise_scheduler,
    check_init_weights,
    check_unet_arguments,
    parse_args,
    run_script,
)
from .checkpointing import (
    CHECKPOINT_PREFIX,
    SCHEDULER_SUBFOLDER,
    TRAINING_ARGS_FILE,
    VALIDATION_SUBFOLDER,
    TrainingState,
    find_scheduler_folder,
    list_checkpoints,
    load_component,
    recorded_structure_fill,
    recorded_training_arg,
    save_checkpoint,
    warm_start,
)
from .data import (
    SCALED_IMAGE_CACHE_SIZE,
    VALIDATION_SEED,
    EpochShuffleSampler,
    InpaintingDataset,
    MaskSource,
    image_grid,
    list_image_files,
    load_training_images,
    load_validation_batch,
    to_pil,
)
from .hub import (
    MODEL_CARD_TAGS,
    create_hub_repo,
    push_folder_to_hub,
    tracker_config,
    write_model_card,
)
from .loop import (
    TrainingResult,
    TrainingRun,
    TrainingTask,
    ValidationResult,
    configure_logging,
    finalize,
    resume,
    run_validation,
    setup_run,
    train,
    train_epoch,
)
from .losses import (
    HOLE_WEIGHT,
    denoising_loss,
    estimated_structure,
    mask_input,
    matching_loss,
    noisy_state,
    oracle_structure,
    sample_timesteps,
    unet_config,
)

__all__ = [
    "CRITIC_MIN_TIMESTEP_FRACTION",
    "CriticInputs",
    "CriticTask",
    "GeneratorLoss",
    "adaptive_weight",
    "add_adversarial_arguments",
    "check_adversarial_arguments",
    "critic_loss",
    "critic_sample_weight",
    "generator_adversarial_loss",
    "ArgumentPathError",
    "ArgumentValueError",
    "CHECKPOINT_PREFIX",
    "EpochShuffleSampler",
    "HOLE_WEIGHT",
    "HubUploadError",
    "InpaintingDataset",
    "MODEL_CARD_TAGS",
    "MaskSource",
    "SCALED_IMAGE_CACHE_SIZE",
    "SCHEDULER_SUBFOLDER",
    "TRAINING_ARGS_FILE",
    "TrainingResult",
    "TrainingRun",
    "TrainingState",
    "TrainingTask",
    "VALIDATION_SEED",
    "VALIDATION_SUBFOLDER",
    "ValidationResult",
    "add_init_weights_argument",
    "add_unet_arguments",
    "build_noise_scheduler",
    "check_init_weights",
    "check_unet_arguments",
    "configure_logging",
    "create_hub_repo",
    "denoising_loss",
    "estimated_structure",
    "finalize",
    "find_scheduler_folder",
    "image_grid",
    "list_checkpoints",
    "list_image_files",
    "load_component",
    "load_training_images",
    "load_validation_batch",
    "mask_input",
    "matching_loss",
    "noisy_state",
    "oracle_structure",
    "parse_args",
    "push_folder_to_hub",
    "resume",
    "run_script",
    "run_validation",
    "sample_timesteps",
    "recorded_structure_fill",
    "recorded_training_arg",
    "save_checkpoint",
    "setup_run",
    "to_pil",
    "tracker_config",
    "train",
    "train_epoch",
    "unet_config",
    "warm_start",
    "write_model_card",
]
