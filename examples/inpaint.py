"""Inpaint one image with StrDiffusion.

    python examples/inpaint.py --image photo.png --mask mask.png --output filled.png

`--mask` is white where the image should be filled. Without `--checkpoint`, the default checkpoint bundled with the
package is used (no download).
"""

import argparse
from pathlib import Path

import torch
from PIL import Image

from diffusers_strdiff import DEFAULT_CHECKPOINT, DiscriminatorGatedResampling, StrDiffusionInpaintPipeline


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, required=True, help="RGB image to inpaint.")
    parser.add_argument("--mask", type=Path, required=True, help="Mask image: white = fill, black = keep.")
    parser.add_argument("--output", type=Path, required=True, help="Where to write the inpainted PNG.")
    parser.add_argument("--structure_output", type=Path, help="Optional: where to write the predicted structure.")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="Pipeline folder or Hub id.")
    parser.add_argument("--steps", type=int, default=None, help="Reverse steps (default: every step of T).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_resampling", action="store_true", help="Skip the discriminator-gated resampling.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    pipeline = StrDiffusionInpaintPipeline.from_pretrained(args.checkpoint).to(args.device)
    resampling = None if args.no_resampling else DiscriminatorGatedResampling()
    output = pipeline(
        image=Image.open(args.image),
        mask_image=Image.open(args.mask),
        num_inference_steps=args.steps,
        generator=torch.Generator(args.device).manual_seed(args.seed),
        callback_on_step_end=resampling,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    output.images[0].save(args.output)
    if args.structure_output is not None:
        output.structures[0].save(args.structure_output)
    print(f"wrote {args.output} ({output.nfe['total']} network evaluations)")


if __name__ == "__main__":
    main()
