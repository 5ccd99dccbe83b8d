# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The `strdiff` command: inpaint, convert released checkpoints, evaluate, launch the app."""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .batch_inpaint import InpaintSettings

from .image_io import DEFAULT_MAX_SIDE

SAMPLERS = ("released", "posterior", "posterior_ode")  # the keys of `SAMPLER_PRESETS` (kept import-free here)


THREADS_HELP = (
    "CPU threads (default: $STRDIFF_THREADS, else the cores that other processes leave free, from the load average)."
)


class CommandError(Exception):
    """A user error reported as one line on stderr with exit code 2."""


EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1

#: Hint appended to a failed Hub download.
_OFFLINE_HINT = "without network, set HF_HUB_OFFLINE=1 to use the local cache, or pass a local pipeline folder"


def validate_device(device: str) -> str:
    """Returns `device` when torch can run on it here; raises a one-line `CommandError` naming the usable devices."""
    import torch

    available = ["cpu"]
    if torch.cuda.is_available():
        available += ["cuda"] + [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        available.append("mps")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise CommandError(
            f"--device {device!r} is not a torch device; available here: {', '.join(available)}"
        ) from error
    if parsed.type != "cpu" and (
        parsed.type not in available or (parsed.index is not None and device not in available)
    ):
        raise CommandError(
            f"--device {device!r} is not available in this torch build ({torch.__version__}); "
            f"available here: {', '.join(available)}"
        )
    return device


def load_pipeline(checkpoint: str | None, sampler: str = "released", device: str = "cpu"):
    """
    [`diffusers_strdiff.load_pipeline`] for the command line: Hub requests time out after `HF_HUB_DOWNLOAD_TIMEOUT`
    seconds (default 10) instead of waiting forever, and any failure to load is a `CommandError` (one line; for a
    Hub id it suggests `HF_HUB_OFFLINE=1` or a local folder).
    """
    from .pipelines.loading import DEFAULT_CHECKPOINT
    from .pipelines.loading import load_pipeline as load_inference_pipeline

    location = checkpoint or str(DEFAULT_CHECKPOINT)
    is_local = Path(location).exists()
    if checkpoint is not None and not is_local and (Path(location).suffix or Path(location).is_absolute()):
        raise CommandError(f"checkpoint not found: {location}")
    if not is_local:
        _bound_hub_timeouts()
    try:
        return load_inference_pipeline(location, sampler, device)
    except Exception as error:  # any failure to load a user-named checkpoint is a bad argument
        hint = "" if is_local else f" ({_OFFLINE_HINT})"
        raise CommandError(
            f"cannot load checkpoint {location}: {type(error).__name__}: {one_line(error)}{hint}"
        ) from error


def _bound_hub_timeouts() -> None:
    """
    Gives every request of the shared Hub client a timeout (see `_request_timeout_hook`): some Hub calls made by
    `from_pretrained` pass `timeout=None`, and a server that accepts the connection but never answers would then hang
    the load forever.
    """
    import huggingface_hub

    session = huggingface_hub.get_session()
    hooks = session.event_hooks
    if _request_timeout_hook not in hooks["request"]:
        session.event_hooks = {**hooks, "request": [*hooks["request"], _request_timeout_hook]}


def _request_timeout_hook(request) -> None:
    """An httpx request hook: timeouts left unset become `HF_HUB_DOWNLOAD_TIMEOUT` seconds (default 10)."""
    from huggingface_hub import constants

    timeout = request.extensions.get("timeout", {})
    request.extensions["timeout"] = {
        key: constants.HF_HUB_DOWNLOAD_TIMEOUT if timeout.get(key) is None else timeout[key]
        for key in ("connect", "read", "write", "pool")
    }


def one_line(error: BaseException) -> str:
    """The message of `error` on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _load_input(path: Path, mode: str, name: str):
    from .image_io import load_image

    try:
        return load_image(path, mode, name)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error


def _check_output(path: Path, name: str) -> None:
    from .image_io import check_output_path

    try:
        check_output_path(path, name)
    except ValueError as error:
        raise CommandError(str(error)) from error


def _inpaint_arguments(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The image, mask and output of the positional or the `--image/--mask/--output` form (not both)."""
    paths = []
    for name in ("image", "mask", "output"):
        positional, option = getattr(args, f"{name}_path"), getattr(args, name)
        if positional is not None and option is not None:
            raise CommandError(f"{name} given twice: {positional} and --{name} {option}")
        if positional is None and option is None:
            raise CommandError(f"missing {name}: pass IMAGE MASK OUTPUT or --image, --mask and --output")
        paths.append(positional or option)
    return tuple(paths)


def _inpaint_settings(args: argparse.Namespace, device: str) -> "InpaintSettings":
    from .batch_inpaint import InpaintSettings

    return InpaintSettings(args.steps, args.seed, args.resampling, args.max_side, device)


def configure_cpu(threads: int | None, processes: int = 1) -> int:
    """
    Sets torch's CPU threads to [`diffusers_strdiff.inference_threads`] (`threads`, `$STRDIFF_THREADS`, or the free
    cores) shared by `processes` processes of one run, and lets the allocator reuse freed memory
    ([`diffusers_strdiff.reuse_freed_memory`]); returns the thread count. A bad count is a `CommandError`.
    """
    import torch

    from .pipelines.loading import inference_threads, reuse_freed_memory

    reuse_freed_memory()

    try:
        count = max(1, inference_threads(threads) // processes) if threads is None else inference_threads(threads)
    except ValueError as error:
        raise CommandError(f"--threads: {error}") from error
    torch.set_num_threads(count)
    return count


def _inpaint(args: argparse.Namespace) -> int:
    from . import batch_inpaint
    from .image_io import save_image

    image_path, mask_path, output = _inpaint_arguments(args)
    if args.max_side < 1 or args.batch_size < 1:
        raise CommandError("--max_side and --batch_size must be positive")
    if args.device is not None:
        validate_device(args.device)
    if image_path.is_dir():
        return _inpaint_folder(args, image_path, mask_path, output)
    if args.save_structure or args.concat or args.overwrite:
        raise CommandError("--save_structure, --concat and --overwrite apply to folders; use --structure_output")
    _check_output(output, "output")
    if args.structure_output is not None:
        _check_output(args.structure_output, "--structure_output")
    image = _load_input(image_path, "RGB", "image")
    mask = _load_input(mask_path, "L", "mask")
    try:
        batch_inpaint.check_mask(image, mask, f"mask {mask_path}")
    except ValueError as error:
        raise CommandError(str(error)) from error
    settings = _inpaint_settings(args, args.device or "cpu")
    configure_cpu(args.threads)
    pipeline = load_pipeline(args.checkpoint, args.sampler, settings.device)
    notice = batch_inpaint.downscale_notice(image.size, args.max_side)
    if notice is not None:
        print(f"{image_path}: {notice}")
    try:
        (result,) = batch_inpaint.inpaint_images(pipeline, [image], [mask], settings)
    except ValueError as error:
        raise CommandError(str(error)) from error
    try:
        save_image(result.image, output)
        if args.structure_output is not None and result.structure is not None:
            save_image(result.structure, args.structure_output)
    except OSError as error:
        raise CommandError(f"cannot write the output: {one_line(error)}") from error
    print(f"wrote {output} ({result.nfe} network evaluations)")
    return 0


def _inpaint_folder(args: argparse.Namespace, image_dir: Path, mask: Path, output_dir: Path) -> int:
    from . import batch_inpaint
    from .utils import process_state

    if args.structure_output is not None:
        raise CommandError("--structure_output applies to one image; with folders use --save_structure")
    try:
        plan = batch_inpaint.plan_folder(image_dir, mask, output_dir, args.overwrite, args.save_structure, args.concat)
    except ValueError as error:
        raise CommandError(str(error)) from error
    state = process_state()
    device = args.device or (str(state.device) if state.num_processes > 1 else "cpu")  # accelerate: own device
    configure_cpu(args.threads, state.num_processes)
    # The main process loads first: loading a saved folder writes its `pipeline_strdiffusion.py` stub into diffusers'
    # dynamic-module cache, and two processes writing it at once can import a half-written file.
    with state.main_process_first():
        pipeline = load_pipeline(args.checkpoint, args.sampler, device)
    pipeline.set_progress_bar_config(disable=True)  # the run shows one bar over the images
    return batch_inpaint.run_folder(pipeline, plan, _inpaint_settings(args, device), args.batch_size)


def _print_config(name: str, model) -> None:
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    settings = ", ".join(f"{key}={value}" for key, value in model.config.items() if not key.startswith("_"))
    print(f"{name}: {type(model).__name__} ({num_parameters:,} parameters; {settings})")


def _convert(args: argparse.Namespace) -> None:
    from .conversion import convert_official_checkpoint, convert_official_pipeline

    for path in (args.structure, args.texture, args.discriminator, args.checkpoint):
        if path is not None and not Path(path).is_file():
            raise CommandError(f"checkpoint not found: {path}")
    if args.checkpoint is None and (args.structure is None or args.texture is None):
        raise CommandError("pass --checkpoint, or --structure and --texture (and optionally --discriminator)")
    _check_output_dir(args.output_dir)
    try:
        if args.checkpoint is not None:
            model = convert_official_checkpoint(args.checkpoint)
        else:
            model = convert_official_pipeline(
                args.structure, args.texture, args.discriminator, num_train_timesteps=args.num_train_timesteps
            )
    except Exception as error:  # a released file that cannot be converted is a bad argument
        raise CommandError(f"cannot convert: {type(error).__name__}: {one_line(error)}") from error
    names = ("structure_unet", "texture_unet", "discriminator") if args.checkpoint is None else ()
    for name in names:
        if getattr(model, name) is not None:
            _print_config(name, getattr(model, name))
    if args.checkpoint is not None:
        _print_config("checkpoint", model)
    model.save_pretrained(args.output_dir)
    print(f"wrote {type(model).__name__} to {args.output_dir}")


def _check_output_dir(folder: Path) -> None:
    """Raises a `CommandError` unless `folder` is a folder, or can be created, and is writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"--output_dir {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"--output_dir {folder}: folder {existing} is not writable")


def _app(args: argparse.Namespace) -> None:
    try:
        from .app import launch
    except ImportError as error:
        raise CommandError(f"the app needs the [app] extra (pip install 'diffusers-strdiff[app]'): {error}") from error
    configure_cpu(args.threads)
    launch(
        server_name=args.host, server_port=args.port, share=False, checkpoint=args.checkpoint, max_side=args.max_side
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strdiff", description="StrDiffusion structure-guided inpainting.")
    commands = parser.add_subparsers(dest="command", required=True)

    inpaint = commands.add_parser(
        "inpaint",
        help="Inpaint an image or a folder of images (white mask pixels are filled).",
        description="Inpaint IMAGE MASK OUTPUT, or a folder: --image DIR --mask DIR|FILE --output DIR (masks matched "
        "by file stem, outputs DIR/<stem>.png; existing outputs are skipped unless --overwrite). Images with a longer "
        "side than --max_side are inpainted downscaled and the fill pasted back at full size. Exit codes: 0 done, "
        "1 some images failed (listed) or an internal error, 2 bad arguments, 130 interrupted.",
    )
    inpaint.add_argument("image_path", nargs="?", type=Path, metavar="IMAGE", help="RGB image (or use --image).")
    inpaint.add_argument("mask_path", nargs="?", type=Path, metavar="MASK", help="Mask image, white = fill.")
    inpaint.add_argument("output_path", nargs="?", type=Path, metavar="OUTPUT", help="Output image path.")
    inpaint.add_argument("--image", type=Path, help="Image file, or a folder of images.")
    inpaint.add_argument("--mask", type=Path, help="Mask file (for every image of a folder), or a folder of masks.")
    inpaint.add_argument("--output", type=Path, help="Output file, or the output folder of an image folder.")
    inpaint.add_argument("--structure_output", type=Path, help="Also write the predicted structure map here.")
    inpaint.add_argument("--checkpoint", help="Pipeline folder or Hub id (default: the bundled checkpoint).")
    inpaint.add_argument("--steps", type=int, help="Reverse steps; fewer than T needs a posterior sampler.")
    inpaint.add_argument(
        "--sampler", choices=SAMPLERS, default="posterior", help="Reverse-step rule (default: the few-step sampler)."
    )
    inpaint.add_argument("--seed", type=int, default=0, help="Seed of every image's sampler noise.")
    inpaint.add_argument(
        "--resampling",
        action="store_true",
        help="Add the discriminator-gated resampling (off by default: no gain with the bundled checkpoint).",
    )
    inpaint.add_argument("--no_resampling", dest="resampling", action="store_false", help=argparse.SUPPRESS)
    inpaint.add_argument(
        "--device", help="Torch device (default: cpu; under `accelerate launch`, each process's own device)."
    )
    inpaint.add_argument(
        "--max_side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help="Images with a longer side are inpainted downscaled to it, the fill pasted back at full size.",
    )
    inpaint.add_argument("--threads", type=int, help=THREADS_HELP)
    inpaint.add_argument("--batch_size", type=int, default=4, help="Folders: images of one size per pipeline call.")
    inpaint.add_argument("--overwrite", action="store_true", help="Folders: inpaint images whose output exists.")
    inpaint.add_argument("--save_structure", action="store_true", help="Folders: also write OUTPUT/structure/.")
    inpaint.add_argument("--concat", action="store_true", help="Folders: also write input|mask|output strips.")
    inpaint.set_defaults(handler=_inpaint)

    convert = commands.add_parser("convert", help="Convert released StrDiffusion checkpoints to diffusers folders.")
    convert.add_argument("--checkpoint", help="One released .pth/.safetensors file -> one model folder.")
    convert.add_argument("--structure", help="Released structure.pth (whole-pipeline conversion).")
    convert.add_argument("--texture", help="Released texture.pth (whole-pipeline conversion).")
    convert.add_argument("--discriminator", help="Released discriminator.pth (optional).")
    convert.add_argument("--num_train_timesteps", type=int, default=100, help="T the checkpoints were trained with.")
    convert.add_argument("--output_dir", type=Path, required=True)
    convert.set_defaults(handler=_convert)

    commands.add_parser(
        "evaluate", help="Run the evaluation harness (arguments after `evaluate` go to it; see `strdiff evaluate -h`)."
    )

    app = commands.add_parser("app", help="Launch the Gradio app.")
    app.add_argument("--host", default="127.0.0.1")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--checkpoint", help="Pipeline folder or Hub id (default: the bundled checkpoint).")
    app.add_argument(
        "--max_side", type=int, default=DEFAULT_MAX_SIDE, help="Uploads with a longer side are downscaled."
    )
    app.add_argument("--threads", type=int, help=THREADS_HELP)
    app.set_defaults(handler=_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Runs `strdiff ARGV` and returns the exit code: 0 success, 1 internal error (or some images of a folder failed),
    2 user error (one line on stderr), 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["evaluate"]:
        # The harness has its own parser; argparse's REMAINDER would not pass `--options` through a subparser.
        from . import evaluation

        return evaluation.main(argv[1:], prog="strdiff evaluate")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (CommandError, FileNotFoundError) as error:
        print(f"strdiff {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"strdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line instead of a traceback (STRDIFF_DEBUG=1 shows it)
        if os.environ.get("STRDIFF_DEBUG") == "1":
            raise
        print(
            f"strdiff {args.command}: internal error: {type(error).__name__}: {one_line(error)} "
            "(STRDIFF_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
