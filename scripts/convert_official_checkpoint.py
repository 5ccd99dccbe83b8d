#!/usr/bin/env python
# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Converts released StrDiffusion checkpoints to diffusers folders (safetensors); same as `strdiff convert`.

    # one network -> a StrDiffusionUNet2DModel / StrDiffusionDiscriminator folder
    python scripts/convert_official_checkpoint.py --checkpoint texture.pth --output_dir strdiffusion-texture
    # the three released files -> a StrDiffusionInpaintPipeline folder
    python scripts/convert_official_checkpoint.py --structure structure.pth --texture texture.pth \
        --discriminator discriminator.pth --num_train_timesteps 100 --output_dir strdiffusion-psv

Every network configuration is inferred from the checkpoint's keys and shapes and printed.
"""

import sys

from diffusers_strdiff.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
