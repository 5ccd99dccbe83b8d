"""Launches the StrDiffusion inpainting demo on http://127.0.0.1:7860 (`python app.py`, like `strdiff app`)."""

from diffusers_strdiff.app import build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.launch()
