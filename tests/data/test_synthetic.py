"""Tests for the procedural synthetic volume generator (``pam_monai.data.synthetic``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from pam_monai.data import SyntheticVolume, SyntheticVolumeDataset, generate_volume, write_synthetic_datalist
from pam_monai.data.synthetic import (
    CT_INTENSITY_RANGE,
    IN_PLANE_SPACING_RANGE,
    MIN_OBJECT_VOXELS,
    SLICE_SPACING_RANGE,
)

SMALL = (48, 48, 32)
CASES = [
    pytest.param((48, 48, 32), None, None, id="48x48x32-random"),
    pytest.param((64, 56, 40), "CT", None, id="64x56x40-CT"),
    pytest.param((40, 64, 24), "MR", None, id="40x64x24-MR"),
    pytest.param((48, 48, 16), "CT", True, id="48x48x16-CT-partial-volume"),
    pytest.param((56, 48, 32), "MR", False, id="56x48x32-MR-no-partial-volume"),
]


def _ring_contrast(vol: SyntheticVolume) -> list[float]:
    """Per object: mean inside minus mean of the unlabelled 2-voxel ring around it (NaN-free, skips tiny rings)."""
    out = []
    for k in range(1, vol.num_objects + 1):
        mask = vol.label == k
        ring = ndimage.binary_dilation(mask, iterations=2) & (vol.label == 0)
        if ring.sum() >= 20:
            out.append(float(vol.image[mask].mean() - vol.image[ring].mean()))
    return out


@pytest.mark.parametrize(("shape", "modality", "pv"), CASES)
def test_deterministic_by_seed(shape, modality, pv):
    a = generate_volume(3, shape, modality=modality, partial_volume=pv)
    b = generate_volume(3, shape, modality=modality, partial_volume=pv)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.spacing == b.spacing
    assert a.modality == b.modality


@pytest.mark.parametrize(("shape", "modality", "pv"), CASES)
def test_shapes_dtypes_labels(shape, modality, pv):
    vol = generate_volume(11, shape, modality=modality, partial_volume=pv)
    assert isinstance(vol, SyntheticVolume)
    assert vol.image.shape == shape and vol.image.dtype == np.float32
    assert vol.label.shape == shape and vol.label.dtype == np.uint8
    assert np.isfinite(vol.image).all()
    assert vol.modality in ("CT", "MR")
    if modality is not None:
        assert vol.modality == modality
    assert len(vol.spacing) == 3 and all(isinstance(s, float) for s in vol.spacing)
    np.testing.assert_allclose(vol.affine, np.diag([*vol.spacing, 1.0]))
    n = vol.num_objects
    assert n >= 2
    np.testing.assert_array_equal(np.unique(vol.label), np.arange(n + 1))
    assert np.bincount(vol.label.ravel())[1:].min() >= MIN_OBJECT_VOXELS


def test_different_seeds_differ():
    a, b = generate_volume(0, SMALL), generate_volume(1, SMALL)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.label, b.label)
    # same seed, different forced modality: different intensity scale
    ct, mr = generate_volume(5, SMALL, modality="CT"), generate_volume(5, SMALL, modality="MR")
    assert ct.modality == "CT" and mr.modality == "MR"


def test_labels_consecutive_min_size_and_multi_slice_over_seeds():
    spans = []
    for seed in range(12):
        vol = generate_volume(seed, SMALL)
        n = vol.num_objects
        assert n >= 2, seed
        counts = np.bincount(vol.label.ravel(), minlength=n + 1)
        assert len(counts) == n + 1 and (counts[1:] >= MIN_OBJECT_VOXELS).all(), seed
        for box in ndimage.find_objects(vol.label):
            assert box is not None  # consecutive: no gaps
            spans.append(box[2].stop - box[2].start)
    spans = np.asarray(spans)
    assert (spans > 1).mean() >= 0.9
    assert (spans > 2).mean() >= 0.8


def test_num_objects_controls_density():
    few = [generate_volume(s, SMALL, num_objects=(2, 2)).num_objects for s in range(6)]
    many = [generate_volume(s, SMALL, num_objects=(9, 12)).num_objects for s in range(6)]
    assert min(few) >= 2
    assert np.mean(many) > np.mean(few)


def test_intensity_ranges():
    for seed in range(8):
        ct = generate_volume(seed, SMALL, modality="CT")
        assert ct.image.min() >= -1100.0
        assert ct.image.min() >= CT_INTENSITY_RANGE[0] and ct.image.max() <= CT_INTENSITY_RANGE[1]
        assert -1000.0 <= float(np.median(ct.image)) <= 400.0
        mr = generate_volume(seed, SMALL, modality="MR")
        assert mr.image.min() >= 0.0
        assert mr.image.max() > 0.0
        assert np.isfinite(ct.image).all() and np.isfinite(mr.image).all()


def test_objects_brighter_and_darker_than_surroundings():
    brighter = darker = 0
    for seed in range(10):
        vol = generate_volume(seed, SMALL)
        lo, hi = np.percentile(vol.image, [1, 99])
        tol = 0.03 * (hi - lo)
        for diff in _ring_contrast(vol):
            brighter += diff > tol
            darker += diff < -tol
    assert brighter >= 3 and darker >= 3, (brighter, darker)


def test_spacing_within_bounds_and_anisotropic():
    spacings = np.array([generate_volume(seed, (24, 24, 16), num_objects=(2, 3)).spacing for seed in range(25)])
    assert (spacings[:, :2] >= IN_PLANE_SPACING_RANGE[0]).all() and (spacings[:, :2] <= IN_PLANE_SPACING_RANGE[1]).all()
    assert (spacings[:, 2] >= SLICE_SPACING_RANGE[0]).all() and (spacings[:, 2] <= SLICE_SPACING_RANGE[1]).all()
    assert (spacings[:, 2] / spacings[:, 0] > 1.5).any()  # thick slices occur
    assert len(np.unique(spacings[:, 2])) > 10


def test_explicit_spacing_is_used():
    vol = generate_volume(2, SMALL, spacing=(0.7, 0.7, 4.0))
    assert vol.spacing == (0.7, 0.7, 4.0)
    np.testing.assert_allclose(np.diag(vol.affine)[:3], (0.7, 0.7, 4.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (8, 8)},
        {"modality": "PET"},
        {"spacing": (1.0, 0.0, 1.0)},
        {"num_objects": (3, 1)},
    ],
)
def test_invalid_arguments(kwargs):
    shape = kwargs.pop("shape", SMALL)
    with pytest.raises(ValueError):
        generate_volume(0, shape, **kwargs)


def test_dataset_items_transform_and_cache():
    ds = SyntheticVolumeDataset(3, shape=SMALL, seed=7)
    assert len(ds) == 3
    item = ds[1]
    assert set(item) >= {"image", "label", "spacing", "seed", "modality"}
    assert item["seed"] == 8
    assert item["image"].shape == (1, *SMALL) and item["image"].dtype == np.float32
    assert item["label"].shape == (1, *SMALL)
    ref = generate_volume(8, SMALL)
    np.testing.assert_array_equal(item["image"][0], ref.image)
    np.testing.assert_array_equal(item["label"][0], ref.label)
    np.testing.assert_allclose(item["spacing"], ref.spacing)
    np.testing.assert_array_equal(ds[-1]["image"], ds[2]["image"])
    with pytest.raises(IndexError):
        ds[3]

    def add_flag(d):
        return {**d, "flag": True}

    ds_t = SyntheticVolumeDataset(2, shape=SMALL, seed=7, transform=add_flag, cache=True)
    first = ds_t[0]
    assert first["flag"] is True
    first["image"][...] = 0  # must not corrupt the cache
    again = ds_t[0]
    np.testing.assert_array_equal(again["image"], ds[0]["image"])


def test_dataset_with_monai_transforms_concat_and_loader():
    from monai.data import DataLoader
    from monai.transforms import Compose, ScaleIntensityd, Spacingd

    ds = SyntheticVolumeDataset(
        2,
        shape=SMALL,
        seed=0,
        as_meta_tensor=True,
        transform=Compose(
            [
                Spacingd(keys=["image", "label"], pixdim=(1.5, 1.5, 1.5), mode=("bilinear", "nearest")),
                ScaleIntensityd(keys="image"),
            ]
        ),
    )
    item = ds[0]
    np.testing.assert_allclose(item["image"].pixdim, (1.5, 1.5, 1.5), atol=1e-4)
    assert float(item["image"].max()) <= 1.0 + 1e-5

    plain = SyntheticVolumeDataset(2, shape=SMALL, seed=100)
    mixed = torch.utils.data.ConcatDataset([plain, SyntheticVolumeDataset(1, shape=SMALL, seed=200)])
    assert len(mixed) == 3 and mixed[2]["seed"] == 200
    batch = next(iter(DataLoader(plain, batch_size=2, num_workers=0)))
    assert batch["image"].shape == (2, 1, *SMALL)
    assert batch["spacing"].shape == (2, 3)


def test_write_synthetic_datalist_roundtrip(tmp_path):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    shape = (40, 36, 24)
    path = write_synthetic_datalist(tmp_path / "synth", 3, shape=shape, seed=21, num_validation=1)
    assert path == tmp_path / "synth" / "dataset.json"
    meta = json.loads(path.read_text())
    assert len(meta["training"]) == 2 and len(meta["validation"]) == 1
    assert meta["labels"]["0"] == "background" and "1" in meta["labels"]
    assert meta["training"][0] == {"image": "imagesTr/synth_0000.nii.gz", "label": "labelsTr/synth_0000.nii.gz"}
    assert meta["validation"][0]["image"] == "imagesTr/synth_0002.nii.gz"
    leftovers = [p for p in (tmp_path / "synth").rglob("*") if p.name.startswith(".")]
    assert not leftovers

    for i, entry in enumerate(meta["training"] + meta["validation"]):
        ref = generate_volume(21 + i, shape)
        img = nib.load(path.parent / entry["image"])
        lab = nib.load(path.parent / entry["label"])
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
        np.testing.assert_allclose(lab.affine, ref.affine, atol=1e-6)
        np.testing.assert_allclose(img.header.get_zooms(), ref.spacing, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(img.dataobj), ref.image)
        np.testing.assert_array_equal(np.asarray(lab.dataobj), ref.label)

    load = Compose([LoadImaged(keys=["image", "label"]), EnsureChannelFirstd(keys=["image", "label"])])
    entry = {k: str(path.parent / v) for k, v in meta["training"][1].items()}
    data = load(entry)
    assert tuple(data["image"].shape) == (1, *shape)
    assert tuple(data["label"].shape) == (1, *shape)
    np.testing.assert_allclose(data["image"].pixdim, generate_volume(22, shape).spacing, rtol=1e-5)
    assert int(data["label"].max()) >= 2


def test_horn_tapers_to_a_thin_tip():
    from pam_monai.data.synthetic.grid import Grid
    from pam_monai.data.synthetic.shapes import shape_horn

    grid = Grid((80, 80, 80), (1.0, 1.0, 1.0))
    tapered = 0
    for seed in range(10):
        result = shape_horn(np.random.default_rng(seed), grid, np.array([40.0, 40.0, 40.0]), 18.0, 2.0)
        assert result is not None
        _, mask = result
        assert mask.any() and ndimage.label(mask)[1] == 1  # one connected object
        # the thickness (largest inscribed radius) near the start cap exceeds that near the tip
        depth = ndimage.distance_transform_edt(mask)
        tapered += depth.max() > 2.0 * np.percentile(depth[mask], 10)
    assert tapered >= 8


def test_clean_volumes_are_smooth_and_nearly_noise_free(monkeypatch):
    from pam_monai.data.synthetic import volume as synthetic

    def high_frequency(vol: SyntheticVolume) -> float:
        """Median absolute slice-to-slice difference inside the largest object, relative to its contrast."""
        inside = vol.label == np.argmax(np.bincount(vol.label.ravel())[1:]) + 1
        step = np.abs(np.diff(vol.image, axis=0))[inside[1:] & inside[:-1]]
        return float(np.median(step)) / (float(np.ptp(vol.image)) + 1e-6)

    monkeypatch.setattr(synthetic, "CLEAN_FRACTION", 1.0)
    clean = [high_frequency(generate_volume(seed, SMALL, spacing=(1.0, 1.0, 1.0))) for seed in range(6)]
    monkeypatch.setattr(synthetic, "CLEAN_FRACTION", 0.0)
    noisy = [high_frequency(generate_volume(seed, SMALL, spacing=(1.0, 1.0, 1.0))) for seed in range(6)]
    assert np.median(clean) < 0.5 * np.median(noisy), (clean, noisy)


def _touching_pair_contrasts(vol: SyntheticVolume) -> list[float]:
    """|mean(a) - mean(b)| over touching label pairs, relative to the image's spread."""
    struct = ndimage.generate_binary_structure(3, 1)
    spread = float(np.percentile(vol.image, 99) - np.percentile(vol.image, 1)) + 1e-6
    means = ndimage.mean(vol.image, vol.label, index=np.arange(1, int(vol.label.max()) + 1))
    contrasts = []
    for a in range(1, int(vol.label.max()) + 1):
        ring = ndimage.binary_dilation(vol.label == a, struct) & (vol.label > a)
        for b in np.unique(vol.label[ring]):
            contrasts.append(abs(means[a - 1] - means[b - 1]) / spread)
    return contrasts


