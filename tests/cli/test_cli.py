"""The command line on real NIfTI files: happy paths and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import always_object, ellipsoid, object_volume
from PIL import Image

from pam_monai.cli.main import WALKER_BETA, WALKER_WEIGHT, WALKER_WEIGHT_BOX, main
from pam_monai.networks import build_box2mask, build_propmask, save_network

SHAPE = (48, 44, 30)
AFFINE = np.array([[-0.8, 0, 0, 12.5], [0, 0.9, 0.1, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1.0]])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    truth = ellipsoid(SHAPE, (24, 22, 15), (10, 9, 6))
    paths = {name: root / f"{name}.nii.gz" for name in ("image", "prompt", "two_slices", "empty", "small", "nan")}
    nib.save(nib.Nifti1Image(object_volume(truth), AFFINE), paths["image"])
    prompt = np.zeros(SHAPE, np.uint8)
    prompt[:, :, 15] = truth[:, :, 15]
    nib.save(nib.Nifti1Image(prompt, AFFINE), paths["prompt"])
    two = prompt.copy()
    two[:, :, 16] = truth[:, :, 16]
    nib.save(nib.Nifti1Image(two, AFFINE), paths["two_slices"])
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFFINE), paths["empty"])
    nib.save(nib.Nifti1Image(prompt, AFFINE @ np.diag([2.0, 1.0, 1.0, 1.0])), paths["small"])  # other spacing
    nan = object_volume(truth)
    nan[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, AFFINE), paths["nan"])
    nib.save(nib.Nifti1Image(object_volume(truth)[:, :, 0], AFFINE), root / "flat.nii.gz")
    paths["flat"] = root / "flat.nii.gz"
    blank = object_volume(truth)
    blank[:, :, 26:] = 0.0  # the scan ends at slice 25; the rest is padding
    paths["blank"] = root / "blank.nii.gz"
    nib.save(nib.Nifti1Image(blank, AFFINE), paths["blank"])
    on_padding = np.zeros(SHAPE, np.uint8)
    on_padding[:, :, 27] = truth[:, :, 15]
    paths["on_padding"] = root / "on_padding.nii.gz"
    nib.save(nib.Nifti1Image(on_padding, AFFINE), paths["on_padding"])
    paths["corrupt"] = root / "corrupt.nii.gz"
    paths["roi_outside"] = _slicer_roi(root / "outside.mrk.json", (60.0, 5.0, 5.0), (70.0, 9.0, 9.0))
    paths["corrupt"].write_bytes(b"\x1f\x8b this is not a nifti file")
    torch.manual_seed(0)
    paths["propmask"] = save_network(always_object(build_propmask("light", input_size=64)), root / "propmask.pt")
    paths["box2mask"] = save_network(always_object(build_box2mask("light", input_size=64)), root / "box2mask.pt")
    return paths


def _weights(files: dict[str, Path]) -> list[str]:
    return ["--checkpoint", str(files["propmask"]), "--box2mask-checkpoint", str(files["box2mask"]), "--no-progress"]


def _segment_command(files: dict[str, Path], out: Path, *prompt_and_flags: str) -> list[str]:
    """``segment`` of the test image with ``prompt_and_flags``, writing ``out``, with the test weights."""
    return ["segment", str(files["image"]), *prompt_and_flags, "-o", str(out), *_weights(files)]


def _segment_mask_prompt(files: dict[str, Path], out: Path, *flags: str) -> list[str]:
    """``segment`` with the test image's mask prompt, writing ``out``, with the test weights."""
    return _segment_command(files, out, "--mask-prompt", str(files["prompt"]), *flags)


