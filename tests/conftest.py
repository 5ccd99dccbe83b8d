from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield


def load_fixture(name: str) -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / f"{name}.safetensors")


@pytest.fixture(scope="module")
def one_thread() -> None:
    """One intra-op thread: tiny convolutions are several times slower with 2 OpenMP threads on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_images(folder: Path, count: int, seed: int, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        low = (rng.random((5, 5, 3)) * 255).astype(np.uint8)
        size = sizes[index % len(sizes)]
        Image.fromarray(low).resize(size, Image.Resampling.BICUBIC).save(folder / f"image_{index:02d}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    # One image smaller than the 32 px crops (resized up), the others larger (cropped).
    _write_images(root / "train", 8, seed=0, sizes=[(48, 40), (40, 56), (24, 30), (64, 48)])
    (root / "train" / "notes.txt").write_text("not an image")
    (root / "train" / "broken.png").write_bytes(b"not a png either")
    _write_images(root / "validation", 4, seed=1, sizes=[(40, 40), (64, 48)])
    (root / "empty").mkdir()
    masks = root / "masks"
    masks.mkdir()
    hole = np.zeros((64, 64), dtype=np.uint8)
    hole[16:48, 8:40] = 255  # white = hole
    Image.fromarray(hole).save(masks / "mask.png")
    return {
        "root": root,
        "cache": root / "cache",
        **{name: root / name for name in ("train", "validation", "empty", "masks")},
    }
