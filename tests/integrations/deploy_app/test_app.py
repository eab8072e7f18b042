"""The MONAI Deploy application run in-process on CPU: DICOM series in, DICOM SEG / NIfTI / STL out.

These tests need the MONAI Deploy App SDK (Holoscan) and highdicom, which live in their own environment: run them
with ``bash scripts/test_deploy.sh`` (it builds ``.venv-deploy``). In the main environment they are skipped.

A small CT series is written with pydicom from a generated volume: 64 columns x 56 rows x 24 slices, pixel spacing
1.1 mm between rows and 0.9 mm between columns (unequal, so that a row/column mix-up shows), 2.5 mm slices, an
oblique orientation, stored values with RescaleIntercept -1024, files named and numbered in shuffled order. The
networks are stand-ins whose every head says "object" (deterministic, non-empty output): the tests check the
plumbing — which instance each SEG frame refers to, the geometry of every output, the report — not accuracy.
"""

# ruff: noqa: F811 - `data` is a fixture imported from deploy_case and named by the tests

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from deploy_case import (  # noqa: F401 - data is a fixture
    APP,
    APP_DIR,
    BOX_PROMPT,
    COLUMN_COSINE,
    DI,
    DJ,
    DK,
    NORMAL,
    ORIGIN,
    PROMPT_SLICE,
    ROOT,
    ROW_COSINE,
    RUN_TIMEOUT_S,
    SHAPE,
    data,
    error_line,
    expected_affine_lps,
    expected_affine_ras,
    requires_deploy,
    run_app,
    seg_frames,
    write_ct_series,
)

pytestmark = requires_deploy


# ----------------------------------------------------------------------------------------------------------------
# reading: the volume the app sees
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse_numbers", [False, True])
def test_dicom_volume_orientation_and_rescale(data: dict, tmp_path: Path, reverse_numbers: bool) -> None:
    """The SDK loader + our checked conversion give the written volume in (column, row, slice) order, in HU.

    Slices are ordered by their position along the normal (as ITK and 3D Slicer order them), whatever the file
    names and instance numbers say.
    """
    sys.path.insert(0, str(APP_DIR))
    try:
        from monai.deploy.core import Fragment
        from monai.deploy.operators import DICOMDataLoaderOperator, DICOMSeriesSelectorOperator
        from operators import CheckedDICOMSeriesToVolumeOperator, RunState
    finally:
        sys.path.remove(str(APP_DIR))
    series = tmp_path / "series"
    uids = write_ct_series(series, data["volume"], seed=3, reverse_numbers=reverse_numbers)
    fragment = Fragment()
    studies = DICOMDataLoaderOperator(fragment, name="loader").load_data_to_studies(series)
    selected = DICOMSeriesSelectorOperator(fragment, name="selector").filter(None, studies)
    state = RunState(staging=data["root"])
    image = CheckedDICOMSeriesToVolumeOperator(fragment, state=state, name="volume")._volume(selected)
    np.testing.assert_array_equal(image.asnumpy(), data["volume"])
    metadata = image.metadata()
    np.testing.assert_allclose(metadata["pam_affine_ras"], expected_affine_ras(), atol=1e-4)
    assert metadata["pam_geometry"].sop_instance_uids == tuple(uids)
    assert metadata["pam_geometry"].spacing == pytest.approx((DI, DJ, DK), abs=1e-5)


def test_same_grid_as_monai_loadimage(data: dict) -> None:
    """Prompt coordinates mean what they mean for `pam-monai segment` on the same folder (MONAI's LoadImage).

    (MONAI's pydicom reader orders slices by InstanceNumber, ITK and this app by position; they agree for series
    numbered along the slice normal, as this one is.)
    """
    from pam_monai.data.io import ImageReadError, load_image

    try:
        image = load_image(data["series"])
    except ImageReadError as error:
        pytest.skip(f"MONAI's LoadImage cannot read the DICOM folder in this environment: {error}")
    np.testing.assert_allclose(image.numpy(), data["volume"], atol=0.5)
    np.testing.assert_allclose(np.asarray(image.affine), expected_affine_ras(), atol=1e-3)