def test_mask_prompt_writes_mask_report_and_preview(files: dict[str, Path], tmp_path: Path) -> None:
    out, report, preview = tmp_path / "seg.nii.gz", tmp_path / "seg.json", tmp_path / "seg.png"
    code = main(
        _segment_mask_prompt(files, out, "--report", str(report), "--preview", str(preview), "--thickness-mm", "5")
    )
    assert code == 0
    written = nib.load(out)
    assert written.shape == SHAPE
    assert np.allclose(written.affine, AFFINE, atol=1e-5)
    labels = np.asarray(written.dataobj)
    assert labels[:, :, 15].sum() > 0
    data = json.loads(report.read_text())
    obj = data["objects"][0]
    assert obj["voxels"] == int((labels > 0).sum())
    voxel_ml = abs(np.linalg.det(AFFINE[:3, :3])) / 1000
    assert obj["volume_ml"] == pytest.approx(obj["voxels"] * voxel_ml, rel=1e-3)
    assert obj["prompt_slices"] == [15]
    assert {"read", "normalise", "propagation", "paste_back", "write", "total"} <= set(data["seconds"])
    assert data["rounds"] >= 1
    with Image.open(preview) as picture:
        assert picture.format == "PNG" and picture.width > picture.height
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.fixture
def seen_inferers(monkeypatch: pytest.MonkeyPatch) -> list:
    """The Propagators the CLI propagates with, in call order."""
    from pam_monai.inferers import Propagator

    seen: list[Propagator] = []
    original = Propagator.propagate

    def recording(self: Propagator, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Propagator, "propagate", recording)
    return seen


@pytest.mark.parametrize("flags", [["--amp"], ["--flip-tta"], ["--amp", "--flip-tta"]])
def test_precision_and_mirroring_flags_reach_the_inferer(
    files: dict[str, Path], tmp_path: Path, seen_inferers: list, flags: list[str]
) -> None:
    seen = seen_inferers
    out = tmp_path / "seg.nii.gz"
    code = main(_segment_mask_prompt(files, out, *flags))
    assert code == 0 and out.is_file()
    assert seen and seen[0].amp == ("--amp" in flags) and seen[0].flip_tta == ("--flip-tta" in flags)


@pytest.mark.parametrize(
    "flags,weights",
    [([], (WALKER_WEIGHT, WALKER_WEIGHT_BOX)), (["--walker-weight", "0", "--walker-weight-box", "0.25"], (0.0, 0.25))],
)
def test_walker_weights_reach_the_inferer_and_default_to_the_bundles(
    files: dict[str, Path], tmp_path: Path, seen_inferers: list, flags: list[str], weights: tuple
) -> None:
    from monai.bundle import ConfigParser

    seen = seen_inferers
    bundle = ConfigParser.load_config_file(Path(__file__).parents[2] / "bundle" / "configs" / "inference.json")
    assert (bundle["walker_weight"], bundle["walker_weight_box"]) == (WALKER_WEIGHT, WALKER_WEIGHT_BOX)
    assert bundle["walker_beta"] == WALKER_BETA
    out = tmp_path / "seg.nii.gz"
    assert main(_segment_mask_prompt(files, out, *flags)) == 0 and out.is_file()
    assert (seen[0].walker_weight, seen[0].walker_weight_box) == weights and seen[0].walker_beta == WALKER_BETA


@pytest.mark.parametrize("axis,box,index", [(2, "14,13,34,31", 15), (0, "5,6,30,20", 24), (1, "10,8,38,22", 22)])
def test_box_prompt_along_each_axis(files: dict[str, Path], tmp_path: Path, axis: int, box: str, index: int) -> None:
    out = tmp_path / "box.nii.gz"
    code = main(
        [
            "segment",
            str(files["image"]),
            "--box",
            box,
            "--slice",
            str(index),
            "--axis",
            str(axis),
            "-o",
            str(out),
            *_weights(files),
        ]
    )
    assert code == 0
    labels = np.asarray(nib.load(out).dataobj)
    assert np.take(labels, index, axis=axis).sum() > 0


