"""StrDiffusion (CVPR 2024) structure-guided diffusion inpainting as a diffusers plugin."""

from pathlib import Path

from .callbacks import RESAMPLING_PRESETS, DiscriminatorGatedResampling
from .conversion import convert_official_checkpoint, convert_official_pipeline
from .evaluation import InpaintingMethod, build_eval_set, build_methods, evaluate, write_report
from .masks import HOLE_RATIO_BUCKETS, generate_irregular_mask, hole_ratio, load_mask, load_mask_files
from .models import SPADEResidualBlock, StrDiffusionDiscriminator, StrDiffusionUNet2DModel
from .pipelines import StrDiffusionInpaintPipeline, StrDiffusionInpaintPipelineOutput
from .schedulers import SAMPLER_PRESETS, MeanRevertingSDEScheduler, MeanRevertingSDESchedulerOutput
from .structure import edge_map, grayscale_map

__version__ = "0.1.0"

#: The pipeline folder installed with the package (trained on the offline photo set; see its README.md):
#: `StrDiffusionInpaintPipeline.from_pretrained(DEFAULT_CHECKPOINT)`.
DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "strdiffusion-photos-64"
#: Held-out photo + mask pairs installed with the package (`<name>.png` and `<name>_mask.png`, white = fill).
BUNDLED_EXAMPLES = Path(__file__).parent / "examples"

__all__ = [
    "BUNDLED_EXAMPLES",
    "DEFAULT_CHECKPOINT",
    "RESAMPLING_PRESETS",
    "SAMPLER_PRESETS",
    "DiscriminatorGatedResampling",
    "StrDiffusionInpaintPipeline",
    "StrDiffusionInpaintPipelineOutput",
    "convert_official_pipeline",
    "HOLE_RATIO_BUCKETS",
    "InpaintingMethod",
    "MeanRevertingSDEScheduler",
    "MeanRevertingSDESchedulerOutput",
    "SPADEResidualBlock",
    "StrDiffusionDiscriminator",
    "StrDiffusionUNet2DModel",
    "build_eval_set",
    "build_methods",
    "convert_official_checkpoint",
    "edge_map",
    "evaluate",
    "generate_irregular_mask",
    "grayscale_map",
    "hole_ratio",
    "load_mask",
    "load_mask_files",
    "write_report",
]
