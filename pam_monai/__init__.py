"""PAM (propagation-based segmentation of any 3D object from one 2D prompt) for MONAI."""

__version__ = "0.1.0"
