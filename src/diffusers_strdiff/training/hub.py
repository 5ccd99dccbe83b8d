# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The Hub side of a run: repository creation, upload and the model card."""

import argparse
from pathlib import Path
from typing import Any

from accelerate.logging import get_logger
from huggingface_hub import ModelCard, ModelCardData, create_repo, upload_folder

from .arguments import HubUploadError
from .checkpointing import CHECKPOINT_PREFIX

logger = get_logger(__name__, log_level="INFO")


MODEL_CARD_TAGS: list[str] = ["inpainting", "strdiffusion", "diffusers", "mean-reverting-sde"]


def tracker_config(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments as scalars (tensorboard's hparams), without the Hub token."""
    config = {}
    for name, value in vars(args).items():
        if name == "hub_token":
            continue
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        config[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return config


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
        lines = "\n".join(f"| `{name}` | `{value}` |" for name, value in tracker_config(args).items())
        sections.append(f"## Training arguments\n\n| argument | value |\n|---|---|\n{lines}\n")
    card_path = output_dir / "README.md"
    ModelCard("\n".join(sections)).save(card_path)
    return card_path
