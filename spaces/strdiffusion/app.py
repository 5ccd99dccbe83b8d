"""Hugging Face Space entry point: the StrDiffusion inpainting demo (build the folder with scripts/build_space.py)."""

import os

import torch

from diffusers_strdiff import inference_threads, reuse_freed_memory
from diffusers_strdiff.app import build_demo, default_device

#: The pipeline to serve: the Space variable `STRDIFF_CHECKPOINT` (a Hub id such as `org/name`, or a folder), loaded
#: with `StrDiffusionInpaintPipeline.from_pretrained` exactly as a Hub id is loaded anywhere else (through the Hugging
#: Face cache); unset, the checkpoint bundled with the package.
CHECKPOINT = os.environ.get("STRDIFF_CHECKPOINT") or None
DEVICE = default_device()
reuse_freed_memory()  # large CPU activations are reused instead of re-mapped at every call (docs/speed.md)
if os.environ.get("STRDIFF_THREADS"):  # a Space has its cores to itself: torch's default unless told otherwise
    torch.set_num_threads(inference_threads())

demo = build_demo(CHECKPOINT, device=DEVICE)

if __name__ == "__main__":
    demo.launch()
