# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
Gradio app: paint a mask over a photo and inpaint it with StrDiffusion.

`build_demo()` returns the `gr.Blocks` app, `inpaint()` is its inference function (callable directly), and `launch()`
serves it (`strdiff app`, `python app.py`, or a Hugging Face Space, see `spaces/strdiffusion/README.md`).
"""

import functools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from . import BUNDLED_EXAMPLES
from .callbacks import DiscriminatorGatedResampling
from .image_io import (
    DEFAULT_MAX_SIDE,
    MAX_IMAGE_PIXELS,
    convert_image,
    downscale_for_inpainting,
    open_image,
    paste_fill,
)
from .pipelines import StrDiffusionInpaintPipeline, load_pipeline

#: Reverse steps the few-step (posterior) sampler starts with for a checkpoint that names none
#: (`default_num_inference_steps` in its `model_index.json`; see [`default_few_steps`]).
FALLBACK_FEW_STEPS = 5
#: (label, value) choices of the sampler control; the values are samplers of `diffusers_strdiff.load_pipeline`.
SAMPLER_CHOICES = [
    ("Full (released sampler, all T steps)", "released"),
    ("Few-step (posterior sampler)", "posterior"),
]
#: The sampler the app starts with: with the bundled checkpoint the few-step posterior sampler scores 2-4 dB PSNR above
#: the released one at a tenth of the network evaluations (`benchmarks/bench_sampler.py`, README "Few-step sampling").
DEFAULT_SAMPLER = "posterior"
#: Whether the discriminator-gated resampling starts switched on (off: with the bundled checkpoint it changes PSNR by
#: less than 0.3 dB at 2.5x the network evaluations; README "Evaluation").
DEFAULT_RESAMPLING = False
#: The bundled examples offered below the editor, in `BUNDLED_EXAMPLES` (`<name>.png`, `<name>_mask.png`).
EXAMPLE_NAMES = ("bridge", "alphabets", "sunset")
#: Brush colour and opacity of the mask layer; any painted pixel (alpha > 0) is filled.
MASK_COLOR = "#ff0080"
MASK_OPACITY = 0.6

EditorValue = dict[str, Any]
ImageLike = PIL.Image.Image | np.ndarray | str | os.PathLike


def default_device() -> str:
    """CUDA when available, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def get_pipeline(checkpoint: str | None, sampler: str, device: str) -> StrDiffusionInpaintPipeline:
    """Loads (once per checkpoint, sampler and device) a pipeline folder; `None` is the bundled checkpoint."""
    return load_pipeline(checkpoint, sampler, device)


