"""Hostile and careless input (issue 14): every case ends in right pixels, a one-line error, or an intact old file."""

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_strdiff import BUNDLED_EXAMPLES
from diffusers_strdiff.cli import main
from diffusers_strdiff.image_io import MAX_IMAGE_PIXELS, check_output_path, load_image, save_image
from diffusers_strdiff.training import list_image_files

from .test_pipeline import tiny_pipeline

PHOTO, MASK = BUNDLED_EXAMPLES / "bridge.png", BUNDLED_EXAMPLES / "bridge_mask.png"
FEW_STEPS = ["--sampler", "posterior", "--steps", "3", "--no_resampling"]


@pytest.fixture(scope="module")
def pipeline():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    tiny_pipeline().save_pretrained(folder)
    return folder


def run_cli(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, list[str]]:
    """Runs `strdiff ARGS` in this process; returns the exit code and the stderr lines that are not progress bars."""
    code = main([str(arg) for arg in args])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("strdiff ")]
    return code, lines


def write_png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims `width` x `height` (1-bit gray) with no pixel data: opening it reads only that."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------------------------------- modes


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 10, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    PIL.Image.fromarray(values).save(path)
    assert PIL.Image.open(path).mode == "I;16"
    assert np.asarray(load_image(path, "L")).tolist() == [[0, 10, 128, 255]]
    rgb = np.asarray(load_image(path, "RGB"))
    assert rgb.shape == (1, 4, 3) and rgb[..., 0].tolist() == rgb[..., 2].tolist() == [[0, 10, 128, 255]]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[0, 257 * 10, 65535]], dtype=np.int32), [[0, 10, 255]]),  # "I" within 16 bits: scaled from 65535
        (np.array([[-100, 0, 155]], dtype=np.int32), [[0, 100, 255]]),  # "I" outside: scaled from its range
        (np.array([[0.0, 0.2, 1.0]], dtype=np.float32), [[0, 51, 255]]),  # "F" in [0, 1]
        (np.array([[-1.0, 0.0, 4.0]], dtype=np.float32), [[0, 51, 255]]),  # "F" outside: scaled from its range
    ],
    ids=["I-16bit", "I-range", "F-unit", "F-range"],
)
def test_32_bit_modes_are_scaled(values: np.ndarray, expected: list[list[int]], tmp_path: Path) -> None:
    path = tmp_path / "wide.tif"
    PIL.Image.fromarray(values).save(path)
    assert PIL.Image.open(path).mode in ("I", "F")
    assert np.asarray(load_image(path, "L")).tolist() == expected


def test_transparency_is_composited(tmp_path: Path) -> None:
    rgba = PIL.Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "rgba.png")
    assert np.asarray(load_image(tmp_path / "rgba.png", "RGB")).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    mask = PIL.Image.new("LA", (2, 1), (255, 255))
    mask.putpixel((1, 0), (255, 0))
    mask.save(tmp_path / "mask.png")
    assert np.asarray(load_image(tmp_path / "mask.png", "L")).tolist() == [[255, 0]]  # transparent = not painted
    palette = PIL.Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 255, 0, 255, 0])
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png", transparency=1)
    assert np.asarray(load_image(tmp_path / "palette.png", "RGB")).tolist() == [[[0, 0, 255], [255, 255, 255]]]


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    PIL.Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    red = np.asarray(load_image(tmp_path / "cmyk.jpg", "RGB")).astype(int)
    assert red.shape == (8, 8, 3) and (np.abs(red - [255, 0, 0]) <= 8).all()


