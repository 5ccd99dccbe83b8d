# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The on-disk cache of method outputs, keyed by method config and input digest."""

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .eval_set import EvalSample
from .methods import InpaintingMethod, MethodRun, _composite, _from_hwc, _to_uint8_hwc


def _input_digest(image: torch.Tensor, mask: torch.Tensor, seed: int) -> str:
    """SHA-256 of what a method sees: the blanked image, the mask and the seed."""
    digest = hashlib.sha256()
    for tensor in (image * (1 - mask), mask):
        digest.update(str(tuple(tensor.shape)).encode() + tensor.float().contiguous().numpy().tobytes())
    digest.update(str(seed).encode())
    return digest.hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(temporary)
    os.replace(temporary, path)


class ResultCache:
    """
    Method outputs on disk: `root/<method>/<config hash>/<sample id>.png` holds the output (the method's 8-bit fill
    in the hole; only the hole is read back, so the entry is exact), `.json` its NFE, compute seconds and the digest
    of the input it was computed from (a changed image, mask, resolution or seed is a miss), and `config.json` the
    method's config.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _paths(self, method: InpaintingMethod, sample_id: str) -> tuple[Path, Path]:
        folder = self.root / method.name / method.config_hash
        return folder / f"{sample_id}.png", folder / f"{sample_id}.json"

    def load(self, method: InpaintingMethod, sample: EvalSample, seed: int) -> MethodRun | None:
        """The cached run of `method` on `sample`, or `None`."""
        image_path, meta_path = self._paths(method, sample.sample_id)
        if not meta_path.is_file() or not image_path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("input_sha256") != _input_digest(sample.image, sample.mask, seed):
            return None
        with Image.open(image_path) as png:
            fill = _from_hwc(np.asarray(png.convert("RGB")))
        if fill.shape != sample.image.shape:
            return None
        return MethodRun(_composite(sample.image, fill, sample.mask), meta["nfe"], meta["seconds"])

    def store(self, method: InpaintingMethod, sample: EvalSample, seed: int, run: MethodRun) -> None:
        """Stores a run (the PNG first, then the JSON that marks the entry complete)."""
        image_path, meta_path = self._paths(method, sample.sample_id)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        config_path = image_path.parent / "config.json"
        if not config_path.is_file():
            text = json.dumps({"name": method.name, "config": method.config}, indent=2, sort_keys=True, default=str)
            _atomic_write(config_path, lambda path: path.write_text(text + "\n", encoding="utf-8"))
        _atomic_write(image_path, lambda path: Image.fromarray(_to_uint8_hwc(run.output)).save(path, format="PNG"))
        meta = {"input_sha256": _input_digest(sample.image, sample.mask, seed), "nfe": run.nfe, "seconds": run.seconds}
        _atomic_write(meta_path, lambda path: path.write_text(json.dumps(meta) + "\n", encoding="utf-8"))
