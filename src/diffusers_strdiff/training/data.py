# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Training data: images, crops, flips, masks and structure maps, in an order fixed by the seed."""

import argparse
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import torch
from accelerate.logging import get_logger

from ..image_io import load_image
from ..masks import generate_irregular_mask, load_mask, load_mask_files
from ..structure import TRAINING_CANNY_SIGMA, edge_map, grayscale_map
from ..utils import center_crop_resize, derived_seed
from ..utils import list_image_files as shared_list_image_files
from .arguments import ArgumentPathError, ArgumentValueError

logger = get_logger(__name__, log_level="INFO")


VALIDATION_SEED = 0
"""Seed of the validation masks and noise: validations of different runs and steps see the same draws."""


SCALED_IMAGE_CACHE_SIZE = 1024
"""Decoded, downscaled images each [`InpaintingDataset`] keeps in memory for multi-scale crops (per worker)."""

# First spawn-key entry of the seed sequences, one per independent random stream of a run.
SHUFFLE_STREAM, SAMPLE_STREAM, NOISE_STREAM, VALIDATION_STREAM = range(4)


def list_image_files(folder: str | Path, argument: str) -> list[Path]:
    """
    The readable images of a folder (recursive, sorted by path; see [`~diffusers_strdiff.utils.list_image_files`]).

    Raises:
        ArgumentPathError / ArgumentValueError: no such folder / no readable image in it (the message names
        `argument`).
    """
    try:
        return shared_list_image_files(folder, argument)
    except FileNotFoundError as error:
        raise ArgumentPathError(str(error)) from error
    except ValueError as error:
        raise ArgumentValueError(str(error)) from error


def _image_column(features: datasets.Features, requested: str | None, source: str) -> str:
    image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if requested is not None:
        if requested not in features:
            raise ArgumentValueError(f"--image_column {requested!r} is not a column of {source} ({list(features)}).")
        return requested
    for name in ("image", "img"):
        if name in image_columns:
            return name
    if not image_columns:
        raise ArgumentValueError(f"{source} has no Image column ({list(features)}); pass --image_column.")
    return image_columns[0]


def load_training_images(args: argparse.Namespace) -> tuple[datasets.Dataset, str]:
    """
    The training split as a `datasets.Dataset` with a single image column (not decoded yet), and that column's name.
    """
    if args.train_data_dir is not None:
        files = list_image_files(args.train_data_dir, "--train_data_dir")
        dataset = datasets.load_dataset(
            "imagefolder", data_files={"train": [str(path) for path in files]}, cache_dir=args.cache_dir, split="train"
        )
        source = f"--train_data_dir {args.train_data_dir!r}"
    else:
        try:
            dataset = datasets.load_dataset(
                args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir, split="train"
            )
        except Exception as error:  # any loading failure of a user-named dataset is a bad argument
            raise ArgumentValueError(
                f"--dataset_name {args.dataset_name!r} could not be loaded: {type(error).__name__}: {error}"
            ) from error
        source = f"--dataset_name {args.dataset_name!r}"
    column = _image_column(dataset.features, args.image_column, source)
    return dataset.select_columns([column]), column


def _resize_short_side(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new_size, PIL.Image.Resampling.BILINEAR)


def _structure_sample(pixels: np.ndarray, known_mask: np.ndarray, canny_sigma: float) -> dict[str, torch.Tensor]:
    """One training sample from `(R, R, 3)` uint8 pixels and an `(R, R)` known mask (1 = known)."""
    image = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).float() / 255
    return {
        "image": image,
        "gray": grayscale_map(image),
        "edges": edge_map(image, sigma=canny_sigma),
        "known_mask": torch.from_numpy(np.ascontiguousarray(known_mask, dtype=np.float32))[None],
    }


