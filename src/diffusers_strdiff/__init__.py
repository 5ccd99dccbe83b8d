"""StrDiffusion (CVPR 2024) structure-guided diffusion inpainting as a diffusers plugin."""

from .masks import HOLE_RATIO_BUCKETS, generate_irregular_mask, hole_ratio, load_mask, load_mask_files
from .schedulers import MeanRevertingSDEScheduler, MeanRevertingSDESchedulerOutput
from .structure import edge_map, grayscale_map

__version__ = "0.1.0"

__all__ = [
    "HOLE_RATIO_BUCKETS",
    "MeanRevertingSDEScheduler",
    "MeanRevertingSDESchedulerOutput",
    "edge_map",
    "generate_irregular_mask",
    "grayscale_map",
    "hole_ratio",
    "load_mask",
    "load_mask_files",
]