# ----------------------------------------------------------------------------------------------------------------
# a DICOM series and a box prompt: every output
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box_run(data: dict) -> dict:
    series = data["root"] / "box_input"
    shutil.copytree(data["series"], series)
    (series / "prompt.json").write_text(json.dumps(BOX_PROMPT))
    output = data["root"] / "box_output"
    completed = run_app("-i", str(series), "-o", str(output), "-m", str(data["models"]))
    assert completed.returncode == 0, completed.stderr[-4000:]
    return {"output": output, "stdout": completed.stdout}


def test_outputs_are_exactly_the_four_files(box_run: dict) -> None:
    names = sorted(p.name for p in box_run["output"].iterdir())
    segs = [n for n in names if n.endswith(".dcm")]
    assert len(segs) == 1
    assert sorted(set(names) - set(segs)) == ["pam_report.json", "pam_seg.nii.gz", "pam_surface.stl"]
    assert "label 1:" in box_run["stdout"]


def test_nifti_mask_grid(box_run: dict) -> None:
    image = nib.load(box_run["output"] / "pam_seg.nii.gz")
    labels = np.asarray(image.dataobj)
    assert labels.shape == SHAPE
    np.testing.assert_allclose(image.affine, expected_affine_ras(), atol=1e-3)
    assert set(np.unique(labels)) == {0, 1}
    i0, j0, i1, j1 = BOX_PROMPT["box"]
    assert labels[i0 : i1 + 1, j0 : j1 + 1, PROMPT_SLICE].any()
    assert not labels[:, :, PROMPT_SLICE][np.ones(SHAPE[:2], bool) & _outside_box(i0, j0, i1, j1)].any()


def _outside_box(i0: int, j0: int, i1: int, j1: int) -> np.ndarray:
    outside = np.ones(SHAPE[:2], dtype=bool)
    outside[i0 : i1 + 1, j0 : j1 + 1] = False
    return outside


def test_dicom_seg_refers_to_the_right_instances(box_run: dict, data: dict) -> None:
    import highdicom as hd
    import pydicom

    (path,) = box_run["output"].glob("*.dcm")
    seg = hd.seg.segread(path)
    sources = {p.name: pydicom.dcmread(p, stop_before_pixels=True) for p in data["series"].iterdir()}
    source = next(iter(sources.values()))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert len(seg.SegmentSequence) == 1 and seg.SegmentSequence[0].SegmentLabel == "PAM object 1"
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.PatientID == source.PatientID
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing], [DJ, DI])
    np.testing.assert_allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
        [*ROW_COSINE, *COLUMN_COSINE],
        atol=1e-6,
    )
    assert (seg.Rows, seg.Columns) == (SHAPE[1], SHAPE[0])

    labels = np.asarray(nib.load(box_run["output"] / "pam_seg.nii.gz").dataobj)
    slices_with_object = [k for k in range(SHAPE[2]) if labels[:, :, k].any()]
    frames = seg_frames(seg)
    assert int(seg.NumberOfFrames) == len(frames) == len(slices_with_object)  # empty frames are omitted
    pixels = seg.pixel_array.reshape(len(frames), SHAPE[1], SHAPE[0])
    slice_of_uid = {uid: k for k, uid in enumerate(data["uids"])}
    for index, (uid, position, number) in enumerate(frames):
        k = slice_of_uid[uid]  # the instance this frame refers to ...
        np.testing.assert_allclose(position, ORIGIN + k * DK * NORMAL, atol=1e-3)  # ... sits where the frame does
        assert number == 1
        np.testing.assert_array_equal(pixels[index] > 0, labels[:, :, k].T > 0)  # ... and holds that slice's mask
    assert sorted(slice_of_uid[uid] for uid, _, _ in frames) == slices_with_object