class MaskSource:
    """
    Known-region masks (1 = known, 0 = hole) of size `resolution`: generated irregular masks in the given hole-ratio
    buckets, or files of a mask folder (white = hole), chosen with a numpy generator.
    """

    def __init__(self, resolution: int, buckets: Sequence[str], mask_dir: str | None = None) -> None:
        self.resolution = resolution
        self.buckets = list(buckets)
        self.files = load_mask_files(mask_dir) if mask_dir is not None else None

    def random(self, rng: np.random.Generator, flip: bool) -> np.ndarray:
        """A random mask; `flip` adds the released 50% horizontal flip of mask files."""
        if self.files is None:
            bucket = self.buckets[int(rng.integers(len(self.buckets)))]
            hole = generate_irregular_mask(self.resolution, self.resolution, generator=rng, bucket=bucket)
        else:
            hole = load_mask(self.files[int(rng.integers(len(self.files)))], self.resolution)
            if flip and rng.random() < 0.5:
                hole = hole[:, ::-1]
        return 1.0 - hole

    def fixed(self, index: int) -> np.ndarray:
        """
        The `index`-th validation mask, the same in every run: file `index` (cyclic), or a generated mask of the
        `index`-th bucket (cyclic) seeded with `VALIDATION_SEED` and `index`.
        """
        if self.files is not None:
            return 1.0 - load_mask(self.files[index % len(self.files)], self.resolution)
        rng = np.random.default_rng(derived_seed(VALIDATION_SEED, VALIDATION_STREAM, index))
        bucket = self.buckets[index % len(self.buckets)]
        return 1.0 - generate_irregular_mask(self.resolution, self.resolution, generator=rng, bucket=bucket)


class InpaintingDataset(torch.utils.data.Dataset):
    """
    Training samples of StrDiffusion: per image, a dict of float32 tensors

    * `image` (3, R, R): RGB in [0, 1] (texture x0),
    * `gray` (1, R, R): its grayscale (structure x0),
    * `edges` (1, R, R): Canny edges of the whole image in {0, 1} (structure mu before masking),
    * `known_mask` (1, R, R): 1 = known, 0 = hole.

    Keys are `epoch * len(dataset) + index` (see [`EpochShuffleSampler`]); the crop, flips and mask of a key come from
    a numpy generator seeded with `(seed, epoch, index)`.

    Crops (`crop`): `"multiscale"` resizes the image so that its short side is drawn uniformly from [resolution,
    max_crop_scale * resolution] (at most its own short side; smaller images are resized up to `resolution`), then
    crops at a random position. The decoded image is kept in memory downscaled to that largest short side (at most
    `SCALED_IMAGE_CACHE_SIZE` images), so large photos are decoded once. `"random"` (released) and `"center"` crop the
    full-resolution image (`resize` first sets its short side to `resolution`).
    """

    def __init__(
        self,
        images: datasets.Dataset,
        image_column: str,
        masks: MaskSource,
        resolution: int,
        seed: int,
        crop: str = "random",
        resize: bool = False,
        random_flip: bool = False,
        canny_sigma: float = TRAINING_CANNY_SIGMA,
        max_crop_scale: float = 4.0,
    ) -> None:
        if crop not in ("multiscale", "random", "center"):
            raise ValueError(f"`crop` must be 'multiscale', 'random' or 'center', got {crop!r}.")
        self.images = images
        self.image_column = image_column
        self.masks = masks
        self.resolution = resolution
        self.seed = seed
        self.crop = crop
        self.resize = resize
        self.random_flip = random_flip
        self.canny_sigma = canny_sigma
        self.max_short_side = max(resolution, round(max_crop_scale * resolution))
        self._scaled_images: OrderedDict[int, PIL.Image.Image] = OrderedDict()

    def __len__(self) -> int:
        return len(self.images)

    def _scaled_image(self, index: int) -> PIL.Image.Image:
        """Image `index` as RGB with its short side at most `max_short_side` (LRU-cached)."""
        if index in self._scaled_images:
            self._scaled_images.move_to_end(index)
            return self._scaled_images[index]
        image = self.images[index][self.image_column].convert("RGB")
        if min(image.size) > self.max_short_side:
            image = _resize_short_side(image, self.max_short_side)
        self._scaled_images[index] = image
        if len(self._scaled_images) > SCALED_IMAGE_CACHE_SIZE:
            self._scaled_images.popitem(last=False)
        return image

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        epoch, index = divmod(int(key), len(self.images))
        rng = np.random.default_rng(derived_seed(self.seed, SAMPLE_STREAM, epoch, index))
        if self.crop == "multiscale":
            image = self._scaled_image(index)
            largest = max(self.resolution, min(image.size))
            image = _resize_short_side(image, int(rng.integers(self.resolution, largest + 1)))
        else:
            image = self.images[index][self.image_column].convert("RGB")
            if self.resize or min(image.size) < self.resolution:
                image = _resize_short_side(image, self.resolution)
        pixels = np.asarray(image)
        height, width = pixels.shape[:2]
        if self.crop != "center":
            top = int(rng.integers(height - self.resolution + 1))
            left = int(rng.integers(width - self.resolution + 1))
        else:
            top, left = (height - self.resolution) // 2, (width - self.resolution) // 2
        pixels = pixels[top : top + self.resolution, left : left + self.resolution]
        if self.random_flip:
            hflip, vflip, transpose = rng.random(3) < 0.5
            if hflip:
                pixels = pixels[:, ::-1]
            if vflip:
                pixels = pixels[::-1]
            if transpose:
                pixels = pixels.transpose(1, 0, 2)
        known_mask = self.masks.random(rng, flip=self.random_flip)
        return _structure_sample(pixels, known_mask, self.canny_sigma)


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """
    Yields the keys `epoch * num_samples + index` of an epoch in an order fixed by `(seed, epoch)`, so that the data
    of a run depend only on the seed. [`set_start`] skips the first samples of the next epoch (resuming mid-epoch).
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch the next iteration yields (also called by accelerate's dataloader)."""
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Makes the next iteration (only) begin at position `start` of the epoch's order."""
        self.start = start

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(derived_seed(self.seed, SHUFFLE_STREAM, self.epoch))
        order = rng.permutation(self.num_samples)[self.start :]
        self.start = 0
        return iter((order + self.epoch * self.num_samples).tolist())

    def __len__(self) -> int:
        return self.num_samples


