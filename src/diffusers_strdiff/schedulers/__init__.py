from .scheduling_mean_reverting_sde import SAMPLER_PRESETS, MeanRevertingSDEScheduler, MeanRevertingSDESchedulerOutput

__all__ = ["SAMPLER_PRESETS", "MeanRevertingSDEScheduler", "MeanRevertingSDESchedulerOutput"]
