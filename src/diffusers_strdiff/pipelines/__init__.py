from .pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline, StrDiffusionInpaintPipelineOutput

__all__ = ["StrDiffusionInpaintPipeline", "StrDiffusionInpaintPipelineOutput"]
