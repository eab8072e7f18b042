"""nnU-Net style "plain conv" U-Net building blocks shared by Box2Mask and PropMask.

Each convolution is ``Conv -> InstanceNorm(affine) -> LeakyReLU(0.01)``; a stage downsamples with a strided
first convolution (no pooling); the decoder upsamples with transposed convolutions and emits one logit map per
decoder stage for deep supervision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvNormAct", "ConvStage", "PlainConvEncoder", "UNetDecoder", "default_features", "layer_type"]

LAYER_TYPES: dict[str, dict[int, type[nn.Module]]] = {
    "conv": {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d},
    "convtrans": {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d},
    "instance": {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d},
}
"""The torch layers MONAI's ``Conv`` / ``Norm`` factories give for each kind and number of spatial dimensions (the
same classes, so the same parameters, state-dict keys and outputs; taken from ``torch.nn`` directly so building a
network does not import MONAI)."""


def layer_type(kind: str, spatial_dims: int) -> type[nn.Module]:
    """The ``torch.nn`` class of ``kind`` (``"conv"``, ``"convtrans"`` or ``"instance"``) for 1, 2 or 3 spatial dims.

    Raises:
        ValueError: for another kind or number of dimensions.
    """
    try:
        return LAYER_TYPES[kind][spatial_dims]
    except KeyError:
        raise ValueError(f"no {kind!r} layer for spatial_dims={spatial_dims}: use 1, 2 or 3.") from None


def default_features(num_stages: int = 6, base: int = 32, cap: int = 512) -> tuple[int, ...]:
    """Channels per stage as in the paper: ``min(base * 2**i, cap)``."""
    return tuple(min(base * 2**i, cap) for i in range(num_stages))


class ConvNormAct(nn.Module):
    """One ``conv -> instance norm -> leaky ReLU`` unit (bias on the conv, affine norm)."""

    def __init__(
        self, *, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
    ) -> None:
        super().__init__()
        self.conv = layer_type("conv", spatial_dims)(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2, bias=True
        )
        self.norm = layer_type("instance", spatial_dims)(out_channels, eps=1e-5, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ConvStage(nn.Module):
    """``num_convs`` :class:`ConvNormAct` units; only the first one may be strided."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_convs: int = 2,
        kernel_size: int = 3,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *(
                ConvNormAct(
                    spatial_dims=spatial_dims,
                    in_channels=in_channels if i == 0 else out_channels,
                    out_channels=out_channels,
                    kernel_size=kernel_size,
                    stride=stride if i == 0 else 1,
                )
                for i in range(num_convs)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class PlainConvEncoder(nn.Module):
    """Plain convolutional encoder returning every stage's output (the skips).

    Args:
        spatial_dims: 2 for slices.
        in_channels: input channels.
        features: output channels of each stage; its length is the number of stages.
        convs_per_stage: convolutions in each stage.
        kernel_size: convolution kernel size.

    Input ``(B, in_channels, H, W)``; output a list of ``len(features)`` tensors, stage ``s`` of shape
    ``(B, features[s], H / 2**s, W / 2**s)`` (stage 0 keeps full resolution).
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        in_channels: int = 1,
        features: Sequence[int] = default_features(),
        convs_per_stage: int = 2,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.features = tuple(features)
        stages = []
        channels = in_channels
        for s, out_channels in enumerate(self.features):
            stages.append(
                ConvStage(
                    spatial_dims=spatial_dims,
                    in_channels=channels,
                    out_channels=out_channels,
                    num_convs=convs_per_stage,
                    kernel_size=kernel_size,
                    stride=1 if s == 0 else 2,
                )
            )
            channels = out_channels
        self.stages = nn.ModuleList(stages)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.features) - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class UNetDecoder(nn.Module):
    """U-Net decoder with a 1x1 logit head after every stage (deep supervision).

    Args:
        spatial_dims: 2 for slices.
        features: the encoder's channels per stage (highest resolution first).
        out_channels: logit channels of every head.
        convs_per_stage: convolutions in each decoder stage.
        kernel_size: convolution kernel size.

    ``forward(skips)`` takes the encoder's skips (highest resolution first) and returns
    ``len(features) - 1`` logit maps ``(B, out_channels, h, w)``, the full-resolution one first.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        features: Sequence[int] = default_features(),
        out_channels: int = 2,
        convs_per_stage: int = 2,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        features = tuple(features)
        conv_t = layer_type("convtrans", spatial_dims)
        conv = layer_type("conv", spatial_dims)
        transpconvs, stages, seg_layers = [], [], []
        # Decoder stage s (s = 0 lowest resolution) upsamples encoder stage -(s+1) to the size of stage -(s+2).
        for s in range(len(features) - 1):
            below, skip = features[-(s + 1)], features[-(s + 2)]
            transpconvs.append(conv_t(below, skip, kernel_size=2, stride=2, bias=True))
            stages.append(
                ConvStage(
                    spatial_dims=spatial_dims,
                    in_channels=2 * skip,
                    out_channels=skip,
                    num_convs=convs_per_stage,
                    kernel_size=kernel_size,
                )
            )
            seg_layers.append(conv(skip, out_channels, kernel_size=1, bias=True))
        self.transpconvs = nn.ModuleList(transpconvs)
        self.stages = nn.ModuleList(stages)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = skips[-1]
        logits = []
        for s, (up, stage, head) in enumerate(zip(self.transpconvs, self.stages, self.seg_layers)):
            x = stage(torch.cat((up(x), skips[-(s + 2)]), dim=1))
            logits.append(head(x))
        return logits[::-1]
