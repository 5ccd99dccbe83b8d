# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""When a module may take an inference-only path (in-place updates, `out=` kernels) instead of its plain one."""

import torch
from torch import nn


def records_for_autograd(module: nn.Module, *inputs: torch.Tensor) -> bool:
    """
    Whether a call of `module` on `inputs` must stay differentiable: in training mode, or with gradients enabled
    while a parameter of `module` or one of `inputs` requires them. Only calls for which this is `False` may take an
    inference-only path.
    """
    if module.training:
        return True
    if not torch.is_grad_enabled():
        return False
    return any(parameter.requires_grad for parameter in module.parameters()) or any(
        tensor.requires_grad for tensor in inputs
    )
