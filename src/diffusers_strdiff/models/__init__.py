from .discriminator import StrDiffusionDiscriminator
from .spade import SPADEResidualBlock
from .unet_strdiff import StrDiffusionUNet2DModel

__all__ = ["SPADEResidualBlock", "StrDiffusionDiscriminator", "StrDiffusionUNet2DModel"]
