# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""What the StrDiffusion inpainting pipeline returns, and what its call prepares from the inputs."""

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


@dataclass
class StrDiffusionInpaintPipelineOutput(BaseOutput):
    """
    Output of [`StrDiffusionInpaintPipeline`].

    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`):
            The inpainted images in [0, 1] (uint8 for PIL), with the input's size; the known region equals the input.
        structures (`list[PIL.Image.Image]`, `np.ndarray`, `torch.Tensor` or `None`):
            The grayscale structure the structure network predicted for the hole (its x_0 estimate at the last
            structure step), composited with the grayscale of the known region; 1 channel, [0, 1]. `None` for a
            pipeline without structure network.
        nfe (`dict[str, int]`):
            Network evaluations of the call per network (`"structure"`, `"texture"`, `"discriminator"`) and `"total"`.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    structures: list[PIL.Image.Image] | np.ndarray | torch.Tensor | None
    nfe: dict[str, int] = field(default_factory=dict)


class SamplerConditions(NamedTuple):
    """What step 3 of the pipeline's `__call__` prepares from the image and the mask (on the execution device)."""

    image: torch.Tensor  # (B, 3, H, W) float32 input image, pasted back into the output's known region
    known_mask: torch.Tensor  # (B, 1, H, W) 1 = known pixel, in the pipeline's dtype
    gray: torch.Tensor  # (B, 1, H, W) float32 grayscale map of the image
    known_gray: torch.Tensor  # the grayscale map's known region (the structure's x_0 there), pipeline dtype
    structure_mu: torch.Tensor  # mean of the structure SDE (`structure_mean`), pipeline dtype
    texture_mu: torch.Tensor  # mean of the texture SDE: the known image with the hole filled by `mean_fill`
