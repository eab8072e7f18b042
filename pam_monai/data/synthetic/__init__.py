"""Procedural labelled 3D volumes for training object-agnostic slice-to-slice mask propagation.

PAM's PropMask network learns to carry a 2D mask from a guiding slice to its neighbours whatever the object is.
This package draws random labelled volumes that exercise exactly that skill, so they can pre-train the networks or
be mixed with real scans:

* **shapes** (generated in physical millimetres, so they look right at any anisotropic spacing): blobs
  (thresholded smooth noise in an envelope), deformed and bent ellipsoids, branching vessel trees (random-walk
  centre lines with varying radius), thin curved sheets, hollow (sometimes open) shells, tori and C-shapes,
  "bitten" concave ellipsoids, multi-lobed objects whose cross-sections split and merge from slice to slice, and
  curved horns that taper to a thin tip (their cross-sections shrink, drift and vanish);
  objects are often placed touching each other and later objects overwrite earlier ones;
* **hidden boundaries**: an object touching an earlier one often takes on that object's look (same mean, same
  texture statistics), so the two labels meet along a boundary the image does not show -- as hippocampus meets
  amygdala, or thalamus meets the surrounding grey matter. Only the guide mask tells where such a boundary runs,
  so propagation has to carry it from slice to slice instead of following an edge;
* **appearance**: organ-like tissue patches and multi-scale texture in the background (unlabelled distractors),
  objects brighter or darker than their local surroundings with contrast from barely visible to strong, internal
  texture, enhancing rims, sharp or blurred edges, an optional body outline surrounded by air;
* **clean volumes** (a fifth): flat objects, a smoothed image and almost no noise, like an averaged template;
* **acquisition**: partial-volume effect (generated on a 3x finer slice grid, blurred and averaged down along
  the slice axis), smooth multiplicative bias fields, Gaussian (CT) or Rician (MR) noise;
* **intensity ranges**: CT-like Hounsfield units (air -1000, fat, soft tissue, contrast, bone; clipped to
  [-1024, 3071]) or MR-like non-negative values on an arbitrary scale (0..1 up to 0..~4000).

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed (and arguments) gives identical arrays.
Modules: :mod:`~pam_monai.data.synthetic.grid` (geometry, smooth noise), :mod:`~pam_monai.data.synthetic.shapes`,
:mod:`~pam_monai.data.synthetic.textures` (intensities, backgrounds, painting), :mod:`~pam_monai.data.synthetic.volume`
(:func:`generate_volume`) and :mod:`~pam_monai.data.synthetic.dataset` (MONAI dataset, NIfTI datalist writer).

Command line (:mod:`pam_monai.cli.synthetic`)::

    python -m pam_monai.cli.synthetic OUT_DIR --num-volumes 100 --shape 96 96 64 --seed 0
"""

from pam_monai.data.synthetic.dataset import SyntheticVolumeDataset, write_synthetic_datalist
from pam_monai.data.synthetic.volume import (
    CLEAN_FRACTION,
    CT_INTENSITY_RANGE,
    HIDDEN_BOUNDARY_PROBABILITY,
    IN_PLANE_SPACING_RANGE,
    MIN_OBJECT_VOXELS,
    MODALITIES,
    SLICE_SPACING_RANGE,
    SyntheticVolume,
    generate_volume,
)

__all__ = [
    "CLEAN_FRACTION",
    "CT_INTENSITY_RANGE",
    "HIDDEN_BOUNDARY_PROBABILITY",
    "IN_PLANE_SPACING_RANGE",
    "MIN_OBJECT_VOXELS",
    "MODALITIES",
    "SLICE_SPACING_RANGE",
    "SyntheticVolume",
    "SyntheticVolumeDataset",
    "generate_volume",
    "write_synthetic_datalist",
]
