# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""How saved pipeline folders and Hub repos find the installed pipeline class (the custom-pipeline stub)."""

from typing import Any

CUSTOM_PIPELINE_MODULE = "pipeline_strdiffusion"
CUSTOM_PIPELINE_SOURCE = '''"""Lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` find the installed class."""

from diffusers_strdiff import StrDiffusionInpaintPipeline

__all__ = ["StrDiffusionInpaintPipeline"]
'''


#: The `from_pretrained` arguments that concern downloading (passed on to `DiffusionPipeline.download`).
DOWNLOAD_OPTIONS = (
    "cache_dir",
    "force_download",
    "proxies",
    "local_files_only",
    "token",
    "revision",
    "variant",
    "use_safetensors",
)


def download_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of `from_pretrained`'s `kwargs` that [`DOWNLOAD_OPTIONS`] names."""
    return {name: kwargs[name] for name in DOWNLOAD_OPTIONS if name in kwargs}


def diffusers_dtype_argument() -> str:
    """`dtype` for diffusers versions that accept it (those that deprecate `torch_dtype`), else `torch_dtype`."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"
