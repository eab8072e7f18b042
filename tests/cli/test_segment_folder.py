"""``pam-monai segment-folder``: every image of a folder from its own prompt file, failures recorded per case."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import always_object, ellipsoid, object_volume

from pam_monai.cli.main import main
from pam_monai.cli.segment import CasePrompt, find_cases
from pam_monai.errors import PromptError
from pam_monai.networks import build_box2mask, build_propmask, save_network

SHAPE = (40, 36, 24)
AFFINE = np.diag([0.9, 0.9, 2.0, 1.0])


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    propmask = save_network(always_object(build_propmask("light", input_size=64)), root / "propmask.pt")
    box2mask = save_network(always_object(build_box2mask("light", input_size=64)), root / "box2mask.pt")
    return ["--checkpoint", str(propmask), "--box2mask-checkpoint", str(box2mask), "--no-progress"]


def _case(folder: Path, name: str, centre: tuple[int, int, int]) -> np.ndarray:
    truth = ellipsoid(SHAPE, centre, (8, 7, 5))
    nib.save(nib.Nifti1Image(object_volume(truth), AFFINE), folder / f"{name}.nii.gz")
    return truth


def _roi(path: Path, first: tuple[float, ...], last: tuple[float, ...]) -> None:
    corners = np.array([[*first, 1.0], [*last, 1.0]]) @ AFFINE.T
    center, size = corners[:, :3].mean(axis=0) * [-1, -1, 1], np.abs(corners[1, :3] - corners[0, :3])
    markup = {"type": "ROI", "coordinateSystem": "LPS", "center": center.tolist(), "size": size.tolist()}
    path.write_text(json.dumps({"markups": [markup]}))


@pytest.fixture
def folder(tmp_path: Path) -> dict[str, np.ndarray]:
    """Three good cases (Slicer ROI, box JSON, mask prompt beside the image), one without a prompt, one corrupt."""
    images = tmp_path / "images"
    images.mkdir()
    truths = {
        "roi_case": _case(images, "roi_case", (20, 18, 12)),
        "box_case": _case(images, "box_case", (18, 16, 10)),
        "mask_case": _case(images, "mask_case", (22, 20, 12)),
    }
    _roi(images / "roi_case.mrk.json", (11.5, 10.5, 12.0), (28.5, 25.5, 12.0))
    rows, cols = np.nonzero(truths["box_case"][:, :, 10])
    (images / "box_case.json").write_text(
        json.dumps({"box": [int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())], "slice": 10})
    )
    prompt = np.zeros(SHAPE, np.uint8)
    prompt[:, :, 12] = truths["mask_case"][:, :, 12]
    nib.save(nib.Nifti1Image(prompt, AFFINE), images / "mask_case_prompt.nii.gz")
    _case(images, "unprompted", (20, 18, 12))
    (images / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not an image")
    _roi(images / "corrupt.mrk.json", (11.5, 10.5, 12.0), (28.5, 25.5, 12.0))
    return truths


def _summary(output: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with open(output / "summary.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["case"], []).append(row)
    return rows


def test_every_case_is_segmented_and_failures_are_recorded(
    folder: dict[str, np.ndarray], tmp_path: Path, weights: list[str], capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "out"
    code = main(["segment-folder", str(tmp_path / "images"), "-o", str(output), "--previews", *weights])
    assert code == 1
    assert "2 of 5 cases failed" in capsys.readouterr().err
    rows = _summary(output)
    assert sorted(rows) == ["box_case", "corrupt", "mask_case", "roi_case", "unprompted"]
    for name, truth in folder.items():
        labels = np.asarray(nib.load(output / f"{name}_seg.nii.gz").dataobj) > 0
        assert 2 * (labels & truth).sum() / (labels.sum() + truth.sum()) > 0.8, name
        (row,) = rows[name]
        assert row["status"] == "ok" and int(row["voxels"]) == int(labels.sum())
        assert float(row["volume_ml"]) == pytest.approx(labels.sum() * 0.9 * 0.9 * 2.0 / 1000, abs=1e-3)
        assert json.loads((output / f"{name}_report.json").read_text())["objects"][0]["voxels"] == int(labels.sum())
        assert (output / f"{name}_preview.png").stat().st_size > 0
    assert rows["unprompted"][0]["status"] == "failed" and "no prompt file" in rows["unprompted"][0]["error"]
    assert rows["corrupt"][0]["status"] == "failed" and "cannot read the image" in rows["corrupt"][0]["error"]
    assert not list(output.glob("unprompted_*")) and not list(output.glob("corrupt_*"))
    report = json.loads((output / "summary.json").read_text())
    assert report["roi_case"]["prompt"]["slice"] == 12 and report["roi_case"]["prompt"]["box"] == [12, 11, 28, 25]


def test_a_separate_prompt_folder_and_all_cases_ok(
    folder: dict[str, np.ndarray], tmp_path: Path, weights: list[str], capsys: pytest.CaptureFixture
) -> None:
    images, prompts = tmp_path / "images", tmp_path / "prompts"
    prompts.mkdir()
    for path in list(images.iterdir()):
        if path.name.startswith(("unprompted", "corrupt")):
            path.unlink()
        elif path.name.endswith((".json", "_prompt.nii.gz")):
            path.rename(prompts / path.name)
    output = tmp_path / "out"
    assert main(["segment-folder", str(images), "--prompts", str(prompts), "-o", str(output), *weights]) == 0
    assert "3 of 3 cases segmented" in capsys.readouterr().out
    assert all(row["status"] == "ok" for rows in _summary(output).values() for row in rows)


def test_missing_folder_is_one_line_and_exit_2(
    tmp_path: Path, weights: list[str], capsys: pytest.CaptureFixture
) -> None:
    assert main(["segment-folder", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out"), *weights]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no such folder" in error[0]
    assert not (tmp_path / "out").exists()


def test_two_prompt_files_for_one_case_are_refused(tmp_path: Path) -> None:
    _case(tmp_path, "case", (20, 18, 12))
    (tmp_path / "case.json").write_text(json.dumps({"box3d": [1, 1, 1, 5, 5, 5]}))
    _roi(tmp_path / "case.mrk.json", (1.5, 1.5, 1.5), (5.5, 5.5, 5.5))
    with pytest.raises(PromptError, match="several prompt files"):
        find_cases(tmp_path, tmp_path)


def test_a_mask_named_in_a_json_prompt_is_relative_to_that_file(tmp_path: Path) -> None:
    (tmp_path / "case.json").write_text(json.dumps({"mask": "masks/case.nii.gz", "axis": 1}))
    assert CasePrompt.from_file(tmp_path / "case.json") == CasePrompt(
        mask_prompt=str(tmp_path / "masks/case.nii.gz"), axis=1
    )


def test_prompt_and_output_folders_inside_the_images_folder_are_not_cases(tmp_path: Path) -> None:
    _case(tmp_path, "case", (20, 18, 12))
    for folder in ("prompts", "out", "series"):
        (tmp_path / folder).mkdir()
    (tmp_path / "prompts" / "case.json").write_text(json.dumps({"box3d": [1, 1, 1, 5, 5, 5]}))
    cases = find_cases(tmp_path, tmp_path / "prompts", exclude=(tmp_path / "out",))
    assert [(name, prompt.name if prompt else None) for name, _, prompt in cases] == [
        ("case", "case.json"),
        ("series", None),  # any other subfolder is a DICOM series
    ]


def test_an_output_folder_that_is_a_file_is_one_line_and_exit_2(
    folder: dict[str, np.ndarray], tmp_path: Path, weights: list[str], capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "taken").write_text("not a folder")
    assert main(["segment-folder", str(tmp_path / "images"), "-o", str(tmp_path / "taken"), *weights]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "File exists" in error[0] and str(tmp_path / "taken") in error[0]
    assert (tmp_path / "taken").read_text() == "not a folder"
