"""StrDiffusion (CVPR 2024) structure-guided diffusion inpainting as a diffusers plugin."""

from .schedulers import MeanRevertingSDEScheduler, MeanRevertingSDESchedulerOutput
from .structure import edge_map, grayscale_map

__version__ = "0.1.0"

__all__ = [
    "MeanRevertingSDEScheduler",
    "MeanRevertingSDESchedulerOutput",
    "edge_map",
    "grayscale_map",
]
