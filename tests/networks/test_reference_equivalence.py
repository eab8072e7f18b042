"""The converted weights compute what the authors' networks compute (``dynamic_network_architectures`` layers)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from reference_layout import CONV_KWARGS, PAPER, SMALL
from torch import Tensor, nn

from pam_monai.networks import (
    Box2MaskNet,
    PropMaskNet,
    build_network_from_checkpoint,
    infer_network_config,
    load_network_weights,
)


# ---------------------------------------------------------------------------------------------------------------
# Equivalence with an independent implementation (dynamic-network-architectures)
# ---------------------------------------------------------------------------------------------------------------
def _randomise(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.2 * noise)
            elif param.ndim == 1:
                param.copy_(0.2 * noise)
            else:
                param.copy_(noise / math.sqrt(param[0].numel()))


def _assert_outputs_close(ours: list[Tensor], theirs: list[Tensor], shapes: list[tuple[int, ...]]) -> None:
    assert [tuple(o.shape) for o in ours] == shapes
    assert [tuple(t.shape) for t in theirs] == shapes
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("features", [SMALL, PAPER])
def test_box2mask_matches_plain_conv_unet(features: tuple[int, ...]) -> None:
    unet_module = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    reference = unet_module.PlainConvUNet(
        1, 6, list(features), nn.Conv2d, 3, [1, 2, 2, 2, 2, 2], 2, 2, 2, deep_supervision=True, **CONV_KWARGS
    )
    _randomise(reference, seed=3)
    reference.eval()
    state_dict = reference.state_dict()
    assert len(state_dict) == 292

    ours = build_network_from_checkpoint(state_dict).eval()
    assert isinstance(ours, Box2MaskNet)
    assert infer_network_config(state_dict)["features"] == features
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _assert_outputs_close(ours(x), reference(x), [(2, 2, 64 >> i, 64 >> i) for i in range(5)])


class _ReferenceAttention(nn.Module):
    """softmax(q k^T / sqrt(C)) v, written out explicitly with the reference attribute names."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.queries = nn.Linear(channels, channels, bias=False)
        self.keys = nn.Linear(channels, channels, bias=False)
        self.values = nn.Linear(channels, channels, bias=False)
        self.fc_out = nn.Linear(channels, channels, bias=True)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        n, c, h, w = query.shape
        q = self.queries(query.reshape(n, c, h * w).permute(0, 2, 1))
        k = self.keys(key.reshape(n, c, h * w).permute(0, 2, 1))
        v = self.values(value.reshape(n, c, h * w).permute(0, 2, 1))
        weights = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(c), dim=-1)
        out = self.fc_out(torch.bmm(weights, v))
        return out.permute(0, 2, 1).reshape(n, c, h, w)


class _ReferenceProposingStage(nn.Module):
    def __init__(self, features: tuple[int, ...]) -> None:
        super().__init__()
        from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
        from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder

        def encoder() -> nn.Module:
            return PlainConvEncoder(
                1, 6, list(features), nn.Conv2d, 3, [1, 2, 2, 2, 2, 2], 2, return_skips=True, **CONV_KWARGS
            )

        self.encoder = encoder()
        self.mask_encoder = encoder()
        self.decoder = UNetDecoder(self.encoder, 2, 2, deep_supervision=True)
        self.cross_attns = nn.ModuleList(_ReferenceAttention(c) for c in features[-4:])

    def forward(self, guide: Tensor, guide_mask: Tensor, adjacent: Tensor) -> list[Tensor]:
        b, nq = adjacent.shape[:2]
        guide_skips = self.encoder(guide)
        mask_skips = self.mask_encoder(guide_mask)
        skips = list(self.encoder(adjacent.reshape(b * nq, *adjacent.shape[2:])))
        first = len(skips) - len(self.cross_attns)
        for i, attention in enumerate(self.cross_attns):
            s = first + i
            key = guide_skips[s].repeat_interleave(nq, dim=0)
            value = mask_skips[s].repeat_interleave(nq, dim=0)
            skips[s] = skips[s] + attention(skips[s], key, value)
        return self.decoder(skips)


class _ReferencePropMask(nn.Module):
    def __init__(self, features: tuple[int, ...]) -> None:
        super().__init__()
        self.proposing_stage = _ReferenceProposingStage(features)

    def forward(self, guide: Tensor, guide_mask: Tensor, adjacent: Tensor) -> list[Tensor]:
        return self.proposing_stage(guide, guide_mask, adjacent)


@pytest.mark.parametrize("features", [SMALL, PAPER])
def test_propmask_matches_reference_composition(features: tuple[int, ...], tmp_path: Path) -> None:
    pytest.importorskip("dynamic_network_architectures")
    reference = _ReferencePropMask(features)
    _randomise(reference, seed=5)
    reference.eval()
    state_dict = reference.state_dict()
    assert len(state_dict) == 408
    assert all(k.startswith("proposing_stage.") for k in state_dict)

    torch.save({"epoch": 1, "model_state_dict": state_dict}, tmp_path / "propmask.pth")
    ours = load_network_weights(PropMaskNet(features=features), tmp_path / "propmask.pth").eval()
    gen = torch.Generator().manual_seed(6)
    guide = torch.randn(2, 1, 64, 64, generator=gen)
    mask = (torch.rand(2, 1, 64, 64, generator=gen) > 0.5).float()
    adjacent = torch.randn(2, 3, 1, 64, 64, generator=gen)
    with torch.no_grad():
        expected = reference(guide, mask, adjacent)
        _assert_outputs_close(ours(guide, mask, adjacent), expected, [(6, 2, 64 >> i, 64 >> i) for i in range(5)])
        # The (B, H, W) mask form of our network gives the same result.
        _assert_outputs_close(ours(guide, mask[:, 0], adjacent), expected, [(6, 2, 64 >> i, 64 >> i) for i in range(5)])
