"""`examples/inpaint.py` end to end on a saved tiny pipeline: both loaders, both samplers, odd size, two holes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.test_pipeline import tiny_pipeline

EXAMPLE = Path(__file__).parents[1] / "examples" / "inpaint.py"
HEIGHT, WIDTH = 23, 37


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("example")
    tiny_pipeline().save_pretrained(folder / "pipe")
    rng = np.random.default_rng(0)
    PIL.Image.fromarray(rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)).save(folder / "photo.png")
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[3:9, 4:12] = 255
    mask[14:20, 25:33] = 255
    PIL.Image.fromarray(mask).save(folder / "holes.png")
    return {"folder": folder, "pipe": folder / "pipe", "image": folder / "photo.png", "mask": folder / "holes.png"}


@pytest.mark.parametrize(
    ("options", "expected_nfe"),
    [
        (["--loader", "strdiffusion"], None),
        (["--loader", "diffusers", "--no_resampling", "--sampler", "posterior", "--steps", "4"], "'total': 7"),
    ],
)
def test_inpaint_example_writes_results_of_the_input_size(inputs, options, expected_nfe):
    output_dir = inputs["folder"] / f"out_{options[1]}"
    command = [sys.executable, str(EXAMPLE), "--image", str(inputs["image"]), "--mask", str(inputs["mask"])]
    command += ["--checkpoint", str(inputs["pipe"]), "--output_dir", str(output_dir), *options]
    process = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "StrDiffusionInpaintPipeline" in process.stdout
    if expected_nfe is not None:
        assert expected_nfe in process.stdout  # 3 structure + 4 texture steps, no discriminator
    result = np.asarray(PIL.Image.open(output_dir / "photo_inpainted.png"))
    structure = PIL.Image.open(output_dir / "photo_structure.png")
    assert result.shape == (HEIGHT, WIDTH, 3) and structure.size == (WIDTH, HEIGHT)
    photo = np.asarray(PIL.Image.open(inputs["image"]))
    known = np.asarray(PIL.Image.open(inputs["mask"])) < 128
    assert np.array_equal(result[known], photo[known])
    assert not np.array_equal(result[~known], photo[~known])
    assert PIL.Image.open(output_dir / "photo_strip.png").size == (3 * WIDTH, HEIGHT)


def test_inpaint_example_rejects_a_missing_mask(inputs):
    command = [sys.executable, str(EXAMPLE), "--image", str(inputs["image"]), "--mask", "missing.png"]
    process = subprocess.run(command, capture_output=True, text=True)
    assert process.returncode == 2
    assert "--mask missing.png does not exist" in process.stderr