def test_box3d_prompt(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "box3d.nii.gz"
    assert main(["segment", str(files["image"]), "--box3d", "14,13,9,34,31,21", "-o", str(out), *_weights(files)]) == 0
    labels = np.asarray(nib.load(out).dataobj)
    assert labels[:, :, :9].sum() == 0 and labels[:, :, 22:].sum() == 0 and labels[:, :, 15].sum() > 0


def test_a_mask_prompt_cropped_to_its_extent_is_placed_on_the_image_grid(
    files: dict[str, Path], tmp_path: Path
) -> None:
    # As 3D Slicer saves a segmentation: the same voxel lattice, cropped to the segment, origin moved to the crop.
    full = np.asarray(nib.load(files["prompt"]).dataobj)
    rows, cols, _ = np.nonzero(full)
    start = np.array([rows.min(), cols.min(), 15])
    cropped = full[start[0] : rows.max() + 1, start[1] : cols.max() + 1, 15:16]
    shifted = AFFINE.copy()
    shifted[:3, 3] = (AFFINE @ np.array([*start, 1.0]))[:3]
    nib.save(nib.Nifti1Image(cropped, shifted), tmp_path / "cropped.nii.gz")
    out, same = tmp_path / "cropped_seg.nii.gz", tmp_path / "full_seg.nii.gz"
    assert main(_segment_command(files, out, "--mask-prompt", str(tmp_path / "cropped.nii.gz"))) == 0
    assert main(_segment_mask_prompt(files, same)) == 0
    assert np.array_equal(np.asarray(nib.load(out).dataobj), np.asarray(nib.load(same).dataobj))


def _slicer_roi(path: Path, first: tuple[float, ...], last: tuple[float, ...]) -> Path:
    """A Slicer ROI (LPS, as Slicer saves it) spanning voxel coordinates ``first..last`` of the test image."""
    corners = np.array([[*first, 1.0], [*last, 1.0]]) @ AFFINE.T
    center, size = corners[:, :3].mean(axis=0) * [-1, -1, 1], np.abs(corners[1, :3] - corners[0, :3])
    markup = {"type": "ROI", "coordinateSystem": "LPS", "center": center.tolist(), "size": size.tolist()}
    path.write_text(json.dumps({"markups": [markup]}))
    return path


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ((13.5, 12.5, 15.0), (34.5, 31.5, 15.0), {"box": [14, 13, 34, 31], "slice": 15, "axis": 2}),
        # The image's rows lean across slices (AFFINE[1, 2]), so a world-aligned box covers a row more each side.
        ((13.5, 12.5, 8.5), (34.5, 31.5, 21.5), {"box3d": [14, 12, 9, 34, 32, 21], "axis": 2}),
    ],
)
def test_slicer_roi_prompt_is_the_same_box_on_the_voxel_grid(
    files: dict[str, Path], tmp_path: Path, first: tuple, last: tuple, expected: dict
) -> None:
    roi = _slicer_roi(tmp_path / "roi.mrk.json", first, last)
    out, report = tmp_path / "roi.nii.gz", tmp_path / "roi.json"
    assert main(_segment_command(files, out, "--roi", str(roi), "--report", str(report))) == 0
    prompt = json.loads(report.read_text())["prompt"]
    assert {key: prompt[key] for key in expected} == expected and prompt["roi"] == str(roi)
    same = tmp_path / "same.nii.gz"
    by_hand = ["--box", "14,13,34,31", "--slice", "15"] if "box" in expected else ["--box3d", "14,12,9,34,32,21"]
    assert main(_segment_command(files, same, *by_hand)) == 0
    assert np.array_equal(np.asarray(nib.load(out).dataobj), np.asarray(nib.load(same).dataobj))


