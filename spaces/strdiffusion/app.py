"""Hugging Face Space entry point: the StrDiffusion inpainting demo (build the folder with scripts/build_space.py)."""

from diffusers_strdiff.app import build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.launch()
