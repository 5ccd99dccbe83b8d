from .loading import DEFAULT_CHECKPOINT, inference_threads, load_pipeline, use_sampler
from .pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline, StrDiffusionInpaintPipelineOutput

__all__ = [
    "DEFAULT_CHECKPOINT",
    "StrDiffusionInpaintPipeline",
    "StrDiffusionInpaintPipelineOutput",
    "inference_threads",
    "load_pipeline",
    "use_sampler",
]