BAD_INPUTS = [
    (["{flat}", "--mask-prompt", "{prompt}"], "3D"),
    (["{image}", "--mask-prompt", "{small}"], "grid"),
    (["{image}", "--mask-prompt", "{empty}"], "empty"),
    (["{image}", "--box", "10,10,60,20", "--slice", "15"], "outside"),
    (["{image}", "--box", "20,10,10,20", "--slice", "15"], "inverted"),
    (["{image}", "--box", "10,10,10,20", "--slice", "15"], "zero area"),
    (["{image}", "--box", "10,10,20,20", "--slice", "99"], "out of range"),
    (["{image}", "--box", "10,10,20", "--slice", "5"], "4 comma-separated"),
    (["{image}", "--box", "10,10,20,20"], "needs --slice"),
    (["{nan}", "--box", "10,10,20,20", "--slice", "5"], "NaN"),
    (["{blank}", "--box", "14,13,34,31", "--slice", "27"], "slice 27 is blank"),
    (["{blank}", "--mask-prompt", "{on_padding}"], "slice 27 is blank"),
    (["{image}", "--roi", "{roi_outside}"], "the ROI lies outside the image"),
    (["{image}", "--roi", "{corrupt}"], "not a Slicer markups JSON file"),
    (["{corrupt}", "--box", "10,10,20,20", "--slice", "5"], "cannot read"),
    (["{missing}", "--box", "10,10,20,20", "--slice", "5"], "no such file"),
    (["{image}", "--mask-prompt", "{prompt}", "--walker-weight", "1.5"], "--walker-weight must be in [0, 1]"),
    (["{image}", "--box", "10,10,20,20", "--slice", "5", "--walker-weight-box", "-1"], "--walker-weight-box must"),
]


@pytest.mark.parametrize("arguments,message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_output(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, arguments: list[str], message: str
) -> None:
    names = {k: str(v) for k, v in files.items()} | {"missing": str(tmp_path / "missing.nii.gz")}
    out = tmp_path / "never.nii.gz"
    args = [a.format(**names) for a in arguments]
    assert main(["segment", *args, "-o", str(out), *_weights(files)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("pam-monai: error:") and message in error[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "checkpoint,message",
    [("missing.pt", "not found"), ("box2mask", "Box2Mask weights"), ("garbage.pt", "garbage.pt")],
)
def test_missing_or_mismatched_checkpoint(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, checkpoint: str, message: str
) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    path = str(files[checkpoint]) if checkpoint in files else str(tmp_path / checkpoint)
    out = tmp_path / "never.nii.gz"
    code = main(
        [
            "segment",
            str(files["image"]),
            "--box",
            "10,10,20,20",
            "--slice",
            "5",
            "-o",
            str(out),
            "--checkpoint",
            path,
            "--box2mask-checkpoint",
            str(files["box2mask"]),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message.lower() in error[0].lower()
    assert not out.exists()


def test_without_default_weights_the_cli_says_so(files: dict[str, Path], tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PAM_MONAI_MODELS", str(tmp_path / "no-models"))
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "pam_monai",
            "segment",
            str(files["image"]),
            "--box",
            "10,10,20,20",
            "--slice",
            "5",
            "-o",
            str(tmp_path / "x.nii.gz"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    assert "no default PropMask weights" in process.stderr
    assert not (tmp_path / "x.nii.gz").exists()


def test_convert_checkpoint_command(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "converted.pt"
    assert main(["convert-checkpoint", str(files["box2mask"]), "-o", str(out), "--kind", "box2mask"]) == 0
    state = torch.load(out, weights_only=True)
    assert "decoder.seg_layers.0.bias" in state


def test_dicom_series_folder_is_read_through_monai(files: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    from conftest import write_dicom_series

    from pam_monai.data.io import load_image

    truth = ellipsoid((48, 40, 20), (24, 20, 10), (10, 8, 6))
    write_dicom_series(object_volume(truth), tmp_path / "series")
    out = tmp_path / "dicom_seg.nii.gz"
    code = main(["segment", str(tmp_path / "series"), "--box", "14,12,34,28", "--slice", "10", "-o", str(out),
                 *_weights(files)])  # fmt: skip
    assert code == 0
    written = nib.load(out)
    image = load_image(tmp_path / "series")
    assert written.shape == tuple(image.shape) == (48, 40, 20)
    assert np.allclose(written.affine, np.asarray(image.affine), atol=1e-4)
    assert np.allclose(np.abs(np.diag(written.affine))[:3], (0.8, 0.9, 2.5), atol=1e-4)
    assert np.asarray(written.dataobj)[:, :, 10].sum() > 0


def test_an_output_under_a_file_is_one_line_and_exit_2(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "taken").write_text("not a folder")
    assert main(_segment_mask_prompt(files, tmp_path / "taken" / "seg.nii.gz")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("pam-monai: error:") and "taken" in error[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
