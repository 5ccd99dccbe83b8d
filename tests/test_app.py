"""The Gradio app's inference function and layout, without a browser (see test_app_browser.py for that)."""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_strdiff import BUNDLED_EXAMPLES

from .test_pipeline import tiny_pipeline

gr = pytest.importorskip("gradio", reason="the app needs the [app] extra (pip install 'diffusers-strdiff[app]')")
app = pytest.importorskip("diffusers_strdiff.app")

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "spaces" / "strdiffusion"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    tiny_pipeline().save_pretrained(folder)
    return folder


def editor_value(name: str = "bridge") -> tuple[dict, np.ndarray, np.ndarray]:
    """What the editor sends for a bundled example (PIL, as `type="pil"` does), the photo and the fill mask."""
    photo = PIL.Image.open(BUNDLED_EXAMPLES / f"{name}.png").convert("RGB")
    fill = np.asarray(PIL.Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png").convert("L")) >= 128
    layer = np.zeros((*fill.shape, 4), dtype=np.uint8)
    layer[fill] = (255, 0, 128, 153)
    value = {"background": photo.convert("RGBA"), "layers": [PIL.Image.fromarray(layer)], "composite": None}
    return value, np.asarray(photo), fill


def assert_known_pixels_kept(result: PIL.Image.Image, photo: np.ndarray, fill: np.ndarray) -> None:
    pixels = np.asarray(result)
    assert np.array_equal(pixels[~fill], photo[~fill])
    assert not np.array_equal(pixels[fill], photo[fill])


def test_inpaint_bundled_example(checkpoint: Path) -> None:
    value, photo, fill = editor_value()
    result, structure, mask, status = app.inpaint(value, 2, "posterior", False, 0, checkpoint=checkpoint, device="cpu")
    assert result.mode == "RGB" and result.size == (160, 128)
    assert structure.mode == "L" and structure.size == (160, 128)
    assert np.array_equal(np.asarray(mask) == 255, fill)
    assert_known_pixels_kept(result, photo, fill)
    assert "2 steps" in status and "network evaluations" in status


def test_example_files_round_trip(tmp_path: Path) -> None:
    values = app.write_example_values(tmp_path)
    assert len(values) == len(app.EXAMPLE_NAMES) == 3
    for name, value in zip(app.EXAMPLE_NAMES, values, strict=True):
        photo, mask = app.editor_to_photo_and_mask(value)
        assert np.array_equal(np.asarray(photo), np.asarray(PIL.Image.open(BUNDLED_EXAMPLES / f"{name}.png")))
        assert np.array_equal(np.asarray(mask), np.asarray(PIL.Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png")))
        assert Path(value["composite"]).is_file()


def test_large_upload_is_downscaled_and_returned_at_original_size(checkpoint: Path) -> None:
    value, photo, fill = editor_value("sunset")
    calls = []
    with pytest.warns(UserWarning, match="larger than 64 px"):
        result, structure, mask, status = app.inpaint(
            value,
            5,
            "posterior",
            True,
            0,
            checkpoint=checkpoint,
            max_side=64,
            device="cpu",
            progress=lambda step, desc: calls.append(step),
        )
    assert "inpainted at 64×51 px" in status
    assert result.size == structure.size == mask.size == (160, 128)
    assert_known_pixels_kept(result, photo, fill)
    assert calls == [(step, 5) for step in range(1, 6)]
    assert app.get_pipeline(str(checkpoint), "posterior", "cpu").nfe["discriminator"] > 0  # the resampling ran


def test_empty_mask_and_missing_photo_raise_gradio_errors(checkpoint: Path) -> None:
    value, _, _ = editor_value()
    value["layers"] = [PIL.Image.new("RGBA", (160, 128), (0, 0, 0, 0))]
    with pytest.raises(gr.Error, match="mask is empty"):
        app.inpaint(value, 2, "posterior", False, 0, checkpoint=checkpoint, device="cpu")
    with pytest.raises(gr.Error, match="Upload a photo"):
        app.inpaint({"background": None, "layers": [], "composite": None}, 2, "posterior", False, 0, checkpoint)


def test_build_demo_layout(checkpoint: Path) -> None:
    demo = app.build_demo(checkpoint, device="cpu")
    assert isinstance(demo, gr.Blocks)
    elem_ids = {block.elem_id for block in demo.blocks.values()}
    assert {"editor", "sampler", "steps", "resampling", "seed", "run", "result", "structure", "mask"} <= elem_ids
    (examples,) = [block for block in demo.blocks.values() if isinstance(block, gr.Dataset)]
    assert len(examples.samples) == 3
    (sampler,) = [block for block in demo.blocks.values() if block.elem_id == "sampler"]
    (steps,) = [block for block in demo.blocks.values() if block.elem_id == "steps"]
    assert sampler.value == app.DEFAULT_SAMPLER == "posterior" and steps.interactive  # few-step by default
    assert demo._queue.default_concurrency_limit == 1


def steps_slider_value(demo: gr.Blocks) -> int:
    (steps,) = [block for block in demo.blocks.values() if block.elem_id == "steps"]
    return steps.value


def test_steps_start_at_the_checkpoint_default(tmp_path: Path) -> None:
    pipeline = tiny_pipeline()
    plain, tuned = tmp_path / "plain", tmp_path / "tuned"
    pipeline.save_pretrained(plain)
    pipeline.register_to_config(default_num_inference_steps=3)
    pipeline.save_pretrained(tuned)
    num_train_timesteps = pipeline.scheduler.config.num_train_timesteps
    assert steps_slider_value(app.build_demo(plain, device="cpu")) == min(app.FALLBACK_FEW_STEPS, num_train_timesteps)
    assert steps_slider_value(app.build_demo(tuned, device="cpu")) == 3


def test_space_requirements_cover_install_requires() -> None:
    def name(requirement: str) -> str:
        return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    requires = importlib.metadata.requires("diffusers-strdiff") or []
    needed = {name(requirement) for requirement in requires if "extra ==" not in requirement}
    lines = (SPACE / "requirements.txt").read_text(encoding="utf-8").splitlines()
    listed = {name(line) for line in lines if line.strip() and not line.startswith(("#", "-"))}
    assert needed <= listed
    assert "gradio" in (SPACE / "README.md").read_text(encoding="utf-8").split("---")[1]


def test_build_space_copies_the_package(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_space.py"), "--output_dir", str(tmp_path / "space")]
        + ["--allow_missing_checkpoint"],
        capture_output=True,
        text=True,
        check=True,
    )
    space = tmp_path / "space"
    assert {"app.py", "requirements.txt", "README.md", "diffusers_strdiff"} <= {path.name for path in space.iterdir()}
    assert (space / "diffusers_strdiff" / "app.py").is_file()
    assert sorted(path.name for path in (space / "diffusers_strdiff" / "examples").iterdir()) == sorted(
        path.name for path in BUNDLED_EXAMPLES.iterdir()
    )
    assert not list(space.rglob("__pycache__"))
    assert "hf upload" in process.stdout
