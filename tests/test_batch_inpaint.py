"""`strdiff inpaint` over folders (issue 16): matching, skipping, failures, batch = single, accelerate split."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_strdiff import BUNDLED_EXAMPLES, batch_inpaint
from diffusers_strdiff.cli import main
from diffusers_strdiff.image_io import save_image

from .test_pipeline import tiny_pipeline

NAMES = ("bridge", "sunset", "alphabets")
FEW_STEPS = ["--sampler", "posterior", "--steps", "3"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """32x32 images with stem-matched masks, plus an image without mask and a truncated image (with a mask)."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in NAMES:
        PIL.Image.open(BUNDLED_EXAMPLES / f"{name}.png").resize((32, 32)).save(images / f"{name}.png")
        mask = PIL.Image.open(BUNDLED_EXAMPLES / f"{name}_mask.png").resize((32, 32), PIL.Image.Resampling.NEAREST)
        mask.save(masks / f"{name}.png")
    PIL.Image.new("RGB", (32, 32), "gray").save(images / "unmatched.png")
    (images / "broken.png").write_bytes((images / "bridge.png").read_bytes()[:200])
    (masks / "broken.png").write_bytes((masks / "bridge.png").read_bytes())
    return {"images": images, "masks": masks, "output": tmp_path / "out"}


def run(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_folder_run_writes_skips_and_reports(folders: dict[str, Path], checkpoint: Path, capsys) -> None:
    output = folders["output"]
    output.mkdir()
    (output / "sunset.png").write_bytes(b"previous result")
    arguments = ["inpaint", "--image", folders["images"], "--mask", folders["masks"], "--output", output]
    arguments += ["--checkpoint", checkpoint, *FEW_STEPS, "--batch_size", "2", "--concat", "--save_structure"]
    code, out, err = run(capsys, *arguments)
    assert code == 1
    assert f"no mask for image {folders['images'] / 'unmatched.png'}: skipped" in err.splitlines()
    assert "done 2, skipped 1 (output exists), failed 1;" in out
    (failure,) = [line for line in out.splitlines() if line.startswith("failed: ")]
    assert failure.startswith(f"failed: broken.png: cannot read image {folders['images'] / 'broken.png'}")
    assert sorted(path.name for path in output.iterdir()) == [
        "alphabets.png",
        "bridge.png",
        "concat",
        "structure",
        "sunset.png",
    ]
    assert (output / "sunset.png").read_bytes() == b"previous result"
    assert PIL.Image.open(output / "concat" / "bridge.png").size == (96, 32)
    assert PIL.Image.open(output / "structure" / "bridge.png").size == (32, 32)
    for name in ("alphabets", "bridge"):
        result = np.asarray(PIL.Image.open(output / f"{name}.png"))
        photo = np.asarray(PIL.Image.open(folders["images"] / f"{name}.png"))
        known = np.asarray(PIL.Image.open(folders["masks"] / f"{name}.png")) < 128
        assert np.array_equal(result[known], photo[known]) and not np.array_equal(result, photo)

    code, out, _ = run(capsys, *arguments)  # a rerun resumes: nothing left but the broken image
    assert code == 1 and "done 0, skipped 3 (output exists), failed 1;" in out
    code, out, _ = run(capsys, *arguments, "--overwrite")
    assert code == 1 and "done 3, skipped 0 (output exists), failed 1;" in out
    assert PIL.Image.open(output / "sunset.png").size == (32, 32)


def test_batch_outputs_equal_single_image_calls(folders: dict[str, Path], checkpoint: Path, capsys) -> None:
    (folders["images"] / "broken.png").unlink()
    (folders["images"] / "unmatched.png").unlink()
    one_mask = folders["masks"] / "bridge.png"  # one mask file for every image
    options = ["--checkpoint", checkpoint, *FEW_STEPS, "--seed", "7"]
    code, out, _ = run(
        capsys, "inpaint", "--image", folders["images"], "--mask", one_mask, "--output", folders["output"],
        "--batch_size", "3", *options,
    )  # fmt: skip
    assert code == 0 and "done 3, skipped 0 (output exists), failed 0;" in out
    for name in NAMES:
        single = folders["output"].parent / f"single_{name}.png"
        assert run(capsys, "inpaint", folders["images"] / f"{name}.png", one_mask, single, *options)[0] == 0
        np.testing.assert_array_equal(
            np.asarray(PIL.Image.open(folders["output"] / f"{name}.png")), np.asarray(PIL.Image.open(single))
        )


@pytest.mark.parametrize("case", ["missing_folder", "output_is_a_file", "no_pair"])
def test_bad_folder_arguments_exit_two(case: str, folders: dict[str, Path], capsys, tmp_path: Path) -> None:
    images, masks, output = folders["images"], folders["masks"], folders["output"]
    if case == "missing_folder":
        masks = tmp_path / "no_masks"
    elif case == "output_is_a_file":
        output.write_text("x", encoding="utf-8")
    else:
        masks = tmp_path / "empty"
        masks.mkdir()
    code, _, err = run(capsys, "inpaint", "--image", images, "--mask", masks, "--output", output)
    (line,) = [line for line in err.splitlines() if line.startswith("strdiff ")]
    assert code == 2 and line.startswith("strdiff inpaint: error:")


def test_accelerate_launch_two_processes_writes_each_output_once(folders: dict[str, Path], checkpoint: Path) -> None:
    # `accelerate launch --cpu` alone starts one process without an MPI hostfile: the torchrun launcher on the CPU.
    command = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "diffusers_strdiff.cli", "inpaint", "--image", str(folders["images"]), "--mask", str(folders["masks"]),
        "--output", str(folders["output"]), "--checkpoint", str(checkpoint), *FEW_STEPS, "--batch_size", "1",
    ]  # fmt: skip
    environment = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment)  # a loaded machine
    summaries = [line for line in process.stdout.splitlines() if line.startswith("done ")]
    assert summaries and summaries[0].startswith("done 3, skipped 0 (output exists), failed 1;"), process.stderr[
        -3000:
    ]
    assert len(summaries) == 1  # one combined summary, from the main process
    assert process.stdout.count("failed: broken.png") == 1
    assert sorted(path.name for path in folders["output"].iterdir()) == [f"{name}.png" for name in sorted(NAMES)]


def test_ctrl_c_stops_after_the_current_batch(
    folders: dict[str, Path], checkpoint: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, masks, output = folders["images"], folders["masks"], folders["output"]
    (images / "broken.png").unlink()
    (images / "unmatched.png").unlink()
    for index in range(9):
        shutil.copy(images / "bridge.png", images / f"copy{index}.png")
        shutil.copy(masks / "bridge.png", masks / f"copy{index}.png")

    written_so_far = []

    def save_and_interrupt(*args, **kwargs) -> None:  # a real SIGINT, as Ctrl-C sends it, right after the first output
        save_image(*args, **kwargs)
        written_so_far.append(args[1])
        if len(written_so_far) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(batch_inpaint, "save_image", save_and_interrupt)
    code, out, err = run(
        capsys, "inpaint", "--image", images, "--mask", masks, "--output", output, "--checkpoint", checkpoint,
        *FEW_STEPS, "--batch_size", "2",
    )  # fmt: skip
    assert code == 130
    assert "stopping after the current batch" in err
    written = sorted(output.iterdir())
    assert all(path.suffix == ".png" for path in written)  # no temporary file left
    for path in written:
        PIL.Image.open(path).load()  # every output is whole
    assert len(written) == 2  # the batch in flight was finished, no other was started
    assert "done 2, skipped 0 (output exists), failed 0;" in out
    assert "interrupted: 10 image(s) not started" in out
