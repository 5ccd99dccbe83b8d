"""The `strdiff` command, run as a subprocess like a user would."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_strdiff import BUNDLED_EXAMPLES, DEFAULT_CHECKPOINT

from .test_pipeline import tiny_pipeline

PHOTO, MASK = BUNDLED_EXAMPLES / "bridge.png", BUNDLED_EXAMPLES / "bridge_mask.png"
CONSOLE_SCRIPT = Path(sys.executable).with_name("strdiff")


def strdiff(*args: str | Path) -> subprocess.CompletedProcess:
    """Runs `python -m diffusers_strdiff.cli ARGS` with the test's interpreter."""
    command = [sys.executable, "-m", "diffusers_strdiff.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    tiny_pipeline().save_pretrained(folder)
    return folder


def assert_inpainted(output: Path) -> None:
    photo, result = np.asarray(PIL.Image.open(PHOTO)), np.asarray(PIL.Image.open(output))
    fill = np.asarray(PIL.Image.open(MASK)) >= 128
    assert result.shape == photo.shape == (128, 160, 3)
    assert np.array_equal(result[~fill], photo[~fill])
    assert not np.array_equal(result[fill], photo[fill])


@pytest.mark.parametrize(
    "command", [[], ["inpaint"], ["convert"], ["evaluate"], ["app"]], ids=lambda c: c[0] if c else "top"
)
def test_help_exits_zero(command: list[str]) -> None:
    process = strdiff(*command, "--help")
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith("usage:")


@pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason=f"console script {CONSOLE_SCRIPT} not installed")
def test_console_script() -> None:
    process = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr
    assert "inpaint" in process.stdout and "app" in process.stdout


def test_inpaint_with_checkpoint_folder(checkpoint: Path, tmp_path: Path) -> None:
    output, structure = tmp_path / "out" / "result.png", tmp_path / "structure.png"
    options = ["--checkpoint", checkpoint, "--steps", "3", "--sampler", "posterior", "--structure_output", structure]
    process = strdiff("inpaint", PHOTO, MASK, output, *options)
    assert process.returncode == 0, process.stderr
    assert f"wrote {output}" in process.stdout
    assert_inpainted(output)
    assert PIL.Image.open(structure).size == (160, 128)


@pytest.mark.skipif(
    not DEFAULT_CHECKPOINT.is_dir(),
    reason=f"the bundled checkpoint {DEFAULT_CHECKPOINT} does not exist yet (scripts/train_default_checkpoint.sh)",
)
def test_inpaint_with_bundled_checkpoint(tmp_path: Path) -> None:
    output = tmp_path / "result.png"
    process = strdiff("inpaint", PHOTO, MASK, output, "--steps", "5", "--sampler", "posterior")
    assert process.returncode == 0, process.stderr
    assert_inpainted(output)


def test_threads_option(checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "result.png"
    options = ["--checkpoint", checkpoint, "--steps", "2", "--sampler", "posterior", "--threads", "1"]
    assert strdiff("inpaint", PHOTO, MASK, output, *options).returncode == 0
    assert_inpainted(output)
    process = strdiff("inpaint", PHOTO, MASK, tmp_path / "other.png", *options[:-1], "0")
    assert process.returncode == 2
    (line,) = process.stderr.splitlines()
    assert line.startswith("strdiff inpaint: error: --threads:") and "positive" in line


def test_missing_input_file_exits_two(tmp_path: Path) -> None:
    process = strdiff("inpaint", tmp_path / "missing.png", MASK, tmp_path / "out.png")
    assert process.returncode == 2
    assert process.stderr.splitlines() == [f"strdiff inpaint: error: image not found: {tmp_path / 'missing.png'}"]


@pytest.mark.parametrize("case", ["unreadable_image", "missing_checkpoint"])
def test_user_errors_exit_two_with_one_line(case: str, tmp_path: Path) -> None:
    image, checkpoint = PHOTO, tmp_path / "no_such_checkpoint"
    if case == "unreadable_image":
        image = tmp_path / "not_an_image.png"
        image.write_text("not a PNG", encoding="utf-8")
        checkpoint = tmp_path  # never loaded: the image is read first
    process = strdiff("inpaint", image, MASK, tmp_path / "out.png", "--checkpoint", checkpoint)
    assert process.returncode == 2
    (line,) = process.stderr.splitlines()
    expected = f"cannot read image {image}" if case == "unreadable_image" else str(checkpoint)
    assert line.startswith("strdiff inpaint: error:") and expected in line
    assert not (tmp_path / "out.png").exists()


def test_app_without_gradio_is_a_clear_error(tmp_path: Path) -> None:
    # A `gradio` module that fails to import shadows the installed one (the working directory comes first on sys.path).
    blocker = tmp_path / "gradio.py"
    blocker.write_text("raise ImportError('gradio blocked for this test')\n", encoding="utf-8")
    command = [sys.executable, "-c", "import sys; from diffusers_strdiff.cli import main; sys.exit(main(['app']))"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert process.returncode == 2
    (line,) = process.stderr.splitlines()
    assert "pip install 'diffusers-strdiff[app]'" in line


def test_sampler_choices_are_the_scheduler_presets() -> None:
    from diffusers_strdiff import SAMPLER_PRESETS
    from diffusers_strdiff.cli import SAMPLERS

    assert SAMPLERS == tuple(SAMPLER_PRESETS)
