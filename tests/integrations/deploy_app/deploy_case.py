"""A generated DICOM CT series, stand-in weights and how to run the Deploy app: shared by the Deploy tests.

A small CT series is written with pydicom from a generated volume: 64 columns x 56 rows x 24 slices, pixel spacing
1.1 mm between rows and 0.9 mm between columns (unequal, so that a row/column mix-up shows), 2.5 mm slices, an
oblique orientation, stored values with RescaleIntercept -1024, files named and numbered in shuffled order. The
stand-in networks say "object" everywhere (deterministic, non-empty output), so the in-process tests check the
plumbing, not accuracy.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import always_object

ROOT = Path(__file__).resolve().parents[3]
APP_DIR = ROOT / "integrations" / "deploy"
APP = APP_DIR / "app.py"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


HAS_DEPLOY = _has("monai.deploy") and _has("highdicom") and _has("holoscan")
requires_deploy = pytest.mark.skipif(
    not HAS_DEPLOY,
    reason="MONAI Deploy App SDK / Holoscan / highdicom are not installed here; they have their own environment: "
    "run bash scripts/test_deploy.sh (builds .venv-deploy)",
)

SHAPE = (64, 56, 24)  # (columns i, rows j, slices k)
DI, DJ, DK = 0.9, 1.1, 2.5  # mm between columns, between rows, between slices
ANGLE_A, ANGLE_B = np.deg2rad(20.0), np.deg2rad(-15.0)
ROW_COSINE = np.array([np.cos(ANGLE_A), np.sin(ANGLE_A), 0.0])
COLUMN_COSINE = np.array([-np.sin(ANGLE_A) * np.cos(ANGLE_B), np.cos(ANGLE_A) * np.cos(ANGLE_B), np.sin(ANGLE_B)])
NORMAL = np.cross(ROW_COSINE, COLUMN_COSINE)
ORIGIN = np.array([-31.5, 12.25, -80.0])
PROMPT_SLICE = 11
BOX_PROMPT = {"box": [20, 18, 40, 36], "slice": PROMPT_SLICE, "axis": 2}
RUN_TIMEOUT_S = 300


def expected_affine_lps() -> np.ndarray:
    """Voxel (i, j, k) = (column, row, slice) -> DICOM patient coordinates, from the series' own definition."""
    affine = np.eye(4)
    affine[:3, 0] = ROW_COSINE * DI
    affine[:3, 1] = COLUMN_COSINE * DJ
    affine[:3, 2] = NORMAL * DK
    affine[:3, 3] = ORIGIN
    return affine


def expected_affine_ras() -> np.ndarray:
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ expected_affine_lps()


def save_half_state_dict(network: torch.nn.Module, path: Path) -> None:
    """As the bundle ships its weights: a plain float16 state dict."""
    state = {k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in network.state_dict().items()}
    torch.save(state, path)


def write_ct_series(
    folder: Path, volume: np.ndarray, skip: tuple[int, ...] = (), seed: int = 0, reverse_numbers: bool = False
) -> list[str]:
    """Write ``volume`` (HU, (i, j, k)) as a CT series; returns the SOP instance UID of every slice k.

    Slice k lies at ``ORIGIN + k * DK * NORMAL``; file names are shuffled; InstanceNumber is k + 1 (most scanners
    number along the slice normal) or, with ``reverse_numbers``, counts the other way.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    uids = [generate_uid() for _ in range(volume.shape[2])]
    names = rng.permutation(volume.shape[2])
    for k in range(volume.shape[2]):
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uids[k]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uids[k]
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^PAM", "PAM0001", "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.ContentDate = "20260101", "120000", "20260101", "20260101"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "ACC1", ""
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.SeriesDescription = "CT", "pam-tests", 3, "synthetic CT"
        ds.InstanceNumber = volume.shape[2] - k if reverse_numbers else k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*ROW_COSINE, *COLUMN_COSINE)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ORIGIN + k * DK * NORMAL]
        ds.PixelSpacing = [f"{DJ}", f"{DI}"]  # (between rows, between columns)
        ds.SliceThickness = f"{DK}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        stored = np.clip(np.round(volume[:, :, k].T) + 1024, 0, 4095).astype(np.uint16)  # (rows, columns)
        ds.PixelData = stored.tobytes()
        path = folder / f"IM{names[k]:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return uids


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pam_monai.data.synthetic import generate_volume
    from pam_monai.networks import build_box2mask, build_propmask

    root = tmp_path_factory.mktemp("deploy")
    volume = generate_volume(7, SHAPE, modality="CT", spacing=(DI, DJ, DK)).image
    volume = np.round(np.clip(volume, -1024, 3071)).astype(np.float32)
    models = root / "models"
    models.mkdir()
    torch.manual_seed(0)
    save_half_state_dict(always_object(build_propmask("light")), models / "model.pt")
    save_half_state_dict(always_object(build_box2mask("light")), models / "box2mask.pt")
    series = root / "series"
    uids = write_ct_series(series, volume)
    return {"root": root, "volume": volume, "models": models, "series": series, "uids": uids}


def run_app(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PAM_", "HOLOSCAN_"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, str(APP), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=environment,
        cwd=cwd or ROOT,
    )


def error_line(completed: subprocess.CompletedProcess) -> str:
    lines = [line for line in completed.stderr.splitlines() if line.startswith("pam-deploy: error:")]
    assert len(lines) == 1, completed.stderr[-3000:]
    assert completed.stderr.rstrip().endswith(lines[0])  # the last thing said
    return lines[0]


def seg_frames(seg) -> list[tuple[str, list[float], int]]:  # noqa: ANN001
    """Per frame: (referenced SOP instance UID, ImagePositionPatient, segment number)."""
    frames = []
    shared = seg.SharedFunctionalGroupsSequence[0]
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        identification = item if "SegmentIdentificationSequence" in item else shared  # shared when one segment
        number = int(identification.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        frames.append((str(source.ReferencedSOPInstanceUID), position, number))
    return frames
