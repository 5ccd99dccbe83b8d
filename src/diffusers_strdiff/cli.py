# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""The `strdiff` command: inpaint, convert released checkpoints, evaluate, launch the app."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

SAMPLERS = ("released", "posterior", "posterior_ode")  # the keys of `SAMPLER_PRESETS` (kept import-free here)


class CommandError(Exception):
    """A user error reported as one line on stderr with exit code 2."""


def _open_image(path: Path, name: str):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise CommandError(f"{name} not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise CommandError(f"cannot read {name} {path}: {error}") from error
    return image


def _inpaint(args: argparse.Namespace) -> None:
    import torch

    from .callbacks import DiscriminatorGatedResampling
    from .pipelines.loading import load_pipeline

    image = _open_image(args.image, "image")
    mask = _open_image(args.mask, "mask")
    pipeline = load_pipeline(args.checkpoint, args.sampler, args.device)
    try:
        output = pipeline(
            image=image,
            mask_image=mask,
            num_inference_steps=args.steps,
            generator=torch.Generator(args.device).manual_seed(args.seed),
            callback_on_step_end=None if args.no_resampling else DiscriminatorGatedResampling(),
        )
    except ValueError as error:
        raise CommandError(str(error)) from error
    args.output.parent.mkdir(parents=True, exist_ok=True)
    output.images[0].save(args.output)
    if args.structure_output is not None and output.structures is not None:
        output.structures[0].save(args.structure_output)
    print(f"wrote {args.output} ({output.nfe['total']} network evaluations)")


def _print_config(name: str, model) -> None:
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    settings = ", ".join(f"{key}={value}" for key, value in model.config.items() if not key.startswith("_"))
    print(f"{name}: {type(model).__name__} ({num_parameters:,} parameters; {settings})")


def _convert(args: argparse.Namespace) -> None:
    from .conversion import convert_official_checkpoint, convert_official_pipeline

    for path in (args.structure, args.texture, args.discriminator, args.checkpoint):
        if path is not None and not Path(path).is_file():
            raise CommandError(f"checkpoint not found: {path}")
    try:
        if args.checkpoint is not None:
            model = convert_official_checkpoint(args.checkpoint)
            _print_config("checkpoint", model)
            model.save_pretrained(args.output_dir)
            print(f"wrote {type(model).__name__} to {args.output_dir}")
            return
        if args.structure is None or args.texture is None:
            raise CommandError("pass --checkpoint, or --structure and --texture (and optionally --discriminator)")
        pipeline = convert_official_pipeline(
            args.structure, args.texture, args.discriminator, num_train_timesteps=args.num_train_timesteps
        )
    except ValueError as error:
        raise CommandError(str(error)) from error
    for name in ("structure_unet", "texture_unet", "discriminator"):
        if getattr(pipeline, name) is not None:
            _print_config(name, getattr(pipeline, name))
    pipeline.save_pretrained(args.output_dir)
    print(f"wrote StrDiffusionInpaintPipeline to {args.output_dir}")


def _app(args: argparse.Namespace) -> None:
    try:
        from .app import launch
    except ImportError as error:
        raise CommandError(f"the app needs the [app] extra (pip install 'diffusers-strdiff[app]'): {error}") from error
    launch(
        server_name=args.host, server_port=args.port, share=False, checkpoint=args.checkpoint, max_side=args.max_side
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strdiff", description="StrDiffusion structure-guided inpainting.")
    commands = parser.add_subparsers(dest="command", required=True)

    inpaint = commands.add_parser("inpaint", help="Inpaint an image (white mask pixels are filled).")
    inpaint.add_argument("image", type=Path, help="RGB image.")
    inpaint.add_argument("mask", type=Path, help="Mask image, white = fill.")
    inpaint.add_argument("output", type=Path, help="Output PNG path.")
    inpaint.add_argument("--structure_output", type=Path, help="Also write the predicted structure map here.")
    inpaint.add_argument("--checkpoint", help="Pipeline folder or Hub id (default: the bundled checkpoint).")
    inpaint.add_argument("--steps", type=int, help="Reverse steps; fewer than T needs a posterior sampler.")
    inpaint.add_argument("--sampler", choices=SAMPLERS, default="released", help="Reverse-step rule.")
    inpaint.add_argument("--seed", type=int, default=0)
    inpaint.add_argument("--no_resampling", action="store_true", help="Skip the discriminator-gated resampling.")
    inpaint.add_argument("--device", default="cpu")
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
    app.add_argument("--max_side", type=int, default=512, help="Uploads with a longer side are downscaled.")
    app.set_defaults(handler=_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["evaluate"]:
        # The harness has its own parser; argparse's REMAINDER would not pass `--options` through a subparser.
        from . import evaluation

        return evaluation.main(argv[1:], prog="strdiff evaluate")
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (CommandError, FileNotFoundError) as error:
        print(f"strdiff {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
