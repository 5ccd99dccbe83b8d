from .scheduling_mean_reverting_sde import MeanRevertingSDEScheduler, MeanRevertingSDESchedulerOutput

__all__ = ["MeanRevertingSDEScheduler", "MeanRevertingSDESchedulerOutput"]