def exif_rotated_jpeg(path: Path) -> PIL.Image.Image:
    """Writes a 48x32 (stored) JPEG with EXIF orientation 6; returns the 32x48 image as viewers show it."""
    displayed = PIL.Image.open(PHOTO).convert("RGB").resize((32, 48))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # viewers rotate the stored pixels 90 degrees clockwise
    displayed.transpose(PIL.Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    return displayed


def test_exif_orientation_is_applied(tmp_path: Path, capsys: pytest.CaptureFixture, checkpoint: Path) -> None:
    photo = tmp_path / "photo.jpg"
    displayed = exif_rotated_jpeg(photo)
    assert PIL.Image.open(photo).size == (48, 32)
    loaded = load_image(photo)
    assert loaded.size == (32, 48)
    assert np.abs(np.asarray(loaded).astype(int) - np.asarray(displayed)).mean() < 4  # JPEG noise only

    fill = np.zeros((48, 32), dtype=np.uint8)
    fill[30:40, 8:20] = 255  # drawn on the photo as displayed: near the bottom
    PIL.Image.fromarray(fill).save(tmp_path / "mask.png")
    output = tmp_path / "out.png"
    code, lines = run_cli(
        capsys, "inpaint", photo, tmp_path / "mask.png", output, "--checkpoint", checkpoint, *FEW_STEPS
    )
    assert (code, lines) == (0, [])
    result = np.asarray(PIL.Image.open(output))
    assert result.shape == (48, 32, 3)
    assert np.array_equal(result[fill == 0], np.asarray(loaded)[fill == 0])

    PIL.Image.fromarray(fill.T.copy()).save(tmp_path / "stored_mask.png")  # the stored (unrotated) size
    code, lines = run_cli(capsys, "inpaint", photo, tmp_path / "stored_mask.png", output, "--checkpoint", checkpoint)
    assert code == 2 and len(lines) == 1 and "48x32 but the image is 32x48" in lines[0]


# ----------------------------------------------------------------------------------------------------------- size


@pytest.mark.parametrize("size", [(15000, 15000), (9000, 6000)], ids=["pil-bomb", "over-limit"])
def test_oversized_image_is_refused_in_one_line(size: tuple[int, int], tmp_path: Path, capsys) -> None:
    path = tmp_path / "huge.png"
    write_png_header(path, *size)
    with pytest.raises(ValueError, match="limit") as error:
        load_image(path)
    assert "\n" not in str(error.value)
    code, lines = run_cli(capsys, "inpaint", path, MASK, tmp_path / "out.png")
    assert code == 2 and len(lines) == 1 and "limit" in lines[0] and str(path) in lines[0]
    if size == (9000, 6000):
        assert f"{MAX_IMAGE_PIXELS:,}" in lines[0]


def test_large_image_is_inpainted_downscaled(tmp_path: Path, capsys: pytest.CaptureFixture, checkpoint: Path) -> None:
    output = tmp_path / "out.png"
    code = main(["inpaint", str(PHOTO), str(MASK), str(output), "--checkpoint", str(checkpoint), "--max_side", "64"])
    assert code == 0
    assert "160x128 px is larger than max_side 64: inpainted at 64x51" in capsys.readouterr().out
    photo, result = np.asarray(PIL.Image.open(PHOTO)), np.asarray(PIL.Image.open(output))
    fill = np.asarray(PIL.Image.open(MASK)) >= 128
    assert result.shape == photo.shape
    assert np.array_equal(result[~fill], photo[~fill]) and not np.array_equal(result[fill], photo[fill])


# ----------------------------------------------------------------------------------------------------------- pipeline


def nan_inputs() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
    mask = np.zeros((24, 32, 1), dtype=np.float32)
    mask[6:14, 8:20] = 1
    return image, mask


def test_nan_under_the_hole_is_never_read(pipeline) -> None:
    image, mask = nan_inputs()
    poisoned = image.copy()
    poisoned[8, 10] = np.nan
    poisoned[12, 15, 1] = np.inf

    def run(pixels: np.ndarray) -> np.ndarray:
        generator = torch.Generator().manual_seed(0)
        return pipeline(pixels, mask, num_inference_steps=None, generator=generator, output_type="np").images

    clean, result = run(image), run(poisoned)
    assert np.isfinite(result).all()
    np.testing.assert_array_equal(result, clean)


@pytest.mark.parametrize("where", ["known_region", "mask"])
def test_non_finite_known_pixels_or_mask_raise(where: str, pipeline) -> None:
    image, mask = nan_inputs()
    (image if where == "known_region" else mask)[0, 0] = np.nan
    with pytest.raises(ValueError, match="`image` holds non-finite" if where == "known_region" else "`mask_image`"):
        pipeline(image, mask, output_type="np")


def test_list_of_pil_images_and_mixed_sizes(pipeline, tmp_path: Path) -> None:
    PIL.Image.open(PHOTO).resize((32, 24)).save(tmp_path / "a.png")
    from_file, in_memory = PIL.Image.open(tmp_path / "a.png"), PIL.Image.new("RGB", (32, 24), "gray")
    mask = PIL.Image.new("L", (32, 24), 0)
    mask.paste(255, (8, 6, 20, 14))
    output = pipeline([from_file, in_memory], mask, num_inference_steps=None, output_type="np")
    assert output.images.shape == (2, 24, 32, 3)
    with pytest.raises(ValueError, match=r"`image` is a list of images of different sizes .*32x24, 20x24"):
        pipeline([from_file, in_memory.resize((20, 24))], mask)


# ----------------------------------------------------------------------------------------------------------- output


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    old = tmp_path / "out.png"
    PIL.Image.new("RGB", (4, 4), "red").save(old)
    old_bytes = old.read_bytes()
    # A real file-size limit: the noise PNG (~12 kB) cannot be written; SIGXFSZ ignored turns that into an OSError.
    script = f"""
import resource, signal
import numpy as np, PIL.Image
from diffusers_strdiff.image_io import save_image
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
noise = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
try:
    save_image(noise, {str(old)!r})
except OSError as error:
    print("failed:", error)
"""
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith("failed:")
    assert old.read_bytes() == old_bytes
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


def test_save_image_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "new" / "out.png"
    save_image(PIL.Image.new("L", (3, 2), 7), path)
    assert np.asarray(PIL.Image.open(path)).tolist() == [[7, 7, 7], [7, 7, 7]]
    assert sorted(path.parent.iterdir()) == [path]


@pytest.mark.parametrize("case", ["extension", "folder_is_a_file", "structure_extension"])
def test_bad_output_fails_before_any_network_call(case: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    output, extra = tmp_path / "out.png", []
    if case == "extension":
        output = tmp_path / "out.xyz"
    elif case == "folder_is_a_file":
        output = tmp_path / "a_file" / "out.png"
    else:
        extra = ["--structure_output", str(tmp_path / "structure.nope")]
    with silent_server() as server:
        started = time.perf_counter()
        code, lines = run_cli(capsys, "inpaint", PHOTO, MASK, output, "--checkpoint", "someone/some-repo", *extra)
        assert time.perf_counter() - started < 5
        assert server.connections == 0
    assert code == 2 and len(lines) == 1
    assert ("is not a folder" if case == "folder_is_a_file" else "no image extension") in lines[0]
    with pytest.raises(ValueError, match="no image extension"):
        check_output_path(tmp_path / "out.xyz")


# ----------------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("device", ["bogus", "cuda", "cuda:7"])
def test_unavailable_device_exits_two(device: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, lines = run_cli(capsys, "inpaint", PHOTO, MASK, tmp_path / "out.png", "--device", device)
    assert code == 2 and len(lines) == 1 and f"--device {device!r}" in lines[0] and "available here: cpu" in lines[0]
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("damage", ["truncated_safetensors", "missing_config", "garbage_index"])
def test_damaged_checkpoint_exits_two(damage: str, checkpoint: Path, tmp_path: Path, capsys) -> None:
    damaged = shutil.copytree(checkpoint, tmp_path / "damaged")
    if damage == "truncated_safetensors":
        weights = damaged / "texture_unet" / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "missing_config":
        (damaged / "texture_unet" / "config.json").unlink()
    else:
        (damaged / "model_index.json").write_text("{not json", encoding="utf-8")
    code, lines = run_cli(capsys, "inpaint", PHOTO, MASK, tmp_path / "out.png", "--checkpoint", damaged)
    assert code == 2 and len(lines) == 1 and f"cannot load checkpoint {damaged}" in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_convert_to_an_existing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    released, target = tmp_path / "model.pth", tmp_path / "target"
    released.write_bytes(b"anything")
    target.write_text("precious", encoding="utf-8")
    code, lines = run_cli(capsys, "convert", "--checkpoint", released, "--output_dir", target)
    assert code == 2 and lines == [f"strdiff convert: error: --output_dir {target}: {target} is a file, not a folder"]
    assert target.read_text(encoding="utf-8") == "precious"


class silent_server:  # noqa: N801 (used as a context manager, like `open`)
    """A TCP server on 127.0.0.1 that accepts connections and never answers; counts the connections."""

    def __enter__(self) -> "silent_server":
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted.append(connection)

    def __exit__(self, *exc_info: object) -> None:
        self.socket.close()
        for connection in self.accepted:
            connection.close()


def test_hub_id_without_answer_times_out_with_a_hint(tmp_path: Path) -> None:
    with silent_server() as server:
        environment = {
            **os.environ,
            "HF_ENDPOINT": f"http://127.0.0.1:{server.port}",
            "HF_HUB_DOWNLOAD_TIMEOUT": "1",
            "HF_HOME": str(tmp_path / "hf_home"),
        }
        environment.pop("HF_HUB_OFFLINE", None)
        command = [sys.executable, "-m", "diffusers_strdiff.cli", "inpaint", str(PHOTO), str(MASK)]
        command += [str(tmp_path / "out.png"), "--checkpoint", "someone/some-repo"]
        started = time.perf_counter()
        process = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
        elapsed = time.perf_counter() - started
        assert server.connections > 0
    assert process.returncode == 2, process.stderr
    (line,) = [line for line in process.stderr.splitlines() if line.startswith("strdiff ")]
    assert "cannot load checkpoint someone/some-repo" in line and "HF_HUB_OFFLINE=1" in line
    assert elapsed < 60


# ----------------------------------------------------------------------------------------------------------- training


def test_training_folder_with_a_truncated_image(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a.png", "b.png"):
        shutil.copy(PHOTO, tmp_path / name)
    (tmp_path / "broken.png").write_bytes(PHOTO.read_bytes()[:400])
    with caplog.at_level("WARNING"):
        files = list_image_files(tmp_path, "--train_data_dir")
    assert files == [tmp_path / "a.png", tmp_path / "b.png"]
    (warning,) = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert "skipping 1 file(s)" in warning and "broken.png" in warning