def test_hidden_boundaries_make_touching_objects_look_alike():
    def median_contrast(probability: float) -> float:
        pairs = [
            c
            for seed in range(12)
            for c in _touching_pair_contrasts(generate_volume(seed, SMALL, hidden_boundaries=probability))
        ]
        assert len(pairs) >= 5
        return float(np.median(pairs))

    hidden, visible = median_contrast(1.0), median_contrast(0.0)
    assert hidden < 0.3 * visible, (hidden, visible)


def test_hidden_boundaries_change_the_look_not_the_labels():
    hidden = generate_volume(3, SMALL, hidden_boundaries=1.0)
    visible = generate_volume(3, SMALL, hidden_boundaries=0.0)
    assert np.array_equal(hidden.label, visible.label)
    assert not np.array_equal(hidden.image, visible.image)
    default = generate_volume(3, SMALL)
    assert np.array_equal(default.image, generate_volume(3, SMALL).image)  # still deterministic by seed


@pytest.mark.parametrize("probability", [-0.1, 1.5])
def test_hidden_boundaries_must_be_a_probability(probability):
    with pytest.raises(ValueError, match="hidden_boundaries"):
        generate_volume(0, SMALL, hidden_boundaries=probability)


def test_every_shape_is_drawn_and_seeded() -> None:
    """Each shape of the generator draws a non-empty mask inside the grid, the same one for the same seed."""
    from pam_monai.data.synthetic.grid import Grid
    from pam_monai.data.synthetic.shapes import SHAPE_FUNCS, SHAPE_WEIGHTS, SHAPES

    assert set(SHAPES) == set(SHAPE_FUNCS) and len(SHAPE_WEIGHTS) == len(SHAPES)
    grid = Grid((48, 48, 32), (1.0, 1.0, 2.0))
    centre = grid.extent / 2
    for kind in SHAPES:
        first = SHAPE_FUNCS[kind](np.random.default_rng(3), grid, centre, 10.0, 2.5)
        again = SHAPE_FUNCS[kind](np.random.default_rng(3), grid, centre, 10.0, 2.5)
        assert first is not None and first[1].any(), kind
        assert first[0] == again[0] and np.array_equal(first[1], again[1]), kind
        assert first[1].shape == tuple(s.stop - s.start for s in first[0]), kind
