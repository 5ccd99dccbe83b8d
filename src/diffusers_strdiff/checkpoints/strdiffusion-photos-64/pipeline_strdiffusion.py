"""Lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` find the installed class."""

from diffusers_strdiff import StrDiffusionInpaintPipeline

__all__ = ["StrDiffusionInpaintPipeline"]
