"""Network widths and conv settings of the PAM reference layout, shared by the checkpoint tests."""

from torch import nn

PAPER = (32, 64, 128, 256, 512, 512)
SMALL = (8, 16, 32, 32, 32, 32)
CONV_KWARGS = {
    "conv_bias": True,
    "norm_op": nn.InstanceNorm2d,
    "norm_op_kwargs": {"eps": 1e-5, "affine": True},
    "nonlin": nn.LeakyReLU,
    "nonlin_kwargs": {"negative_slope": 0.01, "inplace": True},
}
