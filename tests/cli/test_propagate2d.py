"""Propagation across 2D image sets and large 2D images, with generated images whose masks are known."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from conftest import OraclePropMask
from PIL import Image

from pam_monai.cli import propagate2d
from pam_monai.cli.main import main
from pam_monai.cli.propagate2d import (
    Propagate2DError,
    find_guides,
    load_guides,
    propagate_folder,
    propagate_large_image,
    propagate_to_images,
)
from pam_monai.data.io import ImageReadError
from pam_monai.images2d.io import TiffRegionReader
from pam_monai.networks import build_propmask, save_network
from pam_monai.networks.checkpoint import CheckpointError
from pam_monai.predictor import default_checkpoints

# (name, suffix, shape, disc centres, radii) of the generated targets
TARGETS = [
    ("a", ".png", (130, 90), [(62, 44)], [30]),
    ("b", ".tif", (90, 140), [(45, 40), (45, 105)], [30, 28]),
    ("c", ".nii.gz", (140, 140), [(70, 72)], [38]),
    ("d_rgb", ".png", (96, 120), [(50, 60)], [29]),
]

CENTRES = {name: list(zip(centres, radii)) for name, _, _, centres, radii in TARGETS}


def discs(shape: tuple[int, int], centres, radii) -> np.ndarray:  # noqa: ANN001
    """Instance labels 1..n of filled discs."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    for i, ((r, c), radius) in enumerate(zip(centres, radii), start=1):
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = i
    return labels


