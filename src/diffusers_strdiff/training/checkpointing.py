# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Resumable checkpoints, and loading trained networks (warm starts, assembled pipelines)."""

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator
from accelerate.logging import get_logger
from diffusers import DiffusionPipeline
from diffusers.models.modeling_utils import ModelMixin

from ..schedulers import MeanRevertingSDEScheduler
from .arguments import ArgumentValueError

logger = get_logger(__name__, log_level="INFO")


SCHEDULER_SUBFOLDER = "scheduler"
TRAINING_ARGS_FILE = "training_args.json"
"""The arguments of a finished run (without the Hub token), next to its networks: `assemble_pipeline.py` reads the
pipeline settings (`mean_fill`, `structure_mean`, `texture_guidance`) from it (see [`recorded_training_arg`])."""
CHECKPOINT_PREFIX = "checkpoint-"
VALIDATION_SUBFOLDER = "validation"


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


def recorded_training_arg(path: str, name: str, default: str) -> str:
    """
    The value of argument `name` recorded in the `training_args.json` of the training output at `path` (the output
    folder or one of its component folders), or in the `model_index.json` of a pipeline folder (which records the
    pipeline-level settings, e.g. `structure_mean` and `mean_fill`); `default` for runs without either file or older
    than the argument.
    """
    for folder in (Path(path), Path(path).parent):
        if (folder / TRAINING_ARGS_FILE).is_file():
            return json.loads((folder / TRAINING_ARGS_FILE).read_text()).get(name, default)
        if (folder / DiffusionPipeline.config_name).is_file():
            return json.loads((folder / DiffusionPipeline.config_name).read_text()).get(name, default)
    return default


def recorded_structure_fill(path: str) -> str:
    """
    The fill of the `filled_gray` structure mean recorded by the training output or pipeline at `path`:
    `structure_fill` where it was recorded, else `mean_fill` (which filled both means before `--structure_fill`
    existed), else 'zeros'.
    """
    return recorded_training_arg(path, "structure_fill", None) or recorded_training_arg(path, "mean_fill", "zeros")