def load_validation_batch(args: argparse.Namespace, masks: MaskSource) -> dict[str, torch.Tensor]:
    """
    The first `--num_validation_images` of `--validation_data_dir` (sorted by path), centre-cropped and resized
    ([`~diffusers_strdiff.utils.center_crop_resize`]), with fixed masks: a dict of stacked tensors like [`InpaintingDataset`]'s.
    """
    files = list_image_files(args.validation_data_dir, "--validation_data_dir")[: args.num_validation_images]
    samples = []
    for index, path in enumerate(files):
        pixels = np.asarray(center_crop_resize(load_image(path), args.resolution))
        samples.append(_structure_sample(pixels, masks.fixed(index), args.canny_sigma))
    return torch.utils.data.default_collate(samples)


def to_pil(images: torch.Tensor) -> list[PIL.Image.Image]:
    """`(B, 1 or 3, H, W)` float tensors in [0, 1] -> RGB PIL images."""
    images = images.detach().float().clamp(0, 1).cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [PIL.Image.fromarray(pixel_block) for pixel_block in pixels]


def image_grid(columns: Sequence[torch.Tensor]) -> PIL.Image.Image:
    """A grid with one row per sample and one column per `(B, 1 or 3, H, W)` tensor of `columns`."""
    rows = list(zip(*(to_pil(column) for column in columns), strict=True))
    width, height = rows[0][0].size
    grid = PIL.Image.new("RGB", (width * len(columns), height * len(rows)))
    for row_index, row in enumerate(rows):
        for column_index, image in enumerate(row):
            grid.paste(image, (column_index * width, row_index * height))
    return grid