class GradioProgressCallback(PipelineCallback):
    """Reports each denoising step of the pipeline to a `gr.Progress` tracker."""

    tensor_inputs = ["latents"]

    def __init__(self, progress: gr.Progress) -> None:
        super().__init__()
        self.progress = progress

    def callback_fn(
        self, pipeline: StrDiffusionInpaintPipeline, step_index: int, timestep: int, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Advances the progress bar by one step and returns `callback_kwargs` unchanged."""
        self.progress((step_index + 1, len(pipeline.scheduler.timesteps)), desc="Denoising")
        return callback_kwargs


def _to_pil(image: ImageLike, name: str) -> PIL.Image.Image:
    """
    Opens an image given as PIL image, array or file path (the formats of `gr.ImageEditor` values). Raises `gr.Error`
    for an unreadable file or an image of more than `MAX_IMAGE_PIXELS` pixels.
    """
    if isinstance(image, PIL.Image.Image | np.ndarray):
        pil_image = image if isinstance(image, PIL.Image.Image) else PIL.Image.fromarray(image)
        if pil_image.width * pil_image.height > MAX_IMAGE_PIXELS:
            raise gr.Error(
                f"The {name} is {pil_image.width}×{pil_image.height} px, more than the limit of "
                f"{MAX_IMAGE_PIXELS:,} pixels: downscale it first."
            )
        return pil_image
    try:
        opened = open_image(image, name)
        opened.load()
    except (OSError, ValueError) as error:
        raise gr.Error(str(error)) from error
    return opened


def editor_to_photo_and_mask(editor_value: EditorValue | None) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """
    Splits a `gr.ImageEditor` value into the photo (its background as 8-bit RGB, transparency flattened on white, see
    `diffusers_strdiff.image_io.convert_image`) and the mask (mode "L", 255 = fill): every pixel that any drawn layer
    covers (alpha > 0). Raises `gr.Error` when there is no photo, nothing is painted, or the photo is too large.
    """
    if not editor_value or editor_value.get("background") is None:
        raise gr.Error("Upload a photo first, then paint over the region to fill.")
    try:
        photo = convert_image(_to_pil(editor_value["background"], "photo"), "RGB", "the photo")
    except ValueError as error:
        raise gr.Error(str(error)) from error
    fill = np.zeros((photo.height, photo.width), dtype=bool)
    for layer in editor_value.get("layers") or []:
        alpha = _to_pil(layer, "mask layer").convert("RGBA").getchannel("A")
        if alpha.size != photo.size:
            alpha = alpha.resize(photo.size, PIL.Image.Resampling.NEAREST)
        fill |= np.asarray(alpha) > 0
    if not fill.any():
        raise gr.Error("The mask is empty: paint over the region to fill with the brush.")
    return photo, PIL.Image.fromarray(fill.astype(np.uint8) * 255)


def inpaint(
    editor_value: EditorValue | None,
    steps: int,
    sampler: str,
    resampling: bool,
    seed: int,
    checkpoint: str | os.PathLike | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    device: str | None = None,
    progress: gr.Progress | None = None,
) -> tuple[PIL.Image.Image, PIL.Image.Image | None, PIL.Image.Image, str]:
    """
    Inpaints the painted region of an image-editor value.

    Args:
        editor_value: a `gr.ImageEditor` value: `{"background": photo, "layers": [mask layers], ...}`; the mask is
            every pixel a layer covers (alpha > 0). Images may be PIL images, arrays or file paths.
        steps: reverse steps of the few-step sampler (the released sampler always runs all T steps).
        sampler: `"released"` (the full released sampler) or `"posterior"` (few-step posterior sampler).
        resampling: add the discriminator-gated resampling (needs a checkpoint with a discriminator).
        seed: seed of the sampler's noise.
        checkpoint: pipeline folder or Hub id (default: the bundled checkpoint).
        max_side: photos with a longer side are inpainted downscaled to fit; the fill is then upscaled and pasted into
            the original photo, so the result has the original size and its known pixels are exact.
        device: torch device (default: CUDA when available, else the CPU).
        progress: progress tracker (the app passes `gr.Progress()`).

    Returns:
        `(inpainted image, predicted structure map or None, mask (255 = filled), status markdown)`, all at the size
        of the uploaded photo.

    Raises:
        gr.Error: no photo, an empty mask, or an input the pipeline rejects.
    """
    started = time.perf_counter()
    photo, mask = editor_to_photo_and_mask(editor_value)
    device = device or default_device()
    pipeline = get_pipeline(None if checkpoint is None else str(checkpoint), sampler, device)

    notes: list[str] = []
    work_photo, work_mask = photo, mask
    if max(photo.size) > max_side:
        work_photo, work_mask = downscale_for_inpainting(photo, mask, max_side)
        work_size = work_photo.size
        notice = (
            f"The photo is {photo.width}×{photo.height} px, larger than {max_side} px: it was inpainted at "
            f"{work_size[0]}×{work_size[1]} px and the fill upscaled into the original {photo.width}×{photo.height} "
            "photo (known pixels unchanged)."
        )
        gr.Warning(notice)
        notes.append(notice)

    callbacks: list[PipelineCallback] = []
    if resampling and pipeline.discriminator is None:
        notes.append("This checkpoint has no discriminator: sampled without resampling.")
    elif resampling:
        callbacks.append(DiscriminatorGatedResampling())
    if progress is not None:
        callbacks.append(GradioProgressCallback(progress))
    try:
        output = pipeline(
            image=work_photo,
            mask_image=work_mask,
            num_inference_steps=None if sampler == "released" else int(steps),
            generator=torch.Generator(device).manual_seed(int(seed or 0)),  # a cleared seed box sends None
            callback_on_step_end=MultiPipelineCallbacks(callbacks) if callbacks else None,
        )
    except ValueError as error:
        raise gr.Error(str(error)) from error
    result = output.images[0]
    structure = output.structures[0] if output.structures is not None else None
    result = paste_fill(photo, mask, result)
    if structure is not None and structure.size != photo.size:
        structure = structure.resize(photo.size, PIL.Image.Resampling.BICUBIC)

    num_steps = len(pipeline.scheduler.timesteps)
    notes.append(
        f"Inpainted in {time.perf_counter() - started:.1f} s on {device}: {num_steps} steps, "
        f"{output.nfe['total']} network evaluations."
    )
    return result, structure, mask, "\n\n".join(notes)


def write_example_values(folder: Path) -> list[EditorValue]:
    """
    Writes the bundled examples as image-editor values into `folder` (background = photo, one layer whose alpha is
    the mask, composite = both) and returns the values, with file paths.
    """
    folder.mkdir(parents=True, exist_ok=True)
    values = []
    for name in EXAMPLE_NAMES:
        photo = PIL.Image.open(BUNDLED_EXAMPLES / f"{name}.png").convert("RGBA")
        fill = (
            PIL.Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png").convert("L").point(lambda v: 255 if v >= 128 else 0)
        )
        layer = PIL.Image.new("RGBA", photo.size, MASK_COLOR)
        layer.putalpha(fill.point(lambda v: round(v * MASK_OPACITY)))
        paths = {kind: folder / f"{name}_{kind}.png" for kind in ("background", "layer", "composite")}
        photo.save(paths["background"])
        layer.save(paths["layer"])
        PIL.Image.alpha_composite(photo, layer).save(paths["composite"])
        values.append(
            {
                "background": str(paths["background"]),
                "layers": [str(paths["layer"])],
                "composite": str(paths["composite"]),
            }
        )
    return values


def default_few_steps(pipeline: StrDiffusionInpaintPipeline) -> int:
    """The steps the app's few-step sampler starts with: the checkpoint's `default_num_inference_steps` (the setting
    its evaluation chose), else `FALLBACK_FEW_STEPS`."""
    return pipeline.config.get("default_num_inference_steps") or FALLBACK_FEW_STEPS


def build_demo(
    checkpoint: str | os.PathLike | None = None, max_side: int = DEFAULT_MAX_SIDE, device: str | None = None
) -> gr.Blocks:
    """
    Builds the app for a pipeline folder or Hub id (default: the bundled checkpoint), loaded now on `device` (default:
    CUDA when available, else the CPU). Photos with a side longer than `max_side` are inpainted downscaled.
    """
    device = device or default_device()
    checkpoint_key = None if checkpoint is None else str(checkpoint)
    pipeline = get_pipeline(checkpoint_key, "released", device)
    num_train_timesteps = pipeline.scheduler.config.num_train_timesteps
    examples = write_example_values(Path(tempfile.gettempdir()) / "diffusers_strdiff_examples")

    def run(
        editor_value: EditorValue | None,
        steps: int,
        sampler: str,
        resampling: bool,
        seed: int,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio injects the tracker through this default)
    ) -> tuple[PIL.Image.Image, PIL.Image.Image | None, PIL.Image.Image, str]:
        """`inpaint` with this app's checkpoint, size limit and device, reporting progress to the page."""
        return inpaint(editor_value, steps, sampler, resampling, seed, checkpoint_key, max_side, device, progress)

    with gr.Blocks(title="StrDiffusion inpainting") as demo:
        gr.Markdown(
            "# StrDiffusion: structure-guided inpainting\n"
            "Upload a photo, paint over the region to fill with the brush (its size is adjustable in the brush "
            f"menu), then press **Inpaint**. Photos larger than {max_side} px are inpainted downscaled; the result "
            "keeps the original size and pixels outside the mask."
        )
        with gr.Row():
            editor = gr.ImageEditor(
                label="Photo and mask",
                type="pil",
                image_mode="RGBA",
                format="png",
                sources=("upload", "clipboard"),
                brush=gr.Brush(colors=[(MASK_COLOR, MASK_OPACITY)], color_mode="fixed"),
                eraser=gr.Eraser(),
                layers=False,
                transforms=(),
                elem_id="editor",
                scale=2,
            )
            with gr.Column(scale=1):
                sampler = gr.Radio(SAMPLER_CHOICES, value=DEFAULT_SAMPLER, label="Sampler", elem_id="sampler")
                steps = gr.Slider(
                    1,
                    num_train_timesteps,
                    value=min(default_few_steps(pipeline), num_train_timesteps),
                    step=1,
                    label="Steps (few-step sampler)",
                    info=f"The released sampler always runs all {num_train_timesteps} steps.",
                    interactive=DEFAULT_SAMPLER != "released",
                    elem_id="steps",
                )
                resampling = gr.Checkbox(
                    value=DEFAULT_RESAMPLING, label="Discriminator-gated resampling", elem_id="resampling"
                )
                seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
                button = gr.Button("Inpaint", variant="primary", elem_id="run")
        with gr.Row():
            output_options = {"type": "pil", "format": "png", "interactive": False}
            result = gr.Image(label="Inpainted", elem_id="result", **output_options)
            structure = gr.Image(label="Predicted structure", elem_id="structure", **output_options)
            mask = gr.Image(label="Mask (white = filled)", elem_id="mask", **output_options)
        status = gr.Markdown(elem_id="status")

        inputs = [editor, steps, sampler, resampling, seed]
        outputs = [result, structure, mask, status]
        gr.Examples(
            examples=[[value, steps.value, DEFAULT_SAMPLER, DEFAULT_RESAMPLING, 0] for value in examples],
            inputs=inputs,
            outputs=outputs,
            fn=run,
            run_on_click=True,
            cache_examples=False,
            visible_columns=[0],
            elem_id="examples",
        )
        sampler.change(lambda value: gr.Slider(interactive=value != "released"), sampler, steps)
        button.click(run, inputs, outputs)
    # The examples and the button both call `run`, hence share one concurrency group: one inference at a time.
    demo.queue(default_concurrency_limit=1)
    return demo


def launch(
    server_name: str = "127.0.0.1",
    server_port: int = 7860,
    share: bool = False,
    checkpoint: str | os.PathLike | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
) -> None:
    """Builds the app (see `build_demo`) and serves it until interrupted."""
    build_demo(checkpoint, max_side).launch(server_name=server_name, server_port=server_port, share=share)
