"""
StrDiffusion (CVPR 2024) structure-guided diffusion inpainting as a diffusers plugin.

The package root is the inference API (models, scheduler, pipeline, resampling callback, loading, masks, structure
maps, conversion of released checkpoints). The evaluation harness (`diffusers_strdiff.evaluation`) and the training
code (`diffusers_strdiff.training`) are imported on their own, so that `import diffusers_strdiff` stays light.
"""

from pathlib import Path

from .callbacks import RESAMPLING_PRESETS, DiscriminatorGatedResampling
from .conversion import convert_official_checkpoint, convert_official_pipeline
from .masks import HOLE_RATIO_BUCKETS, generate_irregular_mask, hole_ratio, load_mask, load_mask_files
from .models import SPADEResidualBlock, StrDiffusionDiscriminator, StrDiffusionUNet2DModel
from .models.workspace import release_scratch_memory
from .pipelines import (
    DEFAULT_CHECKPOINT,
    StrDiffusionInpaintPipeline,
    StrDiffusionInpaintPipelineOutput,
    inference_threads,
    load_pipeline,
    reuse_freed_memory,
    use_sampler,
)
from .schedulers import SAMPLER_PRESETS, MeanRevertingSDEScheduler, MeanRevertingSDESchedulerOutput
from .structure import edge_map, grayscale_map

__version__ = "0.1.0"

#: Held-out photo + mask pairs installed with the package (`<name>.png` and `<name>_mask.png`, white = fill).
BUNDLED_EXAMPLES = Path(__file__).parent / "examples"

__all__ = [
    "BUNDLED_EXAMPLES",
    "DEFAULT_CHECKPOINT",
    "HOLE_RATIO_BUCKETS",
    "RESAMPLING_PRESETS",
    "SAMPLER_PRESETS",
    "DiscriminatorGatedResampling",
    "MeanRevertingSDEScheduler",
    "MeanRevertingSDESchedulerOutput",
    "SPADEResidualBlock",
    "StrDiffusionDiscriminator",
    "StrDiffusionInpaintPipeline",
    "StrDiffusionInpaintPipelineOutput",
    "StrDiffusionUNet2DModel",
    "convert_official_checkpoint",
    "convert_official_pipeline",
    "edge_map",
    "generate_irregular_mask",
    "grayscale_map",
    "hole_ratio",
    "inference_threads",
    "load_mask",
    "load_mask_files",
    "load_pipeline",
    "release_scratch_memory",
    "reuse_freed_memory",
    "use_sampler",
]
