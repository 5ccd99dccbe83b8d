from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusers_strdiff.masks import (
    HOLE_RATIO_BUCKETS,
    generate_irregular_mask,
    hole_ratio,
    load_mask,
    load_mask_files,
)


def test_buckets_are_the_papers():
    assert HOLE_RATIO_BUCKETS == {"0-20": (0.0, 0.2), "20-40": (0.2, 0.4), "40-60": (0.4, 0.6)}


@pytest.mark.parametrize("bucket", sorted(HOLE_RATIO_BUCKETS))
def test_every_draw_lands_in_its_bucket(bucket: str):
    lower, upper = HOLE_RATIO_BUCKETS[bucket]
    rng = np.random.default_rng(1234)
    ratios = np.array([hole_ratio(generate_irregular_mask(256, 256, rng, bucket=bucket)) for _ in range(1000)])
    assert np.all(ratios > lower) and np.all(ratios <= upper)
    assert ratios.min() > 0
    # The draws spread over the bucket rather than hugging one edge.
    assert ratios.max() - ratios.min() > 0.5 * (upper - lower)


def test_unbucketed_masks_are_binary_float32_and_never_empty():
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(200):
        mask = generate_irregular_mask(256, 256, rng)
        assert mask.dtype == np.float32 and mask.shape == (256, 256)
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
        ratios.append(hole_ratio(mask))
    assert min(ratios) > 0
    assert 0.2 < np.mean(ratios) < 0.4  # LaMa's presets average 0.23 / 0.30 / 0.39


def test_same_seed_same_mask_different_seeds_differ():
    first = generate_irregular_mask(128, 96, generator=7, bucket="20-40")
    again = generate_irregular_mask(128, 96, generator=np.random.default_rng(7), bucket="20-40")
    np.testing.assert_array_equal(first, again)
    others = [generate_irregular_mask(128, 96, generator=seed, bucket="20-40") for seed in range(8, 12)]
    assert all(not np.array_equal(first, other) for other in others)


@pytest.mark.parametrize(("height", "width"), [(64, 200), (300, 90), (1, 1), (17, 31)])
def test_non_square_shapes(height: int, width: int):
    mask = generate_irregular_mask(height, width, generator=0)
    assert mask.shape == (height, width) and mask.dtype == np.float32
    assert hole_ratio(mask) > 0


@pytest.mark.parametrize(("height", "width"), [(128, 384), (512, 160)])
def test_non_square_shapes_hit_buckets(height: int, width: int):
    for bucket, (lower, upper) in HOLE_RATIO_BUCKETS.items():
        mask = generate_irregular_mask(height, width, generator=3, bucket=bucket)
        assert mask.shape == (height, width)
        assert lower < hole_ratio(mask) <= upper


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"height": 0, "width": 8}, "height"),
        ({"height": 8, "width": -1}, "width"),
        ({"height": 8.0, "width": 8}, "height"),
        ({"height": 8, "width": 8, "bucket": "60-80"}, "bucket"),
        ({"height": 8, "width": 8, "max_tries": 0}, "max_tries"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, argument: str):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        generate_irregular_mask(**kwargs)


def test_unreachable_bucket_raises_after_max_tries():
    # A 1x1 mask is either empty or fully hole: never in 0-20.
    with pytest.raises(RuntimeError, match="tries"):
        generate_irregular_mask(1, 1, generator=0, bucket="0-20", max_tries=5)


def test_hole_ratio():
    assert hole_ratio(np.array([[0.0, 1.0], [1.0, 1.0]])) == 0.75
    assert hole_ratio(np.array([0, 255, 0, 0], dtype=np.uint8)) == 0.25
    with pytest.raises(ValueError, match="`mask`"):
        hole_ratio(np.zeros((0, 3)))


def test_load_mask_files_and_load_mask(tmp_path: Path):
    pixels = np.zeros((40, 60), dtype=np.uint8)
    pixels[:20, :30] = 255
    Image.fromarray(pixels).save(tmp_path / "b.png")
    Image.fromarray(255 - pixels).convert("RGB").save(tmp_path / "a.PNG")
    (tmp_path / "notes.txt").write_text("not a mask")
    (tmp_path / "sub.png").mkdir()

    files = load_mask_files(tmp_path)
    assert [path.name for path in files] == ["a.PNG", "b.png"]

    mask = load_mask(files[1], (20, 30))
    assert mask.dtype == np.float32 and mask.shape == (20, 30)
    assert hole_ratio(mask) == 0.25 and mask[0, 0] == 1.0 and mask[-1, -1] == 0.0
    np.testing.assert_array_equal(load_mask(files[0], (20, 30)), 1.0 - mask)
    np.testing.assert_array_equal(load_mask(files[0], (20, 30), invert=True), mask)
    assert load_mask(files[1], 16).shape == (16, 16)


def test_load_mask_files_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="`mask_dir`"):
        load_mask_files(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no mask image"):
        load_mask_files(tmp_path)