def test_stl_surface_in_patient_coordinates(box_run: dict) -> None:
    from stl import mesh

    path = box_run["output"] / "pam_surface.stl"
    assert b"SPACE=LPS" in path.read_bytes()[:80]
    surface = mesh.Mesh.from_file(str(path))
    assert len(surface.vectors) > 0
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, SHAPE[0] - 0.5) for j in (-0.5, SHAPE[1] - 0.5)
                        for k in (-0.5, SHAPE[2] - 0.5)])  # fmt: skip
    world = (expected_affine_lps() @ corners.T).T[:, :3]
    points = surface.vectors.reshape(-1, 3)
    assert (points >= world.min(axis=0) - 1e-3).all() and (points <= world.max(axis=0) + 1e-3).all()
    # the surface encloses the object: its volume in mm^3 is the mask's, within the marching-cubes rounding
    labels = np.asarray(nib.load(box_run["output"] / "pam_seg.nii.gz").dataobj)
    mask_mm3 = labels.astype(bool).sum() * DI * DJ * DK
    volume_mm3, _, _ = surface.get_mass_properties()
    assert volume_mm3 == pytest.approx(mask_mm3, rel=0.3)
    # (a positive enclosed volume means outward-wound facets;) the stored normals follow the winding
    v0, v1, v2 = surface.vectors[:, 0], surface.vectors[:, 1], surface.vectors[:, 2]
    winding = np.cross(v1 - v0, v2 - v0)
    large = np.linalg.norm(winding, axis=1) > 1e-6
    assert (np.einsum("ij,ij->i", surface.normals[large], winding[large]) > 0).all()


def test_report(box_run: dict, data: dict) -> None:
    report = json.loads((box_run["output"] / "pam_report.json").read_text())
    labels = np.asarray(nib.load(box_run["output"] / "pam_seg.nii.gz").dataobj)
    (obj,) = report["objects"]
    assert obj["label"] == 1 and obj["segment_number"] == 1
    assert obj["voxels"] == int((labels == 1).sum())
    assert obj["volume_ml"] == pytest.approx(obj["voxels"] * DI * DJ * DK / 1000, rel=1e-3)
    assert obj["prompt_slices"] == [PROMPT_SLICE]
    assert report["image_shape"] == list(SHAPE)
    assert report["spacing_mm"] == pytest.approx([DI, DJ, DK], abs=1e-4)
    assert report["prompt"]["box"] == BOX_PROMPT["box"] and report["prompt"]["source"].endswith("prompt.json")
    assert report["input"]["kind"] == "dicom" and report["input"]["slices"] == SHAPE[2]
    seg_name = next(p.name for p in box_run["output"].glob("*.dcm"))
    assert report["outputs"]["dicom_seg"] == seg_name
    assert report["dicom_seg"]["frames"] > 0 and report["dicom_seg"]["segments"] == 1
    for stage in ("read", "load_models", "propagation", "write", "total"):
        assert report["seconds"][stage] >= 0, stage
    assert report["seconds"]["total"] >= report["seconds"]["propagation"]


# ----------------------------------------------------------------------------------------------------------------
# other prompts and inputs
# ----------------------------------------------------------------------------------------------------------------


