"""The checkpoint installed with the package: loads offline, inpaints, ships in the wheel, evaluates."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_erosion, laplace
from skimage.metrics import peak_signal_noise_ratio

from diffusers_strdiff import (
    BUNDLED_EXAMPLES,
    DEFAULT_CHECKPOINT,
    MeanRevertingSDEScheduler,
    StrDiffusionInpaintPipeline,
)
from diffusers_strdiff.coarse_fill import fill_hole
from diffusers_strdiff.evaluation import build_eval_set, build_methods, evaluate

from .test_evaluation import _independent_ssim, _write_photo

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("bridge", "alphabets", "sunset")


@pytest.fixture(scope="module")
def pipeline() -> StrDiffusionInpaintPipeline:
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(DEFAULT_CHECKPOINT)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_checkpoint_is_complete_and_small():
    files = sorted(path.relative_to(DEFAULT_CHECKPOINT).as_posix() for path in DEFAULT_CHECKPOINT.rglob("*.*"))
    weights = [name for name in files if name.endswith(".safetensors")]
    assert sorted(weights) == [
        "discriminator/diffusion_pytorch_model.safetensors",
        "structure_unet/diffusion_pytorch_model.safetensors",
        "texture_unet/diffusion_pytorch_model.safetensors",
    ]
    assert not any(name.endswith((".bin", ".pth", ".pt", ".ckpt")) for name in files)
    assert "README.md" in files and "model_index.json" in files
    assert sum(path.stat().st_size for path in DEFAULT_CHECKPOINT.rglob("*")) <= 30 * 2**20


def test_bundled_examples_are_photo_and_mask_pairs():
    for name in EXAMPLES:
        with (
            Image.open(BUNDLED_EXAMPLES / f"{name}.png") as photo,
            Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png") as m,
        ):
            assert photo.mode == "RGB" and m.size == photo.size
            mask = np.asarray(m.convert("L"))
            assert set(np.unique(mask)) == {0, 255}
    assert "CC-BY" in (BUNDLED_EXAMPLES / "LICENSES.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", EXAMPLES)
def test_inpaints_a_bundled_example_with_few_steps(pipeline, name):
    pipeline.scheduler = MeanRevertingSDEScheduler.from_config(pipeline.scheduler.config, algorithm_type="posterior")
    image = Image.open(BUNDLED_EXAMPLES / f"{name}.png").convert("RGB")
    mask = Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png")
    output = pipeline(image=image, mask_image=mask, num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    result, pixels, hole = np.asarray(output.images[0]), np.asarray(image), np.asarray(mask.convert("L")) >= 128
    assert result.shape == pixels.shape
    assert np.array_equal(result[~hole], pixels[~hole])
    assert output.structures[0].size == image.size
    assert not np.array_equal(result[hole], pixels[hole])
    assert output.nfe["texture"] == 5 and output.nfe["total"] == 5 + output.nfe["structure"]


def test_call_without_options_runs_the_recommended_setting(pipeline):
    """The saved scheduler and `default_num_inference_steps` are the few-step setting the sweep chose: 2 posterior
    steps without resampling, 3 network evaluations (1 structure + 2 texture)."""
    assert pipeline.scheduler.config.algorithm_type == "posterior"
    assert pipeline.config.default_num_inference_steps == 2
    image = Image.open(BUNDLED_EXAMPLES / "bridge.png").convert("RGB")
    mask = Image.open(BUNDLED_EXAMPLES / "bridge_mask.png")
    output = pipeline(image=image, mask_image=mask, generator=torch.Generator().manual_seed(0))
    assert output.nfe == {"structure": 1, "texture": 2, "discriminator": 0, "total": 3}


def test_installed_wheel_carries_the_checkpoint(tmp_path):
    """`pip install .` outside the checkout: the wheel holds the checkpoint and the examples, and they load."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), "."],
        cwd=REPO,
        check=True,
    )
    (wheel,) = wheel_dir.glob("*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True
    )
    script = """
import diffusers_strdiff, torch
from PIL import Image
from diffusers_strdiff import BUNDLED_EXAMPLES, DEFAULT_CHECKPOINT, StrDiffusionInpaintPipeline
assert "site" in diffusers_strdiff.__file__, diffusers_strdiff.__file__
pipe = StrDiffusionInpaintPipeline.from_pretrained(DEFAULT_CHECKPOINT)
pipe.set_progress_bar_config(disable=True)
image = Image.open(BUNDLED_EXAMPLES / "sunset.png")
print(pipe(image=image, mask_image=Image.open(BUNDLED_EXAMPLES / "sunset_mask.png"), output_type="np").images.shape)
"""
    environment = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    process = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip().splitlines()[-1] == "(1, 128, 160, 3)"


def test_harness_with_the_default_checkpoint_matches_an_independent_computation(tmp_path):
    _write_photo(tmp_path / "a.png", 40, 48, seed=3)
    _write_photo(tmp_path / "b.png", 48, 40, seed=4)
    samples = build_eval_set(tmp_path, resolution=32, buckets=("20-40",))
    methods = build_methods(["telea", "strdiffusion_no_resampling"], checkpoint=DEFAULT_CHECKPOINT)
    results = evaluate(samples, methods, compute_fid=False, show_progress=False)
    assert len(results.records) == 4
    ground_truths = {sample.sample_id: sample.image.permute(1, 2, 0).numpy().astype(np.float64) for sample in samples}
    for record in results.records:
        output, target = record.output.astype(np.float64) / 255.0, ground_truths[record.sample_id]
        assert record.psnr == pytest.approx(peak_signal_noise_ratio(target, output, data_range=1.0), abs=1e-5)
        assert record.ssim == pytest.approx(_independent_ssim(output, target), abs=1e-5)


@pytest.mark.parametrize("name", EXAMPLES)
def test_default_fill_has_texture_not_noise(pipeline, name):
    """
    The bundled checkpoint's texture mean is the PatchMatch blend (structure mean: biharmonic), so its fills carry
    texture: the mean |Laplacian| of the gray output inside the hole (2 px from its border) is over 3x that of the
    smooth biharmonic fill (measured 4-9x) and below the ground truth's (measured about half of it: not noise).
    """
    assert (pipeline.config.mean_fill, pipeline.structure_fill) == ("patchmatch_blend", "biharmonic")
    image = Image.open(BUNDLED_EXAMPLES / f"{name}.png").convert("RGB")
    mask = Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png")
    output = pipeline(image=image, mask_image=mask, generator=torch.Generator().manual_seed(0)).images[0]
    hole = np.asarray(mask.convert("L")) >= 128
    inner = binary_erosion(hole, iterations=2)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    smooth = fill_hole(pixels, torch.from_numpy(~hole).float()[None, None], "biharmonic")[0].permute(1, 2, 0) * 255

    def detail(rgb: np.ndarray) -> float:
        return float(np.abs(laplace(np.asarray(rgb, dtype=np.float64).mean(-1)))[inner].mean())

    assert 3 * detail(smooth.numpy()) < detail(output) < detail(image)
