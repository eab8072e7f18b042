"""Shared test fixtures: generated volumes with known objects and stand-in networks that know the truth."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class OracleBox2Mask(nn.Module):
    """Says "object" wherever the normalised input is bright: the true mask for volumes made by `object_volume`."""

    input_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        fg = (x > -0.5).float() * 20 - 10
        logits = torch.cat((-fg, fg), dim=1)
        return [logits, logits[..., ::2, ::2]]


class OraclePropMask(nn.Module):
    """Returns the true mask of whichever query slices it is given (object voxels normalise above 0)."""

    input_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.calls: list[int] = []

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.calls.append(len(queries))
        fg = (queries > -0.5).float() * 20 - 10
        logits = torch.cat((-fg, fg), dim=1)
        return [logits, logits[..., ::2, ::2], logits[..., ::4, ::4]]

    def forward(self, guiding_image, guiding_mask, adjacent_images):  # noqa: ANN001, ANN201
        b, nq = adjacent_images.shape[:2]
        index = torch.arange(b).repeat_interleave(nq)
        return self.forward_indexed(guiding_image, guiding_mask, adjacent_images.flatten(0, 1), index)


class GuideCopyPropMask(OraclePropMask):
    """Predicts every query slice as its guide's mask: a network that has learnt nothing but copying, so what the
    votes of guides of different size (or a prior between them) make of a slice shows alone."""

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        self.calls.append(len(queries))
        fg = (masks[index] > 0.5).float() * 20 - 10
        logits = torch.cat((-fg, fg), dim=1)
        return [logits, logits[..., ::2, ::2], logits[..., ::4, ::4]]


def ellipsoid(
    shape: tuple[int, int, int], centre: tuple[float, float, float], radii: tuple[float, float, float]
) -> np.ndarray:
    grid = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def object_volume(label: np.ndarray, seed: int = 0) -> np.ndarray:
    """Objects of exactly 100 on a noisy background (0 +- 5): the guided window maps objects to 0, the rest to -1."""
    rng = np.random.default_rng(seed)
    return np.where(label > 0, 100.0, rng.normal(0, 5, label.shape)).astype(np.float32)


@pytest.fixture
def oracle_propmask() -> OraclePropMask:
    return OraclePropMask()


@pytest.fixture
def oracle_box2mask() -> OracleBox2Mask:
    return OracleBox2Mask()


def write_dicom_series(
    volume: np.ndarray,
    folder,
    spacing=(0.8, 0.9, 2.5),
    origin=(-20.0, -30.0, 5.0),  # noqa: ANN001
) -> list[str]:
    """Write ``volume`` (i, j, k) as an axial CT series, one file per k; returns the SOP instance UIDs in k order."""
    from pathlib import Path

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    uids = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.InstanceNumber = "CT", "Test^Volume", "PAM-1", k + 1
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + spacing[2] * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (along j), column spacing (along i)
        ds.SliceThickness = spacing[2]
        plane = volume[:, :, k].T  # DICOM rows run along j, columns along i
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (np.round(plane) + 1024).astype(np.int16).tobytes()
        ds.save_as(ds.filename, write_like_original=False)
        uids.append(str(ds.SOPInstanceUID))
    return uids


def always_object(network: nn.Module) -> nn.Module:
    """Weights whose every head says "object": deterministic, non-empty output for plumbing tests."""
    for head in network.decoder.seg_layers:
        torch.nn.init.zeros_(head.weight)
        head.bias.data = torch.tensor([-4.0, 4.0])
    return network


@pytest.fixture()
def benchmark_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Import a script of ``benchmarks/`` by name; afterwards restore torch's thread count (the scripts set the
    process's) and forget the scripts, so each test imports them afresh."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    threads = torch.get_num_threads()
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    torch.set_num_threads(threads)
    for name in (*loaded, "_common"):
        sys.modules.pop(name, None)