def render(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Objects of exactly 100 on a darker noisy background: the oracle's "object" is exactly the truth."""
    background = np.clip(np.random.default_rng(seed).normal(30, 8, labels.shape), 0, 80)
    return np.where(labels > 0, 100, background).astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def save(array: np.ndarray, path: Path) -> Path:
    if path.name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    elif path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def write_guides(folder: Path) -> Path:
    """Three guides in three formats: PNG, TIFF (float image) and 2D NIfTI."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [(".png", (110, 130), [(55, 60)], [32]), (".tif", (120, 100), [(60, 50)], [28]),
             (".nii.gz", (90, 90), [(45, 44)], [26])]  # fmt: skip
    for i, (suffix, shape, centres, radii) in enumerate(specs):
        truth = discs(shape, centres, radii)
        image = render(truth, seed=10 + i)
        save(image.astype(np.float32) if suffix == ".tif" else image, folder / f"guide{i}{suffix}")
        save((truth > 0).astype(np.uint8) * (255 if suffix == ".png" else 1), folder / f"guide{i}_mask{suffix}")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("set2d")
    guides = write_guides(root / "guides")
    images = root / "images"
    images.mkdir()
    truth = {}
    for i, (name, suffix, shape, centres, radii) in enumerate(TARGETS):
        label = discs(shape, centres, radii)
        image = render(label, seed=i)
        if name.endswith("rgb"):
            image = np.stack([image] * 3, axis=-1)
        save(image, images / f"{name}{suffix}")
        truth[name] = label > 0
    torch.manual_seed(0)
    checkpoint = save_network(build_propmask("light", input_size=64), root / "propmask.pt")
    return {"root": root, "guides": guides, "images": images, "truth": truth, "checkpoint": checkpoint}


def test_set_propagation_through_files(data: dict, tmp_path: Path) -> None:
    out = tmp_path / "masks"  # whole images: every disc of a target, also both of "b"
    rows = propagate_folder(data["guides"], data["images"], out, OraclePropMask(), batch_size=3, localise="none")
    assert [r["image"] for r in rows] == sorted(f"{n}{s}" for n, s, *_ in TARGETS)
    for name, truth in data["truth"].items():
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        assert mask.shape == truth.shape and set(np.unique(mask)) <= {0, 255}
        assert dice(mask > 0, truth) > 0.9, name
    with open(out / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert list(summary[0]) == ["image", "area_px", "mean_confidence"]
    for row in summary:
        name = row["image"].split(".")[0]
        assert int(row["area_px"]) == int((np.asarray(Image.open(out / f"{name}_mask.png")) > 0).sum())
        assert 0.5 < float(row["mean_confidence"]) <= 1.0
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}_mask.png" for n, *_ in TARGETS] + ["summary.csv"])


@pytest.mark.parametrize(("localise", "fusion"), [("match", "best"), ("register", "mean"), ("auto", "best")])
def test_localised_propagation_finds_the_object(data: dict, tmp_path: Path, localise: str, fusion: str) -> None:
    """The default localises each guide's object: one disc per target (of "b"'s two, the one matched)."""
    out = tmp_path / "masks"
    propagate_folder(data["guides"], data["images"], out, OraclePropMask(), localise=localise, fusion=fusion)
    for name, truth in data["truth"].items():
        mask = np.asarray(Image.open(out / f"{name}_mask.png")) > 0
        found = [dice(mask, part) for part in (truth, *(discs(truth.shape, [c], [r]) > 0 for c, r in CENTRES[name]))]
        assert max(found) > 0.9, (name, found)
    with pytest.raises(Propagate2DError, match="unknown localiser 'nearest'"):
        propagate_folder(data["guides"], data["images"], tmp_path / "x", OraclePropMask(), localise="nearest")
    with pytest.raises(Propagate2DError, match="unknown fusion 'max'"):
        propagate_folder(data["guides"], data["images"], tmp_path / "x", OraclePropMask(), fusion="max")
    assert not (tmp_path / "x").exists()


def test_guide_list_file_matches_folder(data: dict, tmp_path: Path) -> None:
    pairs = find_guides(data["guides"])
    listing = tmp_path / "lists" / "guides.csv"
    listing.parent.mkdir()
    lines = ["image,mask", "# a comment, then a blank line", "", f"{pairs[0][0].resolve()},{pairs[0][1].resolve()}"]
    lines += [f"{os.path.relpath(i, listing.parent)}, {os.path.relpath(m, listing.parent)}" for i, m in pairs[1:]]
    listing.write_text("\n".join(lines) + "\n")
    from_list, from_folder = load_guides(listing), load_guides(data["guides"])
    assert len(from_list) == len(from_folder) == 3
    for (image_a, mask_a), (image_b, mask_b) in zip(from_list, from_folder):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(mask_a, mask_b)
    listing.write_text("a.png;b.png\n")
    with pytest.raises(Propagate2DError, match=f"{listing}:1"):
        load_guides(listing)


def test_batching_is_consistent() -> None:
    guides = []
    for i, (shape, radius) in enumerate([((100, 100), 30), ((80, 120), 25), ((128, 96), 34)]):
        truth = discs(shape, [(shape[0] // 2, shape[1] // 2)], [radius])
        guides.append((render(truth, seed=i), truth > 0))
    rng = np.random.default_rng(5)
    targets, truths = [], []
    for i in range(10):
        shape = (int(rng.integers(70, 150)), int(rng.integers(70, 150)))
        truth = discs(shape, [(shape[0] // 2, shape[1] // 2)], [min(shape) // 3])
        targets.append(render(truth, seed=100 + i))
        truths.append(truth > 0)
    one, eight = OraclePropMask(), OraclePropMask()
    single = propagate_to_images(guides, targets, one, batch_size=1, localise="none")
    batched = propagate_to_images(guides, targets, eight, batch_size=8, localise="none")
    assert one.calls == [3] * 10 and eight.calls == [8 * 3, 2 * 3]  # targets x guides per forward
    for (p1, m1), (p8, m8), truth, target in zip(single, batched, truths, targets):
        assert m1.shape == target.shape == p1.shape
        np.testing.assert_array_equal(m1, m8)
        np.testing.assert_allclose(p1, p8, atol=1e-6)
        assert dice(m1, truth) > 0.9


def mosaic(shape: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """``count`` separated discs (radius 20-34) at random places."""
    rng = np.random.default_rng(seed)
    centres, radii = [], []
    while len(centres) < count:
        centre, radius = rng.uniform(45, np.array(shape) - 45), rng.uniform(20, 34)
        if all(np.hypot(*(centre - c)) > radius + r + 12 for c, r in zip(centres, radii)):
            centres.append(centre)
            radii.append(radius)
    return discs(shape, centres, radii)


def test_large_mosaic_tiff_read_and_written_by_tiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = mosaic((1500, 1500), 30, seed=3)
    source = tmp_path / "mosaic.tif"
    tifffile.imwrite(source, render(truth, seed=1), tile=(256, 256), compression="zlib")
    guide_truth = discs((200, 220), [(60, 70), (135, 150)], [24, 31])
    guides = [(render(guide_truth, seed=2), guide_truth > 0)]

    def no_whole_reads(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the large image was decoded whole")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_whole_reads)
    result = propagate_large_image(source, guides, OraclePropMask(), output=tmp_path / "out" / "labels.tif")
    monkeypatch.undo()
    assert result.labels is None and result.count == 30 and 64 <= result.window <= 256
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "labels.tif"]  # scratch files removed
    with tifffile.TiffFile(tmp_path / "out" / "labels.tif") as tif:
        assert tif.is_bigtiff and tif.pages.first.is_tiled
        labels = tif.pages.first.asarray()
    assert labels.shape == truth.shape and int(labels.max()) == 30
    assert dice(labels > 0, truth > 0) > 0.9
    for i in range(1, 31):  # no disc split along window borders, no two discs merged
        inside = np.unique(labels[truth == i])
        assert len(inside[inside > 0]) == 1, f"disc {i} -> labels {inside}"
        under = np.unique(truth[labels == i])
        assert len(under[under > 0]) == 1
    in_memory = propagate_large_image(render(truth, seed=1), guides, OraclePropMask())
    np.testing.assert_array_equal(in_memory.labels, labels)


def test_tiff_region_reader_decodes_only_needed_tiles(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 255, (700, 900, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", array, tile=(128, 128), compression="zlib")
    tifffile.imwrite(tmp_path / "strips.tif", array[..., 0], rowsperstrip=50, compression="zlib")
    grey = array.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    reader = TiffRegionReader(tmp_path / "rgb.tif")
    region = reader.read(-10, 850, 140, 100, fill=-1.0)
    np.testing.assert_allclose(region[10:, :50], grey[:130, 850:], atol=1e-3)
    assert (region[:10] == -1).all() and (region[:, 50:] == -1).all()
    assert reader.segments_decoded == 4  # of 42 tiles
    reader.close()
    reader = TiffRegionReader(tmp_path / "strips.tif")
    np.testing.assert_array_equal(reader.read(120, 5, 40, 30), array[120:160, 5:35, 0])
    assert reader.segments_decoded == 2
    reader.close()


def _bad_guides(kind: str, root: Path) -> Path:
    folder = write_guides(root / f"bad_{kind}")
    if kind == "mismatch":
        save(np.ones((20, 30), np.uint8), folder / "guide1_mask.tif")
        return folder / "guide1_mask.tif"
    if kind == "empty":
        save(np.zeros((90, 90), np.uint8), folder / "guide2_mask.nii.gz")
        return folder / "guide2_mask.nii.gz"
    (folder / "guide0.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really a PNG")
    return folder / "guide0.png"


@pytest.mark.parametrize("kind", ["mismatch", "empty", "unreadable"])
def test_bad_guides_raise_and_write_nothing(kind: str, data: dict, tmp_path: Path) -> None:
    bad = _bad_guides(kind, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as error:
        propagate_folder(bad.parent, data["images"], out, OraclePropMask())
    assert isinstance(error.value, (Propagate2DError, ImageReadError))
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()
    with pytest.raises(ValueError, match=bad.name):
        propagate_large_image(render(mosaic((300, 300), 2, 0)), bad.parent, OraclePropMask(), output=out / "l.tif")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case", ["mismatch", "empty", "unreadable", "bad_target", "no_targets"])
@pytest.mark.parametrize("command", ["propagate-2d", "propagate-large"])
def test_cli_bad_input_exits_2(
    case: str, command: str, data: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guides, images, image = data["guides"], data["images"], data["images"] / "a.png"
    if case in ("mismatch", "empty", "unreadable"):
        named = _bad_guides(case, tmp_path)
        guides = named.parent
    elif case == "bad_target":  # a corrupt target among good ones / a corrupt large image
        images = tmp_path / "images"
        images.mkdir()
        save(render(discs((80, 80), [(40, 40)], [20])), images / "fine.png")
        named = image = images / "broken.tif"
        named.write_bytes(b"II*\x00 truncated")
    else:  # no target images / a missing large image
        images = tmp_path / "empty"
        images.mkdir()
        image = images / "missing.tif"
        named = images if command == "propagate-2d" else image
    out = tmp_path / "out"
    if command == "propagate-2d":
        argv = ["propagate-2d", "--guides", str(guides), "--images", str(images), "-o", str(out)]
    else:
        argv = ["propagate-large", str(image), "--guides", str(guides), "-o", str(out / "labels.tif")]
    code = main([*argv, "--checkpoint", str(data["checkpoint"]), "--no-progress"])
    message = capsys.readouterr().err.strip()
    assert code == 2 and len(message.splitlines()) == 1 and str(named) in message, message
    assert not out.exists() or not any(out.iterdir())


def test_failure_midway_removes_written_masks(data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = propagate2d.read_image2d

    def failing(path):  # noqa: ANN001, ANN202
        if Path(path).name.startswith("d_rgb"):
            raise ImageReadError(f"{path}: cannot read the image (simulated).")
        return original(path)

    monkeypatch.setattr(propagate2d, "read_image2d", failing)
    out = tmp_path / "out"
    with pytest.raises(ImageReadError, match="d_rgb"):
        propagate_folder(data["guides"], data["images"], out, OraclePropMask(), batch_size=1)
    assert not out.exists()


def test_cli_writes_masks_summary_and_labels(data: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "masks"
    weights = ["--checkpoint", str(data["checkpoint"]), "--no-progress"]
    argv = ["propagate-2d", "--guides", str(data["guides"]), "--images", str(data["images"]), "-o", str(out)]
    assert main([*argv, "--batch-size", "2", *weights]) == 0
    for name, truth in data["truth"].items():
        assert np.asarray(Image.open(out / f"{name}_mask.png")).shape == truth.shape
    with open(out / "summary.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image", "area_px", "mean_confidence"] and len(list(reader)) == len(TARGETS)

    large = tmp_path / "large.png"
    save(render(mosaic((300, 260), 3, seed=4)), large)
    labels = tmp_path / "labels" / "large_labels.tif"
    argv = ["propagate-large", str(large), "--guides", str(data["guides"]), "-o", str(labels), "--window", "128"]
    capsys.readouterr()
    assert main([*argv, "--border", "16", "--max-guides", "1", *weights]) == 0
    report = json.loads(labels.with_suffix(".json").read_text())
    image = tifffile.imread(labels)
    assert image.shape == (300, 260) and report["window"] == 128 and report["count"] == int(image.max())
    assert (report["border"], report["stride"], report["guides"], report["fusion"]) == (16, 96, 1, "joint")
    assert f"{report['count']} instances" in capsys.readouterr().out


def test_cli_localise_and_fusion_options(
    data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pam_monai.cli import main as command

    monkeypatch.setattr(command, "_propmask", lambda args: OraclePropMask())
    argv = ["propagate-2d", "--guides", str(data["guides"]), "--images", str(data["images"]), "--no-progress"]
    both = discs((90, 140), *zip(*CENTRES["b"])) > 0
    each = [discs((90, 140), [c], [r]) > 0 for c, r in CENTRES["b"]]
    for localise, fusion in (("none", "best"), ("match", "mean"), ("match", "best"), ("auto", "best")):
        out = tmp_path / f"{localise}-{fusion}"
        assert main([*argv, "-o", str(out), "--localise", localise, "--fusion", fusion]) == 0
        found = np.asarray(Image.open(out / "b_mask.png")) > 0  # whole images: both discs; localised: one
        if localise == "none":
            assert dice(found, both) > 0.85
        else:
            assert max(dice(found, one) for one in each) > 0.9 and dice(found, both) < 0.75, localise
    capsys.readouterr()
    for bad in ("everywhere", "AUTO"):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "-o", str(tmp_path / "bad"), "--localise", bad])
        assert stopped.value.code == 2 and not (tmp_path / "bad").exists()
        error = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(error) == 1 and f"invalid choice: '{bad}'" in error[0] and "auto" in error[0]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "-o", str(tmp_path / "bad"), "--registered-mask", "always"])
    assert stopped.value.code == 2 and "invalid choice: 'always'" in capsys.readouterr().err
    assert main([*argv, "-o", str(tmp_path / "bad"), "--localise", "none", "--registered-mask", "on"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "localised path only" in message and not (tmp_path / "bad").exists()
    out = tmp_path / "registered"  # the discs' scenes do not align as a whole: auto leaves the match's mask alone
    assert main([*argv, "-o", str(out), "--registered-mask", "auto"]) == 0
    auto = np.asarray(Image.open(out / "b_mask.png")) > 0
    assert np.array_equal(auto, np.asarray(Image.open(tmp_path / "match-best" / "b_mask.png")) > 0)


def test_default_weights_segment_generated_discs() -> None:
    try:
        checkpoint = default_checkpoints()[0]
    except CheckpointError:
        pytest.skip("no trained default weights in bundle/models/model.pt yet; Dice with the defaults untested")
    from pam_monai.networks import build_network_from_checkpoint

    network = build_network_from_checkpoint(checkpoint, kind="propmask").eval()
    guides, targets, truths = [], [], []
    for i in range(2):
        truth = discs((96, 96), [(48, 48)], [24 + 2 * i])
        guides.append((render(truth, seed=i), truth > 0))
    for i in range(3):
        truth = discs((96 + 8 * i, 96), [(50 + 2 * i, 47)], [22 + 2 * i])
        targets.append(render(truth, seed=50 + i))
        truths.append(truth > 0)
    for (_, mask), truth in zip(propagate_to_images(guides, targets, network, batch_size=3), truths):
        assert dice(mask, truth) > 0.7
