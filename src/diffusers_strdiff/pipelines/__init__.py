from .loading import DEFAULT_CHECKPOINT, inference_threads, load_pipeline, reuse_freed_memory, use_sampler
from .pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline, StrDiffusionInpaintPipelineOutput

__all__ = [
    "DEFAULT_CHECKPOINT",
    "StrDiffusionInpaintPipeline",
    "StrDiffusionInpaintPipelineOutput",
    "inference_threads",
    "load_pipeline",
    "reuse_freed_memory",
    "use_sampler",
]
