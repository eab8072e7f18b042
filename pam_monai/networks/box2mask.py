"""Box2Mask: a 2D U-Net turning the image inside a box into the object's mask (PAM paper)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pam_monai.networks.blocks import PlainConvEncoder, UNetDecoder, default_features

__all__ = ["Box2MaskNet"]


class Box2MaskNet(nn.Module):
    """The Box2Mask U-Net (paper default: 20,619,082 parameters).

    Args:
        spatial_dims: 2 for slices.
        in_channels: input channels (1: the normalised box crop).
        out_channels: logit channels (2: background, object).
        features: channels per encoder stage; its length is the number of stages.
        convs_per_stage: convolutions per stage.
        input_size: side of the square input the model was trained for (the crop is resized to it).

    ``forward(x)`` with ``x`` of shape ``(B, in_channels, H, W)`` (H, W divisible by ``2**(stages-1)``) returns a
    list of ``stages - 1`` logit maps ``(B, out_channels, H / 2**i, W / 2**i)``, full resolution first.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = default_features(),
        convs_per_stage: int = 2,
        input_size: int = 224,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.encoder = PlainConvEncoder(
            spatial_dims=spatial_dims, in_channels=in_channels, features=features, convs_per_stage=convs_per_stage
        )
        self.decoder = UNetDecoder(
            spatial_dims=spatial_dims, features=features, out_channels=out_channels, convs_per_stage=convs_per_stage
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))
