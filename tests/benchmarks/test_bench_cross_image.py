"""The cross-image benchmark on one atlas structure and one generated pair: table shape (per set and over all
cases), scores in [0, 1], the copy baseline against a DSC computed here, the atlas slices' world correspondence and
the registration and template-matching baselines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


@pytest.fixture()
def bench_cross_image(benchmark_module):  # noqa: ANN001, ANN201
    return benchmark_module("bench_cross_image")


def _independent_dice(guide_mask: np.ndarray, truth: np.ndarray) -> float:
    """The guide mask at the same pixel indices of the query (zero-padded, then cropped), against the truth."""
    rows, cols = max(guide_mask.shape[0], truth.shape[0]), max(guide_mask.shape[1], truth.shape[1])
    padded = np.pad(guide_mask, ((0, rows - guide_mask.shape[0]), (0, cols - guide_mask.shape[1])))
    pasted = padded[: truth.shape[0], : truth.shape[1]]
    return 2.0 * np.logical_and(pasted, truth).sum() / (pasted.sum() + truth.sum())


def test_tiny_run_gives_a_full_table_of_scores_in_range(bench_cross_image, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "cross_image.md"
    result = bench_cross_image.main(
        ["--structures", "1", "--families", "1", "--pairs", "1", "--guides", "1", "--threads", "1", "--out", str(out)]
    )
    methods = bench_cross_image.METHODS
    assert result["headers"][:2] == ["set", "cases"] and len(result["headers"]) == 2 + len(methods) + 1
    sets = ["atlas axis 2, 1 guide", "generated, 1 guide", "generated, independent looks, 1 guide", "all cases"]
    assert [row[0] for row in result["table"]] == sets
    assert [row[1] for row in result["table"]] == [1, 1, 1, 3]
    for method in methods[:-1]:  # the overall row is the mean over all cases
        dsc = [r["dsc"] for r in result["rows"] if r["method"] == method]
        assert result["means"][method] == pytest.approx(np.mean(dsc))
    rows = result["rows"]
    assert len(rows) == 3 * len(methods)  # one guide: every method, "guide as query" included, on every case
    for row in rows:
        for key in ("dsc", "sensitivity", "precision"):
            assert 0.0 <= row[key] <= 1.0, (row["method"], key, row[key])
        assert row["s"] >= 0.0 and -1.0 <= row["match"] <= 1.0 + 1e-6
    for case in result["cases"]:
        copy = next(r for r in rows if r["case"] == case.name and r["set"] == case.set and r["method"] == "copy")
        assert copy["dsc"] == pytest.approx(_independent_dice(case.guides[0][1], case.truth), abs=1e-12)
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "| atlas axis 2, 1 guide | 1 |" in text and "Machine: " in text and "target >= 0.80" in text
    assert "PAM, default" in result["headers"][2] and "| all cases | 3 |" in text and "test split" in text


def test_validation_split_uses_its_own_structures_and_seeds(bench_cross_image) -> None:  # noqa: ANN001
    from pam_monai.evaluation.candidate import VALIDATION_STRUCTURES

    result = bench_cross_image.main(
        ["--split", "validation", "--structures", "1", "--families", "1", "--pairs", "1", "--guides", "1"]
        + ["--sets", "atlas", "generated", "independent", "--threads", "1", "--thresholds", "-1", "2"]
        + ["--registered-thresholds", "-1", "2", "--registered-weights", "0", "1"]
    )
    names = [(case.set, case.name) for case in result["cases"]]  # no independent-looks case in validation
    assert names == [
        ("atlas axis 2, 1 guide", f"{VALIDATION_STRUCTURES[0]} axis 2"),
        ("generated, 1 guide", "ellipsoid 0"),
    ]
    test_case = bench_cross_image.generated_cases(["ellipsoid"], 1, [1], 128)[0]
    assert not np.array_equal(result["cases"][1].query, test_case.query)
    by_method = {(r["case"], r["method"]): r["dsc"] for r in result["rows"]}
    for case in result["cases"]:  # threshold -1: always the match; 2: always the registration
        matched = by_method[(case.name, "PAM, localised (match)")]
        registered = by_method[(case.name, "PAM, localised (register)")]
        assert by_method[(case.name, bench_cross_image.auto_method(-1.0))] == pytest.approx(matched)
        assert by_method[(case.name, bench_cross_image.auto_method(2.0))] == pytest.approx(registered)
        # registered-mask threshold -1: always averaged in; 2: never
        always = by_method[(case.name, "PAM (match), registered mask on")]
        assert by_method[(case.name, bench_cross_image.registered_method(-1.0))] == pytest.approx(always)
        assert by_method[(case.name, bench_cross_image.registered_method(2.0))] == pytest.approx(matched)
        assert by_method[(case.name, bench_cross_image.weighted_method(0.0))] == pytest.approx(matched)


def test_placement_cache_reuses_results_and_charges_their_time(bench_cross_image) -> None:  # noqa: ANN001
    from pam_monai.images2d import localise

    rng = np.random.default_rng(1)
    image = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 2).astype(np.float32)
    original = localise.register_affine
    with bench_cross_image.PlacementCache() as cache:
        first = localise.register_affine(image, image + 1)
        assert cache.charged == 0.0
        again = localise.register_affine(image.copy(), image + 1)  # same contents: a hit
        assert again is first and cache.charged > 0.0
        other = localise.register_affine(image, image * 2)
        assert other is not first
    assert localise.register_affine is original


def test_atlas_query_slice_is_the_guide_slice_in_world_coordinates(bench_cross_image) -> None:  # noqa: ANN001
    (case,) = bench_cross_image.atlas_cases(["Left-Thalamus-Proper"], [2], [1], 3)
    guide, truth = case.guides[0][1], case.truth
    assert guide.shape == (193, 229) and truth.shape == (182, 218)
    # both grids are 1 mm in RAS order; the MNI152 grid starts 5 mm and 6 mm further along x and y: the same atlas
    # labels, resampled onto each, then coincide pixel for pixel after that shift
    np.testing.assert_array_equal(truth, guide[5 : 5 + 182, 6 : 6 + 218])


def test_registration_recovers_a_shift_and_a_zoom(bench_cross_image) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 3)
    mask = np.zeros((96, 96), dtype=bool)
    mask[30:60, 35:55] = True
    image = image + 3.0 * ndimage.gaussian_filter(mask.astype(float), 1)
    matrix = np.diag([0.9, 0.9])  # query pixel p shows guide pixel 0.9 p + offset
    offset = np.array([8.0, -4.0])
    query = ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")
    truth = ndimage.affine_transform(mask.astype(float), matrix, offset=offset, order=1) >= 0.5
    case = bench_cross_image.Case("test", "shift", [(image, mask)], query * 50 + 7, truth)
    assert bench_cross_image.scores(bench_cross_image.registration_baseline(case), truth)["dsc"] > 0.9
    assert bench_cross_image.scores(bench_cross_image.copy_baseline(case), truth)["dsc"] < 0.8
    assert bench_cross_image.scores(bench_cross_image.matched_baseline(case), truth)["dsc"] > 0.85
