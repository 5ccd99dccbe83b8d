# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""How saved pipeline folders and Hub repos find the installed pipeline class (the custom-pipeline stub)."""

from pathlib import Path
from typing import Any

CUSTOM_PIPELINE_MODULE = "pipeline_strdiffusion"
CUSTOM_PIPELINE_SOURCE = '''"""Lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` find the installed class."""

from diffusers_strdiff import StrDiffusionInpaintPipeline

__all__ = ["StrDiffusionInpaintPipeline"]
'''


def hub_stub_path(repo_id: str, kwargs: dict[str, Any]) -> Path | None:
    """The `pipeline_strdiffusion.py` stub of a Hub repo (downloaded or from the cache), `None` if it has none."""
    from huggingface_hub import hf_hub_download

    options = ("cache_dir", "revision", "token", "local_files_only", "proxies")
    try:
        path = hf_hub_download(
            repo_id, f"{CUSTOM_PIPELINE_MODULE}.py", **{name: kwargs[name] for name in options if name in kwargs}
        )
    except Exception:  # no such file, repo or cache entry: diffusers reports a missing repo in its own words
        return None
    return Path(path)


def diffusers_dtype_argument() -> str:
    """`dtype` for diffusers versions that accept it (those that deprecate `torch_dtype`), else `torch_dtype`."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"
