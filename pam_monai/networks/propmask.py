"""PropMask: propagates a guiding slice and its mask to adjacent slices (PAM paper)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pam_monai.networks.blocks import PlainConvEncoder, UNetDecoder, default_features

__all__ = ["GuidedCrossAttention", "PropMaskNet"]


class GuidedCrossAttention(nn.Module):
    """Single-head cross-attention from query-slice features to guiding-slice features.

    query = adjacent-slice features, key = guiding-slice image features, value = guiding-mask features; no
    positional encoding and no normalisation, as in the paper.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(channels, channels, bias=False)
        self.key_proj = nn.Linear(channels, channels, bias=False)
        self.value_proj = nn.Linear(channels, channels, bias=False)
        self.out_proj = nn.Linear(channels, channels, bias=True)

    def forward(
        self, query: torch.Tensor, guide_image: torch.Tensor, guide_mask: torch.Tensor, guide_index: torch.Tensor
    ) -> torch.Tensor:
        """Attend.

        Args:
            query: ``(N, C, h, w)`` features of N query slices.
            guide_image: ``(G, C, h, w)`` image features of G guiding slices.
            guide_mask: ``(G, C, h, w)`` mask features of the same guiding slices.
            guide_index: ``(N,)`` long, the guiding slice of each query slice.

        Returns:
            ``(N, C, h, w)`` attention output (to be added to the query skip).
        """
        n, c, h, w = query.shape
        q = self.query_proj(query.flatten(2).transpose(1, 2))
        # Keys and values are projected once per guiding slice, then shared by all its query slices.
        k = self.key_proj(guide_image.flatten(2).transpose(1, 2))[guide_index]
        v = self.value_proj(guide_mask.flatten(2).transpose(1, 2))[guide_index]
        # A heads axis of 1 (4D inputs) selects PyTorch's fused attention kernel; 3D inputs fall back to the unfused
        # path that materialises every (hw x hw) attention matrix: the same values, several times slower.
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return self.out_proj(out).transpose(1, 2).reshape(n, c, h, w)


class PropMaskNet(nn.Module):
    """The PropMask network (paper default: 32,482,602 parameters).

    Args:
        spatial_dims: 2 for slices.
        features: channels per encoder stage (shared by the image and the mask encoder).
        convs_per_stage: convolutions per stage.
        attention_stages: encoder stages whose query skips receive cross-attention (paper: the 4 lowest).
        out_channels: logit channels (2: background, object).
        input_size: side of the square input the model was trained for.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        features: Sequence[int] = default_features(),
        convs_per_stage: int = 2,
        attention_stages: Sequence[int] = (2, 3, 4, 5),
        out_channels: int = 2,
        input_size: int = 224,
    ) -> None:
        super().__init__()
        features = tuple(features)
        if any(not 0 <= s < len(features) for s in attention_stages):
            raise ValueError(f"attention_stages {tuple(attention_stages)} must index the {len(features)} stages.")
        self.input_size = input_size
        self.attention_stages = tuple(sorted(attention_stages))
        self.image_encoder = PlainConvEncoder(
            spatial_dims=spatial_dims, in_channels=1, features=features, convs_per_stage=convs_per_stage
        )
        self.mask_encoder = PlainConvEncoder(
            spatial_dims=spatial_dims, in_channels=1, features=features, convs_per_stage=convs_per_stage
        )
        self.cross_attentions = nn.ModuleList(GuidedCrossAttention(features[s]) for s in self.attention_stages)
        self.decoder = UNetDecoder(
            spatial_dims=spatial_dims, features=features, out_channels=out_channels, convs_per_stage=convs_per_stage
        )

    def forward(
        self, guiding_image: torch.Tensor, guiding_mask: torch.Tensor, adjacent_images: torch.Tensor
    ) -> list[torch.Tensor]:
        """Predict the adjacent slices of each guiding slice.

        Args:
            guiding_image: ``(B, 1, H, W)`` normalised guiding slices.
            guiding_mask: ``(B, 1, H, W)`` or ``(B, H, W)`` binary guiding masks.
            adjacent_images: ``(B, Nq, 1, H, W)`` normalised query slices.

        Returns:
            list of logit maps ``(B * Nq, 2, H / 2**i, W / 2**i)``, full resolution first.
        """
        if adjacent_images.ndim != 5:
            raise ValueError(f"adjacent_images must be (B, Nq, 1, H, W), got shape {tuple(adjacent_images.shape)}.")
        b, nq = adjacent_images.shape[:2]
        guide_index = torch.arange(b, device=adjacent_images.device).repeat_interleave(nq)
        return self.forward_indexed(guiding_image, guiding_mask, adjacent_images.flatten(0, 1), guide_index)

    def forward_indexed(
        self,
        guiding_image: torch.Tensor,
        guiding_mask: torch.Tensor,
        query_images: torch.Tensor,
        guide_index: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Like :meth:`forward` for a ragged batch: each of the N query slices names its guiding slice.

        Args:
            guiding_image: ``(G, 1, H, W)``.
            guiding_mask: ``(G, 1, H, W)`` or ``(G, H, W)``.
            query_images: ``(N, 1, H, W)``.
            guide_index: ``(N,)`` long in ``[0, G)``.

        Returns:
            list of logit maps ``(N, 2, H / 2**i, W / 2**i)``, full resolution first.
        """
        if guiding_mask.ndim == 3:
            guiding_mask = guiding_mask.unsqueeze(1)
        g = guiding_image.shape[0]
        # One encoder pass for guiding and query slices together.
        image_skips = self.image_encoder(torch.cat((guiding_image, query_images), dim=0))
        mask_skips = self.mask_encoder(guiding_mask.to(guiding_image.dtype))
        fused = [skip[g:] for skip in image_skips]
        for attention, s in zip(self.cross_attentions, self.attention_stages):
            guide_features = image_skips[s][:g]
            fused[s] = fused[s] + attention(fused[s], guide_features, mask_skips[s], guide_index)
        return self.decoder(fused)
