"""PropMask's cross-attention equals the paper's formula softmax(q k^T / sqrt(C)) v (fused kernel or not)."""

from __future__ import annotations

import math

import pytest
import torch

from pam_monai.networks import GuidedCrossAttention


@pytest.mark.parametrize("channels,side", [(8, 4), (32, 16), (128, 7)])
def test_attention_matches_the_formula(channels: int, side: int) -> None:
    torch.manual_seed(0)
    attention = GuidedCrossAttention(channels).eval()
    query = torch.randn(5, channels, side, side)
    guide_image, guide_mask = torch.randn(2, channels, side, side), torch.randn(2, channels, side, side)
    index = torch.tensor([0, 1, 1, 0, 1])

    def tokens(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)

    q = attention.query_proj(tokens(query))
    k = attention.key_proj(tokens(guide_image))[index]
    v = attention.value_proj(tokens(guide_mask))[index]
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(channels), dim=-1)
    expected = attention.out_proj(weights @ v).transpose(1, 2).reshape(query.shape)
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            torch.testing.assert_close(attention(query, guide_image, guide_mask, index), expected, atol=1e-5, rtol=1e-5)


def test_attention_trains() -> None:
    attention = GuidedCrossAttention(16)
    query = torch.randn(3, 16, 8, 8, requires_grad=True)
    out = attention(query, torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8), torch.zeros(3, dtype=torch.long))
    out.square().mean().backward()
    assert query.grad is not None and all(p.grad is not None for p in attention.parameters())
