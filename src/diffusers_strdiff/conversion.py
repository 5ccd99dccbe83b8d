# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Conversion of the released StrDiffusion checkpoints to [`StrDiffusionUNet2DModel`] / [`StrDiffusionDiscriminator`].

The released checkpoints are plain state dicts of the authors' modules (`ConditionalUNet` texture net with SPADE
blocks, `ConditionalUNets` structure net, `Discriminator`), optionally saved from `DataParallel` (`module.` prefix).
Every configuration value is inferred from the key names and tensor shapes, the keys are renamed with a few regex
rules and the weights are loaded strictly: a missing, unexpected or mis-shaped tensor raises a `ValueError`.
"""

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .models import StrDiffusionDiscriminator, StrDiffusionUNet2DModel
from .pipelines import StrDiffusionInpaintPipeline
from .schedulers import MeanRevertingSDEScheduler

# released constants that the key shapes cannot tell apart
RELEASED_ATTENTION_HEADS = 4
RELEASED_STRUCTURE_CHANNELS = 1

KeyRule = tuple[str, str | Callable[[re.Match[str]], str]]

# Applied in order with `re.sub` to every released key.
UNET_KEY_RULES: tuple[KeyRule, ...] = (
    (r"^init_conv\.", "conv_in."),
    (r"^time_mlp\.1\.", "time_embedding.linear_1."),
    (r"^time_mlp\.3\.", "time_embedding.linear_2."),
    (r"^downs\.(\d+)\.([01])\.", r"down_blocks.\1.resnets.\2."),
    (r"^downs\.(\d+)\.2\.", r"down_blocks.\1.attention."),
    (r"^downs\.(\d+)\.3\.", r"down_blocks.\1.downsample."),
    (r"^downs\.(\d+)\.4\.", r"down_blocks.\1.spade."),
    (r"^mid_block1\.", "mid_block.resnets.0."),
    (r"^mid_attn\.", "mid_block.attention."),
    (r"^mid_block2\.", "mid_block.resnets.1."),
    (r"^ups\.(\d+)\.([01])\.", r"up_blocks.\1.resnets.\2."),
    (r"^ups\.(\d+)\.2\.", r"up_blocks.\1.attention."),
    (r"^ups\.(\d+)\.3\.(1\.)?", r"up_blocks.\1.upsample."),  # `3.1.` after nn.Upsample, `3.` at the outermost level
    (r"^final_res_block\.", "final_resnet."),
    (r"^final_conv\.", "conv_out."),
    # residual blocks
    (r"\.mlp\.1\.", ".time_emb_proj."),
    (r"\.block([12])\.proj\.", r".conv\1."),
    (r"\.res_conv\.", ".conv_shortcut."),
    # Residual(PreNorm(LinearAttention))
    (r"\.fn\.norm\.g$", ".norm.weight"),
    (r"\.fn\.fn\.to_qkv\.", ".to_qkv."),
    (r"\.fn\.fn\.to_out\.0\.", ".to_out."),
    (r"\.fn\.fn\.to_out\.1\.g$", ".norm_out.weight"),
    # SPADE blocks (spectral norm: `nn.utils.spectral_norm` -> `nn.utils.parametrizations.spectral_norm`)
    (r"\.weight_orig$", ".parametrizations.weight.original"),
    (r"\.weight_u$", ".parametrizations.weight.0._u"),
    (r"\.weight_v$", ".parametrizations.weight.0._v"),
    (r"\.mlp_shared\.0\.", ".shared_conv."),
    (r"\.mlp_gamma\.", ".gamma_conv."),
    (r"\.mlp_beta\.", ".beta_conv."),
)

DISCRIMINATOR_KEY_RULES: tuple[KeyRule, ...] = (
    (r"^t_embed\.main\.0\.", "time_embedding.linear_1."),
    (r"^t_embed\.main\.2\.", "time_embedding.linear_2."),
    (r"^start_conv\.", "conv_in."),
    (r"^conv([1-4])\.", lambda match: f"down_blocks.{int(match[1]) - 1}."),
    (r"\.conv([12])\.0\.", r".conv\1."),
    (r"\.dense_t1\.", ".time_emb_proj."),
    (r"\.skip\.0\.", ".conv_shortcut."),
    (r"^final_conv\.", "conv_out."),
    (r"^end_linear\.", "proj_out."),
)


def _read_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any]) -> tuple[Mapping[str, Any], str, bool]:
    """Returns the raw checkpoint object, a description of its source and whether it was read from a file."""
    if not isinstance(checkpoint, str | os.PathLike):
        return checkpoint, "the given state dict", False
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            loaded = load_file(path)
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"Could not read the checkpoint file {path}: {error}") from error
    return loaded, str(path), True


def _as_state_dict(loaded: Any, source: str) -> dict[str, torch.Tensor]:
    """Unwraps a `{"state_dict": ...}` / `{"params": ...}` wrapper and strips `DataParallel`'s `module.` prefix."""
    if isinstance(loaded, Mapping):
        for wrapper_key in ("state_dict", "params"):
            if isinstance(loaded.get(wrapper_key), Mapping):
                loaded = loaded[wrapper_key]
                break
    if not isinstance(loaded, Mapping) or not all(torch.is_tensor(value) for value in loaded.values()):
        raise ValueError(f"{source} is not a state dict (a mapping of parameter names to tensors).")
    state_dict = {key.removeprefix("module."): value for key, value in loaded.items()}
    if len(state_dict) != len(loaded):
        raise ValueError(f"{source} holds keys both with and without the `module.` prefix.")
    return state_dict