def test_nifti_input_with_prompt_from_environment(data: dict, tmp_path: Path) -> None:
    affine = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0.1, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]])
    image = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data["volume"], affine), image)
    output = tmp_path / "output"
    prompt = {"box3d": [20, 18, 6, 40, 36, 16]}
    completed = run_app(
        "-i", str(image), "-o", str(output), "-m", str(data["models"]), env={"PAM_PROMPT": json.dumps(prompt)}
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert sorted(p.name for p in output.iterdir()) == ["pam_report.json", "pam_seg.nii.gz", "pam_surface.stl"]
    result = nib.load(output / "pam_seg.nii.gz")
    assert result.shape == SHAPE
    np.testing.assert_allclose(result.affine, affine, atol=1e-4)
    labels = np.asarray(result.dataobj)
    assert labels.any() and not labels[:, :, :6].any() and not labels[:, :, 17:].any()  # clipped to the 3D box
    report = json.loads((output / "pam_report.json").read_text())
    assert report["input"]["kind"] == "nifti" and "dicom_seg" not in report["outputs"]
    assert report["prompt"]["source"].startswith("PAM_PROMPT")


# ----------------------------------------------------------------------------------------------------------------
# bad input: one line, non-zero exit, nothing written
# ----------------------------------------------------------------------------------------------------------------


def test_missing_slice_is_refused(data: dict, tmp_path: Path) -> None:
    series = tmp_path / "input"
    write_ct_series(series, data["volume"], skip=(12,))
    output = tmp_path / "output"
    completed = run_app(
        "-i", str(series), "-o", str(output), "-m", str(data["models"]), "--prompt", json.dumps(BOX_PROMPT)
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    line = error_line(completed)
    assert "slice spacing is not uniform" in line and "5.000 mm between slices 11 and 12" in line, line
    assert list(output.iterdir()) == []  # no outputs, no staging folder left behind


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ({"box": [10, 10, 70, 40], "slice": 5}, "lies outside the 64x56 slice"),
        ({"box": [10, 10, 30, 40], "slice": 24}, "slice 24 is out of range"),
    ],
)
def test_prompt_outside_the_image_is_refused(data: dict, tmp_path: Path, prompt: dict, expected: str) -> None:
    prompt_file = tmp_path / "prompt.json"
    prompt_file.write_text(json.dumps(prompt))
    output = tmp_path / "output"
    completed = run_app(
        "-i", str(data["series"]), "-o", str(output), "-m", str(data["models"]), "--prompt", str(prompt_file)
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert expected in error_line(completed)
    assert list(output.iterdir()) == []


def test_no_prompt_and_no_weights_are_refused_before_reading(data: dict, tmp_path: Path) -> None:
    output = tmp_path / "output"
    completed = run_app("-i", str(data["series"]), "-o", str(output), "-m", str(data["models"]))
    assert completed.returncode == 2
    assert "no prompt" in error_line(completed)
    empty = tmp_path / "no_weights"
    empty.mkdir()
    completed = run_app(
        "-i", str(data["series"]), "-o", str(output), "-m", str(empty), "--prompt", json.dumps(BOX_PROMPT)
    )
    assert completed.returncode == 2
    assert "no PropMask weights" in error_line(completed)
    assert not output.exists() or list(output.iterdir()) == []


@pytest.mark.parametrize(("content", "expected"), [(b"not a checkpoint", "cannot read checkpoint"), (None, "Box2Mask")])
def test_a_corrupt_or_mismatched_checkpoint_is_refused(
    data: dict, tmp_path: Path, content: bytes | None, expected: str
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    if content is None:  # Box2Mask weights where PropMask's should be
        shutil.copy(data["models"] / "box2mask.pt", models / "model.pt")
    else:
        (models / "model.pt").write_bytes(content)
    shutil.copy(data["models"] / "box2mask.pt", models / "box2mask.pt")
    output = tmp_path / "output"
    completed = run_app(
        "-i", str(data["series"]), "-o", str(output), "-m", str(models), "--prompt", json.dumps(BOX_PROMPT)
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert expected in error_line(completed)
    assert not output.exists() or list(output.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------------
# the packaged layout: what a MAP runs, from the SDK's environment variables
# ----------------------------------------------------------------------------------------------------------------


def test_staged_map_layout_runs_from_holoscan_environment(data: dict, tmp_path: Path) -> None:
    """`build_map.sh --stage-only` + the MAP's variables: `python3 <app folder>` finds its code, bundle and weights."""
    stage = tmp_path / "opt" / "app"
    staged = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_map.sh"), "--stage-only"],
        capture_output=True,
        text=True,
        env={**os.environ, "PAM_MAP_CONTEXT": str(stage.parent)},
        timeout=120,
    )
    assert staged.returncode == 0, staged.stderr
    assert (stage / "__main__.py").is_file() and (stage / "pam_monai" / "predictor.py").is_file()
    assert (stage / "bundle" / "configs" / "inference.json").is_file()
    models = tmp_path / "opt" / "models" / "models"  # --models bundle/models -> /opt/holoscan/models/models/
    shutil.copytree(data["models"], models)
    series = tmp_path / "input"
    shutil.copytree(data["series"], series)
    (series / "prompt.json").write_text(json.dumps(BOX_PROMPT))
    output = tmp_path / "output"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PAM_", "HOLOSCAN_"))}
    environment.update(
        HOLOSCAN_INPUT_PATH=str(series), HOLOSCAN_OUTPUT_PATH=str(output), HOLOSCAN_MODEL_PATH=str(models.parent)
    )
    completed = subprocess.run(
        [sys.executable, str(stage)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=RUN_TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert len(list(output.glob("*.dcm"))) == 1 and (output / "pam_seg.nii.gz").is_file()
    report = json.loads((output / "pam_report.json").read_text())
    assert report["objects"][0]["voxels"] > 0
