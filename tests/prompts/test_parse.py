from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pam_monai.prompts import PromptError, load_prompt_files, parse_prompt


def test_one_form_covers_every_prompt(tmp_path: Path) -> None:
    assert parse_prompt({"box": [1, 2, 10, 12], "slice": 4}) == {"axis": 2, "box": (1, 2, 10, 12), "slice_index": 4}
    assert parse_prompt({"box": [1, 2, 10, 12], "slice": [3, 5], "axis": 0})["boxes"] == [
        ((1, 2, 10, 12), 3),
        ((1, 2, 10, 12), 5),
    ]
    mixed = parse_prompt(
        json.dumps({"mask": "m.nii.gz", "boxes": [{"box": [1, 2, 10, 12], "slice": 7}, [[0, 0, 4, 4], 9]]})
    )
    assert mixed == {"axis": 2, "mask_prompt_path": "m.nii.gz", "boxes": [((1, 2, 10, 12), 7), ((0, 0, 4, 4), 9)]}
    assert parse_prompt({"box3d": [1, 2, 3, 9, 9, 9], "label": 3}) == {
        "axis": 2,
        "box3d": (1, 2, 3, 9, 9, 9),
        "label": 3,
    }
    refine = parse_prompt({"previous": "seg.nii.gz", "clicks": [[1, 2, 3, 1], [4, 5, 3, "-"], [6, 6, 3]]})
    assert refine == {"axis": 2, "previous_path": "seg.nii.gz", "clicks": [(1, 2, 3, 1), (4, 5, 3, -1), (6, 6, 3, 1)]}
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps({"previous": "seg.nii.gz", "mask": "fix.nii.gz", "axis": 1}))
    assert parse_prompt(str(path)) == {"axis": 1, "mask_prompt_path": "fix.nii.gz", "previous_path": "seg.nii.gz"}
    assert parse_prompt("roi.mrk.json") == {"roi_path": "roi.mrk.json"}


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"clicks": [[1, 2, 3, 0]]}, "sign"),
        ({"clicks": []}, "non-empty"),
        ({"box": [1, 2, 3, 4.5], "slice": 1}, "integers"),
        ({"box": [1, 2, 3], "slice": 1}, "4 integers"),
        ({"box": [1, 2, 3, 4]}, "needs its slice"),
        ({"previous": "seg.nii.gz"}, "previous needs a correction"),
        ({"box3d": [1, 2, 3, 4, 5, 6], "clicks": [[1, 2, 3]]}, "on its own"),
        ({"boxes": [{"box": [1, 2, 3, 4]}]}, "needs"),
        ({"box": [1, 2, 3, 4], "slice": 1, "boxes": [[[1, 2, 3, 4], 2]]}, "not both"),
        ({"axis": 3, "box3d": [1, 2, 3, 4, 5, 6]}, "axis"),
        ({"label": 0, "box": [1, 2, 3, 4], "slice": 1}, "label"),
        ({"wrong": 1}, "unknown prompt fields"),
        ({"axis": 2}, "give a prompt"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_prompts_are_one_line_errors(spec, message: str) -> None:  # noqa: ANN001
    with pytest.raises(PromptError, match=message) as error:
        parse_prompt(spec)
    assert "\n" not in str(error.value)


def test_prompt_files_are_read_onto_the_grid(tmp_path: Path) -> None:
    previous = np.zeros((8, 9, 10), dtype=np.int16)
    previous[2:5, 2:5, 3:6] = 1
    nib.save(nib.Nifti1Image(previous, np.eye(4)), tmp_path / "seg.nii.gz")
    args = parse_prompt({"previous": "seg.nii.gz", "clicks": [[3, 3, 4, -1]]})
    loaded = load_prompt_files(args, (8, 9, 10), np.eye(4), base=tmp_path)
    assert np.array_equal(loaded["previous"].numpy(), previous) and "previous_path" not in loaded
    with pytest.raises(PromptError, match=r"click \(3, 3, 4\) lies outside"):
        load_prompt_files(args, (8, 9, 4), None, base=tmp_path)
    with pytest.raises(PromptError, match="differs from the image"):
        load_prompt_files(args, (8, 9, 11), np.eye(4), base=tmp_path)
    with pytest.raises(PromptError, match="no such previous result"):
        load_prompt_files({"previous_path": "none.nii.gz"}, (8, 9, 10))
    with pytest.raises(PromptError, match="grid"):
        load_prompt_files({"previous": np.zeros((8, 9, 9))}, (8, 9, 10))
