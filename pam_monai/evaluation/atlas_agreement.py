"""How well the atlas evaluation's labels are defined: the agreement of independently drawn atlases.

``python -m pam_monai.cli.atlas_agreement`` prints the table (Dice per structure and the means).
"""

from __future__ import annotations

from typing import Any

import nibabel as nib

from pam_monai.data.atlas import (
    REFERENCE_NAMES,
    SUBCORTICAL_STRUCTURES,
    atlas_data_dir,
    atlas_label_names,
    load_template_and_labels,
    resample_to_grid,
)
from pam_monai.evaluation.metrics import binary_dice

__all__ = ["inter_atlas_agreement"]


def inter_atlas_agreement() -> list[dict[str, Any]]:
    """How well the evaluation's labels are defined on the template: per structure, the Dice between the
    Desikan-Killiany label and the same structure in two independently drawn atlases of the package
    (Neuromorphometrics; Harvard-Oxford, its probability map cut at 50 %), all on the MNI152 grid.

    The atlases were drawn on other brains, so no method that follows this template's image can be expected to
    agree with Desikan-Killiany much better than they agree with each other.
    """
    template, labels, names = load_template_and_labels()
    data = atlas_data_dir() / "atlases"
    neuromorphometrics = resample_to_grid(nib.load(data / "atlas_neuromorphometrics.nii.gz"), template)
    harvard_oxford = nib.load(data / "atlas_harvard_oxford.nii.gz")  # one probability map (%) per structure
    rows = []
    for structure in SUBCORTICAL_STRUCTURES:
        ours = labels == names[structure]
        row: dict[str, Any] = {"structure": structure}
        for atlas in ("neuromorphometrics", "harvard_oxford"):
            other_name = REFERENCE_NAMES[atlas].get(structure)
            value = atlas_label_names(atlas).get(other_name) if other_name else None
            if value is None:
                row[atlas] = None
                continue
            if atlas == "neuromorphometrics":
                theirs = neuromorphometrics == value
            else:
                theirs = resample_to_grid(harvard_oxford, template, order=1, volume=value) >= 50.0
            row[atlas] = binary_dice(ours, theirs)
        rows.append(row)
    return rows
