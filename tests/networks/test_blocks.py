"""The networks' blocks build torch.nn layers directly: the very classes MONAI's factories give, so the same
parameters, state-dict keys and outputs, without importing MONAI."""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers.factories import Conv, Norm

from pam_monai.networks.blocks import ConvNormAct, UNetDecoder, layer_type


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_layer_types_are_monais(spatial_dims: int) -> None:
    assert layer_type("conv", spatial_dims) is Conv[Conv.CONV, spatial_dims]
    assert layer_type("convtrans", spatial_dims) is Conv[Conv.CONVTRANS, spatial_dims]
    assert layer_type("instance", spatial_dims) is Norm[Norm.INSTANCE, spatial_dims]


def test_unknown_layers_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="spatial_dims=4"):
        layer_type("conv", 4)
    with pytest.raises(ValueError, match="'batch'"):
        layer_type("batch", 2)


def test_blocks_keep_their_keys_and_settings() -> None:
    unit = ConvNormAct(spatial_dims=3, in_channels=2, out_channels=4, stride=2)
    assert list(unit.state_dict()) == ["conv.weight", "conv.bias", "norm.weight", "norm.bias"]
    assert unit.conv.stride == (2, 2, 2) and unit.conv.padding == (1, 1, 1) and unit.norm.affine
    assert tuple(unit(torch.zeros(1, 2, 8, 8, 8)).shape) == (1, 4, 4, 4, 4)
    decoder = UNetDecoder(spatial_dims=2, features=(4, 8, 16))
    assert type(decoder.transpconvs[0]) is torch.nn.ConvTranspose2d and type(decoder.seg_layers[0]) is torch.nn.Conv2d
