#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Assembles a self-sufficient Hugging Face Space folder (default `build/space`, git-ignored), ready to upload.

A Space cannot `pip install` this repository, so the folder gets the Space files of `spaces/strdiffusion/`
(`README.md` with the Space header, `app.py`, `requirements.txt` with the package's dependencies) and, next to them, a
copy of the package source `src/diffusers_strdiff` with its bundled checkpoint and examples, which `app.py` imports.
See `spaces/strdiffusion/README.md`.

    python scripts/build_space.py
    hf upload <user>/strdiffusion build/space . --repo-type space
"""

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "diffusers_strdiff"
SPACE = REPO / "spaces" / "strdiffusion"
SPACE_FILES = ("README.md", "app.py", "requirements.txt")
DEFAULT_OUTPUT_DIR = REPO / "build" / "space"
CHECKPOINT = Path("checkpoints") / "strdiffusion-photos-64"


def build_space(output_dir: Path, allow_missing_checkpoint: bool = False) -> Path:
    """
    Copies the Space files of `spaces/strdiffusion` into `output_dir`, and the package (without caches) into
    `output_dir / "diffusers_strdiff"`, replacing an earlier copy. Returns the package copy's folder. Raises
    `FileNotFoundError` when the bundled checkpoint is missing, unless `allow_missing_checkpoint`.
    """
    if not (PACKAGE / CHECKPOINT / "model_index.json").is_file() and not allow_missing_checkpoint:
        raise FileNotFoundError(
            f"the bundled checkpoint {PACKAGE / CHECKPOINT} is missing: the Space would not start "
            "(train it with scripts/train_default_checkpoint.sh, or pass --allow_missing_checkpoint)"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in SPACE_FILES:
        shutil.copy2(SPACE / name, output_dir / name)
    target = output_dir / PACKAGE.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def main() -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output_dir", type=Path, default=DEFAULT_OUTPUT_DIR, help="Space folder to write (default: build/space)."
    )
    parser.add_argument(
        "--allow_missing_checkpoint", action="store_true", help="Copy even without the bundled checkpoint."
    )
    args = parser.parse_args()
    try:
        target = build_space(args.output_dir, args.allow_missing_checkpoint)
    except FileNotFoundError as error:
        print(f"build_space: error: {error}", file=sys.stderr)
        return 2
    print(f"copied {PACKAGE} to {target}")
    print(f"upload with: hf upload <user>/strdiffusion {args.output_dir} . --repo-type space")
    return 0


if __name__ == "__main__":
    sys.exit(main())
