# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""
`strdiff inpaint` on images and on folders of images.

* [`inpaint_images`]: images of one size through the pipeline in one call, each with its own generator seeded with
  the run's seed (so a batch equals the single-image calls), downscaled to `max_side` and pasted back at full size.
* [`plan_folder`] / [`run_folder`]: the folder run: masks matched to images by file stem (or one mask for all),
  outputs already present skipped, images of one size batched, each output written atomically, unreadable files
  counted as failed without stopping the run, Ctrl-C honoured after the current batch, and under `accelerate launch`
  the pairs split between the processes with one combined summary.
"""

import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image
import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .callbacks import DiscriminatorGatedResampling
from .image_io import (
    binarize_mask,
    check_output_path,
    displayed_size,
    downscale_for_inpainting,
    fit_within,
    load_image,
    paste_fill,
    save_image,
)
from .masks import MASK_IMAGE_EXTENSIONS
from .pipelines import StrDiffusionInpaintPipeline
from .utils import process_state

IMAGE_EXTENSIONS: tuple[str, ...] = MASK_IMAGE_EXTENSIONS
"""File extensions (lower case) read from the image and mask folders."""

EXIT_INTERRUPTED = 130
"""Exit code of a folder run stopped by Ctrl-C (the shell's convention for SIGINT)."""


@dataclass(frozen=True)
class InpaintSettings:
    """How each image is inpainted: sampler steps (`None` = all T), seed, resampling, longest side, torch device."""

    steps: int | None
    seed: int
    resampling: bool
    max_side: int
    device: str


@dataclass(frozen=True)
class InpaintResult:
    """One inpainted image at the input's size and its predicted structure map (`None` without structure network)."""

    image: PIL.Image.Image
    structure: PIL.Image.Image | None
    nfe: int


def check_mask(image: PIL.Image.Image, mask: PIL.Image.Image, mask_name: str) -> None:
    """Raises a one-line `ValueError` when `mask` (mode "L") does not fit `image` or has nothing to fill."""
    if mask.size != image.size:
        raise ValueError(
            f"{mask_name} is {mask.width}x{mask.height} but the image is {image.width}x{image.height} "
            "(as displayed, after EXIF orientation); they must have the same size."
        )
    if binarize_mask(mask).getextrema()[1] == 0:
        raise ValueError(f"{mask_name} has no pixel to fill (white, >= 128, marks the region to inpaint).")


def downscale_notice(size: tuple[int, int], max_side: int) -> str | None:
    """What the `max_side` policy does to an image of `size` (width, height), or `None` when it fits."""
    if max(size) <= max_side:
        return None
    work_width, work_height = fit_within(size, max_side)
    return (
        f"{size[0]}x{size[1]} px is larger than max_side {max_side}: inpainted at {work_width}x{work_height} and the "
        "fill upscaled into the original (known pixels unchanged)"
    )


def inpaint_images(
    pipeline: StrDiffusionInpaintPipeline,
    images: list[PIL.Image.Image],
    masks: list[PIL.Image.Image],
    settings: InpaintSettings,
) -> list[InpaintResult]:
    """
    Inpaints images of one size in one pipeline call.

    Args:
        pipeline: the loaded pipeline, on `settings.device`.
        images: `"RGB"` images of one size.
        masks: `"L"` masks, one per image, white (>= 128) = fill.
        settings: steps, seed (every image gets a generator seeded with it, as its single-image call would), ...

    Returns:
        One [`InpaintResult`] per image, at the image's size: images larger than `settings.max_side` are inpainted
        downscaled and the fill pasted into the original (see [`~diffusers_strdiff.image_io.paste_fill`]).
    """
    work = [
        downscale_for_inpainting(image, mask, settings.max_side) for image, mask in zip(images, masks, strict=True)
    ]
    output = pipeline(
        image=[image for image, _ in work],
        mask_image=[mask for _, mask in work],
        num_inference_steps=settings.steps,
        generator=[torch.Generator(settings.device).manual_seed(settings.seed) for _ in images],
        callback_on_step_end=DiscriminatorGatedResampling() if settings.resampling else None,
    )
    results = []
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        structure = output.structures[index] if output.structures is not None else None
        if structure is not None and structure.size != image.size:
            structure = structure.resize(image.size, PIL.Image.Resampling.BICUBIC)
        results.append(InpaintResult(paste_fill(image, mask, output.images[index]), structure, output.nfe["total"]))
    return results


def concat_strip(image: PIL.Image.Image, mask: PIL.Image.Image, result: PIL.Image.Image) -> PIL.Image.Image:
    """The `input | mask | output` strip (RGB, three times the image's width) written by `--concat`."""
    strip = PIL.Image.new("RGB", (3 * image.width, image.height))
    for position, panel in enumerate((image, binarize_mask(mask).convert("RGB"), result)):
        strip.paste(panel, (position * image.width, 0))
    return strip


# ----------------------------------------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class InpaintPair:
    """One image of a folder run, its mask and where its outputs go."""

    name: str
    image: Path
    mask: Path
    output: Path
    structure_output: Path | None
    concat_output: Path | None


@dataclass
class FolderPlan:
    """The pairs of a folder run, split into those to inpaint and those whose output exists, plus the unmatched files."""

    todo: list[InpaintPair]
    skipped: list[InpaintPair]
    images_without_mask: list[Path]
    masks_without_image: list[Path]


@dataclass
class FolderSummary:
    """What a folder run (or one process of it) did: names done, names skipped, failures (name -> reason)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_started: int = 0
    seconds: float = 0.0

    def merge(self, other: "FolderSummary") -> None:
        """Adds another process's counts to this one (the wall time is the longest of the two)."""
        self.done += other.done
        self.skipped += other.skipped
        self.failed.update(other.failed)
        self.not_started += other.not_started
        self.seconds = max(self.seconds, other.seconds)

    def report(self, interrupted: bool) -> str:
        """The summary printed at the end of a run: one line of counts, then one line per failure."""
        per_image = f"{self.seconds / len(self.done):.2f} s per image" if self.done else "no image inpainted"
        lines = [
            f"done {len(self.done)}, skipped {len(self.skipped)} (output exists), failed {len(self.failed)}; "
            f"{per_image}, {self.seconds:.1f} s in all."
        ]
        if interrupted:
            lines.append(f"interrupted: {self.not_started} image(s) not started; run the same command to resume.")
        lines += [f"failed: {name}: {reason}" for name, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def _image_files(folder: Path) -> dict[str, Path]:
    """The image files of `folder` (not recursive, hidden files ignored) by stem; a stem used twice is an error."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.stem in files:
            raise ValueError(f"{folder} holds two images named {path.stem!r} ({files[path.stem].name}, {path.name}).")
        files[path.stem] = path
    return files


def plan_folder(
    image_dir: Path,
    mask: Path,
    output_dir: Path,
    overwrite: bool = False,
    save_structure: bool = False,
    concat: bool = False,
) -> FolderPlan:
    """
    Matches the images of `image_dir` with masks and output paths.

    Args:
        image_dir: folder of images (extensions in `IMAGE_EXTENSIONS`, not recursive).
        mask: a folder of masks named like the images (same stem, any image extension), or one mask file for all.
        output_dir: outputs go to `output_dir/<stem>.png`, and with `save_structure` / `concat` to
            `output_dir/structure/<stem>.png` / `output_dir/concat/<stem>.png`.
        overwrite: inpaint images whose output exists (default: skip them, so that a rerun resumes).

    Raises:
        ValueError: a missing folder or mask, an output folder that is a file, a stem used twice, or no pair at all.
    """
    if not image_dir.is_dir():
        raise ValueError(f"image folder not found: {image_dir}")
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output {output_dir} is a file; with an image folder it must be a folder.")
    images = _image_files(image_dir)
    if not images:
        raise ValueError(f"image folder {image_dir} holds no image ({', '.join(IMAGE_EXTENSIONS)}).")
    if mask.is_dir():
        masks = _image_files(mask)
        matched = {stem: masks[stem] for stem in images if stem in masks}
        masks_without_image = [path for stem, path in masks.items() if stem not in images]
    elif mask.is_file():
        matched, masks_without_image = dict.fromkeys(images, mask), []
    else:
        raise ValueError(f"mask not found: {mask}")
    if not matched:
        raise ValueError(f"no image of {image_dir} has a mask in {mask} (masks are matched by file stem).")
    plan = FolderPlan([], [], [path for stem, path in images.items() if stem not in matched], masks_without_image)
    for stem, mask_path in matched.items():
        pair = InpaintPair(
            name=images[stem].name,
            image=images[stem],
            mask=mask_path,
            output=output_dir / f"{stem}.png",
            structure_output=output_dir / "structure" / f"{stem}.png" if save_structure else None,
            concat_output=output_dir / "concat" / f"{stem}.png" if concat else None,
        )
        (plan.skipped if pair.output.exists() and not overwrite else plan.todo).append(pair)
    if plan.todo:
        check_output_path(plan.todo[0].output, "--output")
    return plan


class _StopAfterBatch:
    """While active, the first Ctrl-C (SIGINT) only asks the run to stop after its current batch; a second one stops
    it at once (outputs are written atomically, so no partial file is left either way)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous_handler = None

    def __enter__(self) -> "_StopAfterBatch":
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after the current batch (Ctrl-C again to stop now)", file=sys.stderr, flush=True)


def _batches(
    pairs: list[InpaintPair], batch_size: int, max_side: int, summary: FolderSummary
) -> Iterator[list[InpaintPair]]:
    """Groups the pairs by the size they are inpainted at (read from file headers) into batches of `batch_size`;
    pairs whose files cannot be opened are recorded in `summary.failed`."""
    groups: dict[tuple[int, int], list[InpaintPair]] = {}
    for pair in pairs:
        try:
            size = displayed_size(pair.image, "image")
        except (OSError, ValueError) as error:
            summary.failed[pair.name] = str(error)
            continue
        work_size = size if max(size) <= max_side else fit_within(size, max_side)
        groups.setdefault(work_size, []).append(pair)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def _inpaint_batch(
    pipeline: StrDiffusionInpaintPipeline, batch: list[InpaintPair], settings: InpaintSettings, summary: FolderSummary
) -> None:
    """Loads, inpaints and writes one batch; a pair that fails (file, size, pipeline or write) is recorded and skipped."""
    loaded: list[tuple[InpaintPair, PIL.Image.Image, PIL.Image.Image]] = []
    for pair in batch:
        try:
            image = load_image(pair.image, "RGB", "image")
            mask = load_image(pair.mask, "L", "mask")
            check_mask(image, mask, f"mask {pair.mask}")
        except (OSError, ValueError) as error:
            summary.failed[pair.name] = str(error)
            continue
        loaded.append((pair, image, mask))
    if not loaded:
        return
    try:
        results = inpaint_images(
            pipeline, [image for _, image, _ in loaded], [mask for _, _, mask in loaded], settings
        )
    except ValueError as error:
        if len(loaded) == 1:
            summary.failed[loaded[0][0].name] = str(error)
            return
        for pair, _, _ in loaded:  # find the pair(s) the pipeline refuses, inpaint the others
            _inpaint_batch(pipeline, [pair], settings, summary)
        return
    for (pair, image, mask), result in zip(loaded, results, strict=True):
        try:
            save_image(result.image, pair.output)
            if pair.structure_output is not None and result.structure is not None:
                save_image(result.structure, pair.structure_output)
            if pair.concat_output is not None:
                save_image(concat_strip(image, mask, result.image), pair.concat_output)
        except (OSError, ValueError) as error:
            summary.failed[pair.name] = f"cannot write {pair.output}: {error}"
            continue
        summary.done.append(pair.name)


def run_folder(
    pipeline: StrDiffusionInpaintPipeline, plan: FolderPlan, settings: InpaintSettings, batch_size: int
) -> int:
    """
    Inpaints the pairs of `plan` still to do, with a progress bar, and prints the summary.

    Under `accelerate launch` the pairs are split between the processes (`PartialState.split_between_processes`),
    each inpainting its share on its own device; the main process prints the unmatched files, its progress bar and
    the combined summary.

    Returns:
        The exit code: 0 when every pair succeeded (or was skipped), 1 when some failed, `EXIT_INTERRUPTED` after
        Ctrl-C.
    """
    state = process_state()
    if state.is_main_process:
        for path in plan.images_without_mask:
            print(f"no mask for image {path}: skipped", file=sys.stderr)
        for path in plan.masks_without_image:
            print(f"no image for mask {path}: ignored", file=sys.stderr)
    summary = FolderSummary(skipped=[pair.name for pair in plan.skipped] if state.is_main_process else [])
    started = time.perf_counter()
    with state.split_between_processes(plan.todo) as pairs, _StopAfterBatch() as stop:
        batches = list(_batches(pairs, batch_size, settings.max_side, summary))
        progress = tqdm(
            total=len(pairs),
            initial=len(summary.failed),
            unit="image",
            desc="inpainting",
            disable=not state.is_main_process,
        )
        with progress:
            for batch in batches:
                if stop.requested:
                    break
                _inpaint_batch(pipeline, batch, settings, summary)
                progress.update(len(batch))
        summary.not_started = len(pairs) - len(summary.done) - len(summary.failed)
        interrupted = stop.requested
    summary.seconds = time.perf_counter() - started
    if state.num_processes > 1:
        summaries = gather_object([(summary, interrupted)])
        summary, interrupted = FolderSummary(), any(stopped for _, stopped in summaries)
        for part, _ in summaries:
            summary.merge(part)
    if state.is_main_process:
        print(summary.report(interrupted))
    if interrupted:
        return EXIT_INTERRUPTED
    return 1 if summary.failed else 0