def _shape(state_dict: dict[str, torch.Tensor], key: str, source: str) -> torch.Size:
    if key not in state_dict:
        raise ValueError(f"{source} has no `{key}`, which is needed to infer the network configuration.")
    return state_dict[key].shape


def _unet_config(state_dict: dict[str, torch.Tensor], source: str) -> dict[str, int]:
    """Infers the [`StrDiffusionUNet2DModel`] configuration of a released `ConditionalUNet(s)` state dict."""
    base_channels, input_channels = _shape(state_dict, "init_conv.weight", source)[:2]
    levels = {int(match[1]) for key in state_dict if (match := re.match(r"downs\.(\d+)\.", key))}
    qkv_channels = _shape(state_dict, "downs.0.2.fn.fn.to_qkv.weight", source)[0]
    if input_channels % 2 or qkv_channels % (3 * RELEASED_ATTENTION_HEADS):
        raise ValueError(
            f"{source}: unexpected shapes for a StrDiffusion U-Net: `init_conv.weight` must have an even number of "
            f"input channels and `to_qkv` a multiple of {3 * RELEASED_ATTENTION_HEADS} output channels."
        )
    config = {
        "in_channels": input_channels // 2,
        "out_channels": _shape(state_dict, "final_conv.weight", source)[0],
        "base_channels": base_channels,
        "depth": len(levels),
        "guidance_channels": 0,
        "attention_heads": RELEASED_ATTENTION_HEADS,
        "attention_head_dim": qkv_channels // (3 * RELEASED_ATTENTION_HEADS),
    }
    if any(re.match(r"downs\.\d+\.4\.", key) for key in state_dict):
        shared_conv_shape = _shape(state_dict, "downs.0.4.norm_0.mlp_shared.0.weight", source)
        config.update(guidance_channels=shared_conv_shape[1], spade_hidden_channels=shared_conv_shape[0])
    return config


def _discriminator_config(state_dict: dict[str, torch.Tensor], source: str) -> dict[str, int]:
    """Infers the [`StrDiffusionDiscriminator`] configuration of a released `Discriminator` state dict."""
    start_channels, input_channels = _shape(state_dict, "start_conv.weight", source)[:2]
    if start_channels % 2 or input_channels <= RELEASED_STRUCTURE_CHANNELS:
        raise ValueError(f"{source}: unexpected shape of `start_conv.weight` for a StrDiffusion discriminator.")
    return {
        "in_channels": input_channels - RELEASED_STRUCTURE_CHANNELS,
        "structure_channels": RELEASED_STRUCTURE_CHANNELS,
        "base_channels": start_channels // 2,
        "time_embedding_dim": _shape(state_dict, "t_embed.main.0.weight", source)[1],
    }


def _rename(key: str, rules: tuple[KeyRule, ...]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def _load_strictly(
    model: StrDiffusionUNet2DModel | StrDiffusionDiscriminator,
    state_dict: dict[str, torch.Tensor],
    rules: tuple[KeyRule, ...],
    source: str,
    copy: bool,
) -> None:
    """Renames the released keys and assigns the tensors to the (meta-device) `model`, or raises a `ValueError`."""
    expected = model.state_dict()
    renamed = {_rename(key, rules): key for key in state_dict}
    unexpected = sorted(key for new_key, key in renamed.items() if new_key not in expected)
    missing = sorted(expected.keys() - renamed.keys())
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match the inferred {type(model).__name__}({dict(model.config)}): "
            f"missing (converted names): {missing or 'none'}; unexpected (released names): {unexpected or 'none'}."
        )
    mismatched = [
        f"{key}: {tuple(state_dict[key].shape)} vs {tuple(expected[new_key].shape)}"
        for new_key, key in renamed.items()
        if state_dict[key].shape != expected[new_key].shape
    ]
    if mismatched:
        raise ValueError(
            f"{source} does not match the inferred {type(model).__name__}({dict(model.config)}): shape mismatches "
            f"(released vs expected): {mismatched}."
        )
    converted = {
        new_key: state_dict[key].to(dtype=expected[new_key].dtype, copy=copy).contiguous()
        for new_key, key in renamed.items()
    }
    model.load_state_dict(converted, strict=True, assign=True)


