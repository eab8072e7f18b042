"""Guided probability with each query encoded once equals pairing every query with every guide in one forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pam_monai.images2d import set2d
from pam_monai.images2d.set2d import GuideBatch, encode_guides, guided_probability
from pam_monai.networks import build_propmask


class WholeOnly(nn.Module):
    """The same PropMask seen only through ``forward_indexed`` (the per-pair path every network supports)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.inner = network
        self.input_size = network.input_size
        self.pairs: list[int] = []

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.pairs.append(len(queries))
        return self.inner.forward_indexed(guides, masks, queries, index)


def _case(guides: int, queries: int, size: int = 64) -> tuple[nn.Module, GuideBatch, torch.Tensor]:
    torch.manual_seed(0)
    network = build_propmask("light", input_size=size).eval()
    with torch.no_grad():  # larger weights than the default initialisation: outputs far from 0.5 and guide-specific
        for parameter in network.parameters():
            parameter.mul_(3.0)
    generator = torch.Generator().manual_seed(1)
    batch = GuideBatch(
        images=torch.rand((guides, 1, size, size), generator=generator) * 2 - 1,
        masks=(torch.rand((guides, 1, size, size), generator=generator) > 0.6).float(),
        window=(0.0, 1.0),
    )
    return network, batch, torch.rand((queries, 1, size, size), generator=generator) * 2 - 1


@pytest.mark.parametrize(("guides", "queries", "chunk"), [(3, 5, None), (4, 3, 2 * 64 * 64), (1, 2, None)])
def test_split_encoding_equals_per_guide_forward(
    guides: int, queries: int, chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    network, batch, query = _case(guides, queries)
    if chunk is not None:  # pairs decoded a few at a time
        monkeypatch.setattr(set2d, "_PAIRED_PIXELS", chunk)
    whole = WholeOnly(network)
    assert encode_guides(whole, batch) is None
    expected = guided_probability(whole, batch, query)
    assert whole.pairs == [guides * queries]
    features = encode_guides(network, batch)
    assert features is not None and features.count == guides
    split = guided_probability(network, batch, query, features)
    assert split.shape == (queries, 64, 64)
    torch.testing.assert_close(split, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(guided_probability(network, batch, query), split, atol=1e-4, rtol=0)
    assert 0.05 < float(split.std())  # a real, query-dependent output
    if guides > 1:  # each guide changes the result: the guides really are paired, not one of them reused
        alone = guided_probability(network, GuideBatch(batch.images[:1], batch.masks[:1], batch.window), query)
        assert float((alone - split).abs().max()) > 1e-2
