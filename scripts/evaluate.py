#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Evaluates inpainting methods (classical baselines and StrDiffusion pipelines) on a fixed masked photo set.

    python scripts/evaluate.py --image_dir data/photos/eval --checkpoint DIR [--no_structure_checkpoint DIR]
        --resolution 128 --max_images 20 --output_dir outputs/eval
    accelerate launch --multi_gpu scripts/evaluate.py ...   # shards the samples over the processes
    torchrun --nproc_per_node 2 scripts/evaluate.py ...      # the same on a CPU-only machine

Writes report.md, metrics.json, metrics.png and qualitative.png to --output_dir; method outputs are cached under
--cache_dir (default <output_dir>/cache), so a rerun computes only what changed. The logic lives in
`diffusers_strdiff.evaluation`; see `--help` for every option.
"""

import sys
from collections.abc import Sequence

from diffusers_strdiff.evaluation import main as evaluation_main


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation with command-line arguments `argv` (default: `sys.argv[1:]`); returns the exit code."""
    return evaluation_main(argv)


if __name__ == "__main__":
    sys.exit(main())
