from .discriminator import StrDiffusionDiscriminator
from .patch_critic import StrDiffusionPatchCritic
from .spade import SPADEResidualBlock
from .unet_strdiff import StrDiffusionUNet2DModel

__all__ = ["SPADEResidualBlock", "StrDiffusionDiscriminator", "StrDiffusionPatchCritic", "StrDiffusionUNet2DModel"]