def convert_official_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any],
) -> StrDiffusionUNet2DModel | StrDiffusionDiscriminator:
    """
    Converts one released StrDiffusion network (texture net, structure net or discriminator) to a diffusers model.

    The network and its whole configuration are inferred from the keys and shapes: `start_conv.weight` marks the
    discriminator (ngf, input channels and time-embedding width from `start_conv` / `t_embed`), `init_conv.weight`
    a U-Net (nf, channels, depth = number of `downs.i`, attention head width from `to_qkv` with the released 4 heads);
    `downs.i.4.*` SPADE keys make it the guided texture net. Spectral-norm tensors (`weight_orig`, `weight_u`,
    `weight_v`) are kept as PyTorch spectral-norm parametrizations.

    Args:
        checkpoint (`str`, `os.PathLike` or `Mapping[str, torch.Tensor]`):
            A `.pth`/`.pt` file (read with `torch.load(..., weights_only=True)`), a `.safetensors` file, or an
            in-memory state dict, with the released key names, optionally `module.`-prefixed or wrapped in a dict
            under `state_dict` / `params`.

    Returns:
        [`StrDiffusionUNet2DModel`] or [`StrDiffusionDiscriminator`] in eval mode, float32, on the CPU.

    Raises:
        `FileNotFoundError`: the file does not exist.
        `ValueError`: the file cannot be read, or it is not a released StrDiffusion network (unknown layout, missing,
            unexpected or mis-shaped tensors).
    """
    loaded, source, from_file = _read_checkpoint(checkpoint)
    state_dict = _as_state_dict(loaded, source)
    if "start_conv.weight" in state_dict:
        model_class, config, rules = (
            StrDiffusionDiscriminator,
            _discriminator_config(state_dict, source),
            DISCRIMINATOR_KEY_RULES,
        )
    elif "init_conv.weight" in state_dict:
        model_class, config, rules = StrDiffusionUNet2DModel, _unet_config(state_dict, source), UNET_KEY_RULES
    else:
        raise ValueError(
            f"{source} is not a released StrDiffusion network: it has neither `init_conv.weight` (U-Net) nor "
            f"`start_conv.weight` (discriminator); its first keys are {sorted(state_dict)[:5]}."
        )
    with torch.device("meta"):
        model = model_class(**config)
    _load_strictly(model, state_dict, rules, source, copy=not from_file)
    return model.eval()


def convert_official_pipeline(
    structure: str | os.PathLike | Mapping[str, Any],
    texture: str | os.PathLike | Mapping[str, Any],
    discriminator: str | os.PathLike | Mapping[str, Any] | None = None,
    num_train_timesteps: int = 100,
    **scheduler_config: Any,
) -> StrDiffusionInpaintPipeline:
    """
    Converts the released structure net, texture net and (optionally) discriminator into one
    [`StrDiffusionInpaintPipeline`], ready for `save_pretrained`.

    The networks are converted with [`convert_official_checkpoint`]; the SDE is not stored in the released weights, so
    its T (`num_train_timesteps`, released: 100 for the PSV checkpoint, 400 for Places2) and any other
    [`MeanRevertingSDEScheduler`] option (e.g. `max_sigma`, `schedule`) are arguments.

    Raises:
        `FileNotFoundError`: a file does not exist.
        `ValueError`: a file is not the network its argument names (e.g. a discriminator passed as `texture`).
    """
    expected = (
        ("structure", structure, StrDiffusionUNet2DModel, 0),
        ("texture", texture, StrDiffusionUNet2DModel, RELEASED_STRUCTURE_CHANNELS),
        ("discriminator", discriminator, StrDiffusionDiscriminator, None),
    )
    models: dict[str, StrDiffusionUNet2DModel | StrDiffusionDiscriminator | None] = {}
    for name, checkpoint, model_class, guidance_channels in expected:
        if checkpoint is None:
            models[name] = None
            continue
        model = convert_official_checkpoint(checkpoint)
        if not isinstance(model, model_class) or (
            guidance_channels is not None and model.config.guidance_channels != guidance_channels
        ):
            kind = "structure net (no SPADE)" if guidance_channels == 0 else "texture net (SPADE)"
            kind = "discriminator" if guidance_channels is None else kind
            raise ValueError(f"`{name}` must be the released {kind} checkpoint; it holds a {type(model).__name__}.")
        models[name] = model
    return StrDiffusionInpaintPipeline(
        structure_unet=models["structure"],
        texture_unet=models["texture"],
        discriminator=models["discriminator"],
        scheduler=MeanRevertingSDEScheduler(num_train_timesteps=num_train_timesteps, **scheduler_config),
    )
